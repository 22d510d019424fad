/* The vector exp shared by the softmax and SwiGLU passes (header only: it must inline into the
 * target_clones variants of its callers). GCC/Clang vector extensions, 8 lanes wide where the CPU
 * has AVX2 (target_clones picks the variant at load time) and 4 wide elsewhere. */
#ifndef FOPEIFY_VEXP_H
#define FOPEIFY_VEXP_H

#include <stdint.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define FOPEIFY_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FOPEIFY_CLONES
#endif

/* m ? a : b per lane, m from a vector comparison (all ones / all zeros); C has no vector ?: */
static inline v8f v8_select(v8i m, v8f a, v8f b) {
  v8i ai, bi;
  memcpy(&ai, &a, sizeof ai);
  memcpy(&bi, &b, sizeof bi);
  v8i ri = (ai & m) | (bi & ~m);
  v8f r;
  memcpy(&r, &ri, sizeof r);
  return r;
}

/* A branch-free Cephes-style polynomial (relative error ~1e-7). The constants and the order of every
 * operation are those of vector-math.ts's WebAssembly exp, so both give the same bits (training
 * results do not depend on which one ran). */
#define EXP_LO (-87.33654475f)
#define EXP_HI (88.3762626647949f)
static inline v8f v8_exp(v8f x) {
  const v8f lo = (v8f){EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO};
  const v8f hi = (v8f){EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI};
  v8f xc = v8_select(x < hi, x, hi);
  xc = v8_select(xc > lo, xc, lo);
  /* n = round(x·log2 e) with the 1.5·2^23 trick; the low bits of t hold n. */
  const v8f magic = (v8f){12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f};
  v8f t = xc * 1.44269504088896341f + magic;
  v8f n = t - magic;
  v8f r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  v8f p = 1.9875691500e-4f * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  v8i ti;
  memcpy(&ti, &t, sizeof ti);
  v8i e = (ti - 0x4B400000 + 127) << 23;
  v8f scale;
  memcpy(&scale, &e, sizeof scale);
  v8f y = p * scale;
  const v8f zero = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
  return v8_select(x >= lo, y, zero); /* −∞ (masked), NaN and deep underflow give exactly 0 */
}

static inline float f_exp(float x) {
  v8f v = (v8f){x, x, x, x, x, x, x, x};
  return v8_exp(v)[0];
}

#endif
