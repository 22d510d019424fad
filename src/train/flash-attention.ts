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
 * of a KV head along the query axis; HF's sliding window), so the two agree to float rounding.
 */
import * as tf from '@tensorflow/tfjs';

export interface FlashAttentionOptions {
  /** Queries per block (default 256). */
  queryBlock?: number;
  /** Keys per block (default 512). */
  keyBlock?: number;
  /** Mistral-style sliding window (query i sees keys j with i − window < j ≤ i), or null. */
  slidingWindow?: number | null;
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
  const qBlocks = blocksOf(T, Math.max(1, options.queryBlock ?? TRAIN_QUERY_BLOCK));
  const kBlocks = blocksOf(T, Math.max(1, options.keyBlock ?? TRAIN_KEY_BLOCK));
  const window = options.slidingWindow ?? null;
  const scale = 1 / Math.sqrt(D);
  // Masks are plain data, built once per call and shared by both passes.
  const masks = new Map<string, Float32Array | null>();
  const maskFor = (qb: Block, kb: Block): tf.Tensor | null => {
    const key = `${qb.start}:${kb.start}`;
    if (!masks.has(key)) masks.set(key, maskData(qb, kb, window));
    const m = masks.get(key)!;
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

  const op = tf.customGrad(((qIn: tf.Tensor4D, kIn: tf.Tensor3D, vIn: tf.Tensor3D, save: tf.GradSaveFunc) => {
    const outs: tf.Tensor4D[] = [];
    const lses: tf.Tensor4D[] = [];
    for (const qb of qBlocks) {
      const [o, lse] = tf.tidy(() => {
        const qs = tf.mul(sliceRows(qIn, qb, D), scale) as tf.Tensor3D;
        let m: tf.Tensor3D | null = null;
        let l: tf.Tensor3D | null = null;
        let acc: tf.Tensor3D | null = null;
        for (const kb of kBlocks) {
          if (!visible(kb, qb, window)) continue;
          const next = tf.tidy(() => {
            const s = scores(qs, sliceKeys(kIn, kb), qb, kb);
            const vBlk = sliceKeys(vIn, kb);
            const bm = tf.max(s, -1, true) as tf.Tensor3D;
            if (m === null) {
              const p = tf.exp(tf.sub(s, bm)) as tf.Tensor3D;
              return { m: bm, l: tf.sum(p, -1, true) as tf.Tensor3D, acc: tf.matMul(p, vBlk) as tf.Tensor3D };
            }
            const mNew = tf.maximum(m, bm) as tf.Tensor3D;
            const alpha = tf.exp(tf.sub(m, mNew));
            const p = tf.exp(tf.sub(s, mNew)) as tf.Tensor3D;
            return {
              m: mNew,
              l: tf.add(tf.mul(l!, alpha), tf.sum(p, -1, true)) as tf.Tensor3D,
              acc: tf.add(tf.mul(acc!, alpha), tf.matMul(p, vBlk)) as tf.Tensor3D,
            };
          });
          m?.dispose();
          l?.dispose();
          acc?.dispose();
          ({ m, l, acc } = next);
        }
        return [
          tf.div(acc!, l!).reshape([BK, R, qb.n, D]) as tf.Tensor4D,
          tf.add(m!, tf.log(l!)).reshape([BK, R, qb.n, 1]) as tf.Tensor4D,
        ];
      });
      outs.push(o);
      lses.push(lse);
    }
    const out = outs.length === 1 ? outs[0]! : (tf.concat(outs, 2) as tf.Tensor4D);
    const lse = lses.length === 1 ? lses[0]! : (tf.concat(lses, 2) as tf.Tensor4D);
    save([qIn, kIn, vIn, out, lse]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [qS, kS, vS, oS, lseS] = saved as [tf.Tensor4D, tf.Tensor3D, tf.Tensor3D, tf.Tensor4D, tf.Tensor4D];
        return backward(qS, kS, vS, oS, lseS, dy);
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);

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
        let dqAcc: tf.Tensor3D | null = null;
        kBlocks.forEach((kb, ki) => {
          if (!visible(kb, qb, window)) return;
          const prevK = dK[ki] ?? null;
          const prevV = dV[ki] ?? null;
          const prevQ: tf.Tensor3D | null = dqAcc;
          const next = tf.tidy(() => {
            const kBlk = sliceKeys(kS, kb);
            const vBlk = sliceKeys(vS, kb);
            const p = tf.exp(tf.sub(scores(qs, kBlk, qb, kb), lseB)) as tf.Tensor3D; // [BK, R·tq, n]
            const dvPart = tf.matMul(p, dOb, true, false) as tf.Tensor3D;
            const dP = tf.matMul(dOb, vBlk, false, true);
            const dS = tf.mul(p, tf.sub(dP, dB)) as tf.Tensor3D;
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

  return op(q, k, v) as tf.Tensor4D;
}
