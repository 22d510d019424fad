/* Threads for the addon's own passes (softmax, SwiGLU, AdamW, RMSNorm, copies, rotary). Started per
 * call: each pass is only threaded when its work is large enough (serial_below, per_thread) to pay for
 * thread start-up. */
#include "parallel.h"

#include <pthread.h>

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
