/* BLAS loading (blas.c): finds a BLAS library at run time with dlopen(), or falls back to the
 * portable SGEMM (sgemm.c), and owns the thread count every threaded pass of the addon uses. */
#ifndef FOPEIFY_BLAS_H
#define FOPEIFY_BLAS_H

#include <stdint.h>

/* ---- cblas ABI, declared by hand (values fixed by the CBLAS standard) ---- */
enum { CblasRowMajor = 101, CblasColMajor = 102 };
enum { CblasNoTrans = 111, CblasTrans = 112 };
typedef void (*sgemm_fn)(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                         int lda, const float *B, int ldb, float beta, float *C, int ldc);
typedef void (*sgemv_fn)(int order, int trans, int M, int N, float alpha, const float *A, int lda, const float *x,
                         int incx, float beta, float *y, int incy);

/* What load() was asked for; a field of -1 leaves that setting as it is. */
typedef struct {
  int64_t threads;     /* 0: the library's default (one per core for the portable SGEMM) */
  int64_t timeout;     /* OPENBLAS_THREAD_TIMEOUT, used when 4..30 */
  int system_blas;     /* 0: skip the system BLAS libraries, use the portable SGEMM */
  int flush_denormals; /* FTZ/DAZ around BLAS calls: 1 on, 0 off, -1 unchanged */
  int auto_coretype;   /* pick OPENBLAS_CORETYPE from CPU features: 1 on, 0 off, -1 unchanged */
  char *const *paths;  /* libraries to try first, kind "custom" */
  int npaths;
} fopeify_blas_options;

/* Loads a BLAS once (idempotent: a later call only changes the thread count). Always succeeds: with
 * no library, the portable SGEMM takes its place (kind "portable"). */
void fopeify_blas_load(const fopeify_blas_options *opts);

/* The GEMM in use (NULL before load). */
sgemm_fn fopeify_blas_sgemm(void);
/* The loaded library's cblas_sgemm, or NULL when no system BLAS loaded. */
sgemm_fn fopeify_blas_system_sgemm(void);
/* Which GEMM sgemm calls run: "system" (the library's) or "portable" ("" before load). */
const char *fopeify_blas_gemm_engine(void);
/* Makes every later sgemm call run `engine` ("system" | "portable"); the library stays loaded either
 * way (its sgemv and thread settings still serve). Returns 0 and changes nothing when that engine is not
 * available ("system" without a library) or before load. */
int fopeify_blas_use_gemm(const char *engine);
/* The loaded library's cblas_sgemv, or NULL (the portable SGEMM has none: callers use sgemm, N = 1). */
sgemv_fn fopeify_blas_sgemv(void);
/* Sets the BLAS's, the portable SGEMM's and the addon's passes' thread count. */
void fopeify_blas_set_threads(int n);
/* Threads the BLAS reports (its own count when it can tell, else the one set). */
int fopeify_blas_reported_threads(void);
/* Threads the addon's own threaded passes use (parallel.c). */
int fopeify_blas_thread_count(void);
const char *fopeify_blas_library(void);
const char *fopeify_blas_kind(void);
/* OpenBLAS's build description, or NULL. */
const char *fopeify_blas_config(void);
int fopeify_blas_flush_denormals(void);

/* ---- denormal flushing ----
 * Denormal products make OpenBLAS ~1.5x slower. MXCSR is per thread, and threads created by a
 * thread inherit its MXCSR, so FTZ/DAZ is set around every call into the BLAS (dlopen included,
 * because OpenBLAS starts its worker threads in its constructor) and the caller's value restored
 * afterwards: JavaScript on the main thread keeps IEEE semantics. Cost: two ldmxcsr per call. */
typedef struct {
  unsigned int saved;
} fp_guard;
void fp_enter(fp_guard *g);
void fp_leave(fp_guard *g);

#endif
