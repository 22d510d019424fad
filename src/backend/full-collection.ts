/**
 * A full V8 collection, on request: for the stepped prefill (model/prefill.ts), and before V8's
 * marking flag changes (gc-marking.ts: no marking cycle may straddle the change).
 *
 * On the cpu backend every tensor's data is an ArrayBuffer, and disposing a tensor only drops the
 * reference: its memory returns to malloc when V8 next collects. V8 starts a collection for about
 * every 64 MiB of new ArrayBuffer memory and finishes it incrementally, while the native kernels keep
 * the main thread busy, so during a long prefill two or three layers' temporaries (~50 MiB a layer at
 * 1024 tokens per step, SmolLM2-135M shape) are garbage at once; glibc keeps the heap they grew (the
 * addon's KEEP_FREED_MEMORY) and the KV-cache blocks allocated in between pin it. Collecting after
 * each layer keeps the garbage to one layer's. Measured, 8192-token prefill, 2-core Xeon: peak RSS
 * 1012-1016 MiB with a collection per layer, 1087-1126 MiB without (every 2, 3 or 5 layers: 1055,
 * 1087, 1103), for 10-20 % of the prefill's time (26.7-28.2 vs 23.5 s: 240 collections of a ~20 MiB
 * heap). Where time matters more than memory, FOPEIFY_PREFILL_GC=0 or collectBetweenLayers: false.
 *
 * `gc` is V8's own function, exposed through V8's flag after start-up (node --expose-gc at run time,
 * the same mechanism as gc-marking.ts's flag): a process started with --expose-gc already has it.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | null | undefined;

/** V8's full collection as a function, or null where it cannot be had (not V8 / Node). */
export function fullCollection(): (() => void) | null {
  if (collect !== undefined) return collect;
  const own = (globalThis as { gc?: () => void }).gc;
  if (typeof own === 'function') return (collect = () => own());
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    collect = typeof gc === 'function' ? () => (gc as () => void)() : null;
  } catch {
    collect = null;
  }
  return collect;
}
