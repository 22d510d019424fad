/**
 * One fuzz case through the library API: inspect, convert (into the case's `out`), load + forward,
 * tokenize + decode. Every call must end in success or a typed refusal; on top of that the case's
 * folder is checked: the model and the outside file unchanged, nothing else written, no outside file
 * copied into the output, no partial output after a refused convert.
 * Runs inside a worker process (./fuzz-worker.ts), which the runner kills on a hang or memory blow-up.
 */
import * as tf from '../backend/tfjs.js';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { convertModel } from '../convert/convert.js';
import { FopeifyError } from '../errors.js';
import { inspectModel } from '../inspect/inspect.js';
import { exists } from '../io/files.js';
import { loadModel } from '../model/model.js';
import { loadTokenizer, type TextTokenizer } from '../model/tokenizer.js';
import { BYTE_VOCAB_SIZE } from './byte-tokenizer.js';
import type { FuzzCase } from './fuzz-cases.js';
import { SECRET_MARKER, writeFuzzCase, type CasePaths } from './fuzz-apply.js';
import { expectationFailures, type CaseFailure, type CaseResult, type FuzzStage, type StageOutcome } from './fuzz-outcome.js';

/** Ids inside the base vocabulary (byte tokenizer: 260 ids). */
const FORWARD_IDS = [256, 72, 101, 108, 108, 111, 33, 3];
/** Prompt text; the run of "a" not at the end makes a backtracking pre-tokenizer regex explode. */
const PROMPT = 'Hello, world! ' + 'a'.repeat(48) + '!';
/** Ids no vocabulary of the base holds. */
const BAD_IDS = [BYTE_VOCAB_SIZE + 1000, -1, 2 ** 31];

export interface RunCaseOptions {
  /** Folder for this case (created, then removed). */
  root: string;
  /** Shared folder of base checkpoints. */
  basesDir: string;
  /** HF cache the library may use (never the user's). */
  cacheDir: string;
  /** Told before each stage starts, so a hang can be attributed. */
  onStage?: (stage: FuzzStage) => void;
}

function errorOutcome(stage: FuzzStage, err: unknown): StageOutcome {
  if (err instanceof FopeifyError) {
    if (err.code === 'INTERNAL') return { stage, outcome: 'failure', reason: 'internal-error', detail: err.message };
    if (!err.message.trim() || err.message.includes('\n')) {
      return { stage, outcome: 'failure', reason: 'multiline-message', detail: `${err.code}: ${JSON.stringify(err.message.slice(0, 200))}` };
    }
    return { stage, outcome: 'refused', code: err.code, message: err.message };
  }
  const e = err as { name?: string; message?: string; stack?: string } | undefined;
  const where = e?.stack?.split('\n').find((l) => l.includes(' at '))?.trim() ?? '';
  return { stage, outcome: 'failure', reason: 'raw-error', detail: `${e?.name ?? typeof err}: ${String(e?.message ?? err).slice(0, 200)} ${where}` };
}

/** Every entry under `dir` (symlinks not followed, FIFOs never opened) → its type and content hash. */
async function snapshot(dir: string, skipTop: ReadonlySet<string> = new Set()): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    const abs = path.join(dir, rel);
    const st = await fs.lstat(abs);
    if (st.isSymbolicLink()) out.set(rel, `link:${await fs.readlink(abs)}`);
    else if (st.isFile()) out.set(rel, `file:${createHash('sha256').update(await fs.readFile(abs)).digest('hex')}`);
    else if (st.isDirectory()) {
      if (rel) out.set(rel, 'dir');
      for (const name of (await fs.readdir(abs)).sort()) if (rel || !skipTop.has(name)) await walk(path.join(rel, name));
    } else out.set(rel, st.isFIFO() ? 'fifo' : 'other');
  };
  await walk('');
  return out;
}

function diffSnapshots(before: Map<string, string>, after: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [k, v] of before) if (after.get(k) !== v) changed.push(after.has(k) ? `changed ${k}` : `deleted ${k}`);
  for (const k of after.keys()) if (!before.has(k)) changed.push(`added ${k}`);
  return changed;
}

/** Files of a convert output that hold the outside secret, or symlinks leading out of the output. */
async function outsideLeaks(out: string): Promise<string[]> {
  const leaks: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const abs = path.join(out, rel);
    const st = await fs.lstat(abs);
    if (st.isSymbolicLink()) {
      const target = path.resolve(path.dirname(abs), await fs.readlink(abs));
      if (path.relative(out, target).startsWith('..') || path.isAbsolute(path.relative(out, target))) leaks.push(`${rel} -> ${target}`);
    } else if (st.isDirectory()) {
      for (const name of await fs.readdir(abs)) await walk(path.join(rel, name));
    } else if (st.isFile() && (await fs.readFile(abs)).includes(SECRET_MARKER)) leaks.push(`${rel} holds the outside secret`);
  };
  await walk('');
  return leaks;
}


/** Forward a few ids; a success must give finite logits, and no tensor may outlive the call. */
async function loadAndForward(dir: string): Promise<void> {
  const model = await loadModel(dir, { quiet: true });
  try {
    const logits = model.forward([FORWARD_IDS]);
    try {
      const values = await logits.data();
      let bad = 0;
      for (const v of values) if (!Number.isFinite(v)) bad++;
      if (bad) throw new NonFiniteLogits(`${bad} of ${values.length} logits are not finite`);
    } finally {
      logits.dispose();
    }
  } finally {
    model.dispose();
  }
}

class NonFiniteLogits extends Error {}

export async function runFuzzCase(c: FuzzCase, options: RunCaseOptions): Promise<CaseResult> {
  const started = Date.now();
  const paths: CasePaths = await writeFuzzCase(c, options.root, options.basesDir);
  const failures: CaseFailure[] = [];
  const stages: StageOutcome[] = [];
  const before = await snapshot(paths.root, new Set(['out']));

  const stage = async (name: FuzzStage, fn: () => Promise<void>): Promise<StageOutcome> => {
    options.onStage?.(name);
    let outcome: StageOutcome;
    try {
      await fn();
      outcome = { stage: name, outcome: 'success' };
    } catch (err) {
      outcome =
        err instanceof NonFiniteLogits
          ? { stage: name, outcome: 'failure', reason: 'non-finite-logits', detail: err.message }
          : errorOutcome(name, err);
    }
    stages.push(outcome);
    return outcome;
  };

  await stage('inspect', async () => {
    await inspectModel({ model: paths.model, offline: true, cacheDir: options.cacheDir });
  });

  const converted = await stage('convert', async () => {
    await convertModel({ model: paths.model, outDir: paths.out, offline: true, cacheDir: options.cacheDir });
  });
  if (converted.outcome === 'success') {
    for (const leak of await outsideLeaks(paths.out)) failures.push({ reason: 'leaked-outside-file', stage: 'convert', detail: leak });
  } else if (await exists(paths.out, false)) {
    failures.push({ reason: 'partial-output', stage: 'convert', detail: 'convert failed but left its output folder' });
  }

  const tensorsBefore = tf.memory().numTensors;
  await stage('load', () => loadAndForward(paths.model));
  const leaked = tf.memory().numTensors - tensorsBefore;
  if (leaked) {
    failures.push({ reason: 'tensor-leak', stage: 'load', detail: `${leaked} tensors left after load + forward` });
    tf.disposeVariables();
  }

  let tokenizer: TextTokenizer | undefined;
  const tokenized = await stage('tokenize', async () => {
    tokenizer = await loadTokenizer(paths.model);
    tokenizer.decode(tokenizer.encode(PROMPT));
  });
  if (tokenized.outcome === 'success' && tokenizer) {
    const tok = tokenizer;
    await stage('decode', async () => {
      tok.decode(BAD_IDS);
    });
  }

  // Let stray callbacks of the calls above (late stream errors, timers) surface inside this case.
  await new Promise((r) => setTimeout(r, 5));
  const after = await snapshot(paths.root, new Set(['out']));
  const changed = diffSnapshots(before, after);
  const inModel = changed.filter((d) => d.split(' ')[1]!.startsWith('model') || d.split(' ')[1]!.startsWith('outside'));
  const elsewhere = changed.filter((d) => !inModel.includes(d));
  if (inModel.length) failures.push({ reason: 'source-modified', detail: inModel.slice(0, 5).join(', ') });
  if (elsewhere.length) failures.push({ reason: 'wrote-outside', detail: elsewhere.slice(0, 5).join(', ') });
  failures.push(...expectationFailures(c.expect, stages, { convertable: !c.base.fope }));
  return { seed: c.seed, index: c.index, stages, failures, ms: Date.now() - started };
}
