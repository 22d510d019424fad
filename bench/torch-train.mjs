#!/usr/bin/env node
// `npm run bench -- torch-train`: tokens/s of one training step (forward, backward, AdamW) of the
// SmolLM2-135M shape at 512 and 2048 tokens, `--engine torch` (python/fopeify_train/bench.py: the trainer's
// own step, float32 on the CPU) against `--engine tfjs` (bench/train.mjs's step), in one run on this machine.
// Usage: npm run build && node bench/torch-train.mjs [--lengths 512,2048] [--python /usr/bin/python3] [--json]
import { spawnSync } from 'node:child_process';
import { findTorchPython } from '../dist/bridge/python.js';
import { pythonRoot } from '../dist/bridge/remote-code.js';
import { runTrainBench } from './train.mjs';

const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const lengths = (opt('--lengths') ?? '512,2048').split(',').map(Number);
const json = argv.includes('--json');
const log = json ? () => undefined : (s) => console.log(s);

const py = await findTorchPython({ python: opt('--python') }).catch((err) => {
  console.error(`torch-train: ${err.message}`);
  process.exit(2);
});
log(`torch engine: ${py.python} (torch ${py.torchVersion}), one warm-up step + one timed step per length`);
const r = spawnSync(py.python, ['-m', 'fopeify_train.bench', '--tokens', lengths.join(','), '--steps', '1', '--device', 'cpu'], {
  cwd: pythonRoot(),
  env: { ...process.env, PYTHONPATH: pythonRoot(), PYTHONDONTWRITEBYTECODE: '1' },
  encoding: 'utf8',
  maxBuffer: 1 << 24,
});
if (r.status !== 0) {
  console.error(`torch-train: the torch step failed: ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
  process.exit(1);
}
const torchRows = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
for (const t of torchRows) log(`torch T=${String(t.tokens).padStart(5)}: ${t.step_seconds.toFixed(2)} s/step, ${t.tokens_per_s.toFixed(0)} tok/s, ${(t.achieved_tflops * 1000).toFixed(0)} GFLOP/s (${t.threads} threads)`);

log('tfjs engine:');
const tfjsRows = await runTrainBench({ lengths, steps: 1, log });
const rows = lengths.map((T) => {
  const t = torchRows.find((x) => x.tokens === T);
  const j = tfjsRows.find((x) => x.tokens === T);
  return { tokens: T, torchTokensPerSecond: t?.tokens_per_s ?? null, tfjsTokensPerSecond: j?.tokensPerSecond ?? null, torchOverTfjs: t && j?.tokensPerSecond ? t.tokens_per_s / j.tokensPerSecond : null };
});
if (json) console.log(JSON.stringify({ python: py.python, torch: py.torchVersion, rows }));
else {
  console.log('\n| tokens | torch tok/s | tfjs tok/s | torch / tfjs |\n|---:|---:|---:|---:|');
  for (const x of rows) console.log(`| ${x.tokens} | ${x.torchTokensPerSecond?.toFixed(0) ?? '-'} | ${x.tfjsTokensPerSecond?.toFixed(0) ?? '-'} | ${x.torchOverTfjs?.toFixed(2) ?? '-'} |`);
}
