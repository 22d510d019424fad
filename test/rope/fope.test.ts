import { describe, expect, it } from 'vitest';
import { applyRotary, fopeCosSin, fopeKeptCount, initFopeCoefficients, ropeCosSin, xavierStd } from '../../src/rope/fope.js';
import { defaultInvFreq } from '../../src/rope/inv-freq.js';

describe('FoPE worked example (fope.md §9)', () => {
  const invFreq = defaultInvFreq(10000, 8);
  const sinCoef = new Float32Array([1, 0.1, 0.2, 1]);
  const cosCoef = new Float32Array([1, -0.1, 0, 1]);
  const x = [1, 2, 3, 4, 5, 6, 7, 8];

  it('base frequencies and K', () => {
    expect(Array.from(invFreq)).toEqual([1, 0.10000000149011612, 0.009999999776482582, 0.0010000000474974513]);
    expect(fopeKeptCount(invFreq, 64)).toBe(2);
  });

  it('t = 0 and t = 3 with sin pad 1', () => {
    const tab = fopeCosSin({ invFreq, coefShape: [1, 2, 2], sinCoef, cosCoef, positions: [0, 3] });
    expect(Array.from(tab.cos.slice(0, 8))).toEqual([1, 0.9, 1, 1, 1, 0.9, 1, 1].map(Math.fround));
    expect(Array.from(tab.sin.slice(0, 8))).toEqual([0, 0, 1, 1, 0, 0, 1, 1]);
    const x0 = applyRotary(x, tab.cos.slice(0, 8), tab.sin.slice(0, 8));
    [1, 1.8, -4, -4, 5, 5.4, 10, 12].forEach((v, i) => expect(x0[i]).toBeCloseTo(v, 5));
    const x3 = applyRotary(x, tab.cos.slice(8, 16), tab.sin.slice(8, 16));
    [-1.9911127, 0.2508781, -4, -4, -4.7497387, 6.945279, 10, 12].forEach((v, i) => expect(x3[i]).toBeCloseTo(v, 5));
  });

  it('t = 3 with sin pad 0', () => {
    const tab = fopeCosSin({ invFreq, coefShape: [2, 2], sinCoef, cosCoef, positions: [3], sinPad: 0 });
    const x3 = applyRotary(x, tab.cos, tab.sin);
    [-1.9911127, 0.2508781, 3, 4, -4.7497387, 6.945279, 7, 8].forEach((v, i) => expect(x3[i]).toBeCloseTo(v, 5));
  });
});

describe('FoPE coefficients', () => {
  it('gain 0 and nothing clipped equals RoPE exactly', () => {
    const invFreq = defaultInvFreq(10000, 16);
    const coef = initFopeCoefficients({ heads: 2, kIn: 8, gain: 0, seed: 0 });
    const positions = [0, 1, 5, 77, 1000];
    const fope = fopeCosSin({ invFreq, coefShape: coef.shape, sinCoef: coef.sinCoef, cosCoef: coef.cosCoef, positions });
    const rope = ropeCosSin(invFreq, positions);
    for (let g = 0; g < 2; g++) {
      expect(fope.cos.slice(g * 80, (g + 1) * 80)).toEqual(rope.cos);
      expect(fope.sin.slice(g * 80, (g + 1) * 80)).toEqual(rope.sin);
    }
  });

  it('is I + xavier(gain) with torch std, deterministic in seed, different across seeds', () => {
    const a = initFopeCoefficients({ heads: 3, kIn: 20, gain: 0.5, seed: 7 });
    const b = initFopeCoefficients({ heads: 3, kIn: 20, gain: 0.5, seed: 7 });
    const c = initFopeCoefficients({ heads: 3, kIn: 20, gain: 0.5, seed: 8 });
    expect(a.sinCoef).toEqual(b.sinCoef);
    expect(a.cosCoef).toEqual(b.cosCoef);
    expect(a.sinCoef).not.toEqual(c.sinCoef);
    expect(a.sinCoef).not.toEqual(a.cosCoef);
    const std = xavierStd([3, 20, 20], 0.5);
    expect(std).toBeCloseTo(0.5 * Math.sqrt(2 / (20 * 23)), 12);
    expect(xavierStd([20, 20], 0.5)).toBeCloseTo(0.5 * Math.sqrt(2 / 40), 12);
    // residuals after removing the identity look like N(0, std²)
    let sum = 0;
    let sq = 0;
    const n = a.sinCoef.length;
    for (let h = 0; h < 3; h++)
      for (let i = 0; i < 20; i++)
        for (let j = 0; j < 20; j++) {
          const v = a.sinCoef[h * 400 + i * 20 + j]! - (i === j ? 1 : 0);
          sum += v;
          sq += v * v;
        }
    expect(Math.abs(sum / n)).toBeLessThan(3 * std / Math.sqrt(n) + 1e-9);
    expect(Math.sqrt(sq / n) / std).toBeGreaterThan(0.85);
    expect(Math.sqrt(sq / n) / std).toBeLessThan(1.15);
  });

  it('num_inv_freq overrides clipping', () => {
    const inv = defaultInvFreq(10000, 8);
    expect(fopeKeptCount(inv, 64, 3)).toBe(3);
    expect(fopeKeptCount(inv, 64, 99)).toBe(4);
  });
});
