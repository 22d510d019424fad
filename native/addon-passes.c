/* N-API glue of the compute passes: argument checks, then the C functions of elementwise.c,
 * softmax.c, norm-optim.c and movement.c. Every array is checked to be long enough before any is touched, so a
 * wrong argument throws instead of corrupting memory. */
#include <math.h>

#include "addon.h"
#include "elementwise.h"
#include "movement.h"
#include "norm-optim.h"
#include "softmax.h"

/* binary(op, A, B, out, geom): geom is a Float64Array [nd, shape[nd], strideA[nd], strideB[nd]] of
 * the output's (collapsed) dims and each input's element strides (0 = broadcast). */
static napi_value Binary(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t op;
  float *A, *B, *O;
  double *geom;
  size_t lenA, lenB, lenO, glen;
  if (argc != 5 || napi_get_value_int32(env, argv[0], &op) != napi_ok || !get_f32_array(env, argv[1], &A, &lenA) ||
      !get_f32_array(env, argv[2], &B, &lenB) || !get_f32_array(env, argv[3], &O, &lenO) ||
      !get_f64_array(env, argv[4], &geom, &glen)) {
    napi_throw_type_error(env, NULL, "binary: expected (op, Float32Array, Float32Array, Float32Array, Float64Array)");
    return NULL;
  }
  const char *err = fopeify_binary(op, A, lenA, B, lenB, O, lenO, geom, glen);
  if (err) napi_throw_range_error(env, NULL, err);
  return NULL;
}

/* copyStrided(src, dst, geom): src and dst TypedArrays of one element size (any types: bits are
 * copied); geom a Float64Array [nd, sOff, dOff, shape[nd], sStride[nd], dStride[nd]] in elements. */
static napi_value CopyStrided(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *src, *dst;
  double *geom;
  size_t lenS, lenD, elemS, elemD, glen;
  if (argc != 3 || !get_any_array(env, argv[0], &src, &lenS, &elemS) || !get_any_array(env, argv[1], &dst, &lenD, &elemD) ||
      elemS != elemD || !get_f64_array(env, argv[2], &geom, &glen)) {
    napi_throw_type_error(env, NULL, "copyStrided: expected (src, dst) TypedArrays of one element size and a Float64Array geometry");
    return NULL;
  }
  const char *err = fopeify_copy_strided(src, lenS, dst, lenD, elemS, geom, glen);
  if (err) napi_throw_range_error(env, NULL, err);
  return NULL;
}

/* unary(op, X, out): out[i] = f(X[i]) for i < out.length, with JS's formula in double precision. */
static napi_value Unary(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t op;
  float *X, *O;
  size_t lenX, lenO;
  if (argc != 3 || napi_get_value_int32(env, argv[0], &op) != napi_ok || !get_f32_array(env, argv[1], &X, &lenX) ||
      !get_f32_array(env, argv[2], &O, &lenO) || lenO > lenX || op < UOP_NEG || op > UOP_ABS) {
    napi_throw_type_error(env, NULL, "unary: expected (op, Float32Array, Float32Array no longer than it)");
    return NULL;
  }
  fopeify_unary(op, X, O, lenO);
  return NULL;
}

/* softmaxRows(S, rows, n4, mOld, mNew, sum): see softmax.h. */
static napi_value SoftmaxRows(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t rows, n4;
  float *S, *mOld, *mNew, *sum;
  if (argc != 6 || napi_get_value_int64(env, argv[1], &rows) != napi_ok || napi_get_value_int64(env, argv[2], &n4) != napi_ok ||
      rows < 0 || n4 < 0 || n4 % 4 != 0 || !f32_at_least(env, argv[0], &S, (size_t)(rows * n4)) || !f32_at_least(env, argv[3], &mOld, (size_t)rows) ||
      !f32_at_least(env, argv[4], &mNew, (size_t)rows) || !f32_at_least(env, argv[5], &sum, (size_t)rows)) {
    napi_throw_type_error(env, NULL, "softmaxRows: expected (S, rows, n4 (a multiple of 4), mOld, mNew, sum) with Float32Arrays large enough");
    return NULL;
  }
  fopeify_softmax_rows(S, rows, n4, mOld, mNew, sum);
  return NULL;
}

/* crossEntropyRows(L, rows, n4, V, targets, scale): see softmax.h; returns the summed NLL. */
static napi_value CrossEntropyRows(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t rows, n4, V;
  float *L;
  double scale;
  napi_typedarray_type tt;
  size_t tlen = 0;
  void *tdata = NULL;
  if (argc != 6 || !get_i64(env, argv[1], &rows) || !get_i64(env, argv[2], &n4) || !get_i64(env, argv[3], &V) || rows < 0 || n4 < 0 ||
      n4 > (int64_t)1 << 40 || rows > ((int64_t)1 << 52) / (n4 > 0 ? n4 : 1) || !f32_at_least(env, argv[0], &L, (size_t)(rows * n4)) ||
      napi_get_typedarray_info(env, argv[4], &tt, &tlen, &tdata, NULL, NULL) != napi_ok || tt != napi_int32_array ||
      tlen < (size_t)rows || napi_get_value_double(env, argv[5], &scale) != napi_ok || !isfinite(scale)) {
    napi_throw_type_error(env, NULL,
                          "crossEntropyRows: expected (L, rows, n4, V, targets, scale) with a Float32Array L of rows·n4, an Int32Array "
                          "of rows targets and a finite scale");
    return NULL;
  }
  double nll = 0;
  const char *err = fopeify_cross_entropy_rows(L, rows, n4, V, (const int32_t *)tdata, scale, &nll);
  if (err) {
    napi_throw_range_error(env, NULL, err);
    return NULL;
  }
  napi_value out;
  CHECK(napi_create_double(env, nll, &out));
  return out;
}

/* swiglu(g, u, y, sig | null): over y.length elements. */
static napi_value Swiglu(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  float *g, *u, *y, *sig = NULL;
  size_t lenG, lenU, lenY, lenS = 0;
  napi_valuetype t4 = napi_undefined;
  if (argc == 4) napi_typeof(env, argv[3], &t4);
  if (argc < 3 || !get_f32_array(env, argv[0], &g, &lenG) || !get_f32_array(env, argv[1], &u, &lenU) || !get_f32_array(env, argv[2], &y, &lenY) ||
      lenG < lenY || lenU < lenY || (t4 != napi_null && t4 != napi_undefined && (!get_f32_array(env, argv[3], &sig, &lenS) || lenS < lenY))) {
    napi_throw_type_error(env, NULL, "swiglu: expected (g, u, y, sig | null) Float32Arrays, g, u and sig at least as long as y");
    return NULL;
  }
  fopeify_swiglu(g, u, y, sig, (int64_t)lenY);
  return NULL;
}

/* swigluBackward(dy, g, u, sig, dg, du): over dg.length elements. */
static napi_value SwigluBackward(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  float *dy, *g, *u, *sig, *dg, *du;
  size_t n = 0, len = 0;
  bool ok = argc == 6 && get_f32_array(env, argv[4], &dg, &n) && f32_at_least(env, argv[0], &dy, n) && f32_at_least(env, argv[1], &g, n) &&
            f32_at_least(env, argv[2], &u, n) && f32_at_least(env, argv[3], &sig, n) && get_f32_array(env, argv[5], &du, &len) && len >= n;
  if (!ok) {
    napi_throw_type_error(env, NULL, "swigluBackward: expected (dy, g, u, sig, dg, du) Float32Arrays, each at least as long as dg");
    return NULL;
  }
  fopeify_swiglu_backward(dy, g, u, sig, dg, du, (int64_t)n);
  return NULL;
}

/* adamw(p, g, m, v, out, hyper): hyper = Float64Array [b1, b2, c1, c2, eps, lr, decay, clip]; out may be p. */
static napi_value Adamw(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  float *p, *g, *m, *v, *out;
  double *hyper;
  size_t lp, lg, lm, lv, lo, hlen;
  if (argc != 6 || !get_f32_array(env, argv[0], &p, &lp) || !get_f32_array(env, argv[1], &g, &lg) || !get_f32_array(env, argv[2], &m, &lm) ||
      !get_f32_array(env, argv[3], &v, &lv) || !get_f32_array(env, argv[4], &out, &lo) ||
      !get_f64_array(env, argv[5], &hyper, &hlen) || hlen != 8 || lg < lp || lm < lp || lv < lp || lo < lp) {
    napi_throw_type_error(env, NULL, "adamw: expected (p, g, m, v, out) Float32Arrays at least as long as p, and Float64Array(8) hyper-parameters");
    return NULL;
  }
  fopeify_adamw(p, g, m, v, out, (int64_t)lp, hyper);
  return NULL;
}

/* sumSquares(x, start) -> start + Σ x[i]² in double, in index order (as the JS loop). */
static napi_value SumSquares(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  float *x;
  size_t n;
  double sum;
  if (argc != 2 || !get_f32_array(env, argv[0], &x, &n) || napi_get_value_double(env, argv[1], &sum) != napi_ok) {
    napi_throw_type_error(env, NULL, "sumSquares: expected (Float32Array, number)");
    return NULL;
  }
  napi_value r;
  CHECK(napi_create_double(env, fopeify_sum_squares(x, (int64_t)n, sum), &r));
  return r;
}

/* rmsnorm(x, w, out, eps, inv | null?): rows of w.length; each row's inverse rms into inv when given. */
static napi_value Rmsnorm(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  float *x, *w, *out, *inv = NULL;
  size_t lx, lw, lo, li = 0;
  double eps;
  napi_valuetype t4 = napi_undefined;
  if (argc == 5) napi_typeof(env, argv[4], &t4);
  bool ok = (argc == 4 || argc == 5) && get_f32_array(env, argv[0], &x, &lx) && get_f32_array(env, argv[1], &w, &lw) &&
            get_f32_array(env, argv[2], &out, &lo) && napi_get_value_double(env, argv[3], &eps) == napi_ok && lw != 0 && lx % lw == 0 &&
            lo >= lx && (t4 == napi_undefined || t4 == napi_null || (get_f32_array(env, argv[4], &inv, &li) && li >= lx / lw));
  if (!ok) {
    napi_throw_type_error(env, NULL,
                          "rmsnorm: expected (x, w, out, eps, inv?) with x.length a multiple of w.length, out at least as long as x "
                          "and inv at least x.length / w.length");
    return NULL;
  }
  fopeify_rmsnorm(x, w, out, inv, (int64_t)(lx / lw), (int64_t)lw, eps);
  return NULL;
}

/* rmsnormBackward(x, w, inv, dy, dx, dw): rows of w.length; see norm-optim.h. */
static napi_value RmsnormBackward(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  float *x, *w, *inv, *dy, *dx, *dw;
  size_t lx, lw;
  bool ok = argc == 6 && get_f32_array(env, argv[0], &x, &lx) && get_f32_array(env, argv[1], &w, &lw) && lw != 0 && lx % lw == 0 &&
            f32_at_least(env, argv[2], &inv, lx / lw) && f32_at_least(env, argv[3], &dy, lx) && f32_at_least(env, argv[4], &dx, lx) &&
            f32_at_least(env, argv[5], &dw, lw);
  if (!ok) {
    napi_throw_type_error(env, NULL,
                          "rmsnormBackward: expected (x, w, inv, dy, dx, dw) Float32Arrays, x.length a multiple of w.length, inv of "
                          "x.length / w.length, dy and dx of x.length, dw of w.length");
    return NULL;
  }
  const char *err = fopeify_rmsnorm_backward(x, w, inv, dy, dx, dw, (int64_t)(lx / lw), (int64_t)lw);
  if (err) napi_throw_error(env, NULL, err);
  return NULL;
}

void fopeify_register_passes(napi_env env, napi_value exports) {
  static const fopeify_export fns[] = {
      {"binary", Binary},   {"unary", Unary}, {"softmaxRows", SoftmaxRows},
      {"swiglu", Swiglu},   {"swigluBackward", SwigluBackward}, {"adamw", Adamw}, {"rmsnorm", Rmsnorm},         {"sumSquares", SumSquares},
      {"rmsnormBackward", RmsnormBackward}, {"crossEntropyRows", CrossEntropyRows}, {"copyStrided", CopyStrided},
  };
  define_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
}
