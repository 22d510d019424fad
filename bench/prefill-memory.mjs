#!/usr/bin/env node
// Peak memory of a long prefill (issue 19 item 2): the SmolLM2-135M shape (random weights, float32 in
// memory), one prefill of T tokens into a fresh KV cache (the logits of the last token only), each
// length in its own child process so its peak RSS (getrusage maxRSS) is that measurement's alone.
// Reported per length: RSS before loading (node + tfjs + the addon), RSS after loading and the peak
// during loading, the KV cache, the peak of the whole run, and what the prefill added on top of
// weights + KV cache (its temporaries). When node-llama-cpp is installed (FOPEIFY_NODE_LLAMA_CPP, see
// bench/speed.mjs), llama.cpp prefills the same checkpoint as GGUF F32 (flash attention on, weights
// memory-mapped) in its own process after each fopeify run: once with an F32 KV cache like fopeify's
// (the comparison) and once with its default F16 cache (half the cache bytes; issue 19's 922 MiB at
// 8192 tokens was that configuration). Without it, that 922 MiB figure is printed, marked as such.
// Usage: npm run build && node bench/prefill-memory.mjs [--tokens 8192[,2048...]] [--layout inference|hf] [--threads N] [--chunk tokens per prefill step] [--no-llama-cpp] [--json]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findLlamaCpp, llamaCppGguf, runLlamaCppChild } from './speed.mjs';

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.join(path.dirname(HERE), '..');
const dist = (p) => pathToFileURL(path.join(ROOT, 'dist', p)).href;
const MiB = 2 ** 20;
// Issue 19's llama.cpp figure (8192 tokens, F16 KV cache), shown only when llama.cpp cannot run here.
const ISSUE_LLAMA_CPP_8192_MIB = 922;

async function checkpoint() {
  const { writeTinyCheckpoint, SMOLLM2_135M_SHAPE } = await import(dist('testing/tiny-checkpoint.js'));
  // The folder bench/speed.mjs writes (bf16 on disk like the real SmolLM2; float32 in memory).
  const dir = path.join(ROOT, '.bench', `smollm2-135m-shape-L${SMOLLM2_135M_SHAPE.numLayers}-V${SMOLLM2_135M_SHAPE.vocabSize}`);
  if (!existsSync(path.join(dir, 'config.json'))) {
    await writeTinyCheckpoint(dir, { kind: 'llama', dtype: 'BF16', shape: SMOLLM2_135M_SHAPE, seed: 0, initStd: 0.02, tokenizer: false });
  }
  return { dir, shape: SMOLLM2_135M_SHAPE };
}

const maxRss = () => process.resourceUsage().maxRSS * 1024;

async function child(opts) {
  const { setupBackend } = await import(dist('backend/select.js'));
  const { loadModel } = await import(dist('model/index.js'));
  const info = await setupBackend({ backend: opts.backend ?? 'auto', threads: opts.threads, quiet: true });
  const startRss = process.memoryUsage().rss;
  const model = await loadModel(opts.dir, { layout: opts.layout ?? 'inference' });
  const loadedRss = process.memoryUsage().rss;
  const loadPeak = maxRss();
  const ids = Array.from({ length: opts.tokens }, (_, i) => (i * 7919 + 13) % model.spec.vocabSize);
  const cache = model.createCache();
  const t = performance.now();
  const out = model.forward(ids, { cache, logits: 'last', prefillChunk: opts.chunk });
  const last = await out.data();
  const seconds = (performance.now() - t) / 1000;
  out.dispose();
  const row = {
    tokens: opts.tokens,
    layout: model.layout,
    backend: info.description,
    seconds,
    startRssBytes: startRss,
    loadedRssBytes: loadedRss,
    loadPeakBytes: loadPeak,
    kvCacheBytes: cache.bytes,
    peakRssBytes: maxRss(),
    lastLogitsHead: Array.from(last.slice(0, 4)),
  };
  cache.dispose();
  model.dispose();
  return row;
}

/** Every length in its own child process; returns one row per length. */
export async function runPrefillMemoryBench(opts = {}) {
  const log = opts.log ?? ((s) => console.log(s));
  const { dir, shape } = await checkpoint();
  const llama = opts.llamaCpp === false ? { reason: 'skipped (--no-llama-cpp)' } : findLlamaCpp();
  if (llama.entry) llama.gguf = await llamaCppGguf(shape.numLayers, shape.vocabSize, log);
  else log(`llama.cpp: ${llama.reason}`);
  const rows = [];
  for (const tokens of opts.tokens ?? [8192]) {
    const arg = JSON.stringify({ dir, tokens, layout: opts.layout, threads: opts.threads, backend: opts.backend, chunk: opts.chunk });
    const r = spawnSync(process.execPath, ['--max-old-space-size=16384', HERE, '--child', arg], { encoding: 'utf8', maxBuffer: 1 << 24 });
    const line = (r.stdout ?? '').trim().split('\n').filter((l) => l.startsWith('{')).pop();
    if (r.status !== 0 || !line) {
      log(`prefill ${tokens}: failed (exit ${r.status}) ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`);
      rows.push({ tokens, error: `exit ${r.status}` });
      continue;
    }
    const row = JSON.parse(line);
    rows.push(row);
    const m = (b) => `${(b / MiB).toFixed(0)} MiB`;
    const temporaries = row.peakRssBytes - row.loadedRssBytes - row.kvCacheBytes;
    log(
      `prefill ${String(tokens).padStart(5)} (${row.layout}): peak RSS ${m(row.peakRssBytes)}` +
        ` = start ${m(row.startRssBytes)}, after load ${m(row.loadedRssBytes)} (load peak ${m(row.loadPeakBytes)}),` +
        ` KV ${m(row.kvCacheBytes)}, prefill temporaries ~${m(temporaries)}; ${(tokens / row.seconds).toFixed(0)} tokens/s` +
        (tokens === 8192 && !llama.entry ? `; issue 19's llama.cpp figure (F16 KV cache) ${ISSUE_LLAMA_CPP_8192_MIB} MiB → ${(row.peakRssBytes / MiB / ISSUE_LLAMA_CPP_8192_MIB).toFixed(2)}×` : ''),
    );
    if (!llama.entry) continue;
    row.llamaCpp = {};
    for (const kvType of ['F32', 'F16']) {
      const job = { layers: shape.numLayers, vocab: shape.vocabSize, threads: opts.threads, entry: llama.entry, gguf: llama.gguf, mode: 'prefill', tokens, kvType };
      const res = runLlamaCppChild(job);
      row.llamaCpp[kvType] = res;
      if (res.error) {
        log(`  llama.cpp ${kvType} KV: failed ${res.error}`);
        continue;
      }
      const ratio = row.peakRssBytes / res.peakRssBytes;
      log(
        `  llama.cpp (${kvType} KV cache${kvType === 'F32' ? ', as fopeify' : ', its default'}): peak RSS ${m(res.peakRssBytes)}, ${res.tokensPerSecond.toFixed(0)} tokens/s` +
          ` → fopeify ${ratio.toFixed(2)}× its memory${kvType === 'F32' ? ` (goal ≤ 1.00×: ${ratio <= 1 ? 'met' : 'not met'})` : ''}`,
      );
    }
  }
  return rows;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === HERE;
if (isMain) {
  const argv = process.argv.slice(2);
  const childIdx = argv.indexOf('--child');
  if (childIdx >= 0) {
    process.stdout.write(JSON.stringify(await child(JSON.parse(argv[childIdx + 1]))) + '\n');
  } else {
    const flag = (name) => {
      const i = argv.indexOf(`--${name}`);
      return i >= 0 ? argv[i + 1] : undefined;
    };
    const json = argv.includes('--json');
    const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
    if (!json) console.log(`load average before: ${load} (${os.availableParallelism()} CPUs)`);
    const rows = await runPrefillMemoryBench({
      tokens: flag('tokens') ? flag('tokens').split(',').map(Number) : undefined,
      layout: flag('layout'),
      threads: flag('threads') ? Number(flag('threads')) : undefined,
      backend: flag('backend'),
      chunk: flag('chunk') ? Number(flag('chunk')) : undefined,
      llamaCpp: !argv.includes('--no-llama-cpp'),
      log: json ? () => {} : undefined,
    });
    if (json) process.stdout.write(JSON.stringify({ loadAverage: os.loadavg(), rows }, null, 2) + '\n');
    if (rows.some((r) => r.error)) process.exitCode = 1;
  }
}
