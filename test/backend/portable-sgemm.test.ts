/**
 * The addon's portable SGEMM (native/sgemm.c, what runs when no BLAS library loads) against a float64
 * reference: every transpose, padded leading dimensions and offsets, batches with strides (and a
 * broadcast stride of 0), tiny, odd and prime sizes and sizes that cross its blocking (KC 256, NC 2048,
 * register tiles of 6/12 rows and 8/16/32 columns), alpha/beta (beta 0 over NaN garbage, which must
 * not leak through; alpha 0; K 0), on 1 and 2 threads (the 2-thread cases are big enough to be split,
 * along M or along N). Elements of C outside the product must stay untouched.
 * portableSgemm runs the portable code whichever BLAS the process loaded, so this runs where
 * OpenBLAS is installed too; every variant this CPU can run (AVX-512, AVX2+FMA, generic) is checked.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadNative, type NativeAddon } from '../../src/backend/native.js';
import { nativeUsable, rng } from './helpers.js';

interface Case {
  m: number;
  n: number;
  k: number;
  ta: boolean;
  tb: boolean;
  alpha: number;
  beta: number;
  /** extra elements per row of A, B, C (leading dimension = width + pad) */
  pad: number;
  batch: number;
  /** B shared by every batch entry (stride 0) */
  broadcastB?: boolean;
}

const U = 2 ** -24;

function fill(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

/** Runs one case through portableSgemm; returns the worst error over its error bound (≤ 1 passes). */
function runCase(addon: NativeAddon, c: Case, seed: number): number {
  const { m, n, k, ta, tb, alpha, beta, pad, batch } = c;
  const lda = (ta ? m : k) + pad;
  const ldb = (tb ? k : n) + pad;
  const ldc = n + pad;
  const aSize = (ta ? k : m) * lda;
  const bSize = (tb ? n : k) * ldb;
  const cSize = m * ldc;
  const aOff = 3;
  const bOff = 5;
  const cOff = 7;
  const sA = aSize + 1;
  const sB = c.broadcastB ? 0 : bSize + 2;
  const sC = cSize + 3;
  const A = fill(aOff + batch * sA, seed);
  const B = fill(bOff + batch * sB + bSize, seed + 1);
  const C = fill(cOff + batch * sC, seed + 2);
  if (beta === 0) C.fill(NaN); // garbage a BLAS must not read when beta is 0
  const before = C.slice();
  addon.portableSgemm!(ta, tb, m, n, k, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc, batch, sA, sB, sC);

  const inside = new Uint8Array(C.length);
  let worst = 0;
  for (let b = 0; b < batch; b++) {
    const a0 = aOff + b * sA;
    const b0 = bOff + b * sB;
    const c0 = cOff + b * sC;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let dot = 0;
        let mag = 0;
        for (let p = 0; p < k; p++) {
          const x = A[a0 + (ta ? p * lda + i : i * lda + p)]! * B[b0 + (tb ? j * ldb + p : p * ldb + j)]!;
          dot += x;
          mag += Math.abs(x);
        }
        const at = c0 + i * ldc + j;
        inside[at] = 1;
        const old = beta === 0 ? 0 : before[at]!;
        const want = alpha * dot + beta * old;
        // Float32 accumulation over k terms (blocked, maybe fused): |error| ≤ ~k·u·Σ|a·b| plus the
        // roundings of the alpha/beta update.
        const bound = (k + 4) * U * Math.abs(alpha) * mag + 4 * U * Math.abs(beta * old) + 1e-30;
        const got = C[at]!;
        const e = Number.isFinite(got) ? Math.abs(got - want) / bound : Infinity;
        if (e > worst) worst = e;
      }
    }
  }
  for (let i = 0; i < C.length; i++) {
    if (!inside[i] && !Object.is(C[i], before[i])) return Infinity; // wrote outside the product
  }
  return worst;
}

const SIZES: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 17, 1],
  [1, 29, 13],
  [31, 1, 7],
  [2, 3, 5],
  [7, 11, 13],
  [6, 32, 9], // exactly one AVX-512 / two AVX2 register tiles wide
  [13, 37, 300], // K crosses the 256-deep slice
  [67, 131, 257], // threaded, split along N; every edge
  [211, 53, 97], // threaded, split along M
  [25, 2053, 41], // N crosses the 2048-column slab
];

describe.skipIf(!nativeUsable)('portable SGEMM against a float64 reference', () => {
  const addon = (): NativeAddon => {
    const r = loadNative();
    if (!r.ok) throw new Error(r.reason);
    if (!r.blas.addon.portableSgemm) throw new Error('addon without portableSgemm: rebuild it (npm run build:native)');
    return r.blas.addon;
  };
  let threadsBefore = 1;
  let variantBefore = '';
  beforeAll(() => {
    threadsBefore = addon().info().threads || 1;
    variantBefore = addon().portableVariant!();
  });
  afterAll(() => {
    addon().setThreads(threadsBefore);
    addon().portableVariant!(variantBefore);
  });

  it('picks the best variant this CPU runs, and can switch to each lower one', () => {
    const a = addon();
    const best = a.portableVariant!();
    expect(['portable-avx512', 'portable-avx2', 'portable-generic']).toContain(best);
    expect(a.portableVariant!('portable-generic')).toBe('portable-generic');
    expect(a.portableVariant!('no-such-variant')).toBe('portable-generic');
    expect(a.portableVariant!(best)).toBe(best);
  });

  const VARIANTS = ['portable-avx512', 'portable-avx2', 'portable-generic'];
  for (const threads of [1, 2]) {
    it(`all transposes, strides and sizes, alpha 1 / beta 0 over NaN, each variant, ${threads} thread(s)`, () => {
      const a = addon();
      a.setThreads(threads);
      const ran: string[] = [];
      for (const v of VARIANTS) {
        if (a.portableVariant!(v) !== v) continue; // this CPU or compiler lacks it
        ran.push(v);
        let seed = 1;
        for (const [m, n, k] of SIZES) {
          for (const ta of [false, true]) {
            for (const tb of [false, true]) {
              for (const pad of [0, 3]) {
                const c: Case = { m, n, k, ta, tb, alpha: 1, beta: 0, pad, batch: 1 };
                const e = runCase(a, c, seed++);
                if (!(e <= 1)) throw new Error(`${v}: error ${e}× the bound for ${JSON.stringify(c)}`);
              }
            }
          }
        }
      }
      expect(ran).toContain('portable-generic');
      a.portableVariant!(variantBefore);
    });

    it(`alpha/beta, K 0, batches with strides and a broadcast B, ${threads} thread(s)`, () => {
      const a = addon();
      a.setThreads(threads);
      let seed = 1000;
      const scalars: Array<[number, number]> = [
        [0.5, 2],
        [-1.5, 1],
        [2, 0],
        [0, 0.5], // alpha 0: C = beta·C, A and B not needed
        [0, 0],
        [1, -1],
      ];
      for (const [alpha, beta] of scalars) {
        for (const [m, n, k] of [[5, 9, 3], [4, 6, 0], [67, 131, 257]] as Array<[number, number, number]>) {
          const big = m * n * k > 1e6; // threaded: one transpose pair each, to keep the reference cheap
          for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as Array<[boolean, boolean]>) {
            if (big && ta !== (seed % 2 === 0)) continue;
            for (const broadcastB of [false, true]) {
              const c: Case = { m, n, k, ta, tb, alpha, beta, pad: 2, batch: big ? 2 : 3, broadcastB };
              const e = runCase(a, c, seed++);
              if (!(e <= 1)) throw new Error(`error ${e}× the bound for ${JSON.stringify(c)}`);
            }
          }
        }
      }
    });
  }
});
