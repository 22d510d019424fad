/**
 * The weights of a model folder: one or many safetensors shards, addressed by tensor name.
 * Only headers are read on open; tensor data is read one tensor at a time.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FopeifyError } from '../errors.js';
import { MAX_INDEX_BYTES, ModelFolder } from './model-folder.js';
import { SafetensorsFile, type ReadFloat32Options, type TensorInfo } from './safetensors.js';

export const INDEX_FILE = 'model.safetensors.index.json';
const PICKLE_PATTERN = /\.(bin|pt|pth|ckpt|pkl)$/;

export interface CheckpointTensor extends TensorInfo {
  /** Shard file name (relative to the folder). */
  file: string;
}

export class Checkpoint {
  private constructor(
    readonly dir: string,
    readonly shards: Map<string, SafetensorsFile>,
    readonly tensors: Map<string, CheckpointTensor>,
    /** The index file's weight_map when the checkpoint is sharded with an index. */
    readonly indexed: boolean,
  ) {}

  static async open(dir: string): Promise<Checkpoint> {
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch {
      throw new FopeifyError('MODEL_NOT_FOUND', `model folder not found: ${dir}`);
    }
    const folder = ModelFolder.at(dir);
    const shardFiles: string[] = [];
    let indexed = false;
    const index = names.includes(INDEX_FILE)
      ? ((await folder.readJson(INDEX_FILE, { maxBytes: MAX_INDEX_BYTES, code: 'BAD_SAFETENSORS' })) as { weight_map?: Record<string, unknown> } | undefined)
      : undefined; // a dangling index link counts as no index: the shards are read as they are
    if (index !== undefined) {
      indexed = true;
      if (!index || typeof index !== 'object' || !index.weight_map || typeof index.weight_map !== 'object' || Array.isArray(index.weight_map)) {
        throw new FopeifyError('BAD_SAFETENSORS', `${path.join(dir, INDEX_FILE)} has no weight_map`);
      }
      for (const f of new Set(Object.values(index.weight_map))) {
        if (typeof f !== 'string' || f.includes('/') || f.includes('\\') || f.startsWith('.')) {
          throw new FopeifyError('BAD_SAFETENSORS', `${INDEX_FILE} names an invalid shard: ${typeof f === 'string' ? JSON.stringify(f.slice(0, 200)) : typeof f}`);
        }
        if (!names.includes(f)) {
          throw new FopeifyError('MISSING_SHARD', `${INDEX_FILE} names shard ${f}, which is missing from ${dir}`);
        }
        shardFiles.push(f);
      }
      const shards = await openShards(folder, shardFiles.sort());
      const tensors = new Map<string, CheckpointTensor>();
      for (const [name, file] of Object.entries(index.weight_map as Record<string, string>)) {
        const info = shards.get(file)!.tensors.get(name);
        if (!info) {
          await closeAll(shards);
          throw new FopeifyError('BAD_SAFETENSORS', `${INDEX_FILE} says ${name} is in ${file}, but that shard does not hold it`);
        }
        tensors.set(name, { ...info, file });
      }
      return new Checkpoint(dir, shards, tensors, indexed);
    }
    for (const n of names) if (n.endsWith('.safetensors')) shardFiles.push(n);
    if (!shardFiles.length) {
      const pickles = names.filter((n) => PICKLE_PATTERN.test(n));
      if (pickles.length) {
        throw new FopeifyError(
          'PICKLE_ONLY',
          `${dir} has only pickle weights (${pickles.join(', ')}); fopeify never unpickles. Convert them to safetensors first (e.g. transformers' save_pretrained(safe_serialization=True)).`,
        );
      }
      throw new FopeifyError('MODEL_NOT_FOUND', `${dir} has no .safetensors weights`);
    }
    const shards = await openShards(folder, shardFiles.sort());
    const tensors = new Map<string, CheckpointTensor>();
    for (const [file, st] of shards) {
      for (const [name, info] of st.tensors) {
        if (tensors.has(name)) {
          await closeAll(shards);
          throw new FopeifyError('BAD_SAFETENSORS', `tensor ${name} appears in both ${tensors.get(name)!.file} and ${file}`);
        }
        tensors.set(name, { ...info, file });
      }
    }
    return new Checkpoint(dir, shards, tensors, indexed);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): CheckpointTensor {
    const t = this.tensors.get(name);
    if (!t) throw new FopeifyError('BAD_SAFETENSORS', `checkpoint in ${this.dir} has no tensor ${name}`);
    return t;
  }

  async readBytes(name: string): Promise<Uint8Array> {
    return this.shards.get(this.info(name).file)!.readBytes(name);
  }

  async readFloat32(name: string, options: ReadFloat32Options = {}): Promise<Float32Array> {
    return this.shards.get(this.info(name).file)!.readFloat32(name, options);
  }

  /** Parameter count (elements of every tensor). */
  get parameterCount(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.shape.reduce((a, b) => a * b, 1);
    return n;
  }

  /** dtype → element count, to report the checkpoint's dtype(s). */
  dtypeCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const t of this.tensors.values()) out[t.dtype] = (out[t.dtype] ?? 0) + t.shape.reduce((a, b) => a * b, 1);
    return out;
  }

  async close(): Promise<void> {
    await closeAll(this.shards);
  }
}

/** Open each shard through the folder's checks: a missing or dangling one is MISSING_SHARD, an unsafe one UNSAFE_PATH. */
async function openShards(folder: ModelFolder, files: string[]): Promise<Map<string, SafetensorsFile>> {
  const shards = new Map<string, SafetensorsFile>();
  try {
    for (const f of files) {
      const opened = await folder.open(f);
      if (!opened) throw new FopeifyError('MISSING_SHARD', `shard ${f} is missing from ${folder.dir} (absent, or a dangling symlink)`);
      shards.set(f, await SafetensorsFile.fromHandle(opened.path, opened.handle));
    }
  } catch (err) {
    await closeAll(shards);
    throw err;
  }
  return shards;
}

async function closeAll(shards: Map<string, SafetensorsFile>): Promise<void> {
  for (const s of shards.values()) await s.close();
}
