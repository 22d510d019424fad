/**
 * fopeify's JS kernels for the cpu backend must give bit-identical results to tfjs-cpu's own: each
 * case runs the kernel with ours installed and again with tfjs's, and compares every float32 bit
 * (NaN == NaN). Needs no native addon.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collapse, installFastKernels } from '../../src/backend/fast-kernels.js';
import { NATIVE_MIN_COPY } from '../../src/backend/fast-movement.js';
import { unfilledFloat32 } from '../../src/backend/cpu-data.js';
import { restoreKernels } from '../../src/backend/registry.js';
import { installSegmentSum } from '../../src/backend/segment-sum.js';
import { makeWorkload } from '../../src/backend/workload.js';
import { loadNative, type NativeAddon } from '../../src/backend/native.js';
import { expectIdentical, nativeUsable, rng } from './helpers.js';

/** Random values with the awkward ones mixed in. */
function data(shape: number[], seed: number, dtype: 'float32' | 'int32' = 'float32', specials = true): tf.Tensor {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  if (dtype === 'int32') return tf.tensor(Int32Array.from({ length: n }, () => Math.floor(r() * 200 - 100)), shape, 'int32');
  const v = new Float32Array(n);
  const odd = [NaN, Infinity, -Infinity, -0, 0, 1e-40, -3.5e38, 1];
  for (let i = 0; i < n; i++) v[i] = specials && r() < 0.08 ? odd[Math.floor(r() * odd.length)]! : (r() * 2 - 1) * 4;
  return tf.tensor(v, shape, 'float32');
}

type Run = () => tf.Tensor | tf.Tensor[];
const run = (name: string, inputs: Record<string, tf.Tensor> | tf.Tensor[], attrs: Record<string, unknown> = {}): Run => () =>
  tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap, attrs as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];

/** The addon, when built: large arithmetic then runs in C and must give the same bits. */
let addon: NativeAddon | undefined;

function same(fn: Run) {
  installFastKernels('cpu', addon);
  const ours = fn();
  restoreKernels('cpu');
  const theirs = fn();
  const a = Array.isArray(ours) ? ours : [ours];
  const b = Array.isArray(theirs) ? theirs : [theirs];
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expectIdentical(a[i]!, b[i]!);
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  (tf.backend() as { firstUse?: boolean }).firstUse = false;
});
afterAll(() => restoreKernels());

describe('collapse (pure)', () => {
  it('merges contiguous dims and drops ones', () => {
    expect(collapse([2, 3, 4], [[12, 4, 1]])).toEqual({ shape: [24], strides: [[1]] });
    expect(collapse([2, 1, 3, 4], [[12, 12, 4, 1], [0, 0, 0, 1]])).toEqual({ shape: [6, 4], strides: [[4, 1], [0, 1]] });
    expect(collapse([1, 1], [[1, 1]])).toEqual({ shape: [1], strides: [[0]] });
  });
});

const big: Array<[number[], number[]]> = [
  [[64, 200], [64, 200]],
  [[64, 200], [200]],
  [[64, 200], [64, 1]],
  [[8, 40, 50], [8, 1, 50]],
  [[100, 100], []],
  [[], [100, 100]],
  [[40, 1, 300], [1, 30, 1]],
];

// 65536+ output elements: the addon splits these over its thread team at 16-element boundaries, in the
// middle of rows (odd row lengths), of a single collapsed row and of broadcast dimensions.
const team: Array<[number[], number[]]> = [
  [[301, 257], [301, 257]],
  [[301, 257], [257]],
  [[301, 257], [301, 1]],
  [[3, 111, 257], [3, 1, 257]],
  [[300, 301], []],
  [[41, 1, 2001], [1, 31, 1]],
];

// The arithmetic kernels, in C through the addon (when built) for arrays of 8192+ elements.
describe.runIf(nativeUsable)('native elementwise arithmetic', () => {
  beforeAll(() => {
    const r = loadNative({ threads: 2 });
    if (r.ok) addon = r.blas.addon;
  });
  afterAll(() => {
    addon = undefined;
  });
  it('is available', () => {
    expect(typeof addon?.binary).toBe('function');
  });
  for (const k of ['Add', 'Sub', 'Multiply', 'RealDiv', 'SquaredDifference']) {
    it(k, () => {
      big.forEach(([sa, sb], i) => same(run(k, { a: data(sa, 200 + i), b: data(sb, 300 + i) })));
      team.forEach(([sa, sb], i) => same(run(k, { a: data(sa, 500 + i), b: data(sb, 600 + i) })));
    });
  }
  for (const k of ['Neg', 'Square', 'Sqrt', 'Rsqrt', 'Relu', 'Abs']) {
    it(k, () => same(run(k, { x: data([90, 101], 400) })));
  }
  it('a training step stays bit-identical', () => {
    const w = makeWorkload(tf, { dim: 64, heads: 4, ffn: 160, layers: 1, vocab: 64, tokens: 64, seed: 9 });
    installFastKernels('cpu', addon);
    const ours = w.step();
    restoreKernels('cpu');
    const theirs = w.step();
    expectIdentical(ours.loss, theirs.loss);
    ours.grads.forEach((g, i) => expectIdentical(g, theirs.grads[i]!));
    w.dispose();
  });
});

// The movement kernels' copies of NATIVE_MIN_COPY+ elements run in the addon's C copy (its threads:
// native-passes.test.ts); smaller ones stay in JS. Each case: the same bits as tfjs's own kernel
// and as the JS path, and the C copy counted so a silent fallback to JS would fail the test.
describe.runIf(nativeUsable)('native data movement', () => {
  let calls = 0;
  let native: NativeAddon;
  beforeAll(() => {
    const r = loadNative({ threads: 2 });
    if (!r.ok) throw new Error(r.reason);
    native = r.blas.addon;
    const counted = { ...native, copyStrided: (...a: Parameters<NativeAddon['copyStrided']>) => (calls++, native.copyStrided(...a)) };
    addon = counted;
  });
  afterAll(() => {
    addon = undefined;
  });
  /** Ours with the addon, ours in JS alone and tfjs's: the same bits; `c` C copies made. */
  function sameAll(fn: Run, c: number) {
    calls = 0;
    same(fn);
    expect(calls, 'C copies').toBe(c);
    const saved = addon;
    addon = undefined;
    try {
      same(fn);
    } finally {
      addon = saved;
    }
  }
  const big = (shape: number[], seed: number, dtype: 'float32' | 'int32' = 'float32') => {
    expect(shape.reduce((a, b) => a * b, 1)).toBeGreaterThanOrEqual(NATIVE_MIN_COPY);
    return data(shape, seed, dtype);
  };
  it('Transpose: the heads layout, odd shapes, int32 and bool, large and small', () => {
    const heads = big([1, 700, 9, 64], 40);
    sameAll(run('Transpose', { x: heads }, { perm: [0, 2, 1, 3] }), 1);
    sameAll(run('Transpose', { x: big([2, 1100, 3, 64], 41) }, { perm: [0, 2, 1, 3] }), 1);
    const odd = big([3, 37, 5, 29], 42);
    for (const perm of [[0, 2, 1, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 0, 2, 3]]) sameAll(run('Transpose', { x: odd }, { perm }), 1);
    sameAll(run('Transpose', { x: big([97, 101], 43, 'int32') }, { perm: [1, 0] }), 1);
    sameAll(run('Transpose', { x: big([13, 33, 31], 44, 'int32') }, { perm: [2, 0, 1] }), 1);
    const flags = tf.tensor(Array.from({ length: 91 * 93 }, (_, i) => (i * 7) % 3 === 0), [91, 93], 'bool');
    sameAll(run('Transpose', { x: flags }, { perm: [1, 0] }), 1);
    sameAll(run('Transpose', { x: data([1, 9, 9, 64], 45) }, { perm: [0, 2, 1, 3] }), 0); // 5184 elements: JS
    sameAll(run('Transpose', { x: data([7, 11, 13], 46, 'int32') }, { perm: [2, 1, 0] }), 0);
  });
  it('Transpose of [1, 2048, 9, 64] (the heads layout at 2048 tokens)', () => {
    sameAll(run('Transpose', { x: big([1, 2048, 9, 64], 47) }, { perm: [0, 2, 1, 3] }), 1);
  });
  it('Slice, SplitV, PadV2 and Concat', () => {
    const x = big([5, 47, 71], 48);
    sameAll(run('Slice', { x }, { begin: [1, 2, 3], size: [4, 44, 67] }), 1);
    sameAll(run('Slice', { x }, { begin: [0, 0, 0], size: [3, -1, -1] }), 0); // contiguous: a view
    sameAll(run('Slice', { x: big([90, 130], 49, 'int32') }, { begin: [3, 1], size: [85, 127] }), 1);
    sameAll(run('SplitV', { x }, { numOrSizeSplits: [35, 36], axis: -1 }), 2); // 8225 and 8460 elements
    sameAll(run('SplitV', { x: big([4, 3100], 50, 'int32') }, { numOrSizeSplits: [2049, -1], axis: 1 }), 1); // 1051·4 < NATIVE_MIN_COPY
    sameAll(run('PadV2', { x }, { paddings: [[0, 1], [2, 0], [3, 5]], constantValue: 0 }), 1);
    sameAll(run('PadV2', { x: big([91, 93], 51, 'int32') }, { paddings: [[1, 1], [2, 3]], constantValue: -4 }), 1);
    sameAll(run('PadV2', { x: data([9, 10], 52) }, { paddings: [[1, 1], [2, 3]], constantValue: 2.5 }), 0);
    const [a, b] = [big([6, 23, 67], 53), big([6, 23, 67], 54)];
    sameAll(run('Concat', [a, b], { axis: 2 }), 2);
    sameAll(run('Concat', [a, b, a], { axis: 1 }), 3);
    sameAll(run('Concat', [a, data([1, 23, 67], 55)], { axis: 0 }), 1); // the small input: JS
    sameAll(run('Concat', [big([40, 301], 56, 'int32'), big([40, 205], 57, 'int32')], { axis: -1 }), 2);
  });
});

describe('unfilledFloat32', () => {
  it('is an array of its own of n elements, large or small', () => {
    for (const n of [0, 5, 4095, 4096, 100_003]) {
      const a = unfilledFloat32(n);
      expect(a).toBeInstanceOf(Float32Array);
      expect([a.length, a.byteOffset, a.buffer.byteLength]).toEqual([n, 0, n * 4]);
    }
  });
});

describe('binary kernels (broadcasting)', () => {
  const pairs: Array<[number[], number[]]> = [
    [[3, 4, 5], [3, 4, 5]],
    [[3, 4, 5], [5]],
    [[3, 4, 5], [4, 1]],
    [[3, 1, 5], [1, 4, 1]],
    [[4, 1], [3, 4, 5]],
    [[], [2, 3]],
    [[2, 3], []],
    [[1], [1]],
    [[0, 3], [3]],
    [[2, 3, 70], [2, 1, 70]],
  ];
  for (const k of ['Add', 'Sub', 'Multiply', 'RealDiv', 'Maximum', 'Minimum', 'SquaredDifference', 'Pow']) {
    it(k, () => {
      pairs.forEach(([sa, sb], i) => same(run(k, { a: data(sa, 10 + i), b: data(sb, 100 + i) })));
    });
  }
  for (const k of ['Add', 'Sub', 'Multiply']) {
    it(`${k} int32`, () => {
      pairs.forEach(([sa, sb], i) => same(run(k, { a: data(sa, 10 + i, 'int32'), b: data(sb, 100 + i, 'int32') })));
    });
  }
});

describe('unary kernels', () => {
  for (const k of ['Neg', 'Exp', 'Log', 'Sqrt', 'Rsqrt', 'Square', 'Sigmoid', 'Tanh', 'Relu', 'Abs']) {
    it(k, () => {
      same(run(k, { x: data([5, 37], 7) }));
      same(run(k, { x: data([], 8) }));
    });
  }
  it('falls back for int32', () => same(run('Neg', { x: data([4, 5], 9, 'int32') })));
});

describe('reductions', () => {
  const axesList: Array<number | number[] | null> = [null, 0, 1, 2, -1, [0, 1], [1, 2], [0, 2], [2, 0], [0, 1, 2]];
  for (const k of ['Sum', 'Mean', 'Max']) {
    it(k, () => {
      const x = data([4, 5, 67], 11);
      const attrName = k === 'Max' ? 'reductionIndices' : 'axis';
      for (const axis of axesList) {
        for (const keepDims of [false, true]) same(run(k, { x }, { [attrName]: axis, keepDims }));
      }
      same(run(k, { x: data([300], 12, 'float32', false) }, { [attrName]: 0, keepDims: false }));
    });
  }
});

describe('softmax', () => {
  it('matches on rows with -Infinity, NaN and large values', () => {
    same(run('Softmax', { logits: data([3, 7], 13) }, { dim: -1 }));
    same(run('Softmax', { logits: data([2, 3, 65], 14) }, { dim: 2 }));
    const masked = tf.add(data([2, 5, 5], 15, 'float32', false), tf.linalg.bandPart(tf.fill([5, 5], 0), -1, 0).sub(tf.ones([5, 5])).mul(1e9));
    same(run('Softmax', { logits: masked }, { dim: -1 }));
  });
});

describe('data movement', () => {
  it('Transpose', () => {
    const x = data([2, 3, 4, 5], 16);
    for (const perm of [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 2, 3], [0, 2, 1, 3], [2, 0, 3, 1]]) same(run('Transpose', { x }, { perm }));
    same(run('Transpose', { x: data([3, 4, 70], 17) }, { perm: [1, 0, 2] }));
    same(run('Transpose', { x: data([6, 7], 18, 'int32') }, { perm: [1, 0] }));
    same(run('Transpose', { x: tf.tensor([true, false, true, true, false, false], [2, 3], 'bool') }, { perm: [1, 0] }));
  });
  it('Slice and SplitV', () => {
    const x = data([4, 6, 70], 19);
    same(run('Slice', { x }, { begin: [1, 0, 0], size: [2, -1, -1] })); // contiguous (a view)
    same(run('Slice', { x }, { begin: [0, 2, 3], size: [4, 3, 60] }));
    same(run('Slice', { x }, { begin: [1, 1, 35], size: [3, 5, 35] }));
    same(run('SplitV', { x }, { numOrSizeSplits: [35, 35], axis: -1 }));
    same(run('SplitV', { x }, { numOrSizeSplits: 3, axis: 1 }));
    same(run('SplitV', { x }, { numOrSizeSplits: [1, -1], axis: 0 }));
  });
  it('PadV2', () => {
    const x = data([3, 4, 5], 20);
    same(run('PadV2', { x }, { paddings: [[0, 0], [1, 2], [0, 3]], constantValue: 0 }));
    same(run('PadV2', { x }, { paddings: [[2, 1], [0, 0], [0, 0]], constantValue: 1.5 }));
    same(run('PadV2', { x: data([3, 4], 21, 'int32') }, { paddings: [[1, 1], [2, 2]], constantValue: 7 }));
  });
  it('GatherV2', () => {
    const x = data([10, 70], 22);
    const idx = tf.tensor1d([3, 0, 9, 3, 5], 'int32');
    same(run('GatherV2', { x, indices: idx }, { axis: 0, batchDims: 0 }));
    same(run('GatherV2', { x: data([4, 10, 3], 23), indices: tf.tensor2d([[1, 2], [9, 0]], [2, 2], 'int32') }, { axis: 1, batchDims: 0 }));
    installFastKernels('cpu');
    expect(() => run('GatherV2', { x, indices: tf.tensor1d([10], 'int32') }, { axis: 0, batchDims: 0 })()).toThrow(/not in \[0, 9\]/);
    restoreKernels('cpu');
  });
  it('Concat', () => {
    const a = data([2, 3, 70], 24);
    const b = data([2, 3, 70], 25);
    same(run('Concat', [a, b], { axis: 2 }));
    same(run('Concat', [a, b, a], { axis: 1 }));
    same(run('Concat', [a, b], { axis: 0 }));
    same(run('Concat', [data([2, 3], 26), data([2, 0], 27), data([2, 5], 28)], { axis: 1 }));
    same(run('Concat', [data([2, 3], 29, 'int32'), data([2, 2], 30, 'int32')], { axis: -1 }));
  });
});

describe('UnsortedSegmentSum (gather gradient)', () => {
  it('matches tfjs-cpu on cpu', () => {
    const x = data([9, 70], 31, 'float32', false);
    const ids = tf.tensor1d([3, 0, 3, 6, 3, 0, -1, 9, 2], 'int32');
    installSegmentSum('cpu');
    const ours = run('UnsortedSegmentSum', { x, segmentIds: ids }, { numSegments: 7 })() as tf.Tensor;
    restoreKernels('cpu');
    const theirs = run('UnsortedSegmentSum', { x, segmentIds: ids }, { numSegments: 7 })() as tf.Tensor;
    expectIdentical(ours, theirs);
  });
});

describe('a transformer training step', () => {
  it('gives bit-identical loss and gradients with the fast kernels', () => {
    const w = makeWorkload(tf, { dim: 32, heads: 4, ffn: 48, layers: 2, vocab: 50, tokens: 12, seed: 5 });
    installFastKernels('cpu');
    installSegmentSum('cpu');
    const ours = w.step();
    restoreKernels('cpu');
    const theirs = w.step();
    expectIdentical(ours.loss, theirs.loss);
    ours.grads.forEach((g, i) => expectIdentical(g, theirs.grads[i]!));
    expect(Number.isFinite(ours.loss.dataSync()[0])).toBe(true);
    w.dispose();
  });
});
