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

#include "parallel.h"

#define MAX_DIMS 16

/* A binary op over its collapsed broadcast geometry. */
typedef struct {
  int op, nd;
  const float *A, *B;
  float *O;
  int64_t shape[MAX_DIMS], sa[MAX_DIMS], sb[MAX_DIMS];
  int64_t total;
} binary_job;

/* The inner loop over one row's elements [j0, j1): pa, pb, po point at the row's first element. */
#define ROW_LOOP(EXPR)                                                                                     \
  if (ia == 1 && ib == 1) {                                                                                \
    for (int64_t j = j0; j < j1; j++) {                                                                    \
      double a = pa[j], b = pb[j];                                                                         \
      po[j] = (float)(EXPR);                                                                               \
    }                                                                                                      \
  } else if (ia == 1 && ib == 0) {                                                                         \
    const double b = pb[0];                                                                                \
    for (int64_t j = j0; j < j1; j++) {                                                                    \
      double a = pa[j];                                                                                    \
      po[j] = (float)(EXPR);                                                                               \
    }                                                                                                      \
  } else if (ia == 0 && ib == 1) {                                                                         \
    const double a = pa[0];                                                                                \
    for (int64_t j = j0; j < j1; j++) {                                                                    \
      double b = pb[j];                                                                                    \
      po[j] = (float)(EXPR);                                                                               \
    }                                                                                                      \
  } else {                                                                                                 \
    for (int64_t j = j0; j < j1; j++) {                                                                    \
      double a = pa[j * ia], b = pb[j * ib];                                                               \
      po[j] = (float)(EXPR);                                                                               \
    }                                                                                                      \
  }

/* Output elements [e0, e1) of the job: rows of the innermost dimension, the first and last maybe partial. */
static void binary_range(const binary_job *bj, int64_t e0, int64_t e1) {
  const int nd = bj->nd;
  const int64_t *shape = bj->shape, *sa = bj->sa, *sb = bj->sb;
  const int64_t n = shape[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
  int64_t idx[MAX_DIMS], offA = 0, offB = 0, row = e0 / n;
  for (int d = nd - 2; d >= 0; d--) { /* the first row's position */
    idx[d] = row % shape[d];
    row /= shape[d];
    offA += idx[d] * sa[d];
    offB += idx[d] * sb[d];
  }
  for (int64_t o = e0 / n * n, j0 = e0 - o; o < e1; o += n, j0 = 0) {
    const int64_t j1 = e1 - o < n ? e1 - o : n;
    const float *pa = bj->A + offA, *pb = bj->B + offB;
    float *po = bj->O + o;
    switch (bj->op) {
      case OP_ADD: ROW_LOOP(a + b) break;
      case OP_SUB: ROW_LOOP(a - b) break;
      case OP_MUL: ROW_LOOP(a * b) break;
      case OP_DIV: ROW_LOOP(a / b) break;
      case OP_SQDIFF: ROW_LOOP((a - b) * (a - b)) break;
    }
    for (int d = nd - 2; d >= 0; d--) {
      offA += sa[d];
      offB += sb[d];
      if (++idx[d] < shape[d]) break;
      offA -= sa[d] * shape[d];
      offB -= sb[d] * shape[d];
      idx[d] = 0;
    }
  }
}

/* Team member t of nt: its share of the output, cut at multiples of 16 elements (64-byte lines), so
 * that no two threads write one cache line. */
static void binary_part(void *ctx, int t, int nt) {
  const binary_job *bj = (const binary_job *)ctx;
  const int64_t e0 = t == 0 ? 0 : bj->total * t / nt / 16 * 16;
  const int64_t e1 = t + 1 == nt ? bj->total : bj->total * (t + 1) / nt / 16 * 16;
  if (e1 > e0) binary_range(bj, e0, e1);
}

/* Below this many output elements one thread does it all: waking the team costs microseconds, a
 * 64K-element add about 30 µs on one core. */
#define BINARY_TEAM_MIN_ELEMENTS 65536

const char *fopeify_binary(int op, const float *A, size_t lenA, const float *B, size_t lenB, float *O, size_t lenO,
                           const double *g, size_t glen) {
  if (glen < 1 || g[0] < 1 || g[0] > MAX_DIMS || glen != 1 + 3 * (size_t)g[0] || op < OP_ADD || op > OP_SQDIFF)
    return "binary: bad op or geometry";
  binary_job bj = {.op = op, .nd = (int)g[0], .A = A, .B = B, .O = O, .total = 1};
  const int nd = bj.nd;
  int64_t maxA = 0, maxB = 0;
  for (int d = 0; d < nd; d++) {
    bj.shape[d] = (int64_t)g[1 + d];
    bj.sa[d] = (int64_t)g[1 + nd + d];
    bj.sb[d] = (int64_t)g[1 + 2 * nd + d];
    if (bj.shape[d] < 1 || bj.sa[d] < 0 || bj.sb[d] < 0) return "binary: bad geometry";
    bj.total *= bj.shape[d];
    maxA += (bj.shape[d] - 1) * bj.sa[d];
    maxB += (bj.shape[d] - 1) * bj.sb[d];
  }
  if (bj.total > (int64_t)lenO || maxA >= (int64_t)lenA || maxB >= (int64_t)lenB) return "binary: geometry exceeds the arrays";
  if (bj.total < BINARY_TEAM_MIN_ELEMENTS) binary_range(&bj, 0, bj.total);
  else parallel_team(binary_part, &bj, parallel_team_size());
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
