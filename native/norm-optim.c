/*
 * AdamW: the fused update of src/train/optimizer.ts, element for element in the same double-precision
 * expressions (rounded to float32 where the JS stores into Float32Arrays), so the results are the
 * same bits; rows of the parameter are split across threads. sumSquares is the global-norm pass in
 * the same sequential order (a double sum is not reassociated without -ffast-math).
 * RMSNorm: the mean accumulated in double; rows across threads. Used by the runtime's forward pass
 * outside gradient recording only.
 */
#include "norm-optim.h"

#include <math.h>

#include "parallel.h"

typedef struct {
  float *p, *m, *v, *out;
  const float *g;
  double b1, b2, c1, c2, eps, lr, decay, clip;
} adamw_job;

static void adamw_ranges(void *ctx, int64_t i0, int64_t i1) {
  const adamw_job *j = (const adamw_job *)ctx;
  const double b1 = j->b1, b2 = j->b2, c1 = j->c1, c2 = j->c2, eps = j->eps, lr = j->lr, decay = j->decay, clip = j->clip;
  for (int64_t i = i0; i < i1; i++) {
    const double gi = (double)j->g[i] * clip;
    const double mi = b1 * (double)j->m[i] + (1 - b1) * gi;
    const double vi = b2 * (double)j->v[i] + (1 - b2) * gi * gi;
    j->m[i] = (float)mi;
    j->v[i] = (float)vi;
    const double pi = (double)j->p[i];
    j->out[i] = (float)(pi - lr * ((double)j->m[i] / c1 / (sqrt((double)j->v[i] / c2) + eps)) - decay * pi);
  }
}

void fopeify_adamw(float *p, const float *g, float *m, float *v, float *out, int64_t n, const double h[8]) {
  adamw_job j = {p, m, v, out, g, h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]};
  parallel_ranges(adamw_ranges, &j, n, 1, 65536);
}

double fopeify_sum_squares(const float *x, int64_t n, double sum) {
  for (int64_t i = 0; i < n; i++) sum += (double)x[i] * (double)x[i];
  return sum;
}

typedef struct {
  const float *x, *w;
  float *out;
  int64_t h;
  double eps;
} rmsnorm_job;

static void rmsnorm_ranges(void *ctx, int64_t r0, int64_t r1) {
  const rmsnorm_job *j = (const rmsnorm_job *)ctx;
  const int64_t h = j->h;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + r * h;
    float *o = j->out + r * h;
    double ss = 0;
    for (int64_t i = 0; i < h; i++) ss += (double)x[i] * (double)x[i];
    const float inv = (float)(1.0 / sqrt(ss / (double)h + j->eps));
    for (int64_t i = 0; i < h; i++) o[i] = x[i] * inv * j->w[i];
  }
}

void fopeify_rmsnorm(const float *x, const float *w, float *out, int64_t rows, int64_t h, double eps) {
  rmsnorm_job j = {x, w, out, h, eps};
  parallel_ranges(rmsnorm_ranges, &j, rows, 1, (65536 + h - 1) / h);
}
