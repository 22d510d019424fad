/* Optimizer and normalisation passes (norm-optim.c), threaded over elements / rows. */
#ifndef FOPEIFY_NORM_OPTIM_H
#define FOPEIFY_NORM_OPTIM_H

#include <stdint.h>

/* src/train/optimizer.ts's fused AdamW update over n elements; hyper = [b1, b2, c1, c2, eps, lr,
 * lr·wd, clip]; out may be p. */
void fopeify_adamw(float *p, const float *g, float *m, float *v, float *out, int64_t n, const double hyper[8]);

/* start + Σ x[i]² in double, in index order (as the JS loop). */
double fopeify_sum_squares(const float *x, int64_t n, double start);

/* out[r] = x[r] · inv[r] · w with inv[r] = 1 / sqrt(mean(x[r]²) + eps) (rounded to float), for `rows`
 * rows of h elements; inv into inv_out[rows] unless NULL. */
void fopeify_rmsnorm(const float *x, const float *w, float *out, float *inv_out, int64_t rows, int64_t h, double eps);

/* RMSNorm's gradient for the upstream gradient dy, given the forward's inv: dx [rows, h] and
 * dw [h] = Σ_rows dy · (x · inv). Returns NULL, or why it failed (out of memory; nothing written). */
const char *fopeify_rmsnorm_backward(const float *x, const float *w, const float *inv, const float *dy, float *dx, float *dw,
                                     int64_t rows, int64_t h);

#endif
