import { describe, expect, it } from 'vitest';
import type { RopeSpec } from '../../src/config/model-spec.js';
import { ropeFrequencies, yarnCorrectionRange, yarnFrequencies } from '../../src/rope/inv-freq.js';

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('YaRN test vectors (rope-scaling.md)', () => {
  const cases = [
    { name: 'Llama-2-7B s=16', dim: 128, base: 1e4, Lo: 4096, factor: 16, low: 20, high: 46, af: 1.277259, mid: 33, midV: 0.0046004355, last: 7.2173874e-6 },
    { name: 'SmolLM2-135M s=4', dim: 64, base: 1e5, Lo: 8192, factor: 4, low: 10, high: 20, af: 1.138629, mid: 15, midV: 0.0028322398, last: 3.5825314e-6 },
    { name: 'Qwen2.5-0.5B s=4', dim: 64, base: 1e6, Lo: 32768, factor: 4, low: 11, high: 20, af: 1.138629, mid: 15, midV: 0.0010266177, last: 3.8498163e-7 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(yarnCorrectionRange(c.dim, c.base, c.Lo, 32, 1)).toEqual({ low: c.low, high: c.high });
      const { invFreq, attentionFactor } = yarnFrequencies(c.base, c.dim, { factor: c.factor, originalLength: c.Lo });
      expect(attentionFactor).toBeCloseTo(c.af, 6);
      expect(invFreq[0]).toBe(1);
      expect(rel(invFreq[c.mid]!, c.midV)).toBeLessThan(1e-6);
      expect(rel(invFreq[invFreq.length - 1]!, c.last)).toBeLessThan(1e-6);
    });
  }

  it('through the variant table from a config spec', () => {
    const spec: RopeSpec = {
      type: 'yarn', theta: 1e5, dim: 64, maxPositionEmbeddings: 32768,
      params: { factor: 4, original_max_position_embeddings: 8192 },
    };
    const { invFreq, attentionFactor } = ropeFrequencies(spec);
    expect(rel(invFreq[15]!, 0.0028322398)).toBeLessThan(1e-6);
    expect(attentionFactor).toBeCloseTo(1.138629, 6);
  });
});

describe('llama3 vector (Llama-3.2-1B)', () => {
  it('matches', () => {
    const spec: RopeSpec = {
      type: 'llama3', theta: 5e5, dim: 64, maxPositionEmbeddings: 131072,
      params: { factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    };
    const { invFreq, attentionFactor } = ropeFrequencies(spec);
    expect(invFreq[0]).toBe(1);
    expect(rel(invFreq[16]!, 4.295568e-4)).toBeLessThan(1e-6);
    expect(rel(invFreq[31]!, 9.4183067e-8)).toBeLessThan(1e-6);
    expect(attentionFactor).toBe(1);
  });
});

describe('other variants', () => {
  const base: RopeSpec = { type: 'default', theta: 10000, dim: 8, maxPositionEmbeddings: 64, params: {} };
  it('default and linear', () => {
    expect(Array.from(ropeFrequencies(base).invFreq)).toEqual([1, 0.1, 0.01, 0.001].map(Math.fround));
    const lin = ropeFrequencies({ ...base, type: 'linear', params: { factor: 4 } }).invFreq;
    expect(lin[1]).toBeCloseTo(0.025, 9);
  });
  it('dynamic grows the base only beyond max_position_embeddings', () => {
    const dyn = { ...base, type: 'dynamic' as const, params: { factor: 2 } };
    expect(ropeFrequencies(dyn, 32).invFreq).toEqual(ropeFrequencies(base).invFreq);
    const long = ropeFrequencies(dyn, 128).invFreq;
    const b2 = 10000 * Math.pow((2 * 128) / 64 - 1, 8 / 6);
    expect(rel(long[1]!, 1 / Math.pow(b2, 2 / 8))).toBeLessThan(1e-6);
  });
  it('longrope picks long factors past the original length and scales attention', () => {
    const lr = { ...base, type: 'longrope' as const, maxPositionEmbeddings: 256, params: { short_factor: [1, 1, 1, 1], long_factor: [1, 2, 4, 8], original_max_position_embeddings: 64 } };
    const short = ropeFrequencies(lr, 10);
    const long = ropeFrequencies(lr, 200);
    expect(short.invFreq[3]).toBeCloseTo(0.001, 9);
    expect(long.invFreq[3]).toBeCloseTo(0.000125, 9);
    expect(long.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(4) / Math.log(64)), 9);
  });
});
