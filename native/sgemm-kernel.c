/*
 * One ISA variant of the portable SGEMM's single-thread driver (see sgemm.c for why it exists).
 * native/build.mjs compiles this file once per variant, each time with the variant's -m flags and
 * these macros, into its own object; sgemm.c picks one at load time by CPU features:
 *   SG_NAME   the function's name (e.g. fopeify_sgemm_serial_avx512)
 *   SG_VBYTES bytes per vector register (64 AVX-512, 32 AVX2, 16 generic)
 *   SG_MR     rows of the register tile
 * The register tile is SG_MR rows x 2 vectors; with FMA available the compiler fuses acc += a * b
 * (this file is built with -ffp-contract=fast; the addon's elementwise code is not).
 *
 * Algorithm (Goto / BLIS): C is cut into NC-column slabs; K into KC-deep slices; for each slice the
 * B block (KC x NC) is packed into NR-wide panels and each MC-row block of A into MR-tall panels, so
 * the micro-kernel streams both from contiguous, cache-resident memory whatever the transposes and
 * leading dimensions were. Partial tiles at the edges are packed with zeros and written through a
 * small buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef SG_NAME
#error "build with -DSG_NAME=... -DSG_VBYTES=... -DSG_MR=..."
#endif

#define SG_W (SG_VBYTES / 4) /* floats per vector */
#define SG_NR (2 * SG_W)     /* columns of the register tile */
#ifndef SG_KC
#define SG_KC 256 /* depth of a packed slice: an A panel + a B panel stay in L1/L2 */
#endif
#define SG_MC (SG_MR * 16)   /* rows of A packed at once (~200 KB at most: L2) */
#define SG_NC 2048           /* columns of B packed at once (~2 MB: L3) */

typedef float vf __attribute__((vector_size(SG_VBYTES)));

static inline vf vload(const float *p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* Packing buffers, one pair per thread, grown on demand and kept (the pool's threads live as long
 * as the process): allocating 2 MB per call would cost page faults on every GEMM. */
static __thread float *tl_pa, *tl_pb;
static __thread size_t tl_pa_len, tl_pb_len;

static float *grow(float **buf, size_t *len, size_t need) {
  if (*len >= need) return *buf;
  free(*buf);
  *buf = NULL;
  *len = 0;
  void *p = NULL;
  if (posix_memalign(&p, 64, need * sizeof(float)) != 0) return NULL;
  *buf = (float *)p;
  *len = need;
  return *buf;
}

typedef int vi __attribute__((vector_size(SG_VBYTES)));

/*
 * Transpose a W x W block held in registers (r[i] = row i; afterwards r[i] = column i): one stage per
 * bit of the index, each swapping that bit between row and column index with two-source shuffles
 * (W log2 W of them, vpermt2ps on AVX-512). The packing of a transposed operand was one scalar load
 * and store per element, ~25 % of the SGEMM driver's time on training shapes; this is data movement
 * only, so the packed panels, and every product, are the same bits.
 */
static inline void transpose_block(vf r[SG_W]) {
#pragma GCC unroll 8
  for (int k = 1; k < SG_W; k <<= 1) {
    vi lo, hi;
    for (int j = 0; j < SG_W; j++) {
      lo[j] = (j & k) ? SG_W + (j ^ k) : j;
      hi[j] = (j & k) ? SG_W + j : (j | k);
    }
#pragma GCC unroll 16
    for (int i = 0; i < SG_W; i++) {
      if (i & k) continue;
      const vf a = r[i], b = r[i | k];
      r[i] = __builtin_shuffle(a, b, lo);
      r[i | k] = __builtin_shuffle(a, b, hi);
    }
  }
}

/* dst[p*ld + i] = src[i*lds + p] for i < rows (<= W), p < W: rows of src become columns of dst. */
static inline void transpose_rows(const float *src, int64_t lds, int rows, float *dst, int64_t ld) {
  vf r[SG_W];
  for (int i = 0; i < SG_W; i++) r[i] = i < rows ? vload(src + i * lds) : (vf){0};
  transpose_block(r);
  for (int q = 0; q < SG_W; q++) memcpy(dst + q * ld, &r[q], (size_t)rows * sizeof(float));
}

/* op(A) rows [0, mc) x depth [0, kc) into MR-tall panels: panel r, depth p at pa[r*MR*kc + p*MR + i]. */
static void pack_a(int ta, const float *A, int64_t lda, int64_t mc, int64_t kc, float *pa) {
  for (int64_t r0 = 0; r0 < mc; r0 += SG_MR) {
    int64_t mr = mc - r0 < SG_MR ? mc - r0 : SG_MR;
    float *dst = pa + r0 * kc;
    if (!ta && mr == SG_MR) {
      /* A transpose: MR row streams in, one contiguous stream out; W depths at a time in registers. */
      const float *src = A + r0 * lda;
      int64_t p = 0;
      for (; p + SG_W <= kc; p += SG_W)
        for (int i0 = 0; i0 < SG_MR; i0 += SG_W)
          transpose_rows(src + i0 * lda + p, lda, SG_MR - i0 < SG_W ? SG_MR - i0 : SG_W, dst + p * SG_MR + i0, SG_MR);
      for (; p < kc; p++)
        for (int i = 0; i < SG_MR; i++) dst[p * SG_MR + i] = src[i * lda + p];
    } else if (!ta) {
      for (int64_t i = 0; i < mr; i++) {
        const float *src = A + (r0 + i) * lda;
        for (int64_t p = 0; p < kc; p++) dst[p * SG_MR + i] = src[p];
      }
    } else {
      for (int64_t p = 0; p < kc; p++) {
        const float *src = A + p * lda + r0;
        for (int64_t i = 0; i < mr; i++) dst[p * SG_MR + i] = src[i];
      }
    }
    if (mr < SG_MR)
      for (int64_t p = 0; p < kc; p++)
        for (int64_t i = mr; i < SG_MR; i++) dst[p * SG_MR + i] = 0.0f;
  }
}

/* op(B) depth [0, kc) x columns [0, nc) into NR-wide panels: panel c, depth p at pb[c*NR*kc + p*NR + j]. */
static void pack_b(int tb, const float *B, int64_t ldb, int64_t kc, int64_t nc, float *pb) {
  for (int64_t c0 = 0; c0 < nc; c0 += SG_NR) {
    int64_t nr = nc - c0 < SG_NR ? nc - c0 : SG_NR;
    float *dst = pb + c0 * kc;
    if (!tb) {
      if (nr == SG_NR) {
        for (int64_t p = 0; p < kc; p++) {
          const float *src = B + p * ldb + c0;
          vstore(dst + p * SG_NR, vload(src));
          vstore(dst + p * SG_NR + SG_W, vload(src + SG_W));
        }
      } else {
        for (int64_t p = 0; p < kc; p++) {
          const float *src = B + p * ldb + c0;
          int64_t j = 0;
          for (; j < nr; j++) dst[p * SG_NR + j] = src[j];
          for (; j < SG_NR; j++) dst[p * SG_NR + j] = 0.0f;
        }
      }
    } else if (nr == SG_NR) {
      /* A transpose: NR row streams in, one contiguous stream out; W depths at a time in registers. */
      const float *src = B + c0 * ldb;
      int64_t p = 0;
      for (; p + SG_W <= kc; p += SG_W) {
        transpose_rows(src + p, ldb, SG_W, dst + p * SG_NR, SG_NR);
        transpose_rows(src + SG_W * ldb + p, ldb, SG_W, dst + p * SG_NR + SG_W, SG_NR);
      }
      for (; p < kc; p++)
        for (int j = 0; j < SG_NR; j++) dst[p * SG_NR + j] = src[j * ldb + p];
    } else {
      for (int64_t j = 0; j < nr; j++) {
        const float *src = B + (c0 + j) * ldb;
        for (int64_t p = 0; p < kc; p++) dst[p * SG_NR + j] = src[p];
      }
      if (nr < SG_NR)
        for (int64_t p = 0; p < kc; p++)
          for (int64_t j = nr; j < SG_NR; j++) dst[p * SG_NR + j] = 0.0f;
    }
  }
}

/*
 * The micro-kernel: an MR x NR tile of alpha * (packed A panel) (packed B panel) into C.
 * first: this is the first K slice, so C = alpha*acc + beta*C (beta == 0: C is not read, so NaN or
 * garbage there is ignored, as BLAS does); later slices add: C += alpha*acc.
 * mr, nr < MR, NR at the edges: the tile goes through a buffer and only mr x nr elements are touched.
 */
static void kernel(int64_t kc, const float *pa, const float *pb, float *C, int64_t ldc, int mr, int nr, float alpha,
                   float beta, int first) {
  vf acc0[SG_MR], acc1[SG_MR];
  for (int i = 0; i < SG_MR; i++) acc0[i] = acc1[i] = (vf){0};
  for (int64_t p = 0; p < kc; p++) {
    const vf b0 = vload(pb), b1 = vload(pb + SG_W);
#pragma GCC unroll 16
    for (int i = 0; i < SG_MR; i++) {
      const float a = pa[i]; /* scalar x vector: a broadcast */
      acc0[i] += a * b0;
      acc1[i] += a * b1;
    }
    pa += SG_MR;
    pb += SG_NR;
  }
  if (mr == SG_MR && nr == SG_NR) {
    for (int i = 0; i < SG_MR; i++) {
      float *c = C + i * ldc;
      vf r0 = alpha * acc0[i], r1 = alpha * acc1[i];
      if (!first) {
        r0 += vload(c);
        r1 += vload(c + SG_W);
      } else if (beta != 0.0f) {
        r0 += beta * vload(c);
        r1 += beta * vload(c + SG_W);
      }
      vstore(c, r0);
      vstore(c + SG_W, r1);
    }
    return;
  }
  float tile[SG_MR * SG_NR];
  for (int i = 0; i < SG_MR; i++) {
    vstore(tile + i * SG_NR, alpha * acc0[i]);
    vstore(tile + i * SG_NR + SG_W, alpha * acc1[i]);
  }
  for (int i = 0; i < mr; i++) {
    float *c = C + i * ldc;
    const float *t = tile + i * SG_NR;
    if (!first)
      for (int j = 0; j < nr; j++) c[j] += t[j];
    else if (beta != 0.0f)
      for (int j = 0; j < nr; j++) c[j] = t[j] + beta * c[j];
    else
      for (int j = 0; j < nr; j++) c[j] = t[j];
  }
}

/*
 * Row-major C = alpha * op(A) op(B) + beta * C, one thread. M, N, K >= 1 and alpha != 0 (sgemm.c
 * handles the degenerate cases). Returns 0 when the packing buffers could not be allocated.
 */
int SG_NAME(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
            const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  const int64_t ncMax = N < SG_NC ? (N + SG_NR - 1) / SG_NR * SG_NR : SG_NC;
  const int64_t kcMax = K < SG_KC ? K : SG_KC;
  const int64_t mcMax = M < SG_MC ? (M + SG_MR - 1) / SG_MR * SG_MR : SG_MC;
  float *pb = grow(&tl_pb, &tl_pb_len, (size_t)(kcMax * ncMax));
  float *pa = grow(&tl_pa, &tl_pa_len, (size_t)(kcMax * mcMax));
  if (!pa || !pb) return 0;
  for (int64_t jc = 0; jc < N; jc += SG_NC) {
    const int64_t nc = N - jc < SG_NC ? N - jc : SG_NC;
    for (int64_t pc = 0; pc < K; pc += SG_KC) {
      const int64_t kc = K - pc < SG_KC ? K - pc : SG_KC;
      const int first = pc == 0;
      pack_b(tb, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, kc, nc, pb);
      for (int64_t ic = 0; ic < M; ic += SG_MC) {
        const int64_t mc = M - ic < SG_MC ? M - ic : SG_MC;
        pack_a(ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, pa);
        for (int64_t jr = 0; jr < nc; jr += SG_NR) {
          const int nr = (int)(nc - jr < SG_NR ? nc - jr : SG_NR);
          for (int64_t ir = 0; ir < mc; ir += SG_MR) {
            const int mr = (int)(mc - ir < SG_MR ? mc - ir : SG_MR);
            kernel(kc, pa + ir * kc, pb + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, mr, nr, alpha, beta, first);
          }
        }
      }
    }
  }
  return 1;
}
