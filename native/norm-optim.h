/* Optimizer and normalisation passes (norm-optim.c), threaded over elements / rows. */
#ifndef FOPEIFY_NORM_OPTIM_H
#define FOPEIFY_NORM_OPTIM_H

#include <stdint.h>

/* src/train/optimizer.ts's fused AdamW update over n elements; hyper = [b1, b2, c1, c2, eps, lr,
 * lr·wd, clip]; out may be p. */
void fopeify_adamw(float *p, const float *g, float *m, float *v, float *out, int64_t n, const double hyper[8]);

/* start + Σ x[i]² in double, in index order (as the JS loop). */
double fopeify_sum_squares(const float *x, int64_t n, double start);

/* out[r] = x[r] · (1 / sqrt(mean(x[r]²) + eps)) · w for `rows` rows of h elements. */
void fopeify_rmsnorm(const float *x, const float *w, float *out, int64_t rows, int64_t h, double eps);

#endif
