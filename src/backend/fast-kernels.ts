/**
 * Faster JS kernels for the tfjs 'cpu' backend, for the ops a transformer training step spends its
 * time in once matmuls are native (measured with profile.ts on workload.ts, 4 blocks, d=576, 512
 * tokens: cpu + native matmul took ~10 s, of which Multiply 32%, Softmax 21%, Slice 12%, SplitV
 * 12%, Transpose 6%, Add/Sub 8%, PadV2, Sum, Sigmoid...; matmuls only 3%).
 *
 * Why tfjs-cpu is slow there: its broadcasting binary ops and Transpose/Pad/Slice compute every
 * element's coordinates with indexToLoc/locToIndex (array allocations per element), its reductions
 * transpose first, Softmax runs five kernels, and its per-op closures are shared by every op, so
 * V8 cannot inline the arithmetic.
 *
 * What we do instead: collapse shapes to the fewest strided dimensions, walk them with an
 * odometer, and generate one specialised loop per op (new Function) so the arithmetic is inlined.
 *
 * Results are bit-identical to tfjs-cpu: each element is computed with the same JS expression in
 * double precision and rounded to float32 where tfjs stores to a Float32Array (Math.fround marks
 * the places where tfjs stores an intermediate), and reductions add in the same order with a double
 * accumulator. Any case not handled here (other dtypes, complex, strings, unusual attributes) is
 * passed to the original tfjs kernel.
 */
import * as tf from './tfjs.js';
import { binaryKernel, reduceKernel, softmaxKernel, unaryKernel } from './fast-arithmetic.js';
import { movementKernels } from './fast-movement.js';
import type { NativeAddon } from './native.js';
import { replaceKernel, type KernelConfig } from './registry.js';

export { broadcastStrides, collapse, copyStrided } from './cpu-data.js';

// ---------------------------------------------------------------------------------------------

/** The replacements, each with the exact expression tfjs-backend-cpu uses for that kernel. */
export function fastKernelConfigs(addon?: NativeAddon): KernelConfig[] {
  return [
    binaryKernel(tf.Add, 'a + b', true, addon),
    binaryKernel(tf.Sub, 'a - b', true, addon),
    binaryKernel(tf.Multiply, 'a * b', true, addon),
    binaryKernel(tf.RealDiv, 'a / b', false, addon),
    binaryKernel(tf.Maximum, 'Math.max(a, b)', false),
    binaryKernel(tf.Minimum, 'Math.min(a, b)', false),
    binaryKernel(tf.SquaredDifference, '(a - b) * (a - b)', false, addon),
    binaryKernel(tf.Pow, 'Math.pow(a, b)', false),
    // Neg is -1 * x in tfjs (multiplyImpl with a scalar -1).
    unaryKernel(tf.Neg, '-1 * x', addon),
    // exp/log/tanh stay in JS: only V8's own Math.exp gives V8's bits.
    unaryKernel(tf.Exp, 'Math.exp(x)'),
    unaryKernel(tf.Log, 'Math.log(x)'),
    unaryKernel(tf.Sqrt, 'Math.sqrt(x)', addon),
    unaryKernel(tf.Rsqrt, '1 / Math.sqrt(x)', addon),
    unaryKernel(tf.Square, 'x * x', addon),
    unaryKernel(tf.Sigmoid, '1 / (1 + Math.exp(-x))'),
    unaryKernel(tf.Tanh, 'Math.tanh(x)'),
    unaryKernel(tf.Relu, 'Math.max(0, x)', addon),
    unaryKernel(tf.Abs, 'Math.abs(x)', addon),
    reduceKernel(tf.Sum, 'sum', 'axis'),
    reduceKernel(tf.Mean, 'mean', 'axis'),
    reduceKernel(tf.Max, 'max', 'reductionIndices'),
    softmaxKernel,
    ...movementKernels(addon),
  ];
}

/**
 * Register the fast kernels on the cpu backend. With the native addon, large arithmetic and large
 * copies run in C (same bits). Returns the kernel names.
 */
export function installFastKernels(backendName: 'cpu', addon?: NativeAddon): string[] {
  void backendName;
  const cfgs = fastKernelConfigs(addon);
  for (const c of cfgs) replaceKernel(c);
  return cfgs.map((c) => c.kernelName);
}
