/**
 * Non-finite numbers never become results. Weights are scanned once as they load (the data is already
 * in memory; one pass costs ~2 ns per value, measured, about one copy of the data); scores, losses and
 * logits are checked before they are reported, so a NaN is a typed error naming where it appeared.
 */
import { FopeifyError, optionName } from '../errors.js';

/**
 * Largest weight magnitude a load accepts. Above it a weight is not a trained value but a fault (a
 * FLT_MAX or 1e38 written by a broken export): RMSNorm sums the squares of up to 2^17 hidden values, and
 * 2^17 · (1e16)^2 ≈ 1.3e37 is the last order below float32's 3.4e38, so a larger weight can turn the
 * forward pass into Inf and then NaN. The largest weights of real checkpoints (outlier features, norm
 * gains) are below 1e4, twelve orders away.
 */
export const MAX_ABS_WEIGHT = 1e16;

/** Index of the first NaN, ±Inf or |x| > maxAbs in `data`, or -1. */
export function firstNonFinite(data: ArrayLike<number>, maxAbs = Number.MAX_VALUE): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    // NaN fails both comparisons, so `!(|v| <= maxAbs)` catches NaN, ±Inf and huge values in one test.
    if (!(v <= maxAbs && v >= -maxAbs)) return i;
  }
  return -1;
}

/** Throw BAD_SAFETENSORS naming the tensor when its data holds NaN, ±Inf or a value beyond MAX_ABS_WEIGHT. */
export function checkWeightValues(name: string, data: ArrayLike<number>, shape: readonly number[]): void {
  const i = firstNonFinite(data, MAX_ABS_WEIGHT);
  if (i < 0) return;
  const v = data[i]!;
  const what = Number.isNaN(v) ? 'NaN' : Number.isFinite(v) ? `${v.toExponential(3)} (beyond ±${MAX_ABS_WEIGHT.toExponential(0)})` : String(v);
  throw new FopeifyError(
    'BAD_SAFETENSORS',
    `tensor ${name} holds ${what} at element ${elementIndex(i, shape)}; the model would compute NaN or Inf (${optionName('allowNonFinite')} loads it anyway)`,
    { option: 'allowNonFinite' },
  );
}

/** `[r, c]` position of flat index i in a row-major shape (for the message). */
function elementIndex(i: number, shape: readonly number[]): string {
  if (shape.length <= 1) return `[${i}]`;
  const out: number[] = [];
  let rest = i;
  for (let d = shape.length - 1; d >= 0; d--) {
    out.unshift(rest % shape[d]!);
    rest = Math.floor(rest / shape[d]!);
  }
  return `[${out.join(', ')}]`;
}

/** Throw NON_FINITE when a reported number (a score, a loss, a perplexity) is NaN or ±Inf. */
export function checkFiniteResult(value: number, where: string): number {
  if (!Number.isFinite(value)) {
    throw new FopeifyError('NON_FINITE', `${where} is ${value}: the model computes non-finite values (check its weights and config)`);
  }
  return value;
}

/** Throw NON_FINITE when any of `values` (logits) is NaN or ±Inf. */
export function checkFiniteValues(values: ArrayLike<number>, where: string): void {
  const i = firstNonFinite(values);
  if (i >= 0) {
    throw new FopeifyError('NON_FINITE', `${where} holds ${values[i]} at index ${i}: the model computes non-finite values (check its weights and config)`);
  }
}
