/*
 * Decoding one token costs a few matrix-vector products and one attention row per layer; done as
 * tensor ops it pays a fixed per-op overhead (allocation, dispatch) that dominates at batch 1. These
 * functions work on buffers the caller allocates once (weights, KV caches grown in place, scratch).
 */
#include "decode.h"

#include <math.h>

#include "blas.h"
#include "softmax.h"

void fopeify_matvec(const float *W, int64_t rows, int64_t cols, const float *x, float *y) {
  sgemv_fn gemv = fopeify_blas_sgemv();
  fp_guard g;
  fp_enter(&g);
  if (gemv) gemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)cols, 1.0f, W, (int)cols, x, 1, 0.0f, y, 1);
  else fopeify_blas_sgemm()(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, 1, (int)cols, 1.0f, W, (int)cols, x, 1, 0.0f, y, 1);
  fp_leave(&g);
}

/* Score rows padded to a multiple of 4 (the softmax pass's unit) with −∞, which it turns into 0. */
static int64_t padded(int64_t len) { return (len + 3) & ~(int64_t)3; }

int64_t fopeify_attend_scratch(int64_t n_heads, int64_t len) { return n_heads * padded(len) + 3 * n_heads; }

void fopeify_attend_one(const float *q, const float *k, const float *v, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                        int64_t len, int64_t capacity, float scale, float *out, float *scratch) {
  const int64_t r = n_heads / n_kv, n4 = padded(len), D = head_dim;
  float *S = scratch, *m_old = S + n_heads * n4, *m_new = m_old + n_heads, *sum = m_new + n_heads;
  /* One query per head: matrix-vector products, which the BLAS's sgemv streams from memory faster
   * than a GEMM of r rows (which packs the keys first) or plain C loops (measured); a KV head's other
   * query heads find its keys in cache. The portable SGEMM has no sgemv: one GEMM per KV head there. */
  sgemv_fn gemv = fopeify_blas_sgemv();
  sgemm_fn gemm = fopeify_blas_sgemm();
  fp_guard g;
  fp_enter(&g);
  for (int64_t kv = 0; kv < n_kv; kv++) { /* S[r heads, len] = scale · Q_g · K_gᵀ */
    const float *K = k + kv * capacity * D;
    if (gemv)
      for (int64_t h = kv * r; h < (kv + 1) * r; h++)
        gemv(CblasRowMajor, CblasNoTrans, (int)len, (int)D, scale, K, (int)D, q + h * D, 1, 0.0f, S + h * n4, 1);
    else
      gemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r, (int)len, (int)D, scale, q + kv * r * D, (int)D, K, (int)D, 0.0f,
           S + kv * r * n4, (int)n4);
  }
  fp_leave(&g);
  for (int64_t h = 0; h < n_heads; h++) {
    m_old[h] = -INFINITY;
    for (int64_t j = len; j < n4; j++) S[h * n4 + j] = -INFINITY;
  }
  fopeify_softmax_rows(S, n_heads, n4, m_old, m_new, sum);
  for (int64_t h = 0; h < n_heads; h++) {
    const float inv = 1.0f / sum[h];
    for (int64_t j = 0; j < len; j++) S[h * n4 + j] *= inv;
  }
  fp_enter(&g);
  for (int64_t kv = 0; kv < n_kv; kv++) { /* out[r heads, D] = P · V_g */
    const float *V = v + kv * capacity * D;
    if (gemv)
      for (int64_t h = kv * r; h < (kv + 1) * r; h++)
        gemv(CblasRowMajor, CblasTrans, (int)len, (int)D, 1.0f, V, (int)D, S + h * n4, 1, 0.0f, out + h * D, 1);
    else
      gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)D, (int)len, 1.0f, S + kv * r * n4, (int)n4, V, (int)D, 0.0f,
           out + kv * r * D, (int)D);
  }
  fp_leave(&g);
}
