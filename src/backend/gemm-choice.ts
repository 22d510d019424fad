/**
 * Which GEMM engine the native addon runs when a system BLAS loaded: the library's cblas_sgemm or the
 * addon's own portable SGEMM (native/sgemm.c). Neither is the faster everywhere: Debian's OpenBLAS 0.3.21
 * runs its Haswell kernels on AMD EPYC (Zen 4) CPUs with AVX-512, where the portable AVX-512 SGEMM is
 * ~1.7× faster; where OpenBLAS has kernels tuned for the core (or with MKL / BLIS) the library may well be
 * ahead (not measured here: this project's machines are all AMD). So the loader
 * times both, once per process, on linear-layer shapes at the configured threads, and keeps the faster.
 *
 * The decision is a pure function of the timings (chooseGemm, unit-tested with made-up numbers); the
 * timing itself (measureGemmEngines) is ~40-50 ms of real GEMMs at start-up on 2 cores (most of it the
 * first call of each engine: thread start-up, packing buffers).
 */
import { FopeifyError } from '../errors.js';
import type { NativeAddon } from './native.js';

export type GemmEngine = 'system' | 'portable';
export type GemmMode = 'auto' | GemmEngine;
export const GEMM_MODES: readonly GemmMode[] = ['auto', 'system', 'portable'];

/**
 * The portable SGEMM replaces a loaded system BLAS only when it is at least this much faster. The two
 * engines round differently (results differ in the last bits), so a choice that flipped from run to
 * run with the machine's load would make the same command give different bits; with a margin, only a
 * clear difference switches.
 */
export const PORTABLE_MARGIN = 1.1;

/** Best seconds of the same GEMMs on each engine, and what the measurement itself cost. */
export interface GemmTimings {
  systemSeconds: number;
  portableSeconds: number;
  /** Wall time of the whole measurement (warm-up included), in milliseconds. */
  costMs: number;
}

export interface GemmChoice {
  engine: GemmEngine;
  /**
   * 'measured': both timed, the faster kept; 'FOPEIFY_GEMM': the user's choice; 'no system BLAS': the
   * portable SGEMM is the only engine (none loaded, or FOPEIFY_NO_SYSTEM_BLAS=1).
   */
  how: 'measured' | 'FOPEIFY_GEMM' | 'no system BLAS';
  timings?: GemmTimings;
}

/** FOPEIFY_GEMM: system | portable | auto (default auto). Anything else is a BAD_ARGUMENT. */
export function gemmMode(env: NodeJS.ProcessEnv = process.env): GemmMode {
  const v = env.FOPEIFY_GEMM?.trim();
  if (!v) return 'auto';
  if ((GEMM_MODES as readonly string[]).includes(v)) return v as GemmMode;
  throw new FopeifyError('BAD_ARGUMENT', `FOPEIFY_GEMM must be one of ${GEMM_MODES.join(', ')}, got "${v}"`);
}

/**
 * The engine to run, from the mode, whether a system BLAS loaded, and (for 'auto' with one loaded) the
 * timings. Pure. Returns null for 'system' without a system BLAS: the user asked for an engine that is
 * not there.
 */
export function chooseGemm(mode: GemmMode, hasSystem: boolean, timings?: GemmTimings): GemmChoice | null {
  if (!hasSystem) return mode === 'system' ? null : { engine: 'portable', how: 'no system BLAS' };
  if (mode !== 'auto') return { engine: mode, how: 'FOPEIFY_GEMM', timings };
  // A failed or missing measurement keeps the library: the long-standing default.
  const ok = timings && timings.systemSeconds > 0 && timings.portableSeconds > 0 && Number.isFinite(timings.systemSeconds + timings.portableSeconds);
  const portableWins = ok && timings.systemSeconds >= PORTABLE_MARGIN * timings.portableSeconds;
  return { engine: portableWins ? 'portable' : 'system', how: 'measured', timings };
}

/** How many times faster the chosen engine was than the other (1 when not measured). */
export function speedupOverOther(choice: GemmChoice): number {
  const t = choice.timings;
  if (!t) return 1;
  return choice.engine === 'portable' ? t.systemSeconds / t.portableSeconds : t.portableSeconds / t.systemSeconds;
}

/** cblas_sgemm's row-major arguments, as the addon's sgemm takes them (called here without a batch). */
type Sgemm = NativeAddon['sgemm'];

/**
 * The linear layers of a d=576, ffn=1536 model on 128 rows: x·Wᵀ forward (NT) and the input gradient
 * dY·W (NN), ~0.23 GFLOP each. Large enough that both engines use every thread, small enough that a
 * round of both on both engines costs ~5 ms (after the warm-up calls, ~15 ms).
 */
const SHAPES = [
  { m: 128, k: 576, n: 1536, tb: true },
  { m: 128, k: 1536, n: 576, tb: false },
];
const ROUNDS = 3;

/**
 * Best-of-ROUNDS seconds of SHAPES on each engine, the engines interleaved (so a burst of other work
 * on a shared machine hits both), after one warm-up call each (thread start-up, packing buffers).
 */
export function measureGemmEngines(system: Sgemm, portable: Sgemm): GemmTimings {
  const started = performance.now();
  const a = filled(Math.max(...SHAPES.map((s) => s.m * s.k)), 0x9e3779b1);
  const b = filled(Math.max(...SHAPES.map((s) => s.k * s.n)), 0x85ebca77);
  const c = new Float32Array(Math.max(...SHAPES.map((s) => s.m * s.n)));
  const run = (gemm: Sgemm) => {
    const t = performance.now();
    for (const s of SHAPES) gemm(false, s.tb, s.m, s.n, s.k, 1, a, 0, s.k, b, 0, s.tb ? s.k : s.n, 0, c, 0, s.n);
    return (performance.now() - t) / 1000;
  };
  run(system);
  run(portable);
  let systemSeconds = Infinity;
  let portableSeconds = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    systemSeconds = Math.min(systemSeconds, run(system));
    portableSeconds = Math.min(portableSeconds, run(portable));
  }
  return { systemSeconds, portableSeconds, costMs: performance.now() - started };
}

/**
 * n values in [-0.5, 0.5) from an integer hash of the index: no zeros or denormals that a kernel could
 * skip, and cheap (a float modulo per element cost ~50 ms of start-up for the 0.9 M weights).
 */
function filled(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  // 4099 hashed values, then repeated by doubling copies (memcpy speed; a GEMM's speed does not depend
  // on the values repeating).
  const period = Math.min(n, 4099);
  for (let i = 0; i < period; i++) out[i] = (Math.imul(i + 1, seed) >>> 8) / 16777216 - 0.5;
  for (let len = period; len < n; len *= 2) out.copyWithin(len, 0, Math.min(len, n - len));
  return out;
}
