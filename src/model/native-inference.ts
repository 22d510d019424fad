/**
 * Inference attention on the tfjs cpu backend with fopeify's native BLAS: the blockwise online-softmax
 * recurrence of attention.ts written directly as BLAS calls on the tensors' float32 data, with the
 * exponentials in the addon's threaded C (WebAssembly SIMD in older builds, backend/vector-math.ts) and every block's scores in one reused
 * scratch buffer. The tf-op version spends most of a long prefill in elementwise passes (Math.exp,
 * masks, broadcasts) and in allocating a fresh tensor per block; this one allocates only its output.
 *
 * Used only outside gradient recording and only when the accelerated cpu backend is active. Training
 * has its own native attention (src/train/native-attention.ts) with a backward pass and whose
 * arithmetic must stay fixed bit for bit (reproducible training); this one is free to skip fully masked
 * key columns, so the two are kept apart. Same mathematics
 * as blockwiseAttention, which the tests compare it with.
 */
import * as tf from '@tensorflow/tfjs';
import { acceleratedCpuAddon } from '../backend/select.js';
import type { NativeAddon } from '../backend/native.js';
import { attentionSoftmax, vectorMath } from '../backend/vector-math.js';
import type { KvBlock } from './attention.js';

/**
 * The native BLAS when attention may take the native path now: tfjs cpu backend with fopeify's native
 * kernels, and no gradient tape recording (the native path is invisible to tf.grads).
 */
export function inferenceBlas(): NativeAddon | null {
  // tfjs-core records a tape while gradientDepth > 0 (inside tf.grads / tf.variableGrads).
  const state = (tf.engine() as unknown as { state?: { gradientDepth?: number } }).state;
  if (!state || (state.gradientDepth ?? 0) > 0) return null;
  return acceleratedCpuAddon();
}

/** Float32 data of a cpu-backend tensor without a copy (dataSync returns the backing array there). */
function data(t: tf.Tensor): Float32Array {
  const d = t.dataSync();
  if (!(d instanceof Float32Array)) throw new Error(`native attention: expected float32 data, got ${t.dtype}`);
  return d;
}

/**
 * Attention of `q` `[BK, R, Tq, D]` (query i at sequence index qStart + i) over key/value blocks
 * `[BK, n, D]`, causal, with an optional sliding window (query i sees keys j with i − window < j ≤ i).
 * Returns `[BK, R, Tq, D]`.
 */
export function nativeBlockwiseAttention(
  blas: NativeAddon,
  q: tf.Tensor4D,
  blocks: readonly KvBlock[],
  qStart: number,
  options: { queryBlock: number; window: number | null; scale: number },
): tf.Tensor4D {
  const [BK, R, Tq, D] = q.shape;
  const { window, scale } = options;
  const QB = Math.max(1, Math.min(options.queryBlock, Tq));
  const vm = vectorMath();
  const sm = attentionSoftmax(blas);
  const qd = data(q);
  // Stacked layout [BK, Tq, R, D]: the R query heads sharing a KV head are adjacent rows, so one
  // (query block, key block) pair is a single [tq·R, D] × [D, n] product.
  const qs = new Float32Array(qd.length);
  for (let b = 0; b < BK; b++) {
    for (let r = 0; r < R; r++) {
      for (let t = 0; t < Tq; t++) {
        const src = ((b * R + r) * Tq + t) * D;
        qs.set(qd.subarray(src, src + D), ((b * Tq + t) * R + r) * D);
      }
    }
  }
  const kv = blocks.map((blk) => ({ k: data(blk.k), v: data(blk.v), n: blk.k.shape[1], start: blk.start }));
  const out = new Float32Array(BK * R * Tq * D); // [BK, R, Tq, D]
  const acc = new Float32Array(QB * R * D);
  const m = new Float64Array(QB * R);
  const l = new Float64Array(QB * R);
  for (let b = 0; b < BK; b++) {
    for (let q0 = 0; q0 < Tq; q0 += QB) {
      const tq = Math.min(QB, Tq - q0);
      const rows = tq * R; // row = (t − q0)·R + r
      const qFirst = qStart + q0;
      const qLast = qFirst + tq - 1;
      m.fill(-Infinity, 0, rows);
      l.fill(0, 0, rows);
      acc.fill(0, 0, rows * D);
      let seen = false;
      for (const blk of kv) {
        // Only the keys some query of this block can see: drop a block's future tail (the causal
        // diagonal) and, with a sliding window, its too-old head — no product for fully masked columns.
        const first = Math.max(blk.start, window === null ? blk.start : qFirst - window + 1);
        const end = Math.min(blk.start + blk.n, qLast + 1);
        if (end <= first) continue;
        seen = true;
        const start = first;
        const n = end - first;
        const kOff = (b * blk.n + (first - blk.start)) * D;
        const n4 = (n + 3) & ~3;
        const [S, mOld, mNew, sums] = vm.scratch(rows * n4, rows, rows, rows) as [Float32Array, Float32Array, Float32Array, Float32Array];
        blas.sgemm(false, true, rows, n, D, scale, qs, (b * Tq + q0) * R * D, D, blk.k, kOff, D, 0, S, 0, n4);
        for (let i = 0; i < tq; i++) {
          const qi = qFirst + i;
          const lo = window === null ? 0 : Math.min(n, Math.max(0, qi - window + 1 - start));
          const hi = Math.max(lo, Math.min(n, qi - start + 1));
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
        blas.sgemm(false, false, rows, D, n, 1, S, 0, n4, blk.v, kOff, D, 1, acc, 0, D);
      }
      if (!seen) throw new Error(`attention: no key is visible to queries ${qFirst}..${qLast}`);
      for (let i = 0; i < tq; i++) {
        for (let r = 0; r < R; r++) {
          const row = i * R + r;
          const inv = 1 / l[row]!;
          const dst = ((b * R + r) * Tq + q0 + i) * D;
          for (let d = 0; d < D; d++) out[dst + d] = acc[row * D + d]! * inv;
        }
      }
    }
  }
  return tf.tensor4d(out, [BK, R, Tq, D]);
}
