#!/usr/bin/env node
// Model runtime benchmark: a random-weight SmolLM2-135M-shaped checkpoint (models.md) on this machine.
//   prefill 512 / 2048 / 8192 tokens  -> tokens/s, achieved GFLOP/s, peak RSS
//   decode at 2048 context with the KV cache -> tokens/s, achieved GFLOP/s, peak RSS
// Each case runs in its own process (peak RSS is per case), and each process also times a plain
// tf.matMul of the model's largest linear layer on the same backend, so the achieved GFLOP/s of the
// forward pass sits beside what a plain GEMM reaches in the same run.
// Usage: npm run build && node bench/runtime.mjs [--backend auto|native|wasm|cpu] [--threads N] [--layout inference|hf] [--quick] [--json]
// (default layout: 'inference' for prefill cases, 'hf' for decoding)
// Or from code: import { runRuntimeBench } from './bench/runtime.mjs'.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = (p) => pathToFileURL(path.join(here, '..', 'dist', p)).href;

/** Cases of the full run; --quick runs short ones only. */
export const RUNTIME_CASES = [
  { name: 'prefill 512', kind: 'prefill', tokens: 512 },
  { name: 'prefill 2048', kind: 'prefill', tokens: 2048 },
  { name: 'prefill 8192', kind: 'prefill', tokens: 8192 },
  { name: 'decode @2048', kind: 'decode', context: 2048, tokens: 32 },
];
const QUICK_CASES = [
  { name: 'prefill 256', kind: 'prefill', tokens: 256 },
  { name: 'decode @256', kind: 'decode', context: 256, tokens: 8 },
];

/** Forward FLOPs of T new tokens after P cached ones (matmuls only; causal attention counted exactly). */
export function forwardFlops(spec, T, P, lastOnly = true) {
  const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: D, numLayers: L, vocabSize: V } = spec;
  const linear = 2 * T * (H * nH * D + 2 * H * nKv * D + nH * D * H + 3 * H * I);
  const attention = 4 * nH * D * (T * P + (T * (T + 1)) / 2);
  const head = 2 * H * V * (lastOnly ? 1 : T);
  return L * (linear + attention) + head;
}

async function ensureCheckpoint(dir) {
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  const { writeTinyCheckpoint, SMOLLM2_135M_SHAPE } = await import(dist('testing/tiny-checkpoint.js'));
  // bf16 on disk like the real SmolLM2 (converted to float32 on load); std 0.02 like its init.
  await writeTinyCheckpoint(dir, { kind: 'llama', dtype: 'BF16', shape: SMOLLM2_135M_SHAPE, seed: 0, initStd: 0.02, tokenizer: false });
  return dir;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * One case, in this process (bench/speed.mjs runs its decode row through this too).
 * @param {{kind: 'prefill' | 'decode', name: string, tokens: number, context?: number}} c
 * @param {{dir: string, backend?: string, threads?: number, layout?: 'hf' | 'inference'}} opts
 */
export async function runRuntimeCase(c, opts) {
  const tf = await import('@tensorflow/tfjs');
  const { setupBackend } = await import(dist('backend/select.js'));
  const { loadModel, argmax } = await import(dist('model/index.js'));
  const info = await setupBackend({ backend: opts.backend ?? 'auto', threads: opts.threads, quiet: true });
  // Default layouts by measurement: the batched prefill takes the transposed inference layout; the
  // fused decoding step's matrix-vector products want HF's row-major [out, in] (faster every time we
  // measured it, and no transposed copy of the tied LM head).
  const model = await loadModel(opts.dir, { layout: opts.layout ?? (c.kind === 'decode' ? 'hf' : 'inference') });
  const spec = model.spec;
  const ids = (n, seed) => Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % spec.vocabSize);

  // The plain GEMM of the model's largest linear layer (x · W_upᵀ) on the same backend, same run.
  const gemmRows = Math.min(c.kind === 'decode' ? 512 : c.tokens, 2048);
  const x = tf.randomNormal([gemmRows, spec.hiddenSize]);
  const w = tf.randomNormal([spec.intermediateSize, spec.hiddenSize]);
  const gemmTimes = [];
  for (let i = 0; i < 6; i++) {
    const t = performance.now();
    const y = tf.matMul(x, w, false, true);
    await y.data();
    y.dispose();
    if (i > 0) gemmTimes.push((performance.now() - t) / 1000);
  }
  tf.dispose([x, w]);
  const gemmGflops = (2 * gemmRows * spec.hiddenSize * spec.intermediateSize) / median(gemmTimes) / 1e9;

  // Warm-up: a short prefill and two decode steps (kernel selection, JIT), not timed.
  {
    const cache = model.createCache();
    const a = model.forward(ids(64, 9), { cache, logits: 'last' });
    await a.data();
    a.dispose();
    for (let i = 0; i < 2; i++) {
      const b = model.forward([1], { cache, logits: 'last' });
      await b.data();
      b.dispose();
    }
    cache.dispose();
    if (c.kind === 'decode') await model.generate(ids(64, 9), { maxNewTokens: 4, eosTokenId: null });
  }

  const row = { name: c.name, backend: info.description, tokens: c.tokens, context: c.context ?? 0, gemmGflops };
  if (c.kind === 'prefill') {
    const cache = model.createCache();
    const t = performance.now();
    const out = model.forward(ids(c.tokens, 1), { cache, logits: 'last' });
    await out.data();
    const seconds = (performance.now() - t) / 1000;
    out.dispose();
    row.kvCacheMB = cache.bytes / 1e6;
    cache.dispose();
    row.seconds = seconds;
    row.tokensPerSecond = c.tokens / seconds;
    row.gflop = forwardFlops(spec, c.tokens, 0) / 1e9;
  } else {
    // Decoding as a user runs it (model.generate: the prefill, then the fused one-token step where the
    // kernels have it); each step timed from one new token to the next.
    const times = [];
    let flops = 0;
    let last = 0;
    const res = await model.generate(ids(c.context, 2), {
      maxNewTokens: c.tokens + 1,
      eosTokenId: null,
      onToken: (_, i) => {
        const now = performance.now();
        if (i > 0) {
          times.push((now - last) / 1000);
          flops += forwardFlops(spec, 1, c.context + i - 1);
        }
        last = now;
      },
    });
    row.kvCacheMB = (spec.numLayers * 2 * spec.numKvHeads * spec.headDim * (c.context + c.tokens) * 4) / 1e6;
    row.prefillSeconds = res.prefillMs / 1000;
    // Per-token median: robust to a noisy neighbour on a shared machine (the mean is reported too).
    const seconds = times.reduce((a, b) => a + b, 0);
    const step = median(times);
    row.seconds = step;
    row.tokensPerSecond = 1 / step;
    row.meanTokensPerSecond = c.tokens / seconds;
    row.gflop = flops / c.tokens / 1e9;
  }
  row.gflops = row.gflop / row.seconds;
  row.peakRssMB = (process.resourceUsage().maxRSS * 1024) / 1e6;
  model.dispose();
  return row;
}

/**
 * Run the runtime benchmark; each case in a child process. Returns one row per case:
 * { name, backend, tokens, context, seconds, tokensPerSecond, gflop, gflops, gemmGflops, peakRssMB, kvCacheMB }
 * (decode rows: seconds and gflop per token, tokensPerSecond from the median step, meanTokensPerSecond).
 * @param {{backend?: string, threads?: number, layout?: 'hf' | 'inference', quick?: boolean, cases?: typeof RUNTIME_CASES, workDir?: string, log?: (s: string) => void}} opts
 */
export async function runRuntimeBench(opts = {}) {
  const log = opts.log ?? ((s) => console.log(s));
  const workDir = opts.workDir ?? path.join(here, '..', '.bench');
  log('preparing a random-weight SmolLM2-135M-shaped checkpoint (bf16, cached in .bench/)...');
  const dir = await ensureCheckpoint(path.join(workDir, 'smollm2-135m-random'));
  const cases = opts.cases ?? (opts.quick ? QUICK_CASES : RUNTIME_CASES);
  const rows = [];
  for (const c of cases) {
    const arg = JSON.stringify({ case: c, dir, backend: opts.backend, threads: opts.threads, layout: opts.layout });
    const r = spawnSync(process.execPath, ['--max-old-space-size=16384', fileURLToPath(import.meta.url), '--child', arg], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
    const line = (r.stdout ?? '').trim().split('\n').filter((l) => l.startsWith('{')).pop();
    if (r.status !== 0 || !line) {
      log(`${c.name}: failed (exit ${r.status}) ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`);
      rows.push({ name: c.name, error: `exit ${r.status}` });
      continue;
    }
    const row = JSON.parse(line);
    rows.push(row);
    log(formatRow(row));
  }
  return rows;
}

function formatRow(r) {
  if (r.error) return `${r.name.padEnd(14)} failed: ${r.error}`;
  return (
    `${r.name.padEnd(14)} ${r.tokensPerSecond.toFixed(r.tokensPerSecond < 10 ? 2 : 1).padStart(8)} tokens/s` +
    `  ${r.seconds.toFixed(r.seconds < 1 ? 3 : 2).padStart(7)} s${r.context ? '/token' : '      '}  ${r.gflops.toFixed(1).padStart(6)} GFLOP/s (plain GEMM ${r.gemmGflops.toFixed(1)})` +
    `  peak RSS ${(r.peakRssMB / 1024).toFixed(2)} GB  (KV cache ${r.kvCacheMB.toFixed(0)} MB)`
  );
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const argv = process.argv.slice(2);
  const childIdx = argv.indexOf('--child');
  if (childIdx >= 0) {
    const { case: c, ...opts } = JSON.parse(argv[childIdx + 1]);
    const row = await runRuntimeCase(c, opts);
    process.stdout.write(JSON.stringify(row) + '\n');
  } else {
    const flag = (name) => {
      const i = argv.indexOf(`--${name}`);
      return i >= 0 ? argv[i + 1] : undefined;
    };
    const threads = flag('threads') ? Number(flag('threads')) : undefined;
    const json = argv.includes('--json');
    const rows = await runRuntimeBench({ backend: flag('backend'), threads, layout: flag('layout'), quick: argv.includes('--quick'), log: json ? () => {} : undefined });
    if (json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    else if (rows[0]?.backend) console.log(`backend: ${rows[0].backend}`);
    if (rows.some((r) => r.error)) process.exitCode = 1;
  }
}
