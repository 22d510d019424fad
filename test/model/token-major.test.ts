/**
 * The decoder layer on the native kernels' token-major rotary and attention (no head-major copies of
 * q, k, v, the output or their gradients) against the same kernels without them (the head-major
 * path, transposes included): the same logits, loss and gradients, bit for bit — GQA (4 query heads
 * on 2 KV heads), q/k norm (qwen3), FoPE's per-layer tables, a sliding window, a batch of two, a
 * prefill into a KV cache after cached tokens with the decoding step after it.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Kernels } from '../../src/backend/kernels.js';
import { nativeKernels } from '../../src/backend/kernels-native.js';
import { loadNative } from '../../src/backend/native.js';
import { setupBackend } from '../../src/backend/select.js';
import { convertModel } from '../../src/convert/convert.js';
import type { ModelSpec } from '../../src/config/model-spec.js';
import { forwardLogits, loadModel, type LlamaModel } from '../../src/model/index.js';
import { KvCache } from '../../src/model/cache.js';
import { DEFAULT_TRAIN } from '../../src/train/recipe.js';
import { TrainingModel } from '../../src/train/model.js';
import { expectIdentical, nativeUsable } from '../backend/helpers.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir('fopeify-token-major-');
const IDS = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110, 32, 102, 111, 120, 7, 19, 200];

describe.skipIf(!nativeUsable)('token-major attention in the decoder layer: the head-major bits', () => {
  let native: Kernels;
  let headMajor: Kernels;
  const models = new Map<string, LlamaModel>();
  beforeAll(async () => {
    await setupBackend({ backend: 'cpu', quiet: true });
    const r = loadNative();
    if (!r.ok) throw new Error(r.reason);
    native = nativeKernels(r.blas.addon);
    expect(native.tokenMajor).toBeDefined();
    headMajor = { ...native, tokenMajor: undefined };
    const llama = await fixture(root, { kind: 'llama', seed: 11 });
    const fopeDir = path.join(root, 'fope');
    await convertModel({ model: llama, outDir: fopeDir, initFactor: 0.4, layout: 'per-layer', numInvFreq: 6 });
    models.set('llama', await loadModel(llama));
    models.set('qwen3', await loadModel(await fixture(root, { kind: 'qwen3', seed: 12 })));
    models.set('fope', await loadModel(fopeDir));
  });

  const cases = [
    ['llama', null],
    ['llama', 7],
    ['qwen3', null],
    ['fope', 5],
  ] as const;
  for (const [kind, window] of cases) {
    it(`${kind}, window ${window}: prefill logits (batch of two; into a cache after cached tokens, then a decoded token)`, () => {
      const m = models.get(kind)!;
      const spec: ModelSpec = { ...m.spec, slidingWindow: window };
      const run = (kernels: Kernels) => {
        const batch = forwardLogits(m.weights, spec, [IDS, [...IDS].reverse()], { kernels, keyBlock: 8, queryBlock: 16 });
        const cache = new KvCache(spec.numLayers, { blockSize: 6 });
        forwardLogits(m.weights, spec, IDS.slice(0, 9), { kernels, cache }).dispose();
        const cached = forwardLogits(m.weights, spec, IDS.slice(9), { kernels, cache, prefillChunk: 0 });
        const next = forwardLogits(m.weights, spec, [42], { kernels, cache });
        cache.dispose();
        return [batch, cached, next];
      };
      const want = run(headMajor);
      const got = run(native);
      got.forEach((t, i) => expectIdentical(t, want[i]!));
      tf.dispose([...want, ...got]);
    });

    it(`${kind}, window ${window}: training loss and gradients`, async () => {
      const m = models.get(kind)!;
      const spec: ModelSpec = { ...m.spec, slidingWindow: window };
      const batch = [0, 1].map((s) => Int32Array.from({ length: 37 }, (_, i) => (i * 31 + s * 17 + 5) % 256));
      const run = async (kernels: Kernels) => {
        const tm = new TrainingModel(spec, m.weights, m.fopeLayout, { kernels, trainable: 'all', lora: DEFAULT_TRAIN.lora, seed: 0, queryBlock: 16, keyBlock: 8, lossChunk: 24 });
        const r = await tm.lossAndGrads(batch);
        tm.dispose();
        return r;
      };
      const want = await run(headMajor);
      const got = await run(native);
      expect(got.loss).toBe(want.loss);
      expect([...got.grads.keys()].sort()).toEqual([...want.grads.keys()].sort());
      // q/k norm weights: their gradient sums rows in another order (token-major rows), so only close.
      for (const [name, g] of got.grads) {
        if (/[qk]_norm/.test(name)) expect(tf.max(tf.abs(tf.sub(g, want.grads.get(name)!))).dataSync()[0]!, name).toBeLessThan(1e-5);
        else expectIdentical(g, want.grads.get(name)!);
      }
      tf.dispose([...want.grads.values(), ...got.grads.values()]);
    });
  }
});
