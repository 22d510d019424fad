import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { setupBackend } from '../../src/backend/select.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { writeSafetensors } from '../../src/io/safetensors.js';

/** The plain tfjs cpu backend: what every machine has. */
export async function useCpu(): Promise<void> {
  await setupBackend({ backend: 'cpu', quiet: true });
}

/** Logits tensor [1, T, V] → rows of plain numbers, disposing it. */
export function rows(t: tf.Tensor3D): Float32Array[] {
  const [, T, V] = t.shape;
  const d = t.dataSync() as Float32Array;
  t.dispose();
  return Array.from({ length: T }, (_, i) => d.slice(i * V, (i + 1) * V));
}

/** Copy a model folder with every tensor renamed (e.g. to `model.language_model.*`). */
export async function renameTensors(
  src: string,
  dst: string,
  rename: (name: string) => string,
  configEdit?: (c: Record<string, unknown>) => void,
  extra: { name: string; shape: number[]; data: Float32Array }[] = [],
): Promise<void> {
  await fs.mkdir(dst, { recursive: true });
  const ckpt = await Checkpoint.open(src);
  const tensors = [];
  for (const [name, info] of ckpt.tensors) {
    tensors.push({ name: rename(name), dtype: info.dtype, shape: info.shape, data: await ckpt.readBytes(name) });
  }
  await ckpt.close();
  for (const e of extra) tensors.push({ name: e.name, dtype: 'F32', shape: e.shape, data: new Uint8Array(e.data.buffer) });
  await writeSafetensors(path.join(dst, 'model.safetensors'), tensors, { format: 'pt' });
  const cfg = JSON.parse(await fs.readFile(path.join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  configEdit?.(cfg);
  await fs.writeFile(path.join(dst, 'config.json'), JSON.stringify(cfg));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
    await fs.copyFile(path.join(src, f), path.join(dst, f)).catch(() => undefined);
  }
}

/** Overwrite FoPE coefficient tensors of a FoPE folder with given values (same shapes). */
export async function setCoefficients(dir: string, values: (name: string, shape: number[]) => Float32Array): Promise<void> {
  const file = path.join(dir, 'fope_coefficients.safetensors');
  const ckpt = await Checkpoint.open(dir);
  const tensors = [];
  for (const [name, info] of ckpt.tensors) {
    if (!name.endsWith('_coef')) continue;
    tensors.push({ name, dtype: 'F32' as const, shape: info.shape, data: new Uint8Array(values(name, info.shape).buffer) });
  }
  await ckpt.close();
  await fs.rm(file);
  await writeSafetensors(file, tensors, { format: 'pt' });
}
