/*
 * BLAS loading: no BLAS headers at build time. The cblas prototypes are declared in blas.h and the
 * library is dlopen()ed at run time, so the addon builds on any machine with a C compiler and works
 * with whichever BLAS the user has installed (OpenBLAS, BLIS, MKL, Apple Accelerate). With none of
 * them (or `systemBlas: false`), the addon's own portable SGEMM (sgemm.c) takes their place behind
 * the same cblas_sgemm signature. With one, the GEMM engine can still be switched to the portable
 * SGEMM (fopeify_blas_use_gemm): on some CPUs it is the faster one, which the JS loader measures.
 */
#include "blas.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sgemm.h" /* the portable SGEMM, used when no BLAS library loads */

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define FOPEIFY_HAVE_MXCSR 1
#endif

typedef void (*set_threads_fn)(int);
typedef int (*get_threads_fn)(void);
typedef char *(*get_config_fn)(void);
/* MKL's MKL_Set_Num_Threads takes int; BLIS's bli_thread_set_num_threads takes dim_t (int64 on
 * 64-bit builds); both accept an int in a register on the ABIs we support, but we call BLIS's
 * through a 64-bit prototype to be exact. */
typedef void (*set_threads64_fn)(int64_t);

static void *g_lib = NULL;
static sgemm_fn g_sgemm = NULL;        /* the GEMM every sgemm call runs: the library's or the portable one */
static sgemm_fn g_system_sgemm = NULL; /* the loaded library's cblas_sgemm, NULL when none loaded */
static sgemv_fn g_sgemv = NULL;
static set_threads_fn g_set_threads = NULL;     /* openblas_set_num_threads / MKL_Set_Num_Threads */
static set_threads64_fn g_set_threads64 = NULL; /* bli_thread_set_num_threads */
static get_threads_fn g_get_threads = NULL;
static get_config_fn g_get_config = NULL;
static char g_lib_name[512] = "";
static char g_kind[32] = "";
static int g_threads = 0;
static int g_flush_denormals = 1;
static int g_auto_coretype = 1;

void fp_enter(fp_guard *g) {
#ifdef FOPEIFY_HAVE_MXCSR
  g->saved = _mm_getcsr();
  if (g_flush_denormals) _mm_setcsr(g->saved | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
#else
  (void)g;
#endif
}

void fp_leave(fp_guard *g) {
#ifdef FOPEIFY_HAVE_MXCSR
  _mm_setcsr(g->saved);
#else
  (void)g;
#endif
}

sgemm_fn fopeify_blas_sgemm(void) { return g_sgemm; }
sgemm_fn fopeify_blas_system_sgemm(void) { return g_system_sgemm; }
const char *fopeify_blas_gemm_engine(void) {
  return !g_sgemm ? "" : g_sgemm == fopeify_portable_sgemm ? "portable" : "system";
}

int fopeify_blas_use_gemm(const char *engine) {
  if (!g_sgemm) return 0;
  if (!strcmp(engine, "portable")) {
    fopeify_portable_init();
    g_sgemm = fopeify_portable_sgemm;
    return 1;
  }
  if (!strcmp(engine, "system") && g_system_sgemm) {
    g_sgemm = g_system_sgemm;
    return 1;
  }
  return 0;
}
sgemv_fn fopeify_blas_sgemv(void) { return g_sgemv; }
int fopeify_blas_thread_count(void) { return g_threads; }
int fopeify_blas_reported_threads(void) { return g_sgemm && g_get_threads ? g_get_threads() : g_threads; }
const char *fopeify_blas_library(void) { return g_lib_name; }
const char *fopeify_blas_kind(void) { return g_kind; }
const char *fopeify_blas_config(void) { return g_sgemm && g_get_config ? g_get_config() : NULL; }
int fopeify_blas_flush_denormals(void) { return g_flush_denormals; }

void fopeify_blas_set_threads(int n) {
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
  g_system_sgemm = f;
  g_sgemv = (sgemv_fn)dlsym(h, "cblas_sgemv");
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

/* The first BLAS that opens: the caller's paths, then the usual library names; else the portable SGEMM. */
static void open_first(const fopeify_blas_options *o) {
  int ok = 0;
  for (int i = 0; i < o->npaths && !ok && o->system_blas; i++) ok = try_open(o->paths[i], "custom");
  if (!ok && o->system_blas) {
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
  }
}

void fopeify_blas_load(const fopeify_blas_options *o) {
  int64_t threads = o->threads;
  if (o->flush_denormals >= 0) g_flush_denormals = o->flush_denormals;
  if (o->auto_coretype >= 0) g_auto_coretype = o->auto_coretype;
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
    if (o->timeout >= 4 && o->timeout <= 30) {
      snprintf(buf, sizeof buf, "%d", (int)o->timeout);
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
    open_first(o);
  }
  if (threads <= 0 && g_sgemm == fopeify_portable_sgemm) threads = sysconf(_SC_NPROCESSORS_ONLN);
  if (threads > 0) fopeify_blas_set_threads((int)threads);
  else if (g_get_threads) g_threads = g_get_threads();
  if (g_threads > 0) fopeify_portable_set_threads(g_threads);
}
