/*
 * Elementwise arithmetic: tfjs-cpu computes each element as a JavaScript (double precision)
 * expression of float32 inputs and stores the result to a Float32Array. Doing exactly that here -
 * double arithmetic, one conversion to float at the store - gives bit-identical results (built with
 * -ffp-contract=off so the compiler cannot fuse a*b+c into an FMA). The loops vectorise; JS does not.
 * Only IEEE-exact operations (+ - * / sqrt) are here: exp/log/tanh would need V8's own libm to match
 * bit for bit.
 */
#include "elementwise.h"

#include <math.h>
#include <stdint.h>

#define BIN_LOOP(EXPR)                                                                                     \
  for (int64_t o = 0; o < total; o += n) {                                                                 \
    if (ia == 1 && ib == 1) {                                                                              \
      const float *pa = A + offA, *pb = B + offB;                                                          \
      float *po = O + o;                                                                                   \
      for (int64_t j = 0; j < n; j++) {                                                                    \
        double a = pa[j], b = pb[j];                                                                       \
        po[j] = (float)(EXPR);                                                                             \
      }                                                                                                    \
    } else if (ia == 1 && ib == 0) {                                                                       \
      const float *pa = A + offA;                                                                          \
      const double b = B[offB];                                                                            \
      float *po = O + o;                                                                                   \
      for (int64_t j = 0; j < n; j++) {                                                                    \
        double a = pa[j];                                                                                  \
        po[j] = (float)(EXPR);                                                                             \
      }                                                                                                    \
    } else if (ia == 0 && ib == 1) {                                                                       \
      const double a = A[offA];                                                                            \
      const float *pb = B + offB;                                                                          \
      float *po = O + o;                                                                                   \
      for (int64_t j = 0; j < n; j++) {                                                                    \
        double b = pb[j];                                                                                  \
        po[j] = (float)(EXPR);                                                                             \
      }                                                                                                    \
    } else {                                                                                               \
      for (int64_t j = 0; j < n; j++) {                                                                    \
        double a = A[offA + j * ia], b = B[offB + j * ib];                                                 \
        O[o + j] = (float)(EXPR);                                                                          \
      }                                                                                                    \
    }                                                                                                      \
    for (int d = nd - 2; d >= 0; d--) {                                                                    \
      offA += sa[d];                                                                                       \
      offB += sb[d];                                                                                       \
      if (++idx[d] < shape[d]) break;                                                                      \
      offA -= sa[d] * shape[d];                                                                            \
      offB -= sb[d] * shape[d];                                                                            \
      idx[d] = 0;                                                                                          \
    }                                                                                                      \
  }

#define MAX_DIMS 16

const char *fopeify_binary(int op, const float *A, size_t lenA, const float *B, size_t lenB, float *O, size_t lenO,
                           const double *g, size_t glen) {
  if (glen < 1 || g[0] < 1 || g[0] > MAX_DIMS || glen != 1 + 3 * (size_t)g[0] || op < OP_ADD || op > OP_SQDIFF)
    return "binary: bad op or geometry";
  const int nd = (int)g[0];
  int64_t shape[MAX_DIMS], sa[MAX_DIMS], sb[MAX_DIMS], idx[MAX_DIMS];
  int64_t total = 1, maxA = 0, maxB = 0;
  for (int d = 0; d < nd; d++) {
    shape[d] = (int64_t)g[1 + d];
    sa[d] = (int64_t)g[1 + nd + d];
    sb[d] = (int64_t)g[1 + 2 * nd + d];
    idx[d] = 0;
    if (shape[d] < 1 || sa[d] < 0 || sb[d] < 0) return "binary: bad geometry";
    total *= shape[d];
    maxA += (shape[d] - 1) * sa[d];
    maxB += (shape[d] - 1) * sb[d];
  }
  if (total > (int64_t)lenO || maxA >= (int64_t)lenA || maxB >= (int64_t)lenB) return "binary: geometry exceeds the arrays";
  const int64_t n = shape[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
  int64_t offA = 0, offB = 0;
  switch (op) {
    case OP_ADD: BIN_LOOP(a + b) break;
    case OP_SUB: BIN_LOOP(a - b) break;
    case OP_MUL: BIN_LOOP(a * b) break;
    case OP_DIV: BIN_LOOP(a / b) break;
    case OP_SQDIFF: BIN_LOOP((a - b) * (a - b)) break;
  }
  return NULL;
}

void fopeify_unary(int op, const float *X, float *O, size_t count) {
  const int64_t n = (int64_t)count;
  switch (op) {
    case UOP_NEG:
      for (int64_t i = 0; i < n; i++) O[i] = (float)(-1.0 * (double)X[i]);
      break;
    case UOP_SQUARE:
      for (int64_t i = 0; i < n; i++) {
        double x = X[i];
        O[i] = (float)(x * x);
      }
      break;
    case UOP_SQRT:
      for (int64_t i = 0; i < n; i++) O[i] = (float)sqrt((double)X[i]);
      break;
    case UOP_RSQRT:
      for (int64_t i = 0; i < n; i++) O[i] = (float)(1.0 / sqrt((double)X[i]));
      break;
    case UOP_RELU: /* Math.max(0, x): NaN stays NaN, -0 becomes +0 */
      for (int64_t i = 0; i < n; i++) {
        double x = X[i];
        O[i] = (float)(x != x ? x : (x > 0 ? x : 0.0));
      }
      break;
    case UOP_ABS:
      for (int64_t i = 0; i < n; i++) O[i] = (float)fabs((double)X[i]);
      break;
  }
}
