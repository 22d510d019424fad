/**
 * config.json → one typed ModelSpec. Families differ only by flags (bias, q/k norm, head_dim, tying), so
 * the runtime and the converter read this, never the raw JSON.
 */
import { FopeifyError } from '../errors.js';
import { fopeBaseFamily } from './fope-arch.js';
import { CONFIG_LIMITS, ConfigFields, describe } from './fields.js';

export type RopeType = 'default' | 'linear' | 'dynamic' | 'yarn' | 'llama3' | 'longrope';
export const ROPE_TYPES: readonly RopeType[] = ['default', 'linear', 'dynamic', 'yarn', 'llama3', 'longrope'];

export interface RopeSpec {
  type: RopeType;
  theta: number;
  /** Rotated dimensions per head: head_dim × partial_rotary_factor. */
  dim: number;
  maxPositionEmbeddings: number;
  /** The scaling parameters as the config gives them (factor, original_max_position_embeddings, ...). */
  params: Record<string, unknown>;
}

export interface FopeSpec {
  initFactor: number | null;
  sepHead: boolean;
  /** K written in the config (null: derive by clipping against max_position_embeddings). */
  numInvFreq: number | null;
  /** Value of the padded sin slots: 1 (every trained FoPE model) or 0 (recorded as fope_sin_pad: 0). */
  sinPad: 0 | 1;
}

export type Family = 'llama' | 'mistral' | 'qwen2' | 'qwen3';

export interface ModelSpec {
  architecture: string;
  family: Family;
  modelType: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v projections (Qwen2, or Llama with attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (Llama attention_bias only). */
  oBias: boolean;
  mlpBias: boolean;
  /** Per-head RMSNorm on q and k before the rotary embedding (Qwen3). */
  qkNorm: boolean;
  slidingWindow: number | null;
  torchDtype: string | null;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  rope: RopeSpec;
  fope: FopeSpec | null;
  /** The parsed config.json, for writers that must preserve unknown keys. */
  raw: Record<string, unknown>;
}

const ARCHITECTURES: Record<string, Family> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
};
const MODEL_TYPES: Record<string, Family> = { llama: 'llama', mistral: 'mistral', qwen2: 'qwen2', qwen3: 'qwen3' };

/** What each known-but-unsupported family needs that the Llama-family runtime does not have. */
const UNSUPPORTED_REASONS: Record<string, string> = {
  gemma: 'RMSNorm as x·(1+w), embeddings scaled by √hidden and a GeGLU MLP',
  gemma2: 'logit soft-capping, alternating sliding-window layers, (1+w) RMSNorm and GeGLU',
  gemma3: 'two rope thetas per layer type, q/k norm, sliding layers, (1+w) RMSNorm and GeGLU',
  gemma3_text: 'two rope thetas per layer type, q/k norm, sliding layers, (1+w) RMSNorm and GeGLU',
  phi3: 'fused qkv_proj and gate_up_proj weights and longrope with partial rotary',
  olmo2: 'q/k norm over the whole projection and post-norm blocks',
  gpt_neox: 'fused per-head-interleaved query_key_value, LayerNorm with bias, parallel residual and partial rotary',
  phi: 'LayerNorm with bias, a dense GELU MLP and partial rotary',
  falcon: 'fused query_key_value, LayerNorm and parallel attention',
  gpt2: 'learned absolute positions (no RoPE at all)',
  bert: 'an encoder with absolute positions (no RoPE at all)',
};

/** The rope parameter dict: transformers v5 `rope_parameters` first, then v4 `rope_scaling`. */
export function ropeParameterDict(raw: Record<string, unknown>): Record<string, unknown> {
  const v5 = raw.rope_parameters;
  const v4 = raw.rope_scaling;
  // A string or a list here was silently ignored once, so a YaRN model ran as plain RoPE: refuse it.
  for (const [key, v] of [['rope_parameters', v5], ['rope_scaling', v4]] as const) {
    if (v !== undefined && v !== null && !isDict(v)) {
      throw new FopeifyError('BAD_CONFIG', `config.json: ${key} must be an object or null (got ${describe(v)})`);
    }
  }
  if (isDict(v5)) {
    // Models with several layer types nest one dict per type (Gemma3); fopeify's families never do.
    return { ...(isDict(v4) ? v4 : {}), ...v5 };
  }
  return isDict(v4) ? { ...v4 } : {};
}

function isDict(x: unknown): x is Record<string, unknown> {
  return !!x && typeof x === 'object' && !Array.isArray(x);
}

/** Where the rope dict came from, for error messages. */
function ropeDictName(raw: Record<string, unknown>, source: string): string {
  return `${source} ${isDict(raw.rope_parameters) ? 'rope_parameters' : 'rope_scaling'}`;
}

/** Bounds of each rope variant's parameters (HF's _validate_*_parameters, plus what keeps the math finite). */
function checkRopeParams(type: RopeType, p: ConfigFields, dim: number): void {
  const maxPos = { min: 1, max: CONFIG_LIMITS.max_position_embeddings };
  // HF refuses scaling factors below 1 for every variant that has one.
  if (type !== 'default') p.float('factor', { min: 1 });
  p.int('original_max_position_embeddings', maxPos, 1);
  p.float('attention_factor', { min: 0, minExclusive: true });
  if (type === 'yarn') {
    // log(L / (β·2π)) in the correction range: β must be positive.
    p.float('beta_fast', { min: 0, minExclusive: true });
    p.float('beta_slow', { min: 0, minExclusive: true });
    p.float('mscale', {});
    p.float('mscale_all_dim', {});
    if (p.has('truncate') && typeof p.raw.truncate !== 'boolean') {
      throw new FopeifyError('BAD_CONFIG', `${p.source}: truncate must be true or false (got ${describe(p.raw.truncate)})`);
    }
  }
  if (type === 'llama3') {
    const low = p.float('low_freq_factor', { min: 0, minExclusive: true })!;
    const high = p.float('high_freq_factor', { min: 0, minExclusive: true })!;
    // The smoothing divides by (high − low).
    if (!(high > low)) throw new FopeifyError('BAD_CONFIG', `${p.source}: high_freq_factor (${high}) must exceed low_freq_factor (${low})`);
  }
  if (type === 'dynamic' && dim < 4) throw new FopeifyError('BAD_CONFIG', `${p.source}: dynamic scaling needs a rotary dimension ≥ 4 (got ${dim})`);
  if (type === 'longrope') {
    for (const key of ['short_factor', 'long_factor']) {
      const v = p.raw[key];
      if (!Array.isArray(v) || v.length !== dim / 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)) {
        throw new FopeifyError('BAD_CONFIG', `${p.source}: ${key} must be a list of ${dim / 2} positive numbers (got ${describe(v)})`);
      }
    }
  }
}

export function parseRopeSpec(raw: Record<string, unknown>, headDim: number, source = 'config.json'): RopeSpec {
  const rp = ropeParameterDict(raw);
  const rpFields = new ConfigFields(rp, ropeDictName(raw, source));
  const top = new ConfigFields(raw, source);
  const typeRaw = rp.rope_type ?? rp.type ?? 'default';
  const type = (typeRaw === 'su' ? 'longrope' : typeRaw) as RopeType;
  if (typeof type !== 'string' || !ROPE_TYPES.includes(type)) {
    throw new FopeifyError('UNSUPPORTED_ARCHITECTURE', `unsupported rope type ${describe(typeRaw)} (supported: ${ROPE_TYPES.join(', ')})`);
  }
  // θ ≤ 1 makes the frequencies non-decreasing and YaRN / dynamic NTK divide by log θ.
  const thetaBounds = { min: 1, minExclusive: true };
  const theta = rpFields.has('rope_theta') ? rpFields.float('rope_theta', thetaBounds)! : top.float('rope_theta', thetaBounds, 10000);
  const prfBounds = { min: 0, minExclusive: true, max: 1 };
  const prf = rpFields.has('partial_rotary_factor')
    ? rpFields.float('partial_rotary_factor', prfBounds)!
    : top.float('partial_rotary_factor', prfBounds, 1);
  const dim = Math.floor(headDim * prf);
  const maxPos = top.int('max_position_embeddings', { min: 1, max: CONFIG_LIMITS.max_position_embeddings }, 2048);
  const params: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rp)) {
    if (k === 'rope_type' || k === 'type' || k === 'rope_theta' || k === 'partial_rotary_factor') continue;
    if (k.startsWith('fope_') || k === 'num_inv_freq') continue;
    params[k] = v;
  }
  if (params.original_max_position_embeddings === undefined && top.has('original_max_position_embeddings')) {
    params.original_max_position_embeddings = raw.original_max_position_embeddings; // Phi-3 keeps it at top level
  }
  const need: Partial<Record<RopeType, string[]>> = {
    linear: ['factor'],
    dynamic: ['factor'],
    yarn: ['factor'],
    llama3: ['factor', 'original_max_position_embeddings', 'low_freq_factor', 'high_freq_factor'],
    longrope: ['short_factor', 'long_factor'],
  };
  const missing = (need[type] ?? []).filter((k) => params[k] === undefined || params[k] === null);
  if (missing.length) {
    throw new FopeifyError('BAD_CONFIG', `rope type ${type} needs ${missing.join(', ')} in rope_scaling / rope_parameters`);
  }
  if (dim % 2 !== 0 || dim <= 0) throw new FopeifyError('BAD_CONFIG', `rotary dimension ${dim} must be a positive even number`);
  checkRopeParams(type, new ConfigFields(params, rpFields.source), dim);
  return { type, theta, dim, maxPositionEmbeddings: maxPos, params };
}

export function parseFopeSpec(raw: Record<string, unknown>, source = 'config.json'): FopeSpec | null {
  const rp = ropeParameterDict(raw);
  const pick = (k: string) => (rp[k] !== undefined ? rp[k] : raw[k]);
  const initFactor = pick('fope_init_factor');
  const sepHead = pick('fope_sep_head');
  const nif = pick('num_inv_freq') ?? pick('fope_num_inv_freq');
  if ((initFactor ?? null) === null && (sepHead ?? null) === null && (nif ?? null) === null) return null;
  const fields = new ConfigFields({ fope_init_factor: initFactor, num_inv_freq: nif }, source);
  const sinPad = pick('fope_sin_pad');
  return {
    initFactor: fields.float('fope_init_factor', { min: 0 }) ?? null,
    sepHead: sepHead === undefined || sepHead === null ? false : Boolean(sepHead),
    numInvFreq: fields.has('num_inv_freq') ? fields.int('num_inv_freq', { min: 1, max: CONFIG_LIMITS.head_dim }) : null,
    sinPad: sinPad === 0 || sinPad === false ? 0 : 1,
  };
}

/** Parameters a Llama-family decoder of these dimensions holds (what its checkpoint must contain). */
export function impliedParameterCount(
  d: Pick<ModelSpec, 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'vocabSize' | 'tieWordEmbeddings'>,
): number {
  const H = d.hiddenSize;
  const attn = 2 * H * d.numHeads * d.headDim + 2 * H * d.numKvHeads * d.headDim;
  const perLayer = attn + 3 * H * d.intermediateSize + 2 * H;
  return d.vocabSize * H * (d.tieWordEmbeddings ? 1 : 2) + d.numLayers * perLayer + H;
}

/** A token id as configs give it; anything else (a string, -1, 1.5) is no id. */
function tokenId(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : null;
}

/** Parse a config.json object. Throws FopeifyError for unsupported or incomplete configs. */
export function parseModelConfig(raw: unknown, source = 'config.json'): ModelSpec {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new FopeifyError('BAD_CONFIG', `${source} is not a JSON object`);
  }
  const cfg = raw as Record<string, unknown>;
  const archs = Array.isArray(cfg.architectures) ? (cfg.architectures as unknown[]).map(String) : [];
  const modelType = typeof cfg.model_type === 'string' ? cfg.model_type : '';
  const architecture = archs.find((a) => a in ARCHITECTURES) ?? archs[0] ?? '';
  // fopeify's remote-code FoPE folders (`<base>_fope`, `Fope<Base>ForCausalLM`) record their base family.
  const family = fopeBaseFamily(cfg) ?? ARCHITECTURES[architecture] ?? (archs.length === 0 ? MODEL_TYPES[modelType] : undefined);
  if (!family) {
    const name = architecture || modelType || 'unknown';
    const reason = UNSUPPORTED_REASONS[modelType];
    throw new FopeifyError(
      'UNSUPPORTED_ARCHITECTURE',
      `unsupported architecture ${name}${modelType && name !== modelType ? ` (model_type ${modelType})` : ''}: ` +
        (reason ? `fopeify's Llama-family runtime lacks ${reason}` : 'not a Llama-family RoPE decoder') +
        `; supported: ${Object.keys(ARCHITECTURES).join(', ')}`,
    );
  }
  const f = new ConfigFields(cfg, source);
  const L = CONFIG_LIMITS;
  const missing = ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size'].filter((k) => !f.has(k));
  if (missing.length) throw new FopeifyError('BAD_CONFIG', `${source} is missing ${missing.join(', ')}`);
  const hiddenSize = f.int('hidden_size', { min: 1, max: L.hidden_size });
  const intermediateSize = f.int('intermediate_size', { min: 1, max: L.intermediate_size });
  const numLayers = f.int('num_hidden_layers', { min: 1, max: L.num_hidden_layers });
  const numHeads = f.int('num_attention_heads', { min: 1, max: L.num_attention_heads });
  const numKvHeads = f.int('num_key_value_heads', { min: 1, max: numHeads }, numHeads);
  const vocabSize = f.int('vocab_size', { min: 1, max: L.vocab_size });
  if (!f.has('head_dim') && hiddenSize % numHeads !== 0) {
    throw new FopeifyError('BAD_CONFIG', `${source}: hidden_size ${hiddenSize} is not divisible by ${numHeads} heads`);
  }
  const headDim = f.int('head_dim', { min: 1, max: L.head_dim }, hiddenSize / numHeads);
  if (headDim > L.head_dim) throw new FopeifyError('BAD_CONFIG', `${source}: a head dimension of ${headDim} exceeds ${L.head_dim}`);
  if (numHeads % numKvHeads !== 0) {
    throw new FopeifyError('BAD_CONFIG', `${source}: ${numHeads} attention heads are not a multiple of ${numKvHeads} KV heads`);
  }
  const tieWordEmbeddings = cfg.tie_word_embeddings === true;
  const dims = { hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim, vocabSize, tieWordEmbeddings };
  const parameters = impliedParameterCount(dims);
  if (parameters > L.parameters) {
    throw new FopeifyError('BAD_CONFIG', `${source} describes a model of ${parameters.toExponential(2)} parameters, more than fopeify handles (${L.parameters.toExponential(0)})`);
  }
  // eps = 0 is HF-valid; a negative or huge eps turns every norm into NaN or a constant.
  const rmsNormEps = f.float('rms_norm_eps', { min: 0, max: 1 }, 1e-6);
  const slidingWindow = cfg.use_sliding_window === false ? null : (f.has('sliding_window') ? f.int('sliding_window', { min: 1, max: L.max_position_embeddings }) : null);
  const rope = parseRopeSpec(cfg, headDim, source);
  const fope = parseFopeSpec(cfg, source);
  if (fope?.numInvFreq != null && fope.numInvFreq > rope.dim / 2) {
    throw new FopeifyError('BAD_CONFIG', `${source}: num_inv_freq ${fope.numInvFreq} exceeds the ${rope.dim / 2} rotary frequencies`);
  }
  const attentionBias = cfg.attention_bias === true;
  const eos = cfg.eos_token_id;
  return {
    architecture: architecture || `${family} (model_type)`,
    family,
    modelType: modelType || family,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    rmsNormEps,
    tieWordEmbeddings,
    qkvBias: family === 'qwen2' ? true : attentionBias,
    oBias: family === 'qwen2' ? false : attentionBias,
    mlpBias: cfg.mlp_bias === true,
    qkNorm: family === 'qwen3',
    slidingWindow,
    torchDtype: typeof cfg.torch_dtype === 'string' ? cfg.torch_dtype : typeof cfg.dtype === 'string' ? cfg.dtype : null,
    bosTokenId: tokenId(cfg.bos_token_id),
    eosTokenId: Array.isArray(eos) ? eos.map(tokenId).filter((id): id is number => id !== null) : tokenId(eos),
    rope,
    fope,
    raw: cfg,
  };
}
