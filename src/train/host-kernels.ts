/**
 * Fused elementwise passes for backends whose tensors live in this process's memory (tfjs 'cpu', with
 * fopeify's native BLAS doing the matmuls). A training step's non-matmul time is dominated by softmax
 * work over `[rows, vocab]` logits and `[rows, keys]` attention scores; tfjs runs each of max, sub, exp,
 * sum, mul, ... as a separate full pass that allocates its output, with `Math.exp` (~10–30 ns). Here
 * each is a few plain loops around one WebAssembly-SIMD exp of the whole block (vector-math.ts). Other
 * backends (tensorflow, GPU, wasm) use the equivalent tf ops.
 */
import * as tf from '@tensorflow/tfjs';
import { vectorMath } from '../backend/vector-math.js';
import { acceleratedCpuAddon } from '../backend/select.js';

/** Use the JS passes: the active backend keeps tensors in JS memory (dataSync is free). */
export function hostKernels(): boolean {
  return tf.getBackend() === 'cpu';
}

/**
 * Cross-entropy of `rows` logits rows against `targets` (−1: ignored). Returns the summed NLL of the
 * valid rows and, when `scale` is given, `dlogits = scale · (softmax − onehot)` (ignored rows: 0).
 */
export function crossEntropyRows(
  logits: Float32Array,
  rows: number,
  V: number,
  targets: Int32Array,
  scale: number | null,
): { nll: number; dlogits: Float32Array | null } {
  const ve = vectorMath();
  const [buf] = ve.scratch(rows * V) as [Float32Array];
  const maxes = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * V;
    if (targets[r]! < 0) {
      buf.fill(0, o, o + V);
      continue;
    }
    let max = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j]! > max) max = logits[o + j]!;
    maxes[r] = max;
    for (let j = 0; j < V; j++) buf[o + j] = logits[o + j]! - max;
  }
  ve.exp(buf, rows * V);
  const d = scale === null ? null : new Float32Array(rows * V);
  let nll = 0;
  for (let r = 0; r < rows; r++) {
    const t = targets[r]!;
    if (t < 0) continue;
    const o = r * V;
    let sum = 0;
    for (let j = 0; j < V; j++) sum += buf[o + j]!;
    nll += maxes[r]! + Math.log(sum) - logits[o + t]!;
    if (d) {
      const k = scale! / sum;
      for (let j = 0; j < V; j++) d[o + j] = buf[o + j]! * k;
      d[o + t] = d[o + t]! - scale!;
    }
  }
  return { nll, dlogits: d };
}

/** Visible keys [lo, hi) of a key block starting at kStart for query qi: causal, and the sliding window. */
function visibleRange(qi: number, kStart: number, n: number, window: number | null): [number, number] {
  const hi = Math.min(n, qi - kStart + 1);
  const lo = window === null ? 0 : Math.max(0, qi - window + 1 - kStart);
  return [lo, Math.max(lo, hi)];
}

/**
 * One online-softmax step of a query block against a key block (forward pass). `s` holds scores
 * `[G, tq, n]` (G = batch·kv-heads·R, rows ordered (g, i)); `m`, `l` are the running max and sum per
 * row (updated in place); returns p `[G·tq, n]` (masked entries 0) and alpha per row (the factor the
 * running accumulator must be scaled by).
 */
export function onlineSoftmaxBlock(
  s: Float32Array,
  G: number,
  tq: number,
  n: number,
  qFirst: number,
  kStart: number,
  window: number | null,
  m: Float64Array,
  l: Float64Array,
): { p: Float32Array; alpha: Float64Array } {
  const ve = vectorMath();
  const total = G * tq * n;
  const [buf] = ve.scratch(total) as [Float32Array];
  const alpha = new Float64Array(G * tq);
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < tq; i++) {
      const row = g * tq + i;
      const o = row * n;
      const [lo, hi] = visibleRange(qFirst + i, kStart, n, window);
      let bm = -Infinity;
      for (let j = lo; j < hi; j++) if (s[o + j]! > bm) bm = s[o + j]!;
      const mOld = m[row]!;
      const mNew = bm > mOld ? bm : mOld;
      alpha[row] = mOld === -Infinity ? 0 : Math.exp(mOld - mNew);
      m[row] = mNew;
      for (let j = lo; j < hi; j++) buf[o + j] = s[o + j]! - mNew;
    }
  }
  ve.exp(buf, total);
  const p = new Float32Array(total);
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < tq; i++) {
      const row = g * tq + i;
      const o = row * n;
      const [lo, hi] = visibleRange(qFirst + i, kStart, n, window);
      let sum = 0;
      for (let j = lo; j < hi; j++) {
        const e = buf[o + j]!;
        p[o + j] = e;
        sum += e;
      }
      l[row] = l[row]! * alpha[row]! + sum;
    }
  }
  return { p, alpha };
}

/**
 * Backward of one (query block, key block) pair: from scores `s` and `dP = dO·Vᵀ` (both `[G·tq, n]`),
 * the row log-sum-exp and `D = rowsum(dO ∘ O)`, returns `P = exp(s − lse)` and `dS = P ∘ (dP − D)`.
 */
export function attentionBackwardBlock(
  s: Float32Array,
  dP: Float32Array,
  lse: Float32Array,
  D: Float32Array,
  G: number,
  tq: number,
  n: number,
  qFirst: number,
  kStart: number,
  window: number | null,
): { p: Float32Array; dS: Float32Array } {
  const ve = vectorMath();
  const total = G * tq * n;
  const [buf] = ve.scratch(total) as [Float32Array];
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < tq; i++) {
      const row = g * tq + i;
      const o = row * n;
      const [lo, hi] = visibleRange(qFirst + i, kStart, n, window);
      const L = lse[row]!;
      for (let j = lo; j < hi; j++) buf[o + j] = s[o + j]! - L;
    }
  }
  ve.exp(buf, total);
  const p = new Float32Array(total);
  const dS = new Float32Array(total);
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < tq; i++) {
      const row = g * tq + i;
      const o = row * n;
      const [lo, hi] = visibleRange(qFirst + i, kStart, n, window);
      const Dr = D[row]!;
      for (let j = lo; j < hi; j++) {
        const e = buf[o + j]!;
        p[o + j] = e;
        dS[o + j] = e * (dP[o + j]! - Dr);
      }
    }
  }
  return { p, dS };
}

/**
 * SwiGLU's activation `silu(g) · u` as one op with its gradient written out:
 * `dg = dy · u · σ(g)(1 + g(1 − σ(g)))`, `du = dy · silu(g)`. One vector exp per element forward, and
 * the backward reuses the saved σ.
 */
export function swiGluActivation(g: tf.Tensor2D, u: tf.Tensor2D): tf.Tensor2D {
  const op = tf.customGrad(((gIn: tf.Tensor2D, uIn: tf.Tensor2D, save: tf.GradSaveFunc) => {
    const n = gIn.size;
    const vm = vectorMath();
    // The addon's threaded C pass (same bits as the WebAssembly one) works on the tensors' data directly.
    const swiglu = acceleratedCpuAddon()?.swiglu;
    if (swiglu) {
      const y = new Float32Array(n);
      const sg = new Float32Array(n);
      swiglu(gIn.dataSync() as Float32Array, uIn.dataSync() as Float32Array, y, sg);
      save([gIn, uIn, tf.tensor2d(sg, gIn.shape)]);
      return { value: tf.tensor2d(y, gIn.shape), gradFunc: backward };
    }
    const [G, U, Y, SG] = vm.scratch(n, n, n, n) as [Float32Array, Float32Array, Float32Array, Float32Array];
    G.set(gIn.dataSync() as Float32Array);
    U.set(uIn.dataSync() as Float32Array);
    vm.swigluForward(G, U, Y, SG, n);
    save([gIn, uIn, tf.tensor2d(SG.slice(), gIn.shape)]);
    return { value: tf.tensor2d(Y.slice(), gIn.shape), gradFunc: backward };
    function backward(dy: tf.Tensor2D, saved: tf.Tensor[]): tf.Tensor[] {
      const [gS, uS, sS] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
      const [DY, G2, U2, S2, DG, DU] = vm.scratch(n, n, n, n, n, n) as Float32Array[] as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
      DY.set(dy.dataSync() as Float32Array);
      G2.set(gS.dataSync() as Float32Array);
      U2.set(uS.dataSync() as Float32Array);
      S2.set(sS.dataSync() as Float32Array);
      vm.swigluBackward(DY, G2, U2, S2, DG, DU, n);
      return [tf.tensor2d(DG.slice(), gS.shape), tf.tensor2d(DU.slice(), gS.shape)];
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(g, u) as tf.Tensor2D;
}
