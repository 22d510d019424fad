/**
 * fopeify's arithmetic kernels for the tfjs 'cpu' backend (see fast-kernels.ts for why and how):
 * broadcasting binary ops, unary ops, reductions and the last-axis softmax, each bit-identical to
 * tfjs-cpu; large float32 work goes to the native addon's C loops when it is loaded.
 */
import * as tf from './tfjs.js';
import type { NativeAddon } from './native.js';
import { callOriginal, type KernelConfig, type TensorInfo } from './registry.js';
import {
  BACKEND,
  be,
  bits,
  broadcastStrides,
  collapse,
  copyStrided,
  floatValues,
  numericValues,
  sizeOf,
  stridesOf,
  type Arr,
  unfilledFloat32,
} from './cpu-data.js';

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

/**
 * Elementwise work this large goes to the native addon when it is loaded: the same double-precision
 * expression in C, vectorised (~0.5 ns/element against ~3.5 in JS on the 2-core test machine), and
 * from 64K output elements split over the addon's thread team (a [2048, 576] Add: 1.0 → 0.7 ms).
 * Below it, the N-API call costs more than it saves.
 */
const NATIVE_MIN_ELEMENTS = 8192;

/** Opcodes of the addon's binary()/unary() (native/fopeify_native.c OP_* / UOP_*). */
const NATIVE_BINARY: Record<string, number> = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, SquaredDifference: 4 };
const NATIVE_UNARY: Record<string, number> = { Neg: 0, Square: 1, Sqrt: 2, Rsqrt: 3, Relu: 4, Abs: 5 };

export function binaryKernel(kernelName: string, expr: string, allowInt32: boolean, addon?: NativeAddon): KernelConfig {
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
      const c = total > 0 ? collapse(outShape, [sa, sb]) : null;
      const native = nativeOp !== undefined && total >= NATIVE_MIN_ELEMENTS && a.dtype === 'float32' && c!.shape.length <= 16;
      // The addon writes every element (or throws): no zero fill first.
      const out = a.dtype === 'int32' ? new Int32Array(total) : native ? unfilledFloat32(total) : new Float32Array(total);
      if (c) {
        if (native) {
          const nd = c.shape.length;
          addon!.binary!(nativeOp, av as Float32Array, bv as Float32Array, out as Float32Array, Float64Array.from([nd, ...c.shape, ...c.strides[0]!, ...c.strides[1]!]));
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

export function unaryKernel(kernelName: string, expr: string, addon?: NativeAddon): KernelConfig {
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

export function reduceKernel(kernelName: string, kind: ReduceKind, axisAttr: 'axis' | 'reductionIndices'): KernelConfig {
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

export const softmaxKernel: KernelConfig = {
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

