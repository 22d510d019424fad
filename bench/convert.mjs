// Benchmark for `fopeify convert`: a ≥ 2 GB sharded random checkpoint of Llama-3.2-1B's shape, converted
// side by side with `cp -r` of the same folder. Goal: convert ≤ 10 % of cp's time (no --hash), peak RSS
// ≤ 300 MB. Run through `npm run bench` (builds dist/ first).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { writeShardedSafetensors } = await import('../dist/io/safetensors.js');
const { tinyConfig, tensorShapes } = await import('../dist/testing/tiny-checkpoint.js');

const LLAMA_3_2_1B = {
  hiddenSize: 2048, intermediateSize: 8192, numLayers: 16, numHeads: 32, numKvHeads: 8,
  vocabSize: 128256, maxPositionEmbeddings: 8192, ropeTheta: 500000, tieWordEmbeddings: true,
};

/** Random bf16 weights with a sane exponent range (conversion never reads them; cp and convert see the same bytes). */
function randomBf16(n) {
  const u16 = new Uint16Array(n);
  randomFillSync(u16);
  for (let i = 0; i < n; i++) u16[i] = (u16[i] & 0x807f) | 0x3c00; // sign, mantissa random; |x| in [2^-7, 2^-6)
  return new Uint8Array(u16.buffer);
}

export async function makeBigCheckpoint(dir) {
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  await fs.mkdir(dir, { recursive: true });
  const cfg = tinyConfig('llama', LLAMA_3_2_1B, 'BF16');
  const tensors = tensorShapes(cfg).map((t) => ({ name: t.name, dtype: 'BF16', shape: t.shape, data: async () => randomBf16(t.shape.reduce((a, b) => a * b, 1)) }));
  await writeShardedSafetensors(dir, tensors, { maxShardBytes: 1 << 30, metadata: { format: 'pt' } });
  await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  return dir;
}

function timeIt(fn) {
  const t = process.hrtime.bigint();
  const r = fn();
  return { seconds: Number(process.hrtime.bigint() - t) / 1e9, result: r };
}

export async function runConvertBench({ workDir = path.join(here, '..', '.bench'), repeats = 3 } = {}) {
  const src = await makeBigCheckpoint(path.join(workDir, 'llama-3.2-1b-random'));
  let total = 0;
  for (const f of await fs.readdir(src)) total += (await fs.stat(path.join(src, f))).size;
  execFileSync('cat', (await fs.readdir(src)).map((f) => path.join(src, f)), { stdio: ['ignore', 'ignore', 'inherit'], maxBuffer: 1 << 20 }); // warm the page cache
  const rows = [];
  const cpTimes = [];
  const convTimes = [];
  let rss = 0;
  const runner = path.join(here, 'convert-child.mjs');
  for (let i = 0; i < repeats; i++) {
    const cpOut = path.join(workDir, 'cp-out');
    await fs.rm(cpOut, { recursive: true, force: true });
    cpTimes.push(timeIt(() => execFileSync('cp', ['-r', src, cpOut])).seconds);
    await fs.rm(cpOut, { recursive: true, force: true });
    const convOut = path.join(workDir, 'convert-out');
    await fs.rm(convOut, { recursive: true, force: true });
    const r = spawnSync(process.execPath, [runner, src, convOut], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`convert failed: ${r.stderr}`);
    const m = JSON.parse(r.stdout);
    convTimes.push(m.seconds);
    rss = Math.max(rss, m.maxRssBytes);
    await fs.rm(convOut, { recursive: true, force: true });
  }
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const cp = median(cpTimes);
  const conv = median(convTimes);
  rows.push({ what: 'cp -r', seconds: cp, ratio: 1 });
  rows.push({ what: 'fopeify convert', seconds: conv, ratio: conv / cp, peakRssMB: rss / 1e6 });
  return { checkpointBytes: total, shards: (await fs.readdir(src)).filter((f) => f.endsWith('.safetensors')).length, rows, goalRatio: 0.1, goalRssMB: 300, machine: `${os.cpus().length} × ${os.cpus()[0]?.model}` };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await runConvertBench();
  console.log(`convert benchmark: ${(r.checkpointBytes / 1e9).toFixed(2)} GB random Llama-3.2-1B-shaped bf16 checkpoint, ${r.shards} shards (${r.machine})`);
  for (const row of r.rows) console.log(`  ${row.what.padEnd(16)} ${row.seconds.toFixed(3)} s  ratio to cp ${row.ratio.toFixed(3)}${row.peakRssMB ? `  peak RSS ${row.peakRssMB.toFixed(0)} MB` : ''}`);
  const conv = r.rows[1];
  console.log(`  goal: ratio ≤ ${r.goalRatio} → ${conv.ratio <= r.goalRatio ? 'met' : 'NOT met'}; peak RSS ≤ ${r.goalRssMB} MB → ${conv.peakRssMB <= r.goalRssMB ? 'met' : 'NOT met'}`);
}
