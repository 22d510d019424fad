/**
 * Loader for the optional native GEMM addon (native/*.c, glue in native/addon.c, built by
 * native/build.mjs into native/build/fopeify_native.node). The addon dlopen()s a BLAS at run time and, when none loads, uses
 * its own portable SGEMM (native/sgemm.c). Building needs a C compiler and may fail on a user's machine;
 * that is normal: callers get `null` plus a one-line reason, and fopeify runs on plain TensorFlow.js.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chooseGemm, gemmMode, measureGemmEngines, type GemmChoice, type GemmEngine } from './gemm-choice.js';

/**
 * The addon's JS surface (see native/addon.c and native/addon-passes.c for the contract of each
 * function). Every member is required: loadNative refuses a build that lacks one.
 */
export interface NativeAddon {
  load(opts?: {
    threads?: number;
    paths?: string[];
    threadTimeout?: number;
    flushDenormals?: boolean;
    autoCoretype?: boolean;
    /** false: skip the system BLAS libraries and use the addon's portable SGEMM. */
    systemBlas?: boolean;
  }): ({ ok: true } & AddonBlasInfo) | { ok: false; error: string };
  setThreads(n: number): number;
  /**
   * sgemm's arguments and contract, always computed by the addon's portable SGEMM whichever BLAS is
   * loaded (on load()'s / setThreads' thread count): for tests and benchmarks.
   */
  portableSgemm: NativeAddon['sgemm'];
  /**
   * sgemm's arguments and contract, always computed by the loaded BLAS library's cblas_sgemm whichever
   * engine sgemm runs; throws when no system library loaded.
   */
  systemSgemm: NativeAddon['sgemm'];
  /** Makes sgemm (and every GEMM inside the addon's passes) run `engine` when available; returns the engine in effect. */
  useGemm(engine: GemmEngine): GemmEngine;
  /**
   * The portable SGEMM's variant ("portable-avx512" | "portable-avx2" | "portable-generic"), after
   * switching to `name` when this build has it and this CPU runs it (for tests).
   */
  portableVariant(name?: string): string;
  /**
   * Row-major C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b]; X[b] starts at xOff + b * strideX
   * (stride 0 broadcasts). Offsets, leading dimensions and strides are in elements.
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    aOff: number,
    lda: number,
    b: Float32Array,
    bOff: number,
    ldb: number,
    beta: number,
    c: Float32Array,
    cOff: number,
    ldc: number,
    batch?: number,
    strideA?: number,
    strideB?: number,
    strideC?: number,
  ): void;
  /**
   * Elementwise op over collapsed broadcast geometry [nd, shape..., strideA..., strideB...] with
   * tfjs-cpu's exact arithmetic (double, rounded once to float32).
   */
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, geom: Float64Array): void;
  unary(op: number, x: Float32Array, out: Float32Array): void;
  /**
   * The blockwise-attention softmax pass of the one-token decoding step in C on the BLAS's thread count,
   * with the semantics (and bits) of backend/vector-math.ts's softmaxRows.
   */
  softmaxRows(s: Float32Array, rows: number, n4: number, mOld: Float32Array, mNew: Float32Array, sum: Float32Array): void;
  /**
   * Cross-entropy of logits rows `L` (`rows × n4`, the first V columns real, n4 a multiple of 4) against
   * `targets` (−1: ignored), threaded over rows: returns the summed NLL of the valid rows (in row order).
   * With `scale` ≠ 0, L becomes `dlogits = scale · (softmax − onehot)` (ignored rows and padding 0) with
   * the bits of softmaxRows followed by the scaling in float32; with 0 it is left as scratch.
   * Throws for a short array, a target ≥ V or a bad V / n4.
   */
  crossEntropyRows(L: Float32Array, rows: number, n4: number, V: number, targets: Int32Array, scale: number): number;
  /** y = g·σ(g)·u over y.length elements (σ(g) into sig when given), as vector-math.ts's swigluForward. */
  swiglu(g: Float32Array, u: Float32Array, y: Float32Array, sig: Float32Array | null): void;
  /** Its gradient given sig = σ(g): dg = dy·u·sig·(1 + g(1 − sig)), du = dy·g·sig, as vector-math.ts's swigluBackward (same bits). */
  swigluBackward(dy: Float32Array, g: Float32Array, u: Float32Array, sig: Float32Array, dg: Float32Array, du: Float32Array): void;
  /** optimizer.ts's fused AdamW update in threaded C; hyper = [b1, b2, c1, c2, eps, lr, lr·wd, clip]. */
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, out: Float32Array, hyper: Float64Array): void;
  /**
   * RMSNorm over rows of w.length: x · inv · w with inv = 1 / sqrt(mean(x²) + eps) per row (into `inv`
   * when given, for the backward).
   */
  rmsnorm(x: Float32Array, w: Float32Array, out: Float32Array, eps: number, inv?: Float32Array | null): void;
  /** RMSNorm's gradient from the forward's inv: dx, and dw summed over the rows in a fixed order. */
  rmsnormBackward(x: Float32Array, w: Float32Array, inv: Float32Array, dy: Float32Array, dx: Float32Array, dw: Float32Array): void;
  /** start + Σ x², in double, in index order. */
  sumSquares(x: Float32Array, start: number): number;
  /**
   * Decoding one token on preallocated buffers (native/decode.h). matvec: y = W·x, W row-major
   * [rows, cols], through the BLAS's sgemv.
   */
  matvec(w: Float32Array, rows: number, cols: number, x: Float32Array, y: Float32Array): void;
  /**
   * Rotary / FoPE at one position, in place on x = [heads, headDim]: the first `dim` entries of each
   * head rotated with the half tables cos/sin [heads / headsPerGroup, dim / 2] (head h uses row
   * h / headsPerGroup); applyRotaryTf's arithmetic, bit for bit.
   */
  rotaryOne(x: Float32Array, heads: number, headsPerGroup: number, headDim: number, dim: number, cos: Float32Array, sin: Float32Array): void;
  /**
   * Rotary / FoPE of whole blocks, out = x rotated with x = [B, K, R, T, D], or with `tokens`
   * token-major [B, T, K, R, D] (out may be x): position t of head (k, r) uses row t of the tables
   * [groups, T, dim / 2] of its KV head k (groups = K) or of the one group (groups = 1); rotaryOne's
   * arithmetic per row, rows across the BLAS's threads.
   */
  rotaryBlocks(
    x: Float32Array,
    out: Float32Array,
    B: number,
    K: number,
    R: number,
    T: number,
    D: number,
    dim: number,
    groups: number,
    cos: Float32Array,
    sin: Float32Array,
    tokens: boolean,
  ): void;
  /**
   * dst[dOff + Σ i_d·dStride_d] = src[sOff + Σ i_d·sStride_d] over shape, with
   * geom = [nd, sOff, dOff, shape..., sStride..., dStride...] in elements (nd ≤ 16): a copy of bits
   * between TypedArrays of one element size, threaded when large. Throws on geometry outside either
   * array or arrays that overlap.
   */
  copyStrided(src: ArrayBufferView, dst: ArrayBufferView, geom: Float64Array): void;
  /**
   * One query's attention over the first `len` rows of KV caches [nKv, capacity, headDim]:
   * out[nHeads, headDim] = softmax(scale · q·Kᵀ)·V per head (grouped-query: nHeads / nKv heads per KV
   * head). scratch: at least nHeads · (⌈len/4⌉·4 + 3) floats.
   */
  attendOne(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    nHeads: number,
    nKv: number,
    headDim: number,
    len: number,
    capacity: number,
    scale: number,
    out: Float32Array,
    scratch: Float32Array,
  ): void;
  /**
   * Blockwise causal attention of a whole layer (native/attention.h), threaded over (KV head, query
   * block) work items: q, o `[BK, R, Tq, D]`, lse `[BK, R, Tq]`; ks[i], vs[i] `[BK, rows_i, D]` whose row j
   * is key `starts[i] + j`; keyBlock 0: whole blocks; window −1: causal only. qTokens / kvTokens: q and
   * o / the keys token-major instead, `[B, Tq, nKv, R, D]` / `[B, rows, nKv, D]` with BK = B·nKv (the
   * projections' rows; lse keeps its layout). Throws (code ATTENTION_NO_VISIBLE_KEY) when a query block
   * sees no key.
   */
  attentionForward(
    q: Float32Array,
    BK: number,
    R: number,
    Tq: number,
    D: number,
    qStart: number,
    queryBlock: number,
    keyBlock: number,
    window: number,
    scale: number,
    ks: Float32Array[],
    vs: Float32Array[],
    starts: number[],
    o: Float32Array,
    lse: Float32Array,
    nKv: number,
    qTokens: boolean,
    kvTokens: boolean,
  ): void;
  /**
   * Its FlashAttention-2 backward for queries and keys at 0..T−1, threaded over (KV head, key block):
   * dq `[BK, R, T, D]`, dk and dv `[BK, T, D]` (all written); with `tokens` every operand but lse
   * token-major as in attentionForward.
   */
  attentionBackward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    o: Float32Array,
    lse: Float32Array,
    dO: Float32Array,
    BK: number,
    R: number,
    T: number,
    D: number,
    queryBlock: number,
    keyBlock: number,
    window: number,
    scale: number,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    nKv: number,
    tokens: boolean,
  ): void;
  info(): { loaded: boolean; flushDenormals: boolean } & AddonBlasInfo;
  /**
   * Sets glibc malloc's mmap and trim thresholds (bytes) for the whole process; false where the C
   * library is not glibc (nothing changed). See KEEP_FREED_MEMORY.
   */
  keepFreedMemory(mmapThreshold: number, trimThreshold: number): boolean;
  abiVersion: number;
}

/** What load() and info() say about the BLAS. */
export interface AddonBlasInfo {
  /** The library dlopen()ed, or the portable SGEMM's variant when none loaded. */
  library: string;
  kind: string;
  /** The engine sgemm runs. */
  gemm: GemmEngine;
  /** The portable SGEMM's variant, e.g. "portable-avx512". */
  portable: string;
  threads: number;
  config?: string;
}

export interface NativeBlas {
  addon: NativeAddon;
  /** The library dlopen()ed, e.g. "libopenblas.so.0", or the portable SGEMM's variant, e.g. "portable-avx512". */
  library: string;
  /** openblas | blis | mkl | accelerate | custom | portable */
  kind: string;
  threads: number;
  /** OpenBLAS's build/core description when available, e.g. "OpenBLAS 0.3.21 ... SkylakeX". */
  config?: string;
  /** The GEMM engine every sgemm runs, and why (measured against the other, FOPEIFY_GEMM, or the only one). */
  gemm: GemmChoice;
  /** The portable SGEMM's variant, e.g. "portable-avx512" (whether or not it is the engine in use). */
  portable: string;
  /** Whether glibc's malloc keeps freed blocks for reuse (KEEP_FREED_MEMORY; off with FOPEIFY_KEEP_FREED_MEMORY=0). */
  keepsFreedMemory: boolean;
  /** Path of the .node file. */
  addonPath: string;
}

/**
 * glibc malloc thresholds set when the addon loads. tfjs gives every kernel output a fresh zero-filled
 * ArrayBuffer; above glibc's (dynamic, ≤ 32 MiB) mmap threshold each is a new mapping whose pages fault
 * in on first write, and in this project's VMs that made tf.matMul reach a third of the GEMM it calls
 * (1024²: GEMM 6 ms, through tf.matMul 10-20 ms; with these thresholds 6-7 ms). Blocks up to 256 MiB come
 * from the heap and up to 2 GiB of freed heap (the most mallopt's int takes) stays mapped: peak RSS of
 * an 8192-token prefill was the same (1111 MiB), memory between peaks is not given back. 2 GiB rather
 * than 1: a 135M training step frees more than 1 GiB at once between its peaks, and the trimmed pages
 * faulted back in (512 tokens: 69k → 44k minor faults per 3 steps, peak RSS unchanged).
 * A smaller mmap threshold (32 MiB) is worse: the loss head's logits chunks then fault in whole
 * (210-290k faults). FOPEIFY_KEEP_FREED_MEMORY=0 keeps glibc's defaults (390k).
 */
export const KEEP_FREED_MEMORY = { mmapThreshold: 256 * 2 ** 20, trimThreshold: 2 ** 31 - 1 };

export type NativeLoadResult = { ok: true; blas: NativeBlas } | { ok: false; reason: string };

/** Where the built addon lives: native/build/ at the package root (same depth from src/ and dist/). */
export function defaultAddonPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return resolve(here, '..', '..', 'native', 'build', 'fopeify_native.node');
}

/**
 * Must match FOPEIFY_ABI_VERSION in native/addon.h; bump both when the JS-visible API changes.
 * 2: every function below is required (1 had optional passes an older build could lack).
 * 3: systemSgemm and useGemm (the GEMM engine chosen by measurement); load/info say `gemm` and `portable`.
 * 4: keepFreedMemory (glibc malloc thresholds).
 * 5: rmsnorm's inv argument and rmsnormBackward (training's fused RMSNorm).
 * 6: attentionForward and attentionBackward (a layer's blockwise attention in one call).
 * 7: crossEntropyRows (the LM-head loss's softmax, NLL and dlogits in one pass).
 * 8: copyStrided (the movement kernels' threaded copy) and rotaryBlocks (rotary out of place, threaded).
 * 9: softmaxBackward removed (the attention backward computes it in native/attention.c).
 * 10: token-major layouts: attentionForward's nKv, qTokens, kvTokens, attentionBackward's nKv, tokens,
 *     rotaryBlocks' tokens (the projections' rows read and written where they lie, no transposes).
 * 11: swigluBackward (SwiGLU's gradient as one threaded pass).
 */
export const ADDON_ABI = 11;

type AddonFunctionName = { [K in keyof NativeAddon]: NativeAddon[K] extends (...args: never[]) => unknown ? K : never }[keyof NativeAddon];

/** Every function of NativeAddon (the Record type makes the compiler keep this list complete). */
const ADDON_FUNCTIONS: Record<AddonFunctionName, true> = {
  load: true,
  setThreads: true,
  portableSgemm: true,
  systemSgemm: true,
  useGemm: true,
  keepFreedMemory: true,
  portableVariant: true,
  sgemm: true,
  binary: true,
  unary: true,
  softmaxRows: true,
  crossEntropyRows: true,
  swiglu: true,
  swigluBackward: true,
  adamw: true,
  rmsnorm: true,
  rmsnormBackward: true,
  sumSquares: true,
  matvec: true,
  rotaryOne: true,
  rotaryBlocks: true,
  copyStrided: true,
  attendOne: true,
  attentionForward: true,
  attentionBackward: true,
  info: true,
};

/** The names of the addon's functions, all required. */
export const ADDON_FUNCTION_NAMES = Object.keys(ADDON_FUNCTIONS) as readonly AddonFunctionName[];

/**
 * Why a loaded module cannot serve as the addon (another ABI version, or a function missing), or
 * undefined when it can. The JS side and the .node file are built separately; a stale or partial
 * build must not be called with another argument layout, nor half-used.
 */
export function addonProblem(module: unknown): string | undefined {
  const rebuild = 'run "npm run build:native"';
  if (typeof module !== 'object' || module === null) return `native addon is not a Node-API module; ${rebuild}`;
  const m = module as Partial<Record<keyof NativeAddon, unknown>>;
  if (m.abiVersion !== ADDON_ABI) {
    const found = typeof m.abiVersion === 'number' ? `ABI ${m.abiVersion}` : 'no ABI version';
    return `native addon is stale (${found}, expected ${ADDON_ABI}); ${rebuild}`;
  }
  const missing = ADDON_FUNCTION_NAMES.filter((name) => typeof m[name] !== 'function');
  if (missing.length > 0) return `native addon is incomplete (no ${missing.join(', ')}); ${rebuild}`;
  return undefined;
}

let cached: NativeLoadResult | undefined;

/**
 * Load the addon and a BLAS once per process (a BLAS cannot be unloaded safely once its threads run).
 * Later calls return the same result; a later `threads` value only changes the thread count.
 * Env: FOPEIFY_NATIVE=0 disables the addon; FOPEIFY_NATIVE_ADDON=path picks another .node file;
 * FOPEIFY_BLAS=path tries that BLAS library first; FOPEIFY_NO_SYSTEM_BLAS=1 skips every system BLAS
 * so the addon's portable SGEMM runs (as on a machine without one). When a system BLAS loads, the GEMM
 * engine is chosen by FOPEIFY_GEMM: auto (default) times the library and the portable SGEMM on the
 * configured threads and keeps the faster (gemm-choice.ts), system / portable force one.
 * Throws FopeifyError (BAD_ARGUMENT) for a FOPEIFY_GEMM other than those three.
 */
export function loadNative(opts: { threads?: number } = {}): NativeLoadResult {
  if (cached) {
    if (cached.ok && opts.threads && opts.threads !== cached.blas.threads) {
      cached.blas.threads = cached.blas.addon.setThreads(opts.threads) || opts.threads;
    }
    return cached;
  }
  cached = loadUncached(opts);
  return cached;
}

function loadUncached(opts: { threads?: number }): NativeLoadResult {
  if (process.env.FOPEIFY_NATIVE === '0') return { ok: false, reason: 'disabled by FOPEIFY_NATIVE=0' };
  if (process.platform === 'win32') return { ok: false, reason: 'the native addon does not support Windows' };
  const addonPath = process.env.FOPEIFY_NATIVE_ADDON || defaultAddonPath();
  if (!existsSync(addonPath)) {
    return {
      ok: false,
      reason:
        `native addon not built (run "npm run build:native"; it needs a C compiler: apt-get install gcc on Debian/Ubuntu, ` +
        `xcode-select --install on macOS; looked for ${addonPath})`,
    };
  }
  let module: unknown;
  try {
    const require = createRequire(import.meta.url);
    module = require(addonPath);
  } catch (err) {
    return { ok: false, reason: `native addon failed to load: ${firstLine(err)}` };
  }
  const problem = addonProblem(module);
  if (problem) return { ok: false, reason: problem };
  const addon = module as NativeAddon;
  const mode = gemmMode();
  const systemBlas = process.env.FOPEIFY_NO_SYSTEM_BLAS !== '1';
  const paths = process.env.FOPEIFY_BLAS ? [process.env.FOPEIFY_BLAS] : [];
  let r: ReturnType<NativeAddon['load']>;
  try {
    r = addon.load({
      threads: opts.threads,
      paths,
      // 2^20 cycles (~0.4 ms) of spinning after a GEMM, then sleep: long enough to catch the next
      // GEMM of a backward pass, short enough not to steal cores from JS elementwise work.
      threadTimeout: 20,
      flushDenormals: true,
      systemBlas,
    });
  } catch (err) {
    return { ok: false, reason: `native addon failed to start: ${firstLine(err)}` };
  }
  if (!r.ok) return { ok: false, reason: r.error };
  const hasSystem = r.kind !== 'portable';
  let gemm: GemmChoice | null;
  try {
    const timings = hasSystem && mode === 'auto' ? measureGemmEngines(addon.systemSgemm.bind(addon), addon.portableSgemm.bind(addon)) : undefined;
    gemm = chooseGemm(mode, hasSystem, timings);
    if (gemm && addon.useGemm(gemm.engine) !== gemm.engine) throw new Error(`could not switch to the ${gemm.engine} GEMM`);
  } catch (err) {
    return { ok: false, reason: `native addon failed to start: ${firstLine(err)}` };
  }
  if (!gemm) {
    const why = systemBlas ? 'no system BLAS library loaded' : 'FOPEIFY_NO_SYSTEM_BLAS=1 hides every system BLAS';
    return { ok: false, reason: `FOPEIFY_GEMM=system, but ${why} (unset FOPEIFY_GEMM to use the portable SGEMM)` };
  }
  const keepsFreedMemory = process.env.FOPEIFY_KEEP_FREED_MEMORY !== '0' && addon.keepFreedMemory(KEEP_FREED_MEMORY.mmapThreshold, KEEP_FREED_MEMORY.trimThreshold);
  return {
    ok: true,
    blas: {
      addon,
      library: r.library,
      kind: r.kind,
      threads: r.threads || opts.threads || 1,
      config: r.config,
      gemm,
      portable: r.portable,
      keepsFreedMemory,
      addonPath: join(addonPath),
    },
  };
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0] ?? msg;
}

/** For tests only: forget the cached result (the BLAS itself stays loaded in the process). */
export function _resetNativeCacheForTests(): void {
  cached = undefined;
}
