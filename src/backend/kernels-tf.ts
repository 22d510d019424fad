/**
 * The kernels as plain tf ops: they run on every tfjs backend (tensorflow, wasm, cpu, a GPU) and never
 * read a tensor's data back, and every op is differentiable by autodiff. The reference the other
 * implementations are tested against.
 */
import * as tf from './tfjs.js';
import { attentionBackwardTf, attentionForwardTf } from './attention-tf.js';
import { headLossTf } from './head-loss.js';
import type { Kernels } from './kernels.js';

/** RMSNorm over the last axis: `x · rsqrt(mean(x²) + eps) · w` (LlamaRMSNorm, in float32). */
export function rmsNorm<T extends tf.Tensor>(x: T, w: tf.Tensor, eps: number): T {
  return tf.tidy(() => {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), w) as T;
  });
}

/** Rotary / FoPE as tf ops (Kernels.rotary): split the rotated halves, rotate, concatenate. */
export function rotaryOps(x: tf.Tensor5D, cos: tf.Tensor5D, sin: tf.Tensor5D, dim: number): tf.Tensor5D {
  return tf.tidy(() => {
    const D = x.shape[4];
    const half = dim / 2;
    const parts = dim === D ? tf.split(x, [half, half], 4) : tf.split(x, [half, half, D - dim], 4);
    const [x1, x2] = parts as [tf.Tensor5D, tf.Tensor5D];
    const y1 = tf.sub(tf.mul(x1, cos), tf.mul(x2, sin));
    const y2 = tf.add(tf.mul(x2, cos), tf.mul(x1, sin));
    return tf.concat(parts.length === 3 ? [y1, y2, parts[2]!] : [y1, y2], 4) as tf.Tensor5D;
  });
}

/** SiLU, `x · σ(x)`. */
export function silu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)) as T);
}

/** SwiGLU's activation `silu(g) · u`. */
function swiGluOps(g: tf.Tensor2D, u: tf.Tensor2D): tf.Tensor2D {
  return tf.mul(silu(g), u) as tf.Tensor2D;
}

export const tfKernels: Kernels = {
  name: 'tf-ops',
  host: null,
  matMul: (a, b, transposeA = false, transposeB = false) => tf.matMul(a, b, transposeA, transposeB) as typeof a,
  rmsNorm,
  rmsNormTrainable: rmsNorm,
  rotary: rotaryOps,
  rotaryTrainable: rotaryOps,
  swiGlu: swiGluOps,
  swiGluTrainable: swiGluOps,
  attentionForward: attentionForwardTf,
  attentionBackward: attentionBackwardTf,
  headLoss: headLossTf,
};
