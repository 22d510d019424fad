/**
 * The addon's decoding-step functions (native/decode.c) against plain-JS references: matvec and
 * attendOne within float32 rounding of a double-precision reference (the BLAS sums in its own order;
 * the softmax uses the vector exp), rotaryOne bit for bit (float arithmetic, one rounding per op, as
 * applyRotaryTf). Shapes: the SmolLM2-135M head layout (9 query / 3 KV heads of 64), FoPE's per-KV-head
 * tables, partial rotary, cache lengths that are not multiples of 4.
 */
import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/backend/native.js';
import { nativeUsable, rng } from './helpers.js';

const addon = () => {
  const r = loadNative();
  if (!r.ok) throw new Error(r.reason);
  return r.blas.addon;
};

function randArray(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

/** max |a − b| / max |b|. */
function relErr(a: Float32Array, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

function matvecRef(w: Float32Array, rows: number, cols: number, x: Float32Array): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) y[r]! += w[r * cols + c]! * x[c]!;
  return y;
}

describe.skipIf(!nativeUsable)('native decoding step', () => {
  for (const [rows, cols] of [[1536, 576], [7, 13], [576, 1]] as const) {
    it(`matvec ${rows}×${cols}`, () => {
      const w = randArray(rows * cols, 1);
      const x = randArray(cols, 2);
      const y = new Float32Array(rows).fill(NaN);
      addon().matvec(w, rows, cols, x, y);
      expect(relErr(y, matvecRef(w, rows, cols, x))).toBeLessThan(1e-5);
    });
  }

  it('matvec on subarray views (a layer inside a larger buffer)', () => {
    const all = randArray(3 * 40 * 24, 3);
    const x = randArray(24, 4);
    const y = new Float32Array(40);
    addon().matvec(all.subarray(40 * 24, 2 * 40 * 24), 40, 24, x, y);
    expect(relErr(y, matvecRef(all.subarray(40 * 24), 40, 24, x))).toBeLessThan(1e-5);
  });

  const rotaryRef = (x: Float32Array, heads: number, perGroup: number, headDim: number, dim: number, c: Float32Array, s: Float32Array) => {
    const f = Math.fround;
    const out = x.slice();
    const half = dim / 2;
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / perGroup) * half;
      for (let i = 0; i < half; i++) {
        const a = x[h * headDim + i]!;
        const b = x[h * headDim + half + i]!;
        out[h * headDim + i] = f(f(a * c[g + i]!) - f(b * s[g + i]!));
        out[h * headDim + half + i] = f(f(b * c[g + i]!) + f(a * s[g + i]!));
      }
    }
    return out;
  };
  for (const [name, heads, perGroup, headDim, dim] of [
    ['RoPE, one table', 9, 9, 64, 64],
    ['FoPE, a table per KV head', 9, 3, 64, 64],
    ['partial rotary', 4, 4, 64, 32],
  ] as const) {
    it(`rotaryOne: ${name}, bit for bit`, () => {
      const x = randArray(heads * headDim, 5, 3);
      const groups = heads / perGroup;
      const c = randArray((groups * dim) / 2, 6);
      const s = randArray((groups * dim) / 2, 7);
      const want = rotaryRef(x, heads, perGroup, headDim, dim, c, s);
      addon().rotaryOne(x, heads, perGroup, headDim, dim, c, s);
      expect(Buffer.from(x.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    });
  }

  const attendRef = (q: Float32Array, k: Float32Array, v: Float32Array, nH: number, nKv: number, D: number, len: number, cap: number, scale: number) => {
    const out = new Float64Array(nH * D);
    for (let h = 0; h < nH; h++) {
      const g = Math.floor(h / (nH / nKv));
      const s = Array.from({ length: len }, (_, j) => {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[h * D + d]! * k[(g * cap + j) * D + d]!;
        return scale * dot;
      });
      const m = Math.max(...s);
      const e = s.map((x) => Math.exp(x - m));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let j = 0; j < len; j++) for (let d = 0; d < D; d++) out[h * D + d]! += (e[j]! / sum) * v[(g * cap + j) * D + d]!;
    }
    return out;
  };
  for (const [nH, nKv, D, len, cap] of [[9, 3, 64, 37, 64], [9, 3, 64, 1, 8], [4, 4, 16, 300, 300]] as const) {
    it(`attendOne ${nH} heads / ${nKv} KV heads, ${len} of ${cap} cached`, () => {
      const q = randArray(nH * D, 8, 2);
      const k = randArray(nKv * cap * D, 9, 2);
      const v = randArray(nKv * cap * D, 10);
      const out = new Float32Array(nH * D).fill(NaN);
      const scratch = new Float32Array(nH * (Math.ceil(len / 4) * 4 + 3));
      addon().attendOne(q, k, v, nH, nKv, D, len, cap, 1 / Math.sqrt(D), out, scratch);
      expect(relErr(out, attendRef(q, k, v, nH, nKv, D, len, cap, 1 / Math.sqrt(D)))).toBeLessThan(2e-5);
    });
  }

  it('refuses buffers too small instead of reading past them', () => {
    const a = addon();
    expect(() => a.matvec(new Float32Array(10), 4, 4, new Float32Array(4), new Float32Array(4))).toThrow(/matvec: expected/);
    expect(() => a.rotaryOne(new Float32Array(64), 1, 1, 64, 64, new Float32Array(31), new Float32Array(32))).toThrow(/rotaryOne: expected/);
    const q = new Float32Array(2 * 8);
    const kv = new Float32Array(2 * 16 * 8);
    expect(() => a.attendOne(q, kv, kv, 2, 2, 8, 5, 16, 1, new Float32Array(16), new Float32Array(2 * 8 + 5))).toThrow(/attendOne: expected/);
    expect(() => a.attendOne(q, kv, kv, 2, 2, 8, 17, 16, 1, new Float32Array(16), new Float32Array(100))).toThrow(/attendOne: expected/);
  });
});
