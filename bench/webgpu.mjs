#!/usr/bin/env node
// WebGPU benchmark (issue 15): prefill and training-step tokens/s of the webgpu backend (Dawn) beside
// the native CPU path, in one run, each backend in its own child process (its own Dawn instance and peak RSS).
// A training step is fopeify's Trainer step (forward, backward, AdamW; bench/train.mjs's stepper) on
// random tokens: one warm-up step (shader compilation), then one timed step.
//   default: a small random-weight model (hidden 256, 4 layers) at 128 / 512 tokens, sized so that a
//            software GPU (Mesa llvmpipe, ~1 GFLOP/s) finishes in minutes: there it shows the path works,
//            not speed;
//   --full:  the SmolLM2-135M shape at 512 / 2048 tokens (a real GPU).
// Software adapters are allowed here (a benchmark asks for webgpu explicitly).
// Usage: npm run bench -- webgpu [--full] [--tokens 128,512] [--backends webgpu,native] [--no-train] [--json]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { forwardFlops } from './runtime.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = (p) => pathToFileURL(path.join(here, '..', 'dist', p)).href;

const SMALL_SHAPE = { hiddenSize: 256, intermediateSize: 768, numLayers: 4, numHeads: 4, numKvHeads: 2, vocabSize: 4096, maxPositionEmbeddings: 4096 };

async function ensureCheckpoint(dir, full) {
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  const { writeTinyCheckpoint, SMOLLM2_135M_SHAPE } = await import(dist('testing/tiny-checkpoint.js'));
  const shape = full ? SMOLLM2_135M_SHAPE : { ...SMOLLM2_135M_SHAPE, ...SMALL_SHAPE };
  await writeTinyCheckpoint(dir, { kind: 'llama', dtype: 'BF16', shape, seed: 0, initStd: 0.02, tokenizer: false });
  return dir;
}

/** One backend, all token counts, in this process. */
async function runBackend(opts) {
  const tf = await import('@tensorflow/tfjs');
  const { setupBackend } = await import(dist('backend/select.js'));
  const { loadModel } = await import(dist('model/index.js'));
  const info = await setupBackend({ backend: opts.backend, allowSoftwareAdapter: true, quiet: true });
  const model = await loadModel(opts.dir, { layout: 'inference' });
  const spec = model.spec;
  const ids = (n) => Array.from({ length: n }, (_, i) => (i * 7919 + 104729) % spec.vocabSize);
  const prefill = async (n) => {
    const cache = model.createCache();
    const t = performance.now();
    const out = model.forward(ids(n), { cache, logits: 'last' });
    await out.data(); // the only read: asynchronous, as webgpu requires
    const seconds = (performance.now() - t) / 1000;
    out.dispose();
    cache.dispose();
    return seconds;
  };
  // Warm-up: shader compilation (webgpu: 1-6 s per process) and kernel selection, not timed.
  const warmStart = performance.now();
  await prefill(Math.min(64, opts.tokens[0]));
  const warmupSeconds = (performance.now() - warmStart) / 1000;
  const rows = [];
  for (const tokens of opts.tokens) {
    const seconds = await prefill(tokens);
    const mem = tf.memory();
    rows.push({
      backend: opts.backend,
      description: info.description,
      tokens,
      seconds,
      tokensPerSecond: tokens / seconds,
      gflops: forwardFlops(spec, tokens, 0) / 1e9 / seconds,
      warmupSeconds,
      peakRssMB: (process.resourceUsage().maxRSS * 1024) / 1e6,
      // webgpu: bytes its buffer pool holds (reused, so this is the peak); cpu: null.
      gpuMB: typeof mem.numBytesAllocatedInGPU === 'number' ? mem.numBytesAllocatedInGPU / 1e6 : null,
    });
  }
  model.dispose();
  if (opts.train) rows.push(...(await trainRows(opts)));
  return rows;
}

/** Training-step rows: per token count, a warm-up step then one timed step. */
async function trainRows(opts) {
  const { trainingStepper } = await import(pathToFileURL(path.join(here, 'train.mjs')).href);
  const rows = [];
  for (const tokens of opts.tokens) {
    const stepper = await trainingStepper(opts.dir, tokens, { backend: opts.backend, allowSoftwareAdapter: true });
    try {
      const warm = await stepper.step();
      const s = await stepper.step();
      rows.push({
        backend: opts.backend,
        kind: 'train',
        description: stepper.info.description,
        tokens,
        seconds: s.seconds,
        tokensPerSecond: tokens / s.seconds,
        warmupSeconds: warm.seconds,
        loss: s.loss,
        peakRssMB: (process.resourceUsage().maxRSS * 1024) / 1e6,
        gpuMB: s.peakGpuBytes === null ? null : s.peakGpuBytes / 1e6,
      });
    } finally {
      stepper.dispose();
    }
  }
  return rows;
}

function formatRow(r) {
  if (r.error) return `${r.backend.padEnd(7)} failed: ${r.error}`;
  const kind = r.kind === 'train' ? 'train  ' : 'prefill';
  return (
    `${r.backend.padEnd(7)} ${kind} ${String(r.tokens).padStart(5)}  ${r.tokensPerSecond.toFixed(1).padStart(8)} tokens/s  ${r.seconds.toFixed(2).padStart(7)} s` +
    `  ${r.kind === 'train' ? `loss ${r.loss.toFixed(3)}` : `${r.gflops.toFixed(1).padStart(6)} GFLOP/s`}  peak RSS ${(r.peakRssMB / 1024).toFixed(2)} GB${r.gpuMB === null ? '' : `  GPU ${r.gpuMB.toFixed(0)} MB`}`
  );
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const argv = process.argv.slice(2);
  const childIdx = argv.indexOf('--child');
  if (childIdx >= 0) {
    const rows = await runBackend(JSON.parse(argv[childIdx + 1]));
    process.stdout.write(JSON.stringify(rows) + '\n');
  } else {
    const flag = (name) => {
      const i = argv.indexOf(`--${name}`);
      return i >= 0 ? argv[i + 1] : undefined;
    };
    const full = argv.includes('--full');
    const tokens = (flag('tokens') ?? (full ? '512,2048' : '128,512')).split(',').map(Number);
    if (tokens.some((n) => !Number.isInteger(n) || n < 1)) {
      console.error(`--tokens: positive integers separated by commas, got "${flag('tokens')}"`);
      process.exit(2);
    }
    const backends = (flag('backends') ?? 'webgpu,native').split(',');
    const json = argv.includes('--json');
    const log = json ? () => {} : (s) => console.log(s);
    const name = full ? 'smollm2-135m-random' : 'small-256x4-random';
    log(`preparing a random-weight ${full ? 'SmolLM2-135M' : 'small (hidden 256, 4 layers)'}-shaped checkpoint (bf16, cached in .bench/)...`);
    const dir = await ensureCheckpoint(path.join(here, '..', '.bench', name), full);
    const all = [];
    for (const backend of backends) {
      const arg = JSON.stringify({ backend, dir, tokens, train: !argv.includes('--no-train') });
      const r = spawnSync(process.execPath, ['--max-old-space-size=16384', fileURLToPath(import.meta.url), '--child', arg], { encoding: 'utf8', maxBuffer: 1 << 24 });
      const line = (r.stdout ?? '').trim().split('\n').filter((l) => l.startsWith('[')).pop();
      if (r.status !== 0 || !line) {
        const why = (r.stderr ?? '').trim().split('\n').filter((l) => !/^Warning:|^\s+at /.test(l)).slice(-2).join(' | ');
        all.push({ backend, error: `exit ${r.status}: ${why}` });
        log(formatRow(all.at(-1)));
        continue;
      }
      const rows = JSON.parse(line);
      log(`${backend}: ${rows[0].description} (warm-up ${rows[0].warmupSeconds.toFixed(1)} s)`);
      for (const row of rows) {
        all.push(row);
        log(formatRow(row));
      }
    }
    // The ratio the issue asks for, per token count, when both ran.
    for (const kind of ['prefill', 'train']) {
      for (const n of tokens) {
        const of = (r) => (r.kind ?? 'prefill') === kind && r.tokens === n && !r.error;
        const g = all.find((r) => r.backend === 'webgpu' && of(r));
        const c = all.find((r) => r.backend !== 'webgpu' && of(r));
        if (g && c) log(`${kind} ${n}: webgpu / ${c.backend} = ${(g.tokensPerSecond / c.tokensPerSecond).toFixed(2)}x`);
      }
    }
    if (json) process.stdout.write(JSON.stringify(all, null, 2) + '\n');
    if (all.some((r) => r.error)) process.exitCode = 1;
  }
}
