/**
 * Prefill memory (issue 19): a prompt into a KV cache runs in steps (prefill.ts) with the logits, the
 * cache and the following decode of one pass; the inference layout of a tied model keeps no second
 * copy of the embedding.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { convertModel } from '../../src/convert/convert.js';
import { loadModel, type LlamaModel } from '../../src/model/index.js';
import { TRANSPOSED_SUFFIX } from '../../src/model/weights.js';
import { COLLECT_MIN_LAYER_BYTES, collectsByDefault, layerTemporaryBytes } from '../../src/model/prefill.js';
import { collections } from '../collection-counter.js';
import { fixture, tempDir } from '../helpers.js';
import { rows, useCpu } from './helpers.js';
import { relMaxError } from './reference.js';

vi.mock('../../src/backend/full-collection.js', async (original) => (await import('../collection-counter.js')).countingFullCollection(original));

const root = tempDir('fopeify-prefill-');
const IDS = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110, 32, 102, 111, 120];

let rope: LlamaModel;
let fope: LlamaModel;
let tied: LlamaModel;

beforeAll(async () => {
  await useCpu();
  const src = await fixture(root, { kind: 'qwen3', seed: 5 });
  const fopeDir = path.join(root, 'fope');
  await convertModel({ model: src, outDir: fopeDir, initFactor: 0.4, layout: 'per-layer', yarn: 2 });
  rope = await loadModel(src);
  fope = await loadModel(fopeDir, { layout: 'inference' });
  tied = await loadModel(await fixture(root, { kind: 'qwen2', seed: 6 }), { layout: 'inference' });
});
afterAll(() => {
  for (const m of [rope, fope, tied]) m?.dispose();
});

/** Logits of a prefill of `ids` into `cache` after `before` (already cached), then of one decoded token. */
function prefillThenDecode(model: LlamaModel, chunk: number, opts: { before?: number[]; batch?: boolean; tensor?: boolean; positions?: boolean } = {}) {
  const cache = model.createCache({ blockSize: 4 });
  if (opts.before) model.forward(opts.before, { cache }).dispose();
  const start = cache.length;
  const positions = opts.positions ? Float32Array.from(IDS, (_, i) => 2.5 * (start + i)) : undefined;
  const batchIds = [IDS, [...IDS].reverse()];
  const ids = opts.tensor ? tf.tensor2d(batchIds, undefined, 'int32') : opts.batch ? batchIds : IDS;
  const out = model.forward(ids, { cache, prefillChunk: chunk, positions });
  if (ids instanceof tf.Tensor) ids.dispose();
  const prefill = out.dataSync() as Float32Array;
  out.dispose();
  const length = cache.length;
  const next = model.forward(opts.batch || opts.tensor ? [[7], [9]] : [7], { cache, positions: positions ? [1000] : undefined });
  const decode = next.dataSync() as Float32Array;
  next.dispose();
  cache.dispose();
  return { prefill: [prefill], decode: [decode], length };
}

describe('prefill in steps', () => {
  const cases = {
    'one sequence': {},
    'after cached tokens (steps aligned to the cache, not the prompt)': { before: [3, 1, 4, 1, 5, 9] },
    'a batch of two': { batch: true },
    'ids as an int32 tensor': { tensor: true },
    'given positions': { positions: true, before: [2, 7] },
  };
  for (const [name, opts] of Object.entries(cases)) {
    it(`${name}: the logits, cache and next token of one pass`, () => {
      for (const model of [rope, fope]) {
        const one = prefillThenDecode(model, Infinity, opts);
        for (const chunk of [1, 4, 6, 8]) {
          const stepped = prefillThenDecode(model, chunk, opts);
          expect(stepped.length).toBe(one.length);
          expect(relMaxError(stepped.prefill, one.prefill)).toBeLessThan(1e-5);
          expect(relMaxError(stepped.decode, one.decode)).toBeLessThan(1e-5);
        }
      }
    });
  }

  it('equals the uncached forward pass and leaks no tensor', () => {
    const full = rows(fope.forward(IDS));
    const before = tf.memory().numTensors;
    const cache = fope.createCache({ blockSize: 4 });
    const got = rows(fope.forward(IDS, { cache, prefillChunk: 4 }));
    expect(relMaxError(got, full)).toBeLessThan(1e-5);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('holds fewer bytes of activations at once than one pass', async () => {
    const peak = async (chunk: number) => {
      const cache = fope.createCache({ blockSize: 4 });
      const base = tf.memory().numBytes;
      const info = await tf.profile(() => fope.forward(IDS, { cache, prefillChunk: chunk, logits: 'last' }));
      cache.dispose();
      return info.peakBytes - base;
    };
    const one = await peak(Infinity);
    const stepped = await peak(4);
    expect(stepped).toBeLessThan(0.7 * one);
  });

  it("the last token's logits keep only the last step's hidden states, with the same bits", async () => {
    const cache = fope.createCache({ blockSize: 4 });
    const all = rows(fope.forward(IDS, { cache, prefillChunk: 4 }));
    cache.dispose();
    const H = fope.spec.hiddenSize;
    const lastCache = fope.createCache({ blockSize: 4 });
    let last: Float32Array[] = [];
    const info = await tf.profile(() => {
      last = rows(fope.forward(IDS, { cache: lastCache, prefillChunk: 4, logits: 'last' }));
    });
    lastCache.dispose();
    expect(last).toEqual([all[all.length - 1]]);
    // No [1, T, H] tensor of every step's hidden states is assembled (5 steps of 4 tokens here).
    const wholePrompt = info.kernels.filter((k) => k.outputShapes.some((s) => s?.join() === [1, IDS.length, H].join()));
    expect(wholePrompt.map((k) => k.name)).toEqual([]);
  });

  it('collects garbage after each layer of each step when asked, with the same logits; by default where a layer makes ≥ 16 MiB a step on cpu', () => {
    const smol = { hiddenSize: 576, intermediateSize: 1536, numHeads: 9, numKvHeads: 3, headDim: 64 };
    // SmolLM2-135M at the default 1024-token step: ~43 MiB a layer.
    expect(layerTemporaryBytes(smol, 1024) / 2 ** 20).toBeCloseTo(42.75, 2);
    expect(collectsByDefault(layerTemporaryBytes(smol, 1024), {}, 'cpu')).toBe(true);
    expect(collectsByDefault(layerTemporaryBytes(smol, 1024), { FOPEIFY_PREFILL_GC: '0' }, 'cpu')).toBe(false);
    expect(collectsByDefault(layerTemporaryBytes(smol, 1024), {}, 'webgpu')).toBe(false);
    expect(collectsByDefault(COLLECT_MIN_LAYER_BYTES - 1, {}, 'cpu')).toBe(false);
    const run = (opts: { chunk: number; collect?: boolean }) => {
      const cache = fope.createCache({ blockSize: 4 });
      collections.count = 0;
      const out = rows(fope.forward(IDS, { cache, prefillChunk: opts.chunk, logits: 'last', collectBetweenLayers: opts.collect }));
      cache.dispose();
      return { out, count: collections.count };
    };
    const collected = run({ chunk: 8, collect: true });
    // 20 tokens in steps of 8: three steps, a collection after every layer of each.
    expect(collected.count).toBe(3 * fope.spec.numLayers);
    const without = run({ chunk: 8, collect: false });
    expect(without.count).toBe(0);
    expect(without.out).toEqual(collected.out);
    // The test model's layers make a few KiB: left to V8. One pass collects only when asked.
    expect(run({ chunk: 8 }).count).toBe(0);
    expect(run({ chunk: Infinity }).count).toBe(0);
    expect(run({ chunk: Infinity, collect: true }).count).toBe(fope.spec.numLayers);
  });

  it('a jagged batch is refused before anything is cached', () => {
    const cache = fope.createCache({ blockSize: 4 });
    expect(() => fope.forward([IDS, IDS.slice(1)], { cache, prefillChunk: 4 })).toThrow(/same length/);
    expect(cache.length).toBe(0);
    cache.dispose();
  });
});

describe('weights in the inference layout', () => {
  it('a tied LM head is the embedding itself, not a transposed copy', () => {
    expect(tied.spec.tieWordEmbeddings).toBe(true);
    expect(tied.layout).toBe('inference');
    expect(tied.weights.has(`lm_head.weight${TRANSPOSED_SUFFIX}`)).toBe(false);
    // The [V, H] matrix is held once (the tied head used to add a transposed [H, V] copy).
    const { vocabSize: V, hiddenSize: H } = tied.spec;
    expect([...tied.weights.values()].filter((w) => w.size === V * H)).toHaveLength(1);
  });
});
