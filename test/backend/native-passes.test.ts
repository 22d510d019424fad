/**
 * The addon's threaded C passes — attention softmax (native attention, LM-head loss), SwiGLU, AdamW —
 * against their JavaScript / WebAssembly versions, bit for bit (same exp polynomial, same operation
 * and summation order): training gives the same bytes with or without them. Softmax blocks have
 * masked (−∞) entries, fully masked rows, row counts that split unevenly across threads, and n4 not
 * a multiple of 8 (the scalar tail). Training's RMSNorm passes (no JavaScript twin; kernels.test.ts
 * compares them with tfjs autodiff) give the same bits on any thread count. The movement kernels' copy
 * and the rotary pass over whole blocks equal the code they replace on any thread count, and refuse
 * arguments that would reach outside their arrays.
 */
import { describe, expect, it } from 'vitest';
import { copyStrided } from '../../src/backend/cpu-data.js';
import { loadNative } from '../../src/backend/native.js';
import { vectorMath } from '../../src/backend/vector-math.js';
import { nativeUsable, rng } from './helpers.js';

function block(rows: number, n4: number, seed: number): Float32Array {
  const r = rng(seed);
  const s = Float32Array.from({ length: rows * n4 }, () => (r() - 0.5) * 40);
  for (let i = 0; i < rows; i++) {
    const masked = Math.floor(r() * n4);
    s.fill(-Infinity, i * n4 + n4 - masked, (i + 1) * n4);
  }
  s.fill(-Infinity, 0, n4); // a fully masked row
  return s;
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!) / Math.max(1e-30, Math.abs(b[i]!), 1e-6);
    if (d > m || Number.isNaN(d)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

describe.skipIf(!nativeUsable)('native softmax passes equal vector-math', () => {
  const addon = () => {
    const r = loadNative();
    if (!r.ok) throw new Error(r.error);
    return r.blas.addon;
  };
  for (const [rows, n4] of [[3, 12], [257, 516], [768, 512], [5, 4]] as const) {
    it(`softmaxRows ${rows}×${n4}`, () => {
      const a = addon();
      expect(typeof a.softmaxRows).toBe('function');
      const vm = vectorMath();
      const s = block(rows, n4, rows + n4);
      const r = rng(7);
      const mOld = Float32Array.from({ length: rows }, (_, i) => (i % 3 === 0 ? -Infinity : (r() - 0.5) * 10));
      mOld[0] = -Infinity; // fully masked and no previous max: a zero row, sum 0
      const [S, mo, mn, sum] = vm.scratch(rows * n4, rows, rows, rows) as Float32Array[];
      S!.set(s);
      mo!.set(mOld);
      vm.softmaxRows(S!, rows, n4, mo!, mn!, sum!);
      const want = { S: S!.slice(), mNew: mn!.slice(), sum: sum!.slice() };
      const got = { S: s.slice(), mNew: new Float32Array(rows), sum: new Float32Array(rows) };
      a.softmaxRows!(got.S, rows, n4, mOld, got.mNew, got.sum);
      expect(Array.from(got.mNew)).toEqual(Array.from(want.mNew));
      // Same constants and operation order as the WebAssembly code: the same bits.
      expect(maxRelDiff(got.S, want.S)).toBe(0);
      expect(maxRelDiff(got.sum, want.sum)).toBe(0);
      expect(Array.from(got.S.subarray(0, n4)).every((x) => x === 0)).toBe(true);
      expect(got.sum[0]).toBe(0);
    });
  }

  it('rejects arrays that are too short', () => {
    const a = addon();
    expect(() => a.softmaxRows!(new Float32Array(3), 2, 4, new Float32Array(2), new Float32Array(2), new Float32Array(2))).toThrow(/softmaxRows/);
  });
});

describe.skipIf(!nativeUsable)('native cross-entropy rows equal softmaxRows with the scaling', () => {
  const addon = () => {
    const r = loadNative();
    if (!r.ok) throw new Error(r.reason);
    return r.blas.addon;
  };
  for (const [rows, V] of [[7, 37], [300, 1000], [2, 4]] as const) {
    it(`${rows} rows × V ${V}: NLL, dlogits and ignored rows`, () => {
      const a = addon();
      const vm = vectorMath();
      const n4 = (V + 3) & ~3;
      const r = rng(rows + V);
      const logits = Float32Array.from({ length: rows * n4 }, () => (r() - 0.5) * 20);
      const targets = Int32Array.from({ length: rows }, (_, i) => (i % 3 === 1 ? -1 : Math.floor(r() * V)));
      const scale = 1 / 7;
      // The steps the pass replaces: softmaxRows over −∞-padded rows, k = scale / sum, scaleRows, − scale at the target.
      const [S, mOld, mNew, sum, k] = vm.scratch(rows * n4, rows, rows, rows, rows) as Float32Array[];
      S!.set(logits);
      mOld!.fill(-Infinity);
      let wantNll = 0;
      for (let i = 0; i < rows; i++) {
        if (targets[i]! < 0) S!.fill(-Infinity, i * n4, (i + 1) * n4);
        else S!.fill(-Infinity, i * n4 + V, (i + 1) * n4);
      }
      vm.softmaxRows(S!, rows, n4, mOld!, mNew!, sum!);
      for (let i = 0; i < rows; i++) {
        const t = targets[i]!;
        k![i] = t < 0 ? 0 : scale / sum![i]!;
        if (t >= 0) wantNll += mNew![i]! + Math.log(sum![i]!) - logits[i * n4 + t]!;
      }
      vm.scaleRows(S!, rows, n4, k!);
      for (let i = 0; i < rows; i++) if (targets[i]! >= 0) S![i * n4 + targets[i]!] = S![i * n4 + targets[i]!]! - scale;
      const got = logits.slice();
      const nll = a.crossEntropyRows(got, rows, n4, V, targets, scale);
      expect(nll).toBeCloseTo(wantNll, 9);
      expect(Buffer.from(got.buffer).equals(Buffer.from(S!.buffer, S!.byteOffset, S!.byteLength))).toBe(true);
      // Without the gradient: the same NLL.
      expect(a.crossEntropyRows(logits.slice(), rows, n4, V, targets, 0)).toBe(nll);
    });
  }

  it('rejects bad arguments with an error', () => {
    const a = addon();
    const L = new Float32Array(8);
    const t = new Int32Array([0, 1]);
    expect(() => a.crossEntropyRows(new Float32Array(7), 2, 4, 4, t, 1)).toThrow(/crossEntropyRows/);
    expect(() => a.crossEntropyRows(L, 2, 4, 4, new Int32Array(1), 1)).toThrow(/crossEntropyRows/);
    expect(() => a.crossEntropyRows(L, 2, 4, 4, new Float32Array(2) as unknown as Int32Array, 1)).toThrow(/crossEntropyRows/);
    expect(() => a.crossEntropyRows(L, 2, 4, 4, new Int32Array([0, 4]), 1)).toThrow(/crossEntropyRows/);
    expect(() => a.crossEntropyRows(L, 2, 4, 5, t, 1)).toThrow(/crossEntropyRows/);
    expect(() => a.crossEntropyRows(L, 1, 6, 4, t, 1)).toThrow(/crossEntropyRows/);
    expect(() => a.crossEntropyRows(L, -1, 4, 4, t, 1)).toThrow(/crossEntropyRows/);
    expect(() => a.crossEntropyRows(L, 2, 4, 4, t, Number.NaN)).toThrow(/crossEntropyRows/);
    expect(Array.from(L).every((v) => v === 0)).toBe(true); // nothing touched
  });
});

describe.skipIf(!nativeUsable)('native SwiGLU activation equals vector-math', () => {
  for (const n of [5, 64, 100_003]) {
    it(`${n} elements, with and without σ out`, () => {
      const r = loadNative();
      if (!r.ok) throw new Error(r.error);
      const a = r.blas.addon;
      expect(typeof a.swiglu).toBe('function');
      const vm = vectorMath();
      const g0 = rng(n);
      const g = Float32Array.from({ length: n }, () => (g0() - 0.5) * 30);
      const u = Float32Array.from({ length: n }, () => g0() - 0.5);
      const n4 = (n + 3) & ~3;
      const [G, U, Y, SG] = vm.scratch(n4, n4, n4, n4) as Float32Array[];
      G!.set(g);
      U!.set(u);
      vm.swigluForward(G!, U!, Y!, SG!, n4);
      const y = new Float32Array(n);
      const sg = new Float32Array(n);
      a.swiglu!(g, u, y, sg);
      expect(maxRelDiff(y, Y!.subarray(0, n))).toBe(0);
      expect(maxRelDiff(sg, SG!.subarray(0, n))).toBe(0);
      const y2 = new Float32Array(n);
      a.swiglu!(g, u, y2, null);
      expect(maxRelDiff(y2, y)).toBe(0);
    });
  }
});

describe.skipIf(!nativeUsable)('native SwiGLU gradient equals vector-math', () => {
  for (const n of [5, 64, 100_003]) {
    it(`${n} elements`, () => {
      const r = loadNative();
      if (!r.ok) throw new Error(r.error);
      const a = r.blas.addon;
      const vm = vectorMath();
      const r0 = rng(n + 1);
      const vec = (scale: number) => Float32Array.from({ length: n }, () => (r0() - 0.5) * scale);
      const [dy, g, u] = [vec(4), vec(30), vec(1)];
      const s = Float32Array.from(g, (x) => 1 / (1 + Math.exp(-x)));
      const n4 = (n + 3) & ~3;
      const [DY, G, U, S, DG, DU] = vm.scratch(n4, n4, n4, n4, n4, n4) as Float32Array[];
      DY!.set(dy);
      G!.set(g);
      U!.set(u);
      S!.set(s);
      vm.swigluBackward(DY!, G!, U!, S!, DG!, DU!, n4);
      const [dg, du] = [new Float32Array(n), new Float32Array(n)];
      a.swigluBackward(dy, g, u, s, dg, du);
      expect(Buffer.from(dg.buffer).equals(Buffer.from(DG!.slice(0, n).buffer))).toBe(true);
      expect(Buffer.from(du.buffer).equals(Buffer.from(DU!.slice(0, n).buffer))).toBe(true);
      expect(() => a.swigluBackward(dy, g, u, s.subarray(1), dg, du)).toThrow(/swigluBackward/);
    });
  }
});

describe.skipIf(!nativeUsable)('AdamW through the addon equals the JavaScript update bit for bit', () => {
  it('params and moments after three clipped, decayed steps', async () => {
    const tf = await import('@tensorflow/tfjs');
    const { setupBackend } = await import('../../src/backend/select.js');
    const { AdamW } = await import('../../src/train/optimizer.js');
    const run = async (backend: 'cpu' | 'native') => {
      const info = await setupBackend({ backend, quiet: true });
      const r = rng(5);
      const params = new Map([
        ['a', tf.variable(tf.tensor(Float32Array.from({ length: 70_001 }, () => r() - 0.5)), true, `adam-test-a-${backend}`)],
        ['b', tf.variable(tf.tensor(Float32Array.from({ length: 33 }, () => r() - 0.5)), true, `adam-test-b-${backend}`)],
      ]);
      const opt = new AdamW(params, { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 }, info.kernels);
      const norms: number[] = [];
      for (let s = 0; s < 3; s++) {
        const grads = new Map([...params].map(([n, p]) => [n, tf.tensor(Float32Array.from({ length: p.size }, () => (r() - 0.5) * (s + 1)))]));
        norms.push(await opt.apply(grads, 1e-3, 5));
        tf.dispose([...grads.values()]);
      }
      const out = await Promise.all([...params].map(async ([n, p]) => ({ p: (p.dataSync() as Float32Array).slice(), ...(await opt.moments(n)) })));
      const copy = out.map((o) => ({ p: o.p, m: o.m.slice(), v: o.v.slice() }));
      tf.dispose([...params.values()]);
      return { norms, copy };
    };
    const js = await run('cpu');
    const nat = await run('native');
    await setupBackend({ backend: 'cpu', quiet: true });
    expect(nat.norms).toEqual(js.norms);
    nat.copy.forEach((o, i) => {
      expect(maxRelDiff(o.p, js.copy[i]!.p)).toBe(0);
      expect(maxRelDiff(o.m, js.copy[i]!.m)).toBe(0);
      expect(maxRelDiff(o.v, js.copy[i]!.v)).toBe(0);
    });
  });
});

// Training's RMSNorm backward sums dw over fixed row blocks, then the blocks in order: the same bits
// on any thread count (the rows here split unevenly into blocks and across threads, and are enough
// to be threaded).
describe.skipIf(!nativeUsable)('native RMSNorm passes', () => {
  it('forward keeps the inverse rms; backward gives the same bits on 1 and 3 threads', () => {
    const r = loadNative();
    if (!r.ok) throw new Error(r.reason);
    const a = r.blas.addon;
    const [rows, h] = [1061, 72];
    const g = rng(41);
    const x = Float32Array.from({ length: rows * h }, () => g() - 0.5);
    const w = Float32Array.from({ length: h }, () => g() + 0.5);
    const dy = Float32Array.from({ length: rows * h }, () => g() - 0.5);
    const out = new Float32Array(rows * h);
    const inv = new Float32Array(rows);
    a.rmsnorm(x, w, out, 1e-6, inv);
    let ss = 0;
    for (let i = 0; i < h; i++) ss += x[5 * h + i]! ** 2;
    expect(inv[5]).toBe(Math.fround(1 / Math.sqrt(ss / h + 1e-6)));
    const plain = new Float32Array(rows * h);
    a.rmsnorm(x, w, plain, 1e-6);
    expect(maxRelDiff(plain, out)).toBe(0);
    const threads = r.blas.threads;
    const backward = (n: number) => {
      a.setThreads(n);
      const [dx, dw] = [new Float32Array(rows * h), new Float32Array(h)];
      a.rmsnormBackward(x, w, inv, dy, dx, dw);
      return { dx, dw };
    };
    try {
      const [one, three] = [backward(1), backward(3)];
      expect(maxRelDiff(three.dx, one.dx)).toBe(0);
      expect(Array.from(three.dw)).toEqual(Array.from(one.dw));
      expect(one.dw.some((v) => v !== 0)).toBe(true);
    } finally {
      a.setThreads(threads);
    }
  });

  it('rejects arrays that are too short or rows that do not fit', () => {
    const r = loadNative();
    if (!r.ok) throw new Error(r.reason);
    const a = r.blas.addon;
    const f = (n: number) => new Float32Array(n);
    expect(() => a.rmsnorm(f(8), f(4), f(8), 1e-6, f(1))).toThrow(/rmsnorm/);
    expect(() => a.rmsnormBackward(f(8), f(3), f(2), f(8), f(8), f(3))).toThrow(/rmsnormBackward/);
    expect(() => a.rmsnormBackward(f(8), f(4), f(2), f(8), f(7), f(4))).toThrow(/rmsnormBackward/);
    expect(() => a.rmsnormBackward(f(8), f(4), f(1), f(8), f(8), f(4))).toThrow(/rmsnormBackward/);
  });
});

// The movement kernels' C copy against the JS copyStrided it replaces, on 1 and 3 threads (copies of
// 16 MiB and more are split across threads there), for 1-, 4- and 8-byte elements; and its refusals.
describe.skipIf(!nativeUsable)('native copyStrided', () => {
  const addon = () => {
    const r = loadNative();
    if (!r.ok) throw new Error(r.reason);
    return r.blas;
  };
  /** [shape, sOff, sStrides, dOff, dStrides, src length, dst length]: transpose, slice, pad, concat. */
  const cases: Array<[number[], number, number[], number, number[], number, number]> = [
    [[9, 8192, 64], 0, [64, 576, 1], 0, [524288, 64, 1], 4718592, 4718592], // heads layout: 2+ threads from 4-byte elements
    [[3, 37, 5, 29], 0, [29, 435, 87, 1], 0, [5365, 145, 29, 1], 16095, 16095],
    [[4, 44, 67], 3408, [3337, 71, 1], 0, [2948, 67, 1], 16685, 11792], // slice of [5, 47, 71]
    [[91, 93], 0, [93, 1], 2 * 98 + 2, [98, 1], 8463, 93 * 98 + 400], // pad
    [[40, 205], 0, [205, 1], 301, [506, 1], 8200, 40 * 506], // concat's second input
    [[97, 101], 0, [1, 97], 0, [101, 1], 9797, 9797], // 2-D transpose: strided inner run
  ];
  for (const [kind, make] of [
    ['int32', (n: number) => new Int32Array(n)],
    ['uint8', (n: number) => new Uint8Array(n)],
    ['float64', (n: number) => new Float64Array(n)],
  ] as const) {
    it(`${kind}: the JS copy's result on 1 and 3 threads`, () => {
      const { addon: a, threads } = addon();
      try {
        cases.forEach(([shape, sOff, ss, dOff, ds, ns, nd], i) => {
          const g = rng(60 + i);
          const src = make(ns);
          for (let k = 0; k < ns; k++) src[k] = Math.floor(g() * 250);
          const want = new Int32Array(nd).fill(-1);
          copyStrided(Int32Array.from(src), sOff, ss, want, dOff, ds, shape);
          for (const t of [1, 3]) {
            a.setThreads(t);
            const got = make(nd);
            got.fill(-1 as never);
            a.copyStrided(src, got, Float64Array.from([shape.length, sOff, dOff, ...shape, ...ss, ...ds]));
            const unset = kind === 'uint8' ? 255 : -1;
            const bad = want.findIndex((w, k) => got[k] !== (w === -1 ? unset : w)); // no diff of a million entries
            expect(bad, `case ${i}, ${t} threads: first differing element`).toBe(-1);
          }
        });
      } finally {
        a.setThreads(threads);
      }
    });
  }

  it('refuses geometry outside the arrays, overlapping arrays and bad arguments', () => {
    const a = addon().addon;
    const [src, dst] = [new Float32Array(12), new Float32Array(12)];
    const geom = (...g: number[]) => Float64Array.from(g);
    a.copyStrided(src, dst, geom(2, 0, 0, 3, 4, 4, 1, 4, 1)); // fits exactly
    expect(() => a.copyStrided(src, dst, geom(2, 1, 0, 3, 4, 4, 1, 4, 1))).toThrow(/exceeds the arrays/);
    expect(() => a.copyStrided(src, dst, geom(2, 0, 0, 3, 4, 4, 1, 5, 1))).toThrow(/exceeds the arrays/);
    expect(() => a.copyStrided(src, new Float32Array(11), geom(1, 0, 0, 12, 1, 1))).toThrow(/exceeds the arrays/);
    expect(() => a.copyStrided(src, dst, geom(2, 0, 0, 3, 4, 4, -1, 4, 1))).toThrow(/integers ≥ 0/);
    expect(() => a.copyStrided(src, dst, geom(1, 0, 0, 2.5, 1, 1))).toThrow(/integers ≥ 0/);
    expect(() => a.copyStrided(src, dst, geom(1, 0, 0, 2 ** 50, 1, 1))).toThrow(/too large/);
    expect(() => a.copyStrided(src, dst, geom(2, 0, 0, 3, 4, 4, 1))).toThrow(/geometry must be/);
    expect(() => a.copyStrided(src, dst, geom(17, ...new Array<number>(53).fill(1)))).toThrow(/geometry must be/);
    expect(() => a.copyStrided(src, src.subarray(6), geom(1, 0, 0, 6, 1, 1))).toThrow(/overlap/);
    expect(() => a.copyStrided(src, new Uint8Array(12), geom(1, 0, 0, 12, 1, 1))).toThrow(/one element size/);
    expect(() => a.copyStrided(src, [] as unknown as Float32Array, geom(1, 0, 0, 1, 1, 1))).toThrow(/copyStrided: expected/);
    expect(() => a.copyStrided(src, dst, [1, 0, 0, 1, 1, 1] as unknown as Float64Array)).toThrow(/copyStrided: expected/);
    a.copyStrided(src, dst, geom(2, 0, 0, 0, 4, 4, 1, 4, 1)); // nothing to copy
  });
});

/** x `[B, H, T, D]` (head-major) as token-major `[B, T, H, D]`. */
function tokenMajor(x: Float32Array, B: number, H: number, T: number, D: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < T; t++) y.set(x.subarray(((b * H + h) * T + t) * D, ((b * H + h) * T + t + 1) * D), ((b * T + t) * H + h) * D);
  return y;
}

// Rotary of whole [B, K, R, T, D] blocks out of place: rotaryOne's bits per block (the loop it replaces,
// in place on a copy) on 1 and 3 threads, per-KV-head tables and partial rotary; and its refusals.
describe.skipIf(!nativeUsable)('native rotaryBlocks', () => {
  const blas = () => {
    const r = loadNative();
    if (!r.ok) throw new Error(r.reason);
    return r.blas;
  };
  for (const [B, K, R, T, D, dim, G] of [[2, 3, 2, 301, 20, 14, 3], [1, 3, 3, 2048, 64, 64, 1], [1, 2, 1, 5, 6, 6, 2]] as const) {
    it(`B${B} K${K} R${R} T${T} D${D} dim${dim} G${G}: rotaryOne's bits on 1 and 3 threads, and in place`, () => {
      const { addon: a, threads } = blas();
      const g = rng(T + D);
      const x = Float32Array.from({ length: B * K * R * T * D }, () => (g() - 0.5) * 8);
      const c = Float32Array.from({ length: G * T * (dim / 2) }, () => g() * 2 - 1);
      const s = Float32Array.from(c, () => g() * 2 - 1);
      const table = T * (dim / 2);
      const want = x.slice();
      for (let blk = 0; blk < B * K * R; blk++) {
        const t0 = G === 1 ? 0 : (Math.floor(blk / R) % K) * table;
        a.rotaryOne(want.subarray(blk * T * D, (blk + 1) * T * D), T, 1, D, dim, c.subarray(t0, t0 + table), s.subarray(t0, t0 + table));
      }
      try {
        for (const t of [1, 3]) {
          a.setThreads(t);
          const out = new Float32Array(x.length);
          a.rotaryBlocks(x, out, B, K, R, T, D, dim, G, c, s, false);
          expect(maxRelDiff(out, want), `${t} threads`).toBe(0);
          const inPlace = x.slice();
          a.rotaryBlocks(inPlace, inPlace, B, K, R, T, D, dim, G, c, s, false);
          expect(maxRelDiff(inPlace, want), `in place, ${t} threads`).toBe(0);
          // Token-major rows [B, T, K, R, D] (the projections' layout): each row's bits as head-major.
          const tokens = new Float32Array(x.length);
          a.rotaryBlocks(tokenMajor(x, B, K * R, T, D), tokens, B, K, R, T, D, dim, G, c, s, true);
          expect(maxRelDiff(tokens, tokenMajor(want, B, K * R, T, D)), `token-major, ${t} threads`).toBe(0);
        }
      } finally {
        a.setThreads(threads);
      }
    });
  }

  it('refuses arrays too short, a bad dim or group count, and a partly overlapping out', () => {
    const a = blas().addon;
    const f = (n: number) => new Float32Array(n);
    const [x, t] = [f(2 * 3 * 4 * 8), f(3 * 4 * 3)]; // B2 K3 R1 T4 D8, dim 6, tables of 3 groups
    a.rotaryBlocks(x, f(x.length), 2, 3, 1, 4, 8, 6, 3, t, t, false);
    expect(() => a.rotaryBlocks(f(x.length - 1), f(x.length), 2, 3, 1, 4, 8, 6, 3, t, t, false)).toThrow(/rotaryBlocks: expected/);
    expect(() => a.rotaryBlocks(x, f(x.length - 1), 2, 3, 1, 4, 8, 6, 3, t, t, false)).toThrow(/rotaryBlocks: expected/);
    expect(() => a.rotaryBlocks(x, f(x.length), 2, 3, 1, 4, 8, 6, 3, f(35), t, false)).toThrow(/rotaryBlocks: expected/);
    expect(() => a.rotaryBlocks(x, f(x.length), 2, 3, 1, 4, 8, 5, 3, t, t, false)).toThrow(/rotaryBlocks: expected/);
    expect(() => a.rotaryBlocks(x, f(x.length), 2, 3, 1, 4, 8, 10, 3, t, t, false)).toThrow(/rotaryBlocks: expected/);
    expect(() => a.rotaryBlocks(x, f(x.length), 2, 3, 1, 4, 8, 6, 2, t, t, false)).toThrow(/rotaryBlocks: expected/);
    expect(() => a.rotaryBlocks(x, f(x.length), 2, 3, 1, 4, -8, 6, 3, t, t, false)).toThrow(/rotaryBlocks: expected/);
    expect(() => a.rotaryBlocks(x, f(x.length), 2 ** 31, 2 ** 31, 2 ** 31, 4, 8, 6, 1, t, t, false)).toThrow(/rotaryBlocks: expected/);
    const big = f(x.length + 8);
    expect(() => a.rotaryBlocks(big, big.subarray(8), 2, 3, 1, 4, 8, 6, 3, t, t, false)).toThrow(/overlaps/);
  });
});
