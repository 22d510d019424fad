/**
 * Causal grouped-query attention of the runtime: blockwise with an online softmax (the FlashAttention
 * recurrence) over a list of key/value blocks — the KV cache's own blocks, or slices of a fresh k/v —
 * so no T×T score tensor is ever allocated whole. GQA needs no copy of k/v: the R = nH/nKv query heads
 * that share a KV head are stacked along the query axis.
 *
 * The mathematics lives in the kernels (src/backend/attention-*.ts, the mask rule in attention-mask.ts),
 * shared with training, which adds the backward pass (src/train/flash-attention.ts). Under a gradient
 * tape the plain tf-op kernels run, so tf.grads sees ordinary ops.
 */
import * as tf from '../backend/tfjs.js';
import { additiveMask } from '../backend/attention-mask.js';
import { recordingGradient, type Kernels, type KvBlock } from '../backend/kernels.js';
import { tfKernels } from '../backend/kernels-tf.js';

export type { KvBlock } from '../backend/kernels.js';

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
  /** The backend's kernels (default: plain tf ops). */
  kernels?: Kernels;
}

export const DEFAULT_QUERY_BLOCK = 256;
export const DEFAULT_KEY_BLOCK = 512;

/**
 * Attention of queries `q` `[B·nKv, R, Tq, D]` (query token i sits at sequence index `qStart + i`) over
 * key/value blocks. Returns `[B·nKv, R, Tq, D]`.
 */
export function blockwiseAttention(q: tf.Tensor4D, blocks: readonly KvBlock[], qStart: number, options: AttentionOptions = {}): tf.Tensor4D {
  const kernels = options.kernels && !recordingGradient() ? options.kernels : tfKernels;
  const { o, lse } = kernels.attentionForward(q, blocks, qStart, {
    queryBlock: Math.max(1, options.queryBlock ?? DEFAULT_QUERY_BLOCK),
    window: options.slidingWindow ?? null,
    scale: options.scale ?? 1 / Math.sqrt(q.shape[3]),
  });
  lse.dispose();
  return o;
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
    const s = tf.reshape(tf.matMul(tf.reshape(tf.mul(q, scale), [BK, R * Tq, D]) as tf.Tensor3D, k, false, true), [BK, R, Tq, Tk]);
    const mask = additiveMask(qStart, Tq, 0, Tk, window);
    const p = tf.softmax(mask ? tf.add(s, tf.tensor2d(mask, [Tq, Tk])) : s, -1);
    return tf.reshape(tf.matMul(tf.reshape(p, [BK, R * Tq, Tk]) as tf.Tensor3D, v), [BK, R, Tq, D]) as tf.Tensor4D;
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
