/**
 * `fopeify inspect`: what a checkpoint is — family, shapes, RoPE type and frequencies, which frequencies
 * FoPE would remove at a length, and for FoPE checkpoints their settings and coefficient shapes.
 * Reads only config.json and safetensors headers.
 */
import { engineSupport, stockNameWarning, type EngineSupport } from '../bridge/engines.js';
import { missingRemoteCode } from '../bridge/remote-code.js';
import { hasFopeArchName, type ArchName } from '../config/fope-arch.js';
import { loadModelSpec } from '../config/load.js';
import type { ModelSpec } from '../config/model-spec.js';
import { findFopeCoefficients, type CoefFamily } from '../convert/fope-layout.js';
import { frequencyTable, type FrequencyRow } from '../convert/plan.js';
import { badOption, FopeifyError } from '../errors.js';
import { resolveModel } from '../hub/resolve.js';
import type { ModelSourceOptions } from '../hub/source.js';
import { Checkpoint } from '../io/checkpoint.js';
import { fopeKeptCount } from '../rope/fope.js';
import { ropeFrequencies } from '../rope/inv-freq.js';

export interface InspectOptions extends ModelSourceOptions {
  model: string;
  /** Length the frequencies are judged against. Default: max_position_embeddings. */
  length?: number;
}

export interface InspectReport {
  model: string;
  dir: string;
  source: 'folder' | 'cache' | 'hub';
  supported: boolean;
  unsupportedReason?: string;
  architecture?: string;
  family?: string;
  parameters: number;
  dtypes: Record<string, number>;
  tensors: number;
  shards: number;
  layers?: number;
  hiddenSize?: number;
  intermediateSize?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  vocabSize?: number;
  tiedEmbeddings?: boolean;
  qkvBias?: boolean;
  qkNorm?: boolean;
  maxPositionEmbeddings?: number;
  rope?: {
    type: string;
    theta: number;
    dim: number;
    params: Record<string, unknown>;
    attentionFactor: number;
  };
  /** The length L frequencies are judged against. */
  length?: number;
  /** How many complete a period within L (what FoPE keeps). */
  keptWithinLength?: number;
  frequencies?: FrequencyRow[];
  /** Things a user should know (e.g. FoPE tensors under a stock model_type). */
  warnings: string[];
  /** For a FoPE folder: how it names its architecture and which engines run it correctly (engines.md). */
  loading?: {
    archName: ArchName;
    modelType: string;
    baseFamily: string;
    /** Python files of a remote-code folder that are missing. */
    missingRemoteCode: string[];
    engines: EngineSupport[];
  };
  fope: null | {
    family: CoefFamily;
    initFactor: number | null;
    sepHead: boolean | null;
    numInvFreq: number | null;
    sinPad: 0 | 1;
    /** K as the coefficient shape says (authoritative when loading). */
    k: number;
    coefficientShape: number[];
    coefficientTensors: string[];
    perLayer: boolean;
  };
}

export async function inspectModel(options: InspectOptions): Promise<InspectReport> {
  const source = await resolveModel(options.model, options);
  let spec: ModelSpec | undefined;
  let unsupportedReason: string | undefined;
  try {
    spec = await loadModelSpec(source.dir);
  } catch (err) {
    // A family-A FoPE checkpoint (OLMo) or another architecture is still described from its tensors.
    if (err instanceof FopeifyError && err.code === 'UNSUPPORTED_ARCHITECTURE') unsupportedReason = err.message;
    else throw err;
  }
  const ckpt = await Checkpoint.open(source.dir);
  try {
    const report: InspectReport = {
      model: options.model,
      dir: source.dir,
      source: source.kind,
      supported: !!spec,
      ...(unsupportedReason ? { unsupportedReason } : {}),
      parameters: ckpt.parameterCount,
      dtypes: ckpt.dtypeCounts(),
      tensors: ckpt.tensors.size,
      shards: ckpt.shards.size,
      warnings: [],
      fope: null,
    };
    const found = findFopeCoefficients(ckpt.tensors.keys());
    if (found) {
      const shape = ckpt.info(found.sin[0]!).shape;
      report.fope = {
        family: found.family,
        initFactor: spec?.fope?.initFactor ?? null,
        sepHead: spec?.fope ? spec.fope.sepHead : shape.length === 3 ? true : null,
        numInvFreq: spec?.fope?.numInvFreq ?? null,
        sinPad: spec?.fope?.sinPad ?? 1,
        k: shape[shape.length - 2]!,
        coefficientShape: shape,
        coefficientTensors: [...found.sin, ...found.cos],
        perLayer: found.family !== 'B-shared',
      };
    } else if (spec?.fope) {
      throw new FopeifyError('BAD_SAFETENSORS', 'config.json has FoPE keys but the checkpoint holds no FoPE coefficient tensors');
    }
    if (report.fope && spec) {
      const archName: ArchName = hasFopeArchName(spec.raw) ? 'fope' : 'keep';
      const missing = archName === 'fope' ? await missingRemoteCode(source.dir) : [];
      report.loading = { archName, modelType: spec.modelType, baseFamily: spec.family, missingRemoteCode: missing, engines: engineSupport(archName) };
      if (archName === 'keep') report.warnings.push(stockNameWarning(spec.modelType));
      if (missing.length) report.warnings.push(`the remote-code folder lacks ${missing.join(', ')}: transformers cannot load it (fopeify push rewrites them)`);
    }
    if (spec) {
      const L = options.length ?? spec.rope.maxPositionEmbeddings;
      if (!(L > 0)) throw badOption('length', `\`length\` must be positive (got ${L})`);
      const { invFreq, attentionFactor } = ropeFrequencies(spec.rope, spec.rope.maxPositionEmbeddings);
      // For a FoPE checkpoint the coefficient shape decides K; otherwise judge against L.
      const k = report.fope && options.length === undefined ? report.fope.k : fopeKeptCount(invFreq, L);
      Object.assign(report, {
        architecture: spec.architecture,
        family: spec.family,
        layers: spec.numLayers,
        hiddenSize: spec.hiddenSize,
        intermediateSize: spec.intermediateSize,
        heads: spec.numHeads,
        kvHeads: spec.numKvHeads,
        headDim: spec.headDim,
        vocabSize: spec.vocabSize,
        tiedEmbeddings: spec.tieWordEmbeddings,
        qkvBias: spec.qkvBias,
        qkNorm: spec.qkNorm,
        maxPositionEmbeddings: spec.rope.maxPositionEmbeddings,
        rope: { type: spec.rope.type, theta: spec.rope.theta, dim: spec.rope.dim, params: spec.rope.params, attentionFactor },
        length: L,
        keptWithinLength: k,
        frequencies: frequencyTable(invFreq, k),
      });
    }
    return report;
  } finally {
    await ckpt.close();
  }
}
