/**
 * AdamW with decoupled weight decay and global-norm gradient clipping, over named tf.Variables. Written
 * out (instead of tf.train.adam) because exact resume needs the moments saved and restored by name, and
 * tfjs's optimizers have neither decoupled weight decay nor a stable state layout.
 *
 * On backends whose tensors live in this process's memory (cpu, wasm) the moments are plain
 * Float32Arrays updated in place and the update is one fused JS pass per tensor (the tf-op version
 * makes ~14 full passes, each allocating its output). Elsewhere (tensorflow, GPU) the moments are
 * variables and the update is tf ops that stay on the device.
 */
import * as tf from '@tensorflow/tfjs';
import { acceleratedCpuAddon } from '../backend/select.js';

export interface AdamWConfig {
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

let optimizerCounter = 0;

/** Tensors of the active backend live in this process's memory (reading them is cheap). */
export function hostMemoryBackend(): boolean {
  const b = tf.getBackend();
  return b === 'cpu' || b === 'wasm';
}

/** Is `t` the only holder of its data on the cpu backend (so its buffer may be written in place)? */
function soleOwner(t: tf.Tensor): boolean {
  if (tf.getBackend() !== 'cpu') return false;
  const be = tf.backend() as unknown as { refCount?(dataId: object): number };
  return typeof be.refCount === 'function' && be.refCount(t.dataId) === 1;
}

export class AdamW {
  /** Optimizer steps taken (bias correction uses step + 1). */
  step = 0;
  /** Moments in JS memory (host backends). */
  private readonly hostM = new Map<string, Float32Array>();
  private readonly hostV = new Map<string, Float32Array>();
  /** Moments as variables (device backends). */
  private readonly devM = new Map<string, tf.Variable>();
  private readonly devV = new Map<string, tf.Variable>();
  readonly host: boolean;

  constructor(
    readonly params: Map<string, tf.Variable>,
    readonly config: AdamWConfig,
    /** Moments in JS memory and a fused JS update (default: on cpu and wasm backends). */
    host: boolean = hostMemoryBackend(),
  ) {
    this.host = host;
    // tfjs variable names are global: a per-optimizer prefix lets several optimizers live in one process.
    const id = optimizerCounter++;
    for (const [name, p] of params) {
      if (this.host) {
        this.hostM.set(name, new Float32Array(p.size));
        this.hostV.set(name, new Float32Array(p.size));
      } else {
        this.devM.set(name, tf.variable(tf.zerosLike(p), false, `adam_m/${id}/${name}`));
        this.devV.set(name, tf.variable(tf.zerosLike(p), false, `adam_v/${id}/${name}`));
      }
    }
  }

  /** First and second moments of a parameter (copies on device backends). */
  moments(name: string): { m: Float32Array; v: Float32Array } {
    if (this.host) return { m: this.hostM.get(name)!, v: this.hostV.get(name)! };
    return { m: this.devM.get(name)!.dataSync() as Float32Array, v: this.devV.get(name)!.dataSync() as Float32Array };
  }

  setMoments(name: string, m: Float32Array, v: Float32Array): void {
    if (this.host) {
      this.hostM.get(name)!.set(m);
      this.hostV.get(name)!.set(v);
      return;
    }
    const p = this.params.get(name)!;
    for (const [variable, data] of [[this.devM.get(name)!, m], [this.devV.get(name)!, v]] as const) {
      tf.tidy(() => variable.assign(tf.tensor(data, p.shape, 'float32')));
    }
  }

  /** Global L2 norm of the gradients. */
  static globalNorm(grads: Map<string, tf.Tensor>, host = hostMemoryBackend()): number {
    if (host) {
      const addon = acceleratedCpuAddon();
      let sum = 0;
      for (const g of grads.values()) {
        const d = g.dataSync() as Float32Array;
        // The addon's loop is this one in C (same order, same bits).
        if (addon?.sumSquares) sum = addon.sumSquares(d, sum);
        else for (let i = 0; i < d.length; i++) sum += d[i]! * d[i]!;
      }
      return Math.sqrt(sum);
    }
    return tf.tidy(() => {
      let sum = tf.scalar(0);
      for (const g of grads.values()) sum = sum.add(g.square().sum());
      return Math.sqrt(sum.dataSync()[0]!);
    });
  }

  /**
   * One update. Gradients are clipped to `maxGradNorm` (0 = off) by global norm first. Returns the
   * pre-clipping norm.
   */
  apply(grads: Map<string, tf.Tensor>, lr: number, maxGradNorm: number): number {
    const norm = AdamW.globalNorm(grads, this.host);
    const clip = maxGradNorm > 0 && norm > maxGradNorm ? maxGradNorm / (norm + 1e-6) : 1;
    const [b1, b2] = this.config.betas;
    const t = this.step + 1;
    const c1 = 1 - Math.pow(b1, t);
    const c2 = 1 - Math.pow(b2, t);
    const { eps, weightDecay } = this.config;
    // With the accelerator, the fused update runs in threaded C: the same expressions, the same bits.
    const adamw = this.host ? acceleratedCpuAddon()?.adamw : undefined;
    const hyper = new Float64Array([b1, b2, c1, c2, eps, lr, lr * weightDecay, clip]);
    for (const [name, p] of this.params) {
      const g0 = grads.get(name);
      if (!g0) continue;
      if (this.host) {
        const g = g0.dataSync() as Float32Array;
        const md = this.hostM.get(name)!;
        const vd = this.hostV.get(name)!;
        const pd = p.dataSync() as Float32Array;
        const n = pd.length;
        // Update in place when the variable alone holds its buffer (the usual case between steps);
        // otherwise write a new buffer and assign it.
        const inPlace = soleOwner(p);
        const pN = inPlace ? pd : new Float32Array(n);
        const decay = lr * weightDecay;
        if (adamw) adamw(pd, g, md, vd, pN, hyper);
        else for (let i = 0; i < n; i++) {
          const gi = g[i]! * clip;
          const mi = b1 * md[i]! + (1 - b1) * gi;
          const vi = b2 * vd[i]! + (1 - b2) * gi * gi;
          md[i] = mi;
          vd[i] = vi;
          const pi = pd[i]!;
          pN[i] = pi - lr * (md[i]! / c1 / (Math.sqrt(vd[i]! / c2) + eps)) - decay * pi;
        }
        if (!inPlace) {
          const tensor = tf.tensor(pN, p.shape, 'float32');
          p.assign(tensor);
          tensor.dispose();
        }
        continue;
      }
      const m = this.devM.get(name)!;
      const v = this.devV.get(name)!;
      tf.tidy(() => {
        const g = clip === 1 ? g0 : g0.mul(clip);
        const mNew = m.mul(b1).add(g.mul(1 - b1));
        const vNew = v.mul(b2).add(g.square().mul(1 - b2));
        m.assign(mNew);
        v.assign(vNew);
        const update = mNew.div(c1).div(vNew.div(c2).sqrt().add(eps));
        let next = p.sub(update.mul(lr));
        if (weightDecay > 0) next = next.sub(p.mul(lr * weightDecay));
        p.assign(next);
      });
    }
    this.step++;
    return norm;
  }

  dispose(): void {
    for (const t of [...this.devM.values(), ...this.devV.values()]) t.dispose();
    this.hostM.clear();
    this.hostV.clear();
  }
}
