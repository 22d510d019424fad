#!/usr/bin/env node
// Training-step benchmark: tokens/s and peak RSS of one optimizer step (forward, recomputing backward,
// AdamW) of the SmolLM2-135M shape (random weights) at 1k, 2k, 4k and 8k tokens, each length in its own
// process so peak RSS is that length's alone. Also measures this machine's GEMM limit (tf.matMul on the
// training shapes through the active backend) and reports the step's model FLOP rate against it.
// --recompute auto|always|never picks which layers keep their activations (default auto: as many as fit
// the default activation budget); each row names the decision. Node flags (--no-concurrent-marking) reach the children.
// Usage: npm run build && node bench/train.mjs [--lengths 1024,2048] [--steps N] [--threads N] [--recompute P] [--json]
// Or from code: import { runTrainBench } from './bench/train.mjs'.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { setupBackend } from '../dist/backend/select.js';
import { loadModel } from '../dist/model/index.js';
import { SeededRandom } from '../dist/random.js';
import { SMOLLM2_135M_SHAPE, writeTinyCheckpoint } from '../dist/testing/tiny-checkpoint.js';
import { resolveTrainSettings } from '../dist/train/recipe.js';
import { NONE_RECIPE } from '../dist/train/run-common.js';
import { enableTiming, takeTimings } from '../dist/train/timing.js';
import { Trainer } from '../dist/train/trainer.js';

const HERE = fileURLToPath(import.meta.url);
export const TRAIN_LENGTHS = [1024, 2048, 4096, 8192];

/**
 * Matmul FLOPs of one forward pass over T tokens (causal attention counts the keys each query sees).
 * A training step is 3x this (forward + backward); recomputation adds one more forward of the layers.
 */
export function forwardFlops(shape, T) {
  const { hiddenSize: H, intermediateSize: I, numLayers: L, numHeads: nH, numKvHeads: nKv, vocabSize: V } = shape;
  const D = shape.headDim ?? H / nH;
  const linear = 2 * T * (H * nH * D + 2 * H * nKv * D + nH * D * H + 3 * H * I);
  const attention = 2 * 2 * nH * D * ((T * (T + 1)) / 2);
  const head = 2 * T * H * V;
  return { layers: L * (linear + attention), head, total: L * (linear + attention) + head };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** GFLOP/s of tf.matMul on the shapes a training step multiplies (the best of them: the GEMM limit). */
function gemmLimit(T) {
  const H = SMOLLM2_135M_SHAPE.hiddenSize;
  const I = SMOLLM2_135M_SHAPE.intermediateSize;
  const shapes = [
    [T, H, I, false, true], // up/gate forward: x Wᵀ
    [T, I, H, false, false], // dX = dY W
    [I, T, H, true, false], // dW = dYᵀ X
    [1024, 1024, 1024, false, false],
  ];
  const out = [];
  for (const [m, k, n, ta, tb] of shapes) {
    const a = tf.randomNormal(ta ? [k, m] : [m, k]);
    const b = tf.randomNormal(tb ? [n, k] : [k, n]);
    tf.dispose(tf.matMul(a, b, ta, tb));
    const times = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const c = tf.matMul(a, b, ta, tb);
      c.dataSync();
      times.push((performance.now() - t0) / 1000);
      c.dispose();
    }
    out.push((2 * m * n * k) / median(times) / 1e9);
    tf.dispose([a, b]);
  }
  return Math.max(...out);
}

/**
 * One optimizer step (forward, backward, AdamW) of the checkpoint in `dir` on T random tokens, as a
 * timed function: fopeify's Trainer (the step `fopeify finetune` takes) at a constant learning rate of
 * 1e-5, clipping at 1, one sequence per step; the backend is set up first. Shared with bench/speed.mjs.
 * @param {string} dir
 * @param {number} T
 * @param {{backend?: string, threads?: number, allowSoftwareAdapter?: boolean, recompute?: 'auto' | 'always' | 'never'}} opts
 */
export async function trainingStepper(dir, T, opts = {}) {
  const info = await setupBackend({ backend: opts.backend ?? 'auto', threads: opts.threads, allowSoftwareAdapter: opts.allowSoftwareAdapter, quiet: true });
  const m = await loadModel(dir, { backend: info });
  const settings = resolveTrainSettings(NONE_RECIPE, { seqLen: T, batch: 1, gradAccum: 1, lr: 1e-5, warmupSteps: 0, schedule: 'constant', maxGradNorm: 1, trainable: 'all', seed: 0 });
  const rng = new SeededRandom(1, 'bench-tokens');
  // Random tokens stand in for the data: the step's cost does not depend on which tokens they are.
  const train = { take: (pos, n) => ({ chunks: Array.from({ length: n }, () => Int32Array.from({ length: T + 1 }, () => rng.int(m.spec.vocabSize))), next: pos }) };
  const trainer = Trainer.create(m, settings, { train, heldOut: [] }, { backend: info, recompute: opts.recompute });
  const step = async () => {
    const t0 = performance.now();
    const r = await trainer.step();
    return { seconds: (performance.now() - t0) / 1000, loss: r.loss, peakGpuBytes: r.peakGpuBytes ?? null };
  };
  const dispose = () => {
    trainer.dispose();
    m.dispose();
  };
  return { info, step, parameters: m.parameterCount, activations: trainer.activationPlan, dispose };
}

/** Child: load the checkpoint, run warm-up + measured steps at T tokens, print one JSON line. */
async function child(dir, T, steps, warmup, threads, recompute) {
  const { info, step, parameters, activations } = await trainingStepper(dir, T, { threads, recompute });
  // Short lengths: one warm-up step, then the measured ones. Long ones: the first step is measured
  // (one-time costs are small next to a multi-minute step).
  const warm = warmup ? await step() : null;
  enableTiming(true);
  takeTimings();
  const times = [];
  let loss = warm?.loss ?? NaN;
  for (let i = 0; i < steps; i++) {
    const s = await step();
    times.push(s.seconds);
    loss = s.loss;
  }
  const parts = Object.fromEntries(Object.entries(takeTimings()).map(([k, v]) => [k, v.ms / 1000 / steps]));
  const gemm = gemmLimit(Math.min(T, 2048));
  const rss = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(
    JSON.stringify({
      tokens: T,
      backend: info.description,
      warmupSeconds: warm?.seconds ?? null,
      stepSeconds: median(times),
      parts,
      peakRssBytes: rss,
      activations,
      gemmGflops: gemm,
      loss,
      parameters,
      tensors: tf.memory().numTensors,
    }) + '\n',
  );
}

/**
 * Run the benchmark. Returns one row per length.
 * @param {{lengths?: number[], steps?: number, threads?: number, recompute?: 'auto' | 'always' | 'never', log?: (s: string) => void}} opts
 */
export async function runTrainBench(opts = {}) {
  const log = opts.log ?? ((s) => console.log(s));
  const lengths = opts.lengths ?? TRAIN_LENGTHS;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fopeify-train-bench-'));
  const rows = [];
  try {
    log(`writing a random-weight SmolLM2-135M-shaped checkpoint (bf16) to ${dir} ...`);
    await writeTinyCheckpoint(dir, { shape: SMOLLM2_135M_SHAPE, dtype: 'BF16', seed: 1, initStd: 0.02 });
    for (const T of lengths) {
      const steps = opts.steps ?? (T <= 2048 ? 2 : 1);
      const warmup = T <= 2048;
      const args = [HERE, '--child', dir, String(T), String(steps), warmup ? '1' : '0', String(opts.threads ?? 0), opts.recompute ?? 'auto'];
      const r = spawnSync(process.execPath, [...process.execArgv, '--max-old-space-size=16384', ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (r.status !== 0) {
        log(`T=${T}: child failed (exit ${r.status}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
        rows.push({ tokens: T, error: `exit ${r.status}` });
        continue;
      }
      const res = JSON.parse(r.stdout.trim().split('\n').pop());
      const f = forwardFlops(SMOLLM2_135M_SHAPE, T);
      const modelFlops = 3 * f.total; // forward + backward, the usual accounting
      const a = res.activations;
      const executedFlops = modelFlops + (f.layers * a.recomputed) / (a.kept + a.recomputed); // + the recomputed layers' forward
      const row = {
        ...res,
        tokensPerSecond: T / res.stepSeconds,
        modelGflopPerStep: modelFlops / 1e9,
        modelGflops: modelFlops / res.stepSeconds / 1e9,
        executedGflops: executedFlops / res.stepSeconds / 1e9,
      };
      row.gemmShare = row.modelGflops / res.gemmGflops;
      row.executedShare = row.executedGflops / res.gemmGflops;
      rows.push(row);
      log(
        `T=${String(T).padStart(5)}: ${row.stepSeconds.toFixed(1)} s/step, ${row.tokensPerSecond.toFixed(0)} tok/s, peak RSS ${(res.peakRssBytes / 2 ** 30).toFixed(2)} GiB, ` +
          `${row.modelGflops.toFixed(0)} model GFLOP/s = ${(100 * row.gemmShare).toFixed(0)} % of GEMM ${res.gemmGflops.toFixed(0)} GFLOP/s ` +
          `(${(100 * row.executedShare).toFixed(0)} % counting the recomputed forward)`,
      );
      log(
        `         --recompute ${a.policy}: ${a.kept}/${a.kept + a.recomputed} layers kept (est. ${(a.keptBytes / 2 ** 30).toFixed(2)} GiB` +
          `${a.policy === 'auto' ? ` of a ${(a.budgetBytes / 2 ** 30).toFixed(1)} GiB budget` : ''}), ${a.recomputed} recomputed`,
      );
      const p = res.parts ?? {};
      const top = Object.entries(p)
        .filter(([k]) => k !== 'step (forward + backward)')
        .sort((x, y) => y[1] - x[1])
        .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
        .join(', ');
      if (top) log(`         where the time goes: ${top}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const ok = rows.filter((r) => !r.error);
  if (ok.length) {
    log('');
    log('| tokens | recompute | layers kept | s/step | tokens/s | peak RSS (GiB) | model GFLOP/s | % of GEMM limit | incl. recompute |');
    log('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of ok) {
      log(
        `| ${r.tokens} | ${r.activations.policy} | ${r.activations.kept}/${r.activations.kept + r.activations.recomputed} | ${r.stepSeconds.toFixed(1)} | ${r.tokensPerSecond.toFixed(0)} | ${(r.peakRssBytes / 2 ** 30).toFixed(2)} | ${r.modelGflops.toFixed(0)} | ${(100 * r.gemmShare).toFixed(0)} % of ${r.gemmGflops.toFixed(0)} | ${(100 * r.executedShare).toFixed(0)} % |`,
      );
    }
    if (ok.length >= 2) {
      const a = ok[0];
      const b = ok[ok.length - 1];
      log(`peak RSS grows ${((b.peakRssBytes - a.peakRssBytes) / 2 ** 20 / ((b.tokens - a.tokens) / 1024)).toFixed(0)} MiB per 1k tokens (${a.tokens} → ${b.tokens}); backend ${a.backend}`);
    }
  }
  return rows;
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') {
    await child(argv[1], Number(argv[2]), Number(argv[3]), argv[4] === '1', Number(argv[5]) || undefined, argv[6]);
  } else {
    const get = (flag) => {
      const i = argv.indexOf(flag);
      return i >= 0 ? argv[i + 1] : undefined;
    };
    const lengths = get('--lengths')?.split(',').map(Number);
    const steps = get('--steps') ? Number(get('--steps')) : undefined;
    const threads = get('--threads') ? Number(get('--threads')) : undefined;
    const recompute = get('--recompute');
    if (recompute !== undefined && !['auto', 'always', 'never'].includes(recompute)) {
      console.error(`--recompute must be auto, always or never (got ${recompute})`);
      process.exit(2);
    }
    const rows = await runTrainBench({ lengths, steps, threads, recompute, log: argv.includes('--json') ? () => undefined : undefined });
    if (argv.includes('--json')) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    if (rows.some((r) => r.error)) process.exitCode = 1;
  }
}
