/**
 * Reading and writing the tfjs 'cpu' backend's tensor data for fopeify's kernels: typed views of a
 * kernel's inputs, and strided iteration (collapse dimensions, copy with strides, broadcast strides)
 * shared by the arithmetic and data-movement kernels.
 */
import { noteReusable, takeReusable } from './buffer-reuse.js';
import * as tf from './tfjs.js';
import type { TensorInfo } from './registry.js';

export type Arr = Float32Array | Int32Array;
export type KernelArgs = Parameters<tf.KernelFunc>[0];

interface CpuBackendLike {
  data: { get(dataId: object): { values?: unknown } };
  makeTensorInfo(shape: number[], dtype: string, values: unknown): TensorInfo;
}

export const BACKEND = 'cpu';
export const sizeOf = (s: readonly number[]) => {
  let n = 1;
  for (const d of s) n *= d;
  return n;
};
export const stridesOf = (s: readonly number[]) => {
  const st = new Array<number>(s.length);
  let acc = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s[i]!;
  }
  return st;
};

export function be(args: KernelArgs): CpuBackendLike {
  return args.backend as CpuBackendLike;
}
export function valuesOf(args: KernelArgs, t: TensorInfo): unknown {
  return be(args).data.get(t.dataId).values;
}
export function floatValues(args: KernelArgs, t: TensorInfo): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const v = valuesOf(args, t);
  return v instanceof Float32Array ? v : null;
}
export function numericValues(args: KernelArgs, t: TensorInfo): Arr | null {
  const v = valuesOf(args, t);
  if (t.dtype === 'float32' && v instanceof Float32Array) return v;
  if (t.dtype === 'int32' && v instanceof Int32Array) return v;
  return null;
}

export function numericOrNull(args: KernelArgs, t: TensorInfo): Arr | Uint8Array | null {
  const v = valuesOf(args, t);
  if (t.dtype === 'float32' && v instanceof Float32Array) return v;
  if (t.dtype === 'int32' && v instanceof Int32Array) return v;
  if (t.dtype === 'bool' && v instanceof Uint8Array) return v;
  return null;
}
/** Below this many elements a zero-filled array is as cheap (allocUnsafeSlow has its own overhead). */
const UNFILLED_MIN_ELEMENTS = 4096;

/**
 * A Float32Array of n elements whose memory is NOT zero-filled: only for outputs the caller writes in
 * full. `new Float32Array(n)` has V8 calloc its memory, and where glibc serves it from reused heap
 * (native.ts's KEEP_FREED_MEMORY) that is a memset of the whole output just before the kernel
 * overwrites it. Node's Buffer.allocUnsafeSlow gives an ArrayBuffer of its own (byteOffset 0, exactly
 * n·4 bytes) without the fill; elsewhere (no Buffer) a plain zero-filled array. Measured (CPU time,
 * 2 cores): a [2048, 576] native Add 1.06 → 0.87 ms; GEMM outputs (matmul.ts) 0.974 of a 512-token
 * training step's time, measured A/B within one process.
 */
export function unfilledFloat32(n: number): Float32Array {
  const reused = takeReusable(n); // inside a training step: a disposed buffer of this size (buffer-reuse.ts)
  if (reused) return reused;
  const NodeBuffer = (globalThis as { Buffer?: { allocUnsafeSlow(bytes: number): Uint8Array } }).Buffer;
  let a: Float32Array;
  if (n < UNFILLED_MIN_ELEMENTS || !NodeBuffer) a = new Float32Array(n);
  else {
    const bytes = NodeBuffer.allocUnsafeSlow(n * 4);
    a = new Float32Array(bytes.buffer, bytes.byteOffset, n);
  }
  noteReusable(a);
  return a;
}

export function newArrayLike(dtype: string, n: number): Arr | Uint8Array {
  return dtype === 'float32' ? new Float32Array(n) : dtype === 'int32' ? new Int32Array(n) : new Uint8Array(n);
}

/**
 * The same memory as an Int32Array (4-byte types) or Uint8Array (bool). Data movement copies bits,
 * so it need not know the dtype, and loops that only ever see these two array types stay fast in
 * V8 (a loop fed Float32Array, Int32Array and Uint8Array goes megamorphic: ~75 ns per element).
 */
export function bits(a: Arr | Uint8Array): Int32Array | Uint8Array {
  return a instanceof Float32Array ? new Int32Array(a.buffer, a.byteOffset, a.length) : a;
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
