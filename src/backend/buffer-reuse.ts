/**
 * Reuse of tensor buffers across training steps on the tfjs 'cpu' backend.
 *
 * Why: tensor data are ArrayBuffers, which V8 frees only when it collects them, and V8 schedules its
 * collections by how many bytes of ArrayBuffers are new: a major GC for about every 64 MiB, a scavenge
 * for about every 32 MiB of young ones. A 512-token step of a 135M model writes ~1.9 GB of tensor
 * buffers: ~11 major GCs and ~107 scavenges per step, ~0.36 s of main-thread work while the other core
 * waits. Every step asks for the same sizes in the same order, so the buffers a step disposed are
 * handed out again by the next one: 6 scavenges and 4 major GCs per step instead (2 of them the marking
 * flag's own, gc-marking.ts), the same peak RSS (the pool holds what would otherwise be garbage waiting
 * for V8), and the step 0.85× the time (measured A/B within one process). Within one step little comes
 * back: the tape frees the forward's activations only after the whole backward pass.
 *
 * What is reused, and when it is safe: only Float32Arrays that `unfilledFloat32` handed out while a
 * step ran (`withBufferReuse`), only once tfjs has dropped every tensor data entry registered with them
 * (counted here: a buffer registered twice is freed by the second disposal, not the first), and only to
 * `unfilledFloat32`'s callers, which overwrite every element. An array taken from `dataSync()` /
 * `data()` IS the buffer: code inside a step reads it before disposing its tensor, never after (the
 * trainer, model and kernels do; test/train/trainer.test.ts checks training steps bit for bit with and
 * without reuse). Nothing is handed out outside a step; `releaseReusableBuffers` (the trainer's
 * evaluation and dispose) lets V8 free the pool.
 */
/** Smaller buffers are not worth the bookkeeping (tests lower it with `setReuseMinElements`). */
let reuseMinElements = 65536;

/** The smallest buffer (in elements) that is reused; returns the previous value (tests). */
export function setReuseMinElements(n: number): number {
  const before = reuseMinElements;
  reuseMinElements = n;
  return before;
}

interface CpuBackendData {
  data: { get(dataId: object): { values?: unknown } | undefined };
  write(values: unknown, shape: number[], dtype: string): object;
  move(dataId: object, values: unknown, shape: number[], dtype: string, refCount: number): void;
  disposeData(dataId: object, force?: boolean): boolean;
}

let depth = 0;
/** Buffers handed out again so far (tests). */
let reused = 0;
/** Disposed buffers by length, waiting to be handed out again. */
const free = new Map<number, Float32Array[]>();
/** Buffers handed out during a step → how many tensor data entries hold them now. */
const registrations = new WeakMap<Float32Array, number>();
const hooked = new WeakSet<object>();

/** A disposed buffer of exactly n elements, when a step runs and one is free (contents: garbage). */
export function takeReusable(n: number): Float32Array | undefined {
  if (depth === 0 || n < reuseMinElements) return undefined;
  const a = free.get(n)?.pop();
  if (a) {
    registrations.set(a, 0);
    reused++;
  }
  return a;
}

/** Mark a freshly allocated buffer as reusable once its tensors are gone (during a step). */
export function noteReusable(a: Float32Array): void {
  if (depth > 0 && a.length >= reuseMinElements) registrations.set(a, 0);
}

/** Count registrations of our buffers and take them back when the last one is disposed. */
function hook(backend: CpuBackendData): void {
  if (hooked.has(backend)) return;
  hooked.add(backend);
  const { write, move, disposeData } = backend;
  const register = (values: unknown) => {
    if (values instanceof Float32Array) {
      const n = registrations.get(values);
      if (n !== undefined) registrations.set(values, n + 1);
    }
  };
  backend.write = function (this: CpuBackendData, values, shape, dtype) {
    register(values);
    return write.call(this, values, shape, dtype);
  };
  backend.move = function (this: CpuBackendData, dataId, values, shape, dtype, refCount) {
    register(values);
    return move.call(this, dataId, values, shape, dtype, refCount);
  };
  backend.disposeData = function (this: CpuBackendData, dataId, force) {
    const values = this.data.get(dataId)?.values;
    const gone = disposeData.call(this, dataId, force);
    if (gone && values instanceof Float32Array) {
      const n = registrations.get(values);
      if (n !== undefined) {
        if (n > 1) registrations.set(values, n - 1);
        else {
          registrations.delete(values);
          if (depth > 0) {
            const list = free.get(values.length) ?? [];
            list.push(values);
            free.set(values.length, list);
          }
        }
      }
    }
    return gone;
  };
}

/**
 * Run `fn` (a training step) with buffer reuse on `backend` (tfjs 'cpu'; with null or any other
 * backend `fn` runs plainly). Buffers disposed during `fn` wait in the pool for the next step.
 */
export async function withBufferReuse<T>(backend: unknown, fn: () => Promise<T>): Promise<T> {
  const be = backend as Partial<CpuBackendData> | null;
  if (!be || typeof be.disposeData !== 'function' || typeof be.write !== 'function' || typeof be.move !== 'function' || !be.data) return fn();
  hook(be as CpuBackendData);
  depth++;
  try {
    return await fn();
  } finally {
    depth--;
  }
}

/** Drop the pool (V8 frees the buffers at its next collection): before other work, and at the end. */
export function releaseReusableBuffers(): void {
  free.clear();
}

/** Buffers waiting in the pool, and buffers handed out again so far (tests). */
export function reuseStats(): { waiting: number; reused: number } {
  let waiting = 0;
  for (const l of free.values()) waiting += l.length;
  return { waiting, reused };
}
