import { describe, expect, it } from 'vitest';
import { studyVerdict, type VariantScores } from '../../src/study/verdict.js';

const seeds = (xs: number[]) => new Map(xs.map((x, i) => [i, x]));

function variant(id: string, label: string, beyond: number[], shortPpl: number[] = [5, 5, 5], beyondPpl: number[] = beyond.map(() => 6)): VariantScores {
  return { id, label, beyondAccuracy: seeds(beyond), beyondPpl: seeds(beyondPpl), shortAccuracy: seeds(beyond.map(() => 1)), shortPpl: seeds(shortPpl) };
}

const ctx = { trainLength: 256, beyond: [512, 1024] };

describe('study verdict', () => {
  it('names a leader that is ahead beyond the intervals', () => {
    const v = studyVerdict([variant('rope', 'RoPE', [0, 0, 0]), variant('yarn', 'YaRN', [0.3, 0.35, 0.25]), variant('fope-yarn', 'FoPE+YaRN', [0.9, 0.8, 0.85])], ctx);
    expect(v.leader).toBe('fope-yarn');
    expect(v.leaderComparisons.map((c) => c.difference.outcome)).toEqual(['ahead', 'ahead']);
    expect(v.text).toMatch(/FoPE\+YaRN is ahead of every other variant beyond the training length, and each lead exceeds its 95 % interval/);
    expect(v.text).toMatch(/Mean perplexity over the windows beyond the training length: .*No difference: every variant scored the same \(6\.00\)/);
    const claim = v.claims.find((c) => c.a === 'fope-yarn' && c.b === 'yarn')!;
    expect(claim.outcome).toBe('ahead');
    expect(claim.sentence).toMatch(/\+55 points \(95 % CI \+\d+ … \+\d+\) → FoPE\+YaRN ahead, beyond the interval/);
  });

  it('says when the variant of interest is behind', () => {
    const v = studyVerdict([variant('yarn', 'YaRN', [0.9, 0.85, 0.95]), variant('fope-yarn', 'FoPE+YaRN', [0.2, 0.25, 0.3])], ctx);
    expect(v.leader).toBe('yarn');
    const claim = v.claims.find((c) => c.a === 'fope-yarn' && c.b === 'yarn')!;
    expect(claim.outcome).toBe('behind');
    expect(v.text).toMatch(/FoPE\+YaRN behind, beyond the interval/);
    expect(v.text).toMatch(/YaRN is ahead of every other variant/);
  });

  it('reports no difference when the intervals hold 0', () => {
    const v = studyVerdict([variant('yarn', 'YaRN', [0.5, 0.1, 0.6]), variant('fope-yarn', 'FoPE+YaRN', [0.2, 0.7, 0.5])], ctx);
    expect(v.leaderComparisons[0]!.difference.outcome).toBe('tie');
    expect(v.text).toMatch(/no lead exceeds its 95 % interval: no difference between the variants/);
    expect(v.claims[0]!.outcome).toBe('tie');
    expect(v.text).toMatch(/no difference beyond the interval \(it holds 0\)/);
  });

  it('says "no difference" when every variant scored the same, and "not tested" with one seed', () => {
    const same = studyVerdict([variant('rope', 'RoPE', [0, 0]), variant('yarn', 'YaRN', [0, 0])], ctx);
    expect(same.text).toMatch(/No difference: every variant scored the same \(0%\)/);
    const one = studyVerdict([variant('rope', 'RoPE', [0.1]), variant('yarn', 'YaRN', [0.4])], ctx);
    expect(one.text).toMatch(/one seed no interval can be stated/);
    expect(one.claims).toEqual([]); // no claim names rope vs yarn
  });

  it('checks the ablation claims and the short-context row with perplexity (lower is better)', () => {
    const v = studyVerdict(
      [
        variant('rope', 'RoPE', [0, 0, 0], [5.0, 5.1, 5.0]),
        variant('clip-yarn', 'clip-only+YaRN', [0.3, 0.3, 0.4], [5.1, 5.0, 5.1]),
        variant('fourier-yarn', 'Fourier-only+YaRN', [0.6, 0.7, 0.6], [6.0, 6.2, 6.1]),
      ],
      ctx,
    );
    const more = v.claims.find((c) => c.a === 'fourier-yarn' && c.b === 'clip-yarn')!;
    expect(more.outcome).toBe('ahead');
    const within = v.claims.find((c) => c.metric === 'short perplexity')!;
    expect(within.outcome).toBe('ahead'); // clip-only's perplexity is lower: better
    expect(v.text).toMatch(/short-context regression/);
    expect(v.text).toMatch(/Fourier-only\+YaRN \(\+1\.07/);
    expect(v.text).not.toMatch(/for clip-only/);
  });

  it('ranks perplexity with lower as better', () => {
    const v = studyVerdict(
      [variant('yarn', 'YaRN', [0.5, 0.5, 0.5], undefined, [9.0, 9.5, 9.2]), variant('fope-yarn', 'FoPE+YaRN', [0.5, 0.5, 0.5], undefined, [6.0, 6.1, 6.3])],
      ctx,
    );
    expect(v.text).toMatch(/Mean perplexity over the windows beyond the training length: FoPE\+YaRN 6\.13 \[[\d.]+, [\d.]+\], YaRN 9\.23/);
    expect(v.text).toMatch(/FoPE\+YaRN is ahead of every other variant in perplexity beyond the training length/);
    const tie = studyVerdict(
      [variant('yarn', 'YaRN', [0.5, 0.5, 0.5], undefined, [6.0, 9.5, 7.2]), variant('fope-yarn', 'FoPE+YaRN', [0.5, 0.5, 0.5], undefined, [7.0, 6.1, 8.3])],
      ctx,
    );
    expect(tie.text).toMatch(/FoPE\+YaRN has the lowest perplexity, but no lead exceeds its 95 % interval: no difference between the variants in perplexity/);
  });

  it('gives no verdict without results beyond the training length', () => {
    expect(studyVerdict([], ctx).text).toMatch(/^No verdict/);
    expect(studyVerdict([variant('rope', 'RoPE', [0.5])], { trainLength: 256, beyond: [] }).text).toMatch(/^No verdict/);
  });
});
