/**
 * The small building blocks of a Llama-family decoder, as HF's modeling_llama defines them.
 * All take and return ordinary tfjs tensors (differentiable, usable inside tf.grads).
 */
import * as tf from '@tensorflow/tfjs';
import { inferenceBlas } from './native-inference.js';

/** RMSNorm over the last axis: `x · rsqrt(mean(x²) + eps) · w` (LlamaRMSNorm, in float32). */
export function rmsNorm<T extends tf.Tensor>(x: T, w: tf.Tensor, eps: number): T {
  return tf.tidy(() => {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), w) as T;
  });
}

/**
 * `x Wᵀ (+ b)` for x `[N, in]` and an HF `[out, in]` weight; with `transposed`, w is already `[in, out]`
 * (the inference layout) and the product is a plain `x W`.
 */
export function linear(x: tf.Tensor2D, w: tf.Tensor, b?: tf.Tensor, transposed = false): tf.Tensor2D {
  if (!b) return tf.matMul(x, w as tf.Tensor2D, false, !transposed);
  return tf.tidy(() => tf.add(tf.matMul(x, w as tf.Tensor2D, false, !transposed), b) as tf.Tensor2D);
}

/** SiLU, `x · σ(x)`. */
export function silu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)) as T);
}

export interface MlpWeights {
  /** The weights are `[in, out]` (inference layout) instead of HF's `[out, in]`. */
  transposed?: boolean;
  gate: tf.Tensor;
  up: tf.Tensor;
  down: tf.Tensor;
  gateBias?: tf.Tensor;
  upBias?: tf.Tensor;
  downBias?: tf.Tensor;
}

/** SwiGLU MLP: `down(silu(gate(x)) · up(x))` for x `[N, hidden]`. */
export function swiGlu(x: tf.Tensor2D, w: MlpWeights): tf.Tensor2D {
  return tf.tidy(() => {
    const t = w.transposed ?? false;
    // Accelerated cpu backend outside tf.grads: the activation in one threaded C pass instead of
    // three tfjs kernels (sigmoid through Math.exp, two multiplies) with their buffers.
    const addon = inferenceBlas();
    if (addon?.swiglu) {
      const gate = linear(x, w.gate, w.gateBias, t);
      const up = linear(x, w.up, w.upBias, t);
      const y = new Float32Array(gate.size);
      addon.swiglu(gate.dataSync() as Float32Array, up.dataSync() as Float32Array, y, null);
      return linear(tf.tensor2d(y, gate.shape), w.down, w.downBias, t);
    }
    const g = silu(linear(x, w.gate, w.gateBias, t));
    const u = linear(x, w.up, w.upBias, t);
    return linear(tf.mul(g, u) as tf.Tensor2D, w.down, w.downBias, t);
  });
}
