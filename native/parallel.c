/* Threads for the addon's own passes (softmax, SwiGLU, AdamW, RMSNorm, copies, rotary) and for the
 * portable SGEMM's pieces (sgemm.c) and passes that call its single-thread driver per thread
 * (attention.c): one team of persistent threads. A pass is only threaded when its work is large
 * enough (serial_below, per_thread). The passes once started a thread per call: on 2 cores that cost
 * a thread creation and join per pass (hundreds per training step) and the new thread had to wait for
 * the team's worker, still spinning after the last GEMM, to give up the core. */
#include "parallel.h"

#include <pthread.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define PAR_MXCSR 1
#endif

#include "blas.h"

typedef struct {
  range_fn fn;
  void *ctx;
  int64_t i0, i1;
} range_job;
#define MAX_POOL_THREADS 64

static int pool_threads(void) {
  const int nt = fopeify_blas_thread_count() > 0 ? fopeify_blas_thread_count() : 1;
  return nt > MAX_POOL_THREADS ? MAX_POOL_THREADS : nt;
}

/* Set while this thread runs a team job (as a worker or as its caller): a pass started from inside
 * one runs its ranges itself, since the team is busy (and one team job at a time). */
static __thread int tl_in_team = 0;

typedef struct {
  const range_job *jobs;
  int n;
} ranges_ctx;

/* Team member t of nt runs ranges t, t + nt, ...: every range once, whatever nt the team gave. */
static void ranges_part(void *arg, int t, int nt) {
  const ranges_ctx *c = (const ranges_ctx *)arg;
  for (int r = t; r < c->n; r += nt) c->jobs[r].fn(c->jobs[r].ctx, c->jobs[r].i0, c->jobs[r].i1);
}

/* The ranges are fixed by n, align and nt alone (never by which thread runs them): results are the
 * same however the team runs them. */
static void run_ranges(range_fn fn, void *ctx, int64_t n, int64_t align, int nt) {
  range_job jobs[MAX_POOL_THREADS];
  for (int t = 0; t < nt; t++) {
    int64_t a = t == 0 ? 0 : (n * t / nt) / align * align;
    int64_t b = t + 1 == nt ? n : (n * (t + 1) / nt) / align * align;
    jobs[t] = (range_job){fn, ctx, a, b};
  }
  ranges_ctx c = {jobs, nt};
  if (nt <= 1 || tl_in_team) ranges_part(&c, 0, 1);
  else parallel_team(ranges_part, &c, nt);
}

void parallel_ranges(range_fn fn, void *ctx, int64_t n, int64_t align, int64_t serial_below) {
  int nt = pool_threads();
  if (n < serial_below || n < 2 * nt) nt = 1;
  run_ranges(fn, ctx, n, align, nt);
}

void parallel_ranges_at_least(range_fn fn, void *ctx, int64_t n, int64_t align, int64_t per_thread) {
  int nt = pool_threads();
  const int64_t most = per_thread > 0 ? n / per_thread : n;
  if (most < nt) nt = most < 1 ? 1 : (int)most;
  run_ranges(fn, ctx, n, align, nt);
}

/* ---- the persistent team ---- */
/* Spinning briefly before sleeping: in a forward or backward pass the next job often follows within
 * microseconds, and a futex wake-up costs tens of microseconds. Short, so that idle workers do not
 * take cores from the JavaScript thread's elementwise work (OpenBLAS is tuned the same way). */
#define TEAM_WORKER_SPIN_NS 100000
#define TEAM_CALLER_SPIN_NS 50000

typedef struct {
  team_fn fn;
  void *ctx;
  int nt;
  unsigned csr; /* caller's MXCSR */
} team_job;

static pthread_mutex_t g_team_call = PTHREAD_MUTEX_INITIALIZER; /* one team job at a time */
static pthread_mutex_t g_team_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_team_start = PTHREAD_COND_INITIALIZER, g_team_done = PTHREAD_COND_INITIALIZER;
static team_job g_team;
static unsigned long g_team_gen = 0;     /* bumped (atomically, under g_team_mu) for each job */
static unsigned long g_team_pending = 0; /* workers still running the current job (atomic) */
static int g_team_workers = 0;

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Spin while (*v == value) == equal, or until the time is up (then the caller sleeps on a condition variable). */
static void spin_while(const unsigned long *v, unsigned long value, int equal, int64_t ns) {
  const int64_t end = now_ns() + ns;
  for (int i = 0; (__atomic_load_n(v, __ATOMIC_ACQUIRE) == value) == equal; i++) {
    cpu_relax();
    if ((i & 63) == 63 && now_ns() > end) return;
  }
}

static void *team_worker(void *arg) {
  const int t = (int)(intptr_t)arg; /* worker w runs t = w (the caller runs t = 0) */
  /* 0, not the current generation: a worker started for a job may first run after that job was
   * published. A stale job it may see first has fewer threads than this one's index, so it skips it. */
  unsigned long seen = 0;
  for (;;) {
    spin_while(&g_team_gen, seen, 1, TEAM_WORKER_SPIN_NS);
    pthread_mutex_lock(&g_team_mu);
    while (__atomic_load_n(&g_team_gen, __ATOMIC_ACQUIRE) == seen) pthread_cond_wait(&g_team_start, &g_team_mu);
    seen = __atomic_load_n(&g_team_gen, __ATOMIC_ACQUIRE);
    team_job j = g_team;
    pthread_mutex_unlock(&g_team_mu);
    if (t >= j.nt) continue;
#ifdef PAR_MXCSR
    _mm_setcsr(j.csr);
#endif
    tl_in_team = 1;
    j.fn(j.ctx, t, j.nt);
    tl_in_team = 0;
    /* The last one done wakes the caller (under the mutex, so the wake-up cannot be lost). */
    if (__atomic_sub_fetch(&g_team_pending, 1, __ATOMIC_ACQ_REL) == 0) {
      pthread_mutex_lock(&g_team_mu);
      pthread_cond_signal(&g_team_done);
      pthread_mutex_unlock(&g_team_mu);
    }
  }
  return NULL;
}

int parallel_team_size(void) { return pool_threads(); }

void parallel_team(team_fn fn, void *ctx, int nt) {
  if (nt > MAX_POOL_THREADS) nt = MAX_POOL_THREADS;
  if (nt <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  pthread_mutex_lock(&g_team_call);
  while (g_team_workers < nt - 1) {
    pthread_t tid;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int ok = pthread_create(&tid, &at, team_worker, (void *)(intptr_t)(g_team_workers + 1)) == 0;
    pthread_attr_destroy(&at);
    if (!ok) break;
    g_team_workers++;
  }
  if (nt > g_team_workers + 1) nt = g_team_workers + 1;
  if (nt > 1) {
    pthread_mutex_lock(&g_team_mu);
    g_team = (team_job){fn, ctx, nt, 0};
#ifdef PAR_MXCSR
    g_team.csr = _mm_getcsr();
#endif
    __atomic_store_n(&g_team_pending, (unsigned long)(nt - 1), __ATOMIC_RELEASE);
    __atomic_add_fetch(&g_team_gen, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&g_team_start);
    pthread_mutex_unlock(&g_team_mu);
  }
  tl_in_team = 1;
  fn(ctx, 0, nt);
  tl_in_team = 0;
  if (nt > 1) {
    spin_while(&g_team_pending, 0, 0, TEAM_CALLER_SPIN_NS);
    pthread_mutex_lock(&g_team_mu);
    while (__atomic_load_n(&g_team_pending, __ATOMIC_ACQUIRE) > 0) pthread_cond_wait(&g_team_done, &g_team_mu);
    pthread_mutex_unlock(&g_team_mu);
  }
  pthread_mutex_unlock(&g_team_call);
}
