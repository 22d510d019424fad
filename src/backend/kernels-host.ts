/**
 * The kernels for backends whose tensors live in this process's memory (tfjs 'cpu' without BLAS):
 * fused JavaScript / WebAssembly-SIMD passes over the tensors' data where tf ops would run a chain of
 * full-size kernels, each allocating its output (softmax of attention scores and logits, SwiGLU's
 * activation, the AdamW update). Matmuls and the rest are tf ops.
 */
import * as tf from './tfjs.js';
import { attentionBackwardHost, attentionForwardHost } from './attention-host.js';
import { unfilledFloat32 } from './cpu-data.js';
import { headLossHost } from './head-loss.js';
import type { HostPasses, Kernels } from './kernels.js';
import { tfKernels } from './kernels-tf.js';
import type { NativeAddon } from './native.js';
import { vectorMath } from './vector-math.js';

/** sumSquares' order (kernels.ts): blocks of this many elements, in 8 lanes each; native/norm-optim.c's twin. */
const SUM_SQUARES_BLOCK = 16384;
const SUM_SQUARES_LANES = new Float64Array(8);

/** Σ x² over x[a, b) in double: element i into lane (i − a) mod 8, the lanes combined pairwise. */
function sumSquaresBlock(x: Float32Array, a: number, b: number): number {
  const l = SUM_SQUARES_LANES.fill(0);
  for (let i = a; i < b; i++) l[(i - a) & 7]! += x[i]! * x[i]!;
  return l[0]! + l[1]! + (l[2]! + l[3]!) + (l[4]! + l[5]! + (l[6]! + l[7]!));
}

/** The optimizer's passes in JavaScript. `inPlace`: the backend's buffers may be written in place (cpu). */
export function jsHostPasses(inPlace: boolean): HostPasses {
  return {
    sumSquares(x, start) {
      let sum = start;
      for (let a = 0; a < x.length; a += SUM_SQUARES_BLOCK) sum += sumSquaresBlock(x, a, Math.min(x.length, a + SUM_SQUARES_BLOCK));
      return sum;
    },
    adamw(pd, g, md, vd, pN, hyper) {
      const [b1, b2, c1, c2, eps, lr, decay, clip] = hyper as unknown as [number, number, number, number, number, number, number, number];
      const n = pd.length;
      for (let i = 0; i < n; i++) {
        const gi = g[i]! * clip;
        const mi = b1 * md[i]! + (1 - b1) * gi;
        const vi = b2 * vd[i]! + (1 - b2) * gi * gi;
        md[i] = mi;
        vd[i] = vi;
        const pi = pd[i]!;
        pN[i] = pi - lr * (md[i]! / c1 / (Math.sqrt(vd[i]! / c2) + eps)) - decay * pi;
      }
    },
    writableInPlace: inPlace ? cpuSoleOwner : () => false,
  };
}

/** Is `t` the only holder of its data on the cpu backend (so its buffer may be written in place)? */
function cpuSoleOwner(t: tf.Tensor): boolean {
  const be = tf.backend() as unknown as { refCount?(dataId: object): number };
  return typeof be.refCount === 'function' && be.refCount(t.dataId) === 1;
}

/**
 * SwiGLU's activation `silu(g) · u` as one op with its gradient written out:
 * `dg = dy · u · σ(g)(1 + g(1 − σ(g)))`, `du = dy · silu(g)`. One vector exp per element forward
 * and the backward reuses the saved σ; the addon's threaded C passes when given (same bits).
 */
export function swiGluActivation(g: tf.Tensor2D, u: tf.Tensor2D, addon: NativeAddon | null): tf.Tensor2D {
  const op = tf.customGrad(((gIn: tf.Tensor2D, uIn: tf.Tensor2D, save: tf.GradSaveFunc) => {
    const n = gIn.size;
    const vm = vectorMath();
    if (addon) {
      // Unfilled: the pass writes every element.
      const [y, sg] = [unfilledFloat32(n), unfilledFloat32(n)];
      addon.swiglu!(gIn.dataSync() as Float32Array, uIn.dataSync() as Float32Array, y, sg);
      save([gIn, uIn, tf.tensor2d(sg, gIn.shape)]);
      return { value: tf.tensor2d(y, gIn.shape), gradFunc: backward };
    }
    const [G, U, Y, SG] = vm.scratch(n, n, n, n) as [Float32Array, Float32Array, Float32Array, Float32Array];
    G.set(gIn.dataSync() as Float32Array);
    U.set(uIn.dataSync() as Float32Array);
    vm.swigluForward(G, U, Y, SG, n);
    save([gIn, uIn, tf.tensor2d(SG.slice(), gIn.shape)]);
    return { value: tf.tensor2d(Y.slice(), gIn.shape), gradFunc: backward };
    function backward(dy: tf.Tensor2D, saved: tf.Tensor[]): tf.Tensor[] {
      const [gS, uS, sS] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
      if (addon) {
        // One threaded pass over the tensors' own data (the wasm path below copies each in and out).
        const [dg, du] = [unfilledFloat32(n), unfilledFloat32(n)];
        addon.swigluBackward(dy.dataSync() as Float32Array, gS.dataSync() as Float32Array, uS.dataSync() as Float32Array, sS.dataSync() as Float32Array, dg, du);
        return [tf.tensor2d(dg, gS.shape), tf.tensor2d(du, gS.shape)];
      }
      const [DY, G2, U2, S2, DG, DU] = vm.scratch(n, n, n, n, n, n) as Float32Array[] as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
      DY.set(dy.dataSync() as Float32Array);
      G2.set(gS.dataSync() as Float32Array);
      U2.set(uS.dataSync() as Float32Array);
      S2.set(sS.dataSync() as Float32Array);
      vm.swigluBackward(DY, G2, U2, S2, DG, DU, n);
      return [tf.tensor2d(DG.slice(), gS.shape), tf.tensor2d(DU.slice(), gS.shape)];
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(g, u) as tf.Tensor2D;
}

/** tfjs 'cpu' without the native addon. */
export const hostKernels: Kernels = {
  ...tfKernels,
  name: 'host',
  host: jsHostPasses(true),
  swiGluTrainable: (g, u) => swiGluActivation(g, u, null),
  attentionForward: attentionForwardHost,
  attentionBackward: attentionBackwardHost,
  headLoss: headLossHost,
};

/** tfjs 'wasm': tf ops, with the optimizer's moments and update in JS memory (reading wasm tensors is cheap). */
export const wasmKernels: Kernels = { ...tfKernels, host: jsHostPasses(false) };
