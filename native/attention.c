/*
 * Blockwise causal attention of training and prefill: the FlashAttention forward recurrence and the
 * FlashAttention-2 backward, whole layers per call.
 *
 * Why hand-written: the same recurrences driven from JavaScript (one BLAS call per product of a
 * (query block, key block) pair, a threaded softmax pass between them, the heads stacked by copies in
 * JS) reached 65 GFLOP/s forward and 90 backward on 2 cores where the GEMM reaches 270-380: each small
 * product (head dim 64) was split across threads, and the threads met at a barrier several times per
 * block. Here each thread owns whole work items (a query block of one KV head forward, a key block of
 * one KV head backward) and runs single-thread GEMMs (the portable SGEMM's driver) and the softmax
 * arithmetic on its own cache-resident blocks, with no barrier inside a layer. The mathematics is that
 * of attention-tf.ts, which the tests compare with; the mask rule is attention-mask.ts's.
 *
 * Layouts: the R query heads of a KV head are stacked per token (row = token·R + head), so every
 * product of a block pair is one GEMM of tq·R rows. Forward gathers a query block into that layout per
 * work item; backward stacks q, dO, lse and D = rowsum(dO∘o) once per call. The operands themselves
 * are read and written where they lie, head-major [BK, R, T, D] or token-major [B, T, nKv, R, D] (the
 * projections' rows: no transposed copy around the call); only the addressing differs (row_of), the
 * arithmetic and its order are the same in both.
 */
#include "attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "sgemm.h"
#include "vexp.h"

#define GEMM fopeify_portable_sgemm_1t

/* Score rows padded to 16 floats (64 bytes). */
static int64_t padded(int64_t n) { return (n + 15) & ~(int64_t)15; }
static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

static void *alloc_floats(int64_t n) {
  void *p = NULL;
  return posix_memalign(&p, 64, (size_t)(n > 0 ? n : 1) * sizeof(float)) == 0 ? p : NULL;
}

/* The keys [lo, hi) (relative to kStart, within [0, n)) query qi sees: key j ≤ qi, and j > qi − window. */
static void visible_keys(int64_t qi, int64_t kStart, int64_t n, int64_t window, int64_t *lo, int64_t *hi) {
  const int64_t l = window < 0 ? 0 : imin(n, imax(0, qi - window + 1 - kStart));
  *lo = l;
  *hi = imax(l, imin(n, qi - kStart + 1));
}

/* The keys [*first, *end) (sequence indices) of a run of n keys from kStart that some query of
 * qFirst..qLast sees; empty (end ≤ first) when none does. */
static void visible_span(int64_t kStart, int64_t n, int64_t qFirst, int64_t qLast, int64_t window, int64_t *first, int64_t *end) {
  *first = window < 0 ? kStart : imax(kStart, qFirst - window + 1);
  *end = imin(kStart + n, qLast + 1);
}

/* Row (b, r, t) of a [BK, R, T, ·] operand: head-major, or token-major [B, T, nKv, R, ·] (BK = B·nKv). */
static int64_t row_of(int tokens, int64_t nKv, int64_t R, int64_t T, int64_t b, int64_t r, int64_t t) {
  return tokens ? ((b / nKv * T + t) * nKv + b % nKv) * R + r : (b * R + r) * T + t;
}

/* Rows from token t to token t + 1 of one head in that layout. */
static int64_t row_step(int tokens, int64_t nKv, int64_t R) { return tokens ? nKv * R : 1; }

/* Row stride of transposed keys: rows padded, and off powers of two (a 2^k stride maps the rows that
 * the GEMM's packing reads together onto the same cache sets). */
static int64_t keys_ld(int64_t rows) { return padded(rows) + 16; }

/* kT[b] = k[b]ᵀ for b < BK, keys j0..j1: k [BK, rows, D] (or token-major) → kT [BK, D, keys_ld(rows)].
 * The score products then read keys as a plain (not transposed) operand, which the GEMM packs with vector
 * copies; packing kᵀ itself took a strided scalar gather per key per product, a sixth of the time at
 * 64-query blocks. */
static void transpose_keys(const float *k, float *kT, int64_t BK, int64_t rows, int64_t D, int64_t j0, int64_t j1, int tokens,
                           int64_t nKv) {
  const int64_t ld = keys_ld(rows);
  for (int64_t b = 0; b < BK; b++)
    for (int64_t j = j0; j < j1; j++) {
      const float *key = k + row_of(tokens, nKv, 1, rows, b, 0, j) * D;
      for (int64_t d = 0; d < D; d++) kT[(b * D + d) * ld + j] = key[d];
    }
}

/* max(m, row[lo..hi)) */
FOPEIFY_CLONES static float row_max(const float *row, int64_t lo, int64_t hi, float m) {
  int64_t c = lo;
  v8f vm = (v8f){m, m, m, m, m, m, m, m};
  for (; c + 8 <= hi; c += 8) {
    v8f x;
    memcpy(&x, row + c, sizeof x);
    vm = v8_select(x > vm, x, vm);
  }
  for (int k = 0; k < 8; k++) m = vm[k] > m ? vm[k] : m;
  for (; c < hi; c++) m = row[c] > m ? row[c] : m;
  return m;
}

/* row[c] = exp(row[c] − sub) on [lo, hi), 0 on the rest of [0, n); with dp: dp[c] = row[c]·(dp[c] − d)
 * there, 0 elsewhere. Returns Σ row (in eight lanes, then pairwise). */
FOPEIFY_CLONES static float row_exp(float *row, float *dp, int64_t n, int64_t lo, int64_t hi, float sub, float d) {
  memset(row, 0, (size_t)lo * sizeof(float));
  memset(row + hi, 0, (size_t)(n - hi) * sizeof(float));
  if (dp) {
    memset(dp, 0, (size_t)lo * sizeof(float));
    memset(dp + hi, 0, (size_t)(n - hi) * sizeof(float));
  }
  v8f acc = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
  const v8f vd = (v8f){d, d, d, d, d, d, d, d};
  int64_t c = lo;
  for (; c + 8 <= hi; c += 8) {
    v8f x;
    memcpy(&x, row + c, sizeof x);
    v8f e = v8_exp(x - sub);
    memcpy(row + c, &e, sizeof e);
    acc += e;
    if (dp) {
      v8f g;
      memcpy(&g, dp + c, sizeof g);
      g = e * (g - vd);
      memcpy(dp + c, &g, sizeof g);
    }
  }
  if (c < hi) { /* the tail: lanes past hi are −∞, whose exp is exactly 0 */
    v8f x;
    for (int k = 0; k < 8; k++) x[k] = c + k < hi ? row[c + k] : -INFINITY;
    v8f e = v8_exp(x - sub);
    acc += e;
    for (int k = 0; c + k < hi; k++) {
      row[c + k] = e[k];
      if (dp) dp[c + k] = e[k] * (dp[c + k] - d);
    }
  }
  return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + (acc[2] + acc[6])) + (acc[3] + acc[7]);
}

/* ---- forward ---- */

typedef struct {
  const attn_forward_args *a;
  float **kT; /* each block's keys transposed, [BK, D, rows] */
  int64_t queryBlocks, items, maxKeys;
  int64_t next; /* the next work item (atomic) */
  int status;   /* worst status of any thread (atomic) */
} forward_team;

typedef struct {
  float *qs, *acc, *S, *m;
  double *l;
} forward_scratch;

/* One query block of KV head b: the recurrence over every visible key run, then o and lse. */
static int forward_item(const attn_forward_args *a, float *const *kT, int64_t b, int64_t q0, forward_scratch *w) {
  const int64_t R = a->R, D = a->D, Tq = a->Tq, tq = imin(a->queryBlock, Tq - q0), rows = tq * R;
  const int64_t qFirst = a->qStart + q0, qLast = qFirst + tq - 1;
  for (int64_t i = 0; i < tq; i++)
    for (int64_t r = 0; r < R; r++)
      memcpy(w->qs + (i * R + r) * D, a->q + row_of(a->qTokens, a->nKv, R, Tq, b, r, q0 + i) * D, (size_t)D * sizeof(float));
  for (int64_t row = 0; row < rows; row++) w->m[row] = -INFINITY, w->l[row] = 0;
  memset(w->acc, 0, (size_t)(rows * D) * sizeof(float));
  const int64_t ldv = row_step(a->kvTokens, a->nKv, 1) * D;
  int seen = 0;
  for (int64_t bi = 0; bi < a->nblocks; bi++) {
    const attn_block *blk = &a->blocks[bi];
    const int64_t step = a->keyBlock > 0 ? a->keyBlock : imax(1, blk->rows);
    for (int64_t s = 0; s < blk->rows; s += step) {
      int64_t first, end;
      visible_span(blk->start + s, imin(step, blk->rows - s), qFirst, qLast, a->window, &first, &end);
      if (end <= first) continue;
      seen = 1;
      const int64_t n = end - first, ld = padded(n), vOff = row_of(a->kvTokens, a->nKv, 1, blk->rows, b, 0, first - blk->start) * D;
      GEMM(0, 0, rows, n, D, a->scale, w->qs, D, kT[bi] + b * D * keys_ld(blk->rows) + (first - blk->start), keys_ld(blk->rows), 0.0f, w->S,
           ld);
      for (int64_t i = 0; i < tq; i++) {
        int64_t lo, hi;
        visible_keys(qFirst + i, first, n, a->window, &lo, &hi);
        for (int64_t r = 0; r < R; r++) {
          const int64_t row = i * R + r;
          float *srow = w->S + row * ld;
          const float mo = w->m[row], mn = row_max(srow, lo, hi, mo);
          if (mn == -INFINITY) { /* nothing seen yet: the row stays empty */
            memset(srow, 0, (size_t)n * sizeof(float));
            continue;
          }
          const float sum = row_exp(srow, NULL, n, lo, hi, mn, 0);
          const double alpha = mo == -INFINITY ? 0 : exp((double)mo - mn);
          w->m[row] = mn;
          w->l[row] = w->l[row] * alpha + sum;
          if (alpha != 1)
            for (float *acc = w->acc + row * D, *e = acc + D; acc < e; acc++) *acc = (float)(*acc * alpha);
        }
      }
      GEMM(0, 0, rows, D, n, 1.0f, w->S, ld, blk->v + vOff, ldv, 1.0f, w->acc, D);
    }
  }
  if (!seen) return ATTN_NO_VISIBLE_KEY;
  for (int64_t i = 0; i < tq; i++) {
    for (int64_t r = 0; r < R; r++) {
      const int64_t row = i * R + r, t = (b * R + r) * Tq + q0 + i;
      const double inv = 1 / w->l[row];
      float *o = a->o + row_of(a->qTokens, a->nKv, R, Tq, b, r, q0 + i) * D;
      for (int64_t d = 0; d < D; d++) o[d] = (float)(w->acc[row * D + d] * inv);
      a->lse[t] = (float)(w->m[row] + log(w->l[row]));
    }
  }
  return ATTN_OK;
}

static void worst(int *status, int s) {
  if (s != ATTN_OK) __atomic_store_n(status, s, __ATOMIC_RELAXED);
}

static void forward_thread(void *ctx, int t, int nt) {
  (void)t, (void)nt;
  forward_team *f = (forward_team *)ctx;
  const attn_forward_args *a = f->a;
  const int64_t rows = a->queryBlock * a->R;
  forward_scratch w = {alloc_floats(rows * a->D), alloc_floats(rows * a->D), alloc_floats(rows * padded(f->maxKeys)),
                       alloc_floats(rows), malloc((size_t)rows * sizeof(double))};
  if (!w.qs || !w.acc || !w.S || !w.m || !w.l) worst(&f->status, ATTN_NO_MEMORY);
  else
    for (;;) {
      const int64_t it = __atomic_fetch_add(&f->next, 1, __ATOMIC_RELAXED);
      if (it >= f->items) break;
      /* Last query blocks first: they see the most keys, and the short ones then fill the gaps. */
      const int64_t blk = f->queryBlocks - 1 - it / a->BK, b = it % a->BK;
      worst(&f->status, forward_item(a, f->kT, b, blk * a->queryBlock, &w));
    }
  free(w.qs), free(w.acc), free(w.S), free(w.m), free(w.l);
}

int fopeify_attention_forward(const attn_forward_args *a) {
  if (a->BK <= 0 || a->R <= 0 || a->Tq <= 0) return ATTN_OK;
  forward_team f = {a, calloc((size_t)imax(1, a->nblocks), sizeof(float *)), (a->Tq + a->queryBlock - 1) / a->queryBlock, 0, 1, 0, ATTN_OK};
  f.items = f.queryBlocks * a->BK;
  for (int64_t i = 0; f.kT && i < a->nblocks; i++) {
    const attn_block *blk = &a->blocks[i];
    f.maxKeys = imax(f.maxKeys, a->keyBlock > 0 ? imin(a->keyBlock, blk->rows) : blk->rows);
    f.kT[i] = alloc_floats(a->BK * keys_ld(blk->rows) * a->D);
    if (!f.kT[i]) f.status = ATTN_NO_MEMORY;
    else transpose_keys(blk->k, f.kT[i], a->BK, blk->rows, a->D, 0, blk->rows, a->kvTokens, a->nKv);
  }
  if (!f.kT) f.status = ATTN_NO_MEMORY;
  if (f.status == ATTN_OK) parallel_team(forward_thread, &f, parallel_team_size());
  for (int64_t i = 0; f.kT && i < a->nblocks; i++) free(f.kT[i]);
  free(f.kT);
  return f.status;
}

/* ---- backward ---- */

#define MAX_TEAM 64

typedef struct {
  const attn_backward_args *a;
  float *qs, *dOs, *lses, *dd; /* q, dO [BK, T, R, D]; lse, D = rowsum(dO∘o) [BK, T, R] */
  float *kT, *vT;              /* k, v transposed [BK, D, T] */
  float *dq[MAX_TEAM];         /* each thread's dq [BK, T, R, D] */
  int threads;                 /* the team size of the main pass */
  int64_t queryBlocks, keyBlocks;
  int status;
} backward_team;

/* Range [*i0, *i1) of n for thread t of nt. */
static void share(int64_t n, int t, int nt, int64_t *i0, int64_t *i1) {
  *i0 = n * t / nt;
  *i1 = n * (t + 1) / nt;
}

/* Pass 1: the stacked copies and D, over (b, token) rows. */
static void backward_stack(void *ctx, int t, int nt) {
  backward_team *f = (backward_team *)ctx;
  const attn_backward_args *a = f->a;
  const int64_t R = a->R, D = a->D, T = a->T;
  int64_t i0, i1;
  share(T, t, nt, &i0, &i1);
  transpose_keys(a->k, f->kT, a->BK, T, D, i0, i1, a->tokens, a->nKv);
  transpose_keys(a->v, f->vT, a->BK, T, D, i0, i1, a->tokens, a->nKv);
  share(a->BK * T, t, nt, &i0, &i1);
  for (int64_t bt = i0; bt < i1; bt++) {
    const int64_t b = bt / T, tok = bt % T;
    for (int64_t r = 0; r < R; r++) {
      const int64_t src = row_of(a->tokens, a->nKv, R, T, b, r, tok) * D, dst = bt * R + r;
      memcpy(f->qs + dst * D, a->q + src, (size_t)D * sizeof(float));
      memcpy(f->dOs + dst * D, a->dO + src, (size_t)D * sizeof(float));
      double s = 0;
      for (int64_t d = 0; d < D; d++) s += (double)a->dO[src + d] * a->o[src + d];
      f->dd[dst] = (float)s;
      f->lses[dst] = a->lse[(b * R + r) * T + tok];
    }
  }
}

/* The visible keys [*first, *end) of key block kb for query block qb (empty when none). */
static void pair_span(const backward_team *f, int64_t qb, int64_t kb, int64_t *first, int64_t *end) {
  const attn_backward_args *a = f->a;
  const int64_t q0 = qb * a->queryBlock, k0 = kb * a->keyBlock;
  visible_span(k0, imin(a->keyBlock, a->T - k0), q0, imin(a->T, q0 + a->queryBlock) - 1, a->window, first, end);
}

/* One key block of KV head b: dk and dv of its keys (written by this item alone), dq into this thread's. */
static void backward_item(backward_team *f, int64_t b, int64_t kb, float *S, float *dP, float *dq) {
  const attn_backward_args *a = f->a;
  const int64_t R = a->R, D = a->D, T = a->T;
  for (int64_t qb = 0; qb < f->queryBlocks; qb++) {
    int64_t first, end;
    pair_span(f, qb, kb, &first, &end);
    if (end <= first) continue;
    const int64_t q0 = qb * a->queryBlock, tq = imin(a->queryBlock, T - q0), rows = tq * R;
    const int64_t n = end - first, ld = padded(n), qOff = (b * T + q0) * R * D, rOff = (b * T + q0) * R;
    const int64_t ldk = keys_ld(T);
    /* Key `first` of head b in k, v, dk, dv, and the stride between its keys. */
    const int64_t kOff = row_of(a->tokens, a->nKv, 1, T, b, 0, first) * D, ldkv = row_step(a->tokens, a->nKv, 1) * D;
    GEMM(0, 0, rows, n, D, a->scale, f->qs + qOff, D, f->kT + b * D * ldk + first, ldk, 0.0f, S, ld);
    GEMM(0, 0, rows, n, D, 1.0f, f->dOs + qOff, D, f->vT + b * D * ldk + first, ldk, 0.0f, dP, ld);
    for (int64_t i = 0; i < tq; i++) {
      int64_t lo, hi;
      visible_keys(q0 + i, first, n, a->window, &lo, &hi);
      for (int64_t r = 0; r < R; r++) { /* S ← P = exp(S − lse), dP ← dS = P∘(dP − D) */
        const int64_t row = i * R + r;
        row_exp(S + row * ld, dP + row * ld, n, lo, hi, f->lses[rOff + row], f->dd[rOff + row]);
      }
    }
    /* dV += Pᵀ dO;  dK += scale · dSᵀ Q;  dQ += scale · dS K */
    GEMM(1, 0, n, D, rows, 1.0f, S, ld, f->dOs + qOff, D, 1.0f, a->dv + kOff, ldkv);
    GEMM(1, 0, n, D, rows, a->scale, dP, ld, f->qs + qOff, D, 1.0f, a->dk + kOff, ldkv);
    GEMM(0, 0, rows, D, n, a->scale, dP, ld, a->k + kOff, ldkv, 1.0f, dq + qOff, D);
  }
}

typedef struct {
  int64_t item;
  double cost;
} costed;

static int by_cost(const void *x, const void *y) {
  const costed *p = (const costed *)x, *q = (const costed *)y;
  if (p->cost != q->cost) return p->cost > q->cost ? -1 : 1;
  return p->item < q->item ? -1 : p->item > q->item;
}

/* Pass 2: each thread takes the items a longest-first greedy assignment gives it. Every thread computes
 * the same assignment (no clock, no shared counter), so dq's per-thread sums are the same run to run. */
static void backward_main(void *ctx, int t, int nt) {
  backward_team *f = (backward_team *)ctx;
  const attn_backward_args *a = f->a;
  const int64_t items = a->BK * f->keyBlocks, rows = a->queryBlock * a->R, ld = padded(a->keyBlock);
  if (t == 0) f->threads = nt;
  float *S = alloc_floats(rows * ld), *dP = alloc_floats(rows * ld);
  costed *order = malloc((size_t)items * sizeof(costed));
  if (!S || !dP || !order) {
    worst(&f->status, ATTN_NO_MEMORY);
  } else {
    for (int64_t it = 0; it < items; it++) {
      double cost = 0;
      for (int64_t qb = 0; qb < f->queryBlocks; qb++) {
        int64_t first, end;
        pair_span(f, qb, it % f->keyBlocks, &first, &end);
        if (end > first) cost += (double)imin(a->queryBlock, a->T - qb * a->queryBlock) * (end - first);
      }
      order[it] = (costed){it, cost};
    }
    qsort(order, (size_t)items, sizeof(costed), by_cost);
    double load[MAX_TEAM] = {0};
    for (int64_t i = 0; i < items; i++) {
      int u = 0;
      for (int v = 1; v < nt; v++)
        if (load[v] < load[u]) u = v;
      load[u] += order[i].cost;
      if (u != t) continue;
      /* A thread's dq only once it has work: a machine with more threads than items pays nothing for the rest. */
      if (!f->dq[t] && !(f->dq[t] = calloc((size_t)(a->BK * a->T * a->R * a->D), sizeof(float)))) {
        worst(&f->status, ATTN_NO_MEMORY);
        break;
      }
      backward_item(f, order[i].item / f->keyBlocks, order[i].item % f->keyBlocks, S, dP, f->dq[t]);
    }
  }
  free(S), free(dP), free(order);
}

/* Pass 3: dq = Σ of the threads' dq in thread order, back to q's layout. */
static void backward_reduce(void *ctx, int t, int nt) {
  backward_team *f = (backward_team *)ctx;
  const attn_backward_args *a = f->a;
  const int64_t R = a->R, D = a->D, T = a->T;
  int64_t i0, i1;
  share(a->BK * T, t, nt, &i0, &i1);
  for (int64_t bt = i0; bt < i1; bt++) {
    const int64_t b = bt / T, tok = bt % T;
    for (int64_t r = 0; r < R; r++) {
      float *out = a->dq + row_of(a->tokens, a->nKv, R, T, b, r, tok) * D;
      const int64_t src = (bt * R + r) * D;
      memset(out, 0, (size_t)D * sizeof(float));
      for (int u = 0; u < f->threads; u++)
        if (f->dq[u])
          for (int64_t d = 0; d < D; d++) out[d] += f->dq[u][src + d];
    }
  }
}

int fopeify_attention_backward(const attn_backward_args *a) {
  if (a->BK <= 0 || a->R <= 0 || a->T <= 0) return ATTN_OK;
  const int64_t rowsD = a->BK * a->T * a->R;
  const int64_t keys = a->BK * keys_ld(a->T) * a->D;
  backward_team f = {a,      alloc_floats(rowsD * a->D), alloc_floats(rowsD * a->D), alloc_floats(rowsD), alloc_floats(rowsD), alloc_floats(keys),
                     alloc_floats(keys), {NULL}, 1, (a->T + a->queryBlock - 1) / a->queryBlock, (a->T + a->keyBlock - 1) / a->keyBlock, ATTN_OK};
  if (f.qs && f.dOs && f.lses && f.dd && f.kT && f.vT) {
    memset(a->dk, 0, (size_t)(a->BK * a->T * a->D) * sizeof(float));
    memset(a->dv, 0, (size_t)(a->BK * a->T * a->D) * sizeof(float));
    parallel_team(backward_stack, &f, parallel_team_size());
    parallel_team(backward_main, &f, parallel_team_size());
    if (f.status == ATTN_OK) parallel_team(backward_reduce, &f, parallel_team_size());
  } else {
    f.status = ATTN_NO_MEMORY;
  }
  free(f.qs), free(f.dOs), free(f.lses), free(f.dd), free(f.kT), free(f.vT);
  for (int u = 0; u < MAX_TEAM; u++) free(f.dq[u]);
  return f.status;
}
