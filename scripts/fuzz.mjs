// `npm run fuzz`: malformed checkpoints through inspect / convert / load + forward / tokenize, each in a
// worker process with a time and memory limit (src/testing/fuzz-runner.ts). Every case must end in success
// or a typed refusal. Exit 1 when any case ended in anything else.
//   npm run fuzz -- --cases 10000 --seed 18 --jobs 4
//   npm run fuzz -- --seed 18 --case 123          one case, with each stage's outcome
//   npm run fuzz -- --seed 18 --case 123 --write DIR   write that case's folders to DIR to try by hand
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fuzzCase } from '../dist/testing/fuzz-cases.js';
import { writeFuzzCase } from '../dist/testing/fuzz-apply.js';
import { formatBreakdown, formatCounts, formatFailedCase, runFuzz } from '../dist/testing/fuzz-runner.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '10000' },
    seed: { type: 'string', default: '18' },
    jobs: { type: 'string', default: String(os.availableParallelism()) },
    start: { type: 'string', default: '0' },
    case: { type: 'string' },
    write: { type: 'string' },
    'time-limit-s': { type: 'string', default: '20' },
    'memory-limit-mb': { type: 'string', default: '1536' },
    'max-failures': { type: 'string' },
    'show-failures': { type: 'string', default: '40' },
  },
});

function int(name, v, min = 0) {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min} (got ${v})`);
    process.exit(2);
  }
  return n;
}

const seed = int('seed', values.seed);
const one = values.case === undefined ? undefined : int('case', values.case);

if (values.write !== undefined) {
  if (one === undefined) {
    console.error('--write needs --case');
    process.exit(2);
  }
  const c = fuzzCase(seed, one);
  const root = path.resolve(values.write);
  const paths = await writeFuzzCase(c, root, path.join(root, '.bases'));
  console.log(`${c.label}\nexpect: ${c.expect}\nmodel: ${paths.model}\nconvert into: ${paths.out}`);
  process.exit(0);
}

const cases = one === undefined ? int('cases', values.cases, 1) : 1;
const start = one ?? int('start', values.start);
const showFailures = int('show-failures', values['show-failures']);
let lastPrint = 0;
const tty = process.stdout.isTTY;
const summary = await runFuzz({
  seed,
  cases,
  start,
  jobs: int('jobs', values.jobs, 1),
  timeLimitMs: int('time-limit-s', values['time-limit-s'], 1) * 1000,
  memoryLimitBytes: int('memory-limit-mb', values['memory-limit-mb'], 1) * 1024 ** 2,
  maxFailures: values['max-failures'] === undefined ? undefined : int('max-failures', values['max-failures'], 1),
  onResult: (r) => {
    if (one === undefined) return;
    console.log(fuzzCase(r.seed, r.index).label, `(expect: ${fuzzCase(r.seed, r.index).expect})`);
    for (const s of r.stages) console.log(`  ${s.stage}: ${s.outcome}${s.outcome === 'refused' ? ` ${s.code}: ${s.message}` : s.outcome === 'failure' ? ` ${s.reason}: ${s.detail}` : ''}`);
    for (const f of r.failures) console.log(`  ${f.stage ?? 'case'}: ${f.reason}: ${f.detail}`);
  },
  onProgress: (p) => {
    const now = Date.now();
    if (p.done !== p.total && now - lastPrint < (tty ? 250 : 5000)) return;
    lastPrint = now;
    const line = `${p.done}/${p.total} cases, ${p.failed} failed, ${p.perSecond.toFixed(1)}/s, ETA ${Math.ceil(p.etaSeconds)} s`;
    if (tty) process.stdout.write(`\r${line}   `);
    else console.log(line);
  },
});
if (tty) process.stdout.write('\n');
console.log(formatCounts(summary));
if (summary.stopped) console.log(`stopped after ${summary.failures.length} failed cases (--max-failures)`);
const breakdown = formatBreakdown(summary);
if (breakdown) console.log(breakdown);
if (summary.failures.length && one === undefined) {
  console.log(`first failed cases:`);
  for (const f of summary.failures.slice(0, showFailures)) console.log(`  ${formatFailedCase(f)}`);
}
process.exitCode = summary.failures.length ? 1 : 0;
