/* N-API glue of blockwise attention (attention.c). Every array is checked to be long enough for the
 * shapes given before any is touched, so a wrong argument throws instead of corrupting memory. */
#include <stdio.h>
#include <stdlib.h>

#include "addon.h"
#include "attention.h"
#include "blas.h"

#define MAX_BLOCKS 4096

/* n integers from argv, each in [min, 2^31). */
static bool ints_from(napi_env env, const napi_value *argv, int64_t *out, int n, int64_t min) {
  for (int i = 0; i < n; i++)
    if (!get_i64(env, argv[i], &out[i]) || out[i] < min || out[i] > 0x7fffffff) return false;
  return true;
}

/* Whether the product of n sizes stays far inside int64 (and any array's reach). */
static bool sizes_ok(const int64_t *n, int count) {
  double p = 1;
  for (int i = 0; i < count; i++) p *= (double)n[i];
  return p < 35184372088832.0; /* 2^45 */
}

/* The layout arguments (nKv, then `flags` booleans) at argv: nKv ≥ 1 dividing BK. */
static bool layout_from(napi_env env, const napi_value *argv, int64_t BK, int64_t *nKv, int *flags, int count) {
  if (!get_i64(env, argv[0], nKv) || *nKv < 1 || *nKv > 0x7fffffff || BK % *nKv != 0) return false;
  for (int i = 0; i < count; i++) {
    bool b = false;
    if (napi_get_value_bool(env, argv[1 + i], &b) != napi_ok) return false;
    flags[i] = b;
  }
  return true;
}

/* Throws for a status other than ATTN_OK; false then. */
static bool status_ok(napi_env env, int status, const char *fn) {
  if (status == ATTN_OK) return true;
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", fn, status == ATTN_NO_MEMORY ? "out of memory" : "a query block sees no key");
  napi_throw_error(env, status == ATTN_NO_MEMORY ? "ENOMEM" : "ATTENTION_NO_VISIBLE_KEY", msg);
  return false;
}

/*
 * attentionForward(q, BK, R, Tq, D, qStart, queryBlock, keyBlock, window, scale, ks, vs, starts, o, lse, nKv,
 * qTokens, kvTokens): q, o [BK, R, Tq, D], lse [BK, R, Tq]; ks[i], vs[i] [BK, rows_i, D] with key
 * `starts[i] + j` at row j; qTokens / kvTokens: q and o / the keys token-major instead (attention.h,
 * BK = B·nKv); keyBlock 0: whole blocks; window −1: causal only. Throws with code
 * ATTENTION_NO_VISIBLE_KEY when a query block sees no key.
 */
static napi_value AttentionForward(napi_env env, napi_callback_info info) {
  size_t argc = 18;
  napi_value argv[18];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t n[8]; /* BK, R, Tq, D, qStart, queryBlock, keyBlock, window + 1 */
  double scale = 0;
  float *q, *o, *lse;
  bool arrays = false;
  uint32_t nb = 0, nv = 0, ns = 0;
  int64_t nKv = 1;
  int tokens[2] = {0, 0};
  bool ok = argc == 18 && ints_from(env, argv + 1, n, 7, 0) && n[0] >= 1 && n[1] >= 1 && n[3] >= 1 && n[5] >= 1 && sizes_ok(n, 4) &&
            napi_get_value_double(env, argv[9], &scale) == napi_ok;
  if (argc == 18 && get_i64(env, argv[8], &n[7]) && n[7] >= -1 && n[7] < 0x7fffffff) n[7] += 1;
  else ok = false;
  const int64_t BK = n[0], R = n[1], Tq = n[2], D = n[3];
  ok = ok && layout_from(env, argv + 15, BK, &nKv, tokens, 2);
  ok = ok && napi_is_array(env, argv[10], &arrays) == napi_ok && arrays && napi_is_array(env, argv[11], &arrays) == napi_ok && arrays &&
       napi_is_array(env, argv[12], &arrays) == napi_ok && arrays && napi_get_array_length(env, argv[10], &nb) == napi_ok &&
       napi_get_array_length(env, argv[11], &nv) == napi_ok && napi_get_array_length(env, argv[12], &ns) == napi_ok && nb == nv &&
       nb == ns && nb <= MAX_BLOCKS;
  ok = ok && f32_at_least(env, argv[0], &q, (size_t)(BK * R * Tq * D)) && f32_at_least(env, argv[13], &o, (size_t)(BK * R * Tq * D)) &&
       f32_at_least(env, argv[14], &lse, (size_t)(BK * R * Tq));
  attn_block *blocks = ok ? calloc(nb ? nb : 1, sizeof(attn_block)) : NULL;
  for (uint32_t i = 0; ok && blocks && i < nb; i++) {
    napi_value k, v, s;
    float *kp, *vp;
    size_t lk, lv;
    ok = napi_get_element(env, argv[10], i, &k) == napi_ok && napi_get_element(env, argv[11], i, &v) == napi_ok &&
         napi_get_element(env, argv[12], i, &s) == napi_ok && get_f32_array(env, k, &kp, &lk) && get_f32_array(env, v, &vp, &lv) &&
         lk == lv && lk % (size_t)(BK * D) == 0 && ints_from(env, &s, &blocks[i].start, 1, 0);
    if (ok) {
      blocks[i].k = kp;
      blocks[i].v = vp;
      blocks[i].rows = (int64_t)(lk / (size_t)(BK * D));
    }
  }
  if (!ok || !blocks) {
    free(blocks);
    napi_throw_type_error(env, NULL,
                          "attentionForward: expected (q, BK, R, Tq, D, qStart, queryBlock ≥ 1, keyBlock ≥ 0, window ≥ −1, scale, ks, vs, "
                          "starts, o, lse, nKv ≥ 1 dividing BK, qTokens, kvTokens): q and o of BK·R·Tq·D floats, lse of BK·R·Tq, "
                          "arrays of equally long Float32Arrays [BK, rows, D] and their start indices");
    return NULL;
  }
  attn_forward_args a = {q, o, lse, BK, R, Tq, D, n[4], n[5], n[6], n[7] - 1, (float)scale, blocks, (int64_t)nb,
                         nKv, tokens[0], tokens[1]};
  fp_guard g;
  fp_enter(&g);
  const int status = fopeify_attention_forward(&a);
  fp_leave(&g);
  free(blocks);
  status_ok(env, status, "attentionForward");
  return NULL;
}

/*
 * attentionBackward(q, k, v, o, lse, dO, BK, R, T, D, queryBlock, keyBlock, window, scale, dq, dk, dv, nKv, tokens):
 * q, o, dO, dq [BK, R, T, D]; lse [BK, R, T]; k, v, dk, dv [BK, T, D]; tokens: all but lse token-major
 * instead (attention.h, BK = B·nKv); window −1: causal only.
 */
static napi_value AttentionBackward(napi_env env, napi_callback_info info) {
  size_t argc = 19;
  napi_value argv[19];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t n[7]; /* BK, R, T, D, queryBlock, keyBlock, window + 1 */
  double scale = 0;
  float *q, *k, *v, *o, *lse, *dO, *dq, *dk, *dv;
  int64_t nKv = 1;
  int tokens = 0;
  bool ok = argc == 19 && ints_from(env, argv + 6, n, 6, 1) && sizes_ok(n, 4) && napi_get_value_double(env, argv[13], &scale) == napi_ok;
  if (argc == 19 && get_i64(env, argv[12], &n[6]) && n[6] >= -1 && n[6] < 0x7fffffff) n[6] += 1;
  else ok = false;
  const int64_t BK = n[0], R = n[1], T = n[2], D = n[3];
  ok = ok && layout_from(env, argv + 17, BK, &nKv, &tokens, 1);
  const size_t qn = ok ? (size_t)(BK * R * T * D) : 0, kn = ok ? (size_t)(BK * T * D) : 0;
  if (!ok || !f32_at_least(env, argv[0], &q, qn) || !f32_at_least(env, argv[1], &k, kn) || !f32_at_least(env, argv[2], &v, kn) ||
      !f32_at_least(env, argv[3], &o, qn) || !f32_at_least(env, argv[4], &lse, qn / (size_t)D) || !f32_at_least(env, argv[5], &dO, qn) ||
      !f32_at_least(env, argv[14], &dq, qn) || !f32_at_least(env, argv[15], &dk, kn) || !f32_at_least(env, argv[16], &dv, kn)) {
    napi_throw_type_error(env, NULL,
                          "attentionBackward: expected (q, k, v, o, lse, dO, BK, R, T, D, queryBlock ≥ 1, keyBlock ≥ 1, window ≥ −1, "
                          "scale, dq, dk, dv, nKv ≥ 1 dividing BK, tokens): q, o, dO, dq of BK·R·T·D floats, lse of BK·R·T, k, v, dk, "
                          "dv of BK·T·D");
    return NULL;
  }
  attn_backward_args a = {q, o, dO, lse, k, v, dq, dk, dv, BK, R, T, D, n[4], n[5], n[6] - 1, (float)scale, nKv, tokens};
  fp_guard g;
  fp_enter(&g);
  const int status = fopeify_attention_backward(&a);
  fp_leave(&g);
  status_ok(env, status, "attentionBackward");
  return NULL;
}

void fopeify_register_attention(napi_env env, napi_value exports) {
  static const fopeify_export fns[] = {{"attentionForward", AttentionForward}, {"attentionBackward", AttentionBackward}};
  define_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
}
