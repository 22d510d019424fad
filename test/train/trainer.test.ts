/**
 * The Trainer's steps and evaluations are the fine-tuning run's: on a tiny checkpoint, Trainer.step() gives
 * the loss sequence of finetune()'s metrics.jsonl and of the loop finetune ran before the Trainer existed
 * (TrainingModel + AdamW, micro-batch gradients summed and averaged), bit for bit.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, expect, it } from 'vitest';
import { reuseStats, setReuseMinElements } from '../../src/backend/buffer-reuse.js';
import { setupBackend, type BackendInfo } from '../../src/backend/select.js';
import { loadTokenizer } from '../../src/model/index.js';
import { finetune, readMetrics } from '../../src/train/index.js';
import { TrainingModel } from '../../src/train/model.js';
import { AdamW } from '../../src/train/optimizer.js';
import { prepareModel } from '../../src/train/prepare.js';
import { resolveTrainSettings } from '../../src/train/recipe.js';
import { buildData, eosOf, NONE_RECIPE } from '../../src/train/run-common.js';
import { learningRate } from '../../src/train/schedule.js';
import { Trainer } from '../../src/train/trainer.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir();
let backend: BackendInfo;
beforeAll(async () => {
  backend = await setupBackend({ backend: 'auto', quiet: true });
});

const overrides = { seqLen: 32, steps: 5, batch: 2, gradAccum: 2, lr: 5e-3, warmupSteps: 1, schedule: 'cosine' as const, evalEvery: 2, saveEvery: 0 };

/** The loop as finetune() ran it before the Trainer: TrainingModel and AdamW driven directly. */
async function referenceLosses(model: TrainingModel, optimizer: AdamW, data: Awaited<ReturnType<typeof buildData>>, settings: ReturnType<typeof resolveTrainSettings>): Promise<number[]> {
  const losses: number[] = [];
  let pos = { epoch: 0, index: 0 };
  for (let step = 0; step < settings.steps; step++) {
    const lr = learningRate(settings, step);
    let lossSum = 0;
    let grads: Map<string, tf.Tensor> | null = null;
    for (let micro = 0; micro < settings.gradAccum; micro++) {
      const take = data.train.take(pos, settings.batch);
      pos = take.next;
      const r = await model.lossAndGrads(take.chunks);
      lossSum += r.loss;
      if (!grads) grads = r.grads;
      else {
        for (const [name, g] of r.grads) {
          const prev = grads.get(name)!;
          grads.set(name, tf.add(prev, g));
          prev.dispose();
          g.dispose();
        }
      }
    }
    for (const [name, g] of grads!) {
      grads!.set(name, tf.div(g, settings.gradAccum));
      g.dispose();
    }
    await optimizer.apply(grads!, lr, settings.maxGradNorm);
    tf.dispose([...grads!.values()]);
    losses.push(lossSum / settings.gradAccum);
  }
  return losses;
}

it('Trainer.step() and evaluate() reproduce finetune()\'s losses and the pre-Trainer loop bit for bit', async () => {
  const dir = await fixture(root, { seed: 7 });
  const text = path.join(root, 'corpus.txt');
  await fs.writeFile(text, 'the cat sees the ball and the dog finds a red box near the old tree. '.repeat(120));
  const out = path.join(root, 'run');
  await finetune({ model: dir, outDir: out, recipe: 'none', data: text, settings: overrides, backend });
  const metrics = await readMetrics(out);

  const settings = resolveTrainSettings(NONE_RECIPE, overrides);
  const tok = await loadTokenizer(dir);
  const load = async () => {
    const prepared = await prepareModel(dir, NONE_RECIPE, settings.seqLen);
    const data = await buildData(text, tok, eosOf(tok, prepared.config), settings, 4, () => undefined);
    return { prepared, data };
  };

  const a = await load();
  const trainer = Trainer.create(a.prepared, settings, a.data, { backend, passkey: { tokenizer: tok, trials: 5 } });
  const losses: number[] = [];
  const evals: number[] = [];
  for (let i = 0; i < settings.steps; i++) {
    const r = await trainer.step();
    expect(r.step).toBe(i + 1);
    expect(r.lr).toBe(learningRate(settings, i));
    losses.push(r.loss);
    if (r.step % 2 === 0 || r.step === settings.steps) evals.push((await trainer.evaluate()).loss);
  }
  expect(trainer.tokens).toBe(settings.steps * 2 * 2 * 32);
  trainer.dispose();
  for (const v of a.prepared.weights.values()) v.dispose();

  expect(losses).toEqual(metrics.map((m) => m.loss));
  expect(evals).toEqual(metrics.filter((m) => m.eval_loss !== undefined).map((m) => m.eval_loss));

  const b = await load();
  const model = new TrainingModel(b.prepared.spec, b.prepared.weights, b.prepared.fopeLayout, { kernels: backend.kernels, trainable: settings.trainable, lora: settings.lora, seed: settings.seed });
  const optimizer = new AdamW(model.params, { betas: settings.betas, eps: 1e-8, weightDecay: settings.weightDecay }, model.kernels);
  expect(await referenceLosses(model, optimizer, b.data, settings)).toEqual(losses);
  optimizer.dispose();
  model.dispose();
  for (const v of b.prepared.weights.values()) v.dispose();
});

it('reusing tensor buffers across steps changes no bit: losses and weights equal those without reuse', async () => {
  const dir = await fixture(root, { seed: 11 });
  const text = path.join(root, 'reuse-corpus.txt');
  await fs.writeFile(text, 'a small brown fox jumps over the lazy dog while the cat sleeps on a mat. '.repeat(120));
  const settings = resolveTrainSettings(NONE_RECIPE, { ...overrides, steps: 4 });
  const tok = await loadTokenizer(dir);
  const before = setReuseMinElements(1); // the fixture's tensors are tiny: reuse every buffer
  try {
    const run = async (reuse: boolean, recompute: 'auto' | 'always') => {
      const saved = process.env.FOPEIFY_BUFFER_REUSE;
      process.env.FOPEIFY_BUFFER_REUSE = reuse ? '1' : '0';
      try {
        const prepared = await prepareModel(dir, NONE_RECIPE, settings.seqLen);
        const data = await buildData(text, tok, eosOf(tok, prepared.config), settings, 4, () => undefined);
        const trainer = Trainer.create(prepared, settings, data, { backend, recompute });
        const reusedBefore = reuseStats().reused;
        const losses: number[] = [];
        for (let i = 0; i < settings.steps; i++) losses.push((await trainer.step()).loss);
        const reusedNow = reuseStats().reused - reusedBefore;
        const weights = new Map([...trainer.model.params].map(([n, v]) => [n, Buffer.from((v.dataSync() as Float32Array).slice().buffer)]));
        trainer.dispose();
        for (const v of prepared.weights.values()) v.dispose();
        return { losses, weights, reusedNow };
      } finally {
        if (saved === undefined) delete process.env.FOPEIFY_BUFFER_REUSE;
        else process.env.FOPEIFY_BUFFER_REUSE = saved;
      }
    };
    // Kept layers (the tape's activations) and recomputed ones (checkpointed layers' nested backward).
    for (const recompute of ['auto', 'always'] as const) {
      const plain = await run(false, recompute);
      const reused = await run(true, recompute);
      expect(plain.reusedNow).toBe(0);
      expect(reused.reusedNow, `buffers handed out again (${recompute})`).toBeGreaterThan(100);
      expect(reused.losses, recompute).toEqual(plain.losses);
      for (const [name, w] of plain.weights) expect(reused.weights.get(name)!.equals(w), `${name} (${recompute})`).toBe(true);
      expect(reuseStats().waiting, 'the pool is released with the trainer').toBe(0);
    }
  } finally {
    setReuseMinElements(before);
  }
});

it('a non-finite loss stops the step before the optimizer changes any weight', async () => {
  const dir = await fixture(root, { seed: 8 });
  const settings = resolveTrainSettings(NONE_RECIPE, { seqLen: 16, steps: 2 });
  const prepared = await prepareModel(dir, NONE_RECIPE, settings.seqLen);
  const chunk = Int32Array.from({ length: 17 }, (_, i) => i);
  const trainer = Trainer.create(prepared, settings, { train: { take: (pos) => ({ chunks: [chunk], next: pos }) }, heldOut: [chunk] }, { backend });
  const name = [...prepared.weights.keys()].find((k) => k.endsWith('embed_tokens.weight'))!;
  prepared.weights.get(name)!.assign(tf.fill(prepared.weights.get(name)!.shape, NaN));
  const snapshot = () => [...trainer.model.params].map(([n, v]) => [n, Array.from(v.dataSync())]);
  const before = snapshot();
  await expect(trainer.step()).rejects.toThrow(/the training loss is NaN at step 1/);
  expect(trainer.stepsDone).toBe(0);
  expect(snapshot()).toEqual(before);
  trainer.dispose();
  for (const v of prepared.weights.values()) v.dispose();
});
