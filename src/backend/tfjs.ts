/**
 * TensorFlow.js as fopeify uses it: the core (ops, autodiff, optimizers) and its CPU backend. The
 * `@tensorflow/tfjs` bundle also loads the layers, converter, data and WebGL packages, which fopeify never
 * uses: ~25 MiB of resident memory in every process (issue 19, prefill memory). Other backends (wasm,
 * tensorflow, webgpu) are imported when selected.
 *
 * Two things only the bundle registers: tensors' chained methods (`t.reshape(...)`), so fopeify calls the
 * ops as functions (`tf.reshape(t, ...)`), and the ops' gradient functions, so training loads the bundle
 * when it first differentiates (`registerGradients`). A program that imports `@tensorflow/tfjs` itself has
 * both, on fopeify's tensors too (one tfjs-core is shared).
 */
import { createRequire } from 'node:module';
import '@tensorflow/tfjs-backend-cpu';

export * from '@tensorflow/tfjs-core';

const require = createRequire(import.meta.url);
let gradientsRegistered = false;

/** Register tfjs's gradient functions (by loading the `@tensorflow/tfjs` bundle once): call before differentiating. */
export function registerGradients(): void {
  if (gradientsRegistered) return;
  require('@tensorflow/tfjs');
  gradientsRegistered = true;
}
