/**
 * The addon's whole-layer attention (native/attention.c) on the paths the small cases of
 * kernels.test.ts do not reach: more (KV head, block) work items than threads, sequence lengths that
 * are not multiples of the blocks, query blocks clamped to the addon's 64, several KV blocks walked in
 * key runs after a cached prefix, sliding windows; the backward's bits do not depend on the run
 * (threads get the same work every time); bad arguments throw instead of touching memory.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Kernels, KvBlock } from '../../src/backend/kernels.js';
import { tfKernels } from '../../src/backend/kernels-tf.js';
import type { NativeAddon } from '../../src/backend/native.js';
import { attentionInputs, maxRelErr, nativeUsable, randn, setupNativeKernels } from './helpers.js';

function close(got: tf.Tensor, want: tf.Tensor, tol: number, what: string): void {
  expect(got.shape, what).toEqual(want.shape);
  expect(maxRelErr(got.dataSync(), want.dataSync()), what).toBeLessThan(tol);
}

describe.skipIf(!nativeUsable)('native whole-layer attention', () => {
  let K: Kernels;
  let addon: NativeAddon;
  beforeAll(async () => {
    ({ addon, kernels: K } = await setupNativeKernels());
  });

  // BK = 5 KV heads (more work items than threads), T not a multiple of any block, blocks above the
  // addon's 64-query clamp, windows shorter and longer than a block.
  const cases: [number, number, number, number, number | null][] = [
    [5, 150, 100, 48, null],
    [5, 150, 256, 512, 37],
    [3, 131, 7, 16, 70],
    [2, 97, 64, 200, null],
  ];
  for (const [BK, T, qb, kb, window] of cases) {
    it(`forward and backward BK=${BK} T=${T} q${qb}/k${kb} window ${window}`, () => {
      const [R, D] = [3, 16];
      const { q, k, v, dO } = attentionInputs(BK, R, T, D, 21);
      const g = { queryBlock: qb, keyBlock: kb, window, scale: 1 / Math.sqrt(D) };
      const want = tfKernels.attentionForward(q, [{ k, v, start: 0 }], 0, g);
      const got = K.attentionForward(q, [{ k, v, start: 0 }], 0, g);
      close(got.o, want.o, 1e-5, 'o');
      close(got.lse, want.lse, 1e-5, 'lse');
      const wantGrads = tfKernels.attentionBackward(q, k, v, want, dO, g);
      const grads = K.attentionBackward(q, k, v, want, dO, g);
      ['dq', 'dk', 'dv'].forEach((n, i) => close(grads[i]!, wantGrads[i]!, 1e-5, n));
      // The same bits on a second run: dq's per-thread partial sums do not depend on timing.
      const again = K.attentionBackward(q, k, v, want, dO, g);
      again.forEach((t, i) => expect(Buffer.from(t.dataSync().buffer).equals(Buffer.from(grads[i]!.dataSync().buffer)), `run 2, gradient ${i}`).toBe(true));
    });
  }

  it('forward over a cached prefix in several KV blocks, walked in key runs, with and without a window', () => {
    const [BK, R, D, past, Tq] = [4, 2, 8, 90, 70];
    const q = randn([BK, R, Tq, D], 31) as tf.Tensor4D;
    const k = randn([BK, past + Tq, D], 32, 2) as tf.Tensor3D;
    const v = randn([BK, past + Tq, D], 33) as tf.Tensor3D;
    let s = 0;
    const blocks: KvBlock[] = [50, 40, 70].map((n) => {
      const b = { k: tf.slice(k, [0, s, 0], [BK, n, D]) as tf.Tensor3D, v: tf.slice(v, [0, s, 0], [BK, n, D]) as tf.Tensor3D, start: s };
      s += n;
      return b;
    });
    for (const window of [null, 45]) {
      const g = { queryBlock: 256, keyBlock: 24, window, scale: 1 / Math.sqrt(D) };
      const want = tfKernels.attentionForward(q, blocks, past, g);
      const got = K.attentionForward(q, blocks, past, g);
      close(got.o, want.o, 1e-5, `o, window ${window}`);
      close(got.lse, want.lse, 1e-5, `lse, window ${window}`);
    }
  });

  it('one thread, and more threads than work items, give the same mathematics', () => {
    const [BK, R, T, D] = [2, 2, 70, 8];
    const q = randn([BK, R, T, D], 51) as tf.Tensor4D;
    const k = randn([BK, T, D], 52, 2) as tf.Tensor3D;
    const v = randn([BK, T, D], 53) as tf.Tensor3D;
    const dO = randn([BK, R, T, D], 54) as tf.Tensor4D;
    const g = { queryBlock: 32, keyBlock: 64, window: null, scale: 1 / Math.sqrt(D) }; // 4 backward items
    const want = tfKernels.attentionForward(q, [{ k, v, start: 0 }], 0, g);
    const wantGrads = tfKernels.attentionBackward(q, k, v, want, dO, g);
    const threads = addon.info().threads;
    try {
      for (const n of [1, 7]) {
        addon.setThreads(n);
        const got = K.attentionForward(q, [{ k, v, start: 0 }], 0, g);
        close(got.o, want.o, 1e-5, `o, ${n} threads`);
        const grads = K.attentionBackward(q, k, v, want, dO, g);
        ['dq', 'dk', 'dv'].forEach((name, i) => close(grads[i]!, wantGrads[i]!, 1e-5, `${name}, ${n} threads`));
      }
    } finally {
      addon.setThreads(threads);
    }
  });

  it('queries that see no key are an error, not NaN', () => {
    const q = randn([1, 1, 2, 4], 41) as tf.Tensor4D;
    const k = randn([1, 3, 4], 42) as tf.Tensor3D;
    // Keys at 10..12, queries at 0..1: every key lies in their future.
    expect(() => K.attentionForward(q, [{ k, v: k, start: 10 }], 0, { queryBlock: 4, window: null, scale: 1 })).toThrow(/sees no key/);
  });

  it('arrays too short for the shapes given throw a TypeError', () => {
    const f = (n: number) => new Float32Array(n);
    // lse one float short
    expect(() => addon.attentionForward(f(2 * 3 * 5 * 4), 2, 3, 5, 4, 0, 4, 0, -1, 1, [f(40)], [f(40)], [0], f(120), f(29), 1, false, false)).toThrow(TypeError);
    // a key block whose length is not a multiple of BK·D
    expect(() => addon.attentionForward(f(120), 2, 3, 5, 4, 0, 4, 0, -1, 1, [f(41)], [f(41)], [0], f(120), f(30), 1, false, false)).toThrow(TypeError);
    // keys and values of different lengths, a negative start
    expect(() => addon.attentionForward(f(120), 2, 3, 5, 4, 0, 4, 0, -1, 1, [f(40)], [f(48)], [0], f(120), f(30), 1, false, false)).toThrow(TypeError);
    expect(() => addon.attentionForward(f(120), 2, 3, 5, 4, 0, 4, 0, -1, 1, [f(40)], [f(40)], [-1], f(120), f(30))).toThrow(TypeError);
    // backward: dk one float short, a zero key block
    const args = (dk: number, kb: number) =>
      [f(120), f(40), f(40), f(120), f(30), f(120), 2, 3, 5, 4, 4, kb, -1, 1, f(120), f(dk), f(40), 1, false] as Parameters<NativeAddon['attentionBackward']>;
    expect(() => addon.attentionBackward(...args(39, 4))).toThrow(TypeError);
    expect(() => addon.attentionBackward(...args(40, 0))).toThrow(TypeError);
    expect(() => addon.attentionBackward(...args(40, 4))).not.toThrow();
  });
});
