/**
 * The addon's attention and rotary on token-major rows (the q/k/v projections' `[B·T, n·D]` output,
 * addressed by row strides): the same bits as the head-major kernels on the transposed operands —
 * forward and backward, GQA (R > 1) and R = 1, batches B > 1, sequence lengths that are not multiples
 * of the blocks, sliding windows, queries after a cached prefix over head-major (a KV cache's) or
 * token-major key blocks; rows that do not fit the heads are an error.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Kernels, KvBlock, TokenHeads, TokenMajorKernels } from '../../src/backend/kernels.js';
import type { NativeAddon } from '../../src/backend/native.js';
import { FopeifyError } from '../../src/errors.js';
import { expectIdentical, nativeUsable, randn, setupNativeKernels } from './helpers.js';

/** Head-major `[B·nKv, R, T, D]` (or `[B·nKv, T, D]`) as token-major rows `[B·T, nKv·R·D]`. */
function rows(x: tf.Tensor, h: TokenHeads): tf.Tensor2D {
  const T = x.rank === 4 ? x.shape[2]! : x.shape[1]!;
  const R = x.rank === 4 ? h.R : 1;
  return tf.reshape(tf.transpose(tf.reshape(x, [h.B, h.nKv, R, T, h.D]), [0, 3, 1, 2, 4]), [h.B * T, h.nKv * R * h.D]) as tf.Tensor2D;
}

/** Keys `[B·nKv, T, D]` as a token-major block `[B, T, nKv·D]`. */
function keyRows(x: tf.Tensor3D, h: TokenHeads): tf.Tensor3D {
  return tf.reshape(rows(x, h), [h.B, x.shape[1], h.nKv * h.D]) as tf.Tensor3D;
}

describe.skipIf(!nativeUsable)('native token-major attention and rotary', () => {
  let K: Kernels;
  let tm: TokenMajorKernels;
  let addon: NativeAddon;
  beforeAll(async () => {
    ({ addon, kernels: K } = await setupNativeKernels());
    tm = K.tokenMajor!;
  });

  // [B, nKv, R, T, D, queryBlock, keyBlock, window]
  const cases: [number, number, number, number, number, number, number, number | null][] = [
    [1, 3, 3, 150, 16, 100, 48, null], // GQA, T not a multiple of any block
    [2, 2, 3, 131, 8, 7, 16, 70], // B > 1, window
    [3, 1, 2, 97, 8, 64, 200, null], // B > 1, one KV head
    [2, 2, 1, 70, 8, 32, 24, 45], // nH = nKv
  ];
  for (const [B, nKv, R, T, D, qb, kb, window] of cases) {
    it(`forward and backward B=${B} nKv=${nKv} R=${R} T=${T} q${qb}/k${kb} window ${window}: the head-major bits`, () => {
      const h: TokenHeads = { B, nKv, R, D };
      const BK = B * nKv;
      const q = randn([BK, R, T, D], 61) as tf.Tensor4D;
      const k = randn([BK, T, D], 62, 2) as tf.Tensor3D;
      const v = randn([BK, T, D], 63) as tf.Tensor3D;
      const dO = randn([BK, R, T, D], 64) as tf.Tensor4D;
      const g = { queryBlock: qb, keyBlock: kb, window, scale: 1 / Math.sqrt(D) };
      const want = K.attentionForward(q, [{ k, v, start: 0 }], 0, g);
      const got = tm.attentionForward(rows(q, h), [{ k: keyRows(k, h), v: keyRows(v, h), start: 0 }], true, 0, g, h);
      expectIdentical(got.o, rows(want.o, h));
      expectIdentical(got.lse, want.lse);
      const wantGrads = K.attentionBackward(q, k, v, want, dO, g);
      const grads = tm.attentionBackward(rows(q, h), rows(k, h), rows(v, h), got, rows(dO, h), g, h);
      grads.forEach((t, i) => expectIdentical(t, rows(wantGrads[i]!, h)));
    });
  }

  it('queries after a cached prefix: head-major (a KV cache) and token-major key blocks, with and without a window', () => {
    const [B, nKv, R, D, past, Tq] = [2, 2, 3, 8, 90, 70];
    const h: TokenHeads = { B, nKv, R, D };
    const BK = B * nKv;
    const q = randn([BK, R, Tq, D], 71) as tf.Tensor4D;
    const k = randn([BK, past + Tq, D], 72, 2) as tf.Tensor3D;
    const v = randn([BK, past + Tq, D], 73) as tf.Tensor3D;
    let s = 0;
    const blocks: KvBlock[] = [50, 40, 70].map((n) => {
      const b = { k: tf.slice(k, [0, s, 0], [BK, n, D]) as tf.Tensor3D, v: tf.slice(v, [0, s, 0], [BK, n, D]) as tf.Tensor3D, start: s };
      s += n;
      return b;
    });
    const tokenBlocks = blocks.map((b) => ({ k: keyRows(b.k, h), v: keyRows(b.v, h), start: b.start }));
    for (const window of [null, 45]) {
      const g = { queryBlock: 256, keyBlock: 24, window, scale: 1 / Math.sqrt(D) };
      const want = K.attentionForward(q, blocks, past, g);
      for (const [kvTokens, bs] of [[false, blocks], [true, tokenBlocks]] as const) {
        const got = tm.attentionForward(rows(q, h), bs, kvTokens, past, g, h);
        expectIdentical(got.o, rows(want.o, h));
        expectIdentical(got.lse, want.lse);
      }
    }
  });

  for (const G of [1, 3]) {
    it(`rotary of token-major rows, tables of ${G} group(s), partial rotary: the head-major bits, and its gradient`, () => {
      const [B, nKv, R, T, D, dim] = [2, 3, 2, 37, 12, 8];
      const h: TokenHeads = { B, nKv, R, D };
      const x = randn([B, nKv, R, T, D], 81) as tf.Tensor5D;
      const cos = randn([1, G, 1, T, dim / 2], 82) as tf.Tensor5D;
      const sin = randn([1, G, 1, T, dim / 2], 83) as tf.Tensor5D;
      const flat = (t: tf.Tensor) => rows(tf.reshape(t, [B * nKv, R, T, D]), h);
      expectIdentical(tm.rotary(flat(x), h, cos, sin, dim), flat(K.rotary(x, cos, sin, dim)));
      const dy = randn([B, nKv, R, T, D], 84) as tf.Tensor5D;
      const want = tf.grad((xi: tf.Tensor5D) => tf.sum(tf.mul(K.rotaryTrainable(xi, cos, sin, dim), dy)))(x);
      const dyRows = flat(dy);
      const got = tf.grad((xi: tf.Tensor2D) => tf.sum(tf.mul(tm.rotaryTrainable(xi, h, cos, sin, dim), dyRows)))(flat(x));
      expectIdentical(got, flat(want));
      // Tables the C pass does not take (one position, broadcast) go to the tf ops: the head-major result.
      const [c1, s1] = [cos, sin].map((t) => tf.slice(t, [0, 0, 0, 5, 0], [1, G, 1, 1, dim / 2]) as tf.Tensor5D);
      expectIdentical(tm.rotary(flat(x), h, c1!, s1!, dim), flat(K.rotary(x, c1!, s1!, dim)));
      const viaOps = tf.grad((xi: tf.Tensor2D) => tf.sum(tf.mul(tm.rotaryTrainable(xi, h, c1!, s1!, dim), dyRows)))(flat(x));
      const wantOps = tf.grad((xi: tf.Tensor5D) => tf.sum(tf.mul(K.rotaryTrainable(xi, c1!, s1!, dim), dy)))(x);
      expectIdentical(viaOps, flat(wantOps));
    });
  }

  it('rows that do not hold the heads given are a FopeifyError; a KV head count not dividing BK a TypeError', () => {
    const h: TokenHeads = { B: 2, nKv: 2, R: 3, D: 4 };
    const q = tf.zeros([2 * 5, 2 * 3 * 4]) as tf.Tensor2D;
    const k = tf.zeros([2, 5, 2 * 4]) as tf.Tensor3D;
    const g = { queryBlock: 4, window: null, scale: 1 };
    expect(() => tm.attentionForward(q, [{ k, v: k, start: 0 }], true, 0, g, { ...h, R: 2 })).toThrow(FopeifyError);
    expect(() => tm.attentionForward(tf.zeros([9, 24]) as tf.Tensor2D, [{ k, v: k, start: 0 }], true, 0, g, h)).toThrow(FopeifyError);
    expect(() => tm.rotary(q, { ...h, B: 3 }, tf.zeros([1, 1, 1, 5, 2]) as tf.Tensor5D, tf.zeros([1, 1, 1, 5, 2]) as tf.Tensor5D, 4)).toThrow(FopeifyError);
    const f = (n: number) => new Float32Array(n);
    // BK = 4 with 3 KV heads per token; nKv 0
    expect(() => addon.attentionForward(f(120), 4, 3, 5, 2, 0, 4, 0, -1, 1, [f(40)], [f(40)], [0], f(120), f(60), 3, true, true)).toThrow(TypeError);
    expect(() => addon.attentionForward(f(120), 4, 3, 5, 2, 0, 4, 0, -1, 1, [f(40)], [f(40)], [0], f(120), f(60), 0, true, true)).toThrow(TypeError);
    expect(() => addon.attentionForward(f(120), 4, 3, 5, 2, 0, 4, 0, -1, 1, [f(40)], [f(40)], [0], f(120), f(60), 2, true, true)).not.toThrow();
    const args = (nKv: number) => [f(120), f(40), f(40), f(120), f(60), f(120), 4, 3, 5, 2, 4, 4, -1, 1, f(120), f(40), f(40), nKv, true] as Parameters<NativeAddon['attentionBackward']>;
    expect(() => addon.attentionBackward(...args(3))).toThrow(TypeError);
    expect(() => addon.attentionBackward(...args(4))).not.toThrow();
  });
});
