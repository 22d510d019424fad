/**
 * fopeify's data-movement kernels for the tfjs 'cpu' backend: Transpose, Slice, SplitV, PadV2,
 * GatherV2 and Concat as strided copies of the bits (trivially exact; see fast-kernels.ts). With the
 * native addon, large copies run in its threaded C copy (native/movement.c).
 */
import * as tf from './tfjs.js';
import { callOriginal, type KernelConfig, type TensorInfo } from './registry.js';
import { BACKEND, be, bits, collapse, copyStrided, newArrayLike, numericOrNull, sizeOf, stridesOf, valuesOf, type Arr, type KernelArgs } from './cpu-data.js';
import type { NativeAddon } from './native.js';

/** copyStrided's contract: one strided copy of bits. */
export type StridedCopy = typeof copyStrided;

/**
 * Copies of this many elements or more go to the addon's C copy. Below it the N-API call and its
 * geometry array cost more than the JS loop (measured: [32, 4, 64] transposed ~ equal either way).
 */
export const NATIVE_MIN_COPY = 8192;

/** copyStrided, through the addon's threaded C copy for large copies when the addon is loaded. */
export function stridedCopy(addon?: NativeAddon): StridedCopy {
  if (!addon) return copyStrided;
  return (src, sOff, sStrides, dst, dOff, dStrides, shape) => {
    if (sizeOf(shape) < NATIVE_MIN_COPY) return copyStrided(src, sOff, sStrides, dst, dOff, dStrides, shape);
    const c = collapse(shape, [sStrides, dStrides]);
    if (c.shape.length > 16) return copyStrided(src, sOff, sStrides, dst, dOff, dStrides, shape);
    addon.copyStrided(src, dst, Float64Array.from([c.shape.length, sOff, dOff, ...c.shape, ...c.strides[0]!, ...c.strides[1]!]));
  };
}

/** The movement kernels, copying with `addon`'s C copy when given. */
export function movementKernels(addon?: NativeAddon): KernelConfig[] {
  const copy = stridedCopy(addon);
  return [transposeKernel(copy), sliceKernel(copy), splitVKernel(copy), padKernel(copy), gatherKernel, concatKernel(copy)];
}

const transposeKernel = (copy: StridedCopy): KernelConfig => ({
  kernelName: tf.Transpose,
  backendName: BACKEND,
  kernelFunc: (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const perm = (args.attrs as { perm: number[] }).perm;
    const xv = numericOrNull(args, x);
    if (!xv) return callOriginal(tf.Transpose, BACKEND, args);
    const outShape = perm.map((p) => x.shape[p]!);
    const out = newArrayLike(x.dtype, xv.length);
    const xs = stridesOf(x.shape);
    copy(bits(xv), 0, perm.map((p) => xs[p]!), bits(out), 0, stridesOf(outShape), outShape);
    return be(args).makeTensorInfo(outShape, x.dtype, out);
  },
});

function sliceValues(copy: StridedCopy, args: KernelArgs, x: TensorInfo, xv: Arr | Uint8Array, begin: number[], size: number[]): TensorInfo {
  const xs = stridesOf(x.shape);
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    // Same as tfjs: a contiguous slice is a view of the input's buffer (no copy).
    const off = tf.slice_util.computeFlatOffset(begin, xs);
    return be(args).makeTensorInfo(size, x.dtype, xv.subarray(off, off + sizeOf(size)));
  }
  let off = 0;
  for (let d = 0; d < begin.length; d++) off += begin[d]! * xs[d]!;
  const out = newArrayLike(x.dtype, sizeOf(size));
  copy(bits(xv), off, xs, bits(out), 0, stridesOf(size), size);
  return be(args).makeTensorInfo(size, x.dtype, out);
}

const sliceKernel = (copy: StridedCopy): KernelConfig => ({
  kernelName: tf.Slice,
  backendName: BACKEND,
  kernelFunc: (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { begin, size } = args.attrs as { begin: number | number[]; size?: number | number[] };
    const xv = numericOrNull(args, x);
    if (!xv) return callOriginal(tf.Slice, BACKEND, args);
    const [$begin, $size] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, begin, size);
    tf.slice_util.assertParamsValid(x as unknown as tf.Tensor, $begin, $size);
    return sliceValues(copy, args, x, xv, $begin, $size);
  },
});

const splitVKernel = (copy: StridedCopy): KernelConfig => ({
  kernelName: tf.SplitV,
  backendName: BACKEND,
  kernelFunc: (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
    const xv = numericOrNull(args, x);
    if (!xv) return callOriginal(tf.SplitV, BACKEND, args);
    const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, numOrSizeSplits, ax);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((s) => {
      const size = [...x.shape];
      size[ax] = s;
      const t = sliceValues(copy, args, x, xv, [...begin], size);
      begin[ax]! += s;
      return t;
    });
  },
});

const padKernel = (copy: StridedCopy): KernelConfig => ({
  kernelName: tf.PadV2,
  backendName: BACKEND,
  kernelFunc: (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { paddings, constantValue } = args.attrs as { paddings: Array<[number, number]>; constantValue: number };
    const xv = numericOrNull(args, x);
    if (!xv || x.dtype === 'bool') return callOriginal(tf.PadV2, BACKEND, args);
    const outShape = paddings.map((p, i) => p[0] + x.shape[i]! + p[1]);
    const out = newArrayLike(x.dtype, sizeOf(outShape));
    if (constantValue !== 0) out.fill(constantValue);
    const os = stridesOf(outShape);
    let off = 0;
    for (let d = 0; d < outShape.length; d++) off += paddings[d]![0] * os[d]!;
    copy(bits(xv), 0, stridesOf(x.shape), bits(out), off, os, x.shape);
    return be(args).makeTensorInfo(outShape, x.dtype, out);
  },
});

const gatherKernel: KernelConfig = {
  kernelName: tf.GatherV2,
  backendName: BACKEND,
  kernelFunc: (args) => {
    const { x, indices } = args.inputs as { x: TensorInfo; indices: TensorInfo };
    const { axis, batchDims } = args.attrs as { axis: number; batchDims?: number };
    const xv = numericOrNull(args, x);
    const iv = valuesOf(args, indices);
    if (!xv || (batchDims ?? 0) !== 0 || !(iv instanceof Int32Array || iv instanceof Float32Array)) {
      return callOriginal(tf.GatherV2, BACKEND, args);
    }
    const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
    const dimSize = x.shape[ax]!;
    for (let i = 0; i < iv.length; i++) {
      const index = iv[i]!;
      tf.util.assert(index <= dimSize - 1 && index >= 0, () => `GatherV2: the index value ${index} is not in [0, ${dimSize - 1}]`);
    }
    const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(
      x as unknown as tf.Tensor,
      indices as unknown as tf.Tensor,
      ax,
      0,
    );
    const { outerSize, sliceSize } = info;
    const nIdx = iv.length;
    const out = newArrayLike(x.dtype, outerSize * nIdx * sliceSize);
    const ob = bits(out);
    const xb = bits(xv);
    for (let o = 0; o < outerSize; o++) {
      for (let i = 0; i < nIdx; i++) {
        const src = (o * dimSize + iv[i]!) * sliceSize;
        const dst = (o * nIdx + i) * sliceSize;
        if (sliceSize >= 64) ob.set(xb.subarray(src, src + sliceSize), dst);
        else for (let j = 0; j < sliceSize; j++) ob[dst + j] = xb[src + j]!;
      }
    }
    return be(args).makeTensorInfo(info.outputShape, x.dtype, out);
  },
};

const concatKernel = (copy: StridedCopy): KernelConfig => ({
  kernelName: tf.Concat,
  backendName: BACKEND,
  kernelFunc: (args) => {
    const inputs = Object.values(args.inputs) as TensorInfo[];
    const { axis } = args.attrs as { axis: number };
    if (inputs.length === 0) return callOriginal(tf.Concat, BACKEND, args);
    const ax = tf.util.parseAxisParam(axis, inputs[0]!.shape)[0]!;
    const shapes = inputs.map((t) => t.shape);
    tf.backend_util.assertParamsConsistent(shapes, ax);
    const outShape = tf.backend_util.computeOutShape(shapes, ax);
    const live = inputs.filter((t) => sizeOf(t.shape) > 0);
    const dtype = inputs[0]!.dtype;
    const vals = live.map((t) => numericOrNull(args, t));
    // Empty results, a single non-empty input, complex and string data: tfjs's own handling.
    if (sizeOf(outShape) === 0 || live.length < 2 || vals.some((v, i) => !v || live[i]!.dtype !== dtype)) {
      return callOriginal(tf.Concat, BACKEND, args);
    }
    const rows = sizeOf(outShape.slice(0, ax));
    const widths = live.map((t) => sizeOf(t.shape.slice(ax)));
    const outW = widths.reduce((x, y) => x + y, 0);
    const out = newArrayLike(dtype, rows * outW);
    const ob = bits(out);
    let col = 0;
    for (let k = 0; k < live.length; k++) {
      // Input k's rows of w elements land at column `col` of the output's rows of outW.
      const w = widths[k]!;
      copy(bits(vals[k]!), 0, [w, 1], ob, col, [outW, 1], [rows, w]);
      col += w;
    }
    return be(args).makeTensorInfo(outShape, dtype, out);
  },
});

