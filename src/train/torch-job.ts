/**
 * The job folder of `fopeify finetune --engine torch` (`<out>/torch-job/`): everything the PyTorch trainer
 * (python/fopeify_train, run by torchrun on every node) needs, and nothing it has to decide itself:
 *  - job.json: the resolved settings, the trainable tensor names, the LoRA targets, file names;
 *  - model/: the prepared model (after the recipe's conversion) as config.json + float32 safetensors, and
 *    the initial LoRA factors (drawn here: one implementation of the seeded init);
 *  - data/: the packed chunks (int32, seq-len + 1 tokens each), held-out chunks, and the chunk order of
 *    every step (the seeded per-epoch shuffle of PackedDataset, written out); with --eval-passkey, the
 *    teacher-forced passkey prompts of every evaluation (passkey.json: the tfjs trainer's prompts, in order);
 *  - python/: fopeify_torch (the model core) and fopeify_train (the trainer);
 *  - launch.sh: the torchrun line.
 * Paths inside are relative to the folder, so it can be copied to, or mounted on, other machines.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pythonPackageDir } from '../bridge/remote-code.js';
import { badOption, FopeifyError, optionName } from '../errors.js';
import { writeFileAtomically, writeFolderAtomically } from '../io/atomic.js';
import { METRICS_FILE } from '../io/formats.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { CHECKPOINTS_DIR, f32Bytes } from './checkpoint.js';
import type { PackedDataset } from './data.js';
import type { PasskeyEvalPrompt } from './passkey.js';
import type { TrainingModel } from './model.js';
import type { TrainSettings } from './recipe.js';

export const JOB_DIR = 'torch-job';
export const RESULT_DIR = 'torch-result';
export const JOB_FILE = 'job.json';
export const JOB_FORMAT = 'fopeify-torch-job';
export const LAUNCH_SCRIPT = 'launch.sh';
/** The trainer entry point, relative to the job folder. */
export const TRAINER_ENTRY = 'python/fopeify_train/run.py';

export type ParallelStrategy = 'auto' | 'ddp' | 'fsdp';

/** Where the processes run: torchrun's own flags. */
export interface TorchTopology {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  /** Rendezvous host (several nodes); omitted with one node: torchrun --standalone. */
  masterAddr?: string;
  masterPort: number;
  /**
   * torch 1.x's torchrun cannot parse its own default `--redirects 0 --tee 0` on Python 3.11 (IntFlag
   * iteration skips 0); `--redirects 1 --tee 2` (stdout to its log files, stderr teed) avoids it.
   */
  legacyStdFlags?: boolean;
}

/** What a resumed run reads back (the settings and the provenance of the run). */
export interface JobRecord {
  format: typeof JOB_FORMAT;
  version: 1;
  settings: TrainSettings;
  recipe: string | null;
  model: string;
  config: Record<string, unknown>;
  data_description: string;
  data_arg: string | null;
}

/** `python/fopeify_train/` of the installed package (next to fopeify_torch). */
export function trainerPackageDir(): string {
  return fileURLToPath(new URL('../../python/fopeify_train/', import.meta.url));
}

export function checkTopology(t: TorchTopology): void {
  const positive = (n: number, option: string) => {
    if (!(Number.isInteger(n) && n > 0)) throw badOption(option, `${optionName(option)} must be a positive integer (got ${n})`);
  };
  positive(t.nprocPerNode, 'nprocPerNode');
  positive(t.nnodes, 'nnodes');
  if (!(Number.isInteger(t.nodeRank) && t.nodeRank >= 0 && t.nodeRank < t.nnodes)) {
    throw new FopeifyError('BAD_ARGUMENT', `\`nodeRank\` must be an integer from 0 to ${t.nnodes - 1} (got ${t.nodeRank})`, { option: 'nodeRank' });
  }
  if (!(Number.isInteger(t.masterPort) && t.masterPort > 0 && t.masterPort < 65536)) throw new FopeifyError('BAD_ARGUMENT', `\`masterPort\` must be a port number (got ${t.masterPort})`, { option: 'masterPort' });
  if (t.nnodes > 1 && !t.masterAddr) throw new FopeifyError('BAD_ARGUMENT', '`nnodes` > 1 needs `masterAddr` (the host of node 0)', { option: ['nnodes', 'masterAddr'] });
}

/** torchrun's arguments (after the launcher) for one node, ending with the trainer and its arguments. */
export function torchrunArgs(t: TorchTopology, nodeRank: number, trainerArgs: readonly string[] = []): string[] {
  const where =
    t.nnodes === 1 && !t.masterAddr
      ? ['--standalone', '--nnodes', '1']
      : ['--nnodes', String(t.nnodes), '--node_rank', String(nodeRank), '--master_addr', t.masterAddr ?? '127.0.0.1', '--master_port', String(t.masterPort)];
  const std = t.legacyStdFlags ? ['--redirects', '1', '--tee', '2'] : [];
  return [...where, ...std, '--nproc_per_node', String(t.nprocPerNode), TRAINER_ENTRY, '--job', '.', ...trainerArgs];
}

function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/** One node's command line as printed by --no-launch (run in the job folder). */
export function nodeCommand(jobDir: string, launcher: readonly string[], t: TorchTopology, nodeRank: number, trainerArgs: readonly string[] = []): string {
  return `cd ${shellQuote(jobDir)} && ${[...launcher, ...torchrunArgs(t, nodeRank, trainerArgs)].map(shellQuote).join(' ')}`;
}

function launchScript(launcher: readonly string[], t: TorchTopology): string {
  const one = t.nnodes === 1 && !t.masterAddr;
  const where = one
    ? '--standalone --nnodes 1'
    : `--nnodes "\${NNODES:-${t.nnodes}}" --node_rank "\${NODE_RANK:-${t.nodeRank}}" --master_addr "\${MASTER_ADDR:-${t.masterAddr ?? '127.0.0.1'}}" --master_port "\${MASTER_PORT:-${t.masterPort}}"`;
  return [
    '#!/bin/sh',
    '# Written by `fopeify finetune --engine torch`. Run it on every node (NODE_RANK=0..NNODES-1); with Slurm:',
    '#   srun --nodes=$NNODES --ntasks-per-node=1 sh -c \'NODE_RANK=$SLURM_NODEID MASTER_ADDR=<node 0 host> ./launch.sh\'',
    '# Extra arguments reach the trainer (--resume, --stop-after N). TORCHRUN overrides the launcher.',
    'set -e',
    'cd "$(dirname "$0")"',
    `exec \${TORCHRUN:-${launcher.map(shellQuote).join(' ')}} ${where}${t.legacyStdFlags ? ' --redirects 1 --tee 2' : ''} --nproc_per_node "\${NPROC_PER_NODE:-${t.nprocPerNode}}" ${TRAINER_ENTRY} --job . "$@"`,
    '',
  ].join('\n');
}

function int32Bytes(chunks: readonly Int32Array[], chunkLen: number): Uint8Array {
  const out = new Int32Array(chunks.length * chunkLen);
  chunks.forEach((c, i) => out.set(c, i * chunkLen));
  return new Uint8Array(out.buffer);
}

/** The chunk index of every sample of every step (PackedDataset's seeded order, written out). */
export function stepOrder(train: PackedDataset, steps: number, perStep: number): Int32Array {
  const index = new Map<Int32Array, number>();
  train.chunks.forEach((c, i) => index.set(c, i));
  const order = new Int32Array(steps * perStep);
  let pos = { epoch: 0, index: 0 };
  for (let s = 0; s < steps; s++) {
    const take = train.take(pos, perStep);
    take.chunks.forEach((c, j) => (order[s * perStep + j] = index.get(c)!));
    pos = take.next;
  }
  return order;
}

async function copyPythonPackage(src: string, dst: string): Promise<void> {
  await fs.mkdir(dst, { recursive: true });
  for (const f of (await fs.readdir(src)).filter((n) => n.endsWith('.py')).sort()) await fs.copyFile(path.join(src, f), path.join(dst, f));
}

export interface JobInput {
  outDir: string;
  record: JobRecord;
  model: TrainingModel;
  train: PackedDataset;
  heldOut: Int32Array[];
  topology: TorchTopology;
  launcher: readonly string[];
  parallel: ParallelStrategy;
  keepCheckpoints: number;
  /** --eval-passkey: the prompts of the n-th passkey evaluation of the run at evals[n]. */
  passkey?: PasskeyEvalPrompt[][];
}

/** Write (or rewrite: everything in it is a function of the run) `<out>/torch-job/`; returns its path. */
export async function writeJobFolder(j: JobInput): Promise<string> {
  const jobDir = path.join(j.outDir, JOB_DIR);
  const s = j.record.settings;
  const chunkLen = s.seqLen + 1;
  const perStep = s.batch * s.gradAccum;
  if (perStep % (j.topology.nprocPerNode * j.topology.nnodes)) {
    throw new FopeifyError(
      'BAD_ARGUMENT',
      `batch × grad-accum = ${perStep} sequences per step cannot be split over ${j.topology.nprocPerNode * j.topology.nnodes} processes; make it a multiple of the process count`,
    );
  }
  const tm = j.model;
  const loraBases = [...tm.lora.keys()];
  const job = {
    format: JOB_FORMAT,
    version: 1,
    settings: s,
    trainable: [...tm.params.keys()].filter((n) => tm.weights.has(n)).concat(loraBases.flatMap((b) => [tm.lora.get(b)!.a, tm.lora.get(b)!.b])),
    lora: loraBases.length ? { bases: loraBases, scale: tm.loraScale, init: 'model/lora-init.safetensors' } : null,
    model_dir: 'model',
    data: {
      chunk_len: chunkLen,
      train: 'data/train.i32',
      train_chunks: j.train.chunks.length,
      order: 'data/order.i32',
      held_out: 'data/held-out.i32',
      held_out_chunks: j.heldOut.length,
    },
    metrics: `../${METRICS_FILE}`,
    checkpoints_dir: `../${CHECKPOINTS_DIR}`,
    result_dir: `../${RESULT_DIR}`,
    passkey: j.passkey ? { file: 'data/passkey.json', evals: j.passkey.length } : null,
    keep_checkpoints: j.keepCheckpoints,
    parallel: j.parallel,
    run: j.record,
  };
  await writeFolderAtomically(jobDir, { force: true }, async (tmp) => {
    await fs.mkdir(path.join(tmp, 'model'));
    await fs.mkdir(path.join(tmp, 'data'));
    await writeFileAtomically(path.join(tmp, 'model', 'config.json'), JSON.stringify(j.record.config, null, 2) + '\n');
    const weights: TensorToWrite[] = [...tm.weights].map(([name, t]) => ({ name, dtype: 'F32', shape: [...t.shape], data: () => f32Bytes(t) }));
    await writeSafetensors(path.join(tmp, 'model', 'model.safetensors'), weights, { format: 'pt' });
    if (loraBases.length) {
      const lora: TensorToWrite[] = [...tm.params].filter(([n]) => !tm.weights.has(n)).map(([name, t]) => ({ name, dtype: 'F32', shape: [...t.shape], data: () => f32Bytes(t) }));
      await writeSafetensors(path.join(tmp, 'model', 'lora-init.safetensors'), lora);
    }
    await writeFileAtomically(path.join(tmp, job.data.train), int32Bytes(j.train.chunks, chunkLen));
    await writeFileAtomically(path.join(tmp, job.data.held_out), int32Bytes(j.heldOut, chunkLen));
    if (j.passkey) {
      const evals = j.passkey.map((prompts) => prompts.map((p) => ({ ids: p.ids, prompt_length: p.promptLength })));
      await writeFileAtomically(path.join(tmp, 'data', 'passkey.json'), JSON.stringify({ evals }) + '\n');
    }
    await writeFileAtomically(path.join(tmp, job.data.order), new Uint8Array(stepOrder(j.train, s.steps, perStep).buffer));
    await copyPythonPackage(pythonPackageDir(), path.join(tmp, 'python', 'fopeify_torch'));
    await copyPythonPackage(trainerPackageDir(), path.join(tmp, 'python', 'fopeify_train'));
    await writeFileAtomically(path.join(tmp, JOB_FILE), JSON.stringify(job, null, 2) + '\n');
    await writeFileAtomically(path.join(tmp, LAUNCH_SCRIPT), launchScript(j.launcher, j.topology));
    await fs.chmod(path.join(tmp, LAUNCH_SCRIPT), 0o755);
  });
  return jobDir;
}

/** The run record of an existing job folder (resume), or null when there is none. */
export async function readJobRecord(outDir: string): Promise<JobRecord | null> {
  let text: string;
  try {
    text = await fs.readFile(path.join(outDir, JOB_DIR, JOB_FILE), 'utf8');
  } catch {
    return null;
  }
  try {
    const j = JSON.parse(text) as { format?: string; run?: JobRecord };
    if (j.format !== JOB_FORMAT || !j.run) throw new Error('format');
    return j.run;
  } catch {
    throw new FopeifyError('BAD_ARGUMENT', `${path.join(outDir, JOB_DIR, JOB_FILE)} is not a fopeify torch job file`);
  }
}
