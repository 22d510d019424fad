/* N-API glue of the decoding step (decode.c) and of the rotary passes (rotary.c). Arrays are checked to be long enough before any is
 * touched; Float32Array views (subarray) address a layer's part of a larger buffer without a copy. */
#include "addon.h"
#include "blas.h"
#include "decode.h"
#include "rotary.h"

static bool ints(napi_env env, const napi_value *argv, int64_t *out, int n) {
  for (int i = 0; i < n; i++)
    if (!get_i64(env, argv[i], &out[i]) || out[i] < 0 || out[i] > 0x7fffffff) return false;
  return true;
}

/* matvec(W, rows, cols, x, y): y = W · x, W row-major [rows, cols]. */
static napi_value Matvec(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t n[2];
  float *W, *x, *y;
  if (argc != 5 || !ints(env, argv + 1, n, 2) || !f32_at_least(env, argv[0], &W, (size_t)(n[0] * n[1])) ||
      !f32_at_least(env, argv[3], &x, (size_t)n[1]) || !f32_at_least(env, argv[4], &y, (size_t)n[0])) {
    napi_throw_type_error(env, NULL, "matvec: expected (W, rows, cols, x, y) with Float32Arrays large enough");
    return NULL;
  }
  if (!fopeify_blas_sgemm()) {
    napi_throw_error(env, NULL, "matvec: no BLAS loaded (call load() first)");
    return NULL;
  }
  if (n[0] > 0 && n[1] > 0) fopeify_matvec(W, n[0], n[1], x, y);
  return NULL;
}

/* rotaryOne(x, heads, headsPerGroup, headDim, dim, cos, sin): in place, see rotary.h. */
static napi_value RotaryOne(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t n[4]; /* heads, headsPerGroup, headDim, dim */
  float *x, *c, *s;
  bool ok = argc == 7 && ints(env, argv + 1, n, 4) && n[1] >= 1 && n[0] % n[1] == 0 && n[3] % 2 == 0 && n[3] <= n[2];
  const size_t table = ok ? (size_t)(n[0] / n[1] * (n[3] / 2)) : 0;
  if (!ok || !f32_at_least(env, argv[0], &x, (size_t)(n[0] * n[2])) || !f32_at_least(env, argv[5], &c, table) ||
      !f32_at_least(env, argv[6], &s, table)) {
    napi_throw_type_error(env, NULL,
                          "rotaryOne: expected (x, heads, headsPerGroup (dividing heads), headDim, dim (even, ≤ headDim), cos, sin) "
                          "with x of heads·headDim and tables of (heads/headsPerGroup)·dim/2 floats");
    return NULL;
  }
  fopeify_rotary_one(x, x, n[0], n[1], n[2], n[3], c, s);
  return NULL;
}

/* rotaryBlocks(x, out, B, K, R, T, D, dim, groups, cos, sin, tokens): out = x rotated, x = [B, K, R, T, D]
 * (tokens: [B, T, K, R, D]), tables [groups, T, dim/2] with groups 1 or K; see rotary.h. out may be x
 * itself. */
static napi_value RotaryBlocks(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t n[7]; /* B, K, R, T, D, dim, groups */
  float *x, *out, *c, *s;
  bool tokens = false;
  bool ok = argc == 12 && napi_get_value_bool(env, argv[11], &tokens) == napi_ok && ints(env, argv + 2, n, 7) && n[5] % 2 == 0 && n[5] <= n[4] && (n[6] == 1 || n[6] == n[1]);
  /* Each factor ≤ 2^31 (ints), so the products are checked in double before they are trusted. */
  const double size = ok ? (double)n[0] * n[1] * n[2] * n[3] * n[4] : 0, table = ok ? (double)n[6] * n[3] * (n[5] / 2) : 0;
  ok = ok && size < 9007199254740992.0 && table < 9007199254740992.0;
  if (!ok || !f32_at_least(env, argv[0], &x, (size_t)size) || !f32_at_least(env, argv[1], &out, (size_t)size) ||
      !f32_at_least(env, argv[9], &c, (size_t)table) || !f32_at_least(env, argv[10], &s, (size_t)table)) {
    napi_throw_type_error(env, NULL,
                          "rotaryBlocks: expected (x, out, B, K, R, T, D, dim (even, ≤ D), groups (1 or K), cos, sin, tokens) with x and out of "
                          "B·K·R·T·D floats and tables of groups·T·dim/2 floats");
    return NULL;
  }
  const size_t bytes = (size_t)size * sizeof(float);
  if (out != x && (const char *)out < (const char *)x + bytes && (const char *)x < (const char *)out + bytes) {
    napi_throw_range_error(env, NULL, "rotaryBlocks: out partly overlaps x");
    return NULL;
  }
  fopeify_rotary_blocks(x, out, n[0], n[1], n[2], n[3], n[4], n[5], n[6], c, s, tokens);
  return NULL;
}

/* attendOne(q, k, v, nHeads, nKv, headDim, len, capacity, scale, out, scratch): see decode.h;
 * scratch holds at least nHeads·(⌈len/4⌉·4 + 3) floats. */
static napi_value AttendOne(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t n[5]; /* nHeads, nKv, headDim, len, capacity */
  double scale;
  float *q, *k, *v, *out, *scratch;
  bool ok = argc == 11 && ints(env, argv + 3, n, 5) && n[1] >= 1 && n[0] % n[1] == 0 && n[3] >= 1 && n[3] <= n[4] &&
            napi_get_value_double(env, argv[8], &scale) == napi_ok;
  const size_t cache = ok ? (size_t)(n[1] * n[4] * n[2]) : 0;
  if (!ok || !f32_at_least(env, argv[0], &q, (size_t)(n[0] * n[2])) || !f32_at_least(env, argv[1], &k, cache) ||
      !f32_at_least(env, argv[2], &v, cache) || !f32_at_least(env, argv[9], &out, (size_t)(n[0] * n[2])) ||
      !f32_at_least(env, argv[10], &scratch, (size_t)fopeify_attend_scratch(n[0], n[3]))) {
    napi_throw_type_error(env, NULL,
                          "attendOne: expected (q, k, v, nHeads, nKv (dividing nHeads), headDim, len (1..capacity), capacity, scale, out, "
                          "scratch) with q and out of nHeads·headDim, caches of nKv·capacity·headDim and scratch of nHeads·(⌈len/4⌉·4 + 3) floats");
    return NULL;
  }
  if (!fopeify_blas_sgemm()) {
    napi_throw_error(env, NULL, "attendOne: no BLAS loaded (call load() first)");
    return NULL;
  }
  fopeify_attend_one(q, k, v, n[0], n[1], n[2], n[3], n[4], (float)scale, out, scratch);
  return NULL;
}

void fopeify_register_decode(napi_env env, napi_value exports) {
  static const fopeify_export fns[] = {{"matvec", Matvec}, {"rotaryOne", RotaryOne}, {"rotaryBlocks", RotaryBlocks},
                                              {"attendOne", AttendOne}};
  define_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
}
