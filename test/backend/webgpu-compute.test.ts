/**
 * TensorFlow.js on Dawn's WebGPU equals the cpu backend: a matmul, and a transformer block of the
 * tiny checkpoint's shape forward and backward (tf.grads) with causal softmax, within 1e-4. Values are
 * read with `await data()` only: synchronous reads throw on this backend under Node.
 * Runs on whatever adapter there is, software ones included (CI: Mesa llvmpipe over OpenGL ES).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/select.js';
import { TINY_SHAPE } from '../../src/testing/tiny-checkpoint.js';
import type { WebGpuProbe } from '../../src/backend/webgpu.js';
import { rng } from './helpers.js';
import { assertWebGpuWhenExpected, relErr, webgpuProbe } from './webgpu-helpers.js';

const TOL = 1e-4;
let probe: WebGpuProbe;

function values(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (r() * 2 - 1) * scale;
  return v;
}

/** Run `compute` on a backend from host arrays; its outputs are read asynchronously and disposed. */
async function runOn(backend: 'cpu' | 'webgpu', compute: () => tf.Tensor[]): Promise<Float32Array[]> {
  await setupBackend({ backend, allowSoftwareAdapter: true, quiet: true });
  expect(tf.getBackend()).toBe(backend);
  const before = tf.memory().numTensors;
  const outs = tf.tidy(compute);
  const read = await Promise.all(outs.map(async (t) => Float32Array.from(await t.data())));
  tf.dispose(outs);
  expect(tf.memory().numTensors).toBe(before);
  return read;
}

async function compareBackends(compute: () => tf.Tensor[]): Promise<number[]> {
  const gpu = await runOn('webgpu', compute);
  const cpu = await runOn('cpu', compute);
  return gpu.map((g, i) => relErr(g, cpu[i]!));
}

// The tiny checkpoint's decoder shape (hidden 64, 4 query heads and 2 KV heads of 16, MLP 128).
const { hiddenSize: D, intermediateSize: F, numHeads: H, numKvHeads: KV, vocabSize: V } = TINY_SHAPE;
const HD = D / H;
const T = 24;
const weights = {
  embed: values(V * D, 1, 0.5),
  norm1: values(D, 2, 0.1).map((x) => 1 + x),
  wq: values(D * D, 3, 0.1),
  wk: values(D * KV * HD, 4, 0.1),
  wv: values(D * KV * HD, 5, 0.1),
  wo: values(D * D, 6, 0.1),
  norm2: values(D, 7, 0.1).map((x) => 1 + x),
  gate: values(D * F, 8, 0.1),
  up: values(D * F, 9, 0.1),
  down: values(F * D, 10, 0.1),
  head: values(D * V, 11, 0.1),
};
const shapes: Record<keyof typeof weights, number[]> = {
  embed: [V, D],
  norm1: [D],
  wq: [D, D],
  wk: [D, KV * HD],
  wv: [D, KV * HD],
  wo: [D, D],
  norm2: [D],
  gate: [D, F],
  up: [D, F],
  down: [F, D],
  head: [D, V],
};
const tokens = Int32Array.from({ length: T + 1 }, (_, i) => (i * 37 + 11) % V);

function rmsNorm(x: tf.Tensor2D, w: tf.Tensor): tf.Tensor2D {
  return x.mul(tf.rsqrt(x.square().mean(-1, true).add(1e-6))).mul(w) as tf.Tensor2D;
}

function rope(x: tf.Tensor3D): tf.Tensor3D {
  // x: [heads, T, HD]; rotate-half with theta 10000.
  const half = HD / 2;
  const inv = Array.from({ length: half }, (_, i) => 1 / 10000 ** ((2 * i) / HD));
  const ang = tf.tensor2d(Array.from({ length: T * half }, (_, k) => Math.floor(k / half) * inv[k % half]!), [T, half]);
  const cos = tf.concat([ang.cos(), ang.cos()], -1);
  const sin = tf.concat([ang.sin(), ang.sin()], -1);
  const [a, b] = tf.split(x, 2, -1);
  return x.mul(cos).add(tf.concat([b!.neg(), a!], -1).mul(sin)) as tf.Tensor3D;
}

/** One decoder block and the LM loss: embedding gather, RMSNorm, RoPE, GQA causal attention, SwiGLU. */
function blockLoss(w: Record<keyof typeof weights, tf.Tensor>): tf.Scalar {
  const ids = tf.tensor1d(tokens.slice(0, T), 'int32');
  const x = tf.gather(w.embed, ids) as tf.Tensor2D;
  const h = rmsNorm(x, w.norm1);
  const heads = (t: tf.Tensor2D, n: number) => t.reshape([T, n, HD]).transpose([1, 0, 2]) as tf.Tensor3D;
  const q = rope(heads(tf.matMul(h, w.wq), H));
  const rep = (t: tf.Tensor3D) => tf.stack(Array.from({ length: H }, (_, i) => t.gather(Math.floor(i / (H / KV)))), 0) as tf.Tensor3D;
  const k = rep(rope(heads(tf.matMul(h, w.wk), KV)));
  const v = rep(heads(tf.matMul(h, w.wv), KV));
  const causal = tf.linalg.bandPart(tf.ones([T, T]), -1, 0);
  const scores = tf.matMul(q, k, false, true).mul(1 / Math.sqrt(HD)).add(tf.sub(1, causal).mul(-1e9));
  const attn = tf.matMul(tf.softmax(scores), v).transpose([1, 0, 2]).reshape([T, D]) as tf.Tensor2D;
  const x2 = x.add(tf.matMul(attn, w.wo)) as tf.Tensor2D;
  const m = rmsNorm(x2, w.norm2);
  const g = tf.matMul(m, w.gate);
  const x3 = x2.add(tf.matMul(g.mul(tf.sigmoid(g)).mul(tf.matMul(m, w.up)), w.down)) as tf.Tensor2D;
  const logits = tf.matMul(x3, w.head);
  const target = tf.oneHot(tf.tensor1d(tokens.slice(1), 'int32'), V);
  return tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), target))).div(T) as tf.Scalar;
}

describe('webgpu vs cpu', () => {
  beforeAll(async () => {
    probe = await webgpuProbe();
  });
  afterAll(async () => {
    await setupBackend({ backend: 'cpu', quiet: true });
  });

  it('matmul (plain, transposed, batched)', async (ctx) => {
    assertWebGpuWhenExpected(probe);
    if (!probe.ok) return ctx.skip();
    const a = values(96 * 80, 21);
    const b = values(80 * 72, 22);
    const c = values(3 * 40 * 24, 23);
    const errs = await compareBackends(() => {
      const A = tf.tensor2d(a, [96, 80]);
      const B = tf.tensor2d(b, [80, 72]);
      const C = tf.tensor3d(c, [3, 40, 24]);
      return [tf.matMul(A, B), tf.matMul(B, A, true, true), tf.matMul(C, C, false, true)];
    });
    for (const e of errs) expect(e).toBeLessThanOrEqual(TOL);
  });

  it('a transformer block of the tiny checkpoint: loss and every gradient', async (ctx) => {
    assertWebGpuWhenExpected(probe);
    if (!probe.ok) return ctx.skip();
    const names = Object.keys(weights) as (keyof typeof weights)[];
    const errs = await compareBackends(() => {
      const ws = names.map((n) => tf.tensor(weights[n], shapes[n], 'float32'));
      const { value, grads } = tf.valueAndGrads((...args: tf.Tensor[]) =>
        blockLoss(Object.fromEntries(names.map((n, i) => [n, args[i]!])) as Record<keyof typeof weights, tf.Tensor>),
      )(ws);
      return [value, ...grads];
    });
    expect(errs).toHaveLength(names.length + 1);
    for (const [i, e] of errs.entries()) expect(e, i === 0 ? 'loss' : `d${names[i - 1]}`).toBeLessThanOrEqual(TOL);
  });
});
