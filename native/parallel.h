/* The addon's threaded passes (parallel.c): a range of work split across the BLAS's thread count. */
#ifndef FOPEIFY_PARALLEL_H
#define FOPEIFY_PARALLEL_H

#include <stdint.h>

typedef void (*range_fn)(void *ctx, int64_t i0, int64_t i1);

/* Run fn over [0, n) split into one contiguous range per thread (the BLAS's thread count), range
 * starts rounded down to multiples of `align`; one thread when n < `serial_below`. The ranges run on
 * the persistent team (parallel_team); from inside a team job, or when the team has fewer threads,
 * the calling threads run the remaining ranges themselves. */
void parallel_ranges(range_fn fn, void *ctx, int64_t n, int64_t align, int64_t serial_below);

/* The same with only as many threads as get `per_thread` items each (at least one thread): for
 * memory-bound passes, where a thread's start-up must be paid for by its own share. */
void parallel_ranges_at_least(range_fn fn, void *ctx, int64_t n, int64_t align, int64_t per_thread);

typedef void (*team_fn)(void *ctx, int t, int nt);

/* The team's default size: the BLAS's thread count. */
int parallel_team_size(void);

/* Run fn(ctx, t, nt) once for each t in [0, nt) on the addon's persistent threads (the caller runs
 * t = 0) with the caller's MXCSR; returns when all have returned. nt may come back smaller than asked
 * (a thread that cannot be started): fn must split its work by the nt it is given. Persistent because
 * the portable SGEMM's packing buffers are per thread, kept for the thread's life. One team job at a
 * time (callers queue): fn must never call parallel_team itself, nor the threaded SGEMM. */
void parallel_team(team_fn fn, void *ctx, int nt);

#endif
