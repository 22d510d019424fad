/**
 * BatchMatMul and _FusedMatMul for the tfjs 'cpu' and 'wasm' backends, computed by the BLAS the
 * native addon loaded. Semantics follow @tensorflow/tfjs-backend-cpu (kernels/BatchMatMul.js and
 * kernels/_FusedMatMul.js): the last two dims are the matrices, transposeA/B apply to them, the
 * leading (batch) dims broadcast, the fused kernel adds `bias` (broadcast against the output) and
 * then applies `activation`.
 *
 * One deliberate difference: tfjs-cpu indexes broadcast batches as `i % batchA` / `i % batchB`,
 * which is only right when one side's batch is 1 or both are equal; we broadcast per dimension
 * (NumPy rules), which agrees with tfjs in every case where tfjs is right.
 */
import { unfilledFloat32 } from './cpu-data.js';
import * as tf from './tfjs.js';
import type { NativeAddon } from './native.js';
import { callOriginal, type KernelConfig, type TensorInfo } from './registry.js';

/** One sgemm call (possibly batched with constant strides). All numbers are in elements. */
export interface GemmCall {
  m: number;
  batch: number;
  aOff: number;
  strideA: number;
  bOff: number;
  strideB: number;
  cOff: number;
  strideC: number;
}

export interface MatMulPlan {
  outShape: number[];
  m: number;
  n: number;
  k: number;
  lda: number;
  ldb: number;
  ldc: number;
  transposeA: boolean;
  transposeB: boolean;
  calls: GemmCall[];
  outSize: number;
}

const prod = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);

/** NumPy-style broadcast of two shapes, or an Error naming both (like tfjs's assertion). */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`Operands could not be broadcast together with shapes ${a} and ${b}.`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/**
 * Turn a matMul into as few sgemm calls as possible. Pure (no tfjs, no addon), so tests can check
 * every broadcasting case.
 */
export function planMatMul(
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
): MatMulPlan {
  const ar = aShape.length;
  const br = bShape.length;
  if (ar < 2 || br < 2) throw new Error(`Error in matMul: inputs must be rank >= 2, got ${aShape} and ${bShape}.`);
  const innerA = transposeA ? aShape[ar - 2]! : aShape[ar - 1]!;
  const innerB = transposeB ? bShape[br - 1]! : bShape[br - 2]!;
  const m = transposeA ? aShape[ar - 1]! : aShape[ar - 2]!;
  const n = transposeB ? bShape[br - 2]! : bShape[br - 1]!;
  if (innerA !== innerB) {
    throw new Error(
      `Error in matMul: inner shapes (${innerA}) and (${innerB}) of Tensors with shapes ${aShape} and ` +
        `${bShape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const k = innerA;
  const outerA = aShape.slice(0, -2);
  const outerB = bShape.slice(0, -2);
  const outer = broadcastShapes(outerA, outerB);
  const batchA = prod(outerA);
  const batchB = prod(outerB);
  const batch = prod(outer);
  const sizeA = m * k;
  const sizeB = k * n;
  const sizeC = m * n;
  const base = {
    outShape: [...outer, m, n],
    m,
    n,
    k,
    lda: transposeA ? m : k,
    ldb: transposeB ? k : n,
    ldc: n,
    transposeA,
    transposeB,
    outSize: batch * sizeC,
  };
  let calls: GemmCall[];
  if (batch === 0 || sizeC === 0) {
    calls = [];
  } else if (batchA === batchB && batchA === batch) {
    calls = [{ m, batch, aOff: 0, strideA: sizeA, bOff: 0, strideB: sizeB, cOff: 0, strideC: sizeC }];
  } else if (batchB === 1 && batchA === batch) {
    // [..., m, k] x [k, n]: the batches of A (not transposed) are consecutive rows, so the whole
    // thing is one (batch*m) x k times k x n product: one big GEMM instead of many small ones.
    calls = transposeA
      ? [{ m, batch, aOff: 0, strideA: sizeA, bOff: 0, strideB: 0, cOff: 0, strideC: sizeC }]
      : [{ m: batch * m, batch: 1, aOff: 0, strideA: 0, bOff: 0, strideB: 0, cOff: 0, strideC: 0 }];
  } else if (batchA === 1 && batchB === batch) {
    calls = [{ m, batch, aOff: 0, strideA: 0, bOff: 0, strideB: sizeB, cOff: 0, strideC: sizeC }];
  } else {
    // General per-dimension broadcasting: one call per output matrix.
    calls = [];
    const rank = outer.length;
    const padA = [...new Array<number>(rank - outerA.length).fill(1), ...outerA];
    const padB = [...new Array<number>(rank - outerB.length).fill(1), ...outerB];
    for (let i = 0; i < batch; i++) {
      let rem = i;
      let ia = 0;
      let ib = 0;
      let strideAi = 1;
      let strideBi = 1;
      for (let d = rank - 1; d >= 0; d--) {
        const dim = outer[d]!;
        const idx = rem % dim;
        rem = (rem - idx) / dim;
        if (padA[d] !== 1) ia += idx * strideAi;
        if (padB[d] !== 1) ib += idx * strideBi;
        strideAi *= padA[d]!;
        strideBi *= padB[d]!;
      }
      calls.push({ m, batch: 1, aOff: ia * sizeA, strideA: 0, bOff: ib * sizeB, strideB: 0, cOff: i * sizeC, strideC: 0 });
    }
  }
  return { ...base, calls };
}

/** Run a plan. `a`, `b`, `c` are the (views of the) tensors' float32 data. */
export function runPlan(addon: NativeAddon, p: MatMulPlan, a: Float32Array, b: Float32Array, c: Float32Array): void {
  if (p.k === 0) {
    // Empty inner dimension: the product is all zeros (a BLAS might not touch C at all).
    c.fill(0, 0, p.outSize);
    return;
  }
  for (const call of p.calls) {
    addon.sgemm(
      p.transposeA,
      p.transposeB,
      call.m,
      p.n,
      p.k,
      1,
      a,
      call.aOff,
      p.lda,
      b,
      call.bOff,
      p.ldb,
      0,
      c,
      call.cOff,
      p.ldc,
      call.batch,
      call.strideA,
      call.strideB,
      call.strideC,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Backend adapters: how to read an input's float32 data and allocate an output on each backend.

interface CpuBackendLike {
  data: { get(dataId: object): { values?: unknown } };
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo;
  disposeIntermediateTensorInfo(t: TensorInfo): void;
}

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
  disposeData(dataId: object): boolean;
}

interface Adapter {
  /** Allocate the output; returns its TensorInfo and a writable view. */
  alloc(shape: number[], size: number): { info: TensorInfo; data: Float32Array };
  /** Float32 data of an input (call after every alloc: wasm's heap may have moved). */
  read(t: TensorInfo): Float32Array | null;
  dispose(t: TensorInfo): void;
}

function cpuAdapter(backend: unknown): Adapter {
  const be = backend as CpuBackendLike;
  return {
    alloc(shape, size) {
      // Not zero-filled: runPlan writes every element (sgemm with beta 0, or the fill when k = 0).
      // The zero fill was ~3 % of a 512-token training step (measured A/B in one process).
      const data = unfilledFloat32(size);
      return { info: be.makeTensorInfo(shape, 'float32', data), data };
    },
    read(t) {
      const v = be.data.get(t.dataId).values;
      return v instanceof Float32Array ? v : null;
    },
    dispose(t) {
      be.disposeIntermediateTensorInfo(t);
    },
  };
}

function wasmAdapter(backend: unknown): Adapter {
  const be = backend as WasmBackendLike;
  return {
    alloc(shape, size) {
      const info = be.makeOutput(shape, 'float32');
      void size;
      return { info, data: be.typedArrayFromHeap(info) };
    },
    read(t) {
      return t.dtype === 'float32' ? be.typedArrayFromHeap(t) : null;
    },
    dispose(t) {
      be.disposeData(t.dataId);
    },
  };
}

function adapterFor(backendName: string, backend: unknown): Adapter {
  return backendName === 'wasm' ? wasmAdapter(backend) : cpuAdapter(backend);
}

// ---------------------------------------------------------------------------------------------
// Activations applied in place, with the exact formulas of tfjs-backend-cpu's kernels (so the
// float32 results are bit-identical to tfjs-cpu's Relu/Relu6/Elu/Sigmoid/LeakyRelu).

function activateInPlace(x: Float32Array, n: number, activation: string, alpha: number): boolean {
  switch (activation) {
    case 'linear':
      return true;
    case 'relu':
      for (let i = 0; i < n; i++) x[i] = Math.max(0, x[i]!);
      return true;
    case 'relu6':
      for (let i = 0; i < n; i++) x[i] = Math.min(Math.max(0, x[i]!), 6);
      return true;
    case 'elu':
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        x[i] = v >= 0 ? v : Math.exp(v) - 1;
      }
      return true;
    case 'sigmoid':
      for (let i = 0; i < n; i++) x[i] = 1 / (1 + Math.exp(-x[i]!));
      return true;
    case 'leakyrelu':
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        x[i] = v < 0 ? alpha * v : v;
      }
      return true;
    default:
      return false; // prelu and anything newer: done by the backend's own kernels
  }
}

/** Kernel-name constants from tfjs (strings, stable across 4.x). */
const BATCH_MATMUL = tf.BatchMatMul;
const FUSED_MATMUL = tf._FusedMatMul;

type KernelArgs = Parameters<tf.KernelFunc>[0];

function tryNativeMatMul(
  addon: NativeAddon,
  backendName: string,
  args: KernelArgs,
): { out: TensorInfo; data: Float32Array; plan: MatMulPlan; ad: Adapter } | null {
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return null;
  const attrs = (args.attrs ?? {}) as { transposeA?: boolean; transposeB?: boolean };
  const plan = planMatMul(a.shape, b.shape, !!attrs.transposeA, !!attrs.transposeB);
  const ad = adapterFor(backendName, args.backend);
  const { info, data } = ad.alloc(plan.outShape, plan.outSize);
  const av = ad.read(a);
  const bv = ad.read(b);
  if (!av || !bv) {
    ad.dispose(info);
    return null;
  }
  runPlan(addon, plan, av, bv, data);
  return { out: info, data, plan, ad };
}

export function makeBatchMatMulKernel(addon: NativeAddon, backendName: 'cpu' | 'wasm'): KernelConfig {
  return {
    kernelName: BATCH_MATMUL,
    backendName,
    kernelFunc: (args) => {
      const r = tryNativeMatMul(addon, backendName, args);
      return r ? r.out : callOriginal(BATCH_MATMUL, backendName, args);
    },
  };
}

export function makeFusedMatMulKernel(addon: NativeAddon, backendName: 'cpu' | 'wasm'): KernelConfig {
  return {
    kernelName: FUSED_MATMUL,
    backendName,
    kernelFunc: (args) => {
      const inputs = args.inputs as { a: TensorInfo; b: TensorInfo; bias?: TensorInfo; preluActivationWeights?: TensorInfo };
      const attrs = (args.attrs ?? {}) as { activation?: string; leakyreluAlpha?: number };
      const activation = attrs.activation ?? 'linear';
      const r = tryNativeMatMul(addon, backendName, { ...args, inputs: { a: inputs.a, b: inputs.b } });
      if (!r) return callOriginal(FUSED_MATMUL, backendName, args);
      const { plan, ad } = r;
      let cur = r.out;
      let data: Float32Array | null = r.data;
      const bias = inputs.bias;
      if (bias) {
        const n = plan.n;
        const trailing = bias.shape.length === 0 || bias.shape.slice(0, -1).every((d) => d === 1);
        const biasSize = prod(bias.shape);
        const fits = bias.shape.length <= plan.outShape.length && trailing && (biasSize === n || biasSize === 1);
        const bv = fits && bias.dtype === 'float32' ? ad.read(bias) : null;
        if (bv && data) {
          // Re-read the output view too: on wasm the heap cannot have moved since alloc (no
          // allocation happened), but keep the invariant "views are taken after allocations".
          const out = data;
          const size = plan.outSize;
          if (biasSize === 1) {
            const b0 = bv[0]!;
            for (let i = 0; i < size; i++) out[i] = out[i]! + b0;
          } else {
            for (let off = 0; off < size; off += n) {
              for (let j = 0; j < n; j++) out[off + j] = out[off + j]! + bv[j]!;
            }
          }
        } else {
          // Anything unusual (bias that broadcasts the output up, int bias): the backend's Add.
          const added = runKernel(tf.Add, backendName, { inputs: { a: cur, b: bias }, backend: args.backend });
          ad.dispose(cur);
          cur = added;
          data = null;
        }
      }
      if (activation !== 'linear') {
        const size = prod(cur.shape);
        const view = data ?? (cur.dtype === 'float32' ? ad.read(cur) : null);
        if (!(view && activateInPlace(view, size, activation, attrs.leakyreluAlpha ?? 0.2))) {
          const act = applyActivationKernel(backendName, args, cur, activation, inputs.preluActivationWeights, attrs.leakyreluAlpha);
          ad.dispose(cur);
          cur = act;
        }
      }
      return cur;
    },
  };
}

function runKernel(name: string, backendName: string, args: KernelArgs): TensorInfo {
  const k = tf.getKernel(name, backendName);
  if (!k) throw new Error(`fopeify: backend ${backendName} has no ${name} kernel`);
  return k.kernelFunc(args) as TensorInfo;
}

function applyActivationKernel(
  backendName: string,
  args: KernelArgs,
  x: TensorInfo,
  activation: string,
  preluWeights: TensorInfo | undefined,
  leakyreluAlpha: number | undefined,
): TensorInfo {
  const backend = args.backend;
  switch (activation) {
    case 'prelu':
      if (!preluWeights) throw new Error('fopeify: prelu activation without preluActivationWeights');
      return runKernel(tf.Prelu, backendName, { inputs: { x, alpha: preluWeights }, backend });
    case 'relu':
      return runKernel(tf.Relu, backendName, { inputs: { x }, backend });
    case 'relu6':
      return runKernel(tf.Relu6, backendName, { inputs: { x }, backend });
    case 'elu':
      return runKernel(tf.Elu, backendName, { inputs: { x }, backend });
    case 'sigmoid':
      return runKernel(tf.Sigmoid, backendName, { inputs: { x }, backend });
    case 'leakyrelu':
      return runKernel(tf.LeakyRelu, backendName, { inputs: { x }, backend, attrs: { alpha: leakyreluAlpha ?? 0.2 } });
    default:
      throw new Error(`Activation ${activation} has not been implemented for the ${backendName} backend.`);
  }
}
