/**
 * The statistics of a study: means with 95 % Student-t intervals across seeds, paired differences
 * between variants, and RULER's "effective length". Pure functions on plain numbers.
 *
 * Why t and not bootstrap: a study has a handful of seeds (2–5). A percentile bootstrap over three
 * values can only return values among their means and is far too narrow; the t-interval widens
 * correctly with few samples (t(0.975, 2) = 4.30).
 */

export const INTERVAL_METHOD =
  'two-sided 95 % Student-t interval across seeds: mean ± t(0.975, n−1) · s / √n (s = sample standard deviation); differences are paired by seed';

/** t(0.975, df) for df = 1..30 (standard tables). */
const T975 = [
  12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.306, 2.2622, 2.2281, 2.201, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.093, 2.086,
  2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
];

/** The 97.5 % quantile of Student's t with `df` degrees of freedom (Cornish–Fisher expansion past 30). */
export function tQuantile975(df: number): number {
  if (!(Number.isInteger(df) && df >= 1)) throw new RangeError(`degrees of freedom must be a positive integer (got ${df})`);
  if (df <= T975.length) return T975[df - 1]!;
  const z = 1.959964;
  return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df);
}

export interface Interval {
  /** Samples (seeds). */
  n: number;
  mean: number;
  /** Sample standard deviation (0 for one sample). */
  sd: number;
  /** 95 % bounds; null with fewer than two samples (no interval can be stated). */
  lo: number | null;
  hi: number | null;
}

/**
 * Mean and 95 % t-interval of `values`. `bounds` clips the interval to a range the quantity cannot
 * leave (accuracy: [0, 1]); the mean is never clipped.
 */
export function meanInterval(values: readonly number[], bounds?: [number, number]): Interval {
  const n = values.length;
  if (n === 0) return { n: 0, mean: NaN, sd: NaN, lo: null, hi: null };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { n, mean, sd: 0, lo: null, hi: null };
  const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
  const half = (tQuantile975(n - 1) * sd) / Math.sqrt(n);
  let lo = mean - half;
  let hi = mean + half;
  if (bounds) {
    lo = Math.max(bounds[0], lo);
    hi = Math.min(bounds[1], hi);
  }
  return { n, mean, sd, lo, hi };
}

export type Comparison = 'ahead' | 'behind' | 'tie' | 'no interval';

export interface PairedDifference extends Interval {
  /** The seeds both variants have. */
  seeds: number[];
  /**
   * ahead / behind: the 95 % interval of the difference lies entirely above / below 0; tie: it holds 0;
   * no interval: fewer than two paired seeds.
   */
  outcome: Comparison;
}

/**
 * a − b per seed both have, and its 95 % t-interval: does the difference exceed the interval? `bounds`
 * clips the interval to what a difference can be (accuracy: [−1, 1]); clipping never moves it across 0.
 */
export function pairedDifference(a: ReadonlyMap<number, number>, b: ReadonlyMap<number, number>, bounds?: [number, number]): PairedDifference {
  const seeds = [...a.keys()].filter((s) => b.has(s)).sort((x, y) => x - y);
  const diffs = seeds.map((s) => a.get(s)! - b.get(s)!);
  const iv = meanInterval(diffs, bounds);
  let outcome: Comparison;
  if (iv.lo === null || iv.hi === null) outcome = 'no interval';
  else if (iv.lo > 0) outcome = 'ahead';
  else if (iv.hi < 0) outcome = 'behind';
  else outcome = 'tie';
  return { ...iv, seeds, outcome };
}

/**
 * RULER's effective length: the longest tested length up to which the accuracy stays ≥ `threshold` at
 * every tested length; 0 when it is below already at the shortest.
 */
export function effectiveLength(accuracyByLength: ReadonlyMap<number, number>, threshold: number): number {
  let best = 0;
  for (const L of [...accuracyByLength.keys()].sort((a, b) => a - b)) {
    if (!(accuracyByLength.get(L)! >= threshold)) break;
    best = L;
  }
  return best;
}
