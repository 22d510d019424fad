/**
 * Causal grouped-query attention, blockwise with an online softmax (the FlashAttention recurrence):
 * queries are processed in blocks, keys and values arrive as a list of blocks (the KV cache's own
 * blocks, or slices of a fresh k/v), and each (query block, key block) pair updates a running max m,
 * normaliser l and weighted sum. No T×T score tensor is ever allocated whole; the largest is
 * `[B·nKv, R·queryBlock, keyBlock]`. GQA needs no copy of k/v: the R = nH/nKv query heads that share a
 * KV head are stacked along the query axis.
 *
 * Every op here is an ordinary differentiable tfjs op, so the functions work inside tf.grads.
 */
import * as tf from '@tensorflow/tfjs';
import { inferenceBlas, nativeBlockwiseAttention } from './native-inference.js';

/** A run of consecutive keys/values, `[B·nKv, n, D]`, starting at sequence index `start`. */
export interface KvBlock {
  k: tf.Tensor3D;
  v: tf.Tensor3D;
  start: number;
}

export interface AttentionOptions {
  /** Queries per block (default 256). */
  queryBlock?: number;
  /**
   * Mistral-style sliding window: query i sees keys j with i − window < j ≤ i (HF semantics). null/undefined:
   * full causal attention.
   */
  slidingWindow?: number | null;
  /** Score scale (default 1/√D). */
  scale?: number;
  /**
   * false: always the tf-op path. Default: the native path of native-attention.ts when the accelerated
   * cpu backend is active and no gradient is being recorded.
   */
  native?: boolean;
}

export const DEFAULT_QUERY_BLOCK = 256;
export const DEFAULT_KEY_BLOCK = 512;
/** Added to masked scores. Finite, so a row that is fully masked inside one block stays NaN-free. */
const MASKED = -1e30;

/** Which keys of a block the queries `qFirst..qLast` (sequence indices) can see at all. */
function visible(block: { start: number; n: number }, qFirst: number, qLast: number, window: number | null): boolean {
  if (block.start > qLast) return false; // every key lies in the future of every query
  if (window !== null && block.start + block.n - 1 <= qFirst - window) return false; // all too old
  return true;
}

/** Additive mask `[tq, n]` for queries starting at `qFirst` against keys starting at `kStart`, or null if none is masked. */
function causalMask(qFirst: number, tq: number, kStart: number, n: number, window: number | null): tf.Tensor2D | null {
  const lastKey = kStart + n - 1;
  const needCausal = lastKey > qFirst;
  const needWindow = window !== null && kStart <= qFirst + tq - 1 - window;
  if (!needCausal && !needWindow) return null;
  const m = new Float32Array(tq * n);
  for (let i = 0; i < tq; i++) {
    const qi = qFirst + i;
    for (let j = 0; j < n; j++) {
      const kj = kStart + j;
      if (kj > qi || (window !== null && kj <= qi - window)) m[i * n + j] = MASKED;
    }
  }
  return tf.tensor2d(m, [tq, n]);
}

/** Running state of an online softmax over key blocks: row maxima, row sums, weighted value sums. */
// A type alias (not an interface) so it is a tf.TensorContainer that tf.tidy can return.
export type OnlineSoftmaxState = {
  m: tf.Tensor3D;
  l: tf.Tensor3D;
  acc: tf.Tensor3D;
};

/**
 * One key block of the online softmax (FlashAttention's forward recurrence): fold scores `s`
 * `[B, rows, n]` and values `v` `[B, n, D]` into the running state (null before the first block).
 * Shared by inference and training so both compute exactly the same attention.
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

/**
 * Attention of queries `q` `[B·nKv, R, Tq, D]` (query token i sits at sequence index `qStart + i`) over
 * key/value blocks. Returns `[B·nKv, R, Tq, D]`.
 */
export function blockwiseAttention(q: tf.Tensor4D, blocks: readonly KvBlock[], qStart: number, options: AttentionOptions = {}): tf.Tensor4D {
  const [BK, R, Tq, D] = q.shape;
  const qb = Math.max(1, options.queryBlock ?? DEFAULT_QUERY_BLOCK);
  const window = options.slidingWindow ?? null;
  const scale = options.scale ?? 1 / Math.sqrt(D);
  // Accelerated cpu backend outside tf.grads: the same recurrence as BLAS calls on the raw data.
  const blas = options.native === false ? null : inferenceBlas();
  if (blas) return nativeBlockwiseAttention(blas, q, blocks, qStart, { queryBlock: qb, window, scale });
  return tf.tidy(() => {
    const qs = tf.mul(q, scale) as tf.Tensor4D;
    const outs: tf.Tensor4D[] = [];
    for (let q0 = 0; q0 < Tq; q0 += qb) {
      const tq = Math.min(qb, Tq - q0);
      const qFirst = qStart + q0;
      const qLast = qFirst + tq - 1;
      outs.push(
        tf.tidy(() => {
          const qBlk = (tq === Tq ? qs : tf.slice(qs, [0, 0, q0, 0], [BK, R, tq, D])).reshape([BK, R * tq, D]) as tf.Tensor3D;
          let m: tf.Tensor3D | null = null;
          let l: tf.Tensor3D | null = null;
          let acc: tf.Tensor3D | null = null;
          for (const b of blocks) {
            const n = b.k.shape[1];
            if (!visible({ start: b.start, n }, qFirst, qLast, window)) continue;
            const next = tf.tidy(() => {
              let s = tf.matMul(qBlk, b.k, false, true) as tf.Tensor3D; // [BK, R·tq, n]
              const mask = causalMask(qFirst, tq, b.start, n, window);
              if (mask) s = tf.add(s.reshape([BK, R, tq, n]), mask).reshape([BK, R * tq, n]) as tf.Tensor3D;
              return onlineSoftmaxStep(m === null ? null : { m, l: l!, acc: acc! }, s, b.v);
            });
            m?.dispose();
            l?.dispose();
            acc?.dispose();
            ({ m, l, acc } = next);
          }
          if (!acc || !l) throw new Error(`attention: no key is visible to queries ${qFirst}..${qLast}`);
          return tf.div(acc, l).reshape([BK, R, tq, D]) as tf.Tensor4D;
        }),
      );
    }
    return outs.length === 1 ? outs[0]! : (tf.concat(outs, 2) as tf.Tensor4D);
  });
}

/**
 * The same attention computed the plain way (one softmax over every key): the reference the blockwise
 * version is tested against. Materialises `[B·nKv, R, Tq, Tk]`; use it on short inputs only.
 */
export function fullAttention(q: tf.Tensor4D, k: tf.Tensor3D, v: tf.Tensor3D, qStart: number, options: AttentionOptions = {}): tf.Tensor4D {
  const [BK, R, Tq, D] = q.shape;
  const Tk = k.shape[1];
  const window = options.slidingWindow ?? null;
  const scale = options.scale ?? 1 / Math.sqrt(D);
  return tf.tidy(() => {
    const s = tf.matMul(tf.mul(q, scale).reshape([BK, R * Tq, D]) as tf.Tensor3D, k, false, true).reshape([BK, R, Tq, Tk]);
    const mask = causalMask(qStart, Tq, 0, Tk, window);
    const p = tf.softmax(mask ? tf.add(s, mask) : s, -1);
    return tf.matMul(p.reshape([BK, R * Tq, Tk]) as tf.Tensor3D, v).reshape([BK, R, Tq, D]) as tf.Tensor4D;
  });
}

/** Split a fresh `[B·nKv, T, D]` k/v pair into blocks of `blockSize` keys starting at sequence index `start`. */
export function kvBlocks(k: tf.Tensor3D, v: tf.Tensor3D, start: number, blockSize = DEFAULT_KEY_BLOCK): KvBlock[] {
  const [BK, T, D] = k.shape;
  if (T <= blockSize) return [{ k, v, start }];
  const out: KvBlock[] = [];
  for (let s = 0; s < T; s += blockSize) {
    const n = Math.min(blockSize, T - s);
    out.push({ k: tf.slice(k, [0, s, 0], [BK, n, D]), v: tf.slice(v, [0, s, 0], [BK, n, D]), start: start + s });
  }
  return out;
}
