/**
 * Backend selection: the pure planner for every branch (no GPU or tfjs-node needed), GPU detection
 * from the environment, and setupBackend on this machine.
 */
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { restoreKernels } from '../../src/backend/registry.js';
import {
  _resetAnnouncementsForTests,
  defaultThreads,
  detectGpu,
  getTf,
  planBackends,
  setupBackend,
  setupBackendWith,
  type Capabilities,
} from '../../src/backend/select.js';
import { chooseGemm } from '../../src/backend/gemm-choice.js';
import { _resetNativeCacheForTests, loadNative } from '../../src/backend/native.js';
import { nativeUsable } from './helpers.js';

// tfjs's own kernels, captured before any setupBackend replaces them.
const tfjsMultiply = tf.getKernel('Multiply', 'cpu');
const tfjsBatchMatMul = tf.getKernel('BatchMatMul', 'cpu');

const none: Capabilities = { tfjsNodeGpu: false, tfjsNode: false, gpuVisible: false, native: false, wasm: true };
const chosen = (req: Parameters<typeof planBackends>[0], caps: Partial<Capabilities>) =>
  planBackends(req, { ...none, ...caps }).map((c) => c.chosen);

function expectUnavailable(fn: () => unknown, pattern: RegExp) {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FopeifyError);
    expect((err as FopeifyError).code).toBe('BACKEND_UNAVAILABLE');
    expect((err as FopeifyError).message).toMatch(pattern);
    return;
  }
  throw new Error('expected a BACKEND_UNAVAILABLE error');
}

describe('planBackends (pure)', () => {
  it('auto: GPU visible and tfjs-node-gpu installed -> tensorflow-gpu first', () => {
    const plan = planBackends('auto', { ...none, tfjsNodeGpu: true, gpuVisible: true, native: true });
    expect(plan[0]).toMatchObject({ chosen: 'tensorflow-gpu', module: '@tensorflow/tfjs-node-gpu', tfBackend: 'tensorflow' });
    // If it fails to load (no CUDA 11.2), the next candidates are the CPU ones.
    expect(plan.map((c) => c.chosen)).toEqual(['tensorflow-gpu', 'native', 'wasm', 'cpu']);
  });
  it('auto: both tfjs-node packages and a GPU -> gpu, then tfjs-node', () => {
    expect(chosen('auto', { tfjsNodeGpu: true, tfjsNode: true, gpuVisible: true })).toEqual(['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu']);
  });
  it('auto: tfjs-node-gpu installed but no GPU -> not tensorflow-gpu', () => {
    const plan = planBackends('auto', { ...none, tfjsNodeGpu: true, gpuVisible: false });
    expect(plan.map((c) => c.chosen)).toEqual(['tensorflow', 'wasm', 'cpu']);
    expect(plan[0]!.module).toBe('@tensorflow/tfjs-node-gpu'); // runs on the CPU
  });
  it('auto: GPU visible but only tfjs-node -> tensorflow', () => {
    expect(chosen('auto', { tfjsNode: true, gpuVisible: true, native: true })).toEqual(['tensorflow', 'native', 'wasm', 'cpu']);
  });
  it('auto: tfjs-node only -> tensorflow', () => {
    const plan = planBackends('auto', { ...none, tfjsNode: true });
    expect(plan[0]).toMatchObject({ chosen: 'tensorflow', module: '@tensorflow/tfjs-node' });
  });
  it('auto: nothing installed, addon loads -> native (cpu + BLAS + fast kernels)', () => {
    const plan = planBackends('auto', { ...none, native: true });
    expect(plan[0]).toEqual({ chosen: 'native', tfBackend: 'cpu', accelerate: true, fastKernels: true });
  });
  it('auto: nothing at all -> the fastest plain backend (wasm), then cpu', () => {
    expect(chosen('auto', {})).toEqual(['wasm', 'cpu']);
    expect(planBackends('auto', none)[0]!.accelerate).toBe(false);
    expect(chosen('auto', { wasm: false })).toEqual(['cpu']);
    // The last resort keeps tfjs-cpu's results but uses fopeify's faster JS kernels.
    expect(planBackends('auto', { ...none, wasm: false })[0]).toMatchObject({ tfBackend: 'cpu', accelerate: false, fastKernels: true });
  });
  it('explicit backends that exist', () => {
    expect(chosen('tensorflow-gpu', { tfjsNodeGpu: true, gpuVisible: true })).toEqual(['tensorflow-gpu']);
    expect(chosen('tensorflow', { tfjsNode: true, tfjsNodeGpu: true })).toEqual(['tensorflow']);
    expect(planBackends('tensorflow', { ...none, tfjsNodeGpu: true })[0]!.module).toBe('@tensorflow/tfjs-node-gpu');
    expect(chosen('native', { native: true })).toEqual(['native']);
    expect(planBackends('wasm', { ...none, native: true })[0]).toMatchObject({ chosen: 'wasm', accelerate: true });
    expect(planBackends('wasm', none)[0]).toMatchObject({ chosen: 'wasm', accelerate: false });
    expect(planBackends('cpu', { ...none, native: true })[0]).toEqual({ chosen: 'cpu', tfBackend: 'cpu', accelerate: false, fastKernels: false });
  });
  it('explicit missing backends are a clear FopeifyError', () => {
    expectUnavailable(() => planBackends('tensorflow-gpu', none), /tfjs-node-gpu is not installed/);
    expectUnavailable(() => planBackends('tensorflow-gpu', { ...none, tfjsNodeGpu: true }), /no NVIDIA GPU/);
    expectUnavailable(() => planBackends('tensorflow', none), /npm install @tensorflow\/tfjs-node/);
    expectUnavailable(() => planBackends('native', none), /build:native/);
    // The loader's reason, when it gave one, is the message (an old build, FOPEIFY_GEMM=system without a library).
    expectUnavailable(() => planBackends('native', { ...none, nativeReason: 'FOPEIFY_GEMM=system, but no system BLAS library loaded' }), /^backend "native" is not available: FOPEIFY_GEMM=system, but no system BLAS/);
    expectUnavailable(() => planBackends('wasm', { ...none, wasm: false }), /tfjs-backend-wasm/);
  });
  it('unknown names are a bad argument', () => {
    expect(() => planBackends('cuda' as never, none)).toThrow(/unknown backend "cuda"/);
  });
});

describe('defaultThreads', () => {
  it('uses a thread count the user exported, else one per core', () => {
    expect(defaultThreads({ OPENBLAS_NUM_THREADS: '3' })).toBe(3);
    expect(defaultThreads({ OMP_NUM_THREADS: '5' })).toBe(5);
    expect(defaultThreads({ OPENBLAS_NUM_THREADS: 'x' })).toBe(availableParallelism());
    expect(defaultThreads({})).toBe(availableParallelism());
  });
});

describe('detectGpu', () => {
  it('honours CUDA_VISIBLE_DEVICES hiding every GPU', () => {
    expect(detectGpu({ CUDA_VISIBLE_DEVICES: '' })).toBe(false);
    expect(detectGpu({ CUDA_VISIBLE_DEVICES: '-1' })).toBe(false);
  });
  it('returns a boolean on this machine', () => {
    expect(typeof detectGpu({})).toBe('boolean');
  });
});

describe('setupBackend on this machine', () => {
  afterAll(() => restoreKernels());

  it('explicit missing tfjs-node is a FopeifyError', async () => {
    await expect(setupBackend({ backend: 'tensorflow', quiet: true })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await expect(setupBackend({ backend: 'tensorflow-gpu', quiet: true })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
  });

  it('rejects bad thread counts', async () => {
    await expect(setupBackend({ backend: 'cpu', threads: 0, quiet: true })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(setupBackend({ backend: 'cpu', threads: 1.5, quiet: true })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
  });

  it('cpu is plain tfjs with no replaced kernels', async () => {
    const info = await setupBackend({ backend: 'cpu', quiet: true });
    expect(info).toMatchObject({ requested: 'cpu', name: 'cpu', chosen: 'cpu', accelerated: false, gatherGradient: true });
    expect(info.replacedKernels).toEqual([]);
    expect(getTf().matMul).toBe(tf.matMul);
    expect(tf.getBackend()).toBe('cpu');
    // Tensors in JS memory: the host passes (JS / WebAssembly), no BLAS.
    expect(info.kernels.name).toBe('host');
    expect(info.kernels.host).not.toBeNull();
  });

  it('wasm reports its limits, and gets a gather gradient from us', async () => {
    const info = await setupBackend({ backend: 'wasm', threads: 2, quiet: true });
    expect(info.name).toBe('wasm');
    expect(info.memoryLimitBytes).toBe(4 * 1024 ** 3);
    expect(info.gatherGradient).toBe(true);
    expect(info.replacedKernels).toContain('UnsortedSegmentSum');
    // tf ops, with the optimizer's moments in JS memory (no in-place writes into wasm's heap).
    expect(info.kernels.name).toBe('tf-ops');
    expect(info.kernels.host).not.toBeNull();
    const emb = tf.variable(tf.tensor2d([[1, 2], [3, 4], [5, 6]]));
    const g = tf.grad((e: tf.Tensor) => tf.sum(tf.gather(e, tf.tensor1d([2, 0, 2], 'int32'))))(emb);
    expect(Array.from(g.dataSync())).toEqual([1, 1, 0, 0, 2, 2]);
    emb.dispose();
  });

  it('auto picks native when the addon is built, else a plain backend, and logs once', async () => {
    _resetAnnouncementsForTests();
    const lines: string[] = [];
    const info = await setupBackend({ log: (l) => lines.push(l), threads: 2 });
    if (nativeUsable) {
      expect(info.chosen).toBe('native');
      expect(info.name).toBe('cpu');
      expect(info.accelerated).toBe(true);
      expect(info.description).toMatch(/^cpu \+ native BLAS \(.+, 2 threads\)$/);
      expect(info.replacedKernels).toEqual(expect.arrayContaining(['BatchMatMul', '_FusedMatMul', 'Multiply', 'Softmax']));
      expect(info.kernels.name).toBe('native');
    } else {
      expect(['wasm', 'cpu']).toContain(info.name);
      expect(info.accelerated).toBe(false);
      expect(info.description).toMatch(/no native BLAS/);
    }
    expect(lines).toEqual([`fopeify: backend ${info.description}`]);
    // Twice is safe and quiet the second time.
    const again = await setupBackend({ log: (l) => lines.push(l), threads: 2 });
    expect(again.description).toBe(info.description);
    expect(lines.length).toBe(1);
    expect(tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).dataSync()[0]).toBe(3);
  });

  it('without the addon, auto runs on plain tfjs and says why, once', async () => {
    const saved = process.env.FOPEIFY_NATIVE_ADDON;
    const savedOff = process.env.FOPEIFY_NATIVE;
    delete process.env.FOPEIFY_NATIVE;
    process.env.FOPEIFY_NATIVE_ADDON = '/nonexistent/fopeify_native.node';
    _resetNativeCacheForTests();
    _resetAnnouncementsForTests();
    try {
      const lines: string[] = [];
      const info = await setupBackend({ log: (l) => lines.push(l) });
      expect(info.accelerated).toBe(false);
      expect(info.name).toBe('wasm');
      expect(info.nativeUnavailableReason).toMatch(/not built.*build:native/);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^fopeify: backend wasm \(plain TensorFlow.js, no native BLAS: native addon not built/);
      await expect(setupBackend({ backend: 'native', quiet: true })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    } finally {
      if (saved === undefined) delete process.env.FOPEIFY_NATIVE_ADDON;
      else process.env.FOPEIFY_NATIVE_ADDON = saved;
      if (savedOff !== undefined) process.env.FOPEIFY_NATIVE = savedOff;
      _resetNativeCacheForTests();
    }
  });

  it('switching back to cpu restores tfjs kernels', async () => {
    const info = await setupBackend({ backend: 'cpu', quiet: true });
    expect(info.replacedKernels).toEqual([]);
    expect(tf.getKernel('Multiply', 'cpu')).toBe(tfjsMultiply);
    expect(tf.getKernel('BatchMatMul', 'cpu')).toBe(tfjsBatchMatMul);
  });

  describe('tfjs-node paths, with a fake package', () => {
    // A stand-in for @tensorflow/tfjs-node(-gpu): importing it registers a 'tensorflow' backend (here
    // the cpu backend's factory under that name), like the real package does.
    const imported: string[] = [];
    const fakeModule = (spec: string) => {
      imported.push(spec);
      if (!tf.findBackendFactory('tensorflow')) tf.registerBackend('tensorflow', tf.findBackendFactory('cpu')!);
      const ns = { ...tf, node: { fake: true } };
      return Promise.resolve({ default: ns });
    };
    const caps = (c: Partial<Capabilities>) => () => ({ ...none, ...c });
    afterAll(async () => {
      await tf.setBackend('cpu');
      tf.removeBackend('tensorflow');
    });

    it('auto with a GPU and tfjs-node-gpu activates tensorflow via tfjs-node-gpu, and getTf is its namespace', async () => {
      _resetAnnouncementsForTests();
      const lines: string[] = [];
      const info = await setupBackendWith(
        { log: (l) => lines.push(l), threads: 3 },
        { detect: caps({ tfjsNodeGpu: true, gpuVisible: true }), importModule: fakeModule },
      );
      expect(imported.at(-1)).toBe('@tensorflow/tfjs-node-gpu');
      expect(info).toMatchObject({ requested: 'auto', chosen: 'tensorflow-gpu', name: 'tensorflow', accelerated: false, threads: 3 });
      expect(info.description).toBe('tensorflow (tfjs-node-gpu, CUDA, 3 threads)');
      expect((getTf() as unknown as { node: { fake: boolean } }).node.fake).toBe(true);
      expect(tf.getBackend()).toBe('tensorflow');
      expect(lines).toEqual([`fopeify: backend ${info.description}`]);
    });

    it('explicit tensorflow loads tfjs-node', async () => {
      const info = await setupBackendWith({ backend: 'tensorflow', quiet: true }, { detect: caps({ tfjsNode: true }), importModule: fakeModule });
      expect(imported.at(-1)).toBe('@tensorflow/tfjs-node');
      expect(info.chosen).toBe('tensorflow');
      // Tensors live in TensorFlow's memory: plain tf ops, moments as variables.
      expect(info.kernels.name).toBe('tf-ops');
      expect(info.kernels.host).toBeNull();
    });

    it('a GPU package that fails to load falls back, and says why', async () => {
      _resetAnnouncementsForTests();
      const lines: string[] = [];
      const info = await setupBackendWith(
        { log: (l) => lines.push(l) },
        {
          detect: caps({ tfjsNodeGpu: true, gpuVisible: true }),
          importModule: () => Promise.reject(new Error('libcudart.so.11.0: cannot open shared object file')),
        },
      );
      expect(info.chosen).toBe('wasm');
      expect(info.fallbacks).toEqual(['tensorflow-gpu: libcudart.so.11.0: cannot open shared object file']);
      expect(lines[0]).toBe('fopeify: could not start tensorflow-gpu: libcudart.so.11.0: cannot open shared object file');
      expect(getTf().matMul).toBe(tf.matMul);
    });

    it('explicit tensorflow-gpu that fails to load is a FopeifyError', async () => {
      await expect(
        setupBackendWith(
          { backend: 'tensorflow-gpu', quiet: true },
          { detect: caps({ tfjsNodeGpu: true, gpuVisible: true }), importModule: () => Promise.reject(new Error('no CUDA')) },
        ),
      ).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringMatching(/no CUDA/) });
    });
  });

  // CI installs libopenblas0, runs `npm run build:native` and sets FOPEIFY_EXPECT_NATIVE=1: there
  // the accelerated path must be what `auto` activates, or the build silently regressed.
  it.runIf(process.env.FOPEIFY_EXPECT_NATIVE === '1')('FOPEIFY_EXPECT_NATIVE=1: the native accelerator is active', async () => {
    const info = await setupBackend({ quiet: true });
    expect(info.nativeUnavailableReason).toBeUndefined();
    expect(info.accelerated).toBe(true);
    expect(info.chosen).toBe('native');
    expect(info.blas?.library).toBeTruthy();
  });

  // Where a system BLAS loads (CI's first pass), `auto` times it against the portable SGEMM at start-up
  // and runs the faster: whichever wins here, the engine in use must be the one the timings chose, the
  // addon must really run it, and the start-up line must say it was measured.
  it.runIf(process.env.FOPEIFY_EXPECT_NATIVE === '1' && process.env.FOPEIFY_NO_SYSTEM_BLAS !== '1' && !process.env.FOPEIFY_GEMM)(
    'with a system BLAS, the GEMM engine is the one measured faster at start-up',
    async () => {
      const info = await setupBackend({ quiet: true });
      const gemm = info.blas?.gemm;
      if (info.blas?.kind === 'portable') return; // no system BLAS on this machine: nothing to choose
      expect(gemm?.how).toBe('measured');
      expect(gemm?.timings?.costMs).toBeGreaterThan(0);
      expect(chooseGemm('auto', true, gemm?.timings)?.engine).toBe(gemm?.engine);
      expect(loadNative().ok && loadNative().blas.addon.info().gemm).toBe(gemm?.engine);
      expect(info.description).toMatch(/, measured \d+\.\d+× .+ at start-up \(\d+ ms(; kept within the 10 % margin)?\), \d+ threads?\)$/);
    },
  );

  // CI's third pass forces the system BLAS (FOPEIFY_GEMM=system, FOPEIFY_EXPECT_GEMM=system): where `auto`
  // measured the portable SGEMM faster, the library's GEMM must still carry the numeric tests somewhere.
  it.runIf(process.env.FOPEIFY_EXPECT_GEMM === 'system')('FOPEIFY_EXPECT_GEMM=system: the system BLAS runs every GEMM', async () => {
    const info = await setupBackend({ quiet: true });
    expect(info.accelerated).toBe(true);
    expect(info.blas?.kind).not.toBe('portable');
    expect(info.blas?.gemm).toMatchObject({ engine: 'system', how: 'FOPEIFY_GEMM' });
    expect(loadNative().ok && loadNative().blas.addon.info().gemm).toBe('system');
    expect(info.description).toMatch(/, FOPEIFY_GEMM=system, \d+ threads?\)$/);
  });

  // CI runs the suite a second time with FOPEIFY_NO_SYSTEM_BLAS=1 and FOPEIFY_EXPECT_GEMM=portable: there
  // the addon's own SGEMM must be what runs (a machine without OpenBLAS), and the start-up line says so.
  it.runIf(process.env.FOPEIFY_EXPECT_GEMM === 'portable')('FOPEIFY_EXPECT_GEMM=portable: the portable SGEMM is active', async () => {
    expect(process.env.FOPEIFY_NO_SYSTEM_BLAS).toBe('1');
    const info = await setupBackend({ quiet: true });
    expect(info.nativeUnavailableReason).toBeUndefined();
    expect(info.accelerated).toBe(true);
    expect(info.chosen).toBe('native');
    expect(info.blas?.kind).toBe('portable');
    expect(info.blas?.gemm).toEqual({ engine: 'portable', how: 'no system BLAS' });
    expect(info.blas?.library).toMatch(/^portable-(avx512|avx2|generic)$/);
    expect(info.description).toMatch(/^cpu \+ native BLAS \(portable-(avx512|avx2|generic) SGEMM, \d+ threads?\)$/);
  });
});
