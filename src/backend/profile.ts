/**
 * Per-kernel wall time of whatever runs inside `fn`, on the active backend. Used to find which
 * kernels dominate a training step (that is how fast-kernels.ts chose what to replace) and by
 * `fopeify` benchmarks. Every kernel registered for the backend is wrapped for the duration of the
 * call and put back afterwards. Kernels that call other kernels' functions directly (not through
 * the registry) are counted inside their caller.
 */
import * as tf from './tfjs.js';

export interface KernelTime {
  kernel: string;
  calls: number;
  ms: number;
}

export interface KernelProfile<T> {
  result: T;
  totalMs: number;
  kernels: KernelTime[];
}

export function profileKernels<T>(fn: () => T, backendName: string = tf.getBackend()): KernelProfile<T> {
  const configs = tf.getKernelsForBackend(backendName);
  const stats = new Map<string, { calls: number; ms: number }>();
  let depth = 0;
  for (const cfg of configs) {
    const inner = cfg.kernelFunc;
    const s = { calls: 0, ms: 0 };
    stats.set(cfg.kernelName, s);
    tf.unregisterKernel(cfg.kernelName, backendName);
    tf.registerKernel({
      ...cfg,
      kernelFunc: (args) => {
        // Nested registry calls (a kernel running another through tf.getKernel) count once, in the
        // outermost kernel, so the column sums to the step's kernel time.
        if (depth > 0) return inner(args);
        depth++;
        const t0 = performance.now();
        try {
          return inner(args);
        } finally {
          s.ms += performance.now() - t0;
          s.calls++;
          depth--;
        }
      },
    });
  }
  const t0 = performance.now();
  let result: T;
  try {
    result = fn();
  } finally {
    for (const cfg of configs) {
      tf.unregisterKernel(cfg.kernelName, backendName);
      tf.registerKernel(cfg);
    }
  }
  const totalMs = performance.now() - t0;
  const kernels = [...stats]
    .filter(([, s]) => s.calls > 0)
    .map(([kernel, s]) => ({ kernel, calls: s.calls, ms: s.ms }))
    .sort((a, b) => b.ms - a.ms);
  return { result, totalMs, kernels };
}

/** A small text table of the top `n` kernels. */
export function formatProfile(p: { totalMs: number; kernels: KernelTime[] }, n = 15): string {
  const lines = [`total ${p.totalMs.toFixed(1)} ms`];
  for (const k of p.kernels.slice(0, n)) {
    lines.push(`${k.kernel.padEnd(24)} ${String(k.calls).padStart(6)} calls ${k.ms.toFixed(1).padStart(9)} ms  ${((100 * k.ms) / p.totalMs).toFixed(1).padStart(5)}%`);
  }
  return lines.join('\n');
}
