/**
 * Running a job folder on this node: torchrun as a child process, its progress followed through the
 * metrics.jsonl rank 0 appends, and a failing rank turned into that rank's error. The trainer records
 * each failure in `<job>/errors/rank-R.json`; the earliest is the cause (the others are usually ranks
 * that lost their peers).
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FopeifyError, type ErrorCode } from '../errors.js';
import { namesIn } from '../io/files.js';
import type { MetricsRecord } from '../io/formats.js';
import { readMetrics } from './output.js';
import { torchrunArgs, type TorchTopology } from './torch-job.js';

const PASSED_CODES: readonly ErrorCode[] = ['BAD_ARGUMENT', 'BAD_CONFIG', 'BAD_SAFETENSORS', 'NON_FINITE', 'UNSUPPORTED_ARCHITECTURE', 'MISSING_SHARD', 'OUTPUT_UNWRITABLE', 'DISK_FULL'];

export interface RankError {
  rank: number;
  code: string;
  message: string;
  time: number;
}

/** The errors the ranks recorded, earliest first. */
export async function rankErrors(jobDir: string): Promise<RankError[]> {
  const dir = path.join(jobDir, 'errors');
  const out: RankError[] = [];
  for (const n of (await namesIn(dir)).filter((x) => /^rank-\d+\.json$/.test(x))) {
    try {
      out.push(JSON.parse(await fs.readFile(path.join(dir, n), 'utf8')) as RankError);
    } catch {
      // a rank killed while writing its report: the others tell the story
    }
  }
  return out.sort((a, b) => a.time - b.time || a.rank - b.rank);
}

/** The FopeifyError of a failed job: the first failing rank's, else torchrun's last stderr line. */
export async function jobFailure(jobDir: string, status: number | null, signal: string | null, stderrTail: string): Promise<FopeifyError> {
  const errors = await rankErrors(jobDir);
  const first = errors[0];
  if (first) {
    const code = (PASSED_CODES as readonly string[]).includes(first.code) ? (first.code as ErrorCode) : 'INTERNAL';
    return new FopeifyError(code, `the torch job failed on rank ${first.rank}: ${first.message}`);
  }
  const lines = stderrTail.split('\n').map((l) => l.trim()).filter(Boolean);
  const hint = lines.filter((l) => /error|Error|exception/.test(l)).pop() ?? lines.pop() ?? 'no output';
  return new FopeifyError('INTERNAL', `the torch job failed (${signal ? `signal ${signal}` : `status ${status}`}): ${hint}`);
}

export interface LaunchOptions {
  jobDir: string;
  metricsFile: string;
  launcher: readonly string[];
  topology: TorchTopology;
  trainerArgs: string[];
  env?: NodeJS.ProcessEnv;
  /** Each new metrics record as rank 0 writes it. */
  onRecord?: (r: MetricsRecord) => void;
  pollMs?: number;
}

/** Run this node's part of the job and wait for it; throws the failing rank's error. */
export async function launchJob(o: LaunchOptions): Promise<void> {
  await fs.rm(path.join(o.jobDir, 'errors'), { recursive: true, force: true });
  const [cmd, ...pre] = o.launcher;
  const args = [...pre, ...torchrunArgs(o.topology, o.topology.nodeRank, o.trainerArgs)];
  const env = { ...(o.env ?? process.env), PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1' };
  let seen = (await readMetrics(path.dirname(o.metricsFile))).length;
  let stderrTail = '';
  const follow = async () => {
    const records = await readMetrics(path.dirname(o.metricsFile));
    for (const r of records.slice(seen)) o.onRecord?.(r);
    seen = Math.max(seen, records.length);
  };
  const result = await new Promise<{ status: number | null; signal: string | null; spawnError?: NodeJS.ErrnoException }>((resolve) => {
    const child = spawn(cmd!, args, { cwd: o.jobDir, env, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderrTail = (stderrTail + d).slice(-16384);
    });
    let polling = false;
    const timer = setInterval(() => {
      if (polling) return;
      polling = true;
      void follow().finally(() => (polling = false));
    }, o.pollMs ?? 500);
    child.on('error', (err) => {
      clearInterval(timer);
      resolve({ status: null, signal: null, spawnError: err as NodeJS.ErrnoException });
    });
    child.on('close', (status, signal) => {
      clearInterval(timer);
      resolve({ status, signal });
    });
  });
  await follow();
  if (result.spawnError) throw new FopeifyError('BACKEND_UNAVAILABLE', `cannot start ${cmd}: ${result.spawnError.code ?? result.spawnError.message}`);
  if (result.status !== 0) throw await jobFailure(o.jobDir, result.status, result.signal, stderrTail);
}
