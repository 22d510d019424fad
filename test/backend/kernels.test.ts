/**
 * The kernels seam: every implementation of each kernel (host JS / WebAssembly passes, native C +
 * BLAS) computes what the plain tf-op one does, on random inputs — attention with KV blocks, a cache
 * offset, sliding windows and key runs, its backward, SwiGLU with its gradient, RMSNorm, the LM-head
 * loss with padding, and the optimizer's host passes.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KvBlock, Kernels } from '../../src/backend/kernels.js';
import { hostKernels, jsHostPasses, wasmKernels } from '../../src/backend/kernels-host.js';
import { nativeKernels } from '../../src/backend/kernels-native.js';
import { tfKernels } from '../../src/backend/kernels-tf.js';
import { loadNative } from '../../src/backend/native.js';
import { setupBackend } from '../../src/backend/select.js';
import { attentionInputs, maxRelErr, nativeUsable, randn, rng } from './helpers.js';

const impls: [string, () => Kernels][] = [['host', () => hostKernels]];
if (nativeUsable) {
  impls.push([
    'native',
    () => {
      const r = loadNative();
      if (!r.ok) throw new Error(r.reason);
      return nativeKernels(r.blas.addon);
    },
  ]);
}

beforeAll(async () => {
  // Host and native kernels read tensors' data: the tfjs cpu backend, with tfjs's own kernels.
  await setupBackend({ backend: 'cpu', quiet: true });
});

function close(got: tf.Tensor, want: tf.Tensor, tol: number, what: string): void {
  expect(got.shape, what).toEqual(want.shape);
  expect(maxRelErr(got.dataSync(), want.dataSync()), what).toBeLessThan(tol);
}

/** Cut `[BK, T, D]` keys/values into blocks of the given lengths. */
function blocksOf(k: tf.Tensor3D, v: tf.Tensor3D, lengths: number[]): KvBlock[] {
  const [BK, , D] = k.shape;
  let s = 0;
  return lengths.map((n) => {
    const b = { k: tf.slice(k, [0, s, 0], [BK, n, D]) as tf.Tensor3D, v: tf.slice(v, [0, s, 0], [BK, n, D]) as tf.Tensor3D, start: s };
    s += n;
    return b;
  });
}

for (const [name, make] of impls) {
  describe(`${name} kernels equal the tf-op kernels`, () => {
    let K: Kernels;
    beforeAll(() => {
      K = make();
    });
    afterAll(() => {
      expect(K.name).toBe(name);
    });

    it('matMul with transposes', () => {
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
        const a = randn(ta ? [3, 7, 5] : [3, 5, 7], 1) as tf.Tensor3D;
        const b = randn(tb ? [3, 4, 7] : [3, 7, 4], 2) as tf.Tensor3D;
        close(K.matMul(a, b, ta, tb), tfKernels.matMul(a, b, ta, tb), 1e-6, `tA=${ta} tB=${tb}`);
      }
    });

    it('rmsNorm and swiGlu (forward)', () => {
      const x = randn([6, 24], 3, 2);
      const w = randn([24], 4);
      close(K.rmsNorm(x, w, 1e-6), tfKernels.rmsNorm(x, w, 1e-6), 1e-6, 'rmsNorm');
      const g = randn([5, 33], 5, 4) as tf.Tensor2D;
      const u = randn([5, 33], 6) as tf.Tensor2D;
      close(K.swiGlu(g, u), tfKernels.swiGlu(g, u), 1e-6, 'swiGlu');
    });

    // Bit for bit: the decoding step and the batched forward must give the same tokens (RoPE and FoPE
    // tables per KV head, partial rotary, GQA, batch 2); tables that do not fit x fall back to the tf ops.
    it('rotary (forward): the tf ops\' bits, per-KV-head tables and partial rotary included', () => {
      for (const [B, nKv, R, T, D, dim, G] of [[1, 3, 3, 7, 8, 8, 1], [2, 2, 2, 5, 12, 8, 2], [1, 2, 1, 4, 6, 6, 2]] as const) {
        const x = randn([B, nKv, R, T, D], 7 + D) as tf.Tensor5D;
        const cos = randn([1, G, 1, T, dim / 2], 8 + D) as tf.Tensor5D;
        const sin = randn([1, G, 1, T, dim / 2], 9 + D) as tf.Tensor5D;
        const got = K.rotary(x, cos, sin, dim);
        const want = tfKernels.rotary(x, cos, sin, dim);
        expect(got.shape).toEqual(want.shape);
        expect(Array.from(got.dataSync()), `B${B} nKv${nKv} R${R} T${T} D${D} dim${dim} G${G}`).toEqual(Array.from(want.dataSync()));
        tf.dispose([x, cos, sin, got, want]);
      }
      // A table of another length than x: the tf ops' broadcast (or their error), not a wrong rotation.
      const x = randn([1, 1, 1, 1, 4], 11) as tf.Tensor5D;
      const cos = randn([1, 1, 1, 3, 2], 12) as tf.Tensor5D;
      const sin = randn([1, 1, 1, 3, 2], 13) as tf.Tensor5D;
      expect(Array.from(K.rotary(x, cos, sin, 4).dataSync())).toEqual(Array.from(tfKernels.rotary(x, cos, sin, 4).dataSync()));
    });

    it('swiGluTrainable: value and gradients', () => {
      const g = randn([4, 37], 7, 4) as tf.Tensor2D;
      const u = randn([4, 37], 8) as tf.Tensor2D;
      const w = randn([4, 37], 9);
      const f = (k: Kernels) => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(k.swiGluTrainable(a as tf.Tensor2D, b as tf.Tensor2D), w)))([g, u]);
      close(K.swiGluTrainable(g, u), tfKernels.swiGlu(g, u), 1e-6, 'value');
      const [want, got] = [f(tfKernels), f(K)];
      for (let i = 0; i < 2; i++) close(got[i]!, want[i]!, 1e-5, `grad ${i}`);
    });

    // Training's rotary: the forward's bits, and the gradient of tfjs autodiff of the tf ops bit for bit
    // (GQA, per-KV-head FoPE tables G = nKv, partial rotary dim < D, batch 2).
    it('rotaryTrainable: the tf ops\' value and autodiff gradient, bit for bit', () => {
      for (const [B, nKv, R, T, D, dim, G] of [[1, 3, 3, 7, 8, 8, 1], [2, 2, 2, 5, 12, 8, 2], [2, 3, 1, 6, 10, 6, 3], [1, 2, 4, 9, 16, 16, 2]] as const) {
        const what = `B${B} nKv${nKv} R${R} T${T} D${D} dim${dim} G${G}`;
        const x = randn([B, nKv, R, T, D], 20 + D, 3) as tf.Tensor5D;
        const cos = randn([1, G, 1, T, dim / 2], 21 + D) as tf.Tensor5D;
        const sin = randn([1, G, 1, T, dim / 2], 22 + D) as tf.Tensor5D;
        const w = randn([B, nKv, R, T, D], 23 + D, 2);
        const f = (k: Kernels) => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(k.rotaryTrainable(a as tf.Tensor5D, cos, sin, dim), w)))(x);
        const [got, want] = [K.rotaryTrainable(x, cos, sin, dim), tfKernels.rotary(x, cos, sin, dim)];
        expect(Array.from(got.dataSync()), `value ${what}`).toEqual(Array.from(want.dataSync()));
        const [dGot, dWant] = [f(K), f(tfKernels)];
        expect(dGot.shape).toEqual(x.shape);
        expect(Array.from(dGot.dataSync()), `gradient ${what}`).toEqual(Array.from(dWant.dataSync()));
        tf.dispose([x, cos, sin, w, got, want, dGot, dWant]);
      }
    });

    // Rows not a multiple of the thread count nor of the C pass's row blocks, enough of them to be
    // threaded; a q/k-norm shaped 4-D input.
    it('rmsNormTrainable: rmsNorm\'s value and the gradients of tfjs autodiff of the tf ops', () => {
      for (const shape of [[1061, 64], [2, 3, 5, 24], [7, 40]]) {
        const H = shape[shape.length - 1]!;
        const x = randn(shape, 31 + H, 2);
        const w = randn([H], 32 + H);
        const dy = randn(shape, 33 + H);
        const eps = 1e-5;
        const f = (k: Kernels) => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(k.rmsNormTrainable(a, b, eps), dy)))([x, w]);
        expect(Array.from(K.rmsNormTrainable(x, w, eps).dataSync()), `value ${shape}`).toEqual(Array.from(K.rmsNorm(x, w, eps).dataSync()));
        close(K.rmsNormTrainable(x, w, eps), tfKernels.rmsNorm(x, w, eps), 1e-6, `value ${shape}`);
        const [got, want] = [f(K), f(tfKernels)];
        close(got[0]!, want[0]!, 1e-6, `dx ${shape}`);
        close(got[1]!, want[1]!, 1e-6, `dw ${shape}`);
        tf.dispose([x, w, dy, ...got, ...want]);
      }
    });

    // KV blocks of uneven lengths, a cached prefix (qStart > 0), sliding windows, key runs (keyBlock).
    const cases = [
      { R: 2, Tq: 13, past: 0, lengths: [13], qb: 4, kb: undefined, window: null },
      { R: 3, Tq: 9, past: 7, lengths: [5, 5, 6], qb: 4, kb: undefined, window: null },
      { R: 1, Tq: 1, past: 20, lengths: [8, 8, 5], qb: 256, kb: undefined, window: null },
      { R: 2, Tq: 21, past: 0, lengths: [21], qb: 5, kb: 4, window: 6 },
      { R: 2, Tq: 6, past: 11, lengths: [10, 7], qb: 3, kb: 4, window: 5 },
    ];
    for (const c of cases) {
      it(`attentionForward R=${c.R} Tq=${c.Tq} past=${c.past} blocks ${c.lengths} q${c.qb}/k${c.kb} window ${c.window}`, () => {
        const BK = 2;
        const D = 8;
        const Tk = c.past + c.Tq;
        const q = randn([BK, c.R, c.Tq, D], 10) as tf.Tensor4D;
        const k = randn([BK, Tk, D], 11, 3) as tf.Tensor3D;
        const v = randn([BK, Tk, D], 12) as tf.Tensor3D;
        const blocks = blocksOf(k, v, c.lengths);
        const g = { queryBlock: c.qb, keyBlock: c.kb, window: c.window, scale: 1 / Math.sqrt(D) };
        const want = tfKernels.attentionForward(q, blocks, c.past, g);
        const got = K.attentionForward(q, blocks, c.past, g);
        close(got.o, want.o, 1e-5, 'o');
        close(got.lse, want.lse, 1e-5, 'lse');
      });
    }

    for (const [T, qb, kb, window] of [[19, 4, 8, null], [24, 8, 5, 7], [16, 16, 16, null]] as [number, number, number, number | null][]) {
      it(`attentionBackward T=${T} q${qb}/k${kb} window ${window}`, () => {
        const [BK, R, D] = [2, 2, 8];
        const { q, k, v, dO } = attentionInputs(BK, R, T, D, 13);
        const g = { queryBlock: qb, keyBlock: kb, window, scale: 1 / Math.sqrt(D) };
        const out = tfKernels.attentionForward(q, [{ k, v, start: 0 }], 0, g);
        const want = tfKernels.attentionBackward(q, k, v, out, dO, g);
        const got = K.attentionBackward(q, k, v, out, dO, g);
        ['dq', 'dk', 'dv'].forEach((n, i) => close(got[i]!, want[i]!, 1e-5, n));
      });
    }

    for (const gradient of [true, false]) {
      it(`headLoss ${gradient ? 'with' : 'without'} gradients, padding rows and three chunks`, () => {
        const [N, H, V] = [10, 12, 37];
        const x = randn([N, H], 17) as tf.Tensor2D;
        const W = randn([V, H], 18) as tf.Tensor2D;
        const r = rng(19);
        const targets = Int32Array.from({ length: N }, (_, i) => (i % 4 === 3 ? -1 : Math.floor(r() * V)));
        const input = {
          N,
          H,
          V,
          chunks: [[0, 4], [4, 4], [8, 2]] as [number, number][],
          rows: (s: number, n: number) => tf.slice(x, [s, 0], [n, H]) as tf.Tensor2D,
          W,
          targets,
          tokens: targets.filter((t) => t >= 0).length,
          gradient,
          weightGrad: true,
        };
        const want = tfKernels.headLoss(input);
        const got = K.headLoss(input);
        close(got.loss, want.loss, 1e-6, 'loss');
        if (!gradient) {
          expect([got.dx, got.dW, want.dx, want.dW]).toEqual([null, null, null, null]);
          return;
        }
        close(got.dx!, want.dx!, 1e-5, 'dx');
        close(got.dW!, want.dW!, 1e-5, 'dW');
      });
    }

    it('headLoss with every row ignored: zero gradients (the weight gradient is not zero-filled first)', () => {
      const [N, H, V] = [6, 8, 40];
      const x = randn([N, H], 31) as tf.Tensor2D;
      const W = randn([V, H], 32) as tf.Tensor2D;
      const got = K.headLoss({
        N,
        H,
        V,
        chunks: [[0, 3], [3, 3]],
        rows: (s: number, n: number) => tf.slice(x, [s, 0], [n, H]) as tf.Tensor2D,
        W,
        targets: new Int32Array(N).fill(-1),
        tokens: 1,
        gradient: true,
        weightGrad: true,
      });
      expect(got.loss.dataSync()[0]).toBe(0);
      expect(Array.from(got.dW!.dataSync()).every((v) => v === 0)).toBe(true);
      expect(Array.from(got.dx!.dataSync()).every((v) => v === 0)).toBe(true);
      tf.dispose([x, W, got.loss, got.dx!, got.dW!]);
    });

    it('headLoss with most rows ignored: a chunk without targets, one target row, V a multiple of 4', () => {
      const [N, H, V] = [14, 8, 40];
      const x = randn([N, H], 21) as tf.Tensor2D;
      const W = randn([V, H], 22) as tf.Tensor2D;
      // Chunks [0,5) none valid, [5,10) only row 7, [10,14) rows 10 and 13 (target V − 1, the last column).
      const targets = Int32Array.from({ length: N }, () => -1);
      [targets[7], targets[10], targets[13]] = [3, 0, V - 1];
      const input = {
        N,
        H,
        V,
        chunks: [[0, 5], [5, 5], [10, 4]] as [number, number][],
        rows: (s: number, n: number) => tf.slice(x, [s, 0], [n, H]) as tf.Tensor2D,
        W,
        targets,
        tokens: 3,
        gradient: true,
        weightGrad: true,
      };
      const want = tfKernels.headLoss(input);
      const got = K.headLoss(input);
      close(got.loss, want.loss, 1e-6, 'loss');
      close(got.dx!, want.dx!, 1e-5, 'dx');
      close(got.dW!, want.dW!, 1e-5, 'dW');
      // Ignored rows get no gradient at all.
      const dx = got.dx!.dataSync();
      for (const r of [0, 4, 5, 6, 8, 9, 11, 12]) expect(Array.from(dx.subarray(r * H, (r + 1) * H)).every((v) => v === 0), `dx row ${r}`).toBe(true);
    });

    it('host passes: sum of squares and the AdamW update equal the JavaScript ones bit for bit', () => {
      const js = jsHostPasses(false);
      const r = rng(20);
      const n = 10_003;
      const vec = () => Float32Array.from({ length: n }, () => r() - 0.5);
      const x = vec();
      expect(K.host!.sumSquares(x, 0.25)).toBe(js.sumSquares(x, 0.25));
      // Many blocks (threaded in the addon) and a partial last one; and the value is the sum of squares.
      const long = Float32Array.from({ length: 5 * 16384 + 13 }, () => r() - 0.5);
      expect(K.host!.sumSquares(long, 1.5)).toBe(js.sumSquares(long, 1.5));
      let plain = 1.5;
      for (const v of long) plain += v * v;
      expect(Math.abs(js.sumSquares(long, 1.5) - plain) / plain).toBeLessThan(1e-13);
      for (const len of [0, 1, 7, 8, 9, 16383, 16384, 16385]) expect(K.host!.sumSquares(long.subarray(0, len), 0), `length ${len}`).toBe(js.sumSquares(long.subarray(0, len), 0));
      const [p, g, m, v] = [vec(), vec(), vec(), vec().map(Math.abs)];
      const hyper = new Float64Array([0.9, 0.95, 0.19, 0.0975, 1e-8, 1e-3, 1e-4, 0.5]);
      const run = (passes: typeof js) => {
        const [mm, vv, out] = [m.slice(), v.slice(), new Float32Array(n)];
        passes.adamw(p, g, mm, vv, out, hyper);
        return [out, mm, vv];
      };
      // In place (out = p, the trainer's usual case: the addon runs another copy of its loop for it).
      const runInPlace = (passes: typeof js) => {
        const [pp, mm, vv] = [p.slice(), m.slice(), v.slice()];
        passes.adamw(pp, g, mm, vv, pp, hyper);
        return [pp, mm, vv];
      };
      const [want, got, gotInPlace] = [run(js), run(K.host!), runInPlace(K.host!)];
      got.forEach((a, i) => expect(Buffer.from(a.buffer).equals(Buffer.from(want[i]!.buffer)), `array ${i}`).toBe(true));
      gotInPlace.forEach((a, i) => expect(Buffer.from(a.buffer).equals(Buffer.from(want[i]!.buffer)), `in place, array ${i}`).toBe(true));
    });
  });
}

describe('wasm kernels', () => {
  it('are the tf ops with JS-memory optimizer passes that never write in place', () => {
    expect(wasmKernels.attentionForward).toBe(tfKernels.attentionForward);
    const t = tf.tensor1d([1, 2, 3]);
    expect(wasmKernels.host!.writableInPlace(t)).toBe(false);
    expect(tfKernels.host).toBeNull();
  });
});
