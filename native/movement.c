/*
 * Strided copies for the cpu backend's data-movement kernels (fast-movement.ts). Hand-written because
 * a training step moves the attention heads' layout ([B,T,n,D] ⇄ [B,n,T,D]) hundreds of times, and
 * in JavaScript each 64-float row costs a subarray + set (an allocation and a call) on one thread.
 * Here: the caller's collapsed geometry, memcpy for contiguous inner runs, a typed loop otherwise,
 * rows split across threads when the copy is large. A copy moves bits, so the result is the same
 * whatever the element type or the order.
 */
#include "movement.h"

#include <string.h>

#include "parallel.h"

#define MAX_DIMS 16
/* Bytes each copying thread gets at least. A copy is memory-bound and its destination is a fresh
 * buffer: on the 2-core test machine (shared, loaded) one thread copied [2048, 9, 64] floats (4.6 MB)
 * in ~0.2 ms warm and two were no faster; inside a 2048-token training step Transpose's 360 calls took
 * 546 ms on one thread and 727-781 ms with 2 MiB per thread. So only copies of 16 MiB and more split. */
#define BYTES_PER_THREAD ((int64_t)8 * 1024 * 1024)

typedef struct {
  const char *src;
  char *dst;
  int64_t elem, nd, n; /* element bytes, dims, inner run length (elements) */
  int64_t s_off, d_off;
  int64_t shape[MAX_DIMS], ss[MAX_DIMS], ds[MAX_DIMS]; /* strides in bytes */
} copy_job;

#define STRIDED_RUN(T)                                                                                   \
  for (int64_t j = 0; j < n; j++) *(T *)(d + j * di) = *(const T *)(s + j * si);

/* One inner run of n elements: memcpy when both sides are contiguous. */
static void copy_run(const char *s, char *d, int64_t n, int64_t si, int64_t di, int64_t elem) {
  if (si == elem && di == elem) {
    memcpy(d, s, (size_t)(n * elem));
    return;
  }
  switch (elem) {
    case 4: STRIDED_RUN(uint32_t) break;
    case 1: STRIDED_RUN(uint8_t) break;
    case 2: STRIDED_RUN(uint16_t) break;
    case 8: STRIDED_RUN(uint64_t) break;
    default:
      for (int64_t j = 0; j < n; j++) memcpy(d + j * di, s + j * si, (size_t)elem);
  }
}

/* Rows [r0, r1) of the outer dims (all but the last), walked with an odometer. */
static void copy_rows(void *ctx, int64_t r0, int64_t r1) {
  const copy_job *j = (const copy_job *)ctx;
  const int64_t nd = j->nd, last = nd - 1;
  int64_t idx[MAX_DIMS];
  int64_t so = j->s_off, dof = j->d_off, rem = r0;
  for (int64_t d = last - 1; d >= 0; d--) {
    idx[d] = rem % j->shape[d];
    rem /= j->shape[d];
    so += idx[d] * j->ss[d];
    dof += idx[d] * j->ds[d];
  }
  for (int64_t r = r0; r < r1; r++) {
    copy_run(j->src + so, j->dst + dof, j->n, j->ss[last], j->ds[last], j->elem);
    for (int64_t d = last - 1; d >= 0; d--) {
      so += j->ss[d];
      dof += j->ds[d];
      if (++idx[d] < j->shape[d]) break;
      so -= j->ss[d] * j->shape[d];
      dof -= j->ds[d] * j->shape[d];
      idx[d] = 0;
    }
  }
}

const char *fopeify_copy_strided(const void *src, size_t src_len, void *dst, size_t dst_len, size_t elem, const double *g,
                                 size_t glen) {
  if (glen < 1 || !(g[0] >= 1 && g[0] <= MAX_DIMS) || g[0] != (double)(int64_t)g[0] || glen != 3 + 3 * (size_t)g[0])
    return "copyStrided: geometry must be [nd (1..16), sOff, dOff, shape[nd], sStride[nd], dStride[nd]]";
  const int64_t nd = (int64_t)g[0];
  copy_job j = {(const char *)src, (char *)dst, (int64_t)elem, nd, 0, 0, 0, {0}, {0}, {0}};
  const double LIMIT = 9007199254740991.0;
  for (size_t i = 1; i < glen; i++)
    if (!(g[i] >= 0 && g[i] <= LIMIT) || g[i] != (double)(int64_t)g[i]) return "copyStrided: geometry entries must be integers ≥ 0";
  int64_t total = 1, s_max = (int64_t)g[1], d_max = (int64_t)g[2];
  for (int64_t d = 0; d < nd; d++) {
    const int64_t n = (int64_t)g[3 + d], s = (int64_t)g[3 + nd + d], t = (int64_t)g[3 + 2 * nd + d];
    if (n == 0) return NULL; /* nothing to copy */
    /* Bound every factor so the sums below cannot overflow (2^53 · 2^53 would). */
    if (n > ((int64_t)1 << 40) || s > ((int64_t)1 << 40) || t > ((int64_t)1 << 40)) return "copyStrided: geometry too large";
    total *= n;
    if (total > ((int64_t)1 << 40)) return "copyStrided: geometry too large";
    s_max += (n - 1) * s;
    d_max += (n - 1) * t;
    j.shape[d] = n;
    j.ss[d] = s * j.elem;
    j.ds[d] = t * j.elem;
  }
  if (s_max >= (int64_t)src_len || d_max >= (int64_t)dst_len) return "copyStrided: geometry exceeds the arrays";
  const char *s0 = (const char *)src, *d0 = (const char *)dst;
  if (s0 < d0 + dst_len * elem && d0 < s0 + src_len * elem) return "copyStrided: source and destination overlap";
  j.s_off = (int64_t)g[1] * j.elem;
  j.d_off = (int64_t)g[2] * j.elem;
  j.n = j.shape[nd - 1];
  const int64_t rows = total / j.n, row_bytes = j.n * j.elem;
  parallel_ranges_at_least(copy_rows, &j, rows, 1, (BYTES_PER_THREAD + row_bytes - 1) / row_bytes);
  return NULL;
}
