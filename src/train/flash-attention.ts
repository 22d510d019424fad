/**
 * Causal attention for training, blockwise in both passes (the FlashAttention recurrences of the
 * kernels, src/backend/attention-*.ts), so that neither pass ever holds more than one
 * `[B·nKv, R·queryBlock, keyBlock]` score block. Under plain autodiff the runtime's blockwise attention
 * would keep every block's probabilities for the backward pass — O(T²) memory. Here the forward keeps
 * only the output and the row log-sum-exp, and the kernels' backward recomputes each block's
 * probabilities. Same kernels, layout and semantics as the runtime's `blockwiseAttention`.
 *
 * A layer recomputed for its backward pass calls this again on identical inputs: `reuse` hands it the
 * output and log-sum-exp of the first call (`keep` collects them), so the recomputation skips the
 * attention forward entirely — the most expensive part of a long-context layer.
 */
import * as tf from '../backend/tfjs.js';
import type { AttentionOutput, Kernels } from '../backend/kernels.js';
import { DEFAULT_KEY_BLOCK, DEFAULT_QUERY_BLOCK } from '../model/attention.js';
import { timed } from './timing.js';

/** Output and row log-sum-exp of one attention call (`[BK, R, T, D]` and `[BK, R, T, 1]`). */
export type AttentionResult = AttentionOutput;

export interface FlashAttentionOptions {
  /** The backend's kernels. */
  kernels: Kernels;
  /** Queries per block (default 256). */
  queryBlock?: number;
  /** Keys per block (default 512). */
  keyBlock?: number;
  /** Mistral-style sliding window (query i sees keys j with i − window < j ≤ i), or null. */
  slidingWindow?: number | null;
  /** The result of an earlier call on the same inputs: skip the forward computation. */
  reuse?: AttentionResult;
  /** Receives kept copies of this call's output and log-sum-exp (the caller disposes them). */
  keep?: (r: AttentionResult) => void;
}

/**
 * Attention of `q` `[BK, R, T, D]` over `k`, `v` `[BK, T, D]` (causal, queries and keys at positions
 * 0..T−1). Returns `[BK, R, T, D]`. Differentiable with respect to q, k and v with O(T) memory.
 */
export function flashAttention(q: tf.Tensor4D, k: tf.Tensor3D, v: tf.Tensor3D, options: FlashAttentionOptions): tf.Tensor4D {
  const { kernels } = options;
  const geometry = {
    queryBlock: Math.max(1, options.queryBlock ?? DEFAULT_QUERY_BLOCK),
    keyBlock: Math.max(1, options.keyBlock ?? DEFAULT_KEY_BLOCK),
    window: options.slidingWindow ?? null,
    scale: 1 / Math.sqrt(q.shape[3]),
  };
  const op = tf.customGrad(((qIn: tf.Tensor4D, kIn: tf.Tensor3D, vIn: tf.Tensor3D, save: tf.GradSaveFunc) => {
    const out: AttentionOutput = options.reuse
      ? { o: tf.clone(options.reuse.o), lse: options.reuse.lse }
      : timed('attention forward', () => kernels.attentionForward(qIn, [{ k: kIn, v: vIn, start: 0 }], 0, geometry));
    save([qIn, kIn, vIn, out.o, out.lse]);
    options.keep?.({ o: tf.keep(tf.clone(out.o)), lse: tf.keep(tf.clone(out.lse)) });
    return {
      value: out.o,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [qS, kS, vS, oS, lseS] = saved as [tf.Tensor4D, tf.Tensor3D, tf.Tensor3D, tf.Tensor4D, tf.Tensor4D];
        return timed('attention backward', () => kernels.attentionBackward(qS, kS, vS, { o: oS, lse: lseS }, dy, geometry));
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(q, k, v) as tf.Tensor4D;
}
