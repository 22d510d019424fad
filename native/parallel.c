/* Threads for the addon's own passes (softmax, SwiGLU, AdamW, RMSNorm). Started per call: each pass
 * is only threaded when its work is large enough (serial_below) to pay for thread start-up. */
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

void parallel_ranges(range_fn fn, void *ctx, int64_t n, int64_t align, int64_t serial_below) {
  int nt = fopeify_blas_thread_count() > 0 ? fopeify_blas_thread_count() : 1;
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
