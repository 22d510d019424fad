/**
 * The training attention and LM-head loss on the tfjs cpu backend with fopeify's native BLAS: the
 * blockwise (FlashAttention) recurrences written directly as BLAS calls on the tensors' float32 data
 * plus softmax passes in WebAssembly SIMD (vector-math.ts), with every block's scores in a reused scratch
 * buffer that the BLAS writes and the softmax reads in place. No tensor is allocated per block, the accumulators are updated
 * by the BLAS itself (beta = 1), and masked entries are never exponentiated. Same mathematics as the
 * tf-op path of flash-attention.ts; used when the native addon is active.
 */
import * as tf from '@tensorflow/tfjs';
import { currentBackend } from '../backend/select.js';
import { loadNative, type NativeAddon } from '../backend/native.js';
import { vectorMath } from './vector-math.js';

/** The native BLAS addon when the active backend is tfjs cpu with fopeify's native kernels, else null. */
export function nativeBlas(): NativeAddon | null {
  if (tf.getBackend() !== 'cpu' || !currentBackend()?.accelerated) return null;
  const r = loadNative();
  return r.ok ? r.blas.addon : null;
}

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

/** Forward: output `[BK, R, T, D]` and row log-sum-exp `[BK, R, T]`. */
export function attentionForwardNative(blas: NativeAddon, q: Float32Array, k: Float32Array, v: Float32Array, g: Geometry): { out: Float32Array; lse: Float32Array } {
  const { BK, R, T, D, queryBlock: QB, keyBlock: KB, window } = g;
  const scale = 1 / Math.sqrt(D);
  const vm = vectorMath();
  const out = new Float32Array(BK * R * T * D);
  const lse = new Float32Array(BK * R * T);
  const acc = new Float32Array(R * QB * D);
  const m = new Float64Array(R * QB);
  const l = new Float64Array(R * QB);
  for (let b = 0; b < BK; b++) {
    for (let q0 = 0; q0 < T; q0 += QB) {
      const tq = Math.min(QB, T - q0);
      const rows = R * tq;
      m.fill(-Infinity, 0, rows);
      l.fill(0, 0, rows);
      acc.fill(0, 0, rows * D);
      const qOff = b * R * T * D + q0 * D;
      for (let k0 = 0; k0 < T; k0 += KB) {
        const n = Math.min(KB, T - k0);
        if (!blockVisible(q0, tq, k0, n, window)) continue;
        const n4 = (n + 3) & ~3;
        const [S, mOld, mNew, sums] = vm.scratch(rows * n4, rows, rows, rows) as [Float32Array, Float32Array, Float32Array, Float32Array];
        // S[r] = scale · Q[b, r, q0:q0+tq] K[b, k0:k0+n]ᵀ, rows padded to n4 columns (−∞ where masked)
        blas.sgemm(false, true, tq, n, D, scale, q, qOff, D, k, b * T * D + k0 * D, D, 0, S, 0, n4, R, T * D, 0, tq * n4);
        for (let row = 0; row < rows; row++) {
          const i = row % tq;
          const o = row * n4;
          const a = lo(q0 + i, k0, n, window);
          const z = Math.max(a, hi(q0 + i, k0, n));
          if (a > 0) S.fill(-Infinity, o, o + a);
          if (z < n4) S.fill(-Infinity, o + z, o + n4);
          mOld[row] = m[row]!;
        }
        vm.softmaxRows(S, rows, n4, mOld, mNew, sums);
        for (let row = 0; row < rows; row++) {
          const mo = m[row]!;
          const mn = mNew[row]!;
          const al = mo === -Infinity ? 0 : Math.exp(mo - mn);
          m[row] = mn;
          l[row] = l[row]! * al + sums[row]!;
          if (al !== 1) for (let d = 0, c = row * D; d < D; d++) acc[c + d] = acc[c + d]! * al;
        }
        // acc[r] += P[r] V[b, k0:k0+n]
        blas.sgemm(false, false, tq, D, n, 1, S, 0, n4, v, b * T * D + k0 * D, D, 1, acc, 0, D, R, tq * n4, 0, tq * D);
      }
      for (let r = 0; r < R; r++) {
        for (let i = 0; i < tq; i++) {
          const row = r * tq + i;
          const inv = 1 / l[row]!;
          const o = ((b * R + r) * T + q0 + i) * D;
          for (let d = 0; d < D; d++) out[o + d] = acc[row * D + d]! * inv;
          lse[(b * R + r) * T + q0 + i] = m[row]! + Math.log(l[row]!);
        }
      }
    }
  }
  return { out, lse };
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
  const dq = new Float32Array(BK * R * T * D);
  const dk = new Float32Array(BK * T * D);
  const dv = new Float32Array(BK * T * D);
  const Drow = new Float32Array(BK * R * T);
  for (let r = 0; r < BK * R * T; r++) {
    let s = 0;
    for (let d = 0, c = r * D; d < D; d++) s += dO[c + d]! * o[c + d]!;
    Drow[r] = s;
  }
  for (let b = 0; b < BK; b++) {
    for (let q0 = 0; q0 < T; q0 += QB) {
      const tq = Math.min(QB, T - q0);
      const rows = R * tq;
      const qOff = b * R * T * D + q0 * D;
      for (let k0 = 0; k0 < T; k0 += KB) {
        const n = Math.min(KB, T - k0);
        if (!blockVisible(q0, tq, k0, n, window)) continue;
        const kOff = b * T * D + k0 * D;
        const n4 = (n + 3) & ~3;
        const [S, dS, lseB, dB] = vm.scratch(rows * n4, rows * n4, rows, rows) as [Float32Array, Float32Array, Float32Array, Float32Array];
        blas.sgemm(false, true, tq, n, D, scale, q, qOff, D, k, kOff, D, 0, S, 0, n4, R, T * D, 0, tq * n4);
        blas.sgemm(false, true, tq, n, D, 1, dO, qOff, D, v, kOff, D, 0, dS, 0, n4, R, T * D, 0, tq * n4);
        for (let r = 0; r < R; r++) {
          for (let i = 0; i < tq; i++) {
            const row = r * tq + i;
            const off = row * n4;
            const a = lo(q0 + i, k0, n, window);
            const z = Math.max(a, hi(q0 + i, k0, n));
            if (a > 0) S.fill(-Infinity, off, off + a);
            if (z < n4) S.fill(-Infinity, off + z, off + n4);
            if (n < n4) dS.fill(0, off + n, off + n4);
            lseB[row] = lse[(b * R + r) * T + q0 + i]!;
            dB[row] = Drow[(b * R + r) * T + q0 + i]!;
          }
        }
        // S ← P = exp(S − lse), dS ← P ∘ (dP − D)
        vm.softmaxBackward(S, dS, rows, n4, lseB, dB);
        // dV[b, k0:] += Σ_r P[r]ᵀ dO[b, r, q0:];  dK[b, k0:] += scale Σ_r dS[r]ᵀ Q[b, r, q0:]
        blas.sgemm(true, false, n, D, tq, 1, S, 0, n4, dO, qOff, D, 1, dv, kOff, D, R, tq * n4, T * D, 0);
        blas.sgemm(true, false, n, D, tq, scale, dS, 0, n4, q, qOff, D, 1, dk, kOff, D, R, tq * n4, T * D, 0);
        // dQ[b, r, q0:] += scale · dS[r] K[b, k0:]
        blas.sgemm(false, false, tq, D, n, scale, dS, 0, n4, k, kOff, D, 1, dq, qOff, D, R, tq * n4, 0, T * D);
      }
    }
  }
  return { dq, dk, dv };
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
  vm.softmaxRows(L, n, V4, mOld, mNew, sums);
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
