/**
 * Gradient checkpointing for tfjs: a function whose activations are not kept by the tape but
 * recomputed in the backward pass (`tf.customGrad`), so a training step keeps one tensor per layer
 * boundary instead of every intermediate of every layer.
 *
 * The backward of a recomputed function runs its forward again under a fresh tape and backpropagates
 * through it (a nested `gradients` call). tfjs supports that, with one catch: its engine keeps a single
 * `activeTape`, which a top-level `gradients` call replaces and finally sets to null — and the outer
 * backward pass, still running, needs its own tape afterwards (to free the tensors its nodes saved).
 * `isolatedGrads` saves and restores it around the nested call. The nested call runs at gradient depth
 * 0, so its own saved tensors are freed as soon as it returns: the memory of one layer's backward,
 * never of all of them.
 */
import * as tf from '../backend/tfjs.js';
import { FopeifyError } from '../errors.js';
import { timed } from './timing.js';

interface EngineLike {
  state: { activeTape: unknown; gradientDepth: number; kernelDepth: number };
  gradients<T extends tf.Tensor>(f: () => T, xs: tf.Tensor[], dy?: T, allowNoGradients?: boolean): { value: T; grads: tf.Tensor[] };
}

function engine(): EngineLike {
  return tf.engine() as unknown as EngineLike;
}

/**
 * Gradients of `f()` with respect to `xs`, weighted by `dy` (same shape as f's result; default ones).
 * Safe to call inside a customGrad gradient function (an outer backward pass). Inputs `f` does not
 * depend on get zeros. The result of `f` is disposed.
 */
export function isolatedGrads(f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor): tf.Tensor[] {
  const e = engine();
  if (e.state.gradientDepth !== 0) {
    // Inside a forward pass that records a tape: a nested top-level tape would corrupt it.
    throw new FopeifyError('INTERNAL', 'isolatedGrads called while a gradient tape is recording');
  }
  const outer = e.state.activeTape;
  tf.registerGradients();
  try {
    const { value, grads } = e.gradients(f, xs, dy, true);
    value.dispose();
    return grads.map((g, i) => g ?? tf.zerosLike(xs[i]!));
  } finally {
    e.state.activeTape = outer;
  }
}

/**
 * Wrap `fn(inputs) → tensor` so that, under a gradient tape, it records one node whose backward
 * recomputes `fn` from its saved inputs (gradient checkpointing). `fn` must compute only from
 * `inputs` and constants (frozen weights may be closed over; anything trained must be an input).
 */
export function recomputed(fn: (inputs: tf.Tensor[], phase: 'forward' | 'recompute') => tf.Tensor): (...inputs: tf.Tensor[]) => tf.Tensor {
  const op = tf.customGrad(((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const inputs = args as tf.Tensor[];
    const value = fn(inputs, 'forward');
    // Clones share the data (no copy); they keep the inputs alive until the backward pass.
    save(inputs);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => timed('layer backward (recompute + backprop)', () => isolatedGrads(() => fn(saved, 'recompute'), saved, dy)),
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return (...inputs: tf.Tensor[]) => op(...inputs);
}

/** Is a gradient tape recording right now (a training forward pass, not an evaluation)? */
export function taping(): boolean {
  return engine().state.gradientDepth > 0;
}

/** Gradients of a scalar function of named tensors (the outer tape of a training step). */
export function namedGrads(
  f: () => tf.Scalar,
  params: readonly (readonly [string, tf.Tensor])[],
): { loss: tf.Scalar; grads: Map<string, tf.Tensor> } {
  const xs = params.map(([, t]) => t);
  const e = engine();
  tf.registerGradients();
  const { value, grads } = e.gradients(f, xs, undefined, true);
  const out = new Map<string, tf.Tensor>();
  params.forEach(([name, t], i) => out.set(name, grads[i] ?? tf.zerosLike(t)));
  return { loss: value as tf.Scalar, grads: out };
}
