/**
 * Blockwise attention as plain tf ops (every tfjs backend): the FlashAttention recurrences. The forward
 * folds one (query block, key block) pair at a time into a running max m, normaliser l and weighted sum
 * (online softmax), so no `T × T` score tensor exists; the backward recomputes each pair's probabilities
 * from the saved row log-sum-exp:
 *
 *   P = exp(S − lse),  dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP − rowsum(dO ∘ O)),
 *   dQ += dS K · scale,  dK += dSᵀ (Q · scale).
 *
 * The backward's walk over block pairs is shared with the host implementation (attention-host.ts),
 * which computes P and dS with fused passes instead.
 */
import * as tf from './tfjs.js';
import { additiveMask, blockVisible } from './attention-mask.js';
import type { Kernels, KvBlock } from './kernels.js';

/** A query or key block: `n` positions starting at `start`. */
export interface Span {
  start: number;
  n: number;
}

export function spans(T: number, size: number): Span[] {
  const out: Span[] = [];
  for (let s = 0; s < T; s += size) out.push({ start: s, n: Math.min(size, T - s) });
  return out;
}

/** KV blocks cut into runs of at most `keyBlock` keys (slices, created in the caller's tidy scope). */
export function splitKv(blocks: readonly KvBlock[], keyBlock: number | undefined): KvBlock[] {
  if (!keyBlock) return [...blocks];
  const out: KvBlock[] = [];
  for (const b of blocks) {
    const [BK, n, D] = b.k.shape;
    if (n <= keyBlock) {
      out.push(b);
      continue;
    }
    for (const s of spans(n, keyBlock)) {
      out.push({ k: tf.slice(b.k, [0, s.start, 0], [BK, s.n, D]), v: tf.slice(b.v, [0, s.start, 0], [BK, s.n, D]), start: b.start + s.start });
    }
  }
  return out;
}

/** Running state of an online softmax over key blocks: row maxima, row sums, weighted value sums. */
export type OnlineSoftmaxState = {
  m: tf.Tensor3D;
  l: tf.Tensor3D;
  acc: tf.Tensor3D;
};

/**
 * One key block of the online softmax: fold scores `s` `[B, rows, n]` and values `v` `[B, n, D]` into
 * the running state (null before the first block).
 */
export function onlineSoftmaxStep(state: OnlineSoftmaxState | null, s: tf.Tensor3D, v: tf.Tensor3D): OnlineSoftmaxState {
  const bm = tf.max(s, -1, true) as tf.Tensor3D;
  if (state === null) {
    const p = tf.exp(tf.sub(s, bm)) as tf.Tensor3D;
    return { m: bm, l: tf.sum(p, -1, true) as tf.Tensor3D, acc: tf.matMul(p, v) as tf.Tensor3D };
  }
  const mNew = tf.maximum(state.m, bm) as tf.Tensor3D;
  const alpha = tf.exp(tf.sub(state.m, mNew));
  const p = tf.exp(tf.sub(s, mNew)) as tf.Tensor3D;
  return {
    m: mNew,
    l: tf.add(tf.mul(state.l, alpha), tf.sum(p, -1, true)) as tf.Tensor3D,
    acc: tf.add(tf.mul(state.acc, alpha), tf.matMul(p, v)) as tf.Tensor3D,
  };
}

/** Scores `[BK, R·tq, n]` of scaled query rows against a key block, hidden ones pushed to MASKED. */
export function maskedScores(qs: tf.Tensor3D, k: tf.Tensor3D, R: number, qFirst: number, tq: number, kStart: number, window: number | null): tf.Tensor3D {
  const BK = qs.shape[0];
  const n = k.shape[1];
  const s = tf.matMul(qs, k, false, true) as tf.Tensor3D;
  const mask = additiveMask(qFirst, tq, kStart, n, window);
  if (!mask) return s;
  return tf.reshape(tf.add(tf.reshape(s, [BK, R, tq, n]), tf.tensor2d(mask, [tq, n])), [BK, R * tq, n]) as tf.Tensor3D;
}

/** `[BK, R, T, X]` rows of one query block as `[BK, R·tq, X]`. */
export function blockRows(x: tf.Tensor4D, b: Span): tf.Tensor3D {
  const [BK, R, T, X] = x.shape;
  return tf.reshape(b.n === T ? x : tf.slice(x, [0, 0, b.start, 0], [BK, R, b.n, X]), [BK, R * b.n, X]) as tf.Tensor3D;
}

export const attentionForwardTf: Kernels['attentionForward'] = (q, blocks, qStart, g) => {
  const [BK, R, Tq, D] = q.shape;
  const qb = Math.max(1, g.queryBlock);
  return tf.tidy(() => {
    const qs = tf.mul(q, g.scale) as tf.Tensor4D;
    const kv = splitKv(blocks, g.keyBlock);
    const outs: tf.Tensor4D[] = [];
    const lses: tf.Tensor4D[] = [];
    for (const b of spans(Tq, qb)) {
      const qFirst = qStart + b.start;
      const qLast = qFirst + b.n - 1;
      const [o, lse] = tf.tidy(() => {
        const qBlk = blockRows(qs, b);
        let st: OnlineSoftmaxState | null = null;
        for (const blk of kv) {
          if (!blockVisible(blk.start, blk.k.shape[1], qFirst, qLast, g.window)) continue;
          const prev: OnlineSoftmaxState | null = st;
          st = tf.tidy(() => onlineSoftmaxStep(prev, maskedScores(qBlk, blk.k, R, qFirst, b.n, blk.start, g.window), blk.v));
          if (prev) tf.dispose([prev.m, prev.l, prev.acc]);
        }
        if (!st) throw new Error(`attention: no key is visible to queries ${qFirst}..${qLast}`);
        return [tf.reshape(tf.div(st.acc, st.l), [BK, R, b.n, D]), tf.reshape(tf.add(st.m, tf.log(st.l)), [BK, R, b.n, 1])] as tf.Tensor4D[];
      });
      outs.push(o!);
      lses.push(lse!);
    }
    const cat = (xs: tf.Tensor4D[]) => (xs.length === 1 ? xs[0]! : (tf.concat(xs, 2) as tf.Tensor4D));
    return { o: cat(outs), lse: cat(lses) };
  });
};

/** P and dS `[BK, R·tq, n]` of one (query block, key block) pair of the backward pass. */
export type BackwardPair = (
  pair: { qs: tf.Tensor3D; k: tf.Tensor3D; v: tf.Tensor3D; dO: tf.Tensor3D; lse: tf.Tensor3D; d: tf.Tensor3D; qb: Span; kb: Span },
  R: number,
  window: number | null,
) => { p: tf.Tensor3D; dS: tf.Tensor3D };

const tfPair: BackwardPair = ({ qs, k, v, dO, lse, d, qb, kb }, R, window) => {
  const p = tf.exp(tf.sub(maskedScores(qs, k, R, qb.start, qb.n, kb.start, window), lse)) as tf.Tensor3D;
  return { p, dS: tf.mul(p, tf.sub(tf.matMul(dO, v, false, true), d)) as tf.Tensor3D };
};

/** The backward pass over every visible block pair, with `pair` computing P and dS. */
export function attentionBackwardWith(pair: BackwardPair, ...[q, k, v, out, dO, g]: Parameters<Kernels['attentionBackward']>): ReturnType<Kernels['attentionBackward']> {
  const [BK, R, T, D] = q.shape;
  const { scale, window } = g;
  const qBlocks = spans(T, Math.max(1, g.queryBlock));
  const kBlocks = spans(T, Math.max(1, g.keyBlock));
  const keys = (x: tf.Tensor3D, b: Span) => (b.n === T ? x : (tf.slice(x, [0, b.start, 0], [BK, b.n, D]) as tf.Tensor3D));
  return tf.tidy(() => {
    const dRow = tf.sum(tf.mul(dO, out.o), -1, true) as tf.Tensor4D; // [BK, R, T, 1]
    // Accumulators live across blocks: each pair's tidy returns the new ones, the old are freed here.
    const dK: (tf.Tensor3D | null)[] = kBlocks.map(() => null);
    const dV: (tf.Tensor3D | null)[] = kBlocks.map(() => null);
    const dQ: tf.Tensor4D[] = [];
    for (const qb of qBlocks) {
      const [qs, dOb, lseB, dB] = tf.tidy(() => [tf.mul(blockRows(q, qb), scale) as tf.Tensor3D, blockRows(dO, qb), blockRows(out.lse, qb), blockRows(dRow, qb)]) as [
        tf.Tensor3D,
        tf.Tensor3D,
        tf.Tensor3D,
        tf.Tensor3D,
      ];
      let dqAcc: tf.Tensor3D | null = null;
      kBlocks.forEach((kb, ki) => {
        if (!blockVisible(kb.start, kb.n, qb.start, qb.start + qb.n - 1, window)) return;
        const prevK = dK[ki] ?? null;
        const prevV = dV[ki] ?? null;
        const prevQ: tf.Tensor3D | null = dqAcc;
        const next = tf.tidy(() => {
          const kBlk = keys(k, kb);
          const { p, dS } = pair({ qs, k: kBlk, v: keys(v, kb), dO: dOb, lse: lseB, d: dB, qb, kb }, R, window);
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
      dQ.push(tf.tidy(() => tf.reshape(tf.mul(acc, scale), [BK, R, qb.n, D]) as tf.Tensor4D));
      for (const t of [acc, qs, dOb, lseB, dB]) t.dispose();
    }
    const cat3 = (parts: (tf.Tensor3D | null)[]) => {
      const full = parts.map((p, i) => p ?? (tf.zeros([BK, kBlocks[i]!.n, D]) as tf.Tensor3D));
      return (full.length === 1 ? full[0]! : tf.concat(full, 1)) as tf.Tensor3D;
    };
    const dq = (dQ.length === 1 ? dQ[0]! : tf.concat(dQ, 2)) as tf.Tensor4D;
    return [dq, cat3(dK), cat3(dV)] as [tf.Tensor4D, tf.Tensor3D, tf.Tensor3D];
  });
}

export const attentionBackwardTf: Kernels['attentionBackward'] = (...args) => attentionBackwardWith(tfPair, ...args);
