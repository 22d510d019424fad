/* Rotary / FoPE position rotation (rotary.c): one token's heads for decoding, and training's and
 * prefill's [B, nKv, R, T, D] blocks out of place on the BLAS's thread count. */
#ifndef FOPEIFY_ROTARY_H
#define FOPEIFY_ROTARY_H

#include <stdint.h>

/* y = x rotated, x = [heads, head_dim] (y may be x): y1 = x1·c − x2·s, y2 = x2·c + x1·s on the first
 * `dim` entries of each head (x1, x2 its halves; the rest is copied), c and s the half tables
 * [groups, dim/2]; head h uses group h / heads_per_group (FoPE's per-KV-head tables; RoPE: one group).
 * Float arithmetic, one rounding per operation: the bits of applyRotaryTf. */
void fopeify_rotary_one(const float *x, float *y, int64_t heads, int64_t heads_per_group, int64_t head_dim, int64_t dim,
                        const float *cos, const float *sin);

/* out = x rotated, x = [B, K, R, T, D], or with `tokens` token-major [B, T, K, R, D] (the projections'
 * rows); out may be x, not partly overlap it: the row of position t in block (k, r) uses row t of the
 * tables [G, T, dim/2] of group k (G = K) or of the one group (G = 1). Rows across threads; each row is
 * fopeify_rotary_one's arithmetic, so the bits depend on neither the thread count nor the layout. */
void fopeify_rotary_blocks(const float *x, float *out, int64_t B, int64_t K, int64_t R, int64_t T, int64_t D, int64_t dim,
                           int64_t G, const float *cos, const float *sin, int tokens);

#endif
