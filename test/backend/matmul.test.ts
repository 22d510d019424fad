/**
 * The native matmul kernels against tfjs's own, on the cpu backend (and wasm when it loads).
 * Skipped when the addon is not built; CI builds it (libopenblas0 + npm run build:native) and sets
 * FOPEIFY_EXPECT_NATIVE=1 so that "skipped" cannot pass silently there.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planMatMul } from '../../src/backend/matmul.js';
import { restoreKernels } from '../../src/backend/registry.js';
import { setupBackend, type BackendInfo } from '../../src/backend/select.js';
import { nativeUsable, expectClose, randn, withPlainKernels } from './helpers.js';

describe('planMatMul (pure)', () => {
  it('uses one batched call for equal batches', () => {
    const p = planMatMul([4, 3, 5], [4, 5, 6], false, false);
    expect(p.outShape).toEqual([4, 3, 6]);
    expect(p.calls).toEqual([{ m: 3, batch: 4, aOff: 0, strideA: 15, bOff: 0, strideB: 30, cOff: 0, strideC: 18 }]);
  });
  it('folds [b, m, k] x [k, n] into one big GEMM', () => {
    const p = planMatMul([2, 4, 3, 5], [5, 6], false, false);
    expect(p.outShape).toEqual([2, 4, 3, 6]);
    expect(p.calls).toEqual([{ m: 24, batch: 1, aOff: 0, strideA: 0, bOff: 0, strideB: 0, cOff: 0, strideC: 0 }]);
  });
  it('broadcasts a batch-1 side with stride 0', () => {
    const p = planMatMul([1, 3, 5], [4, 5, 6], false, false);
    expect(p.calls[0]).toMatchObject({ batch: 4, strideA: 0, strideB: 30 });
    const q = planMatMul([4, 5, 3], [5, 6], true, false);
    expect(q.calls[0]).toMatchObject({ m: 3, batch: 4, strideA: 15, strideB: 0 });
  });
  it('broadcasts per dimension in the general case', () => {
    const p = planMatMul([2, 1, 3, 5], [1, 3, 5, 6], false, false);
    expect(p.outShape).toEqual([2, 3, 3, 6]);
    expect(p.calls.map((c) => [c.aOff / 15, c.bOff / 30, c.cOff / 18])).toEqual([
      [0, 0, 0],
      [0, 1, 1],
      [0, 2, 2],
      [1, 0, 3],
      [1, 1, 4],
      [1, 2, 5],
    ]);
  });
  it('rejects mismatched inner dimensions like tfjs', () => {
    expect(() => planMatMul([3, 4], [5, 6], false, false)).toThrow(/inner shapes/);
    expect(() => planMatMul([2, 3, 4], [3, 4, 6], false, false)).toThrow(/broadcast/);
  });
});

const shapes: Array<{ a: number[]; b: number[]; ta: boolean; tb: boolean }> = [];
for (const ta of [false, true]) {
  for (const tb of [false, true]) {
    const m = 33;
    const k = 47;
    const n = 29;
    const A = (batch: number[]) => [...batch, ...(ta ? [k, m] : [m, k])];
    const B = (batch: number[]) => [...batch, ...(tb ? [n, k] : [k, n])];
    shapes.push({ a: A([]), b: B([]), ta, tb }); // plain 2-D
    shapes.push({ a: A([3]), b: B([3]), ta, tb }); // batched
    shapes.push({ a: A([2, 3]), b: B([]), ta, tb }); // broadcast B (linear layer on 4-D activations)
    shapes.push({ a: A([]), b: B([4]), ta, tb }); // broadcast A
    shapes.push({ a: A([2, 1]), b: B([1, 3]), ta, tb }); // broadcast both
  }
}

function suite(backendName: 'native' | 'wasm') {
  let info: BackendInfo;
  beforeAll(async () => {
    info = await setupBackend({ backend: backendName, threads: 2, quiet: true });
  });
  afterAll(() => restoreKernels());

  it('is accelerated', () => {
    expect(info.accelerated).toBe(true);
    expect(info.replacedKernels).toEqual(expect.arrayContaining(['BatchMatMul', '_FusedMatMul']));
  });

  for (const s of shapes) {
    // tfjs-cpu indexes broadcast batches as i % batch, which is wrong for [2,1] x [1,3]; compare
    // that case against an explicit tile instead (see matmul.ts).
    const both = s.a.length === 4 && s.b.length === 4;
    it(`matMul ${JSON.stringify(s.a)} x ${JSON.stringify(s.b)} tA=${s.ta} tB=${s.tb}`, async () => {
      const a = randn(s.a, 1);
      const b = randn(s.b, 2);
      const got = tf.matMul(a, b, s.ta, s.tb);
      const want = await withPlainKernels(() => {
        if (!both) return tf.matMul(a, b, s.ta, s.tb);
        const at = tf.tile(a, [1, 3, 1, 1]);
        const bt = tf.tile(b, [2, 1, 1, 1]);
        return tf.matMul(at, bt, s.ta, s.tb);
      }, { backend: backendName, threads: 2 });
      expectClose(got, want, 1e-5);
    });
  }

  for (const activation of ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu', 'prelu'] as const) {
    for (const biasShape of [null, [29], [1, 29], [], [33, 29]] as const) {
      it(`fused matMul bias=${JSON.stringify(biasShape)} activation=${activation}`, async () => {
        const a = randn([33, 47], 3);
        const b = randn([29, 47], 4);
        const bias = biasShape ? randn([...biasShape], 5) : undefined;
        const prelu = activation === 'prelu' ? randn([29], 6, 0.5) : undefined;
        const got = tf.fused.matMul({ a, b, transposeB: true, bias, activation, preluActivationWeights: prelu, leakyreluAlpha: 0.1 });
        // Reference: the unfused ops with tfjs's own kernels. (Not tfjs's fused kernel: on wasm it
        // accepts only rank-1 bias and gets transposeB + bias wrong in 4.22.)
        const want = await withPlainKernels(() => {
          let y = tf.matMul(a, b, false, true);
          if (bias) y = tf.add(y, bias);
          switch (activation) {
            case 'linear': return y;
            case 'relu': return tf.relu(y);
            case 'relu6': return tf.relu6(y);
            case 'elu': return tf.elu(y);
            case 'sigmoid': return tf.sigmoid(y);
            case 'leakyrelu': return tf.leakyRelu(y, 0.1);
            case 'prelu': return tf.prelu(y, prelu!);
          }
        }, { backend: backendName, threads: 2 });
        expectClose(got, want, 1e-5);
      });
    }
  }

  it('gradients through tf.grads match (matMul, batched, fused with bias+relu)', async () => {
    const x = randn([2, 3, 17, 24], 7);
    const w = randn([24, 19], 8);
    const k = randn([2, 3, 19, 17], 9);
    const bias = randn([19], 10);
    const f = (x: tf.Tensor, w: tf.Tensor, bias: tf.Tensor) => {
      // (tfjs's BatchMatMul gradient does not reduce over broadcast batch dims, so a linear layer on
      // 4-D activations must be written on 2-D reshapes, as models do.)
      const h = tf.reshape(tf.matMul(tf.reshape(x, [-1, 24]), w), [2, 3, 17, 19]);
      const att = tf.matMul(h, k, false, false); // [2,3,17,17]
      const y = tf.fused.matMul({
        a: tf.reshape(tf.matMul(att, x), [-1, 24]),
        b: w,
        bias,
        activation: 'relu',
      });
      return tf.sum(tf.mul(y, y));
    };
    const g = tf.grads(f);
    const got = g([x, w, bias]);
    const want = await withPlainKernels(() => g([x, w, bias]), { backend: backendName, threads: 2 });
    for (let i = 0; i < got.length; i++) expectClose(got[i]!, want[i]!, 2e-5);
  });

  it('flushes denormals inside the BLAS only: JavaScript keeps IEEE denormals', () => {
    const tiny = randn([64, 64], 11, 1e-20);
    const p = tf.matMul(tiny, tiny); // products ~1e-40: denormal in float32, flushed to zero by the BLAS
    expect(Math.max(...Array.from(p.dataSync(), Math.abs))).toBeLessThan(1e-37);
    const x = Number('1e-160');
    expect(x * x).toBeGreaterThan(0); // a double denormal, computed on the main thread after the call
    expect(new Float32Array([Number('1e-40')])[0]).toBeGreaterThan(0);
  });

  it('handles empty and degenerate shapes', () => {
    expect(tf.matMul(tf.zeros([0, 4]), tf.zeros([4, 3])).shape).toEqual([0, 3]);
    const z = tf.matMul(tf.ones([2, 0]), tf.ones([0, 3]));
    expect(Array.from(z.dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(tf.matMul(tf.tensor2d([[2]]), tf.tensor2d([[3]])).dataSync())).toEqual([6]);
  });

  it.skipIf(backendName === 'wasm')('falls back to tfjs for int32', () => {
    const a = tf.tensor2d([[1, 2], [3, 4]], [2, 2], 'int32');
    const r = tf.matMul(a, a);
    expect(r.dtype).toBe('int32');
    expect(Array.from(r.dataSync())).toEqual([7, 10, 15, 22]);
  });
}

describe.skipIf(!nativeUsable)('native matmul on cpu', () => suite('native'));
describe.skipIf(!nativeUsable)('native matmul on wasm', () => suite('wasm'));
