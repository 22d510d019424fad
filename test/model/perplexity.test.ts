/** Perplexity per window against NLLs computed from the float64 reference logits. */
import { beforeAll, describe, expect, it } from 'vitest';
import { perplexityByWindow, sequenceNll } from '../../src/eval/perplexity.js';
import { loadModel } from '../../src/model/index.js';
import { fixture, tempDir } from '../helpers.js';
import { useCpu } from './helpers.js';
import { loadReference, referenceLogits } from './reference.js';

const root = tempDir('fopeify-ppl-');
beforeAll(useCpu);

function refNll(logits: Float64Array[], ids: number[]): number {
  let s = 0;
  for (let t = 0; t + 1 < ids.length; t++) {
    const row = logits[t]!;
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
    s += lse - row[ids[t + 1]!]!;
  }
  return s;
}

describe('perplexity', () => {
  it('sums token NLLs like the reference, in any LM-head chunking', async () => {
    const dir = await fixture(root, { kind: 'qwen2', seed: 31 });
    const model = await loadModel(dir);
    const ids = Array.from(Buffer.from('perplexity, window by window'));
    const want = refNll(referenceLogits(await loadReference(dir), ids), ids);
    for (const logitsChunk of [256, 5, 1]) {
      const got = await sequenceNll(model, ids, { logitsChunk });
      expect(got.count).toBe(ids.length - 1);
      expect(Math.abs(got.nll - want) / want).toBeLessThan(1e-5);
    }
    model.dispose();
  });

  it('cuts non-overlapping windows per size and skips sizes longer than the text', async () => {
    const dir = await fixture(root, { kind: 'llama', seed: 32 });
    const model = await loadModel(dir);
    const ref = await loadReference(dir);
    const ids = Array.from(Buffer.from('The grass is green. The sky is blue. The sun is yellow.'));
    const report = await perplexityByWindow(model, ids, { windows: [8, 20, 100], maxWindows: 2 });
    expect(report.tokens).toBe(ids.length);
    const [w8, w20, w100] = report.results;
    expect(w8).toMatchObject({ window: 8, windows: 2, tokens: 14 });
    expect(w20).toMatchObject({ window: 20, windows: 2, tokens: 38 });
    expect(w100).toEqual({ window: 100, windows: 0, tokens: 0, nll: null, ppl: null });
    let want = 0;
    for (let i = 0; i < 2; i++) {
      const win = ids.slice(i * 20, (i + 1) * 20);
      want += refNll(referenceLogits(ref, win), win);
    }
    expect(Math.abs(w20!.nll! - want / 38)).toBeLessThan(1e-5);
    expect(w20!.ppl).toBeCloseTo(Math.exp(want / 38), 4);
    await expect(perplexityByWindow(model, ids, { windows: [1] })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    model.dispose();
  });
});
