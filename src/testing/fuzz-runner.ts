/**
 * Runs fuzz cases (./fuzz-cases.ts) in a pool of worker processes (./fuzz-worker.ts, from dist/) and
 * judges them. A process per worker, not a worker thread, because:
 * - a hang inside a synchronous call (a backtracking regex, a read from a FIFO holding libuv's threads)
 *   can only be stopped by killing it, and a killed process takes everything it held with it;
 * - its memory can be measured from outside: the runner samples /proc/<pid>/status VmRSS every 100 ms
 *   and kills at the limit (before a multi-GB allocation takes the machine down), and the worker reports
 *   the kernel's RSS high-water mark (getrusage maxrss) after each case, which catches spikes shorter than
 *   a sample. Worker threads share the process's RSS and `resourceLimits` bound only the JS heap, not the
 *   typed arrays (ArrayBuffers) that model code allocates.
 * A worker whose high-water mark passed the limit is replaced, so the next case is measured afresh.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fuzzCase, mutationKey } from './fuzz-cases.js';
import { caseVerdict, describeFailures, type CaseFailure, type CaseResult, type FailureReason, type FuzzStage } from './fuzz-outcome.js';
import type { FromWorker, ToWorker } from './fuzz-worker.js';

export const DEFAULT_TIME_LIMIT_MS = 20_000;
export const DEFAULT_MEMORY_LIMIT_BYTES = 1.5 * 1024 ** 3;

export interface FuzzOptions {
  seed: number;
  cases: number;
  /** First case index (default 0). */
  start?: number;
  /** Worker processes (default: available parallelism). */
  jobs?: number;
  /** Per-case wall-clock limit; a case past it is a hang (default 20 s). */
  timeLimitMs?: number;
  /** Per-case RSS limit (default 1.5 GiB). */
  memoryLimitBytes?: number;
  /** Stop scheduling new cases after this many failed cases (default: run them all). */
  maxFailures?: number;
  /** Keep the work folder (bases and any case folder a killed worker left). */
  keepWorkDir?: boolean;
  onProgress?: (p: FuzzProgress) => void;
  onResult?: (result: CaseResult) => void;
  /** The compiled worker (default: dist/testing/fuzz-worker.js of this package). */
  workerScript?: string;
}

export interface FuzzProgress {
  done: number;
  total: number;
  failed: number;
  perSecond: number;
  etaSeconds: number;
}

export interface FailedCase {
  seed: number;
  index: number;
  label: string;
  reasons: FailureReason[];
  mutations: string[];
  detail: string;
}

export interface FuzzSummary {
  seed: number;
  start: number;
  /** Cases that ran to a verdict. */
  cases: number;
  success: number;
  refusals: number;
  failures: FailedCase[];
  /** Failed cases per mutation class (a case with two mutations counts for both). */
  failuresByMutation: Record<string, number>;
  failuresByReason: Record<string, number>;
  refusalCodes: Record<string, number>;
  /** True when maxFailures stopped the run early. */
  stopped: boolean;
  seconds: number;
}

/** The package root: the nearest folder above this module with a package.json. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('fuzz runner: package.json not found above the module');
    dir = up;
  }
  return dir;
}

export function defaultWorkerScript(): string {
  return path.join(packageRoot(), 'dist', 'testing', 'fuzz-worker.js');
}

/** Resident memory of a process from /proc (Linux); undefined elsewhere or once it is gone. */
function residentBytes(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
}

/** A command line that reruns one case. */
export function reproduceCommand(seed: number, index: number): string {
  return `npm run fuzz -- --seed ${seed} --case ${index}`;
}

export function formatFailedCase(f: FailedCase): string {
  return `seed=${f.seed} index=${f.index} ${f.label} → ${f.detail}  (${reproduceCommand(f.seed, f.index)})`;
}

interface Worker {
  child: ChildProcess;
  dir: string;
  ready: Promise<void>;
  busy?: { index: number; stage?: FuzzStage; timer: NodeJS.Timeout; settle: (r: CaseResult) => void; started: number };
  stderrTail: string;
  crashDetail?: string;
  killedFor?: CaseFailure;
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzSummary> {
  const start = options.start ?? 0;
  const total = options.cases;
  const jobs = Math.max(1, Math.min(options.jobs ?? os.availableParallelism(), total));
  const timeLimitMs = options.timeLimitMs ?? DEFAULT_TIME_LIMIT_MS;
  const memoryLimit = options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES;
  const workerScript = options.workerScript ?? defaultWorkerScript();
  if (!existsSync(workerScript)) throw new Error(`fuzz worker ${workerScript} is missing: build first (npm run build)`);
  const workRoot = mkdtempSync(path.join(os.tmpdir(), 'fopeify-fuzz-'));
  const basesDir = path.join(workRoot, 'bases');
  const started = Date.now();

  const summary: FuzzSummary = {
    seed: options.seed,
    start,
    cases: 0,
    success: 0,
    refusals: 0,
    failures: [],
    failuresByMutation: {},
    failuresByReason: {},
    refusalCodes: {},
    stopped: false,
    seconds: 0,
  };
  let spawned = 0;

  const spawnWorker = (): Worker => {
    const dir = path.join(workRoot, `worker-${spawned++}`);
    const child = fork(workerScript, [], {
      execArgv: [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: {
        ...process.env,
        FOPEIFY_FUZZ_WORK_DIR: dir,
        FOPEIFY_FUZZ_BASES_DIR: basesDir,
        HF_HOME: path.join(dir, 'hf-home'),
        HF_HUB_OFFLINE: '1',
        HF_TOKEN: '',
      },
    });
    let onReady!: () => void;
    const w: Worker = { child, dir, ready: new Promise((r) => (onReady = r)), stderrTail: '' };
    const keepTail = (chunk: Buffer) => {
      w.stderrTail = (w.stderrTail + chunk.toString('utf8')).slice(-2000);
    };
    child.stdout!.on('data', keepTail);
    child.stderr!.on('data', keepTail);
    child.on('message', (msg: FromWorker) => {
      if (msg.type === 'ready') onReady();
      else if (msg.type === 'stage' && w.busy?.index === msg.index) w.busy.stage = msg.stage;
      else if (msg.type === 'crash') w.crashDetail = msg.detail;
      else if (msg.type === 'result' && w.busy?.index === msg.result.index) {
        const busy = w.busy;
        clearTimeout(busy.timer);
        w.busy = undefined;
        const r = msg.result;
        if (r.maxRssBytes !== undefined && r.maxRssBytes > memoryLimit) {
          r.failures.push({ reason: 'memory', detail: `peak RSS ${mib(r.maxRssBytes)} > ${mib(memoryLimit)}` });
          w.killedFor = { reason: 'memory', detail: 'replaced after a case over the memory limit' };
          child.kill('SIGKILL');
        }
        busy.settle(r);
      }
    });
    child.on('exit', (code, signal) => {
      onReady();
      const busy = w.busy;
      if (!busy) return;
      clearTimeout(busy.timer);
      w.busy = undefined;
      const failure: CaseFailure = w.killedFor ?? {
        reason: /heap out of memory|allocation failed/i.test(w.stderrTail) ? 'memory' : 'crash',
        detail: `worker exited (${signal ?? `code ${code}`})${w.crashDetail ? `: ${w.crashDetail}` : ''} ${w.stderrTail.split('\n').filter(Boolean).slice(-2).join(' / ').slice(0, 300)}`,
      };
      busy.settle({ seed: options.seed, index: busy.index, stages: [], failures: [{ ...failure, stage: busy.stage }], ms: Date.now() - busy.started });
    });
    return w;
  };

  const runOn = (w: Worker, index: number): Promise<CaseResult> =>
    new Promise((settle) => {
      const timer = setTimeout(() => {
        w.killedFor = { reason: 'hang', detail: `no result within ${timeLimitMs / 1000} s` };
        w.child.kill('SIGKILL');
      }, timeLimitMs);
      w.busy = { index, timer, settle, started: Date.now() };
      w.killedFor = undefined;
      w.crashDetail = undefined;
      w.child.send({ type: 'run', seed: options.seed, index } satisfies ToWorker);
    });

  const workers: Worker[] = [];
  const sampler = setInterval(() => {
    for (const w of workers) {
      if (!w.busy || w.child.pid === undefined || w.child.exitCode !== null) continue;
      const rss = residentBytes(w.child.pid);
      if (rss !== undefined && rss > memoryLimit && !w.killedFor) {
        w.killedFor = { reason: 'memory', detail: `RSS ${mib(rss)} > ${mib(memoryLimit)} (killed)` };
        w.child.kill('SIGKILL');
      }
    }
  }, 100);

  const record = (r: CaseResult) => {
    summary.cases++;
    const verdict = caseVerdict(r);
    if (verdict === 'success') summary.success++;
    else if (verdict === 'refusal') {
      summary.refusals++;
      for (const s of r.stages) if (s.outcome === 'refused') summary.refusalCodes[s.code] = (summary.refusalCodes[s.code] ?? 0) + 1;
    } else {
      const c = fuzzCase(r.seed, r.index);
      const reasons = [...new Set([...r.stages.flatMap((s) => (s.outcome === 'failure' ? [s.reason] : [])), ...r.failures.map((f) => f.reason)])];
      const mutations = c.mutations.map(mutationKey);
      summary.failures.push({ seed: r.seed, index: r.index, label: c.label, reasons, mutations, detail: describeFailures(r) });
      for (const m of new Set(mutations)) summary.failuresByMutation[m] = (summary.failuresByMutation[m] ?? 0) + 1;
      for (const reason of reasons) summary.failuresByReason[reason] = (summary.failuresByReason[reason] ?? 0) + 1;
    }
    options.onResult?.(r);
    const seconds = (Date.now() - started) / 1000;
    const perSecond = summary.cases / Math.max(seconds, 1e-3);
    options.onProgress?.({ done: summary.cases, total, failed: summary.failures.length, perSecond, etaSeconds: (total - summary.cases) / perSecond });
  };

  let next = start;
  const end = start + total;
  const lane = async (slot: number): Promise<void> => {
    for (;;) {
      if (next >= end) return;
      if (options.maxFailures !== undefined && summary.failures.length >= options.maxFailures) {
        summary.stopped = true;
        return;
      }
      let w = workers[slot]!;
      if (w.child.exitCode !== null || w.child.signalCode !== null || w.killedFor) {
        w.child.kill('SIGKILL');
        // A killed worker leaves its case folder (FIFOs, partial outputs) behind.
        rmSync(w.dir, { recursive: true, force: true });
        w = workers[slot] = spawnWorker();
      }
      await w.ready;
      const index = next++;
      record(await runOn(w, index));
    }
  };

  try {
    for (let i = 0; i < jobs; i++) workers.push(spawnWorker());
    await Promise.all(workers.map((_, i) => lane(i)));
  } finally {
    clearInterval(sampler);
    for (const w of workers) w.child.kill('SIGKILL');
    if (!options.keepWorkDir) rmSync(workRoot, { recursive: true, force: true });
  }
  summary.failures.sort((a, b) => a.index - b.index);
  summary.seconds = (Date.now() - started) / 1000;
  return summary;
}

/** The counts line of a summary: cases / success / refusals / anything else. */
export function formatCounts(s: FuzzSummary): string {
  return `${s.cases} cases: ${s.success} success, ${s.refusals} typed refusals, ${s.failures.length} anything else (seed ${s.seed}, ${s.seconds.toFixed(1)} s)`;
}

/** The breakdown of failures by mutation class and by reason, most frequent first. */
export function formatBreakdown(s: FuzzSummary): string {
  const rows = (m: Record<string, number>) =>
    Object.entries(m)
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([k, n]) => `  ${String(n).padStart(5)}  ${k}`)
      .join('\n');
  if (!s.failures.length) return '';
  return `failures by mutation:\n${rows(s.failuresByMutation)}\nfailures by reason:\n${rows(s.failuresByReason)}`;
}
