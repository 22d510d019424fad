/**
 * The fused one-token decoding step (src/model/decode-step.ts) on the native kernels: on every tiny
 * family, RoPE and FoPE (shared and per-layer coefficients, YaRN), a sliding window, HF and inference
 * weight layouts, generation through it gives the tokens of the tensor decoding path and of uncached
 * argmax decoding, token for token (greedy and sampled), its logits equal the tensor path's within
 * 1e-5 (the matrix-vector products sum in another order than the batched GEMM: not bit for bit), it is
 * the path generate takes, and it allocates no tensor per token.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertModel } from '../../src/convert/convert.js';
import { setupBackend, type BackendInfo } from '../../src/backend/select.js';
import type { DecodeKernels, Kernels } from '../../src/backend/kernels.js';
import { argmax, loadModel, TokenDecoder, type LlamaModel } from '../../src/model/index.js';
import { TINY_KINDS } from '../../src/testing/tiny-checkpoint.js';
import { fixture, tempDir } from '../helpers.js';
import { nativeUsable } from '../backend/helpers.js';
import { rows, useCpu } from './helpers.js';
import { relMaxError } from './reference.js';

const root = tempDir('fopeify-decode-step-');
const PROMPT = [256, 84, 104, 101, 32, 113, 117];
const NEW = 12;

interface Case {
  name: string;
  model: LlamaModel;
}

/** The kernels without their decoding step: generate's tensor path (today's decoding). */
const tensorPath = (k: Kernels): Kernels => ({ ...k, decode: undefined });

/** The kernels with each decode piece counted. */
function counted(k: Kernels): { kernels: Kernels; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const d = k.decode!;
  const wrap = <K extends keyof DecodeKernels>(name: K): DecodeKernels[K] =>
    ((...args: unknown[]) => {
      calls.set(name, (calls.get(name) ?? 0) + 1);
      return (d[name] as (...a: unknown[]) => unknown)(...args);
    }) as DecodeKernels[K];
  const decode: DecodeKernels = { data: d.data, linear: wrap('linear'), rmsNorm: wrap('rmsNorm'), swiGlu: wrap('swiGlu'), rotary: wrap('rotary'), attention: wrap('attention') };
  return { kernels: { ...k, decode }, calls };
}

/** Uncached argmax decoding: the whole sequence through the forward pass for every new token. */
function uncachedGreedy(model: LlamaModel, prompt: readonly number[], n: number): number[] {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) {
    const r = rows(model.forward(seq, { logits: 'last' }));
    seq.push(argmax(r[0]!));
  }
  return seq.slice(prompt.length);
}

describe.skipIf(!nativeUsable)('fused one-token decoding step (native kernels)', () => {
  let native: BackendInfo;
  const cases: Case[] = [];

  beforeAll(async () => {
    native = await setupBackend({ backend: 'native', quiet: true });
    const load = async (name: string, dir: string, layout: 'hf' | 'inference' = 'hf') => cases.push({ name, model: await loadModel(dir, { backend: native, layout }) });
    for (const [i, kind] of TINY_KINDS.entries()) {
      const dir = await fixture(root, { kind, seed: 30 + i });
      await load(`${kind} RoPE`, dir, i % 2 ? 'inference' : 'hf');
      if (kind === 'llama' || kind === 'qwen3' || kind === 'mistral') {
        const perLayer = path.join(root, `${kind}-fope-layer`);
        await convertModel({ model: dir, outDir: perLayer, initFactor: 0.4, layout: 'per-layer', yarn: 2 });
        await load(`${kind} FoPE per-layer + YaRN`, perLayer);
        const shared = path.join(root, `${kind}-fope-shared`);
        await convertModel({ model: dir, outDir: shared, initFactor: 0.4, layout: 'shared' });
        await load(`${kind} FoPE shared (inference layout)`, shared, 'inference');
      }
    }
    // A sliding window shorter than prompt + new tokens, across cache blocks.
    const sliding = await fixture(root, { kind: 'mistral', seed: 41 });
    const cfgPath = path.join(sliding, 'config.json');
    const cfg = JSON.parse(await fs.readFile(cfgPath, 'utf8')) as Record<string, unknown>;
    cfg.sliding_window = 5;
    await fs.writeFile(cfgPath, JSON.stringify(cfg));
    await load('mistral sliding window 5', sliding);
  }, 120_000);

  afterAll(async () => {
    for (const c of cases) c.model.dispose();
    await useCpu();
  });

  it('covers every tiny family', () => {
    expect(native.kernels.decode).toBeDefined();
    for (const kind of TINY_KINDS) expect(cases.some((c) => c.name.startsWith(`${kind} `))).toBe(true);
    expect(cases.find((c) => c.name.includes('sliding'))!.model.spec.slidingWindow).toBe(5);
  });

  it('greedy decoding equals the tensor path and uncached argmax decoding, token for token', async () => {
    for (const { name, model } of cases) {
      const { kernels, calls } = counted(native.kernels);
      const opts = { maxNewTokens: NEW, eosTokenId: null, cacheBlockSize: 4 };
      const fused = await model.generate(PROMPT, { ...opts, kernels });
      const tensor = await model.generate(PROMPT, { ...opts, kernels: tensorPath(native.kernels) });
      const uncached = uncachedGreedy(model, PROMPT, NEW);
      expect(fused.tokens, name).toEqual(tensor.tokens);
      expect(fused.tokens, name).toEqual(uncached);
      // The fused path decoded every token after the prefill's: 7 projections per layer + the LM head.
      expect(calls.get('linear'), name).toBe((NEW - 1) * (7 * model.spec.numLayers + 1));
      expect(calls.get('attention'), name).toBe((NEW - 1) * model.spec.numLayers);
    }
  });

  it('sampled decoding equals the tensor path token for token', async () => {
    for (const { name, model } of cases) {
      const opts = { maxNewTokens: NEW, eosTokenId: null, temperature: 1.3, topK: 40, topP: 0.95, seed: 5 };
      const fused = await model.generate(PROMPT, { ...opts, kernels: native.kernels });
      const tensor = await model.generate(PROMPT, { ...opts, kernels: tensorPath(native.kernels) });
      expect(fused.tokens, name).toEqual(tensor.tokens);
    }
  });

  it('logits equal the tensor forward with a KV cache within 1e-5 at every step (the cache grown in place)', () => {
    for (const { name, model } of cases) {
      const cache = model.createCache({ blockSize: 3 });
      // From an empty cache of room for 2 tokens: every step after the second grows it.
      const dec = new TokenDecoder(model.weights, model.spec, native.kernels.decode!, { capacity: 2, keyBlock: 3 });
      const seq = [...PROMPT, 1, 2, 3, 4, 5, 6];
      for (const [i, token] of seq.entries()) {
        const want = rows(model.forward([token], { cache, kernels: tensorPath(native.kernels), logits: 'last' }));
        const got = dec.step(token);
        expect(relMaxError([got], want), `${name} step ${i}`).toBeLessThan(1e-5);
      }
      expect(dec.length).toBe(seq.length);
      expect(dec.steps).toBe(seq.length);
      cache.dispose();
    }
  });

  it('allocates no tensor per token', async () => {
    const { model } = cases.find((c) => c.name.includes('per-layer'))!;
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    const { kernels, calls } = counted(native.kernels);
    await model.generate(PROMPT, { maxNewTokens: NEW, eosTokenId: null, kernels, onToken: () => void counts.push(tf.memory().numTensors) });
    expect(calls.get('attention')).toBeGreaterThan(0);
    expect(counts).toHaveLength(NEW);
    expect(new Set(counts).size).toBe(1);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a token outside the vocabulary', () => {
    const { model } = cases[0]!;
    const dec = new TokenDecoder(model.weights, model.spec, native.kernels.decode!);
    expect(() => dec.step(model.spec.vocabSize)).toThrow(/outside the vocabulary/);
  });
});
