/**
 * The small building blocks of a Llama-family decoder, as HF's modeling_llama defines them.
 * All take and return ordinary tfjs tensors (differentiable, usable inside tf.grads).
 */
import * as tf from '../backend/tfjs.js';
import type { Kernels } from '../backend/kernels.js';
import { rmsNorm, silu, tfKernels } from '../backend/kernels-tf.js';

export { rmsNorm, silu };

/**
 * `x Wᵀ (+ b)` for x `[N, in]` and an HF `[out, in]` weight; with `transposed`, w is already `[in, out]`
 * (the inference layout) and the product is a plain `x W`.
 */
export function linear(x: tf.Tensor2D, w: tf.Tensor, b?: tf.Tensor, transposed = false, kernels: Pick<Kernels, 'matMul'> = tfKernels): tf.Tensor2D {
  if (!b) return kernels.matMul(x, w, false, !transposed);
  return tf.tidy(() => tf.add(kernels.matMul(x, w, false, !transposed), b) as tf.Tensor2D);
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

/** SwiGLU MLP: `down(silu(gate(x)) · up(x))` for x `[N, hidden]` (the activation by the kernels, default tf ops). */
export function swiGlu(x: tf.Tensor2D, w: MlpWeights, kernels: Kernels = tfKernels): tf.Tensor2D {
  return tf.tidy(() => {
    const t = w.transposed ?? false;
    const gate = linear(x, w.gate, w.gateBias, t, kernels);
    const up = linear(x, w.up, w.upBias, t, kernels);
    return linear(kernels.swiGlu(gate, up), w.down, w.downBias, t, kernels);
  });
}
