#!/usr/bin/env node
// The CPU speed table (issue 4), every number measured in this one run on this machine:
//   - raw GEMM through fopeify's accelerator (tf.matMul, native BLAS kernels) vs each GEMM engine called
//     directly — the system BLAS and the addon's portable SGEMM; the faster is the limit — vs pure
//     TensorFlow.js (tfjs-backend-cpu);
//   - prefill of the SmolLM2-135M shape (random weights) at 2048 tokens;
//   - cached decoding after a 2048-token prompt (tokens/s, the median step; bench/runtime.mjs's case);
//   - one training step (forward + backward + AdamW) of that shape at 512 and 2048 tokens;
// with seconds, effective GFLOP/s, ratio to the GEMM limit, speed-up over pure tfjs and peak RSS.
// When node-llama-cpp is installed (an optional benchmark tool, never a dependency of fopeify), the
// same checkpoint is written as GGUF F32 (bench/gguf.mjs) and llama.cpp's prefill and decode run
// interleaved with fopeify's, with the ratios. It is found from the project root, or from the folder
// FOPEIFY_NODE_LLAMA_CPP names (one with node_modules/node-llama-cpp: `npm install --prefix DIR node-llama-cpp`).
//
// Pure tfjs runs the full model at well under 1 GFLOP/s (a 2048-token prefill ≈ 13 min, a training
// step far longer), so by default its time is measured per component and summed — model cost is
// exactly (layers × one layer) + (embedding, final norm, LM head):
//   pure ≈ 30 × [one decoder layer at T tokens, measured: a 1-layer model with a 512-entry vocabulary]
//          + [embedding + norm + LM head, measured: a 1-layer model with the full vocabulary less the
//             1-layer model with the small one (a model needs ≥ 1 layer), for training on 128 tokens
//             and scaled by T/128 — the head's cost is linear in rows].
// --pure full measures the whole model instead (hours); --pure off skips it.
// Each measurement runs in its own process, so each peak RSS is that measurement's alone.
// Usage: npm run bench -- speed   |   node bench/speed.mjs [--pure parts|full|off] [--quick] [--threads N] [--no-llama-cpp] [--json]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { writeGgufF32 } from './gguf.mjs';
import { forwardFlops, runRuntimeCase } from './runtime.mjs';

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.join(path.dirname(HERE), '..');
const dist = (p) => pathToFileURL(path.join(ROOT, 'dist', p)).href;

const FULL = { prefill: 2048, decode: { context: 2048, tokens: 32 }, train: [512, 2048], headRows: 128 };
// --quick: the same measurements at short lengths (a smoke test of the benchmark, minutes).
const QUICK = { prefill: 256, decode: { context: 256, tokens: 8 }, train: [128, 256], headRows: 64 };
const SMALL_VOCAB = 512;

/** Matmul FLOPs of a forward pass over T tokens, the LM head on the last row or on every row (bench/runtime.mjs). */
function flops(shape, T, headOnEveryRow) {
  return forwardFlops({ ...shape, headDim: shape.headDim ?? shape.hiddenSize / shape.numHeads }, T, 0, !headOnEveryRow);
}

// ---- children -------------------------------------------------------------------------------------

async function checkpoint(layers, vocab) {
  const { writeTinyCheckpoint, SMOLLM2_135M_SHAPE } = await import(dist('testing/tiny-checkpoint.js'));
  const shape = { ...SMOLLM2_135M_SHAPE, numLayers: layers, vocabSize: vocab };
  const dir = path.join(ROOT, '.bench', `smollm2-135m-shape-L${layers}-V${vocab}`);
  if (!existsSync(path.join(dir, 'config.json'))) {
    // bf16 on disk like the real SmolLM2 (float32 in memory); std 0.02 like its init.
    await writeTinyCheckpoint(dir, { kind: 'llama', dtype: 'BF16', shape, seed: 0, initStd: 0.02, tokenizer: false });
  }
  return { dir, shape };
}

function peakRss() {
  return process.resourceUsage().maxRSS * 1024;
}

/** The same token ids for fopeify and llama.cpp. */
const promptIds = (n, vocab) => Array.from({ length: n }, (_, i) => (i * 7919 + 13) % vocab);

/** node-llama-cpp's entry file, or why it cannot be used (it is optional: fopeify never depends on it). */
export function findLlamaCpp() {
  const base = process.env.FOPEIFY_NODE_LLAMA_CPP || ROOT;
  try {
    return { entry: createRequire(path.join(base, 'package.json')).resolve('node-llama-cpp') };
  } catch {
    return {
      reason: process.env.FOPEIFY_NODE_LLAMA_CPP
        ? `node-llama-cpp not found under FOPEIFY_NODE_LLAMA_CPP=${base}`
        : 'node-llama-cpp is not installed (optional; e.g. npm install --prefix /tmp/nlc node-llama-cpp, then FOPEIFY_NODE_LLAMA_CPP=/tmp/nlc)',
    };
  }
}

async function childDecode(opts) {
  const { dir } = await checkpoint(opts.layers, opts.vocab);
  const row = await runRuntimeCase({ kind: 'decode', name: 'decode', context: opts.context, tokens: opts.tokens }, { dir, threads: opts.threads, layout: 'hf' });
  return { backend: row.backend, seconds: row.seconds, tokensPerSecond: row.tokensPerSecond, peakRssBytes: peakRss() };
}

/**
 * llama.cpp (node-llama-cpp) on the GGUF of the same checkpoint, CPU only, flash attention on:
 * prefill of `tokens` (timed from an empty sequence after a short warm-up) or, after a `context`
 * prompt, the median time of one generated token over `tokens` steps (greedy).
 * The KV cache is F32 like fopeify's (`kvType`, default F32; llama.cpp's own default is F16, which
 * halves its cache: issue 19's 922 MiB at 8192 tokens was measured that way) and holds exactly the
 * positions the measurement uses, as fopeify's does.
 */
async function childLlamaCpp(opts) {
  const { getLlama, LlamaLogLevel } = await import(pathToFileURL(opts.entry).href);
  const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: opts.gguf, gpuLayers: 0 });
  const prompt = opts.mode === 'prefill' ? opts.tokens : opts.context;
  const context = await model.createContext({
    // + 64: llama.cpp rounds its context up to a multiple of its padding; a prefill generates nothing.
    contextSize: (opts.mode === 'prefill' ? prompt : prompt + opts.tokens) + 64,
    experimentalKvCacheKeyType: opts.kvType ?? 'F32',
    experimentalKvCacheValueType: opts.kvType ?? 'F32',
    batchSize: Math.min(prompt, 2048),
    threads: opts.threads ?? os.availableParallelism(),
    flashAttention: true,
  });
  const seq = context.getSequence();
  const ids = promptIds(prompt, opts.vocab);
  await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, 32)); // warm-up, not timed
  await seq.clearHistory();
  let seconds;
  let tokensPerSecond;
  if (opts.mode === 'prefill') {
    const t = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(ids);
    seconds = (performance.now() - t) / 1000;
    tokensPerSecond = prompt / seconds;
  } else {
    await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, -1));
    const times = [];
    let t = performance.now();
    for await (const _token of seq.evaluate(ids.slice(-1), { temperature: 0 })) {
      const now = performance.now();
      times.push((now - t) / 1000);
      t = now;
      if (times.length >= opts.tokens) break;
    }
    times.sort((a, b) => a - b);
    seconds = times[Math.floor(times.length / 2)];
    tokensPerSecond = 1 / seconds;
  }
  const threads = context.currentThreads;
  await context.dispose();
  await model.dispose();
  return { backend: `llama.cpp (node-llama-cpp, ${threads} threads, flash attention, ${opts.kvType ?? 'F32'} KV cache)`, seconds, tokensPerSecond, peakRssBytes: peakRss() };
}

/** The GEMM limit's shapes (rows: the prefill length). */
const gemmShapes = (rows) => [
  { name: `${rows}x576 . (1536x576)^T (up-proj)`, m: rows, k: 576, n: 1536, ta: false, tb: true },
  { name: '1024x1024 . 1024x1024', m: 1024, k: 1024, n: 1024, ta: false, tb: false },
];

async function childGemm(opts) {
  const { runGemmBench } = await import(pathToFileURL(path.join(ROOT, 'bench', 'gemm.mjs')).href);
  const res = await runGemmBench({ shapes: gemmShapes(opts.rows), threads: opts.threads, log: () => undefined, plainCpu: opts.pure !== 'off' });
  return { backend: res.backend, engines: res.engines, rows: res.rows.map((r) => ({ name: r.name, flop: r.flop, gflops: r.gflops })), peakRssBytes: peakRss() };
}

/** The GEMM limit in this process, the engines called directly (tfjs's backend is left alone). */
async function limitHere(rows, threads) {
  const { directEngineGflops, gemmOperands } = await import(pathToFileURL(path.join(ROOT, 'bench', 'gemm.mjs')).href);
  const shapes = gemmShapes(rows);
  const r = directEngineGflops(shapes, gemmOperands(shapes), threads);
  return r ? gemmLimit({ engines: r.engines, rows: shapes.map((s, i) => ({ name: s.name, gflops: r.gflops[i] })) }) : null;
}

async function childPrefill(opts) {
  const { setupBackend } = await import(dist('backend/select.js'));
  const { loadModel } = await import(dist('model/index.js'));
  const info = await setupBackend({ backend: opts.backend, threads: opts.threads, quiet: true });
  const { dir } = await checkpoint(opts.layers, opts.vocab);
  const model = await loadModel(dir, { layout: 'inference' });
  const ids = (n) => Array.from({ length: n }, (_, i) => (i * 7919 + 13) % opts.vocab);
  // Warm-up (kernel registration, JIT): a short prefill, not timed.
  const w = model.forward(ids(32), { logits: 'last' });
  await w.data();
  w.dispose();
  const t = performance.now();
  const out = model.forward(ids(opts.tokens), { logits: 'last' });
  await out.data();
  const seconds = (performance.now() - t) / 1000;
  out.dispose();
  model.dispose();
  return { backend: info.description, seconds, peakRssBytes: peakRss() };
}

async function childTrain(opts) {
  const { trainingStepper } = await import(pathToFileURL(path.join(ROOT, 'bench', 'train.mjs')).href);
  const { dir } = await checkpoint(opts.layers, opts.vocab);
  const { info, step } = await trainingStepper(dir, opts.tokens, { backend: opts.backend, threads: opts.threads });
  const warm = opts.warmup ? (await step()).seconds : null;
  // The GEMM limit again, in this process just before and after its steps: this machine's speed drifts
  // by 20 % and more over minutes (the same GEMM measured 170 and 290 GFLOP/s minutes apart), so the
  // limit measured at the start of the run can belong to another phase than the steps.
  const before = opts.gemmRows ? await limitHere(opts.gemmRows, opts.threads) : null;
  const times = [];
  for (let i = 0; i < opts.steps; i++) times.push((await step()).seconds);
  const after = opts.gemmRows ? await limitHere(opts.gemmRows, opts.threads) : null;
  const alongside = before && after ? (after.limit > before.limit ? after : before) : null;
  return { backend: info.description, seconds: Math.min(...times), stepSeconds: times, warmupSeconds: warm, limitAlongside: alongside?.limit, peakRssBytes: peakRss() };
}

// ---- parent ---------------------------------------------------------------------------------------

/** The benchmark checkpoint of `layers` / `vocab` as GGUF F32 for llama.cpp (written once, next to it). */
export async function llamaCppGguf(layers, vocab, log = () => {}) {
  const { dir } = await checkpoint(layers, vocab);
  const gguf = `${dir}.f32.gguf`;
  if (!existsSync(gguf)) {
    log(`writing the checkpoint as GGUF F32 for llama.cpp (${path.relative(ROOT, gguf)}) ...`);
    await writeGgufF32(dir, gguf);
  }
  return gguf;
}

/** One llama.cpp measurement (childLlamaCpp) in its own process, so its peak RSS is its own. */
export function runLlamaCppChild(job, log = () => {}) {
  return runChild({ kind: 'llamacpp', ...job }, log);
}

function runChild(job, log) {
  const r = spawnSync(process.execPath, ['--max-old-space-size=16384', HERE, '--child', JSON.stringify(job)], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const line = (r.stdout ?? '').trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (r.status !== 0 || !line) {
    const why = (r.stderr ?? '').trim().split('\n').slice(-3).join(' | ');
    log(`  ${job.label}: failed (exit ${r.status}) ${why}`);
    return { error: `exit ${r.status}: ${why}` };
  }
  const res = JSON.parse(line);
  log(`  ${job.label}: ${res.seconds !== undefined ? `${res.seconds.toFixed(2)} s` : 'done'}${res.tokensPerSecond !== undefined ? ` (${res.tokensPerSecond.toFixed(1)} tokens/s)` : ''}, peak RSS ${(res.peakRssBytes / 2 ** 30).toFixed(2)} GiB`);
  return res;
}

/** The GEMM engines called directly: [key, name] for the system BLAS (when one loaded) and the portable SGEMM. */
function directEngines(gemm) {
  const e = gemm.engines;
  return [
    ['system', e?.system],
    ['portable', e?.portable],
  ].filter(([, name]) => name);
}

/** The GEMM limit: the fastest engine called directly, on any of the shapes, and which engine that is. */
function gemmLimit(gemm) {
  let best = { limit: NaN, limitEngine: null };
  for (const r of gemm.rows ?? []) {
    for (const [key, name] of directEngines(gemm)) {
      const g = r.gflops[key];
      if (g && !(g <= best.limit)) best = { limit: g, limitEngine: name };
    }
  }
  return best;
}

/**
 * Run every measurement; returns { machine, gemm, rows, pureMode } where rows are the table's
 * workloads: { name, flop, seconds, gflops, limitShare, pureSeconds, pureHow, speedup, peakRssBytes }.
 * @param {{pure?: 'parts' | 'full' | 'off', threads?: number, quick?: boolean, log?: (s: string) => void}} opts
 */
export async function runSpeedBench(opts = {}) {
  const log = opts.log ?? ((s) => console.log(s));
  const { prefill: PREFILL_TOKENS, decode: DECODE, train: TRAIN_TOKENS, headRows: HEAD_ROWS } = opts.quick ? QUICK : FULL;
  const pure = opts.pure ?? 'parts';
  const threads = opts.threads;
  const { SMOLLM2_135M_SHAPE: S } = await import(dist('testing/tiny-checkpoint.js'));
  const L = S.numLayers;
  const started = Date.now();
  log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, load ${os.loadavg()[0].toFixed(1)}`);
  log(pure === 'full' ? 'pure tfjs: the whole model (this takes hours)' : pure === 'parts' ? 'pure tfjs: per component (one layer × 30 + head), about 5 minutes' : 'pure tfjs: skipped');

  log('GEMM (fopeify accelerator, each GEMM engine direct, pure tfjs) ...');
  const gemm = runChild({ kind: 'gemm', label: 'GEMM', threads, pure, rows: PREFILL_TOKENS }, log);
  const { limit, limitEngine } = gemmLimit(gemm);

  const rows = [];
  const add = (name, flop, acc, pureSeconds, pureHow, extra = {}) => {
    const row = { name, flop, seconds: acc.seconds ?? NaN, peakRssBytes: acc.peakRssBytes ?? NaN, error: acc.error, pureSeconds, pureHow, tokensPerSecond: acc.tokensPerSecond, ...extra };
    row.gflops = flop / row.seconds / 1e9;
    row.limitShare = row.gflops / limit;
    row.speedup = pureSeconds / row.seconds;
    rows.push(row);
  };

  // Accelerated, full model; llama.cpp's prefill and decode interleaved with fopeify's.
  const model = { threads, layers: L, vocab: S.vocabSize };
  const llamaCpp = opts.llamaCpp === false ? { reason: 'skipped (--no-llama-cpp)' } : findLlamaCpp();
  if (llamaCpp.entry) llamaCpp.gguf = await llamaCppGguf(L, S.vocabSize, log);
  else log(`llama.cpp: ${llamaCpp.reason}`);
  const llamaRun = (job) => (llamaCpp.entry ? runChild({ kind: 'llamacpp', ...model, entry: llamaCpp.entry, gguf: llamaCpp.gguf, ...job }, log) : undefined);
  log(`prefill ${PREFILL_TOKENS} (full model, accelerated) ...`);
  const prefill = runChild({ kind: 'prefill', label: `prefill ${PREFILL_TOKENS}`, backend: 'auto', ...model, tokens: PREFILL_TOKENS }, log);
  const llamaPrefill = llamaRun({ mode: 'prefill', label: `llama.cpp prefill ${PREFILL_TOKENS}`, tokens: PREFILL_TOKENS });
  // llama.cpp's own default cache (F16: half the cache bytes to read), for reference beside the F32 comparison.
  const llamaPrefill16 = llamaRun({ mode: 'prefill', label: `llama.cpp prefill ${PREFILL_TOKENS}, F16 KV`, tokens: PREFILL_TOKENS, kvType: 'F16' });
  log(`decode @${DECODE.context} (${DECODE.tokens} tokens, full model, accelerated) ...`);
  const decode = runChild({ kind: 'decode', label: `decode @${DECODE.context}`, ...model, ...DECODE }, log);
  const llamaDecode = llamaRun({ mode: 'decode', label: `llama.cpp decode @${DECODE.context}`, ...DECODE });
  const llamaDecode16 = llamaRun({ mode: 'decode', label: `llama.cpp decode @${DECODE.context}, F16 KV`, ...DECODE, kvType: 'F16' });
  const trains = TRAIN_TOKENS.map((T) => {
    log(`training step ${T} (full model, accelerated) ...`);
    return runChild({ kind: 'train', label: `train ${T}`, backend: 'auto', threads, layers: L, vocab: S.vocabSize, tokens: T, steps: T <= 512 ? 3 : 2, warmup: true, gemmRows: PREFILL_TOKENS }, log);
  });

  // Pure tfjs.
  const pureRun = (job) => runChild({ ...job, backend: 'cpu', threads }, log);
  let purePrefill = { seconds: NaN, how: 'skipped' };
  const pureTrain = new Map(TRAIN_TOKENS.map((T) => [T, { seconds: NaN, how: 'skipped' }]));
  if (pure === 'full') {
    const p = pureRun({ kind: 'prefill', label: `pure prefill ${PREFILL_TOKENS}`, layers: L, vocab: S.vocabSize, tokens: PREFILL_TOKENS });
    purePrefill = { seconds: p.seconds, how: 'measured, whole model' };
    for (const T of TRAIN_TOKENS) {
      const r = pureRun({ kind: 'train', label: `pure train ${T}`, layers: L, vocab: S.vocabSize, tokens: T, steps: 1, warmup: false });
      pureTrain.set(T, { seconds: r.seconds, how: 'measured, whole model' });
    }
  } else if (pure === 'parts') {
    log(`pure tfjs parts: one layer (vocabulary ${SMALL_VOCAB}) and the head (one layer with the full vocabulary, less that layer) ...`);
    // The head alone: a model needs a layer, so the head is (1 layer, full vocabulary) − (1 layer, small one).
    const headOf = (withHead, layerOnly) => Math.max(0, withHead.seconds - layerOnly.seconds);
    const layerPrefill = pureRun({ kind: 'prefill', label: `pure 1 layer prefill ${PREFILL_TOKENS}`, layers: 1, vocab: SMALL_VOCAB, tokens: PREFILL_TOKENS });
    const headPrefill = headOf(pureRun({ kind: 'prefill', label: `pure 1 layer + head prefill ${PREFILL_TOKENS}`, layers: 1, vocab: S.vocabSize, tokens: PREFILL_TOKENS }), layerPrefill);
    purePrefill = { seconds: L * layerPrefill.seconds + headPrefill, how: `${L} × one layer + embedding/head, each measured` };
    const layerHeadRows = pureRun({ kind: 'train', label: `pure 1 layer train ${HEAD_ROWS} rows`, layers: 1, vocab: SMALL_VOCAB, tokens: HEAD_ROWS, steps: 1, warmup: false });
    const headTrain = headOf(pureRun({ kind: 'train', label: `pure 1 layer + head train ${HEAD_ROWS} rows`, layers: 1, vocab: S.vocabSize, tokens: HEAD_ROWS, steps: 1, warmup: false }), layerHeadRows);
    for (const T of TRAIN_TOKENS) {
      const layer = pureRun({ kind: 'train', label: `pure 1 layer train ${T}`, layers: 1, vocab: SMALL_VOCAB, tokens: T, steps: 1, warmup: T <= 512 });
      pureTrain.set(T, { seconds: L * layer.seconds + (headTrain * T) / HEAD_ROWS, how: `${L} × one layer + head (measured on ${HEAD_ROWS} rows, × ${T / HEAD_ROWS})` });
    }
  }

  // GEMM rows: the accelerator and pure tfjs on the same shapes; BLAS direct is the limit.
  for (const g of gemm.rows ?? []) {
    const acc = { seconds: g.flop / (g.gflops.native * 1e9), peakRssBytes: gemm.peakRssBytes };
    add(`GEMM ${g.name}`, g.flop, acc, g.gflops.cpu ? g.flop / (g.gflops.cpu * 1e9) : NaN, 'measured');
  }
  const prefillFlop = flops(S, PREFILL_TOKENS, false);
  const decodeFlop = forwardFlops({ ...S, headDim: S.headDim ?? S.hiddenSize / S.numHeads }, 1, DECODE.context, true);
  const ratio = (mine, theirs) => (theirs && !theirs.error ? mine.tokensPerSecond / theirs.tokensPerSecond : undefined);
  const vs = (mine, theirs, theirs16) => ({ vsLlamaCpp: ratio(mine, theirs), vsLlamaCppF16: ratio(mine, theirs16) });
  prefill.tokensPerSecond = PREFILL_TOKENS / prefill.seconds;
  add(`prefill ${PREFILL_TOKENS} tokens`, prefillFlop, prefill, purePrefill.seconds, purePrefill.how, vs(prefill, llamaPrefill, llamaPrefill16));
  add(`decode @${DECODE.context}`, decodeFlop, decode, NaN, `not measured (pure tfjs needs minutes for the ${DECODE.context}-token prompt alone)`, vs(decode, llamaDecode, llamaDecode16));
  if (llamaPrefill) add(`llama.cpp prefill ${PREFILL_TOKENS} tokens`, prefillFlop, llamaPrefill, NaN, undefined, { reference: true });
  if (llamaDecode) add(`llama.cpp decode @${DECODE.context}`, decodeFlop, llamaDecode, NaN, undefined, { reference: true });
  if (llamaPrefill16) add(`llama.cpp prefill ${PREFILL_TOKENS} tokens, F16 KV cache (its default)`, prefillFlop, llamaPrefill16, NaN, undefined, { reference: true });
  if (llamaDecode16) add(`llama.cpp decode @${DECODE.context}, F16 KV cache (its default)`, decodeFlop, llamaDecode16, NaN, undefined, { reference: true });
  TRAIN_TOKENS.forEach((T, i) => {
    // forward + backward = 3 × forward (the usual accounting; the recomputed forward is not counted)
    const t = trains[i];
    add(`training step ${T} tokens`, 3 * flops(S, T, true), t, pureTrain.get(T).seconds, pureTrain.get(T).how, {
      limitAlongside: t.limitAlongside,
      limitShareAlongside: (3 * flops(S, T, true)) / t.seconds / 1e9 / t.limitAlongside,
    });
  });
  return {
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? '', memGiB: os.totalmem() / 2 ** 30 },
    backend: prefill.backend ?? gemm.backend,
    llamaCpp: llamaCpp.entry ? { backend: llamaPrefill?.backend ?? llamaDecode?.backend, gguf: llamaCpp.gguf } : { reason: llamaCpp.reason },
    gemm,
    limitGflops: limit,
    limitEngine,
    rows,
    pureMode: pure,
    minutes: (Date.now() - started) / 60000,
  };
}

/** The table as Markdown. */
export function formatSpeedTable(res) {
  const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '—');
  const lines = [
    `CPU speed — ${res.machine.cpus} × ${res.machine.model}; ${res.backend ?? 'no accelerator'}`,
    `GEMM limit: ${f(res.limitGflops, 0)} GFLOP/s (${res.limitEngine ?? 'no GEMM engine'} called directly: the fastest engine on the shapes below; tf.matMul runs the ${res.gemm.engines?.active ?? '-'} engine)`,
    '',
    '| workload | seconds | GFLOP/s | of GEMM limit | pure tfjs seconds | speed-up | peak RSS (GiB) | tokens/s | vs llama.cpp |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const g of res.gemm.rows ?? []) {
    for (const [key, name] of directEngines(res.gemm)) {
      const x = g.gflops[key];
      if (x) lines.push(`| GEMM ${g.name}, ${name} direct | ${f(g.flop / (x * 1e9), 4)} | ${f(x)} | ${f((100 * x) / res.limitGflops, 0)} % | | | | | |`);
    }
  }
  for (const r of res.rows) {
    if (r.error) {
      lines.push(`| ${r.name} | failed: ${r.error} | | | | | | | |`);
      continue;
    }
    const ratio = r.vsLlamaCpp !== undefined ? `${f(r.vsLlamaCpp, 2)}×` : r.reference ? '1×' : '';
    lines.push(
      `| ${r.name} | ${f(r.seconds, r.seconds < 1 ? 4 : 2)} | ${f(r.gflops)} | ${f(100 * r.limitShare, 0)} % | ${f(r.pureSeconds, r.pureSeconds < 10 ? 2 : 0)} | ${Number.isFinite(r.speedup) ? `${f(r.speedup, 0)}×` : '—'} | ${f(r.peakRssBytes / 2 ** 30, 2)} | ${r.tokensPerSecond !== undefined ? f(r.tokensPerSecond, 1) : ''} | ${ratio} |`,
    );
  }
  lines.push('');
  lines.push('GFLOP/s: matmul FLOPs of the workload (causal attention counted exactly; a training step = 3 × forward; decode: one token, seconds per token) ÷ seconds.');
  const hows = res.rows.filter((r) => !r.name.startsWith('GEMM') && r.pureHow).map((r) => `${r.name}: ${r.pureHow}`);
  lines.push(`Pure tfjs (tfjs-backend-cpu, no fopeify kernels) — ${hows.join('; ')}.`);
  lines.push(
    res.llamaCpp?.reason
      ? `llama.cpp: not measured — ${res.llamaCpp.reason}.`
      : `llama.cpp: ${res.llamaCpp?.backend ?? 'failed'} on the same checkpoint as GGUF F32, run interleaved with fopeify's rows; "vs llama.cpp" = fopeify tokens/s ÷ llama.cpp tokens/s with an F32 KV cache like fopeify's` +
          `; against llama.cpp's default F16 cache: ${res.rows.filter((r) => r.vsLlamaCppF16 !== undefined).map((r) => `${r.name} ${f(r.vsLlamaCppF16, 2)}×`).join(', ') || 'not measured'}.`,
  );
  // Issue 19's goals: prefill and decode at least llama.cpp's speed (F32 weights and cache), a training step at half the GEMM limit.
  const verdict = (ok) => (ok ? 'met' : 'NOT met');
  const goals = [];
  for (const r of res.rows.filter((x) => (x.name.startsWith('prefill') || x.name.startsWith('decode')) && x.vsLlamaCpp !== undefined)) goals.push(`${r.name} ≥ 1.0× llama.cpp: ${f(r.vsLlamaCpp, 2)}× ${verdict(r.vsLlamaCpp >= 1)}`);
  const trainRows = res.rows.filter((x) => x.name.startsWith('training step') && !x.error);
  for (const r of trainRows) {
    const alongside = Number.isFinite(r.limitShareAlongside) ? `; ${f(100 * r.limitShareAlongside, 0)} % of the limit measured alongside its steps (${f(r.limitAlongside, 0)} GFLOP/s) ${verdict(r.limitShareAlongside >= 0.5)}` : '';
    goals.push(`${r.name} ≥ 50 % of the GEMM limit: ${f(100 * r.limitShare, 0)} % of the run's ${verdict(r.limitShare >= 0.5)}${alongside}`);
  }
  if (trainRows.some((r) => Number.isFinite(r.limitShareAlongside))) {
    lines.push(
      'Training steps: the best of the measured steps; "of GEMM limit" divides by the limit measured at the start of the run; "alongside" by the limit measured again in the step\'s own process just before and after its steps (the better of the two): the machine\'s speed drifts over minutes.',
    );
  }
  lines.push(`Goals: ${goals.join('; ')}.`);
  lines.push(`Measured in ${f(res.minutes, 1)} minutes.`);
  return lines.join('\n');
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === HERE;
if (isMain) {
  const argv = process.argv.slice(2);
  const flag = (name) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (argv[0] === '--child') {
    const job = JSON.parse(argv[1]);
    const fn = { gemm: childGemm, prefill: childPrefill, decode: childDecode, train: childTrain, llamacpp: childLlamaCpp }[job.kind];
    process.stdout.write(JSON.stringify(await fn(job)) + '\n');
    // tfjs / BLAS threads must not keep a finished child alive.
    process.exit(0);
  } else {
    const pure = flag('pure') ?? 'parts';
    if (!['parts', 'full', 'off'].includes(pure)) {
      console.error(`--pure must be parts, full or off (got ${pure})`);
      process.exit(2);
    }
    const json = argv.includes('--json');
    const res = await runSpeedBench({ pure, quick: argv.includes('--quick'), llamaCpp: !argv.includes('--no-llama-cpp'), threads: flag('threads') ? Number(flag('threads')) : undefined, log: json ? (s) => console.error(s) : undefined });
    if (json) console.log(JSON.stringify(res, null, 2));
    else console.log(`\n${formatSpeedTable(res)}`);
    if (res.rows.some((r) => r.error)) process.exitCode = 1;
  }
}
