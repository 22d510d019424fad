/*
 * fopeify_native: a tiny Node-API addon that finds a BLAS library at run time and exposes
 * single-precision GEMM on Float32Arrays, without copies.
 *
 * Why this shape:
 *  - No BLAS headers at build time: the cblas prototypes are declared below and the library is
 *    dlopen()ed at run time, so the addon builds on any machine with a C compiler and the
 *    `node-api-headers` npm package, and works with whichever BLAS the user has installed
 *    (OpenBLAS, BLIS, MKL, Apple Accelerate). With none of them (or `systemBlas: false`), the
 *    addon's own portable SGEMM (sgemm.c) takes their place behind the same cblas_sgemm signature.
 *  - No node-gyp: only Node-API (ABI stable) functions are used, so the headers of
 *    `node-api-headers` suffice and one binary works across Node versions.
 *  - Loading is explicit (`load()`), not at module init, so JS can decide thread counts first and
 *    so a missing BLAS is a normal answer ({ok:false, error}) rather than an exception at import.
 */
#define NAPI_VERSION 8
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME fopeify_native
#endif
#include <node_api.h>

#include <stdbool.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#if defined(_WIN32)
/* Windows is not supported by this addon (the build script says so and skips it). */
#error "fopeify_native: Windows is not supported"
#endif

#include <dlfcn.h>
#include <unistd.h>

#include "sgemm.h" /* the portable SGEMM, used when no BLAS library loads */

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define FOPEIFY_HAVE_MXCSR 1
#endif

/* ---- cblas ABI, declared by hand (values fixed by the CBLAS standard) ---- */
enum { CblasRowMajor = 101, CblasColMajor = 102 };
enum { CblasNoTrans = 111, CblasTrans = 112 };
typedef void (*sgemm_fn)(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                         int lda, const float *B, int ldb, float beta, float *C, int ldc);
typedef void (*set_threads_fn)(int);
typedef int (*get_threads_fn)(void);
typedef char *(*get_config_fn)(void);
/* MKL's MKL_Set_Num_Threads takes int; BLIS's bli_thread_set_num_threads takes dim_t (int64 on
 * 64-bit builds); both accept an int in a register on the ABIs we support, but we call BLIS's
 * through a 64-bit prototype to be exact. */
typedef void (*set_threads64_fn)(int64_t);

static void *g_lib = NULL;
static sgemm_fn g_sgemm = NULL;
static set_threads_fn g_set_threads = NULL;     /* openblas_set_num_threads / MKL_Set_Num_Threads */
static set_threads64_fn g_set_threads64 = NULL; /* bli_thread_set_num_threads */
static get_threads_fn g_get_threads = NULL;
static get_config_fn g_get_config = NULL;
static char g_lib_name[512] = "";
static char g_kind[32] = "";
static int g_threads = 0;
static int g_flush_denormals = 1;

/* ---- denormal flushing ----
 * Denormal products make OpenBLAS ~1.5x slower. MXCSR is per thread, and threads created by a
 * thread inherit its MXCSR, so we set FTZ/DAZ around every call into the BLAS (dlopen included,
 * because OpenBLAS starts its worker threads in its constructor) and restore the caller's value
 * afterwards: JavaScript on the main thread keeps IEEE semantics. Cost: two ldmxcsr per call. */
typedef struct {
  unsigned int saved;
} fp_guard;

static inline void fp_enter(fp_guard *g) {
#ifdef FOPEIFY_HAVE_MXCSR
  g->saved = _mm_getcsr();
  if (g_flush_denormals) _mm_setcsr(g->saved | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
#else
  (void)g;
#endif
}
static inline void fp_leave(fp_guard *g) {
#ifdef FOPEIFY_HAVE_MXCSR
  _mm_setcsr(g->saved);
#else
  (void)g;
#endif
}

/* ---- helpers ---- */
#define CHECK(call)                                                                                        \
  do {                                                                                                     \
    if ((call) != napi_ok) {                                                                               \
      napi_throw_error(env, NULL, "fopeify_native: Node-API call failed: " #call);                        \
      return NULL;                                                                                         \
    }                                                                                                      \
  } while (0)

static napi_value make_string(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static napi_value make_int(napi_env env, int64_t i) {
  napi_value v;
  napi_create_int64(env, i, &v);
  return v;
}

static int get_i64(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= -9007199254740991.0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

static int get_f32_array(napi_env env, napi_value v, float **data, size_t *len) {
  napi_typedarray_type type;
  void *ptr;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, len, &ptr, &ab, &off) != napi_ok) return 0;
  if (type != napi_float32_array) return 0;
  *data = (float *)ptr;
  return 1;
}

static void set_threads_locked(int n) {
  fp_guard g;
  fp_enter(&g);
  if (g_set_threads) g_set_threads(n);
  else if (g_set_threads64) g_set_threads64((int64_t)n);
  fp_leave(&g);
  g_threads = n;
  fopeify_portable_set_threads(n);
}

static int try_open(const char *path, const char *kind) {
  fp_guard g;
  fp_enter(&g);
  /* RTLD_LOCAL: keep the BLAS's symbols from clashing with anything else in the process. */
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  fp_leave(&g);
  if (!h) return 0;
  sgemm_fn f = (sgemm_fn)dlsym(h, "cblas_sgemm");
  if (!f) {
    dlclose(h);
    return 0;
  }
  g_lib = h;
  g_sgemm = f;
  g_set_threads = (set_threads_fn)dlsym(h, "openblas_set_num_threads");
  if (!g_set_threads) g_set_threads = (set_threads_fn)dlsym(h, "MKL_Set_Num_Threads");
  if (!g_set_threads) g_set_threads64 = (set_threads64_fn)dlsym(h, "bli_thread_set_num_threads");
  g_get_threads = (get_threads_fn)dlsym(h, "openblas_get_num_threads");
  if (!g_get_threads) g_get_threads = (get_threads_fn)dlsym(h, "MKL_Get_Max_Threads");
  g_get_config = (get_config_fn)dlsym(h, "openblas_get_config");
  snprintf(g_lib_name, sizeof g_lib_name, "%s", path);
  snprintf(g_kind, sizeof g_kind, "%s", kind);
  return 1;
}

static int g_auto_coretype = 1;

static const char *pick_coretype(void) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  /* __builtin_cpu_supports also checks that the OS saves the AVX/AVX-512 register state (XCR0). */
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512cd"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return NULL;
}

static void set_env_default(const char *name, const char *value) {
  /* overwrite=0: a value the user exported wins over ours. */
  if (value && *value) setenv(name, value, 0);
}

/*
 * load({ threads?: number, paths?: string[], threadTimeout?: number, flushDenormals?: boolean,
 *        systemBlas?: boolean })
 *   -> { ok: true, library, kind, threads, config } | { ok: false, error }
 * When no BLAS library opens (or systemBlas is false), the portable SGEMM is used: kind "portable",
 * library its variant ("portable-avx512" | "portable-avx2" | "portable-generic").
 * Idempotent: once a BLAS is loaded, later calls only change the thread count.
 */
static napi_value Load(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], opts = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t threads = 0, timeout = -1;
  bool system_blas = true; /* false: skip the system BLAS libraries, use the portable SGEMM */
  char *paths[16];
  int npaths = 0;
  if (argc >= 1) {
    napi_valuetype t;
    CHECK(napi_typeof(env, argv[0], &t));
    if (t == napi_object) opts = argv[0];
  }
  if (opts) {
    napi_value v;
    bool has;
    if (napi_has_named_property(env, opts, "threads", &has) == napi_ok && has) {
      napi_get_named_property(env, opts, "threads", &v);
      if (!get_i64(env, v, &threads)) threads = 0;
    }
    if (napi_has_named_property(env, opts, "threadTimeout", &has) == napi_ok && has) {
      napi_get_named_property(env, opts, "threadTimeout", &v);
      if (!get_i64(env, v, &timeout)) timeout = -1;
    }
    if (napi_has_named_property(env, opts, "flushDenormals", &has) == napi_ok && has) {
      bool b = true;
      napi_get_named_property(env, opts, "flushDenormals", &v);
      if (napi_get_value_bool(env, v, &b) == napi_ok) g_flush_denormals = b ? 1 : 0;
    }
    if (napi_has_named_property(env, opts, "autoCoretype", &has) == napi_ok && has) {
      bool b = true;
      napi_get_named_property(env, opts, "autoCoretype", &v);
      if (napi_get_value_bool(env, v, &b) == napi_ok) g_auto_coretype = b ? 1 : 0;
    }
    if (napi_has_named_property(env, opts, "systemBlas", &has) == napi_ok && has) {
      napi_get_named_property(env, opts, "systemBlas", &v);
      if (napi_get_value_bool(env, v, &system_blas) != napi_ok) system_blas = true;
    }
    if (napi_has_named_property(env, opts, "paths", &has) == napi_ok && has) {
      bool isarr = false;
      napi_get_named_property(env, opts, "paths", &v);
      if (napi_is_array(env, v, &isarr) == napi_ok && isarr) {
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
      }
    }
  }
  if (threads < 0 || threads > 1024) threads = 0;

  if (!g_sgemm) {
    char buf[32];
    /* These must be in the environment before the BLAS initialises: it reads them once. */
    if (threads > 0) {
      snprintf(buf, sizeof buf, "%d", (int)threads);
      set_env_default("OPENBLAS_NUM_THREADS", buf);
      set_env_default("BLIS_NUM_THREADS", buf);
      set_env_default("MKL_NUM_THREADS", buf);
      set_env_default("VECLIB_MAXIMUM_THREADS", buf);
    }
    /* Idle OpenBLAS workers busy-wait for 2^N cycles (default N=28, ~0.1 s) after each call; in a
     * training step the next GEMM comes after JS elementwise work, so spinning workers would compete
     * with the JS thread for cores. A short timeout lets them sleep soon after a GEMM. */
    if (timeout >= 4 && timeout <= 30) {
      snprintf(buf, sizeof buf, "%d", (int)timeout);
      set_env_default("OPENBLAS_THREAD_TIMEOUT", buf);
    }
    /* Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) identifies some AVX-512 CPUs (AMD Zen 4, seen under a
     * hypervisor) as "Prescott" and runs SSE3 kernels: 40 instead of 210 GFLOP/s on 2 cores. When the
     * user has not chosen a core type, pick it from what this CPU and OS support. The kernels named
     * here are the ones OpenBLAS itself uses for every newer core of the same ISA (Zen 1-3 use the
     * Haswell kernels; Cooperlake/Sapphire Rapids share SkylakeX's sgemm). */
    if (g_auto_coretype) {
      const char *ct = pick_coretype();
      if (ct) set_env_default("OPENBLAS_CORETYPE", ct);
    }
    int ok = 0;
    for (int i = 0; i < npaths && !ok && system_blas; i++) ok = try_open(paths[i], "custom");
    if (!ok && system_blas) {
      static const char *const cands[][2] = {
#if defined(__APPLE__)
        {"/opt/homebrew/opt/openblas/lib/libopenblas.dylib", "openblas"},
        {"/usr/local/opt/openblas/lib/libopenblas.dylib", "openblas"},
        {"libopenblas.dylib", "openblas"},
        {"/System/Library/Frameworks/Accelerate.framework/Accelerate", "accelerate"},
#else
        {"libopenblas.so.0", "openblas"},
        {"libopenblas.so", "openblas"},
        {"libopenblasp.so.0", "openblas"},
        {"libblis.so.4", "blis"},
        {"libblis.so", "blis"},
        {"libmkl_rt.so.2", "mkl"},
        {"libmkl_rt.so", "mkl"},
#endif
      };
      for (size_t i = 0; i < sizeof cands / sizeof cands[0] && !ok; i++) ok = try_open(cands[i][0], cands[i][1]);
    }
    if (!ok) {
      g_sgemm = fopeify_portable_sgemm;
      g_set_threads = fopeify_portable_set_threads;
      g_get_threads = fopeify_portable_get_threads;
      snprintf(g_lib_name, sizeof g_lib_name, "%s", fopeify_portable_init());
      snprintf(g_kind, sizeof g_kind, "portable");
      ok = 1;
    }
    for (int i = 0; i < npaths; i++) free(paths[i]);
    npaths = 0;
  }
  for (int i = 0; i < npaths; i++) free(paths[i]);
  if (threads <= 0 && g_sgemm == fopeify_portable_sgemm) threads = sysconf(_SC_NPROCESSORS_ONLN);
  if (threads > 0) set_threads_locked((int)threads);
  else if (g_get_threads) g_threads = g_get_threads();
  if (g_threads > 0) fopeify_portable_set_threads(g_threads);

  napi_value res, t;
  CHECK(napi_create_object(env, &res));
  napi_get_boolean(env, true, &t);
  napi_set_named_property(env, res, "ok", t);
  napi_set_named_property(env, res, "library", make_string(env, g_lib_name));
  napi_set_named_property(env, res, "kind", make_string(env, g_kind));
  napi_set_named_property(env, res, "threads", make_int(env, g_get_threads ? g_get_threads() : g_threads));
  if (g_get_config) {
    const char *c = g_get_config();
    if (c) napi_set_named_property(env, res, "config", make_string(env, c));
  }
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
  if (!g_sgemm) {
    napi_throw_error(env, NULL, "setThreads: no BLAS loaded (call load() first)");
    return NULL;
  }
  set_threads_locked((int)n);
  return make_int(env, g_get_threads ? g_get_threads() : g_threads);
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
static napi_value sgemm_with(napi_env env, napi_callback_info info, sgemm_fn gemm) {
  size_t argc = 20;
  napi_value argv[20];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!gemm) {
    napi_throw_error(env, NULL, "sgemm: no BLAS loaded (call load() first)");
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

static napi_value Sgemm(napi_env env, napi_callback_info info) { return sgemm_with(env, info, g_sgemm); }

/* portableSgemm(...sgemm's arguments): always the portable SGEMM, whichever BLAS is loaded (tests and
 * benchmarks compare the two in one process); threads as set by load()/setThreads(). */
static napi_value PortableSgemm(napi_env env, napi_callback_info info) {
  return sgemm_with(env, info, fopeify_portable_sgemm);
}

/* portableVariant(name?) -> the portable SGEMM's variant in use, after switching to `name` when given
 * and this CPU runs it ("portable-avx512" | "portable-avx2" | "portable-generic"). For tests: load()'s
 * `library` keeps naming the variant chosen at load. */
static napi_value PortableVariant(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[32];
  size_t len = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fopeify_portable_init();
  if (argc >= 1 && napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) == napi_ok) fopeify_portable_use(name);
  return make_string(env, fopeify_portable_init());
}

/* ---- elementwise arithmetic ----
 * tfjs-cpu computes each element as a JavaScript (double precision) expression of float32 inputs and
 * stores the result to a Float32Array. Doing exactly that here - double arithmetic, one conversion
 * to float at the store - gives bit-identical results (build with -ffp-contract=off so the compiler
 * cannot fuse a*b+c into an FMA). The loops vectorise; JS does not. Only IEEE-exact operations
 * (+ - * / sqrt) are here: exp/log/tanh would need V8's own libm to match bit for bit.
 * Runs on the calling (JS) thread with its normal MXCSR, so denormals behave as in JS.
 */
enum { OP_ADD = 0, OP_SUB = 1, OP_MUL = 2, OP_DIV = 3, OP_SQDIFF = 4 };
enum { UOP_NEG = 0, UOP_SQUARE = 1, UOP_SQRT = 2, UOP_RSQRT = 3, UOP_RELU = 4, UOP_ABS = 5 };

#define BIN_LOOP(EXPR)                                                                                     \
  for (int64_t o = 0; o < total; o += n) {                                                                 \
    if (ia == 1 && ib == 1) {                                                                              \
      const float *pa = A + offA, *pb = B + offB;                                                          \
      float *po = O + o;                                                                                   \
      for (int64_t j = 0; j < n; j++) {                                                                    \
        double a = pa[j], b = pb[j];                                                                       \
        po[j] = (float)(EXPR);                                                                             \
      }                                                                                                    \
    } else if (ia == 1 && ib == 0) {                                                                       \
      const float *pa = A + offA;                                                                          \
      const double b = B[offB];                                                                            \
      float *po = O + o;                                                                                   \
      for (int64_t j = 0; j < n; j++) {                                                                    \
        double a = pa[j];                                                                                  \
        po[j] = (float)(EXPR);                                                                             \
      }                                                                                                    \
    } else if (ia == 0 && ib == 1) {                                                                       \
      const double a = A[offA];                                                                            \
      const float *pb = B + offB;                                                                          \
      float *po = O + o;                                                                                   \
      for (int64_t j = 0; j < n; j++) {                                                                    \
        double b = pb[j];                                                                                  \
        po[j] = (float)(EXPR);                                                                             \
      }                                                                                                    \
    } else {                                                                                               \
      for (int64_t j = 0; j < n; j++) {                                                                    \
        double a = A[offA + j * ia], b = B[offB + j * ib];                                                 \
        O[o + j] = (float)(EXPR);                                                                          \
      }                                                                                                    \
    }                                                                                                      \
    for (int d = nd - 2; d >= 0; d--) {                                                                    \
      offA += sa[d];                                                                                       \
      offB += sb[d];                                                                                       \
      if (++idx[d] < shape[d]) break;                                                                      \
      offA -= sa[d] * shape[d];                                                                            \
      offB -= sb[d] * shape[d];                                                                            \
      idx[d] = 0;                                                                                          \
    }                                                                                                      \
  }

#define MAX_DIMS 16

/* binary(op, A, B, out, geom): geom is a Float64Array [nd, shape[nd], strideA[nd], strideB[nd]] of
 * the output's (collapsed) dims and each input's element strides (0 = broadcast). */
static napi_value Binary(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t op;
  float *A, *B, *O;
  size_t lenA, lenB, lenO, glen;
  napi_typedarray_type gt;
  void *gptr;
  napi_value gab;
  size_t goff;
  if (argc != 5 || napi_get_value_int32(env, argv[0], &op) != napi_ok || !get_f32_array(env, argv[1], &A, &lenA) ||
      !get_f32_array(env, argv[2], &B, &lenB) || !get_f32_array(env, argv[3], &O, &lenO) ||
      napi_get_typedarray_info(env, argv[4], &gt, &glen, &gptr, &gab, &goff) != napi_ok || gt != napi_float64_array) {
    napi_throw_type_error(env, NULL, "binary: expected (op, Float32Array, Float32Array, Float32Array, Float64Array)");
    return NULL;
  }
  const double *g = (const double *)gptr;
  if (glen < 1 || g[0] < 1 || g[0] > MAX_DIMS || glen != 1 + 3 * (size_t)g[0] || op < OP_ADD || op > OP_SQDIFF) {
    napi_throw_range_error(env, NULL, "binary: bad op or geometry");
    return NULL;
  }
  const int nd = (int)g[0];
  int64_t shape[MAX_DIMS], sa[MAX_DIMS], sb[MAX_DIMS], idx[MAX_DIMS];
  int64_t total = 1, maxA = 0, maxB = 0;
  for (int d = 0; d < nd; d++) {
    shape[d] = (int64_t)g[1 + d];
    sa[d] = (int64_t)g[1 + nd + d];
    sb[d] = (int64_t)g[1 + 2 * nd + d];
    idx[d] = 0;
    if (shape[d] < 1 || sa[d] < 0 || sb[d] < 0) {
      napi_throw_range_error(env, NULL, "binary: bad geometry");
      return NULL;
    }
    total *= shape[d];
    maxA += (shape[d] - 1) * sa[d];
    maxB += (shape[d] - 1) * sb[d];
  }
  if (total > (int64_t)lenO || maxA >= (int64_t)lenA || maxB >= (int64_t)lenB) {
    napi_throw_range_error(env, NULL, "binary: geometry exceeds the arrays");
    return NULL;
  }
  const int64_t n = shape[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
  int64_t offA = 0, offB = 0;
  switch (op) {
    case OP_ADD: BIN_LOOP(a + b) break;
    case OP_SUB: BIN_LOOP(a - b) break;
    case OP_MUL: BIN_LOOP(a * b) break;
    case OP_DIV: BIN_LOOP(a / b) break;
    case OP_SQDIFF: BIN_LOOP((a - b) * (a - b)) break;
  }
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
  const int64_t n = (int64_t)lenO;
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
  return NULL;
}

/* ---- softmax passes of blockwise attention ----
 * The attention recurrences (src/model/native-attention.ts, src/train/native-attention.ts) spend
 * most of their non-GEMM time exponentiating score blocks. These loops run that work in C on the
 * BLAS's thread count: rows are split across pthreads, and exp is a branch-free Cephes-style
 * polynomial (relative error ~1e-7) written with GCC/Clang vector extensions so that it runs 8 lanes
 * wide where the CPU has AVX2 (target_clones picks the variant at load time) and 4 wide elsewhere.
 * Semantics match backend/vector-math.ts (the WebAssembly versions, used when the addon is absent). */
#include <pthread.h>

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define FOPEIFY_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FOPEIFY_CLONES
#endif

/* m ? a : b per lane, m from a vector comparison (all ones / all zeros); C has no vector ?: */
static inline v8f v8_select(v8i m, v8f a, v8f b) {
  v8i ai, bi;
  memcpy(&ai, &a, sizeof ai);
  memcpy(&bi, &b, sizeof bi);
  v8i ri = (ai & m) | (bi & ~m);
  v8f r;
  memcpy(&r, &ri, sizeof r);
  return r;
}

/* The constants and the order of every operation are those of vector-math.ts's WebAssembly exp, so
 * both give the same bits (training results do not depend on which one ran). */
#define EXP_LO (-87.33654475f)
#define EXP_HI (88.3762626647949f)
static inline v8f v8_exp(v8f x) {
  const v8f lo = (v8f){EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO};
  const v8f hi = (v8f){EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI};
  v8f xc = v8_select(x < hi, x, hi);
  xc = v8_select(xc > lo, xc, lo);
  /* n = round(x·log2 e) with the 1.5·2^23 trick; the low bits of t hold n. */
  const v8f magic = (v8f){12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f};
  v8f t = xc * 1.44269504088896341f + magic;
  v8f n = t - magic;
  v8f r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  v8f p = 1.9875691500e-4f * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  v8i ti;
  memcpy(&ti, &t, sizeof ti);
  v8i e = (ti - 0x4B400000 + 127) << 23;
  v8f scale;
  memcpy(&scale, &e, sizeof scale);
  v8f y = p * scale;
  const v8f zero = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
  return v8_select(x >= lo, y, zero); /* −∞ (masked), NaN and deep underflow give exactly 0 */
}
static inline float f_exp(float x) {
  v8f v = (v8f){x, x, x, x, x, x, x, x};
  return v8_exp(v)[0];
}


/* Run fn over [0, n) split into one contiguous range per thread (the BLAS's thread count), range
 * starts rounded down to multiples of `align`; one thread when n < `serial_below`. A thread that
 * cannot be started has its range run by the caller. */
typedef void (*range_fn)(void *ctx, int64_t i0, int64_t i1);
typedef struct {
  range_fn fn;
  void *ctx;
  int64_t i0, i1;
} range_job;
#define MAX_POOL_THREADS 64

static void *range_worker(void *arg) {
  range_job *j = (range_job *)arg;
  j->fn(j->ctx, j->i0, j->i1);
  return NULL;
}

static void parallel_ranges(range_fn fn, void *ctx, int64_t n, int64_t align, int64_t serial_below) {
  int nt = g_threads > 0 ? g_threads : 1;
  if (nt > MAX_POOL_THREADS) nt = MAX_POOL_THREADS;
  if (n < serial_below || n < 2 * nt) nt = 1;
  range_job jobs[MAX_POOL_THREADS];
  pthread_t tid[MAX_POOL_THREADS];
  int started[MAX_POOL_THREADS] = {0};
  for (int t = 0; t < nt; t++) {
    int64_t a = t == 0 ? 0 : (n * t / nt) / align * align;
    int64_t b = t + 1 == nt ? n : (n * (t + 1) / nt) / align * align;
    jobs[t] = (range_job){fn, ctx, a, b};
  }
  for (int t = 1; t < nt; t++) started[t] = pthread_create(&tid[t], NULL, range_worker, &jobs[t]) == 0;
  range_worker(&jobs[0]);
  for (int t = 1; t < nt; t++) {
    if (started[t]) pthread_join(tid[t], NULL);
    else range_worker(&jobs[t]);
  }
}

typedef struct {
  int op; /* 0: rows, 1: backward */
  float *S, *dP;
  int64_t n4;
  const float *mOld, *lse, *d;
  float *mNew, *sum;
  int64_t r0, r1;
} softmax_job;

FOPEIFY_CLONES static void softmax_rows_range(softmax_job *j) {
  const int64_t n4 = j->n4, n8 = n4 & ~(int64_t)7;
  for (int64_t r = j->r0; r < j->r1; r++) {
    float *row = j->S + r * n4;
    v8f vm = (v8f){-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (int64_t c = 0; c < n8; c += 8) {
      v8f x;
      memcpy(&x, row + c, sizeof x);
      vm = v8_select(x > vm, x, vm);
    }
    float mx = j->mOld[r];
    for (int k = 0; k < 8; k++) mx = vm[k] > mx ? vm[k] : mx;
    for (int64_t c = n8; c < n4; c++) mx = row[c] > mx ? row[c] : mx;
    j->mNew[r] = mx;
    if (mx == -INFINITY) {
      memset(row, 0, (size_t)n4 * sizeof(float));
      j->sum[r] = 0;
      continue;
    }
    /* Sum in four lanes over consecutive groups of four, then ((l0 + l1) + l2) + l3: the order of
     * the WebAssembly version, so the sums are bit-identical too. */
    v4f acc = (v4f){0, 0, 0, 0};
    for (int64_t c = 0; c < n8; c += 8) {
      v8f x;
      memcpy(&x, row + c, sizeof x);
      v8f e = v8_exp(x - mx);
      memcpy(row + c, &e, sizeof e);
      v4f lo4, hi4;
      memcpy(&lo4, &e, sizeof lo4);
      memcpy(&hi4, (const char *)&e + sizeof lo4, sizeof hi4);
      acc += lo4;
      acc += hi4;
    }
    if (n8 < n4) { /* n4 is a multiple of 4: one group left */
      v8f x = (v8f){row[n8], row[n8 + 1], row[n8 + 2], row[n8 + 3], 0, 0, 0, 0};
      v8f e = v8_exp(x - mx);
      v4f lo4;
      memcpy(&lo4, &e, sizeof lo4);
      memcpy(row + n8, &lo4, sizeof lo4);
      acc += lo4;
    }
    j->sum[r] = ((acc[0] + acc[1]) + acc[2]) + acc[3];
  }
}

FOPEIFY_CLONES static void softmax_backward_range(softmax_job *j) {
  const int64_t n4 = j->n4, n8 = n4 & ~(int64_t)7;
  for (int64_t r = j->r0; r < j->r1; r++) {
    float *srow = j->S + r * n4, *drow = j->dP + r * n4;
    const float l = j->lse[r], dd = j->d[r];
    int64_t c = 0;
    for (; c < n8; c += 8) {
      v8f x, g;
      memcpy(&x, srow + c, sizeof x);
      memcpy(&g, drow + c, sizeof g);
      v8f p = v8_exp(x - l);
      v8f ds = p * (g - dd);
      memcpy(srow + c, &p, sizeof p);
      memcpy(drow + c, &ds, sizeof ds);
    }
    if (c < n4) { /* n4 is a multiple of 4: one group left, one vector exp */
      v8f x = (v8f){srow[c], srow[c + 1], srow[c + 2], srow[c + 3], 0, 0, 0, 0};
      v8f p = v8_exp(x - l);
      for (int k = 0; k < 4; k++) {
        srow[c + k] = p[k];
        drow[c + k] = p[k] * (drow[c + k] - dd);
      }
    }
  }
}

static void softmax_ranges(void *ctx, int64_t r0, int64_t r1) {
  softmax_job j = *(softmax_job *)ctx;
  j.r0 = r0;
  j.r1 = r1;
  if (j.op == 0) softmax_rows_range(&j);
  else softmax_backward_range(&j);
}

/* Rows across threads, only when the block is big enough to pay for thread start-up. */
static void softmax_parallel(softmax_job *base, int64_t rows) {
  parallel_ranges(softmax_ranges, base, rows, 1, base->n4 > 0 ? (65536 + base->n4 - 1) / base->n4 : rows + 1);
}

static bool f32_at_least(napi_env env, napi_value v, float **p, size_t need) {
  size_t len;
  return get_f32_array(env, v, p, &len) && len >= need;
}

/* softmaxRows(S, rows, n4, mOld, mNew, sum): per row r, m = max(mOld[r], max S[r]); mNew[r] = m;
 * S[r] = exp(S[r] − m) and sum[r] = Σ S[r] (a row with m = −∞ becomes 0, sum 0). */
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
  softmax_job j = {0, S, NULL, n4, mOld, NULL, NULL, mNew, sum, 0, rows};
  softmax_parallel(&j, rows);
  return NULL;
}

/* softmaxBackward(S, dP, rows, n4, lse, d): P = exp(S − lse[r]) into S, dS = P ∘ (dP − d[r]) into dP. */
static napi_value SoftmaxBackward(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t rows, n4;
  float *S, *dP, *lse, *d;
  if (argc != 6 || napi_get_value_int64(env, argv[2], &rows) != napi_ok || napi_get_value_int64(env, argv[3], &n4) != napi_ok ||
      rows < 0 || n4 < 0 || !f32_at_least(env, argv[0], &S, (size_t)(rows * n4)) || !f32_at_least(env, argv[1], &dP, (size_t)(rows * n4)) ||
      !f32_at_least(env, argv[4], &lse, (size_t)rows) || !f32_at_least(env, argv[5], &d, (size_t)rows)) {
    napi_throw_type_error(env, NULL, "softmaxBackward: expected (S, dP, rows, n4, lse, d) with Float32Arrays large enough");
    return NULL;
  }
  softmax_job j = {1, S, dP, n4, NULL, lse, d, NULL, NULL, 0, rows};
  softmax_parallel(&j, rows);
  return NULL;
}

/* ---- SwiGLU activation ----
 * y = g·σ(g)·u with σ(g) = 1 / (1 + exp(−g)), optionally storing σ(g): the operations and order of
 * vector-math.ts's swigluForward, so both give the same bits; threaded like the softmax passes. */
typedef struct {
  const float *g, *u;
  float *y, *sig;
} swiglu_job;

FOPEIFY_CLONES static void swiglu_ranges(void *ctx, int64_t i0, int64_t i1) {
  const swiglu_job *j = (const swiglu_job *)ctx;
  int64_t i = i0;
  const v8f one = (v8f){1, 1, 1, 1, 1, 1, 1, 1};
  for (; i + 8 <= i1; i += 8) {
    v8f g, u;
    memcpy(&g, j->g + i, sizeof g);
    memcpy(&u, j->u + i, sizeof u);
    v8f sg = one / (one + v8_exp(-g));
    v8f y = g * sg * u;
    memcpy(j->y + i, &y, sizeof y);
    if (j->sig) memcpy(j->sig + i, &sg, sizeof sg);
  }
  for (; i < i1; i++) {
    float g = j->g[i];
    float sg = 1.0f / (1.0f + f_exp(-g));
    j->y[i] = g * sg * j->u[i];
    if (j->sig) j->sig[i] = sg;
  }
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
  swiglu_job j = {g, u, y, sig};
  /* range starts on multiples of 8, so every element takes the same (vector) path as in one thread */
  parallel_ranges(swiglu_ranges, &j, (int64_t)lenY, 8, 65536);
  return NULL;
}

/* ---- AdamW ----
 * The fused update of src/train/optimizer.ts, element for element in the same double-precision
 * expressions (rounded to float32 where the JS stores into Float32Arrays), so the results are the
 * same bits; rows of the parameter are split across threads. sumSquares is the global-norm pass in
 * the same sequential order (a double sum is not reassociated without -ffast-math). */
typedef struct {
  float *p, *m, *v, *out;
  const float *g;
  double b1, b2, c1, c2, eps, lr, decay, clip;
} adamw_job;

static void adamw_ranges(void *ctx, int64_t i0, int64_t i1) {
  const adamw_job *j = (const adamw_job *)ctx;
  const double b1 = j->b1, b2 = j->b2, c1 = j->c1, c2 = j->c2, eps = j->eps, lr = j->lr, decay = j->decay, clip = j->clip;
  for (int64_t i = i0; i < i1; i++) {
    const double gi = (double)j->g[i] * clip;
    const double mi = b1 * (double)j->m[i] + (1 - b1) * gi;
    const double vi = b2 * (double)j->v[i] + (1 - b2) * gi * gi;
    j->m[i] = (float)mi;
    j->v[i] = (float)vi;
    const double pi = (double)j->p[i];
    j->out[i] = (float)(pi - lr * ((double)j->m[i] / c1 / (sqrt((double)j->v[i] / c2) + eps)) - decay * pi);
  }
}

/* adamw(p, g, m, v, out, hyper): hyper = Float64Array [b1, b2, c1, c2, eps, lr, decay, clip]; out may be p. */
static napi_value Adamw(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  float *p, *g, *m, *v, *out;
  size_t lp, lg, lm, lv, lo, hlen;
  napi_typedarray_type ht;
  void *hptr;
  napi_value hab;
  size_t hoff;
  if (argc != 6 || !get_f32_array(env, argv[0], &p, &lp) || !get_f32_array(env, argv[1], &g, &lg) || !get_f32_array(env, argv[2], &m, &lm) ||
      !get_f32_array(env, argv[3], &v, &lv) || !get_f32_array(env, argv[4], &out, &lo) ||
      napi_get_typedarray_info(env, argv[5], &ht, &hlen, &hptr, &hab, &hoff) != napi_ok || ht != napi_float64_array || hlen != 8 ||
      lg < lp || lm < lp || lv < lp || lo < lp) {
    napi_throw_type_error(env, NULL, "adamw: expected (p, g, m, v, out) Float32Arrays at least as long as p, and Float64Array(8) hyper-parameters");
    return NULL;
  }
  const double *h = (const double *)hptr;
  adamw_job j = {p, m, v, out, g, h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]};
  parallel_ranges(adamw_ranges, &j, (int64_t)lp, 1, 65536);
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
  for (size_t i = 0; i < n; i++) sum += (double)x[i] * (double)x[i];
  napi_value r;
  CHECK(napi_create_double(env, sum, &r));
  return r;
}

/* ---- RMSNorm (inference) ----
 * out[r] = x[r] · (1 / sqrt(mean(x[r]²) + eps)) · w, the mean accumulated in double; rows across
 * threads. Used by the runtime's forward pass outside gradient recording only. */
typedef struct {
  const float *x, *w;
  float *out;
  int64_t h;
  double eps;
} rmsnorm_job;

static void rmsnorm_ranges(void *ctx, int64_t r0, int64_t r1) {
  const rmsnorm_job *j = (const rmsnorm_job *)ctx;
  const int64_t h = j->h;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + r * h;
    float *o = j->out + r * h;
    double ss = 0;
    for (int64_t i = 0; i < h; i++) ss += (double)x[i] * (double)x[i];
    const float inv = (float)(1.0 / sqrt(ss / (double)h + j->eps));
    for (int64_t i = 0; i < h; i++) o[i] = x[i] * inv * j->w[i];
  }
}

/* rmsnorm(x, w, out, eps): rows of w.length. */
static napi_value Rmsnorm(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  float *x, *w, *out;
  size_t lx, lw, lo;
  double eps;
  if (argc != 4 || !get_f32_array(env, argv[0], &x, &lx) || !get_f32_array(env, argv[1], &w, &lw) || !get_f32_array(env, argv[2], &out, &lo) ||
      napi_get_value_double(env, argv[3], &eps) != napi_ok || lw == 0 || lx % lw != 0 || lo < lx) {
    napi_throw_type_error(env, NULL, "rmsnorm: expected (x, w, out, eps) with x.length a multiple of w.length and out at least as long as x");
    return NULL;
  }
  rmsnorm_job j = {x, w, out, (int64_t)lw, eps};
  parallel_ranges(rmsnorm_ranges, &j, (int64_t)(lx / lw), 1, (65536 + (int64_t)lw - 1) / (int64_t)lw);
  return NULL;
}

/* info() -> { loaded, library, kind, threads, config, flushDenormals } */
static napi_value Info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value res, b;
  CHECK(napi_create_object(env, &res));
  napi_get_boolean(env, g_sgemm != NULL, &b);
  napi_set_named_property(env, res, "loaded", b);
  napi_set_named_property(env, res, "library", make_string(env, g_lib_name));
  napi_set_named_property(env, res, "kind", make_string(env, g_kind));
  napi_set_named_property(env, res, "threads", make_int(env, g_sgemm && g_get_threads ? g_get_threads() : g_threads));
  if (g_sgemm && g_get_config) {
    const char *c = g_get_config();
    if (c) napi_set_named_property(env, res, "config", make_string(env, c));
  }
  napi_get_boolean(env, g_flush_denormals != 0, &b);
  napi_set_named_property(env, res, "flushDenormals", b);
  return res;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"load", NULL, Load, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setThreads", NULL, SetThreads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sgemm", NULL, Sgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"portableSgemm", NULL, PortableSgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"portableVariant", NULL, PortableVariant, NULL, NULL, NULL, napi_enumerable, NULL},
      {"info", NULL, Info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"binary", NULL, Binary, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unary", NULL, Unary, NULL, NULL, NULL, napi_enumerable, NULL},
      {"softmaxRows", NULL, SoftmaxRows, NULL, NULL, NULL, napi_enumerable, NULL},
      {"softmaxBackward", NULL, SoftmaxBackward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"swiglu", NULL, Swiglu, NULL, NULL, NULL, napi_enumerable, NULL},
      {"adamw", NULL, Adamw, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rmsnorm", NULL, Rmsnorm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sumSquares", NULL, SumSquares, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_value v;
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_create_int32(env, 1, &v); /* ABI version: must match ADDON_ABI in src/backend/native.ts */
  napi_set_named_property(env, exports, "abiVersion", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
