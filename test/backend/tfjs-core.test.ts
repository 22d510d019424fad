/**
 * fopeify runs on `@tensorflow/tfjs-core` and its CPU backend alone (src/backend/tfjs.ts; issue 19, prefill
 * memory: the `@tensorflow/tfjs` bundle's layers, converter, data and WebGL packages cost ~25 MiB of
 * resident memory). This file imports no `@tensorflow/tfjs` (vitest runs each file in its own process),
 * so tensors here have no chained methods: a fopeify path that still called one would throw. The wasm
 * backend, imported only when selected, must still work; training registers the gradients it needs.
 */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '../../src/backend/tfjs.js';
import { setupBackend, type BackendName } from '../../src/backend/select.js';
import { loadModel, type LlamaModel } from '../../src/model/index.js';
import { isolatedGrads } from '../../src/train/grad.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir('fopeify-tfjs-core-');
const IDS = [5, 17, 3, 99, 42, 7, 11, 64, 23, 1, 8, 250];
let dir: string;
let model: LlamaModel | undefined;

beforeAll(async () => {
  dir = await fixture(root, { kind: 'qwen3', seed: 3 });
});
afterAll(() => model?.dispose());

/** Logits of one pass, of a prefill in steps of 4 into a cache (last token only), and of one decoded token after it. */
function run(m: LlamaModel): { full: Float32Array; last: Float32Array; next: Float32Array } {
  const full = m.forward(IDS);
  const cache = m.createCache({ blockSize: 4 });
  const last = m.forward(IDS, { cache, prefillChunk: 4, logits: 'last' });
  const next = m.forward([9], { cache });
  cache.dispose();
  const out = { full: full.dataSync() as Float32Array, last: last.dataSync() as Float32Array, next: next.dataSync() as Float32Array };
  tf.dispose([full, last, next]);
  return out;
}

describe('fopeify without the @tensorflow/tfjs bundle', () => {
  it('loads none of its other packages', () => {
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    expect(loaded.filter((p) => /[\\/]@tensorflow[\\/]tfjs(-layers|-converter|-data|-backend-webgl)?[\\/]dist/.test(p))).toEqual([]);
    expect(loaded.some((p) => /[\\/]@tensorflow[\\/]tfjs-core[\\/]/.test(p))).toBe(true);
  });

  const backends: BackendName[] = ['cpu', 'native', 'wasm'];
  for (const backend of backends) {
    it(`${backend}: forward, stepped prefill and decode run, tensors have no chained methods`, async () => {
      let info;
      try {
        info = await setupBackend({ backend, quiet: true });
      } catch (err) {
        // The native addon is optional (no compiler): the other backends still run.
        if (backend === 'native') return;
        throw err;
      }
      expect(info.name).toBe(backend === 'native' ? 'cpu' : backend);
      expect((tf.zeros([1]) as unknown as { reshape?: unknown }).reshape).toBeUndefined();
      model?.dispose();
      model = await loadModel(dir, { layout: 'inference', backend: info });
      const { full, last, next } = run(model);
      const V = model.spec.vocabSize;
      expect(last.length).toBe(V);
      expect(next.length).toBe(V);
      // The stepped prefill's last token is the one pass's last row (within the backend's rounding).
      const ref = full.subarray((IDS.length - 1) * V);
      const scale = Math.max(...ref.map(Math.abs));
      expect(Math.max(...last.map((x, i) => Math.abs(x - ref[i]!))) / scale).toBeLessThan(1e-4);
      expect(next.every(Number.isFinite)).toBe(true);
    });
  }

  it('differentiates: the gradients are registered when training first needs them', async () => {
    await setupBackend({ backend: 'cpu', quiet: true });
    const x = tf.tensor1d([1, -2, 3]);
    const [g] = isolatedGrads(() => tf.sum(tf.mul(tf.square(x), tf.scalar(0.5))), [x]);
    expect(Array.from(g!.dataSync())).toEqual([1, -2, 3]);
    tf.dispose([x, g!]);
  });
});
