/**
 * Blockwise attention, the KV cache and decoding: blockwise equals full attention, cached equals
 * uncached, decoding does not leak tensors, sampling is seeded, and the functional forward works
 * inside tf.grads.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertModel } from '../../src/convert/convert.js';
import {
  argmax,
  blockwiseAttention,
  forwardLogits,
  fullAttention,
  kvBlocks,
  loadModel,
  loadTokenizer,
  sampleToken,
  type LlamaModel,
} from '../../src/model/index.js';
import { SeededRandom } from '../../src/random.js';
import { fixture, tempDir } from '../helpers.js';
import { setupBackend, type BackendInfo } from '../../src/backend/select.js';
import { tfKernels } from '../../src/backend/kernels-tf.js';
import { nativeUsable } from '../backend/helpers.js';
import { rows, useCpu } from './helpers.js';
import { relMaxError } from './reference.js';

const root = tempDir('fopeify-decode-');
const IDS = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110];

let rope: LlamaModel;
let fope: LlamaModel;
let fopeDir: string;

beforeAll(async () => {
  await useCpu();
  const src = await fixture(root, { kind: 'qwen3', seed: 21 });
  fopeDir = path.join(root, 'fope');
  await convertModel({ model: src, outDir: fopeDir, initFactor: 0.4, layout: 'per-layer', yarn: 2 });
  rope = await loadModel(src);
  fope = await loadModel(fopeDir, { layout: 'inference' });
});
afterAll(() => {
  rope?.dispose();
  fope?.dispose();
});

function randn(shape: number[], seed: number): tf.Tensor {
  const rng = new SeededRandom(seed, 'attn');
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => rng.normal()), shape);
}

/** Head groups, query/key block sizes, cached prefixes and sliding windows that exercise every mask case. */
const ATTENTION_CASES: { R: number; Tq: number; past: number; qb: number; kb: number; window: number | null }[] = [
    { R: 1, Tq: 9, past: 0, qb: 4, kb: 3, window: null },
    { R: 3, Tq: 17, past: 0, qb: 5, kb: 4, window: null },
    { R: 2, Tq: 1, past: 13, qb: 256, kb: 4, window: null },
    { R: 2, Tq: 6, past: 10, qb: 4, kb: 5, window: null },
    { R: 2, Tq: 20, past: 0, qb: 3, kb: 4, window: 5 },
    { R: 1, Tq: 3, past: 12, qb: 2, kb: 4, window: 6 },
];

describe('blockwise attention equals full attention', () => {
  const cases = [...ATTENTION_CASES, { R: 2, Tq: 33, past: 0, qb: 256, kb: 512, window: null }];
  for (const c of cases) {
    it(`R=${c.R} Tq=${c.Tq} past=${c.past} blocks q${c.qb}/k${c.kb} window=${c.window}`, () => {
      const BK = 4;
      const D = 8;
      const Tk = c.past + c.Tq;
      const q = randn([BK, c.R, c.Tq, D], 1) as tf.Tensor4D;
      const k = randn([BK, Tk, D], 2).mul(2) as tf.Tensor3D; // larger scores: the online max matters
      const v = randn([BK, Tk, D], 3) as tf.Tensor3D;
      const before = tf.memory().numTensors;
      const blocks = kvBlocks(k, v, 0, c.kb);
      const a = blockwiseAttention(q, blocks, c.past, { queryBlock: c.qb, slidingWindow: c.window });
      const b = fullAttention(q, k, v, c.past, { slidingWindow: c.window });
      const err = relMaxError([a.dataSync()], [b.dataSync()]);
      expect(err).toBeLessThan(1e-5);
      for (const blk of blocks) if (blk.k !== k) (blk.k.dispose(), blk.v.dispose());
      a.dispose();
      b.dispose();
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([q, k, v]);
    });
  }

  it('the forward pass gives the same logits with tiny blocks', () => {
    const a = rows(fope.forward(IDS));
    const b = rows(fope.forward(IDS, { queryBlock: 3, keyBlock: 2 }));
    expect(relMaxError(b, a)).toBeLessThan(1e-5);
  });
});

// CI has OpenBLAS (FOPEIFY_EXPECT_NATIVE=1), so this runs there: the accelerated backend's BLAS-direct
// attention must equal the plain reference, alone and inside whole forward passes with and without a cache.
describe.skipIf(!nativeUsable)('native (BLAS-direct) inference attention', () => {
  let native: BackendInfo;
  beforeAll(async () => {
    native = await setupBackend({ backend: 'native', quiet: true });
  });
  afterAll(async () => {
    await useCpu();
  });
  const cases = [...ATTENTION_CASES, { R: 2, Tq: 70, past: 0, qb: 256, kb: 512, window: null }];
  for (const c of cases) {
    it(`R=${c.R} Tq=${c.Tq} past=${c.past} blocks q${c.qb}/k${c.kb} window=${c.window}`, () => {
      expect(native.kernels.name).toBe('native');
      const BK = 3;
      const D = 16;
      const Tk = c.past + c.Tq;
      const q = randn([BK, c.R, c.Tq, D], 4) as tf.Tensor4D;
      const k = randn([BK, Tk, D], 5).mul(3) as tf.Tensor3D;
      const v = randn([BK, Tk, D], 6) as tf.Tensor3D;
      const blocks = kvBlocks(k, v, 0, c.kb);
      const a = blockwiseAttention(q, blocks, c.past, { queryBlock: c.qb, slidingWindow: c.window, kernels: native.kernels });
      const b = blockwiseAttention(q, blocks, c.past, { queryBlock: c.qb, slidingWindow: c.window, kernels: tfKernels });
      const ref = fullAttention(q, k, v, c.past, { slidingWindow: c.window });
      expect(relMaxError([a.dataSync()], [ref.dataSync()])).toBeLessThan(1e-5);
      expect(relMaxError([b.dataSync()], [ref.dataSync()])).toBeLessThan(1e-5);
      for (const blk of blocks) if (blk.k !== k) (blk.k.dispose(), blk.v.dispose());
      tf.dispose([a, b, ref, q, k, v]);
    });
  }

  it('is not used while a gradient is recorded (tf.grads sees tf ops)', () => {
    const q = randn([2, 2, 5, 8], 7) as tf.Tensor4D;
    const k = randn([2, 5, 8], 8) as tf.Tensor3D;
    const v = randn([2, 5, 8], 9) as tf.Tensor3D;
    const f = (x: tf.Tensor) => tf.sum(blockwiseAttention(x as tf.Tensor4D, [{ k, v, start: 0 }], 0, { kernels: native.kernels }));
    const fRef = (x: tf.Tensor) => tf.sum(fullAttention(x as tf.Tensor4D, k, v, 0));
    const [g] = tf.grads(f)([q]);
    const [gRef] = tf.grads(fRef)([q]);
    expect(relMaxError([g!.dataSync()], [gRef!.dataSync()])).toBeLessThan(1e-4);
    tf.dispose([q, k, v, g!, gRef!]);
  });

  it('whole forward passes (RoPE and FoPE+YaRN, cached in chunks) equal the plain cpu backend', async () => {
    await useCpu();
    const plain = [rows(rope.forward(IDS)), rows(fope.forward(IDS))];
    native = await setupBackend({ backend: 'native', quiet: true });
    const kernels = native.kernels;
    [rope, fope].forEach((model, i) => {
      expect(relMaxError(rows(model.forward(IDS, { queryBlock: 5, keyBlock: 4, kernels })), plain[i]!)).toBeLessThan(1e-4);
      const cache = model.createCache({ blockSize: 3 });
      const got: Float32Array[] = [];
      for (const [s, e] of [[0, 5], [5, 6], [6, 11], [11, 16]] as const) got.push(...rows(model.forward(IDS.slice(s, e), { cache, queryBlock: 2, kernels })));
      cache.dispose();
      expect(relMaxError(got, plain[i]!)).toBeLessThan(1e-4);
    });
  });
});

describe('KV cache', () => {
  it('prefill in chunks with a cache gives the logits of one uncached pass', () => {
    for (const model of [rope, fope]) {
      const full = rows(model.forward(IDS));
      const cache = model.createCache({ blockSize: 3 });
      const got: Float32Array[] = [];
      for (const [s, e] of [[0, 5], [5, 6], [6, 11], [11, 16]] as const) {
        got.push(...rows(model.forward(IDS.slice(s, e), { cache, queryBlock: 2 })));
      }
      expect(cache.length).toBe(IDS.length);
      expect(relMaxError(got, full)).toBeLessThan(1e-5);
      cache.dispose();
    }
  });

  it('cached greedy decoding equals uncached argmax decoding token for token', async () => {
    for (const model of [rope, fope]) {
      const prompt = IDS.slice(0, 6);
      const res = await model.generate(prompt, { maxNewTokens: 14, eosTokenId: null, cacheBlockSize: 4 });
      expect(res.tokens).toHaveLength(14);
      const seq = [...prompt];
      for (let i = 0; i < 14; i++) {
        const r = rows(model.forward(seq));
        seq.push(argmax(r[r.length - 1]!));
      }
      expect(res.tokens).toEqual(seq.slice(prompt.length));
    }
  });

  it('decoding does not leak tensors (numTensors flat per step)', async () => {
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    // One cache block holds every token, so nothing but the logits of a step may be alive between steps.
    await fope.generate(IDS.slice(0, 4), {
      maxNewTokens: 12,
      eosTokenId: null,
      cacheBlockSize: 64,
      onToken: () => void counts.push(tf.memory().numTensors),
    });
    expect(new Set(counts.slice(1)).size).toBe(1);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('stops at eos and on a callback', async () => {
    const greedy = await rope.generate(IDS.slice(0, 4), { maxNewTokens: 6, eosTokenId: null });
    const eos = greedy.tokens[2]!;
    const stopped = await rope.generate(IDS.slice(0, 4), { maxNewTokens: 6, eosTokenId: [999, eos] });
    expect(stopped.stopReason).toBe('eos');
    expect(stopped.tokens).toEqual(greedy.tokens.slice(0, greedy.tokens.indexOf(eos) + 1));
    const cb = await rope.generate(IDS.slice(0, 4), { maxNewTokens: 6, eosTokenId: null, onToken: (_, i) => i < 1 });
    expect(cb.stopReason).toBe('callback');
    expect(cb.tokens).toHaveLength(2);
  });
});

describe('sampling', () => {
  it('is reproducible with a seed, and top-k 1 is greedy', async () => {
    const o = { maxNewTokens: 8, eosTokenId: null, temperature: 1.5, topP: 0.95 };
    const a = await fope.generate(IDS.slice(0, 4), { ...o, seed: 7 });
    const b = await fope.generate(IDS.slice(0, 4), { ...o, seed: 7 });
    expect(a.tokens).toEqual(b.tokens);
    const greedy = await fope.generate(IDS.slice(0, 4), { maxNewTokens: 8, eosTokenId: null });
    const k1 = await fope.generate(IDS.slice(0, 4), { maxNewTokens: 8, eosTokenId: null, temperature: 2, topK: 1, seed: 3 });
    expect(k1.tokens).toEqual(greedy.tokens);
  });

  it('follows the softmax distribution, restricted by top-k / top-p', () => {
    const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];
    const rng = new SeededRandom(1, 'test');
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[sampleToken(logits, { temperature: 1 }, rng)]!++;
    [0.5, 0.3, 0.15, 0.05].forEach((p, i) => expect(Math.abs(counts[i]! / 20000 - p)).toBeLessThan(0.015));
    for (let i = 0; i < 200; i++) expect(sampleToken(logits, { temperature: 1, topK: 2 }, rng)).toBeLessThan(2);
    for (let i = 0; i < 200; i++) expect(sampleToken(logits, { temperature: 1, topP: 0.75 }, rng)).toBeLessThan(2);
  });
});

describe('API for later work', () => {
  it('a batch gives each sequence its own logits', () => {
    const a = IDS.slice(0, 7);
    const b = IDS.slice(7, 14);
    const batch = fope.forward([a, b]);
    expect(batch.shape).toEqual([2, 7, fope.spec.vocabSize]);
    const [ba, bb] = tf.split(batch, 2, 0) as [tf.Tensor3D, tf.Tensor3D];
    batch.dispose();
    expect(relMaxError(rows(ba), rows(fope.forward(a)))).toBeLessThan(1e-5);
    expect(relMaxError(rows(bb), rows(fope.forward(b)))).toBeLessThan(1e-5);
  });

  it('forwardLogits works inside tf.grads (gradient matches a finite difference)', () => {
    const name = 'model.layers.1.post_attention_layernorm.weight';
    const w0 = fope.weights.get(name)!;
    const ids = IDS.slice(0, 6);
    const loss = (w: tf.Tensor) => {
      const m = new Map<string, tf.Tensor>(fope.weights);
      m.set(name, w);
      const lg = forwardLogits(m, fope.spec, ids);
      return tf.mean(tf.square(lg)) as tf.Scalar;
    };
    const g = tf.grad(loss)(w0);
    const gi = g.dataSync()[5]!;
    const eps = 1e-2;
    const delta = tf.tensor1d(Float32Array.from({ length: w0.size }, (_, i) => (i === 5 ? eps : 0)));
    const lp = loss(w0.add(delta)).dataSync()[0]!;
    const lm = loss(w0.sub(delta)).dataSync()[0]!;
    expect(Math.abs(gi - (lp - lm) / (2 * eps))).toBeLessThan(2e-3 * Math.max(1, Math.abs(gi)));
    tf.dispose([g, delta]);
  });

  it('weights are named variables; the trainable flag follows the option; coefficients are frozen', async () => {
    const m = await loadModel(fopeDir, { trainable: (n) => n.includes('q_proj') });
    const v = m.weights.get('model.layers.0.self_attn.q_proj.weight')!;
    expect(v).toBeInstanceOf(tf.Variable);
    expect(v.trainable).toBe(true);
    expect(m.weights.get('model.layers.0.self_attn.rotary_emb.sin_coef')!.trainable).toBe(false);
    expect(m.trainableVariables().length).toBe(m.spec.numLayers);
    m.dispose();
    const all = await loadModel(fopeDir, { trainable: true });
    expect(all.weights.get('model.layers.0.self_attn.rotary_emb.cos_coef')!.trainable).toBe(false);
    all.dispose();
  });

  it('assigning a coefficient variable is seen by the next forward pass', async () => {
    const m = await loadModel(fopeDir);
    const before = rows(m.forward(IDS.slice(0, 5)));
    const v = m.weights.get('model.layers.0.self_attn.rotary_emb.sin_coef')!;
    v.assign(tf.zerosLike(v));
    expect(relMaxError(rows(m.forward(IDS.slice(0, 5))), before)).toBeGreaterThan(1e-4);
    m.dispose();
  });

  it('the fixture tokenizer loads with types and round-trips text', async () => {
    const tok = await loadTokenizer(fopeDir);
    const ids = tok.encode('Hello, wörld!', { addSpecialTokens: false });
    expect(ids.length).toBe(Buffer.byteLength('Hello, wörld!'));
    expect(tok.decode(ids)).toBe('Hello, wörld!');
    expect(tok.eosTokenId).toBe(256);
  });
});
