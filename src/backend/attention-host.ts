/**
 * Blockwise attention with the softmax parts as fused passes over the tensors' data (tfjs 'cpu'
 * without BLAS): the products are tf matmuls, and each (query block, key block) pair's max / exp / sum
 * work is a few plain loops around one WebAssembly-SIMD exp of the whole block (vector-math.ts)
 * instead of a chain of full-size tf ops. Masked entries are never computed. Same mathematics as
 * attention-tf.ts, whose backward walk it shares.
 */
import * as tf from './tfjs.js';
import { blockVisible, visibleKeys } from './attention-mask.js';
import { attentionBackwardWith, blockRows, spans, splitKv, type BackwardPair } from './attention-tf.js';
import type { Kernels } from './kernels.js';
import { vectorMath } from './vector-math.js';

/**
 * One online-softmax step of a query block against a key block (forward pass). `s` holds scores
 * `[G, tq, n]` (G = batch·kv-heads·R, rows ordered (g, i)); `m`, `l` are the running max and sum per
 * row (updated in place); returns p `[G·tq, n]` (masked entries 0) and alpha per row (the factor the
 * running accumulator must be scaled by).
 */
export function onlineSoftmaxBlock(
  s: Float32Array,
  G: number,
  tq: number,
  n: number,
  qFirst: number,
  kStart: number,
  window: number | null,
  m: Float64Array,
  l: Float64Array,
): { p: Float32Array; alpha: Float64Array } {
  const ve = vectorMath();
  const total = G * tq * n;
  const [buf] = ve.scratch(total) as [Float32Array];
  const alpha = new Float64Array(G * tq);
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < tq; i++) {
      const row = g * tq + i;
      const o = row * n;
      const [lo, hi] = visibleKeys(qFirst + i, kStart, n, window);
      let bm = -Infinity;
      for (let j = lo; j < hi; j++) if (s[o + j]! > bm) bm = s[o + j]!;
      const mOld = m[row]!;
      const mNew = bm > mOld ? bm : mOld;
      alpha[row] = mOld === -Infinity ? 0 : Math.exp(mOld - mNew);
      m[row] = mNew;
      for (let j = lo; j < hi; j++) buf[o + j] = s[o + j]! - mNew;
    }
  }
  ve.exp(buf, total);
  const p = new Float32Array(total);
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < tq; i++) {
      const row = g * tq + i;
      const o = row * n;
      const [lo, hi] = visibleKeys(qFirst + i, kStart, n, window);
      let sum = 0;
      for (let j = lo; j < hi; j++) {
        const e = buf[o + j]!;
        p[o + j] = e;
        sum += e;
      }
      l[row] = l[row]! * alpha[row]! + sum;
    }
  }
  return { p, alpha };
}

/**
 * Backward of one (query block, key block) pair: from scores `s` and `dP = dO·Vᵀ` (both `[G·tq, n]`),
 * the row log-sum-exp and `D = rowsum(dO ∘ O)`, returns `P = exp(s − lse)` and `dS = P ∘ (dP − D)`.
 */
export function attentionBackwardBlock(
  s: Float32Array,
  dP: Float32Array,
  lse: Float32Array,
  D: Float32Array,
  G: number,
  tq: number,
  n: number,
  qFirst: number,
  kStart: number,
  window: number | null,
): { p: Float32Array; dS: Float32Array } {
  const ve = vectorMath();
  const total = G * tq * n;
  const [buf] = ve.scratch(total) as [Float32Array];
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < tq; i++) {
      const row = g * tq + i;
      const o = row * n;
      const [lo, hi] = visibleKeys(qFirst + i, kStart, n, window);
      const L = lse[row]!;
      for (let j = lo; j < hi; j++) buf[o + j] = s[o + j]! - L;
    }
  }
  ve.exp(buf, total);
  const p = new Float32Array(total);
  const dS = new Float32Array(total);
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < tq; i++) {
      const row = g * tq + i;
      const o = row * n;
      const [lo, hi] = visibleKeys(qFirst + i, kStart, n, window);
      const Dr = D[row]!;
      for (let j = lo; j < hi; j++) {
        const e = buf[o + j]!;
        p[o + j] = e;
        dS[o + j] = e * (dP[o + j]! - Dr);
      }
    }
  }
  return { p, dS };
}

export const attentionForwardHost: Kernels['attentionForward'] = (q, blocks, qStart, g) => {
  const [BK, R, Tq, D] = q.shape;
  const G = BK * R;
  return tf.tidy(() => {
    const kv = splitKv(blocks, g.keyBlock);
    const outs: tf.Tensor4D[] = [];
    const lses: tf.Tensor4D[] = [];
    for (const b of spans(Tq, Math.max(1, g.queryBlock))) {
      const qFirst = qStart + b.start;
      const qLast = qFirst + b.n - 1;
      const rows = G * b.n;
      const m = new Float64Array(rows).fill(-Infinity);
      const l = new Float64Array(rows);
      const acc = new Float64Array(rows * D);
      let seen = false;
      tf.tidy(() => {
        const qs = tf.mul(blockRows(q, b), g.scale) as tf.Tensor3D;
        for (const blk of kv) {
          const n = blk.k.shape[1];
          if (!blockVisible(blk.start, n, qFirst, qLast, g.window)) continue;
          seen = true;
          tf.tidy(() => {
            const s = tf.matMul(qs, blk.k, false, true).dataSync() as Float32Array;
            const { p, alpha } = onlineSoftmaxBlock(s, G, b.n, n, qFirst, blk.start, g.window, m, l);
            const pv = tf.matMul(tf.tensor3d(p, [BK, R * b.n, n]), blk.v).dataSync() as Float32Array;
            for (let r = 0; r < rows; r++) {
              const a = alpha[r]!;
              const o = r * D;
              for (let d = 0; d < D; d++) acc[o + d] = acc[o + d]! * a + pv[o + d]!;
            }
          });
        }
      });
      if (!seen) throw new Error(`attention: no key is visible to queries ${qFirst}..${qLast}`);
      const out = new Float32Array(rows * D);
      const lse = new Float32Array(rows);
      for (let r = 0; r < rows; r++) {
        const inv = 1 / l[r]!;
        for (let d = 0; d < D; d++) out[r * D + d] = acc[r * D + d]! * inv;
        lse[r] = m[r]! + Math.log(l[r]!);
      }
      outs.push(tf.tensor4d(out, [BK, R, b.n, D]));
      lses.push(tf.tensor4d(lse, [BK, R, b.n, 1]));
    }
    const cat = (xs: tf.Tensor4D[]) => (xs.length === 1 ? xs[0]! : (tf.concat(xs, 2) as tf.Tensor4D));
    return { o: cat(outs), lse: cat(lses) };
  });
};

const hostPair: BackwardPair = ({ qs, k, v, dO, lse, d, qb, kb }, R, window) => {
  const [BK, rows] = qs.shape;
  const s = tf.matMul(qs, k, false, true).dataSync() as Float32Array;
  const dP = tf.matMul(dO, v, false, true).dataSync() as Float32Array;
  const r = attentionBackwardBlock(s, dP, lse.dataSync() as Float32Array, d.dataSync() as Float32Array, BK * R, qb.n, kb.n, qb.start, kb.start, window);
  return { p: tf.tensor3d(r.p, [BK, rows, kb.n]), dS: tf.tensor3d(r.dS, [BK, rows, kb.n]) };
};

export const attentionBackwardHost: Kernels['attentionBackward'] = (...args) => attentionBackwardWith(hostPair, ...args);
