/**
 * The kernels on tfjs 'cpu' with fopeify's native addon: BLAS calls and threaded C passes straight on
 * the tensors' float32 data (attention, the LM-head loss, RMSNorm and SwiGLU of inference, the AdamW
 * update). Each C pass computes what the JavaScript one does, bit for bit where the tests say so.
 */
import * as tf from './tfjs.js';
import {
  attendQueryBlock,
  attendWork,
  attentionBackwardNative,
  attentionBackwardTokens,
  attentionForwardNative,
  attentionForwardTokens,
  data,
  normalizedRow,
  type AttendWork,
  type KeyRun,
} from './attention-native.js';
import { FopeifyError } from '../errors.js';
import { unfilledFloat32 } from './cpu-data.js';
import { headLossNative } from './head-loss.js';
import type { DecodeKernels, Kernels, TokenHeads, TokenMajorKernels } from './kernels.js';
import { jsHostPasses, swiGluActivation } from './kernels-host.js';
import { tfKernels } from './kernels-tf.js';
import type { NativeAddon } from './native.js';

export function nativeKernels(addon: NativeAddon): Kernels {
  const js = jsHostPasses(true);
  return {
    ...tfKernels,
    name: 'native',
    host: {
      ...js,
      // The addon's loops are the JavaScript ones in C (same order, same bits).
      sumSquares: (x, start) => addon.sumSquares!(x, start),
      adamw: (p, g, m, v, out, hyper) => addon.adamw!(p, g, m, v, out, hyper),
    },
    // One threaded C pass instead of five tfjs kernels with their buffers. Outputs the addon's passes
    // write whole are not zero-filled first (unfilledFloat32).
    rmsNorm: (x, w, eps) => {
      const out = unfilledFloat32(x.size);
      addon.rmsnorm(data(x), data(w), out, eps);
      return tf.tensor(out, x.shape) as typeof x;
    },
    swiGlu: (g, u) => {
      const y = unfilledFloat32(g.size);
      addon.swiglu!(data(g), data(u), y, null);
      return tf.tensor2d(y, g.shape);
    },
    rmsNormTrainable: (x, w, eps) => rmsNormTrainableNative(addon, x, w, eps),
    rotary: (x, cos, sin, dim) => rotaryNative(addon, x, cos, sin, dim),
    rotaryTrainable: (x, cos, sin, dim) => rotaryTrainableNative(addon, x, cos, sin, dim),
    swiGluTrainable: (g, u) => swiGluActivation(g, u, addon),
    attentionForward: (...args) => attentionForwardNative(addon, ...args),
    attentionBackward: (...args) => attentionBackwardNative(addon, ...args),
    headLoss: (input) => headLossNative(addon, input),
    decode: nativeDecode(addon),
    tokenMajor: tokenMajorKernels(addon),
  };
}

/** Rotary and attention on the projections' token-major rows (the addon's strided addressing). */
function tokenMajorKernels(addon: NativeAddon): TokenMajorKernels {
  return {
    rotary: (x, heads, cos, sin, dim) => rotaryTokens(addon, x, heads, cos, sin, dim, false),
    rotaryTrainable: (x, heads, cos, sin, dim) => rotaryTokens(addon, x, heads, cos, sin, dim, true),
    attentionForward: (...args) => attentionForwardTokens(addon, ...args),
    attentionBackward: (...args) => attentionBackwardTokens(addon, ...args),
  };
}

/**
 * Rotary / FoPE on x `[B, nKv, R, T, D]` by one threaded C pass (rotaryBlocks) writing a new buffer
 * (x's buffer may be shared): one buffer where the tf ops make nine (split, four products, sum,
 * difference, concat), the same bits. Tables that do not match x go to the tf ops.
 */
function rotaryNative(addon: NativeAddon, x: tf.Tensor5D, cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number): tf.Tensor5D {
  if (!rotaryFits(x.dtype, x.shape[1], x.shape[3], cos, sin, dim)) return tfKernels.rotary(x, cos, sin, dim);
  return tf.tensor5d(rotated(addon, data(x), x.shape, data(cos), data(sin), cos.shape[1], dim, false), x.shape);
}

/** Can the C pass rotate x of K KV heads and T positions with these tables (`[1, G, 1, T, dim/2]`, G = 1 or K)? */
function rotaryFits(dtype: tf.DataType, K: number, T: number, cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number): boolean {
  const [one, G, unit, Tc, half] = cos.shape;
  return dtype === 'float32' && one === 1 && unit === 1 && Tc === T && 2 * half === dim && (G === 1 || G === K) && sin.shape.every((d, i) => d === cos.shape[i]);
}

/**
 * x's data rotated into a new buffer, with G table groups ([G, T, dim/2] tables); shape is x's
 * `[B, K, R, T, D]`, its rows head-major, or token-major `[B, T, K, R, D]` with `tokens`.
 */
function rotated(addon: NativeAddon, x: Float32Array, shape: readonly number[], c: Float32Array, s: Float32Array, G: number, dim: number, tokens: boolean): Float32Array {
  const [B, K, R, T, D] = shape as [number, number, number, number, number];
  const out = unfilledFloat32(x.length);
  addon.rotaryBlocks(x, out, B, K, R, T, D, dim, G, c, s, tokens);
  return out;
}

/**
 * Rotary / FoPE on token-major rows x `[B·T, K·R·D]` (TokenMajorKernels.rotary and, with `trainable`, its
 * gradient: the rotation with −sin, as rotaryTrainableNative). Tables that do not fit the C pass go to
 * the tf ops on x viewed `[B, T, K, R, D]` with the tables' axes moved to match (rare: the runtime's
 * tables always fit).
 */
function rotaryTokens(addon: NativeAddon, x: tf.Tensor2D, h: TokenHeads, cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number, trainable: boolean): tf.Tensor2D {
  const T = x.shape[0] / h.B;
  const shape = [h.B, h.nKv, h.R, T, h.D];
  if (!Number.isInteger(T) || x.shape[1] !== h.nKv * h.R * h.D) throw new FopeifyError('INTERNAL', `rotary: rows [${x.shape}] do not hold ${h.B} sequences of ${h.nKv}·${h.R} heads of ${h.D}`);
  if (!rotaryFits(x.dtype, h.nKv, T, cos, sin, dim)) {
    return tf.tidy(() => {
      const perToken = (t: tf.Tensor5D) => tf.transpose(t, [0, 3, 1, 2, 4]) as tf.Tensor5D;
      const x5 = tf.reshape(x, [h.B, T, h.nKv, h.R, h.D]) as tf.Tensor5D;
      const y = (trainable ? tfKernels.rotaryTrainable : tfKernels.rotary)(x5, perToken(cos), perToken(sin), dim);
      return tf.reshape(y, x.shape) as tf.Tensor2D;
    });
  }
  if (!trainable) return tf.tensor2d(rotated(addon, data(x), shape, data(cos), data(sin), cos.shape[1], dim, true), x.shape);
  return rotationWithGradient(addon, x, shape, cos, sin, dim, true);
}

/**
 * The C rotation of x (its data laid out as `shape`, head- or token-major) as a tf op whose gradient is
 * the inverse rotation of dy: dx₁ = dy₁·c + dy₂·s, dx₂ = dy₂·c − dy₁·s, the forward pass with −sin
 * (a − b·(−s) is a + b·s exactly in float32, as tfjs's autodiff of the tf-op rotary computes: products
 * rounded, then one add); the unrotated rest of each row passes dy through.
 */
function rotationWithGradient<T extends tf.Tensor>(addon: NativeAddon, x: T, shape: readonly number[], cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number, tokens: boolean): T {
  const [c, s, G] = [data(cos), data(sin), cos.shape[1]];
  const rotate = (t: tf.Tensor, sines: Float32Array) => tf.tensor(rotated(addon, data(t), shape, c, sines, G, dim, tokens), t.shape) as T;
  const op = tf.customGrad(((xIn: T) => ({ value: rotate(xIn, s), gradFunc: (dy: T) => rotate(dy, s.map((v) => -v)) })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x) as T;
}

/** The rotation with its gradient for x (rotationWithGradient; tables that do not fit go to the tf ops). */
function rotaryTrainableNative(addon: NativeAddon, x: tf.Tensor5D, cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number): tf.Tensor5D {
  if (!rotaryFits(x.dtype, x.shape[1], x.shape[3], cos, sin, dim)) return tfKernels.rotaryTrainable(x, cos, sin, dim);
  return rotationWithGradient(addon, x, x.shape, cos, sin, dim, false);
}

/**
 * RMSNorm with its gradient: the inference kernel's C pass forward (its bits), keeping each row's
 * inverse rms, and one C pass backward: dx = r·g − x·r³·Σ(g·x)/H with g = dy·w, and dw = Σ_rows dy·x·r
 * in a fixed order. Six tfjs kernels forward and about fifteen backward become two passes.
 */
function rmsNormTrainableNative<T extends tf.Tensor>(addon: NativeAddon, x: T, w: tf.Tensor, eps: number): T {
  const H = w.size;
  if (x.dtype !== 'float32' || w.dtype !== 'float32' || w.rank !== 1 || x.rank < 1 || x.shape[x.rank - 1] !== H || H === 0) {
    return tfKernels.rmsNormTrainable(x, w, eps);
  }
  const op = tf.customGrad(((xIn: tf.Tensor, wIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const out = unfilledFloat32(xIn.size);
    const inv = unfilledFloat32(xIn.size / H);
    addon.rmsnorm(data(xIn), data(wIn), out, eps, inv);
    save([xIn, wIn, tf.tensor1d(inv)]);
    return {
      value: tf.tensor(out, xIn.shape),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xS, wS, invS] = saved as [tf.Tensor, tf.Tensor, tf.Tensor1D];
        const dx = unfilledFloat32(xS.size);
        const dw = unfilledFloat32(H);
        addon.rmsnormBackward(data(xS), data(wS), data(invS), data(dy), dx, dw);
        return [tf.tensor(dx, xS.shape), tf.tensor(dw, wS.shape)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x, w) as T;
}

/** The decoding step's pieces: the addon's one-token C functions on buffers reused across steps. */
function nativeDecode(addon: NativeAddon): DecodeKernels {
  let scratch = new Float32Array(0);
  let work: AttendWork | null = null;
  const runs: KeyRun[] = [];
  return {
    data,
    linear(w, rows, cols, x, y, transposed) {
      // The inference layout [cols, rows] is the batched forward's plain product with one row.
      if (transposed) addon.sgemm(false, false, 1, rows, cols, 1, x, 0, cols, w, 0, rows, 0, y, 0, rows);
      else addon.matvec(w, rows, cols, x, y);
    },
    rmsNorm: (x, w, out, eps) => addon.rmsnorm(x, w, out, eps),
    swiGlu: (g, u, y) => addon.swiglu(g, u, y, null),
    rotary: (x, heads, perGroup, headDim, dim, cos, sin) => addon.rotaryOne(x, heads, perGroup, headDim, dim, cos, sin),
    attention(q, cache, g, out) {
      const { nKv, R, D, len, keyBlock, window, scale } = g;
      if (window === null || len <= window) {
        // Every cached key is visible: one pass over the cache in C.
        const need = nKv * R * (Math.ceil(len / 4) * 4 + 3);
        if (scratch.length < need) scratch = new Float32Array(Math.max(need, 2 * scratch.length));
        addon.attendOne(q, cache.k, cache.v, nKv * R, nKv, D, len, cache.capacity, scale, out, scratch);
        return;
      }
      // A sliding window: the batched forward's recurrence over the cache's key blocks, with its mask rule.
      if (!work || work.acc.length < R * D) work = attendWork(R, D);
      runs.length = 0;
      for (let s = 0; s < len; s += keyBlock) runs.push({ k: cache.k, v: cache.v, rows: cache.capacity, off: s, n: Math.min(keyBlock, len - s), start: s });
      for (let b = 0; b < nKv; b++) {
        attendQueryBlock(addon, q, b * R * D, b, 1, R, D, runs, len - 1, g, work);
        for (let r = 0; r < R; r++) normalizedRow(work, r, D, out, (b * R + r) * D);
      }
    },
  };
}
