/**
 * The fine-tuned model folder: config.json with the final RoPE / YaRN / FoPE settings, safetensors
 * (LoRA merged, or the base weights plus a PEFT adapter), the tokenizer files, a model card with the
 * training settings, the loss curve (SVG and PNG) and finetune.json (the resolved settings and results).
 * Files are written into a temporary folder inside the output folder and renamed into place one by one,
 * so no reader ever sees a half-written file; metrics.jsonl and checkpoints/ stay where they are.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '../backend/tfjs.js';
import { fopeFolderConfig, writeRemoteCode } from '../bridge/remote-code.js';
import { hasFopeArchName } from '../config/fope-arch.js';
import { SIDECAR_FILES } from '../convert/convert.js';
import { outputError } from '../errors.js';
import { lineChartPng, lineChartSvg, type LineSeries } from '../plot/chart.js';
import { appendToFile, writeFileAtomically } from '../io/atomic.js';
import { METRICS_FILE, SUMMARY_FILE, type MetricsRecord } from '../io/formats.js';
import { ModelFolder } from '../io/model-folder.js';
import { encodeFromF32, FLOAT_DTYPE_NAMES, type FloatDtypeName } from '../io/dtype.js';
import { removeStaleTemps, tempSibling } from '../io/output-folder.js';
import { writeSafetensors, writeShardedSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { VERSION } from '../version.js';
import { isFopeCoefficient, loraNames, modulesToSave, peftAdapterConfig, peftTensorName } from './lora.js';
import { f32Bytes } from './checkpoint.js';
import type { TrainingModel } from './model.js';

export type OutputDtype = FloatDtypeName;

export const LOSS_CURVE_SVG = 'loss_curve.svg';
export const LOSS_CURVE_PNG = 'loss_curve.png';
export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

async function bytesOf(t: tf.Tensor, dtype: OutputDtype): Promise<Uint8Array> {
  if (dtype === 'f32') return f32Bytes(t);
  return encodeFromF32((await t.data()) as Float32Array, FLOAT_DTYPE_NAMES[dtype].safetensors);
}

/** Read metrics.jsonl (ignoring a torn last line). */
export async function readMetrics(outDir: string): Promise<MetricsRecord[]> {
  let text: string;
  try {
    text = await fs.readFile(path.join(outDir, METRICS_FILE), 'utf8');
  } catch {
    return [];
  }
  const out: MetricsRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as MetricsRecord);
    } catch {
      break;
    }
  }
  return out;
}

/** Keep the records of steps ≤ `step` (resume: the steps after the checkpoint are trained again). */
export async function truncateMetrics(outDir: string, step: number): Promise<void> {
  const kept = (await readMetrics(outDir)).filter((r) => r.step <= step);
  await writeFileAtomically(path.join(outDir, METRICS_FILE), kept.map((r) => JSON.stringify(r) + '\n').join(''));
}

export async function appendMetrics(outDir: string, record: MetricsRecord): Promise<void> {
  await appendToFile(path.join(outDir, METRICS_FILE), JSON.stringify(record) + '\n');
}

/** The loss curve: training loss per step and held-out loss at each evaluation. */
export function lossCurveSeries(records: MetricsRecord[]): LineSeries[] {
  const series: LineSeries[] = [{ name: 'train loss', points: records.map((r) => [r.step, r.loss]) }];
  const ev = records.filter((r) => typeof r.eval_loss === 'number');
  if (ev.length) series.push({ name: 'held-out loss', points: ev.map((r) => [r.step, r.eval_loss!]) });
  return series;
}

export async function writeLossCurve(dir: string, records: MetricsRecord[], title: string): Promise<string[]> {
  if (!records.length) return [];
  const opts = { title, xLabel: 'step', yLabel: 'loss', series: lossCurveSeries(records), logX: false };
  await writeFileAtomically(path.join(dir, LOSS_CURVE_SVG), lineChartSvg(opts));
  await writeFileAtomically(path.join(dir, LOSS_CURVE_PNG), lineChartPng(opts));
  return [LOSS_CURVE_SVG, LOSS_CURVE_PNG];
}

/** Write the final model folder files into `outDir` (see the file comment). Returns the files written. */
export async function writeModelFolder(options: {
  outDir: string;
  sourceDir: string;
  model: TrainingModel;
  config: Record<string, unknown>;
  dtype: OutputDtype;
  loraSave: 'merged' | 'adapter';
  baseModel: string;
  card: string;
  /** finetune.json (a FinetuneJson; typed loosely until the run plan builds it as one). */
  summary: unknown;
  metrics: MetricsRecord[];
  maxShardBytes?: number;
}): Promise<string[]> {
  const { outDir, model, dtype } = options;
  await removeStaleTemps(outDir);
  const tmp = tempSibling(path.join(outDir, 'model'));
  try {
    await fs.mkdir(tmp, { recursive: true });
  } catch (err) {
    throw outputError(err, outDir);
  }
  const files: string[] = [];
  const merged: tf.Tensor[] = [];
  try {
    const adapter = model.lora.size > 0 && options.loraSave === 'adapter';
    const tensors: TensorToWrite[] = [];
    for (const [name, v] of model.weights) {
      let t: tf.Tensor = v;
      const l = model.lora.get(name);
      if (l && !adapter) {
        t = tf.tidy(() => tf.add(v, tf.mul(tf.matMul(model.params.get(l.b)! as tf.Tensor2D, model.params.get(l.a)! as tf.Tensor2D), model.loraScale)));
        merged.push(t);
      }
      const coef = isFopeCoefficient(name);
      const dt: OutputDtype = coef ? 'f32' : dtype;
      tensors.push({ name, dtype: FLOAT_DTYPE_NAMES[dt].safetensors, shape: [...t.shape], data: () => bytesOf(t, dt) });
    }
    const sharded = await writeShardedSafetensors(tmp, tensors, { maxShardBytes: options.maxShardBytes ?? 2 * 1024 ** 3, metadata: { format: 'pt', fopeify_version: VERSION } });
    files.push(...sharded.files);
    if (sharded.files.length > 1) files.push('model.safetensors.index.json');
    if (adapter) {
      const direct = [...model.params.keys()].filter((n) => model.weights.has(n));
      const adapterTensors: TensorToWrite[] = [];
      for (const [base, n] of model.lora) {
        for (const name of [n.a, n.b]) {
          const t = model.params.get(name)!;
          adapterTensors.push({ name: peftTensorName(name), dtype: 'F32', shape: [...t.shape], data: () => bytesOf(t, 'f32') });
        }
        void base;
      }
      for (const name of direct) {
        const t = model.weights.get(name)!;
        adapterTensors.push({ name: peftTensorName(name), dtype: 'F32', shape: [...t.shape], data: () => bytesOf(t, 'f32') });
      }
      await writeSafetensors(path.join(tmp, ADAPTER_WEIGHTS), adapterTensors, { format: 'pt' });
      const cfg = peftAdapterConfig(model.options.lora, options.baseModel, modulesToSave(direct));
      await writeFileAtomically(path.join(tmp, ADAPTER_CONFIG), JSON.stringify(cfg, null, 2) + '\n');
      files.push(ADAPTER_WEIGHTS, ADAPTER_CONFIG);
    }
    // A FoPE model is written as remote code under its own name (transformers then runs FoPE, not RoPE).
    const config = fopeFolderConfig({ ...options.config, torch_dtype: FLOAT_DTYPE_NAMES[dtype].torch }, model.fopeLayout);
    await writeFileAtomically(path.join(tmp, 'config.json'), JSON.stringify(config, null, 2) + '\n');
    files.push('config.json');
    if (hasFopeArchName(config)) files.push(...(await writeRemoteCode(tmp)));
    // Through the source folder's checks: a sidecar linked from outside it (a key file) is refused, not copied.
    const source = ModelFolder.at(options.sourceDir);
    for (const f of SIDECAR_FILES) if (await source.copyTo(f, path.join(tmp, f))) files.push(f);
    await writeFileAtomically(path.join(tmp, 'README.md'), options.card);
    files.push('README.md');
    files.push(...(await writeLossCurve(tmp, options.metrics, 'fine-tuning loss')));
    await writeFileAtomically(path.join(tmp, SUMMARY_FILE), JSON.stringify(options.summary, null, 2) + '\n');
    files.push(SUMMARY_FILE);
    // Weights of an earlier layout (another shard count) would confuse loaders: remove them first.
    try {
      for (const f of await fs.readdir(outDir)) {
        if (/^model(-\d+-of-\d+)?\.safetensors$|^model\.safetensors\.index\.json$/.test(f) && !files.includes(f)) await fs.rm(path.join(outDir, f));
      }
      for (const f of files) await fs.rename(path.join(tmp, f), path.join(outDir, f));
    } catch (err) {
      throw outputError(err, outDir);
    }
    return files;
  } finally {
    tf.dispose(merged);
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** Names of the LoRA tensors PEFT expects for a base weight (for tests and tools). */
export function peftLoraTensorNames(base: string): { a: string; b: string } {
  const n = loraNames(base);
  return { a: peftTensorName(n.a), b: peftTensorName(n.b) };
}
