/**
 * Blockwise attention on the tfjs cpu backend with fopeify's native BLAS: the FlashAttention
 * recurrences written directly as BLAS calls on the tensors' float32 data, with the softmax passes in
 * the addon's threaded C, and every block's scores in one reused scratch buffer that the BLAS writes
 * and the softmax reads in place (vector-math.ts's scratch). No tensor is allocated per block, the
 * accumulators are updated by the BLAS itself (beta = 1), and fully masked key columns are never
 * multiplied (the causal diagonal's future tail, a sliding window's too-old head). Same mathematics as
 * attention-tf.ts, which the tests compare it with.
 */
import * as tf from './tfjs.js';
import { blockVisible, visibleKeys, visibleSpan } from './attention-mask.js';
import type { AttentionOutput, Kernels } from './kernels.js';
import type { NativeAddon } from './native.js';
import { attentionSoftmax, vectorMath } from './vector-math.js';

/** Float32 data of a cpu-backend tensor without a copy (dataSync returns the backing array there). */
export function data(t: tf.Tensor): Float32Array {
  const d = t.dataSync();
  if (!(d instanceof Float32Array)) throw new Error(`native kernels: expected float32 data, got ${t.dtype}`);
  return d;
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

/**
 * A run of consecutive keys of one KV block: key `start + j` of KV head b is row `(b·rows + off + j)` of
 * k and v (`[BK, rows, D]` buffers: a block tensor's data, or a decoding cache's preallocated buffers).
 */
export interface KeyRun {
  k: Float32Array;
  v: Float32Array;
  rows: number;
  off: number;
  n: number;
  start: number;
}

/** The accumulators of one query block (reused across blocks and calls). */
export interface AttendWork {
  acc: Float32Array;
  m: Float64Array;
  l: Float64Array;
}

export function attendWork(rows: number, D: number): AttendWork {
  return { acc: new Float32Array(rows * D), m: new Float64Array(rows), l: new Float64Array(rows) };
}

/**
 * The FlashAttention forward recurrence for one query block of KV head b: the tq·R stacked query rows
 * of `qs` from `qOff` (row = token·R + head), token i at sequence index qFirst + i, over the runs.
 * Leaves the unnormalized output in work.acc and the running max / sum in work.m / work.l (see
 * `normalizedRow`). Shared by the batched forward and the one-token decoding step.
 */
export function attendQueryBlock(
  blas: NativeAddon,
  qs: Float32Array,
  qOff: number,
  b: number,
  tq: number,
  R: number,
  D: number,
  runs: readonly KeyRun[],
  qFirst: number,
  g: { window: number | null; scale: number },
  work: AttendWork,
): void {
  const { window, scale } = g;
  const vm = vectorMath();
  const sm = attentionSoftmax(blas);
  const { acc, m, l } = work;
  const rows = tq * R; // row = (t − q0)·R + r
  const qLast = qFirst + tq - 1;
  m.fill(-Infinity, 0, rows);
  l.fill(0, 0, rows);
  acc.fill(0, 0, rows * D);
  let seen = false;
  for (const run of runs) {
    if (!blockVisible(run.start, run.n, qFirst, qLast, window)) continue;
    // Only the keys some query of this block can see.
    const [first, end] = visibleSpan(run.start, run.n, qFirst, qLast, window);
    if (end <= first) continue;
    seen = true;
    const n = end - first;
    const kOff = (b * run.rows + run.off + (first - run.start)) * D;
    const n4 = (n + 3) & ~3;
    const [S, mOld, mNew, sums] = vm.scratch(rows * n4, rows, rows, rows) as [Float32Array, Float32Array, Float32Array, Float32Array];
    blas.sgemm(false, true, rows, n, D, scale, qs, qOff, D, run.k, kOff, D, 0, S, 0, n4);
    for (let i = 0; i < tq; i++) {
      const [lo, hi] = visibleKeys(qFirst + i, first, n, window);
      for (let r = 0; r < R; r++) {
        const row = i * R + r;
        const o = row * n4;
        if (lo > 0) S.fill(-Infinity, o, o + lo);
        if (hi < n4) S.fill(-Infinity, o + hi, o + n4);
        mOld[row] = m[row]!;
      }
    }
    sm.softmaxRows(S, rows, n4, mOld, mNew, sums);
    for (let row = 0; row < rows; row++) {
      const mo = m[row]!;
      const mn = mNew[row]!;
      const alpha = mo === -Infinity ? 0 : Math.exp(mo - mn);
      m[row] = mn;
      l[row] = l[row]! * alpha + sums[row]!;
      if (alpha !== 1) for (let d = 0, c = row * D; d < D; d++) acc[c + d] = acc[c + d]! * alpha;
    }
    // acc += P · V_block (beta = 1: the BLAS updates the accumulator in place)
    blas.sgemm(false, false, rows, D, n, 1, S, 0, n4, run.v, kOff, D, 1, acc, 0, D);
  }
  if (!seen) throw new Error(`attention: no key is visible to queries ${qFirst}..${qLast}`);
}

/** Row `row` of an attended block, normalized (acc / l), into out from `outOff`; returns its log-sum-exp. */
export function normalizedRow(work: AttendWork, row: number, D: number, out: Float32Array, outOff: number): number {
  const { acc, m, l } = work;
  const inv = 1 / l[row]!;
  for (let d = 0; d < D; d++) out[outOff + d] = acc[row * D + d]! * inv;
  return m[row]! + Math.log(l[row]!);
}

export function attentionForwardNative(blas: NativeAddon, ...[q, blocks, qStart, g]: Parameters<Kernels['attentionForward']>): AttentionOutput {
  const [BK, R, Tq, D] = q.shape;
  const QB = Math.max(1, Math.min(g.queryBlock, Tq));
  const qs = stackHeads(data(q), BK, R, Tq, D, true);
  // Each KV block, walked in runs of at most keyBlock keys.
  const KB = g.keyBlock;
  const kv = blocks.flatMap((blk) => {
    const n = blk.k.shape[1];
    const k = data(blk.k);
    const v = data(blk.v);
    const step = KB ? Math.max(1, KB) : n;
    const runs: KeyRun[] = [];
    for (let s = 0; s < n; s += step) runs.push({ k, v, rows: n, off: s, n: Math.min(step, n - s), start: blk.start + s });
    return runs;
  });
  const out = new Float32Array(BK * R * Tq * D); // [BK, R, Tq, D]
  const lse = new Float32Array(BK * R * Tq); // [BK, R, Tq]
  const work = attendWork(QB * R, D);
  for (let b = 0; b < BK; b++) {
    for (let q0 = 0; q0 < Tq; q0 += QB) {
      const tq = Math.min(QB, Tq - q0);
      attendQueryBlock(blas, qs, (b * Tq + q0) * R * D, b, tq, R, D, kv, qStart + q0, g, work);
      for (let i = 0; i < tq; i++) {
        for (let r = 0; r < R; r++) {
          const t = (b * R + r) * Tq + q0 + i;
          lse[t] = normalizedRow(work, i * R + r, D, out, t * D);
        }
      }
    }
  }
  return { o: tf.tensor4d(out, [BK, R, Tq, D]), lse: tf.tensor4d(lse, [BK, R, Tq, 1]) };
}

/** Backward for queries and keys at 0..T−1: dq `[BK, R, T, D]`, dk and dv `[BK, T, D]`. */
export function attentionBackwardNative(blas: NativeAddon, ...[qT, kT, vT, res, dOT, g]: Parameters<Kernels['attentionBackward']>): ReturnType<Kernels['attentionBackward']> {
  const [BK, R, T, D] = qT.shape;
  const { queryBlock: QB, keyBlock: KB, window, scale } = g;
  const k = data(kT);
  const v = data(vT);
  const vm = vectorMath();
  const sm = attentionSoftmax(blas);
  const qs = stackHeads(data(qT), BK, R, T, D, true);
  const dOs = stackHeads(data(dOT), BK, R, T, D, true);
  const os = stackHeads(data(res.o), BK, R, T, D, true);
  const lses = stackHeads(data(res.lse), BK, R, T, 1, true);
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
        if (!blockVisible(k0, n, q0, q0 + tq - 1, window)) continue;
        const kOff = (b * T + k0) * D;
        const n4 = (n + 3) & ~3;
        const [S, dS, lseB, dB] = vm.scratch(rows * n4, rows * n4, rows, rows) as [Float32Array, Float32Array, Float32Array, Float32Array];
        blas.sgemm(false, true, rows, n, D, scale, qs, qOff, D, k, kOff, D, 0, S, 0, n4);
        blas.sgemm(false, true, rows, n, D, 1, dOs, qOff, D, v, kOff, D, 0, dS, 0, n4);
        for (let i = 0; i < tq; i++) {
          const [lo, hi] = visibleKeys(q0 + i, k0, n, window);
          for (let r = 0; r < R; r++) {
            const off = (i * R + r) * n4;
            if (lo > 0) S.fill(-Infinity, off, off + lo);
            if (hi < n4) S.fill(-Infinity, off + hi, off + n4);
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
  return [tf.tensor4d(stackHeads(dqs, BK, R, T, D, false), [BK, R, T, D]), tf.tensor3d(dk, [BK, T, D]), tf.tensor3d(dv, [BK, T, D])];
}
