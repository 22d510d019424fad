import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/select.js';
import { SeededRandom } from '../../src/random.js';
import { AdamW } from '../../src/train/optimizer.js';
import { vectorMath } from '../../src/backend/vector-math.js';
import { hostKernels } from '../../src/backend/kernels-host.js';
import { tfKernels } from '../../src/backend/kernels-tf.js';

beforeAll(async () => {
  await setupBackend({ backend: 'cpu', quiet: true });
});

function rand(n: number, seed: number, scale = 1): Float32Array {
  const rng = new SeededRandom(seed, 'opt-test');
  return Float32Array.from({ length: n }, () => scale * rng.normal());
}

/** PyTorch's AdamW, in doubles: decay, then the bias-corrected Adam step; global-norm clipping first. */
function reference(p: Float64Array[], grads: Float32Array[][], lr: number, betas: [number, number], eps: number, wd: number, maxNorm: number): Float64Array[] {
  const m = p.map((x) => new Float64Array(x.length));
  const v = p.map((x) => new Float64Array(x.length));
  grads.forEach((gs, t) => {
    const norm = Math.sqrt(gs.reduce((a, g) => a + g.reduce((b, x) => b + x * x, 0), 0));
    const clip = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
    p.forEach((x, j) => {
      for (let i = 0; i < x.length; i++) {
        const g = gs[j]![i]! * clip;
        m[j]![i] = betas[0] * m[j]![i]! + (1 - betas[0]) * g;
        v[j]![i] = betas[1] * v[j]![i]! + (1 - betas[1]) * g * g;
        const mh = m[j]![i]! / (1 - betas[0] ** (t + 1));
        const vh = v[j]![i]! / (1 - betas[1] ** (t + 1));
        x[i] = x[i]! * (1 - lr * wd) - (lr * mh) / (Math.sqrt(vh) + eps);
      }
    });
  });
  return p;
}

describe('AdamW', () => {
  it('the fused JS update and the tf-op update both equal PyTorch AdamW (clipping, weight decay, bias correction)', async () => {
    const shapes = [[5, 3], [7]];
    const init = shapes.map((s, j) => rand(s.reduce((a, b) => a * b, 1), 10 + j));
    const grads = [0, 1, 2].map((t) => shapes.map((s, j) => rand(s.reduce((a, b) => a * b, 1), 100 + 10 * t + j, 3)));
    const cfg = { betas: [0.9, 0.95] as [number, number], eps: 1e-8, weightDecay: 0.1 };
    const want = reference(init.map((x) => Float64Array.from(x)), grads, 1e-2, cfg.betas, cfg.eps, cfg.weightDecay, 1);
    for (const host of [true, false]) {
      const params = new Map(shapes.map((s, j) => [`p${j}`, tf.variable(tf.tensor(init[j]!, s))] as const));
      const opt = new AdamW(params, cfg, host ? hostKernels : tfKernels);
      for (const gs of grads) {
        const g = new Map(gs.map((x, j) => [`p${j}`, tf.tensor(x, shapes[j]!)] as const));
        await opt.apply(g, 1e-2, 1);
        tf.dispose([...g.values()]);
      }
      expect(opt.step).toBe(3);
      [...params.values()].forEach((p, j) => {
        const got = p.dataSync();
        want[j]!.forEach((w, i) => expect(Math.abs(got[i]! - w), `${host ? 'host' : 'tf'} p${j}[${i}]`).toBeLessThan(2e-6));
      });
      // Moments round-trip (checkpoints).
      const { m, v } = await opt.moments('p0');
      const opt2 = new AdamW(params, cfg, host ? hostKernels : tfKernels);
      opt2.setMoments('p0', m, v);
      expect(Array.from((await opt2.moments('p0')).v)).toEqual(Array.from(v));
      opt.dispose();
      opt2.dispose();
      tf.dispose([...params.values()]);
    }
  });
});

describe('vector math (WebAssembly SIMD)', () => {
  it('exp is within 2 ulp of float32 exp, and exactly 0 for −∞ and far below', () => {
    const vm = vectorMath();
    const xs = Float32Array.from({ length: 4001 }, (_, i) => -87 + (i * 175) / 4000);
    const [b] = vm.scratch(xs.length + 3) as [Float32Array];
    b.set(xs);
    b.set([-Infinity, -100, -1e30], xs.length);
    vm.exp(b, xs.length + 3);
    xs.forEach((x, i) => {
      const e = Math.fround(Math.exp(x));
      expect(Math.abs(b[i]! - e) / e, `exp(${x})`).toBeLessThan(2.5e-7);
    });
    expect(Array.from(b.subarray(xs.length, xs.length + 3))).toEqual([0, 0, 0]);
  });
});
