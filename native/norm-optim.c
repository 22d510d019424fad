/*
 * AdamW: the fused update of src/train/optimizer.ts, element for element in the same double-precision
 * expressions (rounded to float32 where the JS stores into Float32Arrays), so the results are the
 * same bits; rows of the parameter are split across threads. sumSquares is the global-norm pass in
 * the same fixed order as the JS (blocks of lanes; a double sum is not reassociated without -ffast-math).
 * RMSNorm: the mean accumulated in double; rows across threads. The forward of inference and of
 * training (which keeps each row's inverse rms for its backward); the backward in double per row, the
 * weight gradient summed over fixed blocks of rows, then over the blocks in order.
 */
#include "norm-optim.h"

#include <math.h>
#include <stdlib.h>

#include "parallel.h"

typedef struct {
  float *p, *m, *v, *out;
  const float *g;
  double b1, b2, c1, c2, eps, lr, decay, clip;
  int simd; /* 2: AVX-512 body, 1: AVX2, 0: the compiler's baseline */
} adamw_job;

/*
 * One loop, compiled three times (baseline, AVX2, AVX-512) and chosen at run time: the update is
 * divider-bound (two double divisions and a double sqrt per element), and only the wider vector units
 * run those at memory speed (2^25 elements on one core: 214 ms scalar, 105 ms SSE2, 53 ms AVX2, 28 ms
 * AVX-512). Vectorising does not change a bit: every operation is the same IEEE one per element,
 * -ffp-contract=off keeps a·b+c unfused, and m / v are read back as the floats just stored (as the JS
 * reads its Float32Arrays). restrict parameters: the arrays never overlap, except out == p (the update
 * in place, the usual case), which is its own copy of the loop (in_place, a constant) reading out; with
 * pointers that may alias the compiler checks for overlap at run time and, finding it, runs the scalar
 * loop (the in-place update stayed at 445 ms per 135M parameters until it had its own copy).
 */
static inline __attribute__((always_inline)) void adamw_span(const adamw_job *j, const float *restrict g, float *restrict m,
                                                              float *restrict v, const float *restrict p, float *restrict out,
                                                              int in_place, int64_t i0, int64_t i1) {
  const double b1 = j->b1, b2 = j->b2, c1 = j->c1, c2 = j->c2, eps = j->eps, lr = j->lr, decay = j->decay, clip = j->clip;
  for (int64_t i = i0; i < i1; i++) {
    const double gi = (double)g[i] * clip;
    const float mf = (float)(b1 * (double)m[i] + (1 - b1) * gi);
    const float vf = (float)(b2 * (double)v[i] + (1 - b2) * gi * gi);
    m[i] = mf;
    v[i] = vf;
    const double pi = (double)(in_place ? out[i] : p[i]);
    out[i] = (float)(pi - lr * ((double)mf / c1 / (sqrt((double)vf / c2) + eps)) - decay * pi);
  }
}

#define ADAMW_VARIANT(SUFFIX, ATTR)                                                                   \
  ATTR static void adamw_##SUFFIX(const adamw_job *j, int64_t i0, int64_t i1) {                        \
    if (j->out == j->p) adamw_span(j, j->g, j->m, j->v, NULL, j->out, 1, i0, i1);                        \
    else adamw_span(j, j->g, j->m, j->v, j->p, j->out, 0, i0, i1);                                       \
  }

ADAMW_VARIANT(baseline, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ADAMW_X86 1
ADAMW_VARIANT(avx2, __attribute__((target("avx2"))))
ADAMW_VARIANT(avx512, __attribute__((target("avx512f"))))
#endif

static void adamw_ranges(void *ctx, int64_t i0, int64_t i1) {
  const adamw_job *j = (const adamw_job *)ctx;
#ifdef ADAMW_X86
  if (j->simd == 2) return adamw_avx512(j, i0, i1);
  if (j->simd == 1) return adamw_avx2(j, i0, i1);
#endif
  adamw_baseline(j, i0, i1);
}

/* Explicit dispatch rather than vexp.h's FOPEIFY_CLONES (target_clones: AVX2 only, GCC on Linux only):
 * the AVX-512 copy halves the time again, and target attributes build with clang too. */
static int adamw_simd(void) {
#ifdef ADAMW_X86
  /* __builtin_cpu_supports also checks that the OS saves the wider registers' state. */
  static int simd = -1;
  if (simd < 0) simd = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
  return simd;
#else
  return 0;
#endif
}

void fopeify_adamw(float *p, const float *g, float *m, float *v, float *out, int64_t n, const double h[8]) {
  adamw_job j = {p, m, v, out, g, h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], adamw_simd()};
  parallel_ranges(adamw_ranges, &j, n, 1, 65536);
}

/* The order of kernels.ts's HostPasses.sumSquares (the JS twin in kernels-host.ts does the same):
 * blocks of SUMSQ_BLOCK elements, each summed in SUMSQ_LANES double lanes (element i into lane
 * i mod 8), the lanes combined pairwise, the block sums added to the running sum in block order. The
 * order depends on n alone, so the blocks can run on any threads and the bits never change; 8
 * independent chains instead of one run at memory speed (one sequential chain: ~120 ms per step of a
 * 135M-parameter model, 4 % of a 512-token step). x*x of a float is exact in double. */
#define SUMSQ_BLOCK 16384
#define SUMSQ_LANES 8

static double sumsq_block(const float *x, int64_t n) {
  double l[SUMSQ_LANES] = {0};
  int64_t i = 0;
  for (; i + SUMSQ_LANES <= n; i += SUMSQ_LANES)
    for (int k = 0; k < SUMSQ_LANES; k++) l[k] += (double)x[i + k] * (double)x[i + k];
  for (int k = 0; i < n; i++, k++) l[k] += (double)x[i] * (double)x[i];
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

typedef struct {
  const float *x;
  int64_t n;
  double *blocks;
} sumsq_job;

static void sumsq_ranges(void *ctx, int64_t b0, int64_t b1) {
  const sumsq_job *j = (const sumsq_job *)ctx;
  for (int64_t b = b0; b < b1; b++) {
    const int64_t a = b * SUMSQ_BLOCK, len = j->n - a < SUMSQ_BLOCK ? j->n - a : SUMSQ_BLOCK;
    j->blocks[b] = sumsq_block(j->x + a, len);
  }
}

double fopeify_sum_squares(const float *x, int64_t n, double sum) {
  const int64_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
  double *blocks = nb > 1 ? (double *)malloc((size_t)nb * sizeof(double)) : NULL;
  if (blocks) {
    sumsq_job j = {x, n, blocks};
    parallel_ranges(sumsq_ranges, &j, nb, 1, 16); /* threads from 16 blocks (256K elements) */
    for (int64_t b = 0; b < nb; b++) sum += blocks[b];
    free(blocks);
    return sum;
  }
  for (int64_t a = 0; a < n; a += SUMSQ_BLOCK) sum += sumsq_block(x + a, n - a < SUMSQ_BLOCK ? n - a : SUMSQ_BLOCK);
  return sum;
}

typedef struct {
  const float *x, *w;
  float *out, *inv_out;
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
    if (j->inv_out) j->inv_out[r] = inv;
  }
}

void fopeify_rmsnorm(const float *x, const float *w, float *out, float *inv_out, int64_t rows, int64_t h, double eps) {
  rmsnorm_job j = {x, w, out, inv_out, h, eps};
  parallel_ranges(rmsnorm_ranges, &j, rows, 1, (65536 + h - 1) / h);
}

/* Rows per partial sum of dw: a fixed block, so the summation order (and the bits of dw) does not
 * depend on the thread count. */
#define RMS_DW_BLOCK 32

typedef struct {
  const float *x, *w, *inv, *dy;
  float *dx;
  double *partial; /* [blocks, h] */
  int64_t rows, h;
} rmsnorm_back_job;

/* Blocks b0..b1 of RMS_DW_BLOCK rows. With xn = x·r (rounded, as the forward's product) and
 * g = dy·w: dx = r·g − x·r³·Σ(g·x)/h, and each block's Σ dy·xn into its own partial row. */
static void rmsnorm_back_ranges(void *ctx, int64_t b0, int64_t b1) {
  const rmsnorm_back_job *j = (const rmsnorm_back_job *)ctx;
  const int64_t h = j->h;
  for (int64_t b = b0; b < b1; b++) {
    double *p = j->partial + b * h;
    for (int64_t i = 0; i < h; i++) p[i] = 0;
    const int64_t r1 = (b + 1) * RMS_DW_BLOCK < j->rows ? (b + 1) * RMS_DW_BLOCK : j->rows;
    for (int64_t r = b * RMS_DW_BLOCK; r < r1; r++) {
      const float *x = j->x + r * h, *dy = j->dy + r * h;
      float *dx = j->dx + r * h;
      const float inv = j->inv[r];
      const double rr = inv;
      double dot = 0;
      for (int64_t i = 0; i < h; i++) dot += (double)dy[i] * (double)j->w[i] * (double)x[i];
      const double c = rr * rr * rr * dot / (double)h;
      for (int64_t i = 0; i < h; i++) {
        dx[i] = (float)(rr * ((double)dy[i] * (double)j->w[i]) - (double)x[i] * c);
        p[i] += (double)dy[i] * (double)(x[i] * inv);
      }
    }
  }
}

const char *fopeify_rmsnorm_backward(const float *x, const float *w, const float *inv, const float *dy, float *dx, float *dw,
                                     int64_t rows, int64_t h) {
  const int64_t blocks = (rows + RMS_DW_BLOCK - 1) / RMS_DW_BLOCK;
  double *partial = (double *)malloc((size_t)(blocks > 0 ? blocks : 1) * (size_t)h * sizeof(double));
  if (!partial) return "rmsnormBackward: out of memory for the weight gradient's partial sums";
  rmsnorm_back_job j = {x, w, inv, dy, dx, partial, rows, h};
  parallel_ranges(rmsnorm_back_ranges, &j, blocks, 1, (65536 + h * RMS_DW_BLOCK - 1) / (h * RMS_DW_BLOCK));
  for (int64_t i = 0; i < h; i++) {
    double s = 0;
    for (int64_t b = 0; b < blocks; b++) s += partial[b * h + i];
    dw[i] = (float)s;
  }
  free(partial);
  return NULL;
}
