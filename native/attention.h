/* Blockwise causal attention for training and prefill (attention.c): the FlashAttention forward and
 * FlashAttention-2 backward recurrences, one call per layer, threaded over work items. */
#ifndef FOPEIFY_ATTENTION_H
#define FOPEIFY_ATTENTION_H

#include <stdint.h>

/* A run of keys/values: key `start + j` of KV head b is row `b·rows + j` of k and v ([BK, rows, D]), or
 * with token-major keys row `(b / nKv · rows + j) · nKv + b % nKv` ([B, rows, nKv, D]). */
typedef struct {
  const float *k, *v;
  int64_t rows, start;
} attn_block;

/* Statuses of the calls below. */
enum { ATTN_OK = 0, ATTN_NO_MEMORY = 1, ATTN_NO_VISIBLE_KEY = 2 };

typedef struct {
  const float *q; /* [BK, R, Tq, D]; query i at sequence index qStart + i */
  float *o;       /* [BK, R, Tq, D] */
  float *lse;     /* [BK, R, Tq] */
  int64_t BK, R, Tq, D, qStart;
  int64_t queryBlock; /* queries per work item (≥ 1) */
  int64_t keyBlock;   /* keys per step within a block (0: the whole block) */
  int64_t window;     /* sliding window (query i sees keys j with i − window < j ≤ i), or < 0: causal */
  float scale;
  const attn_block *blocks;
  int64_t nblocks;
  /* Layouts: head-major as above, or token-major, the projections' own rows (q, o [B, Tq, nKv, R, D],
   * keys [B, rows, nKv, D], BK = B·nKv; lse stays [BK, R, Tq]). nKv ≥ 1 divides BK. */
  int64_t nKv;
  int qTokens, kvTokens;
} attn_forward_args;

/* o = softmax(scale·q·kᵀ, masked)·v and lse = its row log-sum-exp (attention-tf.ts's mathematics).
 * ATTN_NO_VISIBLE_KEY: some query block sees no key at all (o and lse then partly unwritten). */
int fopeify_attention_forward(const attn_forward_args *a);

typedef struct {
  const float *q, *o, *dO; /* [BK, R, T, D] */
  const float *lse;        /* [BK, R, T] */
  const float *k, *v;      /* [BK, T, D]; queries and keys at 0..T−1 */
  float *dq;               /* [BK, R, T, D], written */
  float *dk, *dv;          /* [BK, T, D], written */
  int64_t BK, R, T, D, queryBlock, keyBlock, window;
  float scale;
  /* tokens ≠ 0: q, o, dO, dq [B, T, nKv, R, D] and k, v, dk, dv [B, T, nKv, D] (BK = B·nKv, nKv ≥ 1
   * divides BK); lse stays [BK, R, T]. */
  int64_t nKv;
  int tokens;
} attn_backward_args;

/* dq, dk, dv of the forward above (blocks = one run of T keys at 0). Deterministic for a given thread
 * count (the work is assigned to threads without looking at the clock). */
int fopeify_attention_backward(const attn_backward_args *a);

#endif
