/*
 * The rotary / FoPE rotation in C, written once: decoding rotates one token's heads (rotaryOne), the
 * batched forward and the training step rotate q and k blocks of T positions (rotaryBlocks). Hand-
 * written because the tf ops make nine tensors of a rotation (split, four products, sum, difference,
 * concat), and a JS loop over blocks copied x first and ran on one thread.
 */
#include "rotary.h"

#include <string.h>

#include "parallel.h"

void fopeify_rotary_one(const float *x, float *y, int64_t heads, int64_t heads_per_group, int64_t head_dim, int64_t dim,
                        const float *cos, const float *sin) {
  const int64_t half = dim / 2;
  for (int64_t h = 0; h < heads; h++) {
    const float *x1 = x + h * head_dim, *x2 = x1 + half;
    float *y1 = y + h * head_dim, *y2 = y1 + half;
    const float *c = cos + (h / heads_per_group) * half, *s = sin + (h / heads_per_group) * half;
    for (int64_t i = 0; i < half; i++) {
      const float a = x1[i], b = x2[i];
      const float ac = a * c[i], bs = b * s[i], bc = b * c[i], as = a * s[i];
      y1[i] = ac - bs;
      y2[i] = bc + as;
    }
    if (y != x && dim < head_dim) memcpy(y1 + dim, x1 + dim, (size_t)(head_dim - dim) * sizeof(float));
  }
}

static int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }

typedef struct {
  const float *x, *cos, *sin;
  float *out;
  int64_t K, R, T, D, dim, G;
  int tokens;
} rotary_job;

/* Rows [r0, r1) of the flattened [B·K·R·T] rows, in runs that stay within one block (one table). */
static void rotary_ranges(void *ctx, int64_t r0, int64_t r1) {
  const rotary_job *j = (const rotary_job *)ctx;
  const int64_t T = j->T, D = j->D, half = j->dim / 2;
  if (j->tokens) { /* rows [B, T, K, R]: a token's R rows of one group share a table row */
    for (int64_t r = r0; r < r1;) {
      const int64_t t = (r / (j->K * j->R)) % T, group = j->G == 1 ? 0 : (r / j->R) % j->K, n = imin64(r1 - r, j->R - r % j->R);
      const int64_t tab = (group * T + t) * half;
      fopeify_rotary_one(j->x + r * D, j->out + r * D, n, n, D, j->dim, j->cos + tab, j->sin + tab);
      r += n;
    }
    return;
  }
  for (int64_t r = r0; r < r1;) {
    const int64_t block = r / T, t = r % T, n = (r1 - r < T - t) ? r1 - r : T - t;
    const int64_t group = j->G == 1 ? 0 : (block / j->R) % j->K;
    const int64_t tab = (group * T + t) * half;
    /* The block's rows are rotaryOne's "heads", each with its own position's table row. */
    fopeify_rotary_one(j->x + r * D, j->out + r * D, n, 1, D, j->dim, j->cos + tab, j->sin + tab);
    r += n;
  }
}

void fopeify_rotary_blocks(const float *x, float *out, int64_t B, int64_t K, int64_t R, int64_t T, int64_t D, int64_t dim,
                           int64_t G, const float *cos, const float *sin, int tokens) {
  rotary_job j = {x, cos, sin, out, K, R, T, D, dim, G, tokens};
  const int64_t rows = B * K * R * T;
  if (rows == 0 || D == 0) return;
  parallel_ranges(rotary_ranges, &j, rows, 1, (65536 + D - 1) / D);
}
