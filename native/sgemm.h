/* The portable SGEMM (sgemm.c): fopeify's own GEMM, used when no BLAS library loads. */
#ifndef FOPEIFY_SGEMM_H
#define FOPEIFY_SGEMM_H

#include <stdint.h>

/* Picks the variant for this CPU (once) and returns its name: "portable-avx512", "portable-avx2" or
 * "portable-generic". */
const char *fopeify_portable_init(void);

/* Switch to the named variant when this build has it and this CPU runs it (tests compare variants on
 * one machine); returns 0 and changes nothing otherwise. */
int fopeify_portable_use(const char *name);

/* cblas_sgemm's signature and semantics (order 101 row-major / 102 column-major, trans 111 / 112),
 * so the addon calls it exactly like a dlopen()ed BLAS. */
void fopeify_portable_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                            int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Row-major C = alpha·op(A)·op(B) + beta·C on the calling thread alone (ta, tb: transposed), for
 * callers that run their own threads (attention.c). Packing buffers are per thread and kept. */
void fopeify_portable_sgemm_1t(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                               const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* Threads used by one call (1..64); the pool's threads start on first use. */
void fopeify_portable_set_threads(int n);
int fopeify_portable_get_threads(void);

#endif
