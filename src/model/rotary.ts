/**
 * Rotary position embedding in the model: the cos/sin tables of every RoPE variant (src/rope's
 * frequency table, keyed by rope type) or of FoPE (fope.md §3–4, from the checkpoint's coefficients),
 * and their application to q and k in HF's split-half layout. Tables are float32, computed from float32
 * positions as torch does, and multiplied by the variant's attention factor (YaRN's mscale).
 */
import * as tf from '../backend/tfjs.js';
import type { ModelSpec } from '../config/model-spec.js';
import { fopeCosSin, ropeCosSin, type CosSinTable } from '../rope/fope.js';
import { ropeFrequencies } from '../rope/inv-freq.js';
import { rotaryOps } from '../backend/kernels-tf.js';

/** One FoPE coefficient pair as plain data: shape `[K, out]` or `[G, K, out]`. */
export interface FopeCoefficientData {
  shape: number[];
  sin: Float32Array;
  cos: Float32Array;
}

/**
 * Half tables for `x' = x·cos + rotate_half(x)·sin`: HF's cos/sin are `concat(c, c)`, so with
 * x = [x1, x2]: x1' = x1·c − x2·s, x2' = x2·c + x1·s. Shapes `[1, G, 1, T, dim/2]`, G = 1 or the KV
 * heads, broadcastable against q viewed as `[B, nKv, nH/nKv, T, D]` and k as `[B, nKv, 1, T, D]`.
 */
export interface RotaryTables {
  cos: tf.Tensor5D;
  sin: tf.Tensor5D;
  /** Rotated dimensions (head_dim × partial_rotary_factor). */
  dim: number;
}

/**
 * The sequence length a rope variant depends on: HF's dynamic NTK and longrope use `max(position) + 1`
 * of the current call.
 */
export function ropeSeqLen(positions: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < positions.length; i++) max = Math.max(max, positions[i]!);
  return Math.floor(max) + 1;
}

/** cos/sin tables `[G, T, dim]` (plain data) for positions: RoPE, or FoPE when coefficients are given. */
export function cosSinTable(spec: ModelSpec, positions: ArrayLike<number>, coef: FopeCoefficientData | null): CosSinTable {
  const { invFreq, attentionFactor } = ropeFrequencies(spec.rope, ropeSeqLen(positions));
  if (!coef) return ropeCosSin(invFreq, positions, attentionFactor);
  return fopeCosSin({
    invFreq,
    coefShape: coef.shape,
    sinCoef: coef.sin,
    cosCoef: coef.cos,
    positions,
    sinPad: spec.fope?.sinPad ?? 1,
    // fope.md §8 (family B / HF): the variant's attention factor multiplies cos and sin, padding included.
    attentionFactor,
  });
}

/** Upload a table's first halves as `[1, G, 1, T, dim/2]` tensors. */
export function rotaryTables(table: CosSinTable): RotaryTables {
  const { groups: G, length: T, dim } = table;
  const half = dim / 2;
  const c = new Float32Array(G * T * half);
  const s = new Float32Array(G * T * half);
  for (let r = 0; r < G * T; r++) {
    c.set(table.cos.subarray(r * dim, r * dim + half), r * half);
    s.set(table.sin.subarray(r * dim, r * dim + half), r * half);
  }
  return {
    cos: tf.tensor5d(c, [1, G, 1, T, half]),
    sin: tf.tensor5d(s, [1, G, 1, T, half]),
    dim,
  };
}

/**
 * Rotate the first `tables.dim` entries of the last axis of x (`[B, nKv, R, T, D]`, R = query heads per
 * KV head, or 1 for keys); the rest of each head passes through (partial rotary).
 */
export function applyRotaryTf(x: tf.Tensor5D, tables: RotaryTables): tf.Tensor5D {
  return rotaryOps(x, tables.cos, tables.sin, tables.dim);
}
