// `npm run bench`: the headline benchmarks, each printing ratios measured side by side in the same run:
//   speed   - the CPU speed table (GEMM, prefill, decode, training step vs the GEMM limit and pure tfjs;
//             llama.cpp side by side when node-llama-cpp is installed)
//   convert - conversion time and memory vs copying the checkpoint
// The detailed ones run by name: `npm run bench -- gemm runtime train torch-train` (or any mix, in that order).
//   torch-train - one training step, --engine torch vs --engine tfjs (SmolLM2-135M shape, 512 / 2048 tokens)
//   webgpu      - prefill and training-step tokens/s, webgpu (Dawn) vs the native CPU path (--full: SmolLM2-135M shape)
//   prefill-memory - peak RSS of an 8192-token prefill (SmolLM2-135M shape) beside llama.cpp's, measured with an F32 and its default F16 KV cache when node-llama-cpp is installed (--tokens 8192,2048)
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT = ['speed', 'convert'];
// Names first, then options passed to each benchmark: `npm run bench -- speed --pure off`.
const args = process.argv.slice(2);
const firstFlag = args.findIndex((a) => a.startsWith('-'));
const names = firstFlag < 0 ? args : args.slice(0, firstFlag);
const flags = firstFlag < 0 ? [] : args.slice(firstFlag);
const wanted = names.length ? names : DEFAULT;
// Checked before anything runs: a typo must not cost the minutes of the benchmarks before it.
const KNOWN = ['speed', 'convert', 'gemm', 'runtime', 'train', 'torch-train', 'webgpu', 'prefill-memory'];
const unknown = wanted.filter((n) => !KNOWN.includes(n) || !existsSync(path.join(here, `${n}.mjs`)));
if (unknown.length) {
  console.error(`unknown benchmark ${unknown.join(', ')}: choose from ${KNOWN.join(', ')} (options go after the names)`);
  process.exit(2);
}
let failed = 0;
for (const name of wanted) {
  const file = path.join(here, `${name}.mjs`);
  console.log(`\n=== ${name} ===`);
  // Each benchmark in its own process: peak RSS figures must not include another benchmark's memory.
  const r = spawnSync(process.execPath, ['--max-old-space-size=16384', file, ...flags], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.log(`${name} benchmark failed (exit ${r.status})`);
  }
}
process.exitCode = failed ? 1 : 0;
