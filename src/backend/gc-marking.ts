/**
 * Where V8 marks its heap while the native backend computes.
 *
 * A training step allocates gigabytes of short-lived ArrayBuffers (tensor outputs). V8 counts them as
 * external memory and starts a major GC for roughly every 64 MiB of it: ~80 per 512-token step of a
 * 135M model, although the JS heap itself stays ~22 MiB. By default each of those marks on a
 * background thread (concurrent marking), which takes a core from the BLAS / attention threads that
 * already use every core; their team then waits at each barrier for the descheduled thread.
 * Marking a 22 MiB heap on the main thread costs a few milliseconds instead. Measured on a 2-core
 * machine (SmolLM2-135M shape, 512 tokens, 3 steps, interleaved): 5.2–6.0 s/step with concurrent
 * marking, 4.6–5.1 s without; 25–29 vs 22 s of CPU time.
 *
 * Only a training step marks on the main thread (Trainer.step sets it and puts V8's setting back):
 * with the main thread busy in long native calls, main-thread marking finishes later and garbage lives
 * longer — an 8192-token prefill peaked at 1212 instead of 1096 MiB with it, so inference keeps V8's
 * default.
 *
 * The flag is V8's own and process-wide, set through `v8.setFlagsFromString` after start-up. A cycle
 * must not straddle the change: flipped while an incremental marking cycle was under way, Node 20's V8
 * aborted a training process (fatal "Check failed: marking_state_->GreyToBlack(object)" in
 * ProcessEphemerons; once in ~20 benchmark runs). So the flag changes right after a full collection,
 * which finishes any cycle in progress and joins its marking workers; nothing is allocated on the V8
 * heap between the two, so no new cycle starts before the flag is set (two collections per training
 * step, a few ms each). Users keep V8's default with FOPEIFY_CONCURRENT_MARKING=1.
 */
import { setFlagsFromString } from 'node:v8';
import { fullCollection } from './full-collection.js';

export type MarkingPlace = 'main thread' | 'concurrent';

export interface MarkingInputs {
  /** The native addon computes (its GEMM / attention threads). */
  accelerated: boolean;
  /** Threads the native kernels run on. */
  threads: number;
  /** Cores of the machine (os.availableParallelism()). */
  cores: number;
  env: NodeJS.ProcessEnv;
}

/**
 * Where V8 should mark: on the main thread when the native kernels' threads occupy every core (a
 * marking thread can only run by taking one of theirs), unless FOPEIFY_CONCURRENT_MARKING=1.
 */
export function markingPlace(inp: MarkingInputs): MarkingPlace {
  const v = inp.env.FOPEIFY_CONCURRENT_MARKING?.trim();
  if (v === '1' || v === 'true') return 'concurrent';
  return inp.accelerated && inp.threads >= inp.cores ? 'main thread' : 'concurrent';
}

let applied: MarkingPlace = 'concurrent';

/** Sets V8's marking flag for `place` (once per change: a no-op when it already is). */
export function applyMarkingPlace(place: MarkingPlace): void {
  if (place === applied) return;
  const flag = place === 'main thread' ? '--no-concurrent-marking' : '--concurrent-marking';
  const collect = fullCollection();
  // Where no full collection can be had, V8's setting stays (never flipped under a running cycle).
  if (!collect) return;
  collect();
  setFlagsFromString(flag);
  applied = place;
}

/** The place last applied (V8's default, 'concurrent', until fopeify changes it). */
export function currentMarkingPlace(): MarkingPlace {
  return applied;
}

/**
 * Runs `fn` with V8 marking at `place`, then puts the previous place back (also when `fn` throws).
 * The flag is process-wide: other work of the process during `fn` runs with it too.
 */
export async function withMarkingPlace<T>(place: MarkingPlace, fn: () => Promise<T>): Promise<T> {
  const before = applied;
  applyMarkingPlace(place);
  try {
    return await fn();
  } finally {
    applyMarkingPlace(before);
  }
}
