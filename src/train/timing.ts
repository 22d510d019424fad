/**
 * Opt-in wall-time accounting of a training step's parts (FOPEIFY_TRAIN_PROFILE=1, or `enableTiming`):
 * what bench/train.mjs prints to show where a step's time goes. Free when off.
 */
let enabled = process.env.FOPEIFY_TRAIN_PROFILE === '1';
const totals = new Map<string, { ms: number; calls: number }>();

export function enableTiming(on = true): void {
  enabled = on;
}

/** Run fn, adding its wall time to `label` when timing is on. */
export function timed<T>(label: string, fn: () => T): T {
  if (!enabled) return fn();
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    const e = totals.get(label) ?? { ms: 0, calls: 0 };
    e.ms += performance.now() - t0;
    e.calls++;
    totals.set(label, e);
  }
}

/** The accumulated times (and reset them). */
export function takeTimings(): Record<string, { ms: number; calls: number }> {
  const out = Object.fromEntries(totals);
  totals.clear();
  return out;
}
