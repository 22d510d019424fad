/**
 * Training checkpoints: `<out>/checkpoints/step-NNNNNNNN/` with the trainable tensors
 * (trainable.safetensors, float32), the AdamW moments (optimizer.safetensors), and state.json (step,
 * data position, RNG state, the resolved settings, the model config after conversion). Each folder is
 * written atomically. Frozen weights are not copied: resume reloads them from the model argument and
 * re-applies the (deterministic) conversion, checked against the saved config.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '../backend/tfjs.js';
import { FopeifyError } from '../errors.js';
import { writeFileAtomically, writeFolderAtomically } from '../io/atomic.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import type { DataPosition } from './data.js';
import type { AdamW } from './optimizer.js';
import type { ConversionInfo } from './prepare.js';
import type { TrainSettings } from './recipe.js';

export const CHECKPOINTS_DIR = 'checkpoints';
const TRAINABLE_FILE = 'trainable.safetensors';
const OPTIMIZER_FILE = 'optimizer.safetensors';
const STATE_FILE = 'state.json';

export interface CheckpointState {
  format: 'fopeify-finetune-checkpoint';
  version: 1;
  /** Optimizer steps done. */
  step: number;
  dataPosition: DataPosition;
  rngState: number[];
  /** Tokens trained on so far. */
  tokens: number;
  /** Training seconds so far (all runs). */
  seconds: number;
  settings: TrainSettings;
  /** Recipe name or file as given, null for none. */
  recipe: string | null;
  /** The model argument the run started from. */
  model: string;
  /** config.json of the model being trained (after the recipe conversion). */
  config: Record<string, unknown>;
  conversion: ConversionInfo;
  /** Description of the training data. */
  data: string;
  /** The --data argument (null for in-memory texts), the default of a resumed run. */
  dataArg: string | null;
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

/** A float32 tensor's bytes, read asynchronously (the backing array itself on tfjs cpu: no copy). */
export async function f32Bytes(t: tf.Tensor): Promise<Uint8Array> {
  const d = (await t.data()) as Float32Array;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

function tensorsToWrite(entries: [string, tf.Tensor][]): TensorToWrite[] {
  return entries.map(([name, t]) => ({ name, dtype: 'F32' as const, shape: [...t.shape], data: () => f32Bytes(t) }));
}

/** Write a checkpoint for `state.step`; returns its folder. */
export async function saveCheckpoint(outDir: string, state: CheckpointState, params: Map<string, tf.Variable>, optimizer: AdamW): Promise<string> {
  const dir = path.join(outDir, CHECKPOINTS_DIR, checkpointName(state.step));
  await writeFolderAtomically(dir, { force: true }, async (tmp) => {
    await writeSafetensors(path.join(tmp, TRAINABLE_FILE), tensorsToWrite([...params]), { format: 'pt', fopeify: 'finetune-checkpoint' });
    const moments: TensorToWrite[] = [];
    for (const [name, p] of params) {
      const { m, v } = await optimizer.moments(name);
      for (const [key, data] of [[`m/${name}`, m], [`v/${name}`, v]] as const) {
        moments.push({ name: key, dtype: 'F32', shape: [...p.shape], data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
      }
    }
    await writeSafetensors(path.join(tmp, OPTIMIZER_FILE), moments, { optimizer_step: String(optimizer.step) });
    await writeFileAtomically(path.join(tmp, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
  });
  return dir;
}

/** Checkpoint folders under `outDir`, oldest first. */
export async function listCheckpoints(outDir: string): Promise<{ dir: string; step: number }[]> {
  const root = path.join(outDir, CHECKPOINTS_DIR);
  let names: string[];
  try {
    names = await fs.readdir(root);
  } catch {
    return [];
  }
  const out: { dir: string; step: number }[] = [];
  for (const n of names) {
    const m = /^step-(\d+)$/.exec(n);
    if (!m) continue;
    try {
      await fs.access(path.join(root, n, STATE_FILE));
      out.push({ dir: path.join(root, n), step: Number(m[1]) });
    } catch {
      // incomplete (cannot happen with atomic writes, but never resume from one)
    }
  }
  return out.sort((a, b) => a.step - b.step);
}

export async function latestCheckpoint(outDir: string): Promise<string | null> {
  const all = await listCheckpoints(outDir);
  return all.length ? all[all.length - 1]!.dir : null;
}

/** Remove all but the newest `keep` checkpoints (keep 0: the whole checkpoints folder). */
export async function pruneCheckpoints(outDir: string, keep: number): Promise<void> {
  if (keep <= 0) {
    await fs.rm(path.join(outDir, CHECKPOINTS_DIR), { recursive: true, force: true });
    return;
  }
  const all = await listCheckpoints(outDir);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) await fs.rm(c.dir, { recursive: true, force: true });
}

export async function readCheckpointState(dir: string): Promise<CheckpointState> {
  let state: CheckpointState;
  try {
    state = JSON.parse(await fs.readFile(path.join(dir, STATE_FILE), 'utf8')) as CheckpointState;
  } catch (err) {
    throw new FopeifyError('BAD_ARGUMENT', `checkpoint ${dir} has no readable ${STATE_FILE}: ${(err as Error).message}`);
  }
  if (state.format !== 'fopeify-finetune-checkpoint' || state.version !== 1) {
    throw new FopeifyError('BAD_ARGUMENT', `${dir} is not a fopeify fine-tuning checkpoint (format ${String(state.format)} v${String(state.version)})`);
  }
  return state;
}

/** Load trainable tensors and optimizer moments into the given variables (names and shapes must match). */
export async function restoreCheckpoint(dir: string, params: Map<string, tf.Variable>, optimizer: AdamW): Promise<void> {
  const open = async <T>(file: string, expected: string[], use: (st: SafetensorsFile) => Promise<T>): Promise<T> => {
    const st = await SafetensorsFile.open(path.join(dir, file));
    try {
      const names = new Set(st.tensors.keys());
      for (const name of expected) {
        if (!names.has(name)) throw new FopeifyError('BAD_ARGUMENT', `checkpoint ${dir} lacks ${name}: it was written for another trainable set`);
      }
      if (names.size !== expected.length) {
        throw new FopeifyError('BAD_ARGUMENT', `checkpoint ${dir} has ${names.size} tensors in ${file}, the run trains ${expected.length / (file === OPTIMIZER_FILE ? 2 : 1)}`);
      }
      return await use(st);
    } finally {
      await st.close();
    }
  };
  const read = async (st: SafetensorsFile, name: string, shape: readonly number[]) => {
    const info = st.info(name);
    if (info.shape.join() !== shape.join()) throw new FopeifyError('BAD_ARGUMENT', `checkpoint ${dir}: ${name} has shape [${info.shape}], the model has [${shape}]`);
    return st.readFloat32(name);
  };
  await open(TRAINABLE_FILE, [...params.keys()], async (st) => {
    for (const [name, v] of params) {
      const data = await read(st, name, v.shape);
      tf.tidy(() => v.assign(tf.tensor(data, v.shape, 'float32')));
    }
  });
  const expected = [...params.keys()].flatMap((n) => [`m/${n}`, `v/${n}`]);
  const meta = await open(OPTIMIZER_FILE, expected, async (st) => {
    for (const [name, v] of params) optimizer.setMoments(name, await read(st, `m/${name}`, v.shape), await read(st, `v/${name}`, v.shape));
    return st.metadata;
  });
  const step = Number(meta.optimizer_step);
  if (!Number.isInteger(step) || step < 0) throw new FopeifyError('BAD_ARGUMENT', `checkpoint ${dir}: bad optimizer_step`);
  optimizer.step = step;
}
