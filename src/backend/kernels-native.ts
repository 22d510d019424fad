/**
 * The kernels on tfjs 'cpu' with fopeify's native addon: BLAS calls and threaded C passes straight on
 * the tensors' float32 data (attention, the LM-head loss, RMSNorm and SwiGLU of inference, the AdamW
 * update). Each C pass computes what the JavaScript one does, bit for bit where the tests say so.
 */
import * as tf from '@tensorflow/tfjs';
import { attentionBackwardNative, attentionForwardNative, data } from './attention-native.js';
import { headLossNative } from './head-loss.js';
import type { Kernels } from './kernels.js';
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
    swiGluTrainable: (g, u) => swiGluActivation(g, u, addon),
    attentionForward: (...args) => attentionForwardNative(addon, ...args),
    attentionBackward: (...args) => attentionBackwardNative(addon, ...args),
    headLoss: (input) => headLossNative(addon, input),
  };
}
