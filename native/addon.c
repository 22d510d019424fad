/*
 * fopeify_native: a Node-API addon that finds a BLAS library at run time and exposes single-precision
 * GEMM on Float32Arrays, without copies, plus the compute passes that surround it (elementwise,
 * softmax, SwiGLU, AdamW, RMSNorm). This file is the module's glue: it registers every function and
 * holds the BLAS-facing ones (load, setThreads, info, sgemm and its engines, useGemm).
 *
 * Why this shape:
 *  - No BLAS headers at build time: blas.c dlopen()s whichever BLAS the user has, else the portable
 *    SGEMM (sgemm.c).
 *  - No node-gyp: only Node-API (ABI stable) functions are used, so the headers of
 *    `node-api-headers` suffice and one binary works across Node versions.
 *  - Loading is explicit (`load()`), not at module init, so JS can decide thread counts first and
 *    so a missing BLAS is a normal answer ({ok:false, error}) rather than an exception at import.
 *
 * Files: blas.c (BLAS loading, denormal flushing), sgemm*.c (portable SGEMM), elementwise.c
 * (tfjs-exact arithmetic), parallel.c (threads for the passes), softmax.c (softmax, LM-head
 * cross-entropy, SwiGLU), norm-optim.c (AdamW, sum of squares, RMSNorm), movement.c (strided copies),
 * addon-passes.c (their N-API glue), decode.c and addon-decode.c (the per-token decoding step on
 * preallocated buffers), rotary.c (rotary / FoPE, one token and whole blocks; glue in addon-decode.c),
 * attention.c and addon-attention.c (blockwise attention of training and prefill, one call per layer).
 */
#if defined(_WIN32)
/* Windows is not supported by this addon (the build script says so and skips it). */
#error "fopeify_native: Windows is not supported"
#endif

#include "addon.h"

#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "blas.h"
#include "sgemm.h"

/* Reads a boolean option: 1 / 0, or -1 when absent or not a boolean. */
static int bool_option(napi_env env, napi_value opts, const char *name) {
  bool has = false, b = true;
  napi_value v;
  if (napi_has_named_property(env, opts, name, &has) != napi_ok || !has) return -1;
  napi_get_named_property(env, opts, name, &v);
  return napi_get_value_bool(env, v, &b) == napi_ok ? (b ? 1 : 0) : -1;
}

/* Reads an integer option into *out, or `fallback` when present but not an integer. */
static void int_option(napi_env env, napi_value opts, const char *name, int64_t *out, int64_t fallback) {
  bool has = false;
  napi_value v;
  if (napi_has_named_property(env, opts, name, &has) != napi_ok || !has) return;
  napi_get_named_property(env, opts, name, &v);
  if (!get_i64(env, v, out)) *out = fallback;
}

/* Up to 16 strings of opts.paths, malloc()ed into paths; returns how many. */
static int path_option(napi_env env, napi_value opts, char **paths) {
  bool has = false, isarr = false;
  napi_value v;
  int npaths = 0;
  if (napi_has_named_property(env, opts, "paths", &has) != napi_ok || !has) return 0;
  napi_get_named_property(env, opts, "paths", &v);
  if (napi_is_array(env, v, &isarr) != napi_ok || !isarr) return 0;
  uint32_t n = 0;
  napi_get_array_length(env, v, &n);
  for (uint32_t i = 0; i < n && npaths < 16; i++) {
    napi_value e;
    size_t len = 0;
    if (napi_get_element(env, v, i, &e) != napi_ok) continue;
    if (napi_get_value_string_utf8(env, e, NULL, 0, &len) != napi_ok) continue;
    paths[npaths] = (char *)malloc(len + 1);
    if (!paths[npaths]) break;
    napi_get_value_string_utf8(env, e, paths[npaths], len + 1, &len);
    npaths++;
  }
  return npaths;
}

/* library, kind, gemm (the engine sgemm runs: "system" | "portable"), portable (the portable SGEMM's
 * variant), threads and config of the BLAS in use, onto res. */
static void describe_blas(napi_env env, napi_value res) {
  napi_set_named_property(env, res, "library", make_string(env, fopeify_blas_library()));
  napi_set_named_property(env, res, "kind", make_string(env, fopeify_blas_kind()));
  napi_set_named_property(env, res, "gemm", make_string(env, fopeify_blas_gemm_engine()));
  napi_set_named_property(env, res, "portable", make_string(env, fopeify_portable_init()));
  napi_set_named_property(env, res, "threads", make_int(env, fopeify_blas_reported_threads()));
  const char *c = fopeify_blas_config();
  if (c) napi_set_named_property(env, res, "config", make_string(env, c));
}

/*
 * load({ threads?: number, paths?: string[], threadTimeout?: number, flushDenormals?: boolean,
 *        autoCoretype?: boolean, systemBlas?: boolean })
 *   -> { ok: true, library, kind, gemm, portable, threads, config } | { ok: false, error }
 * When no BLAS library opens (or systemBlas is false), the portable SGEMM is used: kind "portable",
 * library its variant ("portable-avx512" | "portable-avx2" | "portable-generic").
 * Idempotent: once a BLAS is loaded, later calls only change the thread count.
 */
static napi_value Load(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], opts = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *paths[16];
  fopeify_blas_options o = {0, -1, 1, -1, -1, paths, 0};
  if (argc >= 1) {
    napi_valuetype t;
    CHECK(napi_typeof(env, argv[0], &t));
    if (t == napi_object) opts = argv[0];
  }
  if (opts) {
    int_option(env, opts, "threads", &o.threads, 0);
    int_option(env, opts, "threadTimeout", &o.timeout, -1);
    o.flush_denormals = bool_option(env, opts, "flushDenormals");
    o.auto_coretype = bool_option(env, opts, "autoCoretype");
    o.system_blas = bool_option(env, opts, "systemBlas") != 0;
    o.npaths = path_option(env, opts, paths);
  }
  fopeify_blas_load(&o);
  for (int i = 0; i < o.npaths; i++) free(paths[i]);

  napi_value res, t;
  CHECK(napi_create_object(env, &res));
  napi_get_boolean(env, true, &t);
  napi_set_named_property(env, res, "ok", t);
  describe_blas(env, res);
  return res;
}

/* setThreads(n) -> threads now in effect (0 when the BLAS cannot tell). */
static napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t n = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_i64(env, argv[0], &n) || n < 1 || n > 1024) {
    napi_throw_range_error(env, NULL, "setThreads: expected an integer 1..1024");
    return NULL;
  }
  if (!fopeify_blas_sgemm()) {
    napi_throw_error(env, NULL, "setThreads: no BLAS loaded (call load() first)");
    return NULL;
  }
  fopeify_blas_set_threads((int)n);
  return make_int(env, fopeify_blas_reported_threads());
}

/* info() -> { loaded, library, kind, gemm, portable, threads, config, flushDenormals } */
static napi_value Info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value res, b;
  CHECK(napi_create_object(env, &res));
  napi_get_boolean(env, fopeify_blas_sgemm() != NULL, &b);
  napi_set_named_property(env, res, "loaded", b);
  describe_blas(env, res);
  napi_get_boolean(env, fopeify_blas_flush_denormals() != 0, &b);
  napi_set_named_property(env, res, "flushDenormals", b);
  return res;
}

/* Highest element index (exclusive) a stored matrix of `rows x cols` with leading dimension ld
 * touches, in row-major order. */
static int64_t extent(int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return 0;
  return (rows - 1) * ld + cols;
}

/*
 * sgemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc,
 *       batch?, strideA?, strideB?, strideC?)
 * Row-major C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b] for b in 0..batch-1, where
 * X[b] starts at xOff + b * strideX (a stride of 0 broadcasts one matrix over the batch).
 * A, B, C are Float32Arrays; offsets and strides are in elements. Every access is bounds-checked
 * against the arrays before the BLAS is called, so a wrong argument throws instead of corrupting
 * memory.
 */
static napi_value sgemm_with(napi_env env, napi_callback_info info, sgemm_fn gemm, const char *missing) {
  size_t argc = 20;
  napi_value argv[20];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!gemm) {
    napi_throw_error(env, NULL, missing);
    return NULL;
  }
  if (argc != 16 && argc != 20) {
    napi_throw_type_error(env, NULL, "sgemm: expected 16 or 20 arguments");
    return NULL;
  }
  bool ta = false, tb = false;
  int64_t M, N, K, aOff, lda, bOff, ldb, cOff, ldc, batch = 1, sA = 0, sB = 0, sC = 0;
  double alpha, beta;
  float *A, *B, *C;
  size_t lenA, lenB, lenC;
  if (napi_get_value_bool(env, argv[0], &ta) != napi_ok || napi_get_value_bool(env, argv[1], &tb) != napi_ok ||
      !get_i64(env, argv[2], &M) || !get_i64(env, argv[3], &N) || !get_i64(env, argv[4], &K) ||
      napi_get_value_double(env, argv[5], &alpha) != napi_ok || !get_f32_array(env, argv[6], &A, &lenA) ||
      !get_i64(env, argv[7], &aOff) || !get_i64(env, argv[8], &lda) || !get_f32_array(env, argv[9], &B, &lenB) ||
      !get_i64(env, argv[10], &bOff) || !get_i64(env, argv[11], &ldb) ||
      napi_get_value_double(env, argv[12], &beta) != napi_ok || !get_f32_array(env, argv[13], &C, &lenC) ||
      !get_i64(env, argv[14], &cOff) || !get_i64(env, argv[15], &ldc)) {
    napi_throw_type_error(env, NULL,
                          "sgemm: bad argument (booleans, integers, numbers and Float32Arrays expected)");
    return NULL;
  }
  if (argc == 20 && (!get_i64(env, argv[16], &batch) || !get_i64(env, argv[17], &sA) ||
                     !get_i64(env, argv[18], &sB) || !get_i64(env, argv[19], &sC))) {
    napi_throw_type_error(env, NULL, "sgemm: bad batch arguments");
    return NULL;
  }
  const int64_t IMAX = 0x7fffffff;
  if (M < 0 || N < 0 || K < 0 || M > IMAX || N > IMAX || K > IMAX || batch < 0 || aOff < 0 || bOff < 0 ||
      cOff < 0 || sA < 0 || sB < 0 || sC < 0) {
    napi_throw_range_error(env, NULL, "sgemm: negative or too large size");
    return NULL;
  }
  /* Stored shapes: A is M x K (K x M when transposed), B is K x N (N x K when transposed). */
  int64_t aRows = ta ? K : M, aCols = ta ? M : K;
  int64_t bRows = tb ? N : K, bCols = tb ? K : N;
  if (lda < (aCols > 1 ? aCols : 1) || ldb < (bCols > 1 ? bCols : 1) || ldc < (N > 1 ? N : 1) || lda > IMAX ||
      ldb > IMAX || ldc > IMAX) {
    napi_throw_range_error(env, NULL, "sgemm: leading dimension too small");
    return NULL;
  }
  if (batch == 0 || M == 0 || N == 0) return NULL;
  int64_t last = batch - 1;
  if ((K > 0 && (aOff + last * sA + extent(aRows, aCols, lda) > (int64_t)lenA ||
                 bOff + last * sB + extent(bRows, bCols, ldb) > (int64_t)lenB)) ||
      cOff + last * sC + extent(M, N, ldc) > (int64_t)lenC) {
    napi_throw_range_error(env, NULL, "sgemm: matrix extends past the end of its array");
    return NULL;
  }
  if (batch > 1 && sC < extent(M, N, ldc) && sC != 0) {
    napi_throw_range_error(env, NULL, "sgemm: output batches overlap");
    return NULL;
  }
  fp_guard g;
  fp_enter(&g);
  for (int64_t b = 0; b < batch; b++) {
    gemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
         (float)alpha, A + aOff + b * sA, (int)lda, B + bOff + b * sB, (int)ldb, (float)beta, C + cOff + b * sC,
         (int)ldc);
  }
  fp_leave(&g);
  return NULL;
}

static napi_value Sgemm(napi_env env, napi_callback_info info) {
  return sgemm_with(env, info, fopeify_blas_sgemm(), "sgemm: no BLAS loaded (call load() first)");
}

/* portableSgemm(...sgemm's arguments): always the portable SGEMM, whichever BLAS is loaded (tests and
 * benchmarks compare the two in one process); threads as set by load()/setThreads(). */
static napi_value PortableSgemm(napi_env env, napi_callback_info info) {
  return sgemm_with(env, info, fopeify_portable_sgemm, "portableSgemm: unreachable");
}

/* systemSgemm(...sgemm's arguments): always the loaded BLAS library's cblas_sgemm, whichever engine
 * sgemm runs (the loader times both engines; benchmarks show both); throws when no library loaded. */
static napi_value SystemSgemm(napi_env env, napi_callback_info info) {
  return sgemm_with(env, info, fopeify_blas_system_sgemm(), "systemSgemm: no system BLAS library loaded");
}

/* The first argument as a NUL-terminated string in buf (cut to size − 1 bytes); false when absent or
 * not a string. */
static bool string_arg(napi_env env, napi_callback_info info, char *buf, size_t size) {
  size_t argc = 1, len = 0;
  napi_value argv[1];
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 1 &&
         napi_get_value_string_utf8(env, argv[0], buf, size, &len) == napi_ok;
}

/* useGemm("system" | "portable") -> the engine sgemm runs now. Switches when that engine is available
 * ("system" needs a loaded library); otherwise changes nothing. */
static napi_value UseGemm(napi_env env, napi_callback_info info) {
  char name[16];
  if (!string_arg(env, info, name, sizeof name)) {
    napi_throw_type_error(env, NULL, "useGemm: expected \"system\" or \"portable\"");
    return NULL;
  }
  fopeify_blas_use_gemm(name);
  return make_string(env, fopeify_blas_gemm_engine());
}

/* portableVariant(name?) -> the portable SGEMM's variant in use, after switching to `name` when given
 * and this CPU runs it ("portable-avx512" | "portable-avx2" | "portable-generic"). For tests: load()'s
 * `library` keeps naming the variant chosen at load. */
static napi_value PortableVariant(napi_env env, napi_callback_info info) {
  char name[32];
  fopeify_portable_init();
  if (string_arg(env, info, name, sizeof name)) fopeify_portable_use(name);
  return make_string(env, fopeify_portable_init());
}

/*
 * keepFreedMemory(mmapThreshold, trimThreshold) -> whether the C library took the settings (glibc only).
 * Every tfjs kernel output is a fresh zero-filled ArrayBuffer (V8 callocs it). Above glibc's mmap
 * threshold each one is a new mapping whose pages fault in on first write, which in a VM costs more
 * than the GEMM that fills it (a 4 MB output: 6 ms of GEMM, +3-5 ms of faults). Serving such blocks from
 * the heap, and not trimming freed memory back to the system, makes them reuse warm pages.
 */
static napi_value KeepFreedMemory(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int64_t mmap_threshold = 0, trim_threshold = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 2 || !get_i64(env, argv[0], &mmap_threshold) || !get_i64(env, argv[1], &trim_threshold) || mmap_threshold < 0 ||
      mmap_threshold > (int64_t)1 << 30 || trim_threshold < 0 || trim_threshold > (int64_t)1 << 40) {
    napi_throw_range_error(env, NULL, "keepFreedMemory: expected (mmapThreshold 0..2^30, trimThreshold 0..2^40) bytes");
    return NULL;
  }
  int ok = 0;
#if defined(__GLIBC__)
  ok = mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold) == 1;
  ok = ok && mallopt(M_TRIM_THRESHOLD, (int)(trim_threshold > INT32_MAX ? INT32_MAX : trim_threshold)) == 1;
#endif
  napi_value b;
  napi_get_boolean(env, ok, &b);
  return b;
}

static napi_value Init(napi_env env, napi_value exports) {
  static const fopeify_export fns[] = {
      {"load", Load},           {"setThreads", SetThreads}, {"sgemm", Sgemm},
      {"portableSgemm", PortableSgemm}, {"systemSgemm", SystemSgemm}, {"useGemm", UseGemm},
      {"portableVariant", PortableVariant}, {"info", Info}, {"keepFreedMemory", KeepFreedMemory},
  };
  define_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
  fopeify_register_passes(env, exports);
  fopeify_register_decode(env, exports);
  fopeify_register_attention(env, exports);
  napi_value v;
  napi_create_int32(env, FOPEIFY_ABI_VERSION, &v);
  napi_set_named_property(env, exports, "abiVersion", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
