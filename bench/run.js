// `npm run bench`: every benchmark, each printing ratios measured side by side in the same run.
// Select some with `npm run bench -- convert runtime` (default: all that exist).
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const ALL = ['convert', 'gemm', 'runtime', 'train'];
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : ALL;
let failed = 0;
for (const name of wanted) {
  const file = path.join(here, `${name}.mjs`);
  if (!existsSync(file)) {
    console.log(`(no ${name} benchmark in this build)`);
    continue;
  }
  console.log(`\n=== ${name} ===`);
  // Each benchmark in its own process: peak RSS figures must not include another benchmark's memory.
  const r = spawnSync(process.execPath, ['--max-old-space-size=16384', file], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.log(`${name} benchmark failed (exit ${r.status})`);
  }
}
process.exitCode = failed ? 1 : 0;
