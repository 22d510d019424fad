/**
 * Replacing tfjs kernels, reversibly. tfjs looks kernels up by (kernelName, backendName) on every
 * op, and gradients are written in terms of ops, so a kernel replaced here is used by forward and
 * backward passes alike (tf.grads included). We keep each original so that:
 *  - a replacement can fall back to it for cases it does not handle (int32 matmul, complex, ...);
 *  - setupBackend('cpu') after setupBackend('native') restores plain tfjs behaviour;
 *  - tests can compare replaced and original kernels in one process.
 */
import * as tf from './tfjs.js';

export type KernelConfig = tf.KernelConfig;
export type KernelFunc = tf.KernelFunc;
export type TensorInfo = tf.TensorInfo;

const originals = new Map<string, KernelConfig | null>();
const key = (kernelName: string, backendName: string) => `${backendName}\u0000${kernelName}`;

/** The kernel tfjs itself registered (before any replacement of ours), or undefined. */
export function originalKernel(kernelName: string, backendName: string): KernelConfig | undefined {
  const k = key(kernelName, backendName);
  if (originals.has(k)) return originals.get(k) ?? undefined;
  return tf.getKernel(kernelName, backendName) ?? undefined;
}

/** Register `config` in place of whatever is registered for its (kernel, backend). */
export function replaceKernel(config: KernelConfig): void {
  const k = key(config.kernelName, config.backendName);
  const current = tf.getKernel(config.kernelName, config.backendName);
  if (!originals.has(k)) originals.set(k, current ?? null);
  if (current) tf.unregisterKernel(config.kernelName, config.backendName);
  tf.registerKernel(config);
}

/** Put back the original kernels of `backendName` (all of ours when omitted). */
export function restoreKernels(backendName?: string): void {
  for (const [k, orig] of [...originals]) {
    const [b, name] = k.split('\u0000') as [string, string];
    if (backendName && b !== backendName) continue;
    if (tf.getKernel(name, b)) tf.unregisterKernel(name, b);
    if (orig) tf.registerKernel(orig);
    originals.delete(k);
  }
}

/** Names of the kernels currently replaced on `backendName`. */
export function replacedKernels(backendName: string): string[] {
  const out: string[] = [];
  for (const k of originals.keys()) {
    const [b, name] = k.split('\u0000') as [string, string];
    if (b === backendName) out.push(name);
  }
  return out.sort();
}

/** Call the original kernel with the same arguments (used as the fallback of a replacement). */
export function callOriginal(
  kernelName: string,
  backendName: string,
  args: Parameters<KernelFunc>[0],
): TensorInfo | TensorInfo[] {
  const orig = originalKernel(kernelName, backendName);
  if (!orig) throw new Error(`fopeify: no original ${kernelName} kernel for backend ${backendName}`);
  return orig.kernelFunc(args);
}
