/**
 * The LM head and cross-entropy of training, in row chunks: per chunk, logits = x Wᵀ, the summed NLL
 * of the valid rows and, for the gradient, dlogits = scale · (softmax − onehot) pushed straight into
 * dx = dlogits W and dW += dlogitsᵀ x, so `[T, vocab]` logits never exist whole. Three forms:
 * tf ops; a fused softmax pass over the logits' data (host); BLAS straight on the data with the logits
 * only in a scratch buffer, softmax, NLL and dlogits in one threaded C pass over it, and dW accumulated in
 * place (native).
 */
import * as tf from './tfjs.js';
import { unfilledFloat32 } from './cpu-data.js';
import { data } from './attention-native.js';
import type { HeadLossInput, HeadLossOutput } from './kernels.js';
import type { NativeAddon } from './native.js';
import { vectorMath } from './vector-math.js';

/**
 * Summed NLL and dlogits of one chunk's logits `[n, V]` (targets −1: ignored). The NLL is a number when
 * the pass reads the data anyway, else a scalar tensor (the tf ops never wait for the device).
 */
type ChunkLoss = (logits: tf.Tensor2D, targets: Int32Array, scale: number | null, tokens: number) => { nll: number | tf.Scalar; dlogits: tf.Tensor2D | null };

const tfChunkLoss: ChunkLoss = (logits, tg, scale, tokens) => {
  const [n, V] = logits.shape;
  const lse = tf.logSumExp(logits, 1, true);
  const picked = tf.gather(tf.reshape(logits, [n * V]), tf.tensor1d(Int32Array.from(tg, (t, i) => i * V + Math.max(t, 0)), 'int32'));
  const mask = tf.tensor1d(Float32Array.from(tg, (t) => (t >= 0 ? 1 : 0)));
  const nll = tf.sum(tf.mul(tf.sub(tf.reshape(lse, [n]), picked), mask)) as tf.Scalar;
  if (scale === null) return { nll, dlogits: null };
  // (softmax − onehot) · scale with scale = 1 / tokens; padding rows get lse = +∞, so their softmax row is 0.
  const shift = tf.tensor2d(Float32Array.from(tg, (t) => (t >= 0 ? Math.log(tokens) : Infinity)), [n, 1]);
  const p = tf.exp(tf.sub(logits, tf.add(lse, shift)));
  return { nll, dlogits: tf.sub(p, tf.oneHot(tf.tensor1d(tg, 'int32'), V, scale, 0, 'float32')) as tf.Tensor2D };
};

/**
 * Cross-entropy of `rows` logits rows against `targets` (−1: ignored). Returns the summed NLL of the
 * valid rows and, when `scale` is given, `dlogits = scale · (softmax − onehot)` (ignored rows: 0).
 */
export function crossEntropyRows(
  logits: Float32Array,
  rows: number,
  V: number,
  targets: Int32Array,
  scale: number | null,
): { nll: number; dlogits: Float32Array | null } {
  const ve = vectorMath();
  const [buf] = ve.scratch(rows * V) as [Float32Array];
  const maxes = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * V;
    if (targets[r]! < 0) {
      buf.fill(0, o, o + V);
      continue;
    }
    let max = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j]! > max) max = logits[o + j]!;
    maxes[r] = max;
    for (let j = 0; j < V; j++) buf[o + j] = logits[o + j]! - max;
  }
  ve.exp(buf, rows * V);
  const d = scale === null ? null : new Float32Array(rows * V);
  let nll = 0;
  for (let r = 0; r < rows; r++) {
    const t = targets[r]!;
    if (t < 0) continue;
    const o = r * V;
    let sum = 0;
    for (let j = 0; j < V; j++) sum += buf[o + j]!;
    nll += maxes[r]! + Math.log(sum) - logits[o + t]!;
    if (d) {
      const k = scale! / sum;
      for (let j = 0; j < V; j++) d[o + j] = buf[o + j]! * k;
      d[o + t] = d[o + t]! - scale!;
    }
  }
  return { nll, dlogits: d };
}

const hostChunkLoss: ChunkLoss = (logits, tg, scale) => {
  const [n, V] = logits.shape;
  const r = crossEntropyRows(logits.dataSync() as Float32Array, n, V, tg, scale);
  return { nll: r.nll, dlogits: r.dlogits ? tf.tensor2d(r.dlogits, [n, V]) : null };
};

/** The chunk loop with tf products, the softmax part by `loss`. */
function headLossWith(loss: ChunkLoss, input: HeadLossInput): HeadLossOutput {
  const { chunks, W, targets, weightGrad } = input;
  const scale = input.gradient ? 1 / input.tokens : null;
  let total = 0;
  let totalT: tf.Scalar | null = null;
  const dxs: tf.Tensor2D[] = [];
  let dW: tf.Tensor2D | null = null;
  for (const [s, n] of chunks) {
    const out = tf.tidy(() => {
      const x = input.rows(s, n);
      const logits = tf.matMul(x, W, false, true) as tf.Tensor2D;
      const r = loss(logits, targets.subarray(s, s + n), scale, input.tokens);
      const grads = r.dlogits ? { dx: tf.matMul(r.dlogits, W), ...(weightGrad ? { dW: tf.matMul(r.dlogits, x, true, false) } : {}) } : {};
      if (typeof r.nll === 'number') {
        total += r.nll;
        return grads;
      }
      return { ...grads, nll: r.nll };
    }) as { dx?: tf.Tensor2D; dW?: tf.Tensor2D; nll?: tf.Scalar };
    if (out.nll) {
      const prev: tf.Scalar | null = totalT;
      totalT = prev ? (tf.add(prev, out.nll) as tf.Scalar) : out.nll;
      if (prev) tf.dispose([prev, out.nll]);
    }
    if (out.dx) dxs.push(out.dx);
    if (out.dW) {
      const prev: tf.Tensor2D | null = dW;
      dW = prev ? (tf.add(prev, out.dW) as tf.Tensor2D) : out.dW;
      if (prev) {
        prev.dispose();
        out.dW.dispose();
      }
    }
  }
  const dx = dxs.length === 0 ? null : dxs.length === 1 ? dxs[0]! : (tf.concat(dxs, 0) as tf.Tensor2D);
  if (dxs.length > 1) tf.dispose(dxs);
  const sum: tf.Scalar | null = totalT;
  const lossT = sum ? tf.tidy(() => tf.div(sum, input.tokens) as tf.Scalar) : tf.scalar(total * (1 / input.tokens));
  sum?.dispose();
  return { loss: lossT, dx, dW };
}

export const headLossTf = (input: HeadLossInput) => headLossWith(tfChunkLoss, input);
export const headLossHost = (input: HeadLossInput) => headLossWith(hostChunkLoss, input);

/** Buffers of one headLossNative call for chunks with ignored rows: their valid rows packed together. */
interface PackedRows {
  x: Float32Array;
  dx: Float32Array;
  targets: Int32Array;
}

/**
 * One chunk with the BLAS on the data (x `[n, H]`, W `[V, H]`): the summed NLL and, with `scale`,
 * dx = dlogits·W written into `dx` at `dxOff` and dW += dlogitsᵀ·x accumulated into `dW`. The softmax,
 * NLL and dlogits are one threaded C pass over the logits scratch. A row without a target changes
 * neither the loss nor a gradient, so only the valid rows go through the GEMMs (packed together into
 * `packed()` when some are ignored; the ignored rows' dx stays 0).
 */
function headChunkNative(
  blas: NativeAddon,
  x: Float32Array,
  W: Float32Array,
  n: number,
  H: number,
  V: number,
  targets: Int32Array,
  scale: number | null,
  dx: Float32Array | null,
  dxOff: number,
  dW: { data: Float32Array; written: boolean } | null,
  packed: () => PackedRows,
): number {
  let rows = 0;
  for (let r = 0; r < n; r++) if (targets[r]! >= 0) rows++;
  if (rows === 0) return 0;
  let [xs, tg, dxs, dxsOff] = [x, targets, dx, dxOff];
  const pack = rows < n ? packed() : null;
  if (pack) {
    for (let r = 0, k = 0; r < n; r++) {
      if (targets[r]! < 0) continue;
      pack.x.set(x.subarray(r * H, (r + 1) * H), k * H);
      pack.targets[k++] = targets[r]!;
    }
    [xs, tg, dxs, dxsOff] = [pack.x, pack.targets.subarray(0, rows), pack.dx, 0];
  }
  const V4 = (V + 3) & ~3;
  const [L] = vectorMath().scratch(rows * V4) as [Float32Array];
  blas.sgemm(false, true, rows, V, H, 1, xs, 0, H, W, 0, H, 0, L, 0, V4);
  const nll = blas.crossEntropyRows(L, rows, V4, V, tg, scale ?? 0);
  if (scale !== null) {
    blas.sgemm(false, false, rows, H, V, 1, L, 0, V4, W, 0, H, 0, dxs!, dxsOff, H);
    if (dW) {
      blas.sgemm(true, false, V, H, rows, 1, L, 0, V4, xs, 0, H, dW.written ? 1 : 0, dW.data, 0, H);
      dW.written = true;
    }
    if (pack) {
      for (let r = 0, k = 0; r < n; r++) if (targets[r]! >= 0) dx!.set(pack.dx.subarray(k * H, ++k * H), dxOff + r * H);
    }
  }
  return nll;
}

export function headLossNative(blas: NativeAddon, input: HeadLossInput): HeadLossOutput {
  const { N, H, V, chunks, targets } = input;
  const scale = input.gradient ? 1 / input.tokens : null;
  const Wd = data(input.W);
  const dx = scale !== null ? new Float32Array(N * H) : null;
  // The first chunk with rows writes dW (beta 0), later ones add to it: no zero fill of [V, H] first
  // (113 MB for a 49k vocabulary, and one read of it less in the GEMM). Zeros only when no row counts.
  // Same bits as accumulating onto zeros, but for an exact −0 product (0 + −0 made it +0).
  const dW = scale !== null && input.weightGrad ? { data: unfilledFloat32(V * H), written: false } : null;
  const most = Math.max(0, ...chunks.map(([, n]) => n));
  let pack: PackedRows | null = null;
  const packed = () => (pack ??= { x: new Float32Array(most * H), dx: new Float32Array(most * H), targets: new Int32Array(most) });
  let total = 0;
  for (const [s, n] of chunks) {
    // The chunk inside the scope of its rows' tensors. (A tidy that returns a typed array walks it
    // element by element looking for tensors: ~0.1 s per chunk.)
    tf.tidy(() => {
      total += headChunkNative(blas, data(input.rows(s, n)), Wd, n, H, V, targets.subarray(s, s + n), scale, dx, s * H, dW, packed);
    });
  }
  if (dW && !dW.written) dW.data.fill(0);
  return { loss: tf.scalar(total * (1 / input.tokens)), dx: dx ? tf.tensor2d(dx, [N, H]) : null, dW: dW ? tf.tensor2d(dW.data, [V, H]) : null };
}
