/**
 * Blockwise attention on the tfjs cpu backend with fopeify's native addon. Training and prefill run a
 * whole layer in one addon call (native/attention.c: the FlashAttention forward and FlashAttention-2
 * backward, threads owning whole (KV head, block) work items). The one-token decoding step's sliding
 * window path keeps the recurrence here (`attendQueryBlock`): BLAS calls on the tensors' float32 data
 * with the softmax passes in the addon's C, every block's scores in one reused scratch buffer, fully
 * masked key columns never multiplied. Same mathematics as attention-tf.ts, which the tests compare
 * it with.
 */
import * as tf from './tfjs.js';
import { FopeifyError } from '../errors.js';
import { blockVisible, visibleKeys, visibleSpan } from './attention-mask.js';
import type { AttentionGeometry, AttentionOutput, Kernels, KvBlock, TokenHeads, TokenMajorKernels, TokenMajorOutput } from './kernels.js';
import type { NativeAddon } from './native.js';
import { attentionSoftmax, vectorMath } from './vector-math.js';

/** Float32 data of a cpu-backend tensor without a copy (dataSync returns the backing array there). */
export function data(t: tf.Tensor): Float32Array {
  const d = t.dataSync();
  if (!(d instanceof Float32Array)) throw new Error(`native kernels: expected float32 data, got ${t.dtype}`);
  return d;
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

/**
 * Queries per work item of the addon's attention, at most: a block's scores (64·R rows × keyBlock
 * keys) then stay in the core's L2 cache between the GEMM that writes them, the softmax and the GEMM
 * that reads them, and the causal diagonal's hidden half costs less. Measured at the SmolLM2-135M
 * training shape (R = 3, D = 64, 2048 tokens): 64 beat 256 by ~5 % forward and ~15 % backward, 32 was
 * no better. The result is the same mathematics whatever the block (float rounding aside).
 */
const NATIVE_QUERY_BLOCK = 64;

/** The addon's window argument: −1 for plain causal attention. */
const windowArg = (window: number | null) => (window === null ? -1 : window);

/** How the addon addresses q, o (qTokens) and the keys (kvTokens): head-major, or token-major rows of nKv KV heads. */
interface NativeLayout {
  nKv: number;
  qTokens: boolean;
  kvTokens: boolean;
}

const HEAD_MAJOR: NativeLayout = { nKv: 1, qTokens: false, kvTokens: false };

/** A layer's forward in one addon call (native/attention.c): threads own (KV head, query block) items. */
function forwardCall(
  blas: NativeAddon,
  q: Float32Array,
  [BK, R, Tq, D]: readonly [number, number, number, number],
  blocks: readonly KvBlock[],
  qStart: number,
  g: AttentionGeometry,
  layout: NativeLayout,
): { o: Float32Array; lse: Float32Array } {
  const QB = Math.max(1, Math.min(g.queryBlock, Tq, NATIVE_QUERY_BLOCK));
  const KB = g.keyBlock ? Math.max(1, g.keyBlock) : 0;
  const o = new Float32Array(BK * R * Tq * D);
  const lse = new Float32Array(BK * R * Tq); // [BK, R, Tq] in either layout
  const ks = blocks.map((b) => data(b.k));
  const vs = blocks.map((b) => data(b.v));
  try {
    blas.attentionForward(q, BK, R, Tq, D, qStart, QB, KB, windowArg(g.window), g.scale, ks, vs, blocks.map((b) => b.start), o, lse, layout.nKv, layout.qTokens, layout.kvTokens);
  } catch (e) {
    if ((e as { code?: string }).code === 'ATTENTION_NO_VISIBLE_KEY') {
      throw new FopeifyError('INTERNAL', `attention: a block of queries ${qStart}..${qStart + Tq - 1} sees no key`, { cause: e });
    }
    throw e;
  }
  return { o, lse };
}

/** Backward for queries and keys at 0..T−1 in one addon call (native/attention.c). */
function backwardCall(
  blas: NativeAddon,
  [q, k, v, o, lse, dO]: readonly tf.Tensor[],
  [BK, R, T, D]: readonly [number, number, number, number],
  g: AttentionGeometry & { keyBlock: number },
  layout: NativeLayout,
): [Float32Array, Float32Array, Float32Array] {
  const QB = Math.max(1, Math.min(g.queryBlock, T, NATIVE_QUERY_BLOCK));
  const KB = Math.max(1, Math.min(g.keyBlock, T));
  const dq = new Float32Array(BK * R * T * D);
  const dk = new Float32Array(BK * T * D);
  const dv = new Float32Array(BK * T * D);
  blas.attentionBackward(data(q!), data(k!), data(v!), data(o!), data(lse!), data(dO!), BK, R, T, D, QB, KB, windowArg(g.window), g.scale, dq, dk, dv, layout.nKv, layout.qTokens);
  return [dq, dk, dv];
}

/** Kernels.attentionForward: q, o `[BK, R, Tq, D]`, head-major key blocks. */
export function attentionForwardNative(blas: NativeAddon, ...[q, blocks, qStart, g]: Parameters<Kernels['attentionForward']>): AttentionOutput {
  const [BK, R, Tq, D] = q.shape;
  const { o, lse } = forwardCall(blas, data(q), q.shape, blocks, qStart, g, HEAD_MAJOR);
  return { o: tf.tensor4d(o, [BK, R, Tq, D]), lse: tf.tensor4d(lse, [BK, R, Tq, 1]) };
}

/** Kernels.attentionBackward: dq `[BK, R, T, D]`, dk and dv `[BK, T, D]`. */
export function attentionBackwardNative(blas: NativeAddon, ...[qT, kT, vT, res, dOT, g]: Parameters<Kernels['attentionBackward']>): ReturnType<Kernels['attentionBackward']> {
  const [BK, R, T, D] = qT.shape;
  const [dq, dk, dv] = backwardCall(blas, [qT, kT, vT, res.o, res.lse, dOT], qT.shape, g, HEAD_MAJOR);
  return [tf.tensor4d(dq, [BK, R, T, D]), tf.tensor3d(dk, [BK, T, D]), tf.tensor3d(dv, [BK, T, D])];
}

/** The head-major shape `[BK, R, T, D]` of token-major q rows `[B·T, nH·D]`; a FopeifyError when they do not fit the heads. */
function headShape(q: tf.Tensor2D, h: TokenHeads): [number, number, number, number] {
  const [rows, cols] = q.shape;
  if (h.B < 1 || h.nKv < 1 || h.R < 1 || h.D < 1 || rows % h.B !== 0 || cols !== h.nKv * h.R * h.D) {
    throw new FopeifyError('INTERNAL', `attention: rows [${q.shape}] are not ${h.B} sequences of ${h.nKv}·${h.R} heads of ${h.D}`);
  }
  return [h.B * h.nKv, h.R, rows / h.B, h.D];
}

/** TokenMajorKernels.attentionForward. */
export function attentionForwardTokens(blas: NativeAddon, ...[q, blocks, kvTokens, qStart, g, heads]: Parameters<TokenMajorKernels['attentionForward']>): TokenMajorOutput {
  const shape = headShape(q, heads);
  const [BK, R, Tq] = shape;
  const { o, lse } = forwardCall(blas, data(q), shape, blocks, qStart, g, { nKv: heads.nKv, qTokens: true, kvTokens });
  return { o: tf.tensor2d(o, q.shape), lse: tf.tensor4d(lse, [BK, R, Tq, 1]) };
}

/** TokenMajorKernels.attentionBackward. */
export function attentionBackwardTokens(blas: NativeAddon, ...[q, k, v, res, dO, g, heads]: Parameters<TokenMajorKernels['attentionBackward']>): ReturnType<TokenMajorKernels['attentionBackward']> {
  const shape = headShape(q, heads);
  if (k.shape[0] !== q.shape[0] || k.shape[1] !== heads.nKv * heads.D || !tf.util.arraysEqual(v.shape, k.shape)) {
    throw new FopeifyError('INTERNAL', `attention: keys [${k.shape}] and values [${v.shape}] do not fit queries [${q.shape}]`);
  }
  const [dq, dk, dv] = backwardCall(blas, [q, k, v, res.o, res.lse, dO], shape, g, { nKv: heads.nKv, qTokens: true, kvTokens: true });
  return [tf.tensor2d(dq, q.shape), tf.tensor2d(dk, k.shape), tf.tensor2d(dv, v.shape)];
}
