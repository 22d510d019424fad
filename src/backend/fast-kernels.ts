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
import * as tf from '@tensorflow/tfjs';
import type { NativeAddon } from './native.js';
import { callOriginal, replaceKernel, type KernelConfig, type TensorInfo } from './registry.js';

type Arr = Float32Array | Int32Array;
type KernelArgs = Parameters<tf.KernelFunc>[0];

interface CpuBackendLike {
  data: { get(dataId: object): { values?: unknown } };
  makeTensorInfo(shape: number[], dtype: string, values: unknown): TensorInfo;
}

const BACKEND = 'cpu';
const sizeOf = (s: readonly number[]) => {
  let n = 1;
  for (const d of s) n *= d;
  return n;
};
const stridesOf = (s: readonly number[]) => {
  const st = new Array<number>(s.length);
  let acc = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s[i]!;
  }
  return st;
};

function be(args: KernelArgs): CpuBackendLike {
  return args.backend as CpuBackendLike;
}
function valuesOf(args: KernelArgs, t: TensorInfo): unknown {
  return be(args).data.get(t.dataId).values;
}
function floatValues(args: KernelArgs, t: TensorInfo): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const v = valuesOf(args, t);
  return v instanceof Float32Array ? v : null;
}
function numericValues(args: KernelArgs, t: TensorInfo): Arr | null {
  const v = valuesOf(args, t);
  if (t.dtype === 'float32' && v instanceof Float32Array) return v;
  if (t.dtype === 'int32' && v instanceof Int32Array) return v;
  return null;
}

// ---------------------------------------------------------------------------------------------
// Strided iteration, shared by binary ops, transpose, slice and pad.

/**
 * Merge dimensions that are contiguous for every operand (stride[d] == stride[d+1] * shape[d+1])
 * and drop size-1 dimensions. Returns at least one dimension.
 */
export function collapse(shape: readonly number[], strides: ReadonlyArray<readonly number[]>): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    const n = shape[d]!;
    if (n === 1) continue;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((s, k) => outStrides[k]![last] === s[d]! * n)) {
      outShape[last] = outShape[last]! * n;
      strides.forEach((s, k) => (outStrides[k]![last] = s[d]!));
      continue;
    }
    outShape.push(n);
    strides.forEach((s, k) => outStrides[k]!.push(s[d]!));
  }
  if (outShape.length === 0) {
    outShape.push(1);
    strides.forEach((_, k) => outStrides[k]!.push(0));
  }
  return { shape: outShape, strides: outStrides };
}

/**
 * dst[dOff + sum(i_d * dStride_d)] = src[sOff + sum(i_d * sStride_d)] over `shape`.
 * One routine for transpose (strided read), slice (offset strided read) and pad (strided write).
 */
export function copyStrided(
  src: Int32Array | Uint8Array,
  sOff: number,
  sStrides: readonly number[],
  dst: Int32Array | Uint8Array,
  dOff: number,
  dStrides: readonly number[],
  shapeIn: readonly number[],
): void {
  const total = sizeOf(shapeIn);
  if (total === 0) return;
  const { shape, strides } = collapse(shapeIn, [sStrides, dStrides]);
  const nd = shape.length;
  const ss = strides[0]!;
  const ds = strides[1]!;
  const n = shape[nd - 1]!;
  const si = ss[nd - 1]!;
  const di = ds[nd - 1]!;
  const idx = new Array<number>(nd).fill(0);
  let so = sOff;
  let dO = dOff;
  for (let done = 0; done < total; done += n) {
    if (si === 1 && di === 1) {
      if (n >= 64) {
        dst.set(src.subarray(so, so + n), dO);
      } else {
        for (let j = 0; j < n; j++) dst[dO + j] = src[so + j]!;
      }
    } else {
      for (let j = 0; j < n; j++) dst[dO + j * di] = src[so + j * si]!;
    }
    for (let d = nd - 2; d >= 0; d--) {
      so += ss[d]!;
      dO += ds[d]!;
      if (++idx[d]! < shape[d]!) break;
      so -= ss[d]! * shape[d]!;
      dO -= ds[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Binary elementwise ops with broadcasting.

type BinaryLoop = (
  A: Arr,
  B: Arr,
  out: Arr,
  nd: number,
  shape: number[],
  sa: number[],
  sb: number[],
  total: number,
) => void;

/**
 * Generate the loop for one op. `expr` uses `a` and `b` (numbers read from the inputs). The four
 * inner-loop variants cover equal shapes, row/column broadcasting and scalars without per-element
 * index arithmetic.
 */
function genBinary(expr: string): BinaryLoop {
  const src = `
  return function binaryLoop(A, B, out, nd, shape, sa, sb, total) {
    const n = shape[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
    const idx = new Int32Array(nd);
    let offA = 0, offB = 0;
    for (let o = 0; o < total; o += n) {
      if (ia === 1 && ib === 1) {
        for (let j = 0; j < n; j++) { const a = A[offA + j], b = B[offB + j]; out[o + j] = ${expr}; }
      } else if (ia === 1 && ib === 0) {
        const b = B[offB];
        for (let j = 0; j < n; j++) { const a = A[offA + j]; out[o + j] = ${expr}; }
      } else if (ia === 0 && ib === 1) {
        const a = A[offA];
        for (let j = 0; j < n; j++) { const b = B[offB + j]; out[o + j] = ${expr}; }
      } else {
        for (let j = 0; j < n; j++) { const a = A[offA + j * ia], b = B[offB + j * ib]; out[o + j] = ${expr}; }
      }
      for (let d = nd - 2; d >= 0; d--) {
        offA += sa[d]; offB += sb[d];
        if (++idx[d] < shape[d]) break;
        offA -= sa[d] * shape[d]; offB -= sb[d] * shape[d]; idx[d] = 0;
      }
    }
  };`;
  return new Function(src)() as BinaryLoop;
}

/** Output shape and per-operand strides (0 on broadcast dims) in the output's index space. */
export function broadcastStrides(aShape: readonly number[], bShape: readonly number[]) {
  const outShape = tf.backend_util.assertAndGetBroadcastShape(aShape as number[], bShape as number[]);
  const rank = outShape.length;
  const pad = (s: readonly number[]) => [...new Array<number>(rank - s.length).fill(1), ...s];
  const pa = pad(aShape);
  const pb = pad(bShape);
  const sa = stridesOf(pa).map((st, d) => (pa[d] === 1 ? 0 : st));
  const sb = stridesOf(pb).map((st, d) => (pb[d] === 1 ? 0 : st));
  return { outShape, sa, sb };
}

/**
 * Elementwise work this large goes to the native addon when it is loaded: the same double-precision
 * expression in C, vectorised (~0.5 ns/element against ~3.5 in JS on the 2-core test machine).
 * Below it, the N-API call costs more than it saves.
 */
const NATIVE_MIN_ELEMENTS = 8192;

/** Opcodes of the addon's binary()/unary() (native/fopeify_native.c OP_* / UOP_*). */
const NATIVE_BINARY: Record<string, number> = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, SquaredDifference: 4 };
const NATIVE_UNARY: Record<string, number> = { Neg: 0, Square: 1, Sqrt: 2, Rsqrt: 3, Relu: 4, Abs: 5 };

function binaryKernel(kernelName: string, expr: string, allowInt32: boolean, addon?: NativeAddon): KernelConfig {
  const loop = genBinary(expr);
  const nativeOp = addon?.binary ? NATIVE_BINARY[kernelName] : undefined;
  return {
    kernelName,
    backendName: BACKEND,
    kernelFunc: (args) => {
      const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
      const av = numericValues(args, a);
      const bv = numericValues(args, b);
      if (!av || !bv || a.dtype !== b.dtype || (a.dtype === 'int32' && !allowInt32)) {
        return callOriginal(kernelName, BACKEND, args);
      }
      const { outShape, sa, sb } = broadcastStrides(a.shape, b.shape);
      const total = sizeOf(outShape);
      const out = a.dtype === 'int32' ? new Int32Array(total) : new Float32Array(total);
      if (total > 0) {
        const c = collapse(outShape, [sa, sb]);
        if (nativeOp !== undefined && total >= NATIVE_MIN_ELEMENTS && out instanceof Float32Array && c.shape.length <= 16) {
          const nd = c.shape.length;
          addon!.binary!(nativeOp, av as Float32Array, bv as Float32Array, out, Float64Array.from([nd, ...c.shape, ...c.strides[0]!, ...c.strides[1]!]));
        } else {
          loop(av, bv, out, c.shape.length, c.shape, c.strides[0]!, c.strides[1]!, total);
        }
      }
      return be(args).makeTensorInfo(outShape, a.dtype, out);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Unary elementwise ops (float32 in, float32 out).

type UnaryLoop = (x: Float32Array, out: Float32Array, n: number) => void;

function genUnary(expr: string): UnaryLoop {
  return new Function(`return function unaryLoop(X, out, n) { for (let i = 0; i < n; i++) { const x = X[i]; out[i] = ${expr}; } };`)() as UnaryLoop;
}

function unaryKernel(kernelName: string, expr: string, addon?: NativeAddon): KernelConfig {
  const loop = genUnary(expr);
  const nativeOp = addon?.unary ? NATIVE_UNARY[kernelName] : undefined;
  return {
    kernelName,
    backendName: BACKEND,
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: TensorInfo };
      const xv = floatValues(args, x);
      if (!xv) return callOriginal(kernelName, BACKEND, args);
      const out = new Float32Array(xv.length);
      if (nativeOp !== undefined && xv.length >= NATIVE_MIN_ELEMENTS) addon!.unary!(nativeOp, xv, out);
      else loop(xv, out, xv.length);
      return be(args).makeTensorInfo(x.shape, 'float32', out);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Reductions: Sum, Mean, Max over any axes, without tfjs's transpose when the reduced axes are the
// innermost (rows) or outermost (columns) ones. tfjs reduces the transposed array row by row in
// increasing index order; both fast paths add each output's terms in that same order.

type ReduceKind = 'sum' | 'mean' | 'max';

interface ReducePlan {
  outShape: number[];
  reduceSize: number;
  outSize: number;
  mode: 'rows' | 'cols' | 'transpose';
  perm: number[] | null;
}

function planReduce(shape: number[], axisAttr: number | number[] | undefined, keepDims: boolean): ReducePlan {
  const rank = shape.length;
  const axes = tf.util.parseAxisParam(axisAttr ?? null as unknown as number[], shape);
  const perm = tf.backend_util.getAxesPermutation(axes, rank);
  const permShape = perm ? perm.map((p) => shape[p]!) : shape;
  const inner = perm ? tf.backend_util.getInnerMostAxes(axes.length, rank) : axes;
  const [outShape0, reduceShape] = tf.backend_util.computeOutAndReduceShapes(permShape, inner);
  const outShape = keepDims ? tf.backend_util.expandShapeToKeepDim(outShape0, axes) : outShape0;
  const reduceSize = sizeOf(reduceShape);
  const outSize = sizeOf(outShape0);
  let mode: ReducePlan['mode'] = 'rows';
  if (perm) {
    // Leading axes 0..k-1 in increasing order: the transposed array is [rest, leading], i.e. the
    // original read column-wise.
    const k = axes.length;
    mode = axes.every((ax, i) => ax === i) ? 'cols' : 'transpose';
    void k;
  }
  return { outShape, reduceSize, outSize, mode, perm };
}

function reduceRows(kind: ReduceKind, x: Float32Array, out: Float32Array, outSize: number, r: number): void {
  if (kind === 'max') {
    for (let i = 0; i < outSize; i++) {
      const off = i * r;
      let m = x[off]!;
      for (let j = 0; j < r; j++) {
        const v = x[off + j]!;
        if (Number.isNaN(v) || v > m) m = v;
      }
      out[i] = m;
    }
  } else if (kind === 'sum') {
    for (let i = 0; i < outSize; i++) {
      const off = i * r;
      let s = 0;
      for (let j = 0; j < r; j++) s += x[off + j]!;
      out[i] = s;
    }
  } else {
    const div = Math.fround(r);
    for (let i = 0; i < outSize; i++) {
      const off = i * r;
      let s = 0;
      for (let j = 0; j < r; j++) s += Math.fround(x[off + j]! / div);
      out[i] = s;
    }
  }
}

function reduceCols(kind: ReduceKind, x: Float32Array, out: Float32Array, outSize: number, r: number): void {
  if (kind === 'max') {
    for (let o = 0; o < outSize; o++) out[o] = x[o]!;
    for (let j = 0; j < r; j++) {
      const off = j * outSize;
      for (let o = 0; o < outSize; o++) {
        const v = x[off + o]!;
        if (Number.isNaN(v) || v > out[o]!) out[o] = v;
      }
    }
    return;
  }
  const acc = new Float64Array(outSize);
  if (kind === 'sum') {
    for (let j = 0; j < r; j++) {
      const off = j * outSize;
      for (let o = 0; o < outSize; o++) acc[o]! += x[off + o]!;
    }
  } else {
    const div = Math.fround(r);
    for (let j = 0; j < r; j++) {
      const off = j * outSize;
      for (let o = 0; o < outSize; o++) acc[o]! += Math.fround(x[off + o]! / div);
    }
  }
  for (let o = 0; o < outSize; o++) out[o] = acc[o]!;
}

function transposeValues(x: Float32Array, shape: readonly number[], perm: readonly number[]): Float32Array {
  const outShape = perm.map((p) => shape[p]!);
  const out = new Float32Array(x.length);
  const xs = stridesOf(shape);
  copyStrided(bits(x), 0, perm.map((p) => xs[p]!), bits(out), 0, stridesOf(outShape), outShape);
  return out;
}

function reduceKernel(kernelName: string, kind: ReduceKind, axisAttr: 'axis' | 'reductionIndices'): KernelConfig {
  return {
    kernelName,
    backendName: BACKEND,
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: TensorInfo };
      const attrs = (args.attrs ?? {}) as Record<string, unknown>;
      const xv = floatValues(args, x);
      if (!xv) return callOriginal(kernelName, BACKEND, args);
      const p = planReduce(x.shape, attrs[axisAttr] as number | number[], !!attrs.keepDims);
      if (p.reduceSize === 0 || p.outSize === 0) return callOriginal(kernelName, BACKEND, args);
      const out = new Float32Array(p.outSize);
      if (p.mode === 'rows') reduceRows(kind, xv, out, p.outSize, p.reduceSize);
      else if (p.mode === 'cols') reduceCols(kind, xv, out, p.outSize, p.reduceSize);
      else reduceRows(kind, transposeValues(xv, x.shape, p.perm!), out, p.outSize, p.reduceSize);
      return be(args).makeTensorInfo(p.outShape, 'float32', out);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Softmax over the last axis in one pass per row, replaying tfjs's five kernels exactly:
// max -> (x - max) stored as float32 -> exp stored as float32 -> double sum stored as float32 ->
// e / sum stored as float32.

const softmaxKernel: KernelConfig = {
  kernelName: tf.Softmax,
  backendName: BACKEND,
  kernelFunc: (args) => {
    const { logits } = args.inputs as { logits: TensorInfo };
    const dim = (args.attrs as { dim?: number } | undefined)?.dim ?? -1;
    const rank = logits.shape.length;
    const xv = floatValues(args, logits);
    if (!xv || rank === 0 || (dim !== -1 && dim !== rank - 1)) return callOriginal(tf.Softmax, BACKEND, args);
    const n = logits.shape[rank - 1]!;
    const rows = n === 0 ? 0 : xv.length / n;
    const out = new Float32Array(xv.length);
    for (let r = 0; r < rows; r++) {
      const off = r * n;
      let m = xv[off]!;
      for (let j = 0; j < n; j++) {
        const v = xv[off + j]!;
        if (Number.isNaN(v) || v > m) m = v;
      }
      let s = 0;
      for (let j = 0; j < n; j++) {
        const e = Math.fround(Math.exp(Math.fround(xv[off + j]! - m)));
        out[off + j] = e;
        s += e;
      }
      const sf = Math.fround(s);
      for (let j = 0; j < n; j++) out[off + j] = out[off + j]! / sf;
    }
    return be(args).makeTensorInfo(logits.shape, 'float32', out);
  },
};

// ---------------------------------------------------------------------------------------------
// Transpose, Slice, SplitV, PadV2, GatherV2: pure data movement, trivially exact.

function numericOrNull(args: KernelArgs, t: TensorInfo): Arr | Uint8Array | null {
  const v = valuesOf(args, t);
  if (t.dtype === 'float32' && v instanceof Float32Array) return v;
  if (t.dtype === 'int32' && v instanceof Int32Array) return v;
  if (t.dtype === 'bool' && v instanceof Uint8Array) return v;
  return null;
}
function newArrayLike(dtype: string, n: number): Arr | Uint8Array {
  return dtype === 'float32' ? new Float32Array(n) : dtype === 'int32' ? new Int32Array(n) : new Uint8Array(n);
}

/**
 * The same memory as an Int32Array (4-byte types) or Uint8Array (bool). Data movement copies bits,
 * so it need not know the dtype, and loops that only ever see these two array types stay fast in
 * V8 (a loop fed Float32Array, Int32Array and Uint8Array goes megamorphic: ~75 ns per element).
 */
function bits(a: Arr | Uint8Array): Int32Array | Uint8Array {
  return a instanceof Float32Array ? new Int32Array(a.buffer, a.byteOffset, a.length) : a;
}

const transposeKernel: KernelConfig = {
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
    copyStrided(bits(xv), 0, perm.map((p) => xs[p]!), bits(out), 0, stridesOf(outShape), outShape);
    return be(args).makeTensorInfo(outShape, x.dtype, out);
  },
};

function sliceValues(args: KernelArgs, x: TensorInfo, xv: Arr | Uint8Array, begin: number[], size: number[]): TensorInfo {
  const xs = stridesOf(x.shape);
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    // Same as tfjs: a contiguous slice is a view of the input's buffer (no copy).
    const off = tf.slice_util.computeFlatOffset(begin, xs);
    return be(args).makeTensorInfo(size, x.dtype, xv.subarray(off, off + sizeOf(size)));
  }
  let off = 0;
  for (let d = 0; d < begin.length; d++) off += begin[d]! * xs[d]!;
  const out = newArrayLike(x.dtype, sizeOf(size));
  copyStrided(bits(xv), off, xs, bits(out), 0, stridesOf(size), size);
  return be(args).makeTensorInfo(size, x.dtype, out);
}

const sliceKernel: KernelConfig = {
  kernelName: tf.Slice,
  backendName: BACKEND,
  kernelFunc: (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { begin, size } = args.attrs as { begin: number | number[]; size?: number | number[] };
    const xv = numericOrNull(args, x);
    if (!xv) return callOriginal(tf.Slice, BACKEND, args);
    const [$begin, $size] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, begin, size);
    tf.slice_util.assertParamsValid(x as unknown as tf.Tensor, $begin, $size);
    return sliceValues(args, x, xv, $begin, $size);
  },
};

const splitVKernel: KernelConfig = {
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
      const t = sliceValues(args, x, xv, [...begin], size);
      begin[ax]! += s;
      return t;
    });
  },
};

const padKernel: KernelConfig = {
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
    copyStrided(bits(xv), 0, stridesOf(x.shape), bits(out), off, os, x.shape);
    return be(args).makeTensorInfo(outShape, x.dtype, out);
  },
};

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

const concatKernel: KernelConfig = {
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
      const v = bits(vals[k]!);
      const w = widths[k]!;
      if (rows === 1) ob.set(v, col);
      else if (w >= 64) for (let r = 0; r < rows; r++) ob.set(v.subarray(r * w, r * w + w), r * outW + col);
      else for (let r = 0; r < rows; r++) for (let j = 0; j < w; j++) ob[r * outW + col + j] = v[r * w + j]!;
      col += w;
    }
    return be(args).makeTensorInfo(outShape, dtype, out);
  },
};

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
    transposeKernel,
    sliceKernel,
    splitVKernel,
    padKernel,
    gatherKernel,
    concatKernel,
  ];
}

/**
 * Register the fast kernels on the cpu backend. With the native addon, large arithmetic runs in C
 * (same bits). Returns the kernel names.
 */
export function installFastKernels(backendName: 'cpu', addon?: NativeAddon): string[] {
  void backendName;
  const cfgs = fastKernelConfigs(addon);
  for (const c of cfgs) replaceKernel(c);
  return cfgs.map((c) => c.kernelName);
}
