/**
 * config.json → one typed ModelSpec. Families differ only by flags (bias, q/k norm, head_dim, tying), so
 * the runtime and the converter read this, never the raw JSON.
 */
import { FopeifyError } from '../errors.js';
import { fopeBaseFamily } from './fope-arch.js';

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

function num(raw: Record<string, unknown>, key: string): number | undefined {
  const v = raw[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** The rope parameter dict: transformers v5 `rope_parameters` first, then v4 `rope_scaling`. */
export function ropeParameterDict(raw: Record<string, unknown>): Record<string, unknown> {
  const v5 = raw.rope_parameters;
  const v4 = raw.rope_scaling;
  const isDict = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x);
  if (isDict(v5)) {
    // Models with several layer types nest one dict per type (Gemma3); fopeify's families never do.
    return { ...(isDict(v4) ? v4 : {}), ...v5 };
  }
  return isDict(v4) ? { ...v4 } : {};
}

export function parseRopeSpec(raw: Record<string, unknown>, headDim: number): RopeSpec {
  const rp = ropeParameterDict(raw);
  const typeRaw = (rp.rope_type ?? rp.type ?? 'default') as string;
  const type = (typeRaw === 'su' ? 'longrope' : typeRaw) as RopeType;
  if (!ROPE_TYPES.includes(type)) {
    throw new FopeifyError('UNSUPPORTED_ARCHITECTURE', `unsupported rope type "${typeRaw}" (supported: ${ROPE_TYPES.join(', ')})`);
  }
  const theta = (typeof rp.rope_theta === 'number' ? rp.rope_theta : num(raw, 'rope_theta')) ?? 10000;
  const prf = (typeof rp.partial_rotary_factor === 'number' ? rp.partial_rotary_factor : num(raw, 'partial_rotary_factor')) ?? 1;
  const dim = Math.floor(headDim * prf);
  const maxPos = num(raw, 'max_position_embeddings') ?? 2048;
  const params: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rp)) {
    if (k === 'rope_type' || k === 'type' || k === 'rope_theta' || k === 'partial_rotary_factor') continue;
    if (k.startsWith('fope_') || k === 'num_inv_freq') continue;
    params[k] = v;
  }
  if (params.original_max_position_embeddings === undefined && num(raw, 'original_max_position_embeddings') !== undefined) {
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
  return { type, theta, dim, maxPositionEmbeddings: maxPos, params };
}

export function parseFopeSpec(raw: Record<string, unknown>): FopeSpec | null {
  const rp = ropeParameterDict(raw);
  const pick = (k: string) => (rp[k] !== undefined ? rp[k] : raw[k]);
  const initFactor = pick('fope_init_factor');
  const sepHead = pick('fope_sep_head');
  const nif = pick('num_inv_freq') ?? pick('fope_num_inv_freq');
  if ((initFactor ?? null) === null && (sepHead ?? null) === null && (nif ?? null) === null) return null;
  const sinPad = pick('fope_sin_pad');
  return {
    initFactor: typeof initFactor === 'number' ? initFactor : null,
    sepHead: sepHead === undefined || sepHead === null ? false : Boolean(sepHead),
    numInvFreq: typeof nif === 'number' ? nif : null,
    sinPad: sinPad === 0 || sinPad === false ? 0 : 1,
  };
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
  const required = ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size'];
  const missing = required.filter((k) => num(cfg, k) === undefined);
  if (missing.length) throw new FopeifyError('BAD_CONFIG', `${source} is missing ${missing.join(', ')}`);
  const hiddenSize = num(cfg, 'hidden_size')!;
  const numHeads = num(cfg, 'num_attention_heads')!;
  const numKvHeads = num(cfg, 'num_key_value_heads') ?? numHeads;
  const headDim = num(cfg, 'head_dim') ?? hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) throw new FopeifyError('BAD_CONFIG', `${source}: hidden_size ${hiddenSize} is not divisible by ${numHeads} heads`);
  if (numHeads % numKvHeads !== 0) {
    throw new FopeifyError('BAD_CONFIG', `${source}: ${numHeads} attention heads are not a multiple of ${numKvHeads} KV heads`);
  }
  const attentionBias = cfg.attention_bias === true;
  const eos = cfg.eos_token_id;
  return {
    architecture: architecture || `${family} (model_type)`,
    family,
    modelType: modelType || family,
    hiddenSize,
    intermediateSize: num(cfg, 'intermediate_size')!,
    numLayers: num(cfg, 'num_hidden_layers')!,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: num(cfg, 'vocab_size')!,
    rmsNormEps: num(cfg, 'rms_norm_eps') ?? 1e-6,
    tieWordEmbeddings: cfg.tie_word_embeddings === true,
    qkvBias: family === 'qwen2' ? true : attentionBias,
    oBias: family === 'qwen2' ? false : attentionBias,
    mlpBias: cfg.mlp_bias === true,
    qkNorm: family === 'qwen3',
    slidingWindow: cfg.use_sliding_window === false ? null : (num(cfg, 'sliding_window') ?? null),
    torchDtype: typeof cfg.torch_dtype === 'string' ? cfg.torch_dtype : typeof cfg.dtype === 'string' ? cfg.dtype : null,
    bosTokenId: num(cfg, 'bos_token_id') ?? null,
    eosTokenId: typeof eos === 'number' || Array.isArray(eos) ? (eos as number | number[]) : null,
    rope: parseRopeSpec(cfg, headDim),
    fope: parseFopeSpec(cfg),
    raw: cfg,
  };
}
