/**
 * Child-process entry of the fuzz runner (./fuzz-runner.ts), run from dist/. It takes case numbers over
 * IPC, runs each through the library (./fuzz-run-case.ts) and reports the result with its peak RSS. A
 * separate process per worker is what lets the runner kill a hang and measure the memory of a case.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fuzzCase } from './fuzz-cases.js';
import type { CaseResult, FuzzStage } from './fuzz-outcome.js';
import { runFuzzCase } from './fuzz-run-case.js';

export type ToWorker = { type: 'run'; seed: number; index: number };
export type FromWorker =
  | { type: 'ready' }
  | { type: 'stage'; index: number; stage: FuzzStage }
  | { type: 'result'; result: CaseResult }
  | { type: 'crash'; detail: string };

const workDir = process.env.FOPEIFY_FUZZ_WORK_DIR;
const basesDir = process.env.FOPEIFY_FUZZ_BASES_DIR;
if (!workDir || !basesDir || !process.send) {
  console.error('fuzz-worker is started by the fuzz runner (src/testing/fuzz-runner.ts)');
  process.exit(2);
}

function send(msg: FromWorker): void {
  process.send!(msg);
}

function crash(err: unknown): void {
  const e = err as { name?: string; message?: string; stack?: string };
  send({ type: 'crash', detail: `uncaught ${e?.name ?? ''}: ${String(e?.message ?? err).slice(0, 300)}` });
  // Let the message go out before exiting.
  setTimeout(() => process.exit(1), 50);
}
process.on('uncaughtException', crash);
process.on('unhandledRejection', crash);

let queue = Promise.resolve();
process.on('message', (msg: ToWorker) => {
  if (msg.type !== 'run') return;
  queue = queue.then(async () => {
    const root = path.join(workDir, `case-${msg.index}`);
    await fs.rm(root, { recursive: true, force: true });
    const result = await runFuzzCase(fuzzCase(msg.seed, msg.index), {
      root,
      basesDir,
      cacheDir: path.join(workDir, 'hf-cache'),
      onStage: (stage) => send({ type: 'stage', index: msg.index, stage }),
    });
    // maxRSS is the kernel's high-water mark in KiB: a spike too short for any sampler still shows.
    result.maxRssBytes = process.resourceUsage().maxRSS * 1024;
    send({ type: 'result', result });
    await fs.rm(root, { recursive: true, force: true });
  }, crash);
});
send({ type: 'ready' });
