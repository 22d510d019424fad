/**
 * `fopeify convert`: rewrite a RoPE checkpoint's rotary embedding into FoPE. Original shards are hard-linked
 * (or copied) byte for byte; the coefficients go into a new shard; config, index, card and provenance are
 * written fresh; the whole folder appears atomically.
 */
import path from 'node:path';
import { loadModelSpec } from '../config/load.js';
import type { ModelSpec } from '../config/model-spec.js';
import { badOption, FopeifyError } from '../errors.js';
import { writeRemoteCode } from '../bridge/remote-code.js';
import { resolveModel } from '../hub/resolve.js';
import type { ModelSourceOptions, ResolvedModel } from '../hub/source.js';
import { linkOrCopy, writeFileAtomically, writeFolderAtomically } from '../io/atomic.js';
import { requireOutputPath } from '../io/output-folder.js';
import { Checkpoint, INDEX_FILE } from '../io/checkpoint.js';
import { convertBytes, dtypeSize, FLOAT_DTYPE_NAMES, isFloatDtype, type FloatDtype } from '../io/dtype.js';
import { FOPEIFY_JSON, type FopeifyJson, type ProvenanceFile } from '../io/formats.js';
import { sha256File } from '../io/hash.js';
import { ModelFolder } from '../io/model-folder.js';
import { SIDECAR_FILES } from '../io/model-files.js';
import { numel, writeIndex, writeSafetensors } from '../io/safetensors.js';
import { VERSION } from '../version.js';
import { convertModelCard } from './model-card.js';
import { DEFAULT_SETTINGS, planConversion, type ConversionPlan, type ConvertSettings } from './plan.js';

export const COEFFICIENT_SHARD = 'fope_coefficients.safetensors';

/**
 * The output name of a source shard. A single `model.safetensors` is renamed: transformers loads a folder's
 * `model.safetensors` alone when it exists and never reads the index, so it would miss the coefficient shard.
 */
export function outputShardName(file: string): string {
  return file === 'model.safetensors' ? 'model-00001-of-00001.safetensors' : file;
}

/** Files convert writes fresh into the output: a source shard may not carry one of these names. */
const GENERATED_FILES = ['config.json', 'README.md', FOPEIFY_JSON, INDEX_FILE];

/**
 * The coefficient shard's name: fope_coefficients.safetensors, or -2, -3, ... when the source already has
 * a shard of that name (whose tensors are kept, linked, under its own name). Compared without case for
 * case-insensitive file systems.
 */
export function coefficientShardName(taken: Iterable<string>): string {
  const names = new Set([...taken].map((n) => n.toLowerCase()));
  let name = COEFFICIENT_SHARD;
  for (let i = 2; names.has(name.toLowerCase()); i++) name = COEFFICIENT_SHARD.replace(/\.safetensors$/, `-${i}.safetensors`);
  return name;
}

export { SIDECAR_FILES } from '../io/model-files.js';

export interface ConvertOptions extends Partial<ConvertSettings>, ModelSourceOptions {
  /** Model folder or Hub id. */
  model: string;
  /** Output folder (created atomically). */
  outDir: string;
  /** Compute sha256 of every source file (reads all data). */
  hash?: boolean;
  /** Replace a non-empty output folder. */
  force?: boolean;
  onStep?: (text: string) => void;
}

export interface ConvertResult {
  outDir: string;
  k: number;
  headDimHalf: number;
  clipLength: number;
  clipped: { index: number; invFreq: number; wavelength: number }[];
  coefficientShape: number[];
  coefficientNames: string[];
  shards: { file: string; action: 'linked' | 'copied' | 'reencoded' | 'written' }[];
  maxPositionEmbeddings: number;
  attentionFactor: number;
  seconds: number;
}


function settingsFrom(o: ConvertOptions): ConvertSettings {
  return {
    ...DEFAULT_SETTINGS,
    ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)),
  } as ConvertSettings;
}

export async function convertModel(options: ConvertOptions): Promise<ConvertResult> {
  const started = Date.now();
  requireOutputPath(options.outDir, 'outDir');
  const settings = settingsFrom(options);
  if (settings.layout !== 'shared' && settings.layout !== 'per-layer') {
    throw badOption('layout', `\`layout\` must be shared or per-layer (got ${String(settings.layout)})`);
  }
  if (!['keep', 'f32', 'bf16', 'f16'].includes(settings.dtype)) {
    throw badOption('dtype', `\`dtype\` must be keep, f32, bf16 or f16 (got ${String(settings.dtype)})`);
  }
  const source = await resolveModel(options.model, options);
  const spec = await loadModelSpec(source.dir);
  const plan = planConversion(spec, settings);
  const ckpt = await Checkpoint.open(source.dir);
  try {
    for (const c of plan.coefficients) {
      if (ckpt.has(c.name)) throw new FopeifyError('BAD_ARGUMENT', `the checkpoint already has ${c.name}`);
    }
    const reserved = new Set([...GENERATED_FILES, ...SIDECAR_FILES].map((f) => f.toLowerCase()));
    for (const file of ckpt.shards.keys()) {
      if (reserved.has(file.toLowerCase())) throw new FopeifyError('BAD_SAFETENSORS', `the checkpoint has a weight shard named ${file}, a file convert writes itself; rename the shard`);
    }
    const coefficientShard = coefficientShardName(ckpt.shards.keys());
    options.onStep?.('hashing source files');
    const sourceFiles = await describeSourceFiles(source, options.hash ?? false);
    const shards: ConvertResult['shards'] = [];
    const outDir = path.resolve(options.outDir);
    const result = await writeFolderAtomically(outDir, { force: options.force, sources: [source.dir] }, async (tmp) => {
      const weightMap: Record<string, string> = {};
      let totalSize = 0;
      const target = settings.dtype === 'keep' ? undefined : FLOAT_DTYPE_NAMES[settings.dtype].safetensors;
      let n = 0;
      for (const [file, shard] of ckpt.shards) {
        options.onStep?.(`shard ${++n}/${ckpt.shards.size}: ${file}`);
        const outFile = outputShardName(file);
        const needsReencode = target !== undefined && [...shard.tensors.values()].some((t) => isFloatDtype(t.dtype) && t.dtype !== target);
        if (needsReencode) {
          // Re-encode tensor by tensor: only one tensor's bytes are in memory at a time.
          const tensors = [...shard.tensors.values()].map((t) => {
            const to = isFloatDtype(t.dtype) ? target! : t.dtype;
            return { name: t.name, dtype: to, shape: t.shape, data: async () => (to === t.dtype ? shard.readBytes(t.name) : convertBytes(await shard.readBytes(t.name), t.dtype, to as FloatDtype)) };
          });
          await writeSafetensors(path.join(tmp, outFile), tensors, shard.metadata);
          for (const t of tensors) totalSize += numel(t.shape) * dtypeSize(t.dtype);
          shards.push({ file: outFile, action: 'reencoded' });
        } else {
          shards.push({ file: outFile, action: await linkOrCopy(path.join(source.dir, file), path.join(tmp, outFile)) });
          for (const t of shard.tensors.values()) totalSize += t.end - t.begin;
        }
      }
      for (const [name, t] of ckpt.tensors) weightMap[name] = outputShardName(t.file);
      await writeSafetensors(
        path.join(tmp, coefficientShard),
        plan.coefficients.map((c) => ({ name: c.name, dtype: 'F32' as const, shape: c.shape, data: new Uint8Array(c.data.buffer) })),
        { format: 'pt', fopeify_version: VERSION },
      );
      shards.push({ file: coefficientShard, action: 'written' });
      for (const c of plan.coefficients) {
        weightMap[c.name] = coefficientShard;
        totalSize += numel(c.shape) * 4;
      }
      await writeIndex(path.join(tmp, INDEX_FILE), weightMap, totalSize);
      await writeFileAtomically(path.join(tmp, 'config.json'), JSON.stringify(plan.config, null, 2) + '\n');
      // The remote code transformers (and vLLM through it) runs as FoPE; copied, never generated.
      if (settings.archName === 'fope') await writeRemoteCode(tmp);
      // Through the folder's checks: a sidecar linked from outside the folder (a key file) is refused, not copied.
      for (const f of SIDECAR_FILES) await ModelFolder.at(source.dir).copyTo(f, path.join(tmp, f));
      const result = summarize(plan, outDir, shards, spec.rope.dim / 2, started);
      await writeFileAtomically(path.join(tmp, 'README.md'), modelCard(source, plan, settings, result));
      await writeFileAtomically(path.join(tmp, FOPEIFY_JSON), JSON.stringify(provenance(source, sourceFiles, settings, spec, plan, result, options.hash ?? false), null, 2) + '\n');
      return result;
    });
    // The time includes the final rename.
    return { ...result, seconds: (Date.now() - started) / 1000 };
  } finally {
    await ckpt.close();
  }
}


function summarize(plan: ConversionPlan, outDir: string, shards: ConvertResult['shards'], half: number, started: number): ConvertResult {
  return {
    outDir,
    k: plan.k,
    headDimHalf: half,
    clipLength: plan.clipLength,
    clipped: plan.frequencies.filter((f) => !f.kept).map(({ index, invFreq, wavelength }) => ({ index, invFreq, wavelength })),
    coefficientShape: plan.coefficients[0]!.shape,
    coefficientNames: plan.coefficients.map((c) => c.name),
    shards,
    maxPositionEmbeddings: plan.maxPositionEmbeddings,
    attentionFactor: plan.attentionFactor,
    seconds: (Date.now() - started) / 1000,
  };
}

async function describeSourceFiles(source: ResolvedModel, hash: boolean): Promise<ProvenanceFile[]> {
  const out: ProvenanceFile[] = [];
  for (const f of source.files) {
    const entry: ProvenanceFile = { path: f.path, size: f.size };
    if (hash) {
      entry.sha256 = await sha256File(path.join(source.dir, f.path));
      entry.sha256_source = 'computed';
    } else if (f.sha256) {
      entry.sha256 = f.sha256;
      entry.sha256_source = source.kind === 'hub' ? 'lfs-etag' : 'hub-cache-blob';
    }
    out.push(entry);
  }
  return out;
}

function provenance(
  source: ResolvedModel,
  files: ProvenanceFile[],
  settings: ConvertSettings,
  spec: ModelSpec,
  plan: ConversionPlan,
  result: ConvertResult,
  hashed: boolean,
): FopeifyJson {
  return {
    tool: 'fopeify',
    version: VERSION,
    command: 'convert',
    created_at: new Date().toISOString(),
    source: { id: source.id, kind: source.kind, revision: source.revision ?? null, commit: source.commit ?? null },
    source_files: files,
    hashed_all_files: hashed,
    options: {
      init_factor: settings.initFactor,
      clip_length: settings.clipLength ?? null,
      num_inv_freq: settings.numInvFreq ?? null,
      sep_head: settings.sepHead,
      layout: settings.layout,
      sin_pad: settings.sinPad,
      seed: settings.seed,
      yarn: settings.yarn ?? null,
      original_length: settings.originalLength ?? null,
      beta_fast: settings.betaFast,
      beta_slow: settings.betaSlow,
      dtype: settings.dtype,
      arch_name: settings.archName,
    },
    base_model_type: spec.family,
    fope: {
      family: 'B',
      num_inv_freq: plan.k,
      clip_length: plan.clipLength,
      coefficient_shape: result.coefficientShape,
      coefficient_tensors: result.coefficientNames,
      coefficient_init: 'I + xavier_normal(gain = init_factor), seeded xoshiro128** streams "<layer>sin"/"<layer>cos"',
      yarn_semantics: settings.yarn !== undefined ? 'hf: YaRN inv_freq first, clipped against the extended max_position_embeddings, attention factor on cos and sin' : null,
      attention_factor: plan.attentionFactor,
      kept: plan.frequencies.filter((f) => f.kept).map((f) => ({ index: f.index, inv_freq: f.invFreq, wavelength: f.wavelength })),
      clipped: result.clipped.map((f) => ({ index: f.index, inv_freq: f.invFreq, wavelength: f.wavelength })),
    },
    rope: { rope_type: plan.rope.type, rope_theta: plan.rope.theta, dim: plan.rope.dim, max_position_embeddings: plan.maxPositionEmbeddings, ...plan.rope.params },
    output_shards: result.shards,
  };
}

function modelCard(source: ResolvedModel, plan: ConversionPlan, s: ConvertSettings, r: ConvertResult): string {
  const lines = [
    `Rotary embedding replaced by FoPE: kept the ${plan.k} highest of ${r.headDimHalf} frequencies (those completing a period within ${plan.clipLength} tokens), removed ${r.clipped.length}.`,
    `Fourier coefficients initialised as I + xavier_normal(gain ${s.initFactor}) with seed ${s.seed}, frozen.`,
    ...(s.yarn !== undefined ? [`YaRN scaling added: factor ${s.yarn}, max_position_embeddings ${plan.maxPositionEmbeddings}.`] : []),
    s.dtype === 'keep' ? 'Original weights unchanged (byte-identical shards).' : `Weights re-encoded to ${s.dtype}.`,
  ];
  const yarnParams = plan.rope.type === 'yarn' && s.yarn !== undefined ? { factor: s.yarn, originalLength: plan.rope.params.original_max_position_embeddings as number, attentionFactor: plan.attentionFactor } : undefined;
  return convertModelCard({
    baseModel: source.id,
    lines,
    k: plan.k,
    headDimHalf: r.headDimHalf,
    clipLength: plan.clipLength,
    clippedWavelengths: r.clipped.map((c) => c.wavelength),
    yarn: yarnParams,
    initFactor: s.initFactor,
    sepHead: s.sepHead,
    layout: s.layout,
    sinPad: s.sinPad,
    coefficientNames: r.coefficientNames,
    coefficientShape: r.coefficientShape,
    archName: s.archName,
    loadId: `./${path.basename(r.outDir)}`,
  });
}
