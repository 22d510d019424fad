/**
 * The seam between the model / trainer / optimizer and the machine: every computation whose fastest
 * form depends on the backend, behind one interface. An implementation is chosen once, when a backend
 * is activated (`setupBackend()` returns it as `BackendInfo.kernels`), and handed to LlamaModel,
 * TrainingModel and AdamW; nothing outside src/backend asks which backend is active.
 *
 * Implementations:
 *  - kernels-tf.ts: plain tf ops, on every tfjs backend (tensorflow, wasm, GPU); never reads tensor data.
 *  - kernels-host.ts: tfjs 'cpu' without BLAS — JavaScript / WebAssembly SIMD passes over the tensors'
 *    data (vector-math.ts), tf matmuls.
 *  - kernels-native.ts: tfjs 'cpu' with the native addon — BLAS calls and threaded C passes straight on
 *    the tensors' data, and the one-token decoding step on preallocated buffers (`decode`).
 * Every implementation computes the same mathematics as the tf-op one (test/backend/kernels.test.ts).
 */
import * as tf from './tfjs.js';

/** A run of consecutive keys/values, `[B·nKv, n, D]`, starting at sequence index `start`. */
export interface KvBlock {
  k: tf.Tensor3D;
  v: tf.Tensor3D;
  start: number;
}

/** How blockwise attention walks its inputs. */
export interface AttentionGeometry {
  /** Queries per block. */
  queryBlock: number;
  /** Keys per block: KV blocks longer than this are processed in runs of this many keys (default: as given). */
  keyBlock?: number;
  /** Sliding window (query i sees keys j with i − window < j ≤ i), or null: causal. */
  window: number | null;
  /** Score scale (1/√D). */
  scale: number;
}

/** Output `[BK, R, Tq, D]` and row log-sum-exp `[BK, R, Tq, 1]` of an attention forward. */
// A type alias (not an interface) so it is a tf.TensorContainer that tf.tidy can return.
export type AttentionOutput = {
  o: tf.Tensor4D;
  lse: tf.Tensor4D;
};

/**
 * How token-major rows hold heads: a `[B·T, nKv·R·D]` tensor (the q/k/v projections' output, R = 1 for
 * keys and values) is `[B, T, nKv, R, D]`; query head h = kv·R + r shares KV head kv (HF's repeat_kv
 * order), and the head-major operands of the attention kernels are its `[B·nKv, R, T, D]` transpose.
 */
export interface TokenHeads {
  B: number;
  nKv: number;
  R: number;
  D: number;
}

/** Output `[B·Tq, nH·D]` (token-major) and row log-sum-exp `[B·nKv, R, Tq, 1]` of a token-major attention forward. */
export type TokenMajorOutput = {
  o: tf.Tensor2D;
  lse: tf.Tensor4D;
};

/**
 * Rotary and attention straight on token-major rows, where the kernels address the heads by row
 * strides (native): no head-major copies of q, k, v, the output or their gradients (a transpose each,
 * eight per layer of a training step). The values are the head-major kernels': the same arithmetic in
 * the same order, only the addressing differs.
 */
export interface TokenMajorKernels {
  /** Kernels.rotary of x `[B·T, nKv·R·D]` (heads as given; R = 1 for keys), tables as there. */
  rotary(x: tf.Tensor2D, heads: TokenHeads, cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number): tf.Tensor2D;
  /** The same rotation with its gradient for x (training): Kernels.rotaryTrainable. */
  rotaryTrainable(x: tf.Tensor2D, heads: TokenHeads, cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number): tf.Tensor2D;
  /**
   * Kernels.attentionForward of q `[B·Tq, nH·D]` over key blocks that are token-major
   * (`kvTokens`: k, v `[B, rows, nKv·D]`) or head-major (`[B·nKv, rows, D]`, a KV cache's).
   */
  attentionForward(q: tf.Tensor2D, blocks: readonly KvBlock[], kvTokens: boolean, qStart: number, g: AttentionGeometry, heads: TokenHeads): TokenMajorOutput;
  /** Kernels.attentionBackward, token-major: q, dO, dq `[B·T, nH·D]`; k, v, dk, dv `[B·T, nKv·D]`. */
  attentionBackward(
    q: tf.Tensor2D,
    k: tf.Tensor2D,
    v: tf.Tensor2D,
    out: TokenMajorOutput,
    dO: tf.Tensor2D,
    g: AttentionGeometry & { keyBlock: number },
    heads: TokenHeads,
  ): [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
}

/** The LM head and mean cross-entropy over row chunks (training's loss; see TrainingModel). */
export interface HeadLossInput {
  /** Rows, hidden size, vocabulary. */
  N: number;
  H: number;
  V: number;
  /** `[start, rows]` of each chunk. */
  chunks: readonly (readonly [number, number])[];
  /** The final-normed hidden rows `[n, H]` of a chunk (the kernel disposes them). */
  rows(start: number, n: number): tf.Tensor2D;
  /** The LM head `[V, H]`. */
  W: tf.Tensor2D;
  /** Target per row (−1: ignored). */
  targets: Int32Array;
  /** Target tokens of the whole batch: the loss is a mean over them, dlogits = (softmax − onehot) / tokens. */
  tokens: number;
  /** Compute dx (and dW) as well, not just the loss. */
  gradient: boolean;
  /** Also the head's weight gradient dW = Σ dlogitsᵀ x. */
  weightGrad: boolean;
}

export interface HeadLossOutput {
  /** Mean NLL over the batch's target tokens. */
  loss: tf.Scalar;
  /** dx = dlogits W for all N rows (with `gradient`). */
  dx: tf.Tensor2D | null;
  /** dW `[V, H]` (with `gradient` and `weightGrad`). */
  dW: tf.Tensor2D | null;
}

/** Passes over float32 data in this process's memory (tfjs cpu and wasm): the optimizer's fused update. */
export interface HostPasses {
  /**
   * start + Σ x², in double, in a fixed order that depends on x's length alone (blocks of 16384
   * elements, 8 lanes each, lanes combined pairwise, blocks added in order): fast, and the same bits
   * in every implementation (kernels-host.ts, native/norm-optim.c).
   */
  sumSquares(x: Float32Array, start: number): number;
  /** AdamW over one parameter: hyper = [b1, b2, c1, c2, eps, lr, lr·wd, clip]; writes p's next value into out (may be p). */
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, out: Float32Array, hyper: Float64Array): void;
  /** May `t`'s buffer be written in place (the backend holds it for `t` alone)? */
  writableInPlace(t: tf.Tensor): boolean;
}

/**
 * The pieces of a one-token decoding step on plain float32 buffers the caller allocates once (weights'
 * data, a KV cache grown in place, scratch): no tensor per op, so decoding does not pay tfjs's per-op
 * allocation and dispatch, which dominate at one token. Only kernels whose tensors live in this
 * process's memory and that have a BLAS offer it (the native ones); src/model/decode-step.ts runs it.
 */
export interface DecodeKernels {
  /** A float32 tensor's data without a copy (the backend's own buffer: read it, never write it). */
  data(t: tf.Tensor): Float32Array;
  /**
   * y[rows] = W·x for an HF linear weight W `[rows, cols]` (matrix-vector product, the BLAS's sgemv);
   * with `transposed`, W is the inference layout `[cols, rows]` and y = xᵀ·W.
   */
  linear(w: Float32Array, rows: number, cols: number, x: Float32Array, y: Float32Array, transposed: boolean): void;
  /** RMSNorm of each run of w.length values of x into out (the bits of Kernels.rmsNorm). */
  rmsNorm(x: Float32Array, w: Float32Array, out: Float32Array, eps: number): void;
  /** y = silu(g)·u (the bits of Kernels.swiGlu). */
  swiGlu(g: Float32Array, u: Float32Array, y: Float32Array): void;
  /**
   * Rotary / FoPE at one position, in place on x = `[heads, headDim]`: the first `dim` entries of each
   * head rotated with the half tables cos, sin `[heads / headsPerGroup, dim/2]` (the bits of applyRotaryTf).
   */
  rotary(x: Float32Array, heads: number, headsPerGroup: number, headDim: number, dim: number, cos: Float32Array, sin: Float32Array): void;
  /**
   * One query token at sequence index len − 1 attending over the first `len` rows of KV caches k, v
   * `[nKv, capacity, D]`: q and out `[nKv·R, D]` (query head h uses KV head h / R); with a sliding
   * window, only the last `window` keys (attentionForward's mask rule, in key runs of `keyBlock`).
   * Equal to attentionForward within float32 rounding (another summation order).
   */
  attention(
    q: Float32Array,
    cache: { k: Float32Array; v: Float32Array; capacity: number },
    geometry: { nKv: number; R: number; D: number; len: number; keyBlock: number; window: number | null; scale: number },
    out: Float32Array,
  ): void;
}

export interface Kernels {
  /** Which implementation: 'tf-ops', 'host' (JS / WebAssembly passes) or 'native' (C + BLAS). */
  readonly name: 'tf-ops' | 'host' | 'native';
  /** Passes over tensors' data in JS memory, or null where tensors live elsewhere (tensorflow, GPU). */
  readonly host: HostPasses | null;
  /** `op(a) op(b)` (batched, broadcasting like tf.matMul). */
  matMul<T extends tf.Tensor>(a: T, b: tf.Tensor, transposeA?: boolean, transposeB?: boolean): T;
  /** RMSNorm over the last axis, `x · rsqrt(mean(x²) + eps) · w`, forward only (inference). */
  rmsNorm<T extends tf.Tensor>(x: T, w: tf.Tensor, eps: number): T;
  /** The same RMSNorm with its gradient for x and w (training); its value is rmsNorm's. */
  rmsNormTrainable<T extends tf.Tensor>(x: T, w: tf.Tensor, eps: number): T;
  /**
   * Rotary / FoPE in HF's split-half layout: the first `dim` entries of each row of x `[B, nKv, R, T, D]`
   * rotated with the half tables cos, sin `[1, G, 1, T, dim/2]` (G = 1 or nKv), the rest passed through:
   * x₁' = x₁·cos − x₂·sin, x₂' = x₂·cos + x₁·sin. Differentiable in the tf-op implementation; the others
   * are forward-only (inference) and give its bits.
   */
  rotary(x: tf.Tensor5D, cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number): tf.Tensor5D;
  /** The same rotation with its gradient for x (training; the tables are constants): rotary's value. */
  rotaryTrainable(x: tf.Tensor5D, cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number): tf.Tensor5D;
  /** SwiGLU's activation `silu(g) · u`, forward only (inference). */
  swiGlu(g: tf.Tensor2D, u: tf.Tensor2D): tf.Tensor2D;
  /** The same activation with its gradient (training). */
  swiGluTrainable(g: tf.Tensor2D, u: tf.Tensor2D): tf.Tensor2D;
  /**
   * Blockwise causal attention (the FlashAttention forward recurrence) of `q` `[BK, R, Tq, D]` (query i
   * at sequence index qStart + i) over key/value blocks; GQA by stacking the R query heads of a KV head.
   * Not differentiable by autodiff (except the tf-op one): training takes `attentionBackward`.
   */
  attentionForward(q: tf.Tensor4D, blocks: readonly KvBlock[], qStart: number, g: AttentionGeometry): AttentionOutput;
  /** Its backward for queries and keys at 0..T−1 (`k`, `v` `[BK, T, D]`): dq, dk, dv. */
  attentionBackward(
    q: tf.Tensor4D,
    k: tf.Tensor3D,
    v: tf.Tensor3D,
    out: AttentionOutput,
    dO: tf.Tensor4D,
    g: AttentionGeometry & { keyBlock: number },
  ): [tf.Tensor4D, tf.Tensor3D, tf.Tensor3D];
  /** LM head + cross-entropy in chunks, with its gradient computed in the same pass. */
  headLoss(input: HeadLossInput): HeadLossOutput;
  /** The fused one-token decoding step's pieces, where this implementation has them (native only). */
  readonly decode?: DecodeKernels;
  /** Rotary and attention on token-major rows, where this implementation has them (native only). */
  readonly tokenMajor?: TokenMajorKernels;
}

/** Is a gradient tape recording (inside tf.grads / tf.variableGrads)? Forward-only kernels must not be used then. */
export function recordingGradient(): boolean {
  const state = (tf.engine() as unknown as { state?: { gradientDepth?: number } }).state;
  return (state?.gradientDepth ?? 0) > 0;
}
