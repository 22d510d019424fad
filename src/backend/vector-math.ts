/**
 * Softmax arithmetic over float32 buffers with WebAssembly SIMD (4 lanes), for training on the tfjs
 * cpu backend: `Math.exp` costs ~10–30 ns per element and a long-context step evaluates billions of
 * them (every attention score, twice), plus max / sum / scale passes that JS runs one element at a
 * time. The module (about 1 KB, emitted by wasm-emitter.ts — no toolchain, no dependency) works on a
 * scratch region of its own memory that the BLAS reads and writes directly.
 *
 * exp is Cephes' `expf` (range reduction by ln 2 in two parts, degree-6 polynomial, scaling by 2^k
 * through the exponent bits): within 2 ulp of the float32 exp; below −87.3 (and for −∞) the result is
 * exactly 0, so masked entries can be written as −∞. Deterministic: the same bits on every machine.
 * Without WebAssembly SIMD the same API runs in plain JS with `Math.exp`.
 */

import type { NativeAddon } from './native.js';
import { fnExp, fnScaleRows, fnSoftmaxBackward, fnSoftmaxRows, fnSwigluBackward, fnSwigluForward, LO, moduleBytes } from './wasm-emitter.js';

// ---- the API -------------------------------------------------------------------------------------

/** The part of the WebAssembly JS API used here (TypeScript's ES lib does not declare it). */
interface WasmMemory {
  buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const WebAssembly = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

export interface VectorMath {
  /**
   * Scratch buffers of the given sizes (floats), one after the other (each 16-byte aligned) in the
   * engine's memory. Valid until the next call of `scratch`. The BLAS may read and write them.
   */
  scratch(...sizes: number[]): Float32Array[];
  /** exp of the first n floats of a scratch buffer, in place. */
  exp(x: Float32Array, n: number): void;
  /** Row softmax numerators: see fnSoftmaxRows (all arguments scratch buffers; n4 a multiple of 4). */
  softmaxRows(s: Float32Array, rows: number, n4: number, mOld: Float32Array, mNew: Float32Array, sum: Float32Array): void;
  /** P and dS of a block's backward: see fnSoftmaxBackward. */
  softmaxBackward(s: Float32Array, dP: Float32Array, rows: number, n4: number, lse: Float32Array, d: Float32Array): void;
  /** s[r] *= k[r]. */
  scaleRows(s: Float32Array, rows: number, n4: number, k: Float32Array): void;
  /** SwiGLU activation: sig = σ(g), y = g·sig·u over n floats (scratch buffers, n padded to 4). */
  swigluForward(g: Float32Array, u: Float32Array, y: Float32Array, sig: Float32Array, n: number): void;
  /** Its gradient: dg = dy·u·sig·(1 + g(1 − sig)), du = dy·g·sig. */
  swigluBackward(dy: Float32Array, g: Float32Array, u: Float32Array, sig: Float32Array, dg: Float32Array, du: Float32Array, n: number): void;
  readonly kind: 'wasm-simd' | 'js';
}

const round4 = (n: number) => (n + 3) & ~3;

function jsExpValue(x: number): number {
  return x < LO ? 0 : Math.exp(x);
}

function jsMath(): VectorMath {
  let bufs: Float32Array[] = [];
  return {
    kind: 'js',
    scratch(...sizes) {
      bufs = sizes.map((n, i) => (bufs[i] && bufs[i]!.length >= n ? bufs[i]!.subarray(0, n) : new Float32Array(round4(n)).subarray(0, n)));
      return bufs;
    },
    exp(x, n) {
      for (let i = 0; i < n; i++) x[i] = jsExpValue(x[i]!);
    },
    softmaxRows(s, rows, n4, mOld, mNew, sum) {
      for (let r = 0; r < rows; r++) {
        const o = r * n4;
        let mx = mOld[r]!;
        for (let j = 0; j < n4; j++) if (s[o + j]! > mx) mx = s[o + j]!;
        mNew[r] = mx;
        let acc = 0;
        for (let j = 0; j < n4; j++) {
          const e = mx === -Infinity ? 0 : jsExpValue(s[o + j]! - mx);
          s[o + j] = e;
          acc += e;
        }
        sum[r] = acc;
      }
    },
    softmaxBackward(s, dP, rows, n4, lse, d) {
      for (let r = 0; r < rows; r++) {
        const o = r * n4;
        for (let j = 0; j < n4; j++) {
          const e = jsExpValue(s[o + j]! - lse[r]!);
          s[o + j] = e;
          dP[o + j] = e * (dP[o + j]! - d[r]!);
        }
      }
    },
    scaleRows(s, rows, n4, k) {
      for (let r = 0; r < rows; r++) for (let j = 0; j < n4; j++) s[r * n4 + j] = s[r * n4 + j]! * k[r]!;
    },
    swigluForward(g, u, y, sig, n) {
      for (let i = 0; i < n; i++) {
        const sg = 1 / (1 + jsExpValue(-g[i]!));
        sig[i] = sg;
        y[i] = g[i]! * sg * u[i]!;
      }
    },
    swigluBackward(dy, g, u, sig, dg, du, n) {
      for (let i = 0; i < n; i++) {
        const sg = sig[i]!;
        dg[i] = dy[i]! * u[i]! * sg * (1 + g[i]! * (1 - sg));
        du[i] = dy[i]! * g[i]! * sg;
      }
    },
  };
}

function wasmMath(): VectorMath | null {
  if (!WebAssembly) return null;
  try {
    const bytes = moduleBytes([
      { name: 'exp', fn: fnExp() },
      { name: 'softmaxRows', fn: fnSoftmaxRows() },
      { name: 'softmaxBackward', fn: fnSoftmaxBackward() },
      { name: 'scaleRows', fn: fnScaleRows() },
      { name: 'swigluForward', fn: fnSwigluForward() },
      { name: 'swigluBackward', fn: fnSwigluBackward() },
    ]);
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
    const memory = inst.exports.memory as WasmMemory;
    const fn = (name: string) => inst.exports[name] as (...args: number[]) => void;
    const [exp, softmaxRows, softmaxBackward, scaleRows, swigluForward, swigluBackward] = [
      'exp',
      'softmaxRows',
      'softmaxBackward',
      'scaleRows',
      'swigluForward',
      'swigluBackward',
    ].map(fn);
    const ptr = (x: Float32Array) => {
      if (x.buffer !== memory.buffer) throw new Error('vector math: not a scratch buffer (or stale after a later scratch call)');
      return x.byteOffset;
    };
    const vm: VectorMath = {
      kind: 'wasm-simd',
      scratch(...sizes) {
        const total = sizes.reduce((a, n) => a + round4(n), 0) * 4;
        if (memory.buffer.byteLength < total) memory.grow(Math.ceil((total - memory.buffer.byteLength) / 65536));
        let off = 0;
        return sizes.map((n) => {
          const v = new Float32Array(memory.buffer, off, n);
          off += round4(n) * 4;
          return v;
        });
      },
      exp: (x, n) => exp!(ptr(x), round4(n)),
      softmaxRows: (s, rows, n4, mOld, mNew, sum) => softmaxRows!(ptr(s), rows, n4, ptr(mOld), ptr(mNew), ptr(sum)),
      softmaxBackward: (s, dP, rows, n4, lse, d) => softmaxBackward!(ptr(s), ptr(dP), rows, n4, ptr(lse), ptr(d)),
      scaleRows: (s, rows, n4, k) => scaleRows!(ptr(s), rows, n4, ptr(k)),
      swigluForward: (g, u, y, sig, n) => swigluForward!(ptr(g), ptr(u), ptr(y), ptr(sig), round4(n)),
      swigluBackward: (dy, g, u, sig, dg, du, n) => swigluBackward!(ptr(dy), ptr(g), ptr(u), ptr(sig), ptr(dg), ptr(du), round4(n)),
    };
    return selfCheck(vm) ? vm : null;
  } catch {
    return null;
  }
}

/** The WebAssembly engine must agree with the JS one on a small case (else the JS one is used). */
function selfCheck(vm: VectorMath): boolean {
  const js = jsMath();
  const rows = 3;
  const n4 = 8;
  const input = Float32Array.from({ length: rows * n4 }, (_, i) => (i % 5 === 4 ? -Infinity : Math.sin(i) * 6));
  input.fill(-Infinity, n4 * 2, n4 * 3); // a fully masked row
  const run = (m: VectorMath) => {
    const [s, dP, a, b, c] = m.scratch(rows * n4, rows * n4, rows, rows, rows) as Float32Array[];
    s!.set(input);
    a!.set([-Infinity, 0.5, -Infinity]);
    m.softmaxRows(s!, rows, n4, a!, b!, c!);
    const fwd = [...s!, ...b!, ...c!];
    s!.set(input);
    dP!.set(input.map((x, i) => Math.cos(i)));
    a!.set([1, 2, 3]);
    b!.set([0.1, 0.2, 0.3]);
    m.softmaxBackward(s!, dP!, rows, n4, a!, b!);
    const bwd = [...s!, ...dP!];
    m.scaleRows(s!, rows, n4, b!);
    const scaled = [...s!];
    const [g, u, y, sg, dg, du] = m.scratch(8, 8, 8, 8, 8, 8) as Float32Array[];
    g!.set([-3, -1, 0, 0.5, 1, 2, 30, -100]);
    u!.set([1, 2, 3, 4, -1, -2, 0.5, 7]);
    m.swigluForward(g!, u!, y!, sg!, 8);
    const sw = [...y!, ...sg!];
    m.swigluBackward(u!, g!, u!, sg!, dg!, du!, 8);
    return [...fwd, ...bwd, ...scaled, ...sw, ...dg!, ...du!];
  };
  const want = run(js);
  const got = run(vm);
  return want.every((w, i) => (w === got[i] || Math.abs(w - got[i]!) <= 1e-6 * Math.max(1, Math.abs(w))));
}

let instance: VectorMath | undefined;

/** The process-wide vector math engine (WebAssembly SIMD when available). */
export function vectorMath(): VectorMath {
  instance ??= wasmMath() ?? jsMath();
  return instance;
}

/** The softmax pass of blockwise attention's one-query recurrence: the addon's threaded C version when it has one, else this engine's. */
export type AttentionSoftmax = Pick<VectorMath, 'softmaxRows'>;

export function attentionSoftmax(addon: NativeAddon | null): AttentionSoftmax {
  const vm = vectorMath();
  const rows = addon?.softmaxRows;
  return { softmaxRows: rows ? (...a) => rows.apply(addon, a) : (...a) => vm.softmaxRows(...a) };
}
