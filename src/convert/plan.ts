/**
 * What a conversion changes, computed without touching a file: the effective frequencies, K, the
 * coefficient tensors and the new config. Pure, so inspect, convert and tests share one answer.
 */
import type { ModelSpec, RopeSpec } from '../config/model-spec.js';
import { ARCH_NAMES, namedFopeConfig, type ArchName } from '../config/fope-arch.js';
import { badOption, FopeifyError } from '../errors.js';
import { FLOAT_DTYPE_NAMES, type FloatDtypeName } from '../io/dtype.js';
import { fopeKeptCount, initFopeCoefficients } from '../rope/fope.js';
import { ropeFrequencies } from '../rope/inv-freq.js';
import { perLayerCoefName, sharedCoefName, type FopeLayout } from './fope-layout.js';

export type OutputDtype = 'keep' | FloatDtypeName;

export interface ConvertSettings {
  /** Gain of the xavier part of the coefficients (`fope_init_factor`). */
  initFactor: number;
  /** Length L the frequencies are clipped against. Default: the output's max_position_embeddings. */
  clipLength?: number;
  /** Keep exactly this many frequencies (overrides clipLength). */
  numInvFreq?: number;
  /** One coefficient pair per KV head (`[n_kv, K, K]`) or shared (`[K, K]`). */
  sepHead: boolean;
  layout: FopeLayout;
  sinPad: 0 | 1;
  seed: number;
  /** YaRN factor to add (HF semantics: clip the YaRN frequencies against the extended length). */
  yarn?: number;
  /** Length the model was trained at, for YaRN. Default: current max_position_embeddings. */
  originalLength?: number;
  betaFast: number;
  betaSlow: number;
  dtype: OutputDtype;
  /**
   * `fope` (default): the output is a remote-code model under its own name (`<base>_fope`, auto_map, the
   * folder's .py files), which transformers and vLLM run as FoPE; `keep`: the stock names (lmdeploy's
   * PyTorch engine reads the FoPE keys itself; transformers then silently runs RoPE).
   */
  archName: ArchName;
}

export const DEFAULT_SETTINGS: Omit<ConvertSettings, 'clipLength' | 'numInvFreq' | 'yarn' | 'originalLength'> = {
  initFactor: 0.1,
  sepHead: true,
  layout: 'shared',
  sinPad: 1,
  seed: 0,
  betaFast: 32,
  betaSlow: 1,
  dtype: 'keep',
  archName: 'fope',
};

export interface FrequencyRow {
  index: number;
  invFreq: number;
  /** Tokens per full period (2π / ω). */
  wavelength: number;
  /** Completes a period within the clip length, i.e. FoPE keeps it. */
  kept: boolean;
}

export interface CoefficientTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface ConversionPlan {
  rope: RopeSpec;
  attentionFactor: number;
  clipLength: number;
  /** Frequencies kept (the K written as num_inv_freq). */
  k: number;
  frequencies: FrequencyRow[];
  coefficients: CoefficientTensor[];
  /** The config.json to write. */
  config: Record<string, unknown>;
  maxPositionEmbeddings: number;
}

/** The frequency table at a clip length: index, inv_freq, wavelength, kept. */
export function frequencyTable(invFreq: Float32Array, k: number): FrequencyRow[] {
  return Array.from(invFreq, (v, index) => ({ index, invFreq: v, wavelength: (2 * Math.PI) / v, kept: index < k }));
}

/** The rope spec of the output: the model's own, or YaRN on top of a default-RoPE model. */
export function outputRopeSpec(spec: ModelSpec, s: Pick<ConvertSettings, 'yarn' | 'originalLength' | 'betaFast' | 'betaSlow'>): RopeSpec {
  if (s.yarn === undefined) return spec.rope;
  if (!(s.yarn > 1)) throw badOption('yarn', `\`yarn\` factor must be greater than 1 (got ${s.yarn})`);
  if (spec.rope.type !== 'default') {
    throw badOption('yarn', `the model already uses rope_type ${spec.rope.type}; \`yarn\` applies only to default RoPE (it would replace the model's own scaling)`);
  }
  const original = s.originalLength ?? spec.rope.maxPositionEmbeddings;
  if (!(Number.isInteger(original) && original > 0)) throw badOption('originalLength', '`originalLength` must be a positive integer');
  return {
    type: 'yarn',
    theta: spec.rope.theta,
    dim: spec.rope.dim,
    maxPositionEmbeddings: Math.round(s.yarn * original),
    params: { factor: s.yarn, original_max_position_embeddings: original, beta_fast: s.betaFast, beta_slow: s.betaSlow },
  };
}


/** The dict written to both rope_scaling and rope_parameters (plus rope_theta in the latter). */
function ropeDict(rope: RopeSpec, plan: { initFactor: number; sepHead: boolean; k: number; sinPad: 0 | 1 }): Record<string, unknown> {
  const d: Record<string, unknown> = { rope_type: rope.type, ...rope.params };
  d.fope_init_factor = plan.initFactor;
  d.fope_sep_head = plan.sepHead;
  d.num_inv_freq = plan.k;
  if (plan.sinPad === 0) d.fope_sin_pad = 0;
  return d;
}

export function planConversion(spec: ModelSpec, settings: ConvertSettings): ConversionPlan {
  if (spec.fope) {
    throw new FopeifyError('BAD_ARGUMENT', 'the model is already a FoPE model (its config has FoPE keys); convert a RoPE checkpoint');
  }
  if (!(settings.initFactor >= 0) || !Number.isFinite(settings.initFactor)) {
    throw badOption('initFactor', `\`initFactor\` must be a number ≥ 0 (got ${settings.initFactor})`);
  }
  if (settings.sinPad !== 0 && settings.sinPad !== 1) throw badOption('sinPad', '`sinPad` must be 1 or 0');
  if (!ARCH_NAMES.includes(settings.archName)) throw badOption('archName', `\`archName\` must be fope or keep (got ${String(settings.archName)})`);
  if (!Number.isInteger(settings.seed)) throw badOption('seed', '`seed` must be an integer');
  const rope = outputRopeSpec(spec, settings);
  const { invFreq, attentionFactor } = ropeFrequencies(rope, rope.maxPositionEmbeddings);
  const clipLength = settings.clipLength ?? rope.maxPositionEmbeddings;
  if (!(clipLength > 0)) throw badOption('clipLength', `\`clipLength\` must be positive (got ${clipLength})`);
  if (settings.numInvFreq !== undefined && !(Number.isInteger(settings.numInvFreq) && settings.numInvFreq >= 1 && settings.numInvFreq <= invFreq.length)) {
    throw badOption('numInvFreq', `\`numInvFreq\` must be an integer between 1 and ${invFreq.length} (head_dim/2)`);
  }
  const k = fopeKeptCount(invFreq, clipLength, settings.numInvFreq);
  if (k === 0) {
    throw badOption('clipLength', `no frequency completes a period within ${clipLength} tokens; FoPE would keep nothing (raise \`clipLength\`)`);
  }
  const heads = settings.sepHead ? spec.numKvHeads : null;
  const coefficients: CoefficientTensor[] = [];
  const layers = settings.layout === 'per-layer' ? Array.from({ length: spec.numLayers }, (_, i) => i) : [-1];
  for (const layer of layers) {
    const c = initFopeCoefficients({ heads, kIn: k, gain: settings.initFactor, seed: settings.seed, tag: layer < 0 ? '' : `layer${layer}.` });
    const name = (w: 'sin' | 'cos') => (layer < 0 ? sharedCoefName(w) : perLayerCoefName(layer, w));
    coefficients.push({ name: name('sin'), shape: c.shape, data: c.sinCoef });
    coefficients.push({ name: name('cos'), shape: c.shape, data: c.cosCoef });
  }
  const config: Record<string, unknown> = structuredClone(spec.raw);
  const dict = ropeDict(rope, { initFactor: settings.initFactor, sepHead: settings.sepHead, k, sinPad: settings.sinPad });
  config.rope_theta = rope.theta;
  config.rope_scaling = { ...dict };
  const partial = spec.raw.partial_rotary_factor ?? (spec.raw.rope_parameters as Record<string, unknown> | undefined)?.partial_rotary_factor;
  config.rope_parameters = { ...dict, rope_theta: rope.theta, ...(partial !== undefined ? { partial_rotary_factor: partial } : {}) };
  config.max_position_embeddings = rope.maxPositionEmbeddings;
  if (settings.dtype !== 'keep') config.torch_dtype = FLOAT_DTYPE_NAMES[settings.dtype].torch;
  return {
    config: namedFopeConfig(config, spec.family, settings.archName, settings.layout),
    rope,
    attentionFactor,
    clipLength,
    k,
    frequencies: frequencyTable(invFreq, k),
    coefficients,
    maxPositionEmbeddings: rope.maxPositionEmbeddings,
  };
}
