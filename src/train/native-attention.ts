/**
 * The training attention and LM-head loss on the tfjs cpu backend with fopeify's native BLAS: the
 * blockwise (FlashAttention) recurrences written directly as BLAS calls on the tensors' float32 data
 * plus softmax passes in WebAssembly SIMD (vector-math.ts), with every block's scores in a reused scratch
 * buffer that the BLAS writes and the softmax reads in place. No tensor is allocated per block, the accumulators are updated
 * by the BLAS itself (beta = 1), and masked entries are never exponentiated. Same mathematics as the
 * tf-op path of flash-attention.ts; used when the native addon is active.
 */
import * as tf from '@tensorflow/tfjs';
import type { NativeAddon } from '../backend/native.js';
import { attentionSoftmax, vectorMath } from '../backend/vector-math.js';

interface Geometry {
  BK: number;
  R: number;
  T: number;
  D: number;
  queryBlock: number;
  keyBlock: number;
  window: number | null;
}

/** Visible keys [lo, hi) of the key block starting at kStart (n keys) for query qi. */
function lo(qi: number, kStart: number, n: number, window: number | null): number {
  return window === null ? 0 : Math.min(n, Math.max(0, qi - window + 1 - kStart));
}
function hi(qi: number, kStart: number, n: number): number {
  return Math.min(n, qi - kStart + 1);
}
function blockVisible(q0: number, tq: number, k0: number, n: number, window: number | null): boolean {
  if (k0 > q0 + tq - 1) return false;
  if (window !== null && k0 + n - 1 <= q0 - window) return false;
  return true;
}

/**
 * `[BK, R, T, X]` ⇄ `[BK, T, R, X]`. In the second layout the R query heads that share a KV head are
 * adjacent rows for each token, so a block of tq tokens is one `[tq·R, D]` matrix and every product
 * of a (query block, key block) pair is a single BLAS call instead of R small ones.
 */
function stackHeads(x: Float32Array, BK: number, R: number, T: number, X: number, toStacked: boolean): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < BK; b++) {
    for (let r = 0; r < R; r++) {
      for (let t = 0; t < T; t++) {
        const a = ((b * R + r) * T + t) * X; // [BK, R, T, X]
        const c = ((b * T + t) * R + r) * X; // [BK, T, R, X]
        if (toStacked) out.set(x.subarray(a, a + X), c);
        else out.set(x.subarray(c, c + X), a);
      }
    }
  }
  return out;
}

/** Forward: output `[BK, R, T, D]` and row log-sum-exp `[BK, R, T]`. */
export function attentionForwardNative(blas: NativeAddon, q: Float32Array, k: Float32Array, v: Float32Array, g: Geometry): { out: Float32Array; lse: Float32Array } {
  const { BK, R, T, D, queryBlock: QB, keyBlock: KB, window } = g;
  const scale = 1 / Math.sqrt(D);
  const vm = vectorMath();
  const sm = attentionSoftmax(blas);
  const qs = stackHeads(q, BK, R, T, D, true);
  const out = new Float32Array(BK * T * R * D); // stacked
  const lse = new Float32Array(BK * T * R); // stacked
  const acc = new Float32Array(QB * R * D);
  const m = new Float64Array(QB * R);
  const l = new Float64Array(QB * R);
  for (let b = 0; b < BK; b++) {
    for (let q0 = 0; q0 < T; q0 += QB) {
      const tq = Math.min(QB, T - q0);
      const rows = tq * R; // row = (t − q0)·R + r
      m.fill(-Infinity, 0, rows);
      l.fill(0, 0, rows);
      acc.fill(0, 0, rows * D);
      const qOff = (b * T + q0) * R * D;
      for (let k0 = 0; k0 < T; k0 += KB) {
        const n = Math.min(KB, T - k0);
        if (!blockVisible(q0, tq, k0, n, window)) continue;
        const n4 = (n + 3) & ~3;
        const kOff = (b * T + k0) * D;
        const [S, mOld, mNew, sums] = vm.scratch(rows * n4, rows, rows, rows) as [Float32Array, Float32Array, Float32Array, Float32Array];
        // S = scale · Q[b, q0:q0+tq, :] K[b, k0:k0+n]ᵀ, rows padded to n4 columns (−∞ where masked)
        blas.sgemm(false, true, rows, n, D, scale, qs, qOff, D, k, kOff, D, 0, S, 0, n4);
        for (let i = 0; i < tq; i++) {
          const a = lo(q0 + i, k0, n, window);
          const z = Math.max(a, hi(q0 + i, k0, n));
          for (let r = 0; r < R; r++) {
            const row = i * R + r;
            const o = row * n4;
            if (a > 0) S.fill(-Infinity, o, o + a);
            if (z < n4) S.fill(-Infinity, o + z, o + n4);
            mOld[row] = m[row]!;
          }
        }
        sm.softmaxRows(S, rows, n4, mOld, mNew, sums);
        for (let row = 0; row < rows; row++) {
          const mo = m[row]!;
          const mn = mNew[row]!;
          const al = mo === -Infinity ? 0 : Math.exp(mo - mn);
          m[row] = mn;
          l[row] = l[row]! * al + sums[row]!;
          if (al !== 1) for (let d = 0, c = row * D; d < D; d++) acc[c + d] = acc[c + d]! * al;
        }
        // acc += P V[b, k0:k0+n]
        blas.sgemm(false, false, rows, D, n, 1, S, 0, n4, v, kOff, D, 1, acc, 0, D);
      }
      for (let row = 0; row < rows; row++) {
        const inv = 1 / l[row]!;
        const o = qOff + row * D;
        for (let d = 0; d < D; d++) out[o + d] = acc[row * D + d]! * inv;
        lse[(b * T + q0) * R + row] = m[row]! + Math.log(l[row]!);
      }
    }
  }
  return { out: stackHeads(out, BK, R, T, D, false), lse: stackHeads(lse, BK, R, T, 1, false) };
}

/** Backward: dq `[BK, R, T, D]`, dk and dv `[BK, T, D]`. */
export function attentionBackwardNative(
  blas: NativeAddon,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  o: Float32Array,
  lse: Float32Array,
  dO: Float32Array,
  g: Geometry,
): { dq: Float32Array; dk: Float32Array; dv: Float32Array } {
  const { BK, R, T, D, queryBlock: QB, keyBlock: KB, window } = g;
  const scale = 1 / Math.sqrt(D);
  const vm = vectorMath();
  const sm = attentionSoftmax(blas);
  const qs = stackHeads(q, BK, R, T, D, true);
  const dOs = stackHeads(dO, BK, R, T, D, true);
  const os = stackHeads(o, BK, R, T, D, true);
  const lses = stackHeads(lse, BK, R, T, 1, true);
  const dqs = new Float32Array(BK * T * R * D);
  const dk = new Float32Array(BK * T * D);
  const dv = new Float32Array(BK * T * D);
  const Drow = new Float32Array(BK * T * R);
  for (let r = 0; r < BK * T * R; r++) {
    let s = 0;
    for (let d = 0, c = r * D; d < D; d++) s += dOs[c + d]! * os[c + d]!;
    Drow[r] = s;
  }
  for (let b = 0; b < BK; b++) {
    for (let q0 = 0; q0 < T; q0 += QB) {
      const tq = Math.min(QB, T - q0);
      const rows = tq * R;
      const qOff = (b * T + q0) * R * D;
      const rOff = (b * T + q0) * R;
      for (let k0 = 0; k0 < T; k0 += KB) {
        const n = Math.min(KB, T - k0);
        if (!blockVisible(q0, tq, k0, n, window)) continue;
        const kOff = (b * T + k0) * D;
        const n4 = (n + 3) & ~3;
        const [S, dS, lseB, dB] = vm.scratch(rows * n4, rows * n4, rows, rows) as [Float32Array, Float32Array, Float32Array, Float32Array];
        blas.sgemm(false, true, rows, n, D, scale, qs, qOff, D, k, kOff, D, 0, S, 0, n4);
        blas.sgemm(false, true, rows, n, D, 1, dOs, qOff, D, v, kOff, D, 0, dS, 0, n4);
        for (let i = 0; i < tq; i++) {
          const a = lo(q0 + i, k0, n, window);
          const z = Math.max(a, hi(q0 + i, k0, n));
          for (let r = 0; r < R; r++) {
            const row = i * R + r;
            const off = row * n4;
            if (a > 0) S.fill(-Infinity, off, off + a);
            if (z < n4) S.fill(-Infinity, off + z, off + n4);
            if (n < n4) dS.fill(0, off + n, off + n4);
          }
        }
        lseB.set(lses.subarray(rOff, rOff + rows));
        dB.set(Drow.subarray(rOff, rOff + rows));
        // S ← P = exp(S − lse), dS ← P ∘ (dP − D)
        sm.softmaxBackward(S, dS, rows, n4, lseB, dB);
        // dV[b, k0:] += Pᵀ dO;  dK[b, k0:] += scale · dSᵀ Q;  dQ += scale · dS K
        blas.sgemm(true, false, n, D, rows, 1, S, 0, n4, dOs, qOff, D, 1, dv, kOff, D);
        blas.sgemm(true, false, n, D, rows, scale, dS, 0, n4, qs, qOff, D, 1, dk, kOff, D);
        blas.sgemm(false, false, rows, D, n, scale, dS, 0, n4, k, kOff, D, 1, dqs, qOff, D);
      }
    }
  }
  return { dq: stackHeads(dqs, BK, R, T, D, false), dk, dv };
}

/**
 * LM head + cross-entropy of `n` rows (x `[n, H]`, W `[V, H]`): the summed NLL of the valid rows and,
 * with `scale`, dx = dlogits·W written into `dx` at `dxOff` and dW += dlogitsᵀ·x accumulated into `dW`
 * (dlogits = scale · (softmax − onehot), 0 on ignored rows). Logits live only in a scratch buffer.
 */
export function headChunkNative(
  blas: NativeAddon,
  x: Float32Array,
  W: Float32Array,
  n: number,
  H: number,
  V: number,
  targets: Int32Array,
  scale: number | null,
  dx: Float32Array | null,
  dxOff: number,
  dW: Float32Array | null,
): number {
  const vm = vectorMath();
  const sm = attentionSoftmax(blas);
  const V4 = (V + 3) & ~3;
  const [L, mOld, mNew, sums, ks] = vm.scratch(n * V4, n, n, n, n) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
  blas.sgemm(false, true, n, V, H, 1, x, 0, H, W, 0, H, 0, L, 0, V4);
  const picked = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    const o = r * V4;
    const t = targets[r]!;
    if (t < 0) L.fill(-Infinity, o, o + V4); // ignored: the row softmax gives 0
    else {
      picked[r] = L[o + t]!;
      if (V4 > V) L.fill(-Infinity, o + V, o + V4);
    }
  }
  mOld.fill(-Infinity);
  sm.softmaxRows(L, n, V4, mOld, mNew, sums);
  let nll = 0;
  for (let r = 0; r < n; r++) {
    if (targets[r]! < 0) {
      ks[r] = 0;
      continue;
    }
    nll += mNew[r]! + Math.log(sums[r]!) - picked[r]!;
    ks[r] = scale === null ? 0 : scale / sums[r]!;
  }
  if (scale !== null) {
    vm.scaleRows(L, n, V4, ks);
    for (let r = 0; r < n; r++) if (targets[r]! >= 0) L[r * V4 + targets[r]!] = L[r * V4 + targets[r]!]! - scale;
    blas.sgemm(false, false, n, H, V, 1, L, 0, V4, W, 0, H, 0, dx!, dxOff, H);
    if (dW) blas.sgemm(true, false, V, H, n, 1, L, 0, V4, x, 0, H, 1, dW, 0, H);
  }
  return nll;
}
