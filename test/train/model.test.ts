import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { tfKernels } from '../../src/backend/kernels-tf.js';
import { setupBackend, type BackendInfo } from '../../src/backend/select.js';
import { convertModel } from '../../src/convert/convert.js';
import { forwardLogits, loadModel, type WeightMap } from '../../src/model/index.js';
import { SeededRandom } from '../../src/random.js';
import { DEFAULT_TRAIN } from '../../src/train/recipe.js';
import { TrainingModel, type TrainingModelOptions } from '../../src/train/model.js';
import { mergeLora } from '../../src/train/lora.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir();

function chunks(n: number, len: number, seed: number, vocab = 256): Int32Array[] {
  const rng = new SeededRandom(seed, 'chunks');
  return Array.from({ length: n }, () => Int32Array.from({ length: len }, () => rng.int(vocab)));
}

/** The reference: mean CE of the runtime's logits, differentiated by plain tfjs autodiff. */
function referenceLoss(weights: WeightMap, spec: TrainingModel['spec'], batch: Int32Array[]): tf.Scalar {
  const T = batch[0]!.length - 1;
  const ids = batch.map((c) => Array.from(c.subarray(0, T)));
  const targets = batch.flatMap((c) => Array.from(c.subarray(1)));
  const logits = forwardLogits(weights, spec, ids).reshape([batch.length * T, spec.vocabSize]) as tf.Tensor2D;
  const oneHot = tf.oneHot(tf.tensor1d(targets, 'int32'), spec.vocabSize, 1, 0, 'float32');
  return tf.mean(tf.sub(tf.logSumExp(logits, 1), tf.sum(tf.mul(logits, oneHot), 1))) as tf.Scalar;
}

/** Plain autodiff of f with respect to vars (trainable flags aside). */
function refGrads(f: () => tf.Scalar, vars: tf.Variable[]): { value: tf.Scalar; grads: Record<string, tf.Tensor> } {
  const { value, grads } = tf.engine().gradients(f, vars, undefined, true);
  return { value: value as tf.Scalar, grads: Object.fromEntries(vars.map((v, i) => [v.name, grads[i]!])) };
}

function maxRelDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]! / Math.max(1e-8, tf.max(tf.abs(a)).dataSync()[0]!));
}

const small: Pick<TrainingModelOptions, 'queryBlock' | 'keyBlock' | 'lossChunk'> = { queryBlock: 16, keyBlock: 8, lossChunk: 24 };

let info: BackendInfo;
beforeAll(async () => {
  // Native BLAS (and its scatter-add gather gradient for the reference) when available, plain tfjs otherwise.
  info = await setupBackend({ backend: 'auto', quiet: true });
});

describe('training forward and gradients', () => {
  for (const [kind, host] of [
    ['llama', undefined],
    ['llama', false],
    ['qwen2', undefined],
    ['qwen3', undefined],
    ['fope', undefined],
  ] as const) {
    it(`${kind}${host === false ? ' (tf-op softmax, as on GPU)' : ''}: loss and gradients equal autodiff of the runtime's forward`, async () => {
      let dir = await fixture(root, { kind: kind === 'fope' ? 'llama' : kind, seed: 3 });
      if (kind === 'fope') {
        const out = path.join(root, `fope-${Date.now()}`);
        await convertModel({ model: dir, outDir: out, initFactor: 0.3, layout: 'per-layer', numInvFreq: 6 });
        dir = out;
      }
      const m = await loadModel(dir);
      const tm = new TrainingModel(m.spec, m.weights, m.fopeLayout, { kernels: host === false ? tfKernels : info.kernels, trainable: 'all', lora: DEFAULT_TRAIN.lora, seed: 0, ...small });
      const batch = chunks(2, 41, 1);
      const { loss, grads } = await tm.lossAndGrads(batch);
      const vars = [...tm.params.values()];
      const ref = refGrads(() => referenceLoss(m.weights, m.spec, batch), vars);
      expect(loss).toBeCloseTo(ref.value.dataSync()[0]!, 4);
      expect(await tm.loss(batch)).toBeCloseTo(loss, 5);
      for (const [name, v] of tm.params) {
        expect(maxRelDiff(ref.grads[v.name]!, grads.get(name)!), name).toBeLessThan(2e-3);
      }
      // FoPE coefficients are never trained.
      expect([...tm.params.keys()].some((n) => n.includes('rotary_emb'))).toBe(false);
      tf.dispose([ref.value, ...Object.values(ref.grads), ...grads.values()]);
      tm.dispose();
      m.dispose();
    });
  }

  it("a tied embedding's gradient added in place equals the tape's two dense gradients bit for bit", async () => {
    const dir = await fixture(root, { kind: 'qwen2', seed: 5 });
    const m = await loadModel(dir);
    expect(m.weights.has('lm_head.weight')).toBe(false);
    const E = 'model.embed_tokens.weight';
    // Repeated tokens: rows whose lookup gradient is a sum of several rows.
    const batch = chunks(2, 41, 2, 12);
    const run = async (inPlace: boolean) => {
      const before = tf.memory().numTensors;
      const tm = new TrainingModel(m.spec, m.weights, m.fopeLayout, { kernels: info.kernels, trainable: 'all', lora: DEFAULT_TRAIN.lora, seed: 0, ...small, tiedEmbeddingInPlace: inPlace });
      const { loss, grads } = await tm.lossAndGrads(batch);
      const out = { loss, grads: new Map([...grads].map(([k, g]) => [k, g.dataSync().slice()])), names: [...grads.keys()] };
      tf.dispose([...grads.values()]);
      tm.dispose();
      expect(tf.memory().numTensors, 'tensors left by the step').toBe(before);
      return out;
    };
    const tape = await run(false);
    const inPlace = await run(true);
    expect(inPlace.loss).toBe(tape.loss);
    expect(inPlace.names).toEqual(tape.names); // the global norm sums in this order
    for (const [name, g] of tape.grads) expect(Buffer.from(inPlace.grads.get(name)!.buffer).equals(Buffer.from(g.buffer)), name).toBe(true);
    expect(inPlace.grads.get(E)!.some((v) => v !== 0)).toBe(true);
    m.dispose();
  });

  it('LoRA: loss and gradients equal the merged weights through the runtime; merged logits match', async () => {
    const dir = await fixture(root, { kind: 'llama', seed: 4 });
    const m = await loadModel(dir);
    const lora = { ...DEFAULT_TRAIN.lora, rank: 4, alpha: 8 };
    const tm = new TrainingModel(m.spec, m.weights, m.fopeLayout, { kernels: info.kernels, trainable: 'lora', lora, seed: 1, ...small });
    // Move B away from zero so the LoRA term matters.
    for (const [name, v] of tm.params) if (name.includes('lora_B')) v.assign(tf.randomNormal(v.shape, 0, 0.05, 'float32', 7));
    expect([...tm.params.keys()].filter((n) => n.includes('lora_A')).length).toBe(8);
    expect(tm.params.has('model.embed_tokens.weight')).toBe(true);
    expect(tm.params.has('model.layers.0.input_layernorm.weight')).toBe(true);
    expect(tm.params.has('model.layers.0.self_attn.q_proj.weight')).toBe(false);
    const batch = chunks(1, 33, 2);
    const { loss, grads } = await tm.lossAndGrads(batch);
    const vars = [...tm.params.values()];
    const ref = refGrads(() => {
      const w = new Map<string, tf.Tensor>(m.weights);
      for (const [base, n] of tm.lora) w.set(base, mergeLora(m.weights.get(base)!, tm.params.get(n.a)!, tm.params.get(n.b)!, tm.loraScale));
      return referenceLoss(w, m.spec, batch);
    }, vars);
    expect(loss).toBeCloseTo(ref.value.dataSync()[0]!, 4);
    for (const [name, v] of tm.params) expect(maxRelDiff(ref.grads[v.name]!, grads.get(name)!), name).toBeLessThan(2e-3);
    tf.dispose([ref.value, ...Object.values(ref.grads), ...grads.values()]);
    tm.dispose();
    m.dispose();
  });

  it('padding tokens (−1) are ignored by the loss, on both softmax paths', async () => {
    const dir = await fixture(root, { kind: 'llama', seed: 8 });
    const m = await loadModel(dir);
    const full = chunks(1, 33, 9)[0]!;
    const padded = full.slice();
    padded.fill(-1, 21);
    for (const host of [true, false]) {
      const tm = new TrainingModel(m.spec, m.weights, m.fopeLayout, { kernels: host === false ? tfKernels : info.kernels, trainable: 'all', lora: DEFAULT_TRAIN.lora, seed: 0, ...small });
      const { loss, grads } = await tm.lossAndGrads([padded]);
      const vars = [...tm.params.values()];
      // Reference: the first 20 targets only (positions 0..19 predict tokens 1..20).
      const ref = refGrads(() => referenceLoss(m.weights, m.spec, [full.slice(0, 21)]), vars);
      expect(loss).toBeCloseTo(ref.value.dataSync()[0]!, 4);
      for (const [name, v] of tm.params) expect(maxRelDiff(ref.grads[v.name]!, grads.get(name)!), name).toBeLessThan(2e-3);
      tf.dispose([ref.value, ...Object.values(ref.grads), ...grads.values()]);
      tm.dispose();
    }
    m.dispose();
  });

  it('a training step keeps no tensor behind', async () => {
    const dir = await fixture(root, { kind: 'llama', seed: 5 });
    const m = await loadModel(dir);
    const tm = new TrainingModel(m.spec, m.weights, m.fopeLayout, { kernels: info.kernels, trainable: 'all', lora: DEFAULT_TRAIN.lora, seed: 0, ...small });
    const batch = chunks(1, 33, 3);
    tf.dispose([...(await tm.lossAndGrads(batch)).grads.values()]); // builds the rotary tables once
    const before = tf.memory().numTensors;
    const { grads } = await tm.lossAndGrads(batch);
    expect(tf.memory().numTensors - before).toBe(grads.size);
    tf.dispose([...grads.values()]);
    tm.dispose();
    m.dispose();
  });
});
