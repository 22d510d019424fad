/**
 * Fine-tuning on the webgpu backend (a software GPU here: Mesa llvmpipe through Dawn's OpenGL ES), with
 * asynchronous reads only: a tiny FoPE model fine-tuned for 5 steps on webgpu equals the cpu backend's
 * run within 1e-4 (every step's loss and grad norm, the held-out loss, every final weight); a run
 * stopped after 3 steps and resumed to 5 equals the straight 5-step run on webgpu bit for bit; a
 * training step and a decoded token leave no tensor behind; the peak GPU memory is reported. Skipped
 * (with the reason) without an adapter, failed under FOPEIFY_EXPECT_WEBGPU=1. Kept small: the software
 * GPU computes about 1 GFLOP/s.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupBackend, type BackendInfo } from '../../src/backend/select.js';
import type { WebGpuProbe } from '../../src/backend/webgpu.js';
import { convertModel } from '../../src/convert/convert.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { loadModel } from '../../src/model/index.js';
import { finetune, readMetrics, type FinetuneOptions } from '../../src/train/index.js';
import { prepareModel } from '../../src/train/prepare.js';
import { resolveTrainSettings } from '../../src/train/recipe.js';
import { NONE_RECIPE } from '../../src/train/run-common.js';
import { Trainer } from '../../src/train/trainer.js';
import { assertWebGpuWhenExpected, relErr, webgpuProbe } from '../backend/webgpu-helpers.js';
import { fixture, tempDir } from '../helpers.js';

const TOL = 1e-4;
const root = tempDir('fopeify-webgpu-train-');
let probe: WebGpuProbe;
let model: string;
let dataFile: string;

// A small learning rate: AdamW steps each element by up to lr whatever its gradient's size, so an element
// whose gradient is ~0 (and rounds differently on the two backends) can differ by a few lr.
const settings = { seqLen: 24, steps: 5, batch: 2, lr: 5e-4, warmupSteps: 1, schedule: 'cosine' as const, evalEvery: 5, saveEvery: 0 };

function runOptions(backend: BackendInfo, outDir: string, over: Partial<FinetuneOptions> = {}): FinetuneOptions {
  return { model, outDir, data: dataFile, recipe: 'none', dtype: 'f32', backend, ...over, settings: { ...settings, ...over.settings } };
}

async function weightsOf(dir: string): Promise<Map<string, Float32Array>> {
  const st = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  try {
    const out = new Map<string, Float32Array>();
    for (const name of st.tensors.keys()) out.set(name, await st.readFloat32(name));
    return out;
  } finally {
    await st.close();
  }
}

describe('fine-tuning on webgpu', () => {
  beforeAll(async () => {
    probe = await webgpuProbe();
    const src = await fixture(root, { kind: 'llama', seed: 21 });
    model = path.join(root, 'fope');
    await convertModel({ model: src, outDir: model, seed: 1, initFactor: 0.5 });
    dataFile = path.join(root, 'text.txt');
    await fs.writeFile(dataFile, 'the cat sees the ball and the dog finds a red box near the old tree. '.repeat(12));
  });
  afterAll(async () => {
    await setupBackend({ backend: 'cpu', quiet: true });
  });

  it('5 steps on webgpu equal cpu within 1e-4 (losses, grad norms, held-out loss, final weights); peak GPU memory reported', async (ctx) => {
    assertWebGpuWhenExpected(probe);
    if (!probe.ok) return ctx.skip();
    const gpuInfo = await setupBackend({ backend: 'webgpu', allowSoftwareAdapter: true, quiet: true });
    const gpu = await finetune(runOptions(gpuInfo, path.join(root, 'gpu')));
    const cpuInfo = await setupBackend({ backend: 'cpu', quiet: true });
    const cpu = await finetune(runOptions(cpuInfo, path.join(root, 'cpu')));
    expect(gpu.completed && cpu.completed).toBe(true);
    const [mg, mc] = [await readMetrics(gpu.outDir), await readMetrics(cpu.outDir)];
    expect(mg).toHaveLength(5);
    expect(relErr(mg.map((r) => r.loss), mc.map((r) => r.loss))).toBeLessThanOrEqual(TOL);
    expect(relErr(mg.map((r) => r.grad_norm), mc.map((r) => r.grad_norm))).toBeLessThanOrEqual(TOL);
    expect(mg[4]!.eval_loss).toBeDefined();
    expect(Math.abs(mg[4]!.eval_loss! - mc[4]!.eval_loss!) / mc[4]!.eval_loss!).toBeLessThanOrEqual(TOL);
    // The weights moved, and moved alike.
    const [wg, wc] = [await weightsOf(gpu.outDir), await weightsOf(cpu.outDir)];
    const start = await loadModel(model);
    let moved = 0;
    for (const [name, c] of wc) {
      expect(relErr(wg.get(name)!, c), name).toBeLessThanOrEqual(TOL);
      if (relErr(c, await start.weights.get(name)!.data()) > 1e-3) moved++;
    }
    start.dispose();
    expect(moved).toBeGreaterThan(wc.size / 2);
    // Peak GPU memory: in every metrics record and the result on webgpu, absent on cpu.
    expect(mg.every((r) => (r.peak_gpu_bytes ?? 0) > 0)).toBe(true);
    expect(gpu.peakGpuBytes).toBe(mg[4]!.peak_gpu_bytes);
    expect(mc[0]!.peak_gpu_bytes).toBeUndefined();
    expect(cpu.peakGpuBytes).toBeUndefined();
  });

  it('stopped after 3 steps and resumed to 5 equals the straight 5 steps on webgpu, bit for bit', async (ctx) => {
    if (!probe.ok) return ctx.skip();
    const info = await setupBackend({ backend: 'webgpu', allowSoftwareAdapter: true, quiet: true });
    const straight = await finetune(runOptions(info, path.join(root, 'straight'), { settings: { saveEvery: 3 } }));
    const outDir = path.join(root, 'resumed');
    const first = await finetune(runOptions(info, outDir, { stopAfter: 3, settings: { saveEvery: 3 } }));
    expect(first.completed).toBe(false);
    expect(first.step).toBe(3);
    const second = await finetune(runOptions(info, outDir, { resume: true, settings: { saveEvery: 3 } }));
    expect(second.completed).toBe(true);
    expect(second.resumedFrom).toBe(3);
    const strip = (rs: Awaited<ReturnType<typeof readMetrics>>) => rs.map((r) => [r.step, r.loss, r.grad_norm, r.eval_loss ?? null]);
    expect(strip(await readMetrics(outDir))).toEqual(strip(await readMetrics(straight.outDir)));
    const [a, b] = [await weightsOf(outDir), await weightsOf(straight.outDir)];
    for (const [name, t] of b) expect(Buffer.from(a.get(name)!.buffer).equals(Buffer.from(t.buffer)), name).toBe(true);
  });

  it('no tensor is left behind per training step or per decoded token', async (ctx) => {
    if (!probe.ok) return ctx.skip();
    const info = await setupBackend({ backend: 'webgpu', allowSoftwareAdapter: true, quiet: true });
    const s = resolveTrainSettings(NONE_RECIPE, settings);
    const prepared = await prepareModel(model, NONE_RECIPE, s.seqLen);
    const chunk = Int32Array.from({ length: s.seqLen + 1 }, (_, i) => (i * 37) % 250);
    const trainer = Trainer.create(prepared, s, { train: { take: (pos, n) => ({ chunks: Array.from({ length: n }, () => chunk), next: pos }) }, heldOut: [chunk] }, { backend: info });
    try {
      await trainer.step(); // builds the rotary tables and the optimizer's first state
      const counts: number[] = [];
      for (let i = 0; i < 3; i++) {
        await trainer.step();
        await trainer.evaluate();
        counts.push(tf.memory().numTensors);
      }
      expect(counts).toEqual([counts[0], counts[0], counts[0]]);
    } finally {
      trainer.dispose();
      for (const v of prepared.weights.values()) v.dispose();
    }

    const m = await loadModel(model);
    try {
      const perToken: number[] = [];
      const before = tf.memory().numTensors;
      const g = await m.generate([256, 72, 101, 108], { maxNewTokens: 5, onToken: () => void perToken.push(tf.memory().numTensors) });
      expect(g.tokens).toHaveLength(5);
      expect(perToken).toHaveLength(5);
      // From the second token on, the cache only grows inside its blocks: the count stays put.
      expect(new Set(perToken.slice(1)).size).toBe(1);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      m.dispose();
    }
  });
});
