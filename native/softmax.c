/*
 * Softmax passes of blockwise attention, the LM head's cross-entropy, and SwiGLU: the attention
 * recurrences (src/model/native-attention.ts, src/train/native-attention.ts) and the training head
 * (src/backend/head-loss.ts, 49k-wide logits rows) spend most of their non-GEMM time exponentiating
 * rows. These loops run that work in C on the BLAS's thread count (rows split
 * across threads by parallel.c) with vexp.h's vector exp.
 */
#include "softmax.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "vexp.h"

typedef struct {
  float *S;
  int64_t n4;
  const float *mOld;
  float *mNew, *sum;
} softmax_job;

/* One row of the softmax numerators: m = max(mOld, max row); row = exp(row − m), its sum into *sum
 * (a row with m = −∞ becomes 0, sum 0). Inlined into each caller's target clones. Returns m. */
static inline __attribute__((always_inline)) float softmax_row(float *row, int64_t n4, float mOld, float *sum) {
  const int64_t n8 = n4 & ~(int64_t)7;
  v8f vm = (v8f){-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  for (int64_t c = 0; c < n8; c += 8) {
    v8f x;
    memcpy(&x, row + c, sizeof x);
    vm = v8_select(x > vm, x, vm);
  }
  float mx = mOld;
  for (int k = 0; k < 8; k++) mx = vm[k] > mx ? vm[k] : mx;
  for (int64_t c = n8; c < n4; c++) mx = row[c] > mx ? row[c] : mx;
  if (mx == -INFINITY) {
    memset(row, 0, (size_t)n4 * sizeof(float));
    *sum = 0;
    return mx;
  }
  /* Sum in four lanes over consecutive groups of four, then ((l0 + l1) + l2) + l3: the order of
   * the WebAssembly version, so the sums are bit-identical too. */
  v4f acc = (v4f){0, 0, 0, 0};
  for (int64_t c = 0; c < n8; c += 8) {
    v8f x;
    memcpy(&x, row + c, sizeof x);
    v8f e = v8_exp(x - mx);
    memcpy(row + c, &e, sizeof e);
    v4f lo4, hi4;
    memcpy(&lo4, &e, sizeof lo4);
    memcpy(&hi4, (const char *)&e + sizeof lo4, sizeof hi4);
    acc += lo4;
    acc += hi4;
  }
  if (n8 < n4) { /* n4 is a multiple of 4: one group left */
    v8f x = (v8f){row[n8], row[n8 + 1], row[n8 + 2], row[n8 + 3], 0, 0, 0, 0};
    v8f e = v8_exp(x - mx);
    v4f lo4;
    memcpy(&lo4, &e, sizeof lo4);
    memcpy(row + n8, &lo4, sizeof lo4);
    acc += lo4;
  }
  *sum = ((acc[0] + acc[1]) + acc[2]) + acc[3];
  return mx;
}

FOPEIFY_CLONES static void softmax_ranges(void *ctx, int64_t r0, int64_t r1) {
  const softmax_job *j = (const softmax_job *)ctx;
  for (int64_t r = r0; r < r1; r++) j->mNew[r] = softmax_row(j->S + r * j->n4, j->n4, j->mOld[r], &j->sum[r]);
}

void fopeify_softmax_rows(float *S, int64_t rows, int64_t n4, const float *mOld, float *mNew, float *sum) {
  softmax_job j = {S, n4, mOld, mNew, sum};
  /* Rows across threads, only when the block is big enough to pay for thread start-up. */
  parallel_ranges(softmax_ranges, &j, rows, 1, n4 > 0 ? (65536 + n4 - 1) / n4 : rows + 1);
}

/* ---- Cross-entropy of LM-head logits ----
 * One pass per row while the row (V floats, ~200 KB) is in cache: the softmax numerators above, the
 * row's NLL, and for the gradient the row scaled to scale·softmax minus scale at the target. The
 * arithmetic is that of the JavaScript steps it replaces (softmax_row, k = float(scale / sum) in
 * double, row·k in float, row[t] − scale in double), so dlogits keep their bits. */
typedef struct {
  float *L;
  int64_t n4, V;
  const int32_t *targets;
  double scale; /* 0: no gradient */
  double *nll;
} xent_job;

FOPEIFY_CLONES static void xent_ranges(void *ctx, int64_t r0, int64_t r1) {
  const xent_job *j = (const xent_job *)ctx;
  const int64_t n4 = j->n4;
  for (int64_t r = r0; r < r1; r++) {
    float *row = j->L + r * n4;
    const int32_t t = j->targets[r];
    j->nll[r] = 0;
    if (t < 0) { /* ignored row: no loss, dlogits 0 */
      if (j->scale != 0) memset(row, 0, (size_t)n4 * sizeof(float));
      continue;
    }
    for (int64_t c = j->V; c < n4; c++) row[c] = -INFINITY; /* padding: exp gives 0 */
    const float picked = row[t];
    float sum;
    const float m = softmax_row(row, n4, -INFINITY, &sum);
    j->nll[r] = ((double)m + log((double)sum)) - (double)picked;
    if (j->scale == 0) continue;
    const float k = (float)(j->scale / (double)sum);
    for (int64_t c = 0; c < n4; c++) row[c] *= k;
    row[t] = (float)((double)row[t] - j->scale);
  }
}

const char *fopeify_cross_entropy_rows(float *L, int64_t rows, int64_t n4, int64_t V, const int32_t *targets, double scale, double *nll) {
  if (V < 1 || V > n4 || n4 % 4 != 0) return "crossEntropyRows: expected 0 < V <= n4, n4 a multiple of 4";
  for (int64_t r = 0; r < rows; r++)
    if (targets[r] >= V) return "crossEntropyRows: a target is not below V";
  double *rowNll = (double *)malloc((size_t)(rows > 0 ? rows : 1) * sizeof(double));
  if (!rowNll) return "crossEntropyRows: out of memory";
  xent_job j = {L, n4, V, targets, scale, rowNll};
  parallel_ranges(xent_ranges, &j, rows, 1, (65536 + n4 - 1) / n4);
  /* Summed in row order whatever the thread count: the same total on every machine. */
  double total = 0;
  for (int64_t r = 0; r < rows; r++) total += rowNll[r];
  free(rowNll);
  *nll = total;
  return NULL;
}

/* ---- SwiGLU activation ----
 * The operations and order of vector-math.ts's swigluForward, so both give the same bits. */
typedef struct {
  const float *g, *u;
  float *y, *sig;
} swiglu_job;

FOPEIFY_CLONES static void swiglu_ranges(void *ctx, int64_t i0, int64_t i1) {
  const swiglu_job *j = (const swiglu_job *)ctx;
  int64_t i = i0;
  const v8f one = (v8f){1, 1, 1, 1, 1, 1, 1, 1};
  for (; i + 8 <= i1; i += 8) {
    v8f g, u;
    memcpy(&g, j->g + i, sizeof g);
    memcpy(&u, j->u + i, sizeof u);
    v8f sg = one / (one + v8_exp(-g));
    v8f y = g * sg * u;
    memcpy(j->y + i, &y, sizeof y);
    if (j->sig) memcpy(j->sig + i, &sg, sizeof sg);
  }
  for (; i < i1; i++) {
    float g = j->g[i];
    float sg = 1.0f / (1.0f + f_exp(-g));
    j->y[i] = g * sg * j->u[i];
    if (j->sig) j->sig[i] = sg;
  }
}

void fopeify_swiglu(const float *g, const float *u, float *y, float *sig, int64_t n) {
  swiglu_job j = {g, u, y, sig};
  /* range starts on multiples of 8, so every element takes the same (vector) path as in one thread */
  parallel_ranges(swiglu_ranges, &j, n, 8, 65536);
}

/* Its gradient, the float32 operations of vector-math.ts's swigluBackward (wasm f32x4) in their order:
 * dg = ((dy·u)·s)·(1 + g·(1 − s)), du = (dy·g)·s. Elementwise, so any vector width gives the same bits
 * (-ffp-contract=off: no FMA). */
typedef struct {
  const float *dy, *g, *u, *sig;
  float *dg, *du;
} swiglu_backward_job;

static inline __attribute__((always_inline)) void swiglu_backward_span(const float *restrict dy, const float *restrict g,
                                                                        const float *restrict u, const float *restrict s,
                                                                        float *restrict dg, float *restrict du, int64_t i0,
                                                                        int64_t i1) {
  for (int64_t i = i0; i < i1; i++) {
    dg[i] = dy[i] * u[i] * s[i] * (1.0f + g[i] * (1.0f - s[i]));
    du[i] = dy[i] * g[i] * s[i];
  }
}

FOPEIFY_CLONES static void swiglu_backward_ranges(void *ctx, int64_t i0, int64_t i1) {
  const swiglu_backward_job *j = (const swiglu_backward_job *)ctx;
  swiglu_backward_span(j->dy, j->g, j->u, j->sig, j->dg, j->du, i0, i1);
}

void fopeify_swiglu_backward(const float *dy, const float *g, const float *u, const float *sig, float *dg, float *du, int64_t n) {
  swiglu_backward_job j = {dy, g, u, sig, dg, du};
  parallel_ranges(swiglu_backward_ranges, &j, n, 8, 65536);
}
