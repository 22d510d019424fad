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
import type { AttentionGeometry, Kernels, TokenHeads, TokenMajorKernels } from '../backend/kernels.js';
import { DEFAULT_KEY_BLOCK, DEFAULT_QUERY_BLOCK } from '../model/attention.js';
import { timed } from './timing.js';

/**
 * Output and row log-sum-exp of one attention call: `[BK, R, T, D]` (or token-major `[B·T, nH·D]`) and
 * `[BK, R, T, 1]`.
 */
export type AttentionResult = { o: tf.Tensor; lse: tf.Tensor4D };

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

type Geometry = AttentionGeometry & { keyBlock: number };

function geometry(options: FlashAttentionOptions, D: number): Geometry {
  return {
    queryBlock: Math.max(1, options.queryBlock ?? DEFAULT_QUERY_BLOCK),
    keyBlock: Math.max(1, options.keyBlock ?? DEFAULT_KEY_BLOCK),
    window: options.slidingWindow ?? null,
    scale: 1 / Math.sqrt(D),
  };
}

/**
 * The checkpointed attention op in either layout: the kernels' forward (or the reused result), and a
 * gradient that runs the kernels' backward on the saved inputs, output and log-sum-exp.
 */
function checkpointed<Q extends tf.Tensor, K extends tf.Tensor>(
  q: Q,
  k: K,
  v: K,
  options: FlashAttentionOptions,
  forward: (q: Q, k: K, v: K) => AttentionResult,
  backward: (q: Q, k: K, v: K, out: AttentionResult, dO: Q) => [Q, K, K],
): Q {
  const op = tf.customGrad(((qIn: Q, kIn: K, vIn: K, save: tf.GradSaveFunc) => {
    const out: AttentionResult = options.reuse ? { o: tf.clone(options.reuse.o), lse: options.reuse.lse } : timed('attention forward', () => forward(qIn, kIn, vIn));
    save([qIn, kIn, vIn, out.o, out.lse]);
    options.keep?.({ o: tf.keep(tf.clone(out.o)), lse: tf.keep(tf.clone(out.lse)) });
    return {
      value: out.o,
      gradFunc: (dy: Q, saved: tf.Tensor[]) => {
        const [qS, kS, vS, oS, lseS] = saved as [Q, K, K, tf.Tensor, tf.Tensor4D];
        return timed('attention backward', () => backward(qS, kS, vS, { o: oS, lse: lseS }, dy));
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(q, k, v) as Q;
}

/**
 * Attention of `q` `[BK, R, T, D]` over `k`, `v` `[BK, T, D]` (causal, queries and keys at positions
 * 0..T−1). Returns `[BK, R, T, D]`. Differentiable with respect to q, k and v with O(T) memory.
 */
export function flashAttention(q: tf.Tensor4D, k: tf.Tensor3D, v: tf.Tensor3D, options: FlashAttentionOptions): tf.Tensor4D {
  const { kernels } = options;
  const g = geometry(options, q.shape[3]);
  return checkpointed(
    q,
    k,
    v,
    options,
    (qIn, kIn, vIn) => kernels.attentionForward(qIn, [{ k: kIn, v: vIn, start: 0 }], 0, g),
    (qS, kS, vS, out, dO) => kernels.attentionBackward(qS, kS, vS, { o: out.o as tf.Tensor4D, lse: out.lse }, dO, g),
  );
}

/**
 * The same attention on token-major rows (where the kernels have TokenMajorKernels): q `[B·T, nH·D]`,
 * k, v `[B·T, nKv·D]` as the projections give them; returns `[B·T, nH·D]`, o_proj's input. No
 * head-major copies forward or backward.
 */
export function flashAttentionTokens(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  v: tf.Tensor2D,
  heads: TokenHeads,
  tokenMajor: TokenMajorKernels,
  options: FlashAttentionOptions,
): tf.Tensor2D {
  const g = geometry(options, heads.D);
  const { B, nKv, D } = heads;
  const T = k.shape[0] / B;
  return checkpointed(
    q,
    k,
    v,
    options,
    // One token-major block of all T keys (a free view of k and v as [B, T, nKv·D]).
    (qIn, kIn, vIn) =>
      tf.tidy(() => {
        const blocks = [{ k: tf.reshape(kIn, [B, T, nKv * D]) as tf.Tensor3D, v: tf.reshape(vIn, [B, T, nKv * D]) as tf.Tensor3D, start: 0 }];
        return tokenMajor.attentionForward(qIn, blocks, true, 0, g, heads);
      }),
    (qS, kS, vS, out, dO) => tokenMajor.attentionBackward(qS, kS, vS, { o: out.o as tf.Tensor2D, lse: out.lse }, dO, g, heads),
  );
}
