#!/usr/bin/env node
// GEMM throughput, in one run, of:
//   native  - tf.matMul on the 'cpu' backend with fopeify's native BLAS kernels (what training uses)
//   system  - the system BLAS (OpenBLAS/BLIS/MKL) called directly through the addon, no tfjs, when one loaded
//   portable - the addon's portable SGEMM called directly (native/sgemm.c)
//   (the faster of system and portable is the practical limit; the loader runs whichever it measured
//   faster at start-up, and native/blas compares tf.matMul with that engine called directly)
//   wasm+n  - tf.matMul on the 'wasm' backend with the native kernels
//   wasm    - tf.matMul on plain tfjs-backend-wasm
//   cpu     - tf.matMul on plain tfjs-backend-cpu (what you get without fopeify's accelerator)
// --step adds one training step (4 blocks d=576, 512 tokens) on native and wasm, and on native with the
// system BLAS hidden (the portable SGEMM, measured in a child process: a process loads one BLAS).
// Usage: npm run build && node bench/gemm.mjs [--threads N] [--quick] [--step] [--json]
// Or from code: import { runGemmBench } from './bench/gemm.mjs'.
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { loadNative } from '../dist/backend/native.js';
import { restoreKernels } from '../dist/backend/registry.js';
import { setupBackend, systemBlasName } from '../dist/backend/select.js';
import { makeWorkload, STEP_576 } from '../dist/backend/workload.js';

/**
 * Shapes: a square reference, the linear layers of a d=576, ffn=1536 model on 512 tokens, and the
 * attention products of its 9 heads of 64 (batched: one call per head).
 */
export const GEMM_SHAPES = [
  { name: '1024x1024x1024', m: 1024, k: 1024, n: 1024, ta: false, tb: false },
  { name: '512x576 . 576x1536 (up-proj fwd)', m: 512, k: 576, n: 1536, ta: false, tb: false },
  { name: '512x1536 . 1536x576 (down-proj fwd)', m: 512, k: 1536, n: 576, ta: false, tb: false },
  { name: '512x1536 . (576x1536)^T (dX bwd)', m: 512, k: 1536, n: 576, ta: false, tb: true },
  { name: '(512x576)^T . 512x1536 (dW bwd)', m: 576, k: 512, n: 1536, ta: true, tb: false },
  { name: '9x 512x64 . (512x64)^T (scores)', m: 512, k: 64, n: 512, ta: false, tb: true, batch: 9 },
  { name: '9x 512x512 . 512x64 (probs . V)', m: 512, k: 512, n: 64, ta: false, tb: false, batch: 9 },
  { name: '9x (512x512)^T . 512x64 (dV bwd)', m: 512, k: 512, n: 64, ta: true, tb: false, batch: 9 },
];

function fill(n, seed) {
  const v = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 4294967296 - 0.5;
  }
  return v;
}

/**
 * Best (minimum) seconds of up to `reps` runs of fn after one warm-up, capped by a time budget.
 * The minimum, not the mean: on a shared machine it is the run least disturbed by other work.
 */
function timeIt(fn, { reps = 7, budgetS = 4 } = {}) {
  fn();
  const times = [];
  const start = performance.now();
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    fn();
    times.push((performance.now() - t) / 1000);
    if ((performance.now() - start) / 1000 > budgetS) break;
  }
  return Math.min(...times);
}

/** GFLOP/s of one product of shape `s` taking `secs` (null when not measured). */
const gflopsOf = (s, secs) => (secs ? (2 * (s.batch ?? 1) * s.m * s.n * s.k) / secs / 1e9 : null);

function tfMatMulTimer(s, a, b, opts) {
  const lead = s.batch ? [s.batch] : [];
  const A = tf.tensor(a, [...lead, ...(s.ta ? [s.k, s.m] : [s.m, s.k])]);
  const B = tf.tensor(b, [...lead, ...(s.tb ? [s.n, s.k] : [s.k, s.n])]);
  const secs = timeIt(() => tf.dispose(tf.matMul(A, B, s.ta, s.tb)), opts);
  tf.dispose([A, B]);
  return secs;
}

/**
 * GFLOP/s of each GEMM engine called directly through the addon (no tfjs: the backend stays as it is)
 * on `shapes` with operands `data` ({a, b} per shape): per shape { system?, portable, blas } (blas:
 * the engine tf.matMul runs, not measured twice), and `engines` (the active one, both names); null
 * without the addon.
 */
export function directEngineGflops(shapes, data, threads) {
  const nat = loadNative({ threads });
  if (!nat.ok) return null;
  const { addon, kind } = nat.blas;
  const direct = (gemm, r, i) => {
    const batch = r.batch ?? 1;
    const c = new Float32Array(batch * r.m * r.n);
    const lda = r.ta ? r.m : r.k;
    const ldb = r.tb ? r.k : r.n;
    const [a, b] = [data[i].a, data[i].b];
    return timeIt(() => gemm(r.ta, r.tb, r.m, r.n, r.k, 1, a, 0, lda, b, 0, ldb, 0, c, 0, r.n, batch, r.m * r.k, r.k * r.n, r.m * r.n));
  };
  const gflops = shapes.map((r, i) => {
    const g = { portable: gflopsOf(r, direct(addon.portableSgemm.bind(addon), r, i)) };
    if (kind !== 'portable') g.system = gflopsOf(r, direct(addon.systemSgemm.bind(addon), r, i));
    g.blas = g[nat.blas.gemm.engine];
    return g;
  });
  return { gflops, engines: { active: nat.blas.gemm.engine, system: kind !== 'portable' ? systemBlasName(nat.blas) : null, portable: `${nat.blas.portable} SGEMM` } };
}

/** Operands for `shapes` (deterministic). */
export function gemmOperands(shapes) {
  return shapes.map((r, i) => ({ a: fill((r.batch ?? 1) * r.m * r.k, 1 + i), b: fill((r.batch ?? 1) * r.k * r.n, 100 + i) }));
}

/**
 * Run the GEMM benchmark. Returns one row per shape with GFLOP/s per engine (null when skipped), and
 * `engines`: the one tf.matMul runs ('system' | 'portable') and the names of both.
 * @param {{threads?: number, quick?: boolean, shapes?: typeof GEMM_SHAPES, log?: (s: string) => void, plainCpu?: boolean}} opts
 */
export async function runGemmBench(opts = {}) {
  const log = opts.log ?? ((s) => console.log(s));
  const shapes = opts.shapes ?? (opts.quick ? GEMM_SHAPES.slice(0, 2) : GEMM_SHAPES);
  const rows = shapes.map((s) => ({ ...s, flop: 2 * (s.batch ?? 1) * s.m * s.n * s.k, gflops: {} }));
  const data = gemmOperands(rows);

  // Accelerated cpu backend (fopeify's 'native').
  let info = null;
  let engines = null;
  try {
    info = await setupBackend({ backend: 'native', threads: opts.threads, quiet: true });
  } catch (err) {
    log(`native backend unavailable: ${err.message}`);
  }
  if (info) {
    log(`backend: ${info.description}`);
    rows.forEach((r, i) => (r.gflops.native = gflopsOf(r, tfMatMulTimer(r, data[i].a, data[i].b))));
    const direct = directEngineGflops(rows, data, opts.threads);
    if (direct) {
      rows.forEach((r, i) => Object.assign(r.gflops, direct.gflops[i]));
      engines = direct.engines;
    }
    try {
      await setupBackend({ backend: 'wasm', threads: opts.threads, quiet: true });
      rows.forEach((r, i) => (r.gflops['wasm+n'] = gflopsOf(r, tfMatMulTimer(r, data[i].a, data[i].b))));
    } catch (err) {
      log(`wasm unavailable: ${err.message}`);
    }
  }
  // Plain tfjs backends: our replacements removed.
  restoreKernels();
  try {
    await setupBackend({ backend: 'wasm', quiet: true });
    restoreKernels();
    rows.forEach((r, i) => (r.gflops.wasm = gflopsOf(r, tfMatMulTimer(r, data[i].a, data[i].b, { reps: 3, budgetS: 5 }))));
  } catch (err) {
    log(`wasm unavailable: ${err.message}`);
  }
  if (opts.plainCpu !== false) {
    await setupBackend({ backend: 'cpu', quiet: true });
    // ~1 GFLOP/s: one timed run per shape (after the warm-up) is all we can afford.
    rows.forEach((r, i) => (r.gflops.cpu = gflopsOf(r, tfMatMulTimer(r, data[i].a, data[i].b, { reps: 1, budgetS: 0 }))));
  }
  return { backend: info?.description ?? null, threads: info?.threads ?? null, engines, rows };
}

/** A text table: GFLOP/s per engine, and native's speed-up over plain tfjs cpu / share of the engine it runs. */
export function formatGemmTable(result) {
  const engines = ['native', 'system', 'portable', 'wasm+n', 'wasm', 'cpu'];
  const f = (x) => (x == null ? '-' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const e = result.engines;
  const lines = [
    `GEMM GFLOP/s (float32; ${result.backend ?? 'no native backend'})`,
    `  native = tf.matMul with fopeify's kernels (running the ${e?.active ?? '-'} engine); system = ${e?.system ?? 'no system BLAS'} called directly; portable = ${e?.portable ?? 'the portable SGEMM'} called directly`,
    `${'shape'.padEnd(38)}${engines.map((x) => x.padStart(9)).join('')}  native/cpu  native/${e?.active ?? 'blas'}  portable/system`,
  ];
  for (const r of result.rows) {
    const g = r.gflops;
    const x = g.native && g.cpu ? `${(g.native / g.cpu).toFixed(0)}x` : '-';
    const y = g.native && g.blas ? `${((100 * g.native) / g.blas).toFixed(0)}%` : '-';
    const z = g.portable && g.system ? `${((100 * g.portable) / g.system).toFixed(0)}%` : '-';
    lines.push(`${r.name.padEnd(38)}${engines.map((k) => f(g[k]).padStart(9)).join('')}  ${x.padStart(10)}  ${y.padStart(9 + (e?.active ?? 'blas').length - 2)}  ${z.padStart(15)}`);
  }
  return lines.join('\n');
}

/** Seconds per transformer training step (workload.ts: 4 blocks, d 576, 512 tokens) per backend. */
export async function runStepBench(opts = {}) {
  const out = [];
  for (const backend of opts.backends ?? ['native', 'wasm']) {
    let info;
    try {
      info = await setupBackend({ backend, threads: opts.threads, quiet: true });
    } catch {
      continue;
    }
    const w = makeWorkload(tf, STEP_576);
    const secs = timeIt(
      () => {
        const r = w.step();
        r.loss.dataSync();
        tf.dispose([r.loss, ...r.grads]);
      },
      { reps: opts.reps ?? 3, budgetS: 20 },
    );
    w.dispose();
    out.push({ backend: info.description, seconds: secs, gflops: w.flops / secs / 1e9 });
  }
  // The same step with the system BLAS hidden (the portable SGEMM): a process loads one BLAS, so it
  // runs in a child with FOPEIFY_NO_SYSTEM_BLAS=1.
  if (opts.portable !== false && process.env.FOPEIFY_NO_SYSTEM_BLAS !== '1') {
    const args = [fileURLToPath(import.meta.url), '--step-only', '--json', ...(opts.threads ? ['--threads', String(opts.threads)] : [])];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, FOPEIFY_NO_SYSTEM_BLAS: '1' } });
    try {
      out.push(...JSON.parse(r.stdout).step.filter((x) => /portable/.test(x.backend)));
    } catch {
      (opts.log ?? console.error)(`portable step failed: ${(r.stderr || '').trim().split('\n')[0]}`);
    }
  }
  return out;
}

const isMain = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const args = process.argv.slice(2);
  const ti = args.indexOf('--threads');
  const threads = ti >= 0 ? Number(args[ti + 1]) : undefined;
  const json = args.includes('--json');
  if (args.includes('--step-only')) {
    // The child of runStepBench: the native step only, with whatever GEMM this process loads.
    console.log(JSON.stringify({ step: await runStepBench({ threads, backends: ['native'], portable: false }) }));
    process.exit(0);
  }
  // With --json, stdout carries only the JSON document.
  const res = await runGemmBench({ threads, quick: args.includes('--quick'), log: json ? (s) => console.error(s) : undefined });
  let step = null;
  if (args.includes('--step')) step = await runStepBench({ threads });
  if (json) {
    console.log(JSON.stringify({ gemm: res, step }, null, 2));
  } else {
    console.log(formatGemmTable(res));
    if (step) {
      console.log('\nTraining step (fwd+bwd, 4 blocks d=576, 512 tokens, %s GFLOP):', (makeWorkloadFlops() / 1e9).toFixed(1));
      for (const s of step) console.log(`  ${s.backend.padEnd(60)} ${s.seconds.toFixed(2)} s  (${s.gflops.toFixed(1)} GFLOP/s)`);
    }
  }
}

function makeWorkloadFlops() {
  const { dim, ffn, layers, vocab, tokens } = STEP_576;
  return 3 * tokens * (layers * (2 * 4 * dim * dim + 2 * 3 * dim * ffn + 2 * 2 * tokens * dim) + 2 * dim * vocab);
}
