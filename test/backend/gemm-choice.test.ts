/**
 * The GEMM engine choice (gemm-choice.ts) as a pure function of made-up timings, FOPEIFY_GEMM's
 * parsing, and the start-up line that names the engine and how it was chosen. No real timing here: the
 * loader's measurement on this machine is checked in select.test.ts only for being consistent with
 * the choice it produced.
 */
import { describe, expect, it } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { chooseGemm, gemmMode, PORTABLE_MARGIN, speedupOverOther, type GemmTimings } from '../../src/backend/gemm-choice.js';
import { gemmName } from '../../src/backend/select.js';

const timed = (systemSeconds: number, portableSeconds: number): GemmTimings => ({ systemSeconds, portableSeconds, costMs: 4.2 });

describe('chooseGemm (pure)', () => {
  it('auto keeps the system BLAS unless the portable SGEMM is clearly faster', () => {
    expect(chooseGemm('auto', true, timed(1.8e-3, 1e-3))).toMatchObject({ engine: 'portable', how: 'measured' });
    expect(chooseGemm('auto', true, timed(1e-3, 1.8e-3))).toMatchObject({ engine: 'system', how: 'measured' });
    // Within the margin the library stays: a coin flip of the load must not change the engine (and the bits).
    expect(chooseGemm('auto', true, timed(1.05e-3, 1e-3))!.engine).toBe('system');
    expect(chooseGemm('auto', true, timed(PORTABLE_MARGIN * 1e-3, 1e-3))!.engine).toBe('portable');
  });
  it('auto with a failed or missing measurement keeps the system BLAS', () => {
    expect(chooseGemm('auto', true)!.engine).toBe('system');
    expect(chooseGemm('auto', true, timed(Infinity, 1e-3))!.engine).toBe('system');
    expect(chooseGemm('auto', true, timed(NaN, 1e-3))!.engine).toBe('system');
    expect(chooseGemm('auto', true, timed(1e-3, 0))!.engine).toBe('system');
  });
  it('FOPEIFY_GEMM forces an engine whatever the timings', () => {
    expect(chooseGemm('portable', true, timed(1e-3, 9e-3))).toMatchObject({ engine: 'portable', how: 'FOPEIFY_GEMM' });
    expect(chooseGemm('system', true, timed(9e-3, 1e-3))).toMatchObject({ engine: 'system', how: 'FOPEIFY_GEMM' });
  });
  it('without a system BLAS the portable SGEMM is the only engine; forcing system is refused', () => {
    expect(chooseGemm('auto', false)).toEqual({ engine: 'portable', how: 'no system BLAS' });
    expect(chooseGemm('portable', false)).toEqual({ engine: 'portable', how: 'no system BLAS' });
    expect(chooseGemm('system', false)).toBeNull();
  });
  it('speedupOverOther is the chosen engine over the other one', () => {
    expect(speedupOverOther(chooseGemm('auto', true, timed(1.8e-3, 1e-3))!)).toBeCloseTo(1.8);
    expect(speedupOverOther(chooseGemm('auto', true, timed(1e-3, 1.5e-3))!)).toBeCloseTo(1.5);
    expect(speedupOverOther(chooseGemm('auto', false)!)).toBe(1);
  });
});

describe('gemmMode', () => {
  it('reads FOPEIFY_GEMM, auto by default', () => {
    expect(gemmMode({})).toBe('auto');
    expect(gemmMode({ FOPEIFY_GEMM: '' })).toBe('auto');
    expect(gemmMode({ FOPEIFY_GEMM: 'portable' })).toBe('portable');
    expect(gemmMode({ FOPEIFY_GEMM: ' system ' })).toBe('system');
  });
  it('refuses anything else with a BAD_ARGUMENT naming the choices', () => {
    let err: unknown;
    try {
      gemmMode({ FOPEIFY_GEMM: 'openblas' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FopeifyError);
    expect((err as FopeifyError).code).toBe('BAD_ARGUMENT');
    expect((err as FopeifyError).message).toBe('FOPEIFY_GEMM must be one of auto, system, portable, got "openblas"');
  });
});

describe('gemmName (the start-up line)', () => {
  const openblas = { kind: 'openblas', library: 'libopenblas.so.0', config: 'OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64', portable: 'portable-avx512' };
  it('names the measured winner, its speed-up over the other engine and the cost of measuring', () => {
    expect(gemmName({ ...openblas, gemm: chooseGemm('auto', true, timed(1.8e-3, 1e-3))! })).toBe(
      'portable-avx512 SGEMM, measured 1.8× OpenBLAS libopenblas.so.0 Haswell at start-up (4 ms)',
    );
    expect(gemmName({ ...openblas, gemm: chooseGemm('auto', true, timed(1e-3, 1.1e-3))! })).toBe(
      'OpenBLAS libopenblas.so.0 Haswell, measured 1.10× portable-avx512 SGEMM at start-up (4 ms)',
    );
    expect(gemmName({ ...openblas, gemm: chooseGemm('auto', true, timed(1.05e-3, 1e-3))! })).toBe(
      'OpenBLAS libopenblas.so.0 Haswell, measured 0.95× portable-avx512 SGEMM at start-up (4 ms; kept within the 10 % margin)',
    );
  });
  it('says when FOPEIFY_GEMM chose, and names the portable SGEMM alone when no system BLAS loaded', () => {
    expect(gemmName({ ...openblas, gemm: chooseGemm('portable', true)! })).toBe(
      'portable-avx512 SGEMM, FOPEIFY_GEMM=portable (OpenBLAS libopenblas.so.0 Haswell loaded)',
    );
    expect(gemmName({ ...openblas, gemm: chooseGemm('system', true)! })).toBe('OpenBLAS libopenblas.so.0 Haswell, FOPEIFY_GEMM=system');
    expect(gemmName({ kind: 'portable', library: 'portable-avx2', portable: 'portable-avx2', gemm: chooseGemm('auto', false)! })).toBe('portable-avx2 SGEMM');
  });
});
