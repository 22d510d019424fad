/**
 * Test helpers: deterministic random tensors and "compute the same thing with tfjs's own kernels"
 * (by temporarily restoring the original kernels of the backend).
 */
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import type { Kernels } from '../../src/backend/kernels.js';
import { nativeKernels } from '../../src/backend/kernels-native.js';
import { defaultAddonPath, loadNative, type NativeAddon } from '../../src/backend/native.js';
import { restoreKernels } from '../../src/backend/registry.js';
import { setupBackend, type BackendInfo, type SetupOptions } from '../../src/backend/select.js';

export const addonBuilt = existsSync(defaultAddonPath());
/** The addon is built and not disabled (FOPEIFY_NATIVE=0). */
export const nativeUsable = addonBuilt && process.env.FOPEIFY_NATIVE !== '0';

/** Mulberry32: small, fast, deterministic. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (r() * 2 - 1) * scale;
  return tf.tensor(v, shape, 'float32');
}

/** Run `fn` with tfjs's original kernels (our replacements removed), then put ours back. */
export async function withPlainKernels<T>(fn: () => T, opts: SetupOptions): Promise<T> {
  restoreKernels();
  try {
    return fn();
  } finally {
    await setupBackend({ ...opts, quiet: true });
  }
}

/** Random attention inputs: q and dO `[BK, R, T, D]`, k (scaled by 2) and v `[BK, T, D]`, from seeds seed..seed+3. */
export function attentionInputs(BK: number, R: number, T: number, D: number, seed: number): { q: tf.Tensor4D; k: tf.Tensor3D; v: tf.Tensor3D; dO: tf.Tensor4D } {
  return {
    q: randn([BK, R, T, D], seed) as tf.Tensor4D,
    k: randn([BK, T, D], seed + 1, 2) as tf.Tensor3D,
    v: randn([BK, T, D], seed + 2) as tf.Tensor3D,
    dO: randn([BK, R, T, D], seed + 3) as tf.Tensor4D,
  };
}

export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return den === 0 ? num : num / den;
}

export function expectClose(a: tf.Tensor, b: tf.Tensor, tol = 1e-5): number {
  if (a.shape.join(',') !== b.shape.join(',')) throw new Error(`shape ${a.shape} != ${b.shape}`);
  const e = maxRelErr(a.dataSync(), b.dataSync());
  if (!(e <= tol)) throw new Error(`relative error ${e} > ${tol} (shape ${a.shape})`);
  return e;
}

export function expectIdentical(a: tf.Tensor, b: tf.Tensor): void {
  if (a.shape.join(',') !== b.shape.join(',')) throw new Error(`shape ${a.shape} != ${b.shape}`);
  if (a.dtype !== b.dtype) throw new Error(`dtype ${a.dtype} != ${b.dtype}`);
  const x = a.dataSync();
  const y = b.dataSync();
  for (let i = 0; i < x.length; i++) {
    if (!Object.is(x[i], y[i]) && !(Number.isNaN(x[i]) && Number.isNaN(y[i]))) {
      throw new Error(`element ${i} differs: ${x[i]} vs ${y[i]} (shape ${a.shape})`);
    }
  }
}

export type { BackendInfo };

/** The cpu backend set up and the addon's kernels over it (tests that call the native kernels directly). */
export async function setupNativeKernels(): Promise<{ addon: NativeAddon; kernels: Kernels }> {
  await setupBackend({ backend: 'cpu', quiet: true });
  const r = loadNative();
  if (!r.ok) throw new Error(r.reason);
  return { addon: r.blas.addon, kernels: nativeKernels(r.blas.addon) };
}
