/*
 * fopeify's portable SGEMM: what the addon computes matrix products with when no BLAS library loads.
 *
 * Why hand-written: no npm package ships OpenBLAS, BLIS or MKL for linux-x64, so after `npm ci` alone
 * a machine without libopenblas0 fell back to tfjs-wasm, whose XNNPACK does ~20 GFLOP/s on plain 2-D
 * products but 1-1.5 GFLOP/s on the batched and transposed ones training needs: a 58-GFLOP training
 * step took 33 s there vs 1.2 s with OpenBLAS. The alternatives measured were worse fits
 * (onnxruntime-node: 113 MB, downloads from outside npm, inference only; ggml: no plain GEMM entry
 * point; see the project's notes on fast GEMM without set-up). A blocked, packed, vectorised SGEMM in
 * a few hundred lines of C, compiled at install time by the compiler that already builds the addon,
 * gets within reach of OpenBLAS on the shapes fopeify uses.
 *
 * Shape of it:
 *  - sgemm-kernel.c holds the single-thread driver (packing + register-tile micro-kernel, GCC/Clang
 *    vector extensions). native/build.mjs compiles it once per ISA variant (AVX-512, AVX2+FMA,
 *    generic), each in its own object with its own -m flags; the addon still loads on any CPU of its
 *    architecture because only the variant this CPU supports is ever called, chosen here at load
 *    time with __builtin_cpu_supports (which also checks that the OS saves the wider registers).
 *  - Threads: the output is cut along its longer side into one piece per thread, and each piece is
 *    an independent single-thread GEMM (no barriers; each thread packs its own panels). The threads
 *    are the addon's persistent team (parallel.c: starting threads per call would cost more than a
 *    small GEMM), which runs them with the caller's MXCSR (the addon flushes denormals around BLAS calls).
 */
#include "sgemm.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "parallel.h"

typedef int (*serial_fn)(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

int fopeify_sgemm_serial_generic(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                                 int64_t, float, float *, int64_t);
#ifdef SG_HAVE_AVX2
int fopeify_sgemm_serial_avx2(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                              int64_t, float, float *, int64_t);
#endif
#ifdef SG_HAVE_AVX512
int fopeify_sgemm_serial_avx512(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                                int64_t, float, float *, int64_t);
#endif

static serial_fn g_serial = NULL;
static pthread_mutex_t g_call = PTHREAD_MUTEX_INITIALIZER; /* one parallel GEMM at a time */
static const char *g_variant = "portable-generic";
static int g_nthreads = 1;

/* The variants this build has and this CPU runs, best first. */
static int variant_ok(const char *name) {
  if (!strcmp(name, "portable-generic")) return 1;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
#ifdef SG_HAVE_AVX512
  if (!strcmp(name, "portable-avx512")) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
#ifdef SG_HAVE_AVX2
  if (!strcmp(name, "portable-avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#endif
  return 0;
}

static serial_fn variant_fn(const char *name) {
#ifdef SG_HAVE_AVX512
  if (!strcmp(name, "portable-avx512")) return fopeify_sgemm_serial_avx512;
#endif
#ifdef SG_HAVE_AVX2
  if (!strcmp(name, "portable-avx2")) return fopeify_sgemm_serial_avx2;
#endif
  return fopeify_sgemm_serial_generic;
}

static const char *const g_variants[] = {"portable-avx512", "portable-avx2", "portable-generic"};

const char *fopeify_portable_init(void) {
  if (g_serial) return g_variant;
  for (size_t i = 0; i < sizeof g_variants / sizeof g_variants[0]; i++) {
    if (variant_ok(g_variants[i])) {
      g_variant = g_variants[i];
      break;
    }
  }
  g_serial = variant_fn(g_variant);
  return g_variant;
}

int fopeify_portable_use(const char *name) {
  for (size_t i = 0; i < sizeof g_variants / sizeof g_variants[0]; i++) {
    if (!strcmp(name, g_variants[i]) && variant_ok(name)) {
      pthread_mutex_lock(&g_call); /* not while a parallel GEMM runs */
      g_variant = g_variants[i];
      g_serial = variant_fn(name);
      pthread_mutex_unlock(&g_call);
      return 1;
    }
  }
  return 0;
}

/* ---- threaded GEMMs ---- */
#define SG_MAX_THREADS 64

typedef struct {
  int ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
  const float *A, *B;
  float *C;
  int parts;     /* pieces, one per thread */
  int splitRows; /* cut along M (else along N) */
  int64_t unit;  /* piece boundaries are multiples of this */
} job_t;

static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc);

/* Only when a packing buffer cannot be allocated: slow, but right. */
static void naive(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t n = 0; n < N; n++) {
      float s = 0.0f;
      for (int64_t p = 0; p < K; p++) s += (ta ? A[p * lda + i] : A[i * lda + p]) * (tb ? B[n * ldb + p] : B[p * ldb + n]);
      C[i * ldc + n] = alpha * s + (beta == 0.0f ? 0.0f : beta * C[i * ldc + n]);
    }
}

static void serial(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (!g_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void fopeify_portable_sgemm_1t(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                               const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (!g_serial) fopeify_portable_init();
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) scale_c(M, N, beta, C, ldc);
  else serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void run_part(const job_t *j, int part) {
  const int64_t len = j->splitRows ? j->M : j->N;
  const int64_t units = (len + j->unit - 1) / j->unit;
  const int64_t a = units * part / j->parts * j->unit;
  int64_t b = units * (part + 1) / j->parts * j->unit;
  if (b > len) b = len;
  if (b <= a) return;
  if (j->splitRows) {
    serial(j->ta, j->tb, b - a, j->N, j->K, j->alpha, j->ta ? j->A + a : j->A + a * j->lda, j->lda, j->B, j->ldb,
             j->beta, j->C + a * j->ldc, j->ldc);
  } else {
    serial(j->ta, j->tb, j->M, b - a, j->K, j->alpha, j->A, j->lda, j->tb ? j->B + a * j->ldb : j->B + a, j->ldb,
             j->beta, j->C + a, j->ldc);
  }
}

/* One piece of a threaded GEMM, on the addon's persistent team (parallel.c): nt pieces. */
static void team_part(void *ctx, int t, int nt) {
  job_t j = *(const job_t *)ctx;
  j.parts = nt;
  run_part(&j, t);
}

void fopeify_portable_set_threads(int n) { g_nthreads = n < 1 ? 1 : n > SG_MAX_THREADS ? SG_MAX_THREADS : n; }

int fopeify_portable_get_threads(void) { return g_nthreads; }

/* C = beta * C over M x N (beta == 0 writes zeros: C is not read). */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++) {
    float *c = C + i * ldc;
    if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
    else if (beta != 1.0f)
      for (int64_t j = 0; j < N; j++) c[j] *= beta;
  }
}

void fopeify_portable_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                            int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  if (!g_serial) fopeify_portable_init();
  int ta = transA == 112, tb = transB == 112;
  if (order == 102) {
    /* Column-major C is row-major C^T = op(B)^T op(A)^T. */
    const float *tp = A;
    A = B;
    B = tp;
    int ti = ta;
    ta = tb;
    tb = ti;
    ti = lda;
    lda = ldb;
    ldb = ti;
    ti = M;
    M = N;
    N = ti;
  }
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  job_t j = {ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C, 1, 0, 1};
  /* Threads only pay when each piece is a few MFLOP (a wake-up costs ~10-50 us). */
  const double flop = 2.0 * M * N * K;
  int parts = g_nthreads;
  if (flop < 4e6) parts = 1;
  j.splitRows = M > N;
  j.unit = j.splitRows ? 24 : 32; /* multiples of every variant's tile (MR 6/12, NR 8/16/32) */
  const int64_t len = j.splitRows ? M : N;
  while (parts > 1 && len < (int64_t)parts * j.unit) parts--;
  if (parts <= 1) {
    serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  pthread_mutex_lock(&g_call);
  parallel_team(team_part, &j, parts);
  pthread_mutex_unlock(&g_call);
}
