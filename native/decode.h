/* The per-token decoding step's pieces on caller-owned (preallocated) buffers (decode.c): one token's
 * matrix-vector products and one query's attention over a KV cache (rotary / FoPE at one position: rotary.h).
 * RMSNorm and SwiGLU of one token are norm-optim.c's and softmax.c's passes with rows = 1. */
#ifndef FOPEIFY_DECODE_H
#define FOPEIFY_DECODE_H

#include <stdint.h>

/* y[rows] = W[rows, cols] · x[cols] (W row-major), through the BLAS's sgemv (sgemm with N = 1 on the
 * portable SGEMM); FTZ/DAZ as every BLAS call. */
void fopeify_matvec(const float *W, int64_t rows, int64_t cols, const float *x, float *y);

/* Floats of scratch fopeify_attend_one needs. */
int64_t fopeify_attend_scratch(int64_t n_heads, int64_t len);

/* out[n_heads, head_dim] = softmax(scale · q_h · K_gᵀ) · V_g for each query head h, g = h / (n_heads /
 * n_kv), over the first `len` rows of the caches k, v = [n_kv, capacity, head_dim]. Scores through the
 * BLAS (one sgemv per query head; one GEMM per KV head on the portable SGEMM), the softmax with
 * softmax.c's rows pass (vector exp, its summation order), then the weighted sums the same way. */
void fopeify_attend_one(const float *q, const float *k, const float *v, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                        int64_t len, int64_t capacity, float scale, float *out, float *scratch);

#endif
