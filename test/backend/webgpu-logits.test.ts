/**
 * The model's logits on webgpu equal the cpu backend's within 1e-4, through the library as it is
 * (setupBackend, loadModel, forward), for the committed fixture, every tiny family and FoPE / YaRN
 * conversions of them; greedy generation (KV cache) and perplexity's NLL too. Logits are read with
 * `await data()` (synchronous reads throw on webgpu).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/select.js';
import type { WebGpuProbe } from '../../src/backend/webgpu.js';
import { convertModel } from '../../src/convert/convert.js';
import { sequenceNll } from '../../src/eval/perplexity.js';
import { loadModel } from '../../src/model/index.js';
import { TINY_KINDS, type TinyKind } from '../../src/testing/tiny-checkpoint.js';
import { fixture, tempDir } from '../helpers.js';
import { assertWebGpuWhenExpected, relErr, webgpuProbe } from './webgpu-helpers.js';

const TOL = 1e-4;
const IDS = [256, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100];
const root = tempDir('fopeify-webgpu-');
const committed = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/tiny-rope-256');
let probe: WebGpuProbe;

async function logitsOn(backend: 'cpu' | 'webgpu', dir: string): Promise<Float32Array> {
  await setupBackend({ backend, allowSoftwareAdapter: true, quiet: true });
  expect(tf.getBackend()).toBe(backend);
  const model = await loadModel(dir);
  try {
    const logits = model.forward(IDS);
    expect(logits.shape).toEqual([1, IDS.length, model.spec.vocabSize]);
    const values = Float32Array.from(await logits.data());
    logits.dispose();
    return values;
  } finally {
    model.dispose();
  }
}

async function webgpuVsCpu(dir: string): Promise<number> {
  const gpu = await logitsOn('webgpu', dir);
  const cpu = await logitsOn('cpu', dir);
  return relErr(gpu, cpu);
}

const fopeCases: { name: string; kind: TinyKind; opts: Record<string, unknown> }[] = [
  { name: 'llama FoPE shared', kind: 'llama', opts: { initFactor: 0.5 } },
  { name: 'llama FoPE per-layer', kind: 'llama', opts: { initFactor: 0.5, layout: 'per-layer' } },
  { name: 'llama FoPE --yarn 4', kind: 'llama', opts: { initFactor: 0.5, yarn: 4 } },
  { name: 'qwen3 FoPE per-layer', kind: 'qwen3', opts: { initFactor: 0.5, layout: 'per-layer' } },
  { name: 'llama-yarn FoPE (attention factor)', kind: 'llama-yarn', opts: { initFactor: 0.5 } },
  { name: 'mistral FoPE (sliding window)', kind: 'mistral', opts: { initFactor: 0.5 } },
];

describe('logits: webgpu vs cpu', () => {
  beforeAll(async () => {
    probe = await webgpuProbe();
  });
  afterAll(async () => {
    await setupBackend({ backend: 'cpu', quiet: true });
  });

  it('the committed fixture (tiny-rope-256)', async (ctx) => {
    assertWebGpuWhenExpected(probe);
    if (!probe.ok) return ctx.skip();
    expect(await webgpuVsCpu(committed)).toBeLessThanOrEqual(TOL);
  });

  for (const kind of TINY_KINDS) {
    it(`${kind}`, async (ctx) => {
      if (!probe.ok) return ctx.skip();
      expect(await webgpuVsCpu(await fixture(root, { kind, seed: 3 }))).toBeLessThanOrEqual(TOL);
    });
  }

  for (const c of fopeCases) {
    it(c.name, async (ctx) => {
      if (!probe.ok) return ctx.skip();
      const src = await fixture(root, { kind: c.kind, seed: 11 });
      const out = path.join(root, `fope-${c.name.replace(/\W+/g, '-')}`);
      await convertModel({ model: src, outDir: out, seed: 1, ...c.opts });
      expect(await webgpuVsCpu(out)).toBeLessThanOrEqual(TOL);
    });
  }

  it('generate (greedy, KV cache) and sequence NLL on a FoPE model: same tokens, NLL within 1e-4, no tensor left', async (ctx) => {
    if (!probe.ok) return ctx.skip();
    const src = await fixture(root, { kind: 'qwen2', seed: 5 });
    const out = path.join(root, 'fope-generate');
    await convertModel({ model: src, outDir: out, seed: 1, initFactor: 0.5 });
    const results: { tokens: number[]; nll: number }[] = [];
    for (const backend of ['webgpu', 'cpu'] as const) {
      await setupBackend({ backend, allowSoftwareAdapter: true, quiet: true });
      const model = await loadModel(out);
      try {
        const before = tf.memory().numTensors;
        const g = await model.generate(IDS, { maxNewTokens: 6 });
        const { nll, count } = await sequenceNll(model, IDS);
        expect(count).toBe(IDS.length - 1);
        expect(tf.memory().numTensors).toBe(before);
        results.push({ tokens: [...g.tokens], nll });
      } finally {
        model.dispose();
      }
    }
    const [gpu, cpu] = results as [{ tokens: number[]; nll: number }, { tokens: number[]; nll: number }];
    expect(gpu.tokens).toHaveLength(6);
    expect(gpu.tokens).toEqual(cpu.tokens);
    expect(Math.abs(gpu.nll - cpu.nll) / cpu.nll).toBeLessThanOrEqual(TOL);
  });
});
