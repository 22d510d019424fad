/**
 * UnsortedSegmentSum — the kernel behind tf.gather's gradient (embedding tables).
 *
 *  - tfjs-backend-wasm 4.22 has none, so training an embedding on wasm fails with "kernel not
 *    registered". We add one.
 *  - tfjs-backend-cpu's builds one mask per segment and multiplies the whole input by it:
 *    O(numSegments x rows x width), minutes per step for a 50k-token vocabulary. Ours groups rows by
 *    segment and adds each row once.
 *
 * Same numbers as tfjs-cpu: it sums each output element over the rows of its segment in increasing
 * row order, accumulating in double precision (its Sum kernel does `let sum = 0; sum += v`), then
 * rounds once to float32. We do exactly that. (One difference: tfjs-cpu multiplies *every* row by a
 * 0/1 mask, so a NaN or Infinity anywhere in x poisons every segment; here it stays in its own.)
 */
import * as tf from './tfjs.js';
import { callOriginal, originalKernel, replaceKernel, type TensorInfo } from './registry.js';

/**
 * out[s, j] = sum over rows i with ids[i] == s of x[i, j], for 0 <= s < numSegments.
 * `out` must be zero-filled by the caller. Pure, shared by both backends.
 */
export function segmentSumInto(
  x: Float32Array | Int32Array,
  ids: Int32Array | Float32Array,
  rows: number,
  inner: number,
  numSegments: number,
  out: Float32Array | Int32Array,
): void {
  // Counting sort of row indices by segment (stable: rows keep their order within a segment).
  const counts = new Int32Array(numSegments + 1);
  for (let i = 0; i < rows; i++) {
    const s = ids[i]!;
    if (s >= 0 && s < numSegments) counts[s + 1]!++;
  }
  for (let s = 0; s < numSegments; s++) counts[s + 1]! += counts[s]!;
  const order = new Int32Array(counts[numSegments]!);
  const fill = counts.slice(0, numSegments);
  for (let i = 0; i < rows; i++) {
    const s = ids[i]!;
    if (s >= 0 && s < numSegments) order[fill[s]!++] = i;
  }
  const acc = new Float64Array(inner);
  for (let s = 0; s < numSegments; s++) {
    const start = counts[s]!;
    const end = counts[s + 1]!;
    if (start === end) continue;
    const o = s * inner;
    if (end - start === 1) {
      const r = order[start]! * inner;
      for (let j = 0; j < inner; j++) out[o + j] = 0 + x[r + j]!; // 0 + v: -0 becomes +0, as in tfjs
      continue;
    }
    acc.fill(0);
    for (let t = start; t < end; t++) {
      const r = order[t]! * inner;
      for (let j = 0; j < inner; j++) acc[j]! += x[r + j]!;
    }
    for (let j = 0; j < inner; j++) out[o + j] = acc[j]!;
  }
}

function geometry(x: TensorInfo, ids: TensorInfo, numSegments: number) {
  const idRank = ids.shape.length;
  const rows = ids.shape.reduce((a, b) => a * b, 1);
  const innerShape = x.shape.slice(idRank);
  const inner = innerShape.reduce((a, b) => a * b, 1);
  return { rows, inner, outShape: [numSegments, ...innerShape], outSize: numSegments * inner };
}

interface CpuBackendLike {
  data: { get(dataId: object): { values?: unknown } };
  makeTensorInfo(shape: number[], dtype: string, values: Float32Array | Int32Array): TensorInfo;
}
interface WasmBackendLike {
  makeOutput(shape: number[], dtype: string): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/** Register ours for `backendName`. Returns true when tf.gather then has a working gradient. */
export function installSegmentSum(backendName: 'cpu' | 'wasm'): boolean {
  const name = tf.UnsortedSegmentSum;
  const hadOriginal = originalKernel(name, backendName) !== undefined;
  replaceKernel({
    kernelName: name,
    backendName,
    kernelFunc: (args) => {
      const { x, segmentIds } = args.inputs as { x: TensorInfo; segmentIds: TensorInfo };
      const numSegments = Number((args.attrs as { numSegments: number }).numSegments);
      const { rows, inner, outShape, outSize } = geometry(x, segmentIds, numSegments);
      const ok = (x.dtype === 'float32' || x.dtype === 'int32') && segmentIds.dtype === 'int32';
      if (backendName === 'cpu') {
        const be = args.backend as CpuBackendLike;
        const xv = be.data.get(x.dataId).values;
        const iv = be.data.get(segmentIds.dataId).values;
        // int32 x on cpu: tfjs returns float32 there (mask multiply upcasts); keep its behaviour.
        if (!ok || x.dtype !== 'float32' || !(xv instanceof Float32Array) || !(iv instanceof Int32Array)) {
          return callOriginal(name, backendName, args);
        }
        const out = new Float32Array(outSize);
        segmentSumInto(xv, iv, rows, inner, numSegments, out);
        return be.makeTensorInfo(outShape, 'float32', out);
      }
      if (!ok) throw new Error(`UnsortedSegmentSum on wasm supports float32/int32 data with int32 ids, got ${x.dtype}/${segmentIds.dtype}`);
      const be = args.backend as WasmBackendLike;
      const outInfo = be.makeOutput(outShape, x.dtype);
      // Views after the allocation: growing the wasm heap detaches older views.
      const out = be.typedArrayFromHeap(outInfo) as Float32Array | Int32Array;
      out.fill(0);
      const xv = be.typedArrayFromHeap(x) as Float32Array | Int32Array;
      const iv = be.typedArrayFromHeap(segmentIds) as Int32Array;
      segmentSumInto(xv, iv, rows, inner, numSegments, out);
      return outInfo;
    },
  });
  return hadOriginal || backendName === 'wasm';
}
