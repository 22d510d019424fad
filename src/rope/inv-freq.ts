/**
 * RoPE frequencies per rope type, as Hugging Face transformers computes them (../shared/reference/rope-scaling.md).
 * Pure math: plain numbers in, Float32Array out. Values are rounded to float32 where torch computes in
 * float32, so clipping decisions at a boundary agree with Python loaders.
 */
import type { RopeSpec, RopeType } from '../config/model-spec.js';
import { FopeifyError } from '../errors.js';

const f = Math.fround;

export interface RopeFrequencies {
  /** One frequency per rotated pair (dim/2 entries), strictly decreasing for default RoPE. */
  invFreq: Float32Array;
  /** Multiplies cos and sin (YaRN's mscale, longrope's factor); 1 otherwise. */
  attentionFactor: number;
}

/** `1 / base^(2j/dim)` in float32 steps, as torch computes it from `arange(0, dim, 2).float() / dim`. */
export function defaultInvFreq(base: number, dim: number): Float32Array {
  const half = dim / 2;
  const out = new Float32Array(half);
  for (let j = 0; j < half; j++) {
    const exponent = f(f(2 * j) / dim);
    out[j] = f(1 / f(Math.pow(base, exponent)));
  }
  return out;
}

function numberParam(p: Record<string, unknown>, key: string): number | undefined {
  const v = p[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export function yarnGetMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

/** YaRN's correction range: the pair indices where the blend between interpolation and extrapolation happens. */
export function yarnCorrectionRange(
  dim: number,
  base: number,
  originalLength: number,
  betaFast: number,
  betaSlow: number,
  truncate = true,
): { low: number; high: number } {
  const corr = (n: number) => (dim * Math.log(originalLength / (n * 2 * Math.PI))) / (2 * Math.log(base));
  let low = corr(betaFast);
  let high = corr(betaSlow);
  if (truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  return { low, high };
}

export interface YarnParams {
  factor: number;
  originalLength: number;
  betaFast?: number;
  betaSlow?: number;
  attentionFactor?: number;
  mscale?: number;
  mscaleAllDim?: number;
  truncate?: boolean;
}

/** YaRN (NTK-by-parts) frequencies and attention factor. */
export function yarnFrequencies(base: number, dim: number, y: YarnParams): RopeFrequencies {
  const half = dim / 2;
  const betaFast = y.betaFast || 32;
  const betaSlow = y.betaSlow || 1;
  const { low, high } = yarnCorrectionRange(dim, base, y.originalLength, betaFast, betaSlow, y.truncate ?? true);
  const invFreq = new Float32Array(half);
  for (let j = 0; j < half; j++) {
    const pos = f(Math.pow(base, f(f(2 * j) / dim)));
    const extrapolation = f(1 / pos);
    const interpolation = f(1 / f(y.factor * pos));
    const ramp = Math.min(Math.max((j - low) / (high - low), 0), 1);
    const extrapFactor = f(1 - f(ramp));
    invFreq[j] = f(f(interpolation * f(1 - extrapFactor)) + f(extrapolation * extrapFactor));
  }
  let attentionFactor = y.attentionFactor;
  if (attentionFactor === undefined) {
    attentionFactor =
      y.mscale && y.mscaleAllDim
        ? yarnGetMscale(y.factor, y.mscale) / yarnGetMscale(y.factor, y.mscaleAllDim)
        : yarnGetMscale(y.factor);
  }
  return { invFreq, attentionFactor };
}

/** YaRN parameters as a config holds them. */
export function yarnParamsFromSpec(spec: RopeSpec): YarnParams {
  const p = spec.params;
  const originalLength = numberParam(p, 'original_max_position_embeddings') ?? spec.maxPositionEmbeddings;
  const factor = numberParam(p, 'factor') ?? spec.maxPositionEmbeddings / originalLength;
  return {
    factor,
    originalLength,
    betaFast: numberParam(p, 'beta_fast'),
    betaSlow: numberParam(p, 'beta_slow'),
    attentionFactor: numberParam(p, 'attention_factor'),
    mscale: numberParam(p, 'mscale'),
    mscaleAllDim: numberParam(p, 'mscale_all_dim'),
    truncate: typeof p.truncate === 'boolean' ? p.truncate : undefined,
  };
}

type VariantFn = (spec: RopeSpec, seqLen: number) => RopeFrequencies;

/** The table of RoPE variants, keyed by rope type. `seqLen` matters only for dynamic and longrope. */
export const ROPE_VARIANTS: Record<RopeType, VariantFn> = {
  default: (spec) => ({ invFreq: defaultInvFreq(spec.theta, spec.dim), attentionFactor: 1 }),

  linear: (spec) => {
    const factor = numberParam(spec.params, 'factor')!;
    const inv = defaultInvFreq(spec.theta, spec.dim).map((v) => f(v / factor));
    return { invFreq: inv, attentionFactor: 1 };
  },

  dynamic: (spec, seqLen) => {
    const factor = numberParam(spec.params, 'factor')!;
    const L = spec.maxPositionEmbeddings;
    const seq = Math.max(seqLen, L);
    const base = spec.theta * Math.pow((factor * seq) / L - (factor - 1), spec.dim / (spec.dim - 2));
    return { invFreq: defaultInvFreq(base, spec.dim), attentionFactor: 1 };
  },

  yarn: (spec) => yarnFrequencies(spec.theta, spec.dim, yarnParamsFromSpec(spec)),

  llama3: (spec) => {
    const p = spec.params;
    const factor = numberParam(p, 'factor')!;
    const lff = numberParam(p, 'low_freq_factor')!;
    const hff = numberParam(p, 'high_freq_factor')!;
    const Lo = numberParam(p, 'original_max_position_embeddings')!;
    const lowWl = Lo / lff;
    const highWl = Lo / hff;
    const inv = defaultInvFreq(spec.theta, spec.dim);
    const out = new Float32Array(inv.length);
    for (let j = 0; j < inv.length; j++) {
      const v = inv[j]!;
      const wl = (2 * Math.PI) / v;
      if (wl > lowWl) out[j] = f(v / factor);
      else if (wl < highWl) out[j] = v;
      else {
        const s = (Lo / wl - lff) / (hff - lff);
        out[j] = f(((1 - s) * v) / factor + s * v);
      }
    }
    return { invFreq: out, attentionFactor: 1 };
  },

  longrope: (spec, seqLen) => {
    const p = spec.params;
    const Lo = numberParam(p, 'original_max_position_embeddings') ?? spec.maxPositionEmbeddings;
    const factor = numberParam(p, 'factor') ?? spec.maxPositionEmbeddings / Lo;
    const ext = (seqLen > Lo ? p.long_factor : p.short_factor) as number[];
    if (!Array.isArray(ext) || ext.length !== spec.dim / 2) {
      throw new FopeifyError('BAD_CONFIG', `longrope factors must be lists of ${spec.dim / 2} numbers`);
    }
    const base = defaultInvFreq(spec.theta, spec.dim);
    const inv = base.map((v, j) => f(v / ext[j]!));
    const attentionFactor =
      numberParam(p, 'attention_factor') ?? (factor > 1 ? Math.sqrt(1 + Math.log(factor) / Math.log(Lo)) : 1);
    return { invFreq: inv, attentionFactor };
  },
};

/** Frequencies of a rope spec at a given sequence length (default: the configured maximum). */
export function ropeFrequencies(spec: RopeSpec, seqLen = spec.maxPositionEmbeddings): RopeFrequencies {
  return ROPE_VARIANTS[spec.type](spec, seqLen);
}

/** Wavelength in tokens of each frequency. */
export function wavelengths(invFreq: Float32Array): number[] {
  return Array.from(invFreq, (v) => (2 * Math.PI) / v);
}
