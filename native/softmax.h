/* The passes built on the vector exp (softmax.c), threaded over rows / elements. Semantics match
 * src/backend/vector-math.ts (the WebAssembly versions, used when the addon is absent), bit for bit. */
#ifndef FOPEIFY_SOFTMAX_H
#define FOPEIFY_SOFTMAX_H

#include <stdint.h>

/* Per row r of S (rows x n4, n4 a multiple of 4): m = max(mOld[r], max S[r]); mNew[r] = m;
 * S[r] = exp(S[r] − m) and sum[r] = Σ S[r] (a row with m = −∞ becomes 0, sum 0). */
void fopeify_softmax_rows(float *S, int64_t rows, int64_t n4, const float *mOld, float *mNew, float *sum);


/* Cross-entropy of logits L (rows x n4, the first V columns real, n4 a multiple of 4) against
 * targets (−1: ignored): *nll = Σ over valid rows of max + log Σ exp(L − max) − L[target] (summed in row
 * order). With scale ≠ 0, L becomes dlogits = scale · (softmax − onehot) (ignored rows and padding 0).
 * Returns an error message (nothing touched) for a bad V / n4 or a target ≥ V, else NULL. */
const char *fopeify_cross_entropy_rows(float *L, int64_t rows, int64_t n4, int64_t V, const int32_t *targets, double scale, double *nll);

/* y = g·σ(g)·u over n elements, σ(g) = 1 / (1 + exp(−g)) also into sig when not NULL. */
void fopeify_swiglu(const float *g, const float *u, float *y, float *sig, int64_t n);

/* Its gradient given sig = σ(g): dg = dy·u·sig·(1 + g(1 − sig)), du = dy·g·sig, over n elements (no
 * array overlaps another). */
void fopeify_swiglu_backward(const float *dy, const float *g, const float *u, const float *sig, float *dg, float *du, int64_t n);

#endif
