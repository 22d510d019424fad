import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { tfKernels } from '../../src/backend/kernels-tf.js';
import { setupBackend, type BackendInfo } from '../../src/backend/select.js';
import { fullAttention } from '../../src/model/attention.js';
import { flashAttention } from '../../src/train/flash-attention.js';
import { isolatedGrads, recomputed } from '../../src/train/grad.js';
import { SeededRandom } from '../../src/random.js';

function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  const rng = new SeededRandom(seed, 'grad-test');
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => scale * rng.normal()), shape);
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

// Plain tfjs cpu (JS softmax with tf matmuls, or tf ops), then the native BLAS path when this machine has it.
for (const backend of ['cpu', 'auto'] as const) describe(`flash attention (training), ${backend} backend`, () => {
  let info: BackendInfo;
  beforeAll(async () => {
    info = await setupBackend({ backend, quiet: true });
  });

  for (const [T, qb, kb, window, host] of [
    [37, 8, 16, null, true],
    [37, 8, 16, null, false],
    [64, 64, 64, null, true],
    [50, 16, 8, 12, true],
    [50, 16, 8, 12, false],
  ] as [number, number, number, number | null, boolean][]) {
    it(`matches full attention and its autodiff gradients (T=${T}, blocks ${qb}/${kb}, window ${window}, ${host ? 'JS' : 'tf-op'} softmax)`, () => {
      const BK = 2;
      const R = 3;
      const D = 8;
      const q = randn([BK, R, T, D], 1) as tf.Tensor4D;
      const k = randn([BK, T, D], 2) as tf.Tensor3D;
      const v = randn([BK, T, D], 3) as tf.Tensor3D;
      const w = randn([BK, R, T, D], 4);
      const opts = { queryBlock: qb, keyBlock: kb, slidingWindow: window, kernels: host ? info.kernels : tfKernels };
      const ref = fullAttention(q, k, v, 0, { slidingWindow: window });
      const got = flashAttention(q, k, v, opts);
      expect(maxAbsDiff(ref, got)).toBeLessThan(1e-5);
      const loss = (f: (a: tf.Tensor4D, b: tf.Tensor3D, c: tf.Tensor3D) => tf.Tensor) => (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
        tf.sum(tf.mul(f(a as tf.Tensor4D, b as tf.Tensor3D, c as tf.Tensor3D), w));
      const gRef = tf.grads(loss((a, b, c) => fullAttention(a, b, c, 0, { slidingWindow: window })))([q, k, v]);
      const gGot = tf.grads(loss((a, b, c) => flashAttention(a, b, c, opts)))([q, k, v]);
      for (let i = 0; i < 3; i++) expect(maxAbsDiff(gRef[i]!, gGot[i]!)).toBeLessThan(1e-4);
      tf.dispose([q, k, v, w, ref, got, ...gRef, ...gGot]);
    });
  }
});

describe('recomputed (gradient checkpointing)', () => {
  beforeAll(async () => {
    await setupBackend({ backend: 'cpu', quiet: true });
  });
  it('gives the same gradients as plain autodiff, through nested recomputed functions, without leaking tensors', () => {
    const x = randn([4, 6], 5);
    const a = tf.variable(randn([6, 6], 6, 0.5));
    const b = tf.variable(randn([6, 6], 7, 0.5));
    const inner = (xs: tf.Tensor[]) => tf.tanh(tf.matMul(xs[0] as tf.Tensor2D, xs[1] as tf.Tensor2D));
    const innerR = recomputed(inner);
    const layerPlain = (h: tf.Tensor, w: tf.Tensor) => tf.add(h, inner([h, w]));
    const layerR = recomputed((xs) => tf.add(xs[0]!, innerR(xs[0]!, xs[1]!)));
    const f = (layer: (h: tf.Tensor, w: tf.Tensor) => tf.Tensor) => () => {
      const h1 = layer(x, a);
      const h2 = layer(h1, b);
      return tf.sum(tf.square(h2)) as tf.Scalar;
    };
    const want = tf.variableGrads(f(layerPlain), [a, b]);
    const before = tf.memory().numTensors;
    const got = tf.variableGrads(f((h, w) => layerR(h, w)), [a, b]);
    // Only the loss and two gradients survive the step.
    expect(tf.memory().numTensors - before).toBe(3);
    expect(got.value.dataSync()[0]).toBeCloseTo(want.value.dataSync()[0]!, 4);
    for (const n of [a.name, b.name]) expect(maxAbsDiff(want.grads[n]!, got.grads[n]!)).toBeLessThan(1e-5);
    tf.dispose([x, a, b, want.value, got.value, ...Object.values(want.grads), ...Object.values(got.grads)]);
  });
  it('isolatedGrads gives zeros for unused inputs', () => {
    const x = tf.scalar(3);
    const y = tf.scalar(4);
    const [gx, gy] = isolatedGrads(() => tf.square(x), [x, y]);
    expect([gx!.dataSync()[0], gy!.dataSync()[0]]).toEqual([6, 0]);
  });
});
