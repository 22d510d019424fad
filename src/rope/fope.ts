/**
 * FoPE (Fourier Position Embedding) math, exactly as ../shared/reference/fope.md gives it: floor-frequency
 * clipping, coefficient init, and the cos/sin tables that replace RoPE's. Pure functions, no I/O, no tfjs.
 */
import { SeededRandom } from '../random.js';

const f = Math.fround;

/**
 * How many frequencies FoPE keeps (always a prefix: the highest ones).
 * Family B: `numInvFreq` when given, else those with `inv_freq > 2π / L` (strict), compared in float32 as
 * torch does when a float32 tensor meets a Python scalar.
 */
export function fopeKeptCount(invFreq: Float32Array, clipLength: number, numInvFreq?: number | null): number {
  if (numInvFreq !== undefined && numInvFreq !== null) return Math.max(0, Math.min(numInvFreq, invFreq.length));
  const threshold = f((2 * Math.PI) / clipLength);
  let k = 0;
  while (k < invFreq.length && invFreq[k]! > threshold) k++;
  // Frequencies are decreasing for every variant fopeify writes; count the prefix only.
  return k;
}

/** Family A (paper's OLMo code): `inv_freq >= 2π / L` with L the training length. */
export function fopeKeptCountFamilyA(invFreq: Float32Array, trainingLength: number): number {
  const threshold = f((2 * Math.PI) / trainingLength);
  let k = 0;
  while (k < invFreq.length && invFreq[k]! >= threshold) k++;
  return k;
}

export interface FopeCoefficients {
  /** Shape [heads, K, K] when separate per KV head, [K, K] otherwise. */
  shape: number[];
  sinCoef: Float32Array;
  cosCoef: Float32Array;
}

/** torch.nn.init.xavier_normal_ standard deviation for a coefficient tensor shape. */
export function xavierStd(shape: readonly number[], gain: number): number {
  if (shape.length === 2) return gain * Math.sqrt(2 / (shape[0]! + shape[1]!));
  const [h, kIn, kOut] = shape as [number, number, number];
  // torch: fan_in = size(1) · receptive, fan_out = size(0) · receptive, receptive = prod(shape[2:]).
  return gain * Math.sqrt(2 / (kOut * (kIn + h)));
}

/**
 * `coef = xavier_normal(gain) + step_eye`, separately for sin and cos, drawn from independent seeded
 * streams (tags `<tag>sin` / `<tag>cos`) so the result is a deterministic function of seed, tag and shape.
 */
export function initFopeCoefficients(options: {
  heads: number | null;
  kIn: number;
  kOut?: number;
  gain: number;
  seed: number;
  tag?: string;
}): FopeCoefficients {
  const kIn = options.kIn;
  const kOut = options.kOut ?? kIn;
  const shape = options.heads === null ? [kIn, kOut] : [options.heads, kIn, kOut];
  const heads = options.heads ?? 1;
  const std = xavierStd(shape, options.gain);
  const make = (which: string) => {
    const rng = new SeededRandom(options.seed, `${options.tag ?? ''}${which}`);
    const out = new Float32Array(heads * kIn * kOut);
    for (let i = 0; i < out.length; i++) out[i] = std === 0 ? 0 : f(rng.normal() * std);
    // step_eye: ones at [i * ceil(kIn / kOut), i] — the identity when kIn == kOut.
    const step = Math.ceil(kIn / kOut);
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < kOut && i * step < kIn; i++) {
        const idx = h * kIn * kOut + i * step * kOut + i;
        out[idx] = f(out[idx]! + 1);
      }
    }
    return out;
  };
  return { shape, sinCoef: make('sin'), cosCoef: make('cos') };
}

export interface CosSinTable {
  /** [groups, T, dim] row-major (groups = coefficient heads; 1 for RoPE or shared coefficients). */
  cos: Float32Array;
  sin: Float32Array;
  groups: number;
  length: number;
  dim: number;
}

/** Plain RoPE tables: cos/sin of `t · inv_freq`, concatenated twice, times the attention factor. [1, T, dim]. */
export function ropeCosSin(invFreq: Float32Array, positions: ArrayLike<number>, attentionFactor = 1): CosSinTable {
  const half = invFreq.length;
  const dim = 2 * half;
  const T = positions.length;
  const cos = new Float32Array(T * dim);
  const sin = new Float32Array(T * dim);
  for (let t = 0; t < T; t++) {
    const p = f(positions[t]!);
    for (let j = 0; j < half; j++) {
      const phi = f(p * invFreq[j]!);
      const c = f(Math.cos(phi) * attentionFactor);
      const s = f(Math.sin(phi) * attentionFactor);
      cos[t * dim + j] = c;
      cos[t * dim + half + j] = c;
      sin[t * dim + j] = s;
      sin[t * dim + half + j] = s;
    }
  }
  return { cos, sin, groups: 1, length: T, dim };
}

export interface FopeTableOptions {
  /** All frequencies of the model's RoPE (dim/2); only the first K are used. */
  invFreq: Float32Array;
  /** [G, K, outDim] or [K, outDim] (G = 1). */
  coefShape: readonly number[];
  sinCoef: Float32Array;
  cosCoef: Float32Array;
  positions: ArrayLike<number>;
  /** Value of padded sin slots. Default 1 (see fope.md §4). */
  sinPad?: 0 | 1;
  attentionFactor?: number;
}

/**
 * FoPE tables (fope.md §3–4): `C[g,t,d] = Σ_j cos(t·ω_j) cos_coef[g,j,d]`, same for sin, padded to dim/2
 * with ones (cos) and `sinPad` (sin), concatenated twice and multiplied by the attention factor.
 */
export function fopeCosSin(o: FopeTableOptions): CosSinTable {
  const half = o.invFreq.length;
  const dim = 2 * half;
  const G = o.coefShape.length === 3 ? o.coefShape[0]! : 1;
  const K = o.coefShape[o.coefShape.length - 2]!;
  const outDim = o.coefShape[o.coefShape.length - 1]!;
  if (K > half || outDim > half) throw new RangeError(`FoPE coefficients [${o.coefShape}] exceed ${half} frequencies`);
  const T = o.positions.length;
  const af = o.attentionFactor ?? 1;
  const sinPad = o.sinPad ?? 1;
  const cos = new Float32Array(G * T * dim);
  const sin = new Float32Array(G * T * dim);
  const cphi = new Float64Array(K);
  const sphi = new Float64Array(K);
  for (let t = 0; t < T; t++) {
    const p = f(o.positions[t]!);
    for (let j = 0; j < K; j++) {
      const phi = f(p * o.invFreq[j]!);
      cphi[j] = f(Math.cos(phi));
      sphi[j] = f(Math.sin(phi));
    }
    for (let g = 0; g < G; g++) {
      const row = (g * T + t) * dim;
      const cbase = g * K * outDim;
      for (let d = 0; d < half; d++) {
        let c = 1;
        let s = sinPad;
        if (d < outDim) {
          c = 0;
          s = 0;
          for (let j = 0; j < K; j++) {
            c += cphi[j]! * o.cosCoef[cbase + j * outDim + d]!;
            s += sphi[j]! * o.sinCoef[cbase + j * outDim + d]!;
          }
        }
        const cv = f(f(c) * af);
        const sv = f(f(s) * af);
        cos[row + d] = cv;
        cos[row + half + d] = cv;
        sin[row + d] = sv;
        sin[row + half + d] = sv;
      }
    }
  }
  return { cos, sin, groups: G, length: T, dim };
}

/** `x' = x·cos + rotate_half(x)·sin` for one head vector of length dim (split-half pairs). */
export function applyRotary(x: ArrayLike<number>, cos: ArrayLike<number>, sin: ArrayLike<number>): Float64Array {
  const dim = cos.length;
  const half = dim / 2;
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i]!;
  for (let i = 0; i < dim; i++) {
    const rot = i < half ? -x[i + half]! : x[i - half]!;
    out[i] = x[i]! * cos[i]! + rot * sin[i]!;
  }
  return out;
}
