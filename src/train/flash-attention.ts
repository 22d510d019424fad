/**
 * Causal attention for training, blockwise in both passes (the FlashAttention recurrences), so that
 * neither the forward nor the backward pass ever holds more than one `[B·nKv, R·queryBlock, keyBlock]`
 * score block. Under plain autodiff the runtime's blockwise attention (src/model/attention.ts) would
 * keep every block's probabilities for the backward pass — O(T²) memory. Here the forward keeps only
 * the output and the row log-sum-exp, and the backward recomputes each block's probabilities:
 *
 *   P = exp(S − lse),  dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP − rowsum(dO ∘ O)),
 *   dQ += dS K · scale,  dK += dSᵀ (Q · scale).
 *
 * Same layout and semantics as the runtime's `blockwiseAttention` (GQA by stacking the R query heads
 * of a KV head along the query axis; HF's sliding window), so the two agree to float rounding. On the
 * tfjs cpu backend the softmax parts are fused JS passes (host-kernels.ts) and masked entries are
 * never computed; elsewhere they are tf ops with additive masks.
 *
 * A layer recomputed for its backward pass calls this again on identical inputs: `reuse` hands it the
 * output and log-sum-exp of the first call (`keep` collects them), so the recomputation skips the
 * attention forward entirely — the most expensive part of a long-context layer.
 */
import * as tf from '@tensorflow/tfjs';
import { onlineSoftmaxStep } from '../model/attention.js';
import { attentionBackwardBlock, hostKernels, onlineSoftmaxBlock } from './host-kernels.js';
import { acceleratedCpuAddon } from '../backend/select.js';
import { attentionBackwardNative, attentionForwardNative } from './native-attention.js';
import { timed } from './timing.js';

/** Output and row log-sum-exp of one attention call (`[BK, R, T, D]` and `[BK, R, T, 1]`). */
export interface AttentionResult {
  o: tf.Tensor4D;
  lse: tf.Tensor4D;
}

export interface FlashAttentionOptions {
  /** Queries per block (default 256). */
  queryBlock?: number;
  /** Keys per block (default 512). */
  keyBlock?: number;
  /** Mistral-style sliding window (query i sees keys j with i − window < j ≤ i), or null. */
  slidingWindow?: number | null;
  /** Fused JS softmax passes (default: on the tfjs cpu backend). */
  host?: boolean;
  /** The result of an earlier call on the same inputs: skip the forward computation. */
  reuse?: AttentionResult;
  /** Receives kept copies of this call's output and log-sum-exp (the caller disposes them). */
  keep?: (r: AttentionResult) => void;
}

export const TRAIN_QUERY_BLOCK = 256;
export const TRAIN_KEY_BLOCK = 512;
const MASKED = -1e30;

interface Block {
  start: number;
  n: number;
}

function blocksOf(T: number, size: number): Block[] {
  const out: Block[] = [];
  for (let s = 0; s < T; s += size) out.push({ start: s, n: Math.min(size, T - s) });
  return out;
}

function visible(kb: Block, q: Block, window: number | null): boolean {
  if (kb.start > q.start + q.n - 1) return false;
  if (window !== null && kb.start + kb.n - 1 <= q.start - window) return false;
  return true;
}

/** Additive mask `[tq, n]` or null when every key of the block is visible to every query. */
function maskData(q: Block, kb: Block, window: number | null): Float32Array | null {
  const needCausal = kb.start + kb.n - 1 > q.start;
  const needWindow = window !== null && kb.start <= q.start + q.n - 1 - window;
  if (!needCausal && !needWindow) return null;
  const m = new Float32Array(q.n * kb.n);
  for (let i = 0; i < q.n; i++) {
    const qi = q.start + i;
    for (let j = 0; j < kb.n; j++) {
      const kj = kb.start + j;
      if (kj > qi || (window !== null && kj <= qi - window)) m[i * kb.n + j] = MASKED;
    }
  }
  return m;
}

/**
 * Attention of `q` `[BK, R, T, D]` over `k`, `v` `[BK, T, D]` (causal, queries and keys at positions
 * 0..T−1). Returns `[BK, R, T, D]`. Differentiable with respect to q, k and v with O(T) memory.
 */
export function flashAttention(q: tf.Tensor4D, k: tf.Tensor3D, v: tf.Tensor3D, options: FlashAttentionOptions = {}): tf.Tensor4D {
  const [BK, R, T, D] = q.shape;
  const G = BK * R;
  const qBlocks = blocksOf(T, Math.max(1, options.queryBlock ?? TRAIN_QUERY_BLOCK));
  const kBlocks = blocksOf(T, Math.max(1, options.keyBlock ?? TRAIN_KEY_BLOCK));
  const window = options.slidingWindow ?? null;
  const host = options.host ?? hostKernels();
  // With the native BLAS active, the whole recurrence runs as BLAS calls on the tensors' data.
  const blas = host ? acceleratedCpuAddon() : null;
  const geometry = { BK, R, T, D, queryBlock: qBlocks[0]!.n, keyBlock: kBlocks[0]!.n, window };
  const scale = 1 / Math.sqrt(D);
  const maskFor = (qb: Block, kb: Block): tf.Tensor | null => {
    const m = maskData(qb, kb, window);
    return m ? tf.tensor4d(m, [1, 1, qb.n, kb.n]) : null;
  };
  const sliceRows = (x: tf.Tensor4D, b: Block, cols: number) =>
    (b.n === T ? x : tf.slice(x, [0, 0, b.start, 0], [BK, R, b.n, cols])).reshape([BK, R * b.n, cols]) as tf.Tensor3D;
  const sliceKeys = (x: tf.Tensor3D, b: Block) => (b.n === T ? x : (tf.slice(x, [0, b.start, 0], [BK, b.n, D]) as tf.Tensor3D));
  /** Scores of a (query block, key block) pair with the mask applied: `[BK, R·tq, n]`. */
  const scores = (qs: tf.Tensor3D, kBlk: tf.Tensor3D, qb: Block, kb: Block): tf.Tensor3D => {
    let s = tf.matMul(qs, kBlk, false, true) as tf.Tensor3D;
    const mask = maskFor(qb, kb);
    if (mask) s = tf.add(s.reshape([BK, R, qb.n, kb.n]), mask).reshape([BK, R * qb.n, kb.n]) as tf.Tensor3D;
    return s;
  };

  /** Forward of one query block: output `[BK, R, tq, D]` and lse `[BK, R, tq, 1]`. */
  function forwardBlock(qIn: tf.Tensor4D, kIn: tf.Tensor3D, vIn: tf.Tensor3D, qb: Block): tf.Tensor4D[] {
    return tf.tidy(() => {
      const qs = tf.mul(sliceRows(qIn, qb, D), scale) as tf.Tensor3D;
      if (host) {
        const rows = G * qb.n;
        const m = new Float64Array(rows).fill(-Infinity);
        const l = new Float64Array(rows);
        const acc = new Float64Array(rows * D);
        for (const kb of kBlocks) {
          if (!visible(kb, qb, window)) continue;
          tf.tidy(() => {
            const s = tf.matMul(qs, sliceKeys(kIn, kb), false, true).dataSync() as Float32Array;
            const { p, alpha } = onlineSoftmaxBlock(s, G, qb.n, kb.n, qb.start, kb.start, window, m, l);
            const pv = tf.matMul(tf.tensor3d(p, [BK, R * qb.n, kb.n]), sliceKeys(vIn, kb)).dataSync() as Float32Array;
            for (let r = 0; r < rows; r++) {
              const a = alpha[r]!;
              const o = r * D;
              for (let d = 0; d < D; d++) acc[o + d] = acc[o + d]! * a + pv[o + d]!;
            }
          });
        }
        const out = new Float32Array(rows * D);
        const lse = new Float32Array(rows);
        for (let r = 0; r < rows; r++) {
          const inv = 1 / l[r]!;
          for (let d = 0; d < D; d++) out[r * D + d] = acc[r * D + d]! * inv;
          lse[r] = m[r]! + Math.log(l[r]!);
        }
        return [tf.tensor4d(out, [BK, R, qb.n, D]), tf.tensor4d(lse, [BK, R, qb.n, 1])];
      }
      let m: tf.Tensor3D | null = null;
      let l: tf.Tensor3D | null = null;
      let acc: tf.Tensor3D | null = null;
      for (const kb of kBlocks) {
        if (!visible(kb, qb, window)) continue;
        const next = tf.tidy(() => {
          const s = scores(qs, sliceKeys(kIn, kb), qb, kb);
          const vBlk = sliceKeys(vIn, kb);
          return onlineSoftmaxStep(m === null ? null : { m, l: l!, acc: acc! }, s, vBlk);
        });
        m?.dispose();
        l?.dispose();
        acc?.dispose();
        ({ m, l, acc } = next);
      }
      return [tf.div(acc!, l!).reshape([BK, R, qb.n, D]) as tf.Tensor4D, tf.add(m!, tf.log(l!)).reshape([BK, R, qb.n, 1]) as tf.Tensor4D];
    });
  }

  function backward(qS: tf.Tensor4D, kS: tf.Tensor3D, vS: tf.Tensor3D, oS: tf.Tensor4D, lseS: tf.Tensor4D, dO: tf.Tensor4D): tf.Tensor[] {
    return tf.tidy(() => {
      const dRow = tf.sum(tf.mul(dO, oS), -1, true) as tf.Tensor4D; // [BK, R, T, 1]
      // Accumulators live across blocks: each pair's tidy returns the new ones, the old are freed here.
      const dK: (tf.Tensor3D | null)[] = kBlocks.map(() => null);
      const dV: (tf.Tensor3D | null)[] = kBlocks.map(() => null);
      const dQ: tf.Tensor4D[] = [];
      for (const qb of qBlocks) {
        const [qs, dOb, lseB, dB] = tf.tidy(() => [
          tf.mul(sliceRows(qS, qb, D), scale) as tf.Tensor3D,
          sliceRows(dO, qb, D),
          sliceRows(lseS, qb, 1),
          sliceRows(dRow, qb, 1),
        ]) as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
        const lseData = host ? (lseB.dataSync() as Float32Array) : null;
        const dData = host ? (dB.dataSync() as Float32Array) : null;
        let dqAcc: tf.Tensor3D | null = null;
        kBlocks.forEach((kb, ki) => {
          if (!visible(kb, qb, window)) return;
          const prevK = dK[ki] ?? null;
          const prevV = dV[ki] ?? null;
          const prevQ: tf.Tensor3D | null = dqAcc;
          const next = tf.tidy(() => {
            const kBlk = sliceKeys(kS, kb);
            const vBlk = sliceKeys(vS, kb);
            let p: tf.Tensor3D;
            let dS: tf.Tensor3D;
            if (host) {
              const s = tf.matMul(qs, kBlk, false, true).dataSync() as Float32Array;
              const dP = tf.matMul(dOb, vBlk, false, true).dataSync() as Float32Array;
              const r = attentionBackwardBlock(s, dP, lseData!, dData!, G, qb.n, kb.n, qb.start, kb.start, window);
              p = tf.tensor3d(r.p, [BK, R * qb.n, kb.n]);
              dS = tf.tensor3d(r.dS, [BK, R * qb.n, kb.n]);
            } else {
              p = tf.exp(tf.sub(scores(qs, kBlk, qb, kb), lseB)) as tf.Tensor3D; // [BK, R·tq, n]
              dS = tf.mul(p, tf.sub(tf.matMul(dOb, vBlk, false, true), dB)) as tf.Tensor3D;
            }
            const dvPart = tf.matMul(p, dOb, true, false) as tf.Tensor3D;
            const dkPart = tf.matMul(dS, qs, true, false) as tf.Tensor3D;
            const dqPart = tf.matMul(dS, kBlk) as tf.Tensor3D;
            return {
              dq: prevQ ? (tf.add(prevQ, dqPart) as tf.Tensor3D) : dqPart,
              dk: prevK ? (tf.add(prevK, dkPart) as tf.Tensor3D) : dkPart,
              dv: prevV ? (tf.add(prevV, dvPart) as tf.Tensor3D) : dvPart,
            };
          });
          prevQ?.dispose();
          prevK?.dispose();
          prevV?.dispose();
          dqAcc = next.dq;
          dK[ki] = next.dk;
          dV[ki] = next.dv;
        });
        const acc: tf.Tensor3D = dqAcc!;
        dQ.push(tf.tidy(() => tf.mul(acc, scale).reshape([BK, R, qb.n, D]) as tf.Tensor4D));
        for (const t of [acc, qs, dOb, lseB, dB]) t.dispose();
      }
      const cat3 = (parts: (tf.Tensor3D | null)[]) => {
        const full = parts.map((p, i) => p ?? (tf.zeros([BK, kBlocks[i]!.n, D]) as tf.Tensor3D));
        return full.length === 1 ? full[0]! : tf.concat(full, 1);
      };
      const dq = dQ.length === 1 ? dQ[0]! : tf.concat(dQ, 2);
      return [dq, cat3(dK), cat3(dV)];
    });
  }

  const op = tf.customGrad(((qIn: tf.Tensor4D, kIn: tf.Tensor3D, vIn: tf.Tensor3D, save: tf.GradSaveFunc) => {
    let out: tf.Tensor4D;
    let lse: tf.Tensor4D;
    if (options.reuse) {
      out = tf.clone(options.reuse.o);
      lse = options.reuse.lse;
    } else if (blas) {
      const r = timed('attention forward', () =>
        attentionForwardNative(blas, qIn.dataSync() as Float32Array, kIn.dataSync() as Float32Array, vIn.dataSync() as Float32Array, geometry),
      );
      out = tf.tensor4d(r.out, [BK, R, T, D]);
      lse = tf.tensor4d(r.lse, [BK, R, T, 1]);
    } else {
      const outs: tf.Tensor4D[] = [];
      const lses: tf.Tensor4D[] = [];
      for (const qb of qBlocks) {
        const [o, l] = forwardBlock(qIn, kIn, vIn, qb) as [tf.Tensor4D, tf.Tensor4D];
        outs.push(o);
        lses.push(l);
      }
      out = outs.length === 1 ? outs[0]! : (tf.concat(outs, 2) as tf.Tensor4D);
      lse = lses.length === 1 ? lses[0]! : (tf.concat(lses, 2) as tf.Tensor4D);
    }
    save([qIn, kIn, vIn, out, lse]);
    options.keep?.({ o: tf.keep(tf.clone(out)), lse: tf.keep(tf.clone(lse)) });
    return {
      value: out,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [qS, kS, vS, oS, lseS] = saved as [tf.Tensor4D, tf.Tensor3D, tf.Tensor3D, tf.Tensor4D, tf.Tensor4D];
        if (blas) {
          const data = (t: tf.Tensor) => t.dataSync() as Float32Array;
          const r = timed('attention backward', () => attentionBackwardNative(blas, data(qS), data(kS), data(vS), data(oS), data(lseS), data(dy), geometry));
          return [tf.tensor4d(r.dq, [BK, R, T, D]), tf.tensor3d(r.dk, [BK, T, D]), tf.tensor3d(r.dv, [BK, T, D])];
        }
        return backward(qS, kS, vS, oS, lseS, dy);
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);

  return op(q, k, v) as tf.Tensor4D;
}
