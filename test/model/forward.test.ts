/**
 * The tfjs forward pass against an independent float64 reference (test/model/reference.ts), for every
 * fixture kind in f32 and bf16 and for FoPE conversions of them (both layouts, with and without sep
 * heads, sin pad 0, YaRN), plus the identities FoPE must satisfy.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertModel } from '../../src/convert/convert.js';
import { FopeifyError } from '../../src/errors.js';
import { loadModel } from '../../src/model/index.js';
import { TINY_KINDS, type TinyKind } from '../../src/testing/tiny-checkpoint.js';
import { fixture, tempDir } from '../helpers.js';
import { renameTensors, rows, setCoefficients, useCpu } from './helpers.js';
import { loadReference, referenceLogits, relMaxError } from './reference.js';

const root = tempDir('fopeify-model-');
const IDS = [256, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100];
const TOL = 1e-4;

beforeAll(useCpu);

/** Relative max error against the reference, the worse of the 'hf' and 'inference' weight layouts. */
async function compare(dir: string, ids = IDS, positions?: number[]): Promise<number> {
  const want = referenceLogits(await loadReference(dir), ids, positions);
  let worst = 0;
  for (const layout of ['hf', 'inference'] as const) {
    const model = await loadModel(dir, { layout });
    try {
      expect(model.layout).toBe(layout);
      worst = Math.max(worst, relMaxError(rows(model.forward(ids, positions ? { positions } : {})), want));
    } finally {
      model.dispose();
    }
  }
  return worst;
}

describe('RoPE checkpoints match the float64 reference', () => {
  for (const kind of TINY_KINDS) {
    for (const dtype of ['F32', 'BF16'] as const) {
      it(`${kind} ${dtype}`, async () => {
        const dir = await fixture(root, { kind, dtype, seed: 3 });
        expect(await compare(dir)).toBeLessThan(TOL);
      });
    }
  }

  it('sharded f16 checkpoint with an index, untied head', async () => {
    const dir = await fixture(root, { kind: 'llama', dtype: 'F16', maxShardBytes: 20_000, seed: 5 });
    expect(await compare(dir)).toBeLessThan(TOL);
  });

  it('Llama with attention_bias (q/k/v/o) and mlp_bias', async () => {
    const src = await fixture(root, { kind: 'llama', seed: 9 });
    const dir = path.join(root, 'biases');
    const bias = (name: string, n: number) => ({ name, shape: [n], data: Float32Array.from({ length: n }, (_, i) => 0.1 * Math.sin(i * 0.37 + name.length)) });
    const extra = [];
    for (let l = 0; l < 2; l++) {
      const a = `model.layers.${l}.self_attn`;
      const m = `model.layers.${l}.mlp`;
      extra.push(bias(`${a}.q_proj.bias`, 64), bias(`${a}.k_proj.bias`, 32), bias(`${a}.v_proj.bias`, 32), bias(`${a}.o_proj.bias`, 64));
      extra.push(bias(`${m}.gate_proj.bias`, 128), bias(`${m}.up_proj.bias`, 128), bias(`${m}.down_proj.bias`, 64));
    }
    await renameTensors(src, dir, (n) => n, (c) => ((c.attention_bias = true), (c.mlp_bias = true)), extra);
    const model = await loadModel(dir);
    expect(model.weights.has('model.layers.1.self_attn.o_proj.bias')).toBe(true);
    expect(model.weights.has('model.layers.1.mlp.down_proj.bias')).toBe(true);
    model.dispose();
    expect(await compare(dir)).toBeLessThan(TOL);
  });

  it('GQA with 4 query heads per KV head and partial rotary', async () => {
    const src = await fixture(root, { kind: 'llama', seed: 6, shape: { numHeads: 8, numKvHeads: 2, hiddenSize: 64 } });
    const dir = path.join(root, 'partial');
    await renameTensors(src, dir, (n) => n, (c) => (c.partial_rotary_factor = 0.5));
    expect(await compare(dir)).toBeLessThan(TOL);
  });

  it('Mistral with a sliding window shorter than the input', async () => {
    const src = await fixture(root, { kind: 'mistral', seed: 7 });
    const dir = path.join(root, 'mistral-window');
    await renameTensors(src, dir, (n) => n, (c) => (c.sliding_window = 4));
    const model = await loadModel(dir);
    expect(model.spec.slidingWindow).toBe(4);
    model.dispose();
    expect(await compare(dir)).toBeLessThan(TOL);
  });

  it('dynamic NTK past max_position_embeddings, and custom float positions', async () => {
    const src = await fixture(root, { kind: 'llama', seed: 8 });
    const dir = path.join(root, 'dynamic');
    await renameTensors(src, dir, (n) => n, (c) => {
      c.rope_scaling = { rope_type: 'dynamic', factor: 2 };
      c.max_position_embeddings = 8;
    });
    expect(await compare(dir)).toBeLessThan(TOL);
    expect(await compare(dir, IDS.slice(0, 5), [0, 2.5, 7, 30, 31])).toBeLessThan(TOL);
  });
});

describe('FoPE checkpoints match the float64 reference', () => {
  const cases: { name: string; kind: TinyKind; dtype?: 'F32' | 'BF16'; opts: Record<string, unknown> }[] = [
    { name: 'llama shared', kind: 'llama', opts: { initFactor: 0.5 } },
    { name: 'llama per-layer', kind: 'llama', opts: { initFactor: 0.5, layout: 'per-layer' } },
    { name: 'llama bf16 shared, no sep heads', kind: 'llama', dtype: 'BF16', opts: { initFactor: 0.5, sepHead: false } },
    { name: 'llama --yarn 4 shared', kind: 'llama', opts: { initFactor: 0.5, yarn: 4 } },
    { name: 'llama --yarn 4 per-layer', kind: 'llama', opts: { initFactor: 0.5, yarn: 4, layout: 'per-layer' } },
    { name: 'llama sin pad 0', kind: 'llama', opts: { initFactor: 0.5, sinPad: 0 } },
    { name: 'qwen2 shared', kind: 'qwen2', opts: { initFactor: 0.5 } },
    { name: 'qwen3 per-layer', kind: 'qwen3', dtype: 'BF16', opts: { initFactor: 0.5, layout: 'per-layer' } },
    { name: 'llama-yarn fixture (attention factor)', kind: 'llama-yarn', opts: { initFactor: 0.5 } },
    { name: 'llama3 shared', kind: 'llama3', opts: { initFactor: 0.5 } },
    { name: 'llama-v5 config', kind: 'llama-v5', opts: { initFactor: 0.5 } },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const src = await fixture(root, { kind: c.kind, dtype: c.dtype ?? 'F32', seed: 11 });
      const out = path.join(root, `fope-${c.name.replace(/\W+/g, '-')}`);
      const result = await convertModel({ model: src, outDir: out, seed: 1, ...c.opts });
      expect(result.k).toBeLessThan(8); // something is clipped
      const model = await loadModel(out);
      expect(model.fopeLayout).toBe(c.opts.layout === 'per-layer' ? 'per-layer' : 'shared');
      model.dispose();
      expect(await compare(out)).toBeLessThan(TOL);
    });
  }

  it('family-B names under model.language_model.* load and give the same logits', async () => {
    const src = await fixture(root, { kind: 'qwen2', seed: 12 });
    const fope = path.join(root, 'fope-lm-src');
    await convertModel({ model: src, outDir: fope, initFactor: 0.5 });
    const lm = path.join(root, 'fope-lm');
    await renameTensors(fope, lm, (n) => n.replace(/^model\./, 'model.language_model.'));
    const a = await loadModel(fope);
    const b = await loadModel(lm);
    const la = rows(a.forward(IDS));
    const lb = rows(b.forward(IDS));
    expect(relMaxError(lb, la)).toBe(0);
    a.dispose();
    b.dispose();
    expect(await compare(lm)).toBeLessThan(TOL);
  });

  it('identity coefficients with nothing clipped equal RoPE exactly', async () => {
    for (const kind of ['llama', 'qwen3', 'llama-yarn'] as const) {
      const src = await fixture(root, { kind, seed: 13 });
      const rope = await loadModel(src);
      const half = rope.spec.rope.dim / 2;
      for (const layout of ['shared', 'per-layer'] as const) {
        const out = path.join(root, `fope-identity-${kind}-${layout}`);
        const r = await convertModel({ model: src, outDir: out, initFactor: 0, numInvFreq: half, layout });
        expect(r.k).toBe(half);
        const fope = await loadModel(out);
        const a = rows(rope.forward(IDS));
        const b = rows(fope.forward(IDS));
        expect(relMaxError(b, a)).toBeLessThan(1e-6);
        fope.dispose();
      }
      rope.dispose();
    }
  });

  it('FoPE with clipping differs from RoPE, and position 0 is not the identity', async () => {
    const src = await fixture(root, { kind: 'llama', seed: 14 });
    const out = path.join(root, 'fope-clip-differs');
    await convertModel({ model: src, outDir: out, initFactor: 0 });
    const rope = await loadModel(src);
    const fope = await loadModel(out);
    expect(relMaxError(rows(fope.forward(IDS)), rows(rope.forward(IDS)))).toBeGreaterThan(1e-3);
    rope.dispose();
    fope.dispose();
  });

  it('hand-written non-square coefficients [n_kv, K, out < K] are read with the shape as authority', async () => {
    const src = await fixture(root, { kind: 'llama', seed: 15 });
    const out = path.join(root, 'fope-handmade');
    await convertModel({ model: src, outDir: out, initFactor: 0.3, numInvFreq: 4 });
    // Replace by [2, 4, 3] coefficients with arbitrary values.
    const dir2 = path.join(root, 'fope-handmade-3');
    await renameTensors(out, dir2, (n) => n);
    await setCoefficientsReshaped(dir2);
    expect(await compare(dir2)).toBeLessThan(TOL);
  });
});

/** Rewrite the coefficient tensors of a single-file FoPE folder as [2, 4, 3]. */
async function setCoefficientsReshaped(dir: string): Promise<void> {
  const { Checkpoint } = await import('../../src/io/checkpoint.js');
  const { writeSafetensors } = await import('../../src/io/safetensors.js');
  const file = path.join(dir, 'model.safetensors');
  const ckpt = await Checkpoint.open(dir);
  const tensors = [];
  for (const [name, info] of ckpt.tensors) {
    if (name.endsWith('_coef')) {
      const v = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i * 1.7 + name.length) * 0.7);
      tensors.push({ name, dtype: 'F32' as const, shape: [2, 4, 3], data: new Uint8Array(v.buffer) });
    } else tensors.push({ name, dtype: info.dtype, shape: info.shape, data: await ckpt.readBytes(name) });
  }
  await ckpt.close();
  await writeSafetensors(file, tensors, { format: 'pt' });
}

describe('loading errors', () => {
  it('a FoPE config without coefficients is refused (a loader never regenerates them)', async () => {
    const src = await fixture(root, { kind: 'llama', seed: 16 });
    const dir = path.join(root, 'fope-no-coef');
    await renameTensors(src, dir, (n) => n, (c) => (c.rope_scaling = { rope_type: 'default', fope_init_factor: 0.1, fope_sep_head: true }));
    await expect(loadModel(dir)).rejects.toMatchObject({ code: 'BAD_SAFETENSORS' });
  });

  it('a missing tensor and a wrong shape are named', async () => {
    const src = await fixture(root, { kind: 'llama', seed: 17 });
    const dir = path.join(root, 'missing');
    await renameTensors(src, dir, (n) => (n === 'model.norm.weight' ? 'model.nrm.weight' : n));
    const err = await loadModel(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FopeifyError);
    expect((err as Error).message).toContain('model.norm.weight');
    const dir2 = path.join(root, 'badshape');
    await renameTensors(src, dir2, (n) => n, (c) => (c.intermediate_size = 96));
    await expect(loadModel(dir2)).rejects.toThrow(/mlp.gate_proj.weight has shape/);
  });

  it('per-layer coefficient values can be edited and are used (not regenerated)', async () => {
    const src = await fixture(root, { kind: 'llama', seed: 18 });
    const out = path.join(root, 'fope-edit');
    await convertModel({ model: src, outDir: out, initFactor: 0.2, layout: 'per-layer' });
    const before = await loadModel(out);
    const a = rows(before.forward(IDS));
    before.dispose();
    await setCoefficients(out, (name, shape) => Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, (_, i) => Math.cos(i + name.length)));
    const after = await loadModel(out);
    expect(relMaxError(rows(after.forward(IDS)), a)).toBeGreaterThan(1e-3);
    after.dispose();
    expect(await compare(out)).toBeLessThan(TOL);
  });
});
