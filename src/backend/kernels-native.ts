/**
 * The kernels on tfjs 'cpu' with fopeify's native addon: BLAS calls and threaded C passes straight on
 * the tensors' float32 data (attention, the LM-head loss, RMSNorm and SwiGLU of inference, the AdamW
 * update). Each C pass computes what the JavaScript one does, bit for bit where the tests say so.
 */
import * as tf from './tfjs.js';
import { attendQueryBlock, attendWork, attentionBackwardNative, attentionForwardNative, data, normalizedRow, type AttendWork, type KeyRun } from './attention-native.js';
import { headLossNative } from './head-loss.js';
import type { DecodeKernels, Kernels } from './kernels.js';
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
    // One threaded C pass instead of five tfjs kernels with their buffers.
    rmsNorm: (x, w, eps) => {
      const out = new Float32Array(x.size);
      addon.rmsnorm!(data(x), data(w), out, eps);
      return tf.tensor(out, x.shape) as typeof x;
    },
    swiGlu: (g, u) => {
      const y = new Float32Array(g.size);
      addon.swiglu!(data(g), data(u), y, null);
      return tf.tensor2d(y, g.shape);
    },
    rotary: (x, cos, sin, dim) => rotaryNative(addon, x, cos, sin, dim),
    swiGluTrainable: (g, u) => swiGluActivation(g, u, addon),
    attentionForward: (...args) => attentionForwardNative(addon, ...args),
    attentionBackward: (...args) => attentionBackwardNative(addon, ...args),
    headLoss: (input) => headLossNative(addon, input),
    decode: nativeDecode(addon),
  };
}

/**
 * Rotary / FoPE on x `[B, nKv, R, T, D]` by the decoding step's C pass (rotaryOne), one call per
 * (batch, KV head, query head): the block's T rows are its "heads", each with its own position's table
 * row. A copy of x is rotated (x's buffer may be shared): one buffer where the tf ops make nine (split,
 * four products, sum, difference, concat), the same bits. Tables that do not match x go to the tf ops.
 */
function rotaryNative(addon: NativeAddon, x: tf.Tensor5D, cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number): tf.Tensor5D {
  const [B, K, R, T, D] = x.shape;
  const [one, G, unit, Tc, half] = cos.shape;
  const fits = x.dtype === 'float32' && one === 1 && unit === 1 && Tc === T && 2 * half === dim && (G === 1 || G === K) && sin.shape.every((d, i) => d === cos.shape[i]);
  if (!fits) return tfKernels.rotary(x, cos, sin, dim);
  const out = data(x).slice();
  const [c, s] = [data(cos), data(sin)];
  const table = T * half;
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < K; g++) {
      const t0 = G === 1 ? 0 : g * table;
      const [cg, sg] = [c.subarray(t0, t0 + table), s.subarray(t0, t0 + table)];
      for (let r = 0; r < R; r++) {
        const off = ((b * K + g) * R + r) * T * D;
        addon.rotaryOne(out.subarray(off, off + T * D), T, 1, D, dim, cg, sg);
      }
    }
  }
  return tf.tensor5d(out, x.shape);
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
