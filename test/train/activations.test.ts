/**
 * The activation policy (activations.ts, TrainingModel.forwardLoss): keeping a layer's activations
 * instead of recomputing them changes no bit of the loss, the gradients or the updated weights (the
 * same kernels run on the same inputs in the same order; only when they run differs), leaks nothing per
 * step, and the budget decides how many layers keep theirs.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Kernels } from '../../src/backend/kernels.js';
import { setupBackend, type BackendInfo } from '../../src/backend/select.js';
import { convertModel } from '../../src/convert/convert.js';
import { FopeifyError } from '../../src/errors.js';
import { loadModel } from '../../src/model/index.js';
import { SeededRandom } from '../../src/random.js';
import { checkActivationBudget, checkRecompute, defaultActivationBudget, describeActivations, keepsLayer, keptLayerBytes, planActivations, type RecomputePolicy } from '../../src/train/activations.js';
import { DEFAULT_TRAIN, resolveTrainSettings, type TrainSettings } from '../../src/train/recipe.js';
import { NONE_RECIPE } from '../../src/train/run-common.js';
import { planRun } from '../../src/train/run-plan.js';
import { enableTiming, takeTimings } from '../../src/train/timing.js';
import { Trainer, type BatchSource } from '../../src/train/trainer.js';
import { SMOLLM2_135M_SHAPE } from '../../src/testing/tiny-checkpoint.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir();
const GIB = 2 ** 30;
let info: BackendInfo;
beforeAll(async () => {
  info = await setupBackend({ backend: 'auto', quiet: true });
});

/** Fixed random chunks, the same for every trainer. */
function source(len: number): BatchSource {
  return {
    take(pos, count) {
      const rng = new SeededRandom(1000 * pos.epoch + pos.index, 'activations-test');
      const chunks = Array.from({ length: count }, () => Int32Array.from({ length: len }, () => rng.int(256)));
      return { chunks, next: { epoch: pos.epoch, index: pos.index + count } };
    },
  };
}

interface Run {
  loss: number;
  grads: Map<string, Float32Array>;
  losses: number[];
  params: Map<string, Float32Array>;
  kept: number;
  timings: Record<string, { calls: number }>;
  /** Attention results stored for a recomputation, seen by each attention backward. */
  stored: number[];
}

/** Gradients of one batch, then three optimizer steps, on a fresh copy of the model, under one policy. */
async function train(dir: string, recompute: RecomputePolicy, activationBudgetBytes?: number): Promise<Run> {
  const m = await loadModel(dir);
  const settings: TrainSettings = resolveTrainSettings(NONE_RECIPE, { seqLen: 40, batch: 2, lr: 1e-2, warmupSteps: 0, steps: 3 });
  const stored: number[] = [];
  let attentionMap: Map<number, unknown> | null = null;
  // Sees, at each attention backward, how many forward results wait for a recomputation.
  // (Either attention backward: the head-major one, or the token-major one the native kernels run.)
  const tm = info.kernels.tokenMajor;
  const kernels: Kernels = {
    ...info.kernels,
    attentionBackward: (...args) => {
      stored.push(attentionMap!.size);
      return info.kernels.attentionBackward(...args);
    },
    tokenMajor: tm && {
      ...tm,
      attentionBackward: (...args) => {
        stored.push(attentionMap!.size);
        return tm.attentionBackward(...args);
      },
    },
  };
  const trainer = Trainer.create(m, settings, { train: source(41), heldOut: [] }, { backend: { ...info, kernels }, recompute, activationBudgetBytes, queryBlock: 16, keyBlock: 8 });
  attentionMap = (trainer.model as unknown as { attention: Map<number, unknown> }).attention;
  try {
    enableTiming();
    takeTimings();
    const g = await trainer.model.lossAndGrads(source(41).take({ epoch: 9, index: 0 }, 2).chunks);
    const timings = takeTimings();
    enableTiming(false);
    const storedByGrads = stored.slice();
    const grads = new Map([...g.grads].map(([n, t]) => [n, t.dataSync() as Float32Array]));
    tf.dispose([...g.grads.values()]);
    const losses: number[] = [];
    await trainer.step();
    const tensors = tf.memory().numTensors;
    for (let s = 1; s < settings.steps; s++) {
      losses.push((await trainer.step()).loss);
      // Nothing a step creates outlives it (a stored attention result nobody consumes would).
      expect(tf.memory().numTensors).toBe(tensors);
    }
    const params = new Map([...trainer.model.params].map(([n, v]) => [n, v.dataSync().slice() as Float32Array]));
    return { loss: g.loss, grads, losses, params, kept: trainer.activationPlan.kept, timings, stored: storedByGrads };
  } finally {
    enableTiming(false);
    trainer.dispose();
    m.dispose();
  }
}

function expectSameBits(a: Map<string, Float32Array>, b: Map<string, Float32Array>, what: string): void {
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [name, x] of a) expect(Buffer.from(b.get(name)!.buffer).equals(Buffer.from(x.buffer)), `${what} ${name}`).toBe(true);
}

describe('kept and recomputed layers give the same bits', () => {
  for (const kind of ['rope', 'fope'] as const) {
    it(`${kind}: never, always and a partial auto budget: loss, every gradient and every updated weight`, async () => {
      let dir = await fixture(root, { kind: 'llama', seed: 5, shape: { numLayers: 3 } });
      if (kind === 'fope') {
        const out = path.join(root, `fope-${kind}`);
        await convertModel({ model: dir, outDir: out, initFactor: 0.3, layout: 'per-layer', numInvFreq: 6 });
        dir = out;
      }
      const always = await train(dir, 'always');
      const never = await train(dir, 'never');
      const m = await loadModel(dir);
      const layerBytes = keptLayerBytes(m.spec, 2 * 40, { biases: false, loraElements: 0 });
      m.dispose();
      const partial = await train(dir, 'auto', Math.floor(1.5 * layerBytes));
      expect([always.kept, never.kept, partial.kept]).toEqual([0, 3, 1]);
      // Each layer ran as the plan says; a recomputation reuses the forward attention (one attention forward per layer).
      const calls = (r: Run, label: string) => r.timings[label]?.calls ?? 0;
      expect([calls(always, 'layer forward'), calls(always, 'layer recompute'), calls(always, 'layer kept')]).toEqual([3, 3, 0]);
      expect([calls(never, 'layer forward'), calls(never, 'layer recompute'), calls(never, 'layer kept')]).toEqual([0, 0, 3]);
      expect([calls(partial, 'layer forward'), calls(partial, 'layer recompute'), calls(partial, 'layer kept')]).toEqual([2, 2, 1]);
      for (const r of [always, never, partial]) expect(calls(r, 'attention forward')).toBe(3);
      // A kept layer stores no attention result for a recomputation: none wait when only kept layers are differentiated.
      expect(never.stored).toEqual([0, 0, 0]);
      // Backward runs from the last layer: the kept layer 2 first (the two checkpointed layers' results wait), then 1 and 0.
      expect(partial.stored).toEqual([2, 1, 0]);
      for (const r of [never, partial]) {
        expect(r.loss).toBe(always.loss);
        expectSameBits(always.grads, r.grads, 'gradient');
        expect(r.losses).toEqual(always.losses);
        expectSameBits(always.params, r.params, 'updated');
      }
    });
  }
});

describe('the activation plan', () => {
  const smol = { ...SMOLLM2_135M_SHAPE, numKvHeads: 3, headDim: 64, numHeads: 9, qkNorm: false };

  it('estimates a SmolLM2-135M layer from its tensors', () => {
    // 5H + 5Q + 5K + 4I + nH + 2 saved, 9H + 5Q + 5K + 3I gradients, float32.
    const perToken = 5 * 576 + 5 * 576 + 5 * 192 + 4 * 1536 + 9 + 2 + 9 * 576 + 5 * 576 + 5 * 192 + 3 * 1536;
    expect(keptLayerBytes(smol, 512, { biases: false, loraElements: 0 })).toBe(4 * 512 * perToken);
    expect(keptLayerBytes(smol, 512, { biases: true, loraElements: 10 })).toBe(4 * 512 * (perToken + 576 + 2 * 192) + 4 * 5 * 10);
    expect(keptLayerBytes({ ...smol, qkNorm: true }, 1, { biases: false, loraElements: 0 })).toBe(4 * (perToken + 2 * (576 + 192) + 9 + 3));
  });

  it('keeps as many layers as fit the budget, the last ones', () => {
    const p = planActivations('auto', 30, 2048, 100, 1050);
    expect(p).toMatchObject({ kept: 10, recomputed: 20, keptBytes: 1000, budgetBytes: 1050 });
    expect(keepsLayer(p, 19)).toBe(false);
    expect(keepsLayer(p, 20)).toBe(true);
    expect(planActivations('auto', 30, 2048, 100, 1e9).kept).toBe(30);
    expect(planActivations('auto', 30, 2048, 100, 99).kept).toBe(0);
    expect(planActivations('always', 30, 2048, 100, 1e9).kept).toBe(0);
    expect(planActivations('never', 30, 2048, 100, 0).kept).toBe(30);
    expect(describeActivations(p)).toBe('activations: 10 of 30 layers kept (0.00 GiB est. at 2048 tokens), 20 recomputed (--recompute auto, budget 0.00 GiB)');
  });

  it('defaults to a quarter of the memory, at most 8 GiB', () => {
    expect(defaultActivationBudget(16 * GIB)).toBe(4 * GIB);
    expect(defaultActivationBudget(64 * GIB)).toBe(8 * GIB);
  });

  it('refuses bad options with a typed error naming the option', () => {
    expect(checkRecompute(undefined)).toBe('auto');
    expect(checkActivationBudget(undefined)).toBe(undefined);
    expect(checkActivationBudget(2.5)).toBe(2);
    for (const bad of [() => checkRecompute('sometimes'), () => checkActivationBudget(-1), () => checkActivationBudget(Number.NaN)]) {
      expect(bad).toThrow(FopeifyError);
    }
    try {
      checkRecompute('sometimes');
    } catch (err) {
      expect(err).toMatchObject({ code: 'BAD_ARGUMENT', options: ['recompute'] });
    }
    const spec = { ...smol } as never;
    const inputs = { resume: null, recipe: NONE_RECIPE, modelDir: root, spec };
    expect(() => planRun({ model: 'm', outDir: path.join(root, 'o'), recompute: 'x' as never }, inputs)).toThrow(/`recompute` must be auto, always, never/);
    expect(planRun({ model: 'm', outDir: path.join(root, 'o'), recompute: 'never', activationBudgetBytes: 5 }, inputs).activations).toEqual({ recompute: 'never', activationBudgetBytes: 5 });
    expect(DEFAULT_TRAIN).not.toHaveProperty('recompute');
  });
});
