/* Threads for the addon's own passes (softmax, SwiGLU, AdamW, RMSNorm, copies, rotary): started per
 * call, each pass only threaded when its work is large enough (serial_below, per_thread) to pay for
 * thread start-up. And a team of persistent threads for the passes that call a GEMM per thread
 * (attention.c). */
#include "parallel.h"

#include <pthread.h>

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

static void *range_worker(void *arg) {
  range_job *j = (range_job *)arg;
  j->fn(j->ctx, j->i0, j->i1);
  return NULL;
}

static int pool_threads(void) {
  const int nt = fopeify_blas_thread_count() > 0 ? fopeify_blas_thread_count() : 1;
  return nt > MAX_POOL_THREADS ? MAX_POOL_THREADS : nt;
}

static void run_ranges(range_fn fn, void *ctx, int64_t n, int64_t align, int nt) {
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
typedef struct {
  team_fn fn;
  void *ctx;
  int nt;
  unsigned csr;
} team_job;

static pthread_mutex_t g_team_call = PTHREAD_MUTEX_INITIALIZER; /* one team job at a time */
static pthread_mutex_t g_team_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_team_start = PTHREAD_COND_INITIALIZER, g_team_done = PTHREAD_COND_INITIALIZER;
static team_job g_team;
static unsigned long g_team_gen = 0;
static int g_team_pending = 0, g_team_workers = 0;

static void *team_worker(void *arg) {
  const int t = (int)(intptr_t)arg;
  /* 0, not the current generation: a worker started for a job may first run after that job was
   * published. A stale job it may see first has fewer threads than this one's index, so it skips it. */
  unsigned long seen = 0;
  for (;;) {
    pthread_mutex_lock(&g_team_mu);
    while (g_team_gen == seen) pthread_cond_wait(&g_team_start, &g_team_mu);
    seen = g_team_gen;
    team_job j = g_team;
    pthread_mutex_unlock(&g_team_mu);
    if (t >= j.nt) continue;
#ifdef PAR_MXCSR
    _mm_setcsr(j.csr);
#endif
    j.fn(j.ctx, t, j.nt);
    pthread_mutex_lock(&g_team_mu);
    if (--g_team_pending == 0) pthread_cond_signal(&g_team_done);
    pthread_mutex_unlock(&g_team_mu);
  }
  return NULL;
}

void parallel_team(team_fn fn, void *ctx) {
  int nt = fopeify_blas_thread_count() > 0 ? fopeify_blas_thread_count() : 1;
  if (nt > MAX_POOL_THREADS) nt = MAX_POOL_THREADS;
  pthread_mutex_lock(&g_team_call);
  while (g_team_workers < nt - 1) { /* worker w runs t = w + 1 */
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
    g_team_pending = nt - 1;
    g_team_gen++;
    pthread_cond_broadcast(&g_team_start);
    pthread_mutex_unlock(&g_team_mu);
  }
  fn(ctx, 0, nt);
  if (nt > 1) {
    pthread_mutex_lock(&g_team_mu);
    while (g_team_pending > 0) pthread_cond_wait(&g_team_done, &g_team_mu);
    pthread_mutex_unlock(&g_team_mu);
  }
  pthread_mutex_unlock(&g_team_call);
}
