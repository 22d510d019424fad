import { describe, expect, it } from 'vitest';
import { effectiveLength, meanInterval, pairedDifference, tQuantile975 } from '../../src/study/stats.js';

describe('study statistics', () => {
  it('t quantiles match the tables, and the expansion past 30 is close', () => {
    expect(tQuantile975(1)).toBeCloseTo(12.7062, 4);
    expect(tQuantile975(2)).toBeCloseTo(4.3027, 4);
    expect(tQuantile975(30)).toBeCloseTo(2.0423, 4);
    expect(tQuantile975(40)).toBeCloseTo(2.0211, 3); // table value 2.021
    expect(tQuantile975(120)).toBeCloseTo(1.9799, 3); // table value 1.980
    expect(() => tQuantile975(0)).toThrow(RangeError);
  });

  it('computes the 95 % t-interval of a hand-checked example', () => {
    // [0.5, 0.7, 0.9]: mean 0.7, s = sqrt((0.04 + 0 + 0.04) / 2) = 0.2, se = 0.2 / sqrt(3) = 0.115470,
    // half width = 4.3027 × 0.115470 = 0.496834 → [0.203166, 1.196834]; clipped to [0, 1] at the top.
    const raw = meanInterval([0.5, 0.7, 0.9]);
    expect(raw.mean).toBeCloseTo(0.7, 12);
    expect(raw.sd).toBeCloseTo(0.2, 12);
    expect(raw.lo!).toBeCloseTo(0.203166, 5);
    expect(raw.hi!).toBeCloseTo(1.196834, 5);
    const clipped = meanInterval([0.5, 0.7, 0.9], [0, 1]);
    expect(clipped.lo!).toBeCloseTo(0.203166, 5);
    expect(clipped.hi).toBe(1);
    expect(clipped.mean).toBeCloseTo(0.7, 12);
    // Two seeds: [1, 3] → mean 2, s = √2, se = 1, half width = t(1) = 12.7062.
    const two = meanInterval([1, 3]);
    expect(two.lo!).toBeCloseTo(-10.7062, 4);
    expect(two.hi!).toBeCloseTo(14.7062, 4);
  });

  it('states no interval for one seed', () => {
    expect(meanInterval([0.4])).toEqual({ n: 1, mean: 0.4, sd: 0, lo: null, hi: null });
    expect(meanInterval([]).n).toBe(0);
  });

  it('pairs differences by seed and calls ahead / behind / tie from the interval', () => {
    const m = (xs: number[]) => new Map(xs.map((x, i) => [i, x]));
    // Differences 0.5, 0.6, 0.7: mean 0.6, s 0.1, half 0.2484 → [0.3516, 0.8484]: ahead.
    const ahead = pairedDifference(m([0.9, 0.9, 0.9]), m([0.4, 0.3, 0.2]));
    expect(ahead.outcome).toBe('ahead');
    expect(ahead.lo!).toBeCloseTo(0.351583, 5);
    expect(pairedDifference(m([0.4, 0.3, 0.2]), m([0.9, 0.9, 0.9])).outcome).toBe('behind');
    // Differences 0.4, 0.2, 0.6 are all positive, but the interval [−0.0968, 0.8968] holds 0: a tie.
    const tie = pairedDifference(m([0.9, 0.8, 1.0]), m([0.5, 0.6, 0.4]));
    expect(tie.outcome).toBe('tie');
    expect(tie.lo!).toBeCloseTo(-0.096834, 5);
    // Only the seeds both have count.
    const partial = pairedDifference(new Map([[0, 1], [1, 1], [5, 1]]), new Map([[0, 0], [1, 0.5]]));
    expect(partial.seeds).toEqual([0, 1]);
    expect(pairedDifference(m([1]), m([0])).outcome).toBe('no interval');
    // Accuracy differences live in [−1, 1]: the interval is clipped there, the outcome unchanged.
    const wide = pairedDifference(m([1, 0]), m([0, 0.5]), [-1, 1]); // diffs 1, −0.5: mean 0.25, half 9.53
    expect([wide.lo, wide.hi, wide.outcome]).toEqual([-1, 1, 'tie']);
  });

  it('finds the effective length: the longest length up to which accuracy stays at the threshold', () => {
    const acc = new Map([
      [256, 1],
      [512, 0.9],
      [1024, 0.5],
      [2048, 0.85],
    ]);
    expect(effectiveLength(acc, 0.8)).toBe(512);
    expect(effectiveLength(acc, 0.4)).toBe(2048);
    expect(effectiveLength(new Map([[256, 0.7]]), 0.8)).toBe(0);
    expect(effectiveLength(new Map([[256, 0.8]]), 0.8)).toBe(256);
  });
});
