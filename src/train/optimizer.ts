/**
 * AdamW with decoupled weight decay and global-norm gradient clipping, over named tf.Variables. Written
 * out (instead of tf.train.adam) because exact resume needs the moments saved and restored by name, and
 * tfjs's optimizers have neither decoupled weight decay nor a stable state layout.
 *
 * When the kernels have host passes (tensors in this process's memory: cpu, wasm) the moments are plain
 * Float32Arrays updated in place and the update is one fused pass per tensor, JS or C (the tf-op
 * version makes ~14 full passes, each allocating its output). Elsewhere (tensorflow, GPU) the moments
 * are variables and the update is tf ops that stay on the device: nothing is read back but the global
 * norm, a scalar the trainer reads with the loss (one asynchronous read per step), and the moments
 * when a checkpoint is written.
 */
import * as tf from '../backend/tfjs.js';
import type { HostPasses, Kernels } from '../backend/kernels.js';

export interface AdamWConfig {
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

let optimizerCounter = 0;

export class AdamW {
  /** Optimizer steps taken (bias correction uses step + 1). */
  step = 0;
  /** Moments in JS memory (kernels with host passes). */
  private readonly hostM = new Map<string, Float32Array>();
  private readonly hostV = new Map<string, Float32Array>();
  /** Moments as variables (device backends). */
  private readonly devM = new Map<string, tf.Variable>();
  private readonly devV = new Map<string, tf.Variable>();
  /** The kernels' passes over JS memory, or null: moments and update as tf ops. */
  private readonly passes: HostPasses | null;

  constructor(
    readonly params: Map<string, tf.Variable>,
    readonly config: AdamWConfig,
    /** The backend's kernels (BackendInfo.kernels). */
    readonly kernels: Kernels,
  ) {
    this.passes = kernels.host;
    // tfjs variable names are global: a per-optimizer prefix lets several optimizers live in one process.
    const id = optimizerCounter++;
    for (const [name, p] of params) {
      if (this.passes) {
        this.hostM.set(name, new Float32Array(p.size));
        this.hostV.set(name, new Float32Array(p.size));
      } else {
        this.devM.set(name, tf.variable(tf.zerosLike(p), false, `adam_m/${id}/${name}`));
        this.devV.set(name, tf.variable(tf.zerosLike(p), false, `adam_v/${id}/${name}`));
      }
    }
  }

  /** First and second moments of a parameter (read from the device on device backends). */
  async moments(name: string): Promise<{ m: Float32Array; v: Float32Array }> {
    if (this.passes) return { m: this.hostM.get(name)!, v: this.hostV.get(name)! };
    const [m, v] = await Promise.all([this.devM.get(name)!.data(), this.devV.get(name)!.data()]);
    return { m: m as Float32Array, v: v as Float32Array };
  }

  setMoments(name: string, m: Float32Array, v: Float32Array): void {
    if (this.passes) {
      this.hostM.get(name)!.set(m);
      this.hostV.get(name)!.set(v);
      return;
    }
    const p = this.params.get(name)!;
    for (const [variable, data] of [[this.devM.get(name)!, m], [this.devV.get(name)!, v]] as const) {
      tf.tidy(() => variable.assign(tf.tensor(data, p.shape, 'float32')));
    }
  }

  /**
   * Global L2 norm of the gradients: a number (host passes, summed in double over JS memory), or on
   * device backends the sum of squares as a scalar tensor, left on the device for the caller to read
   * (its square root is the norm).
   */
  static globalNorm(grads: Map<string, tf.Tensor>, kernels: Kernels): number | tf.Scalar {
    const passes = kernels.host;
    if (passes) {
      let sum = 0;
      for (const g of grads.values()) sum = passes.sumSquares(g.dataSync() as Float32Array, sum);
      return Math.sqrt(sum);
    }
    return tf.tidy(() => {
      let sum = tf.scalar(0);
      for (const g of grads.values()) sum = tf.add(sum, tf.sum(tf.square(g)));
      return sum;
    });
  }

  /**
   * One update. Gradients are clipped to `maxGradNorm` (0 = off) by global norm first: `norm` when the
   * caller read it already (the trainer reads it with the loss), else computed and read here. Returns
   * the pre-clipping norm.
   */
  async apply(grads: Map<string, tf.Tensor>, lr: number, maxGradNorm: number, norm?: number): Promise<number> {
    if (norm === undefined) {
      const n = AdamW.globalNorm(grads, this.kernels);
      if (typeof n === 'number') norm = n;
      else {
        norm = Math.sqrt((await n.data())[0]!);
        n.dispose();
      }
    }
    this.update(grads, lr, maxGradNorm, norm);
    return norm;
  }

  /** The update itself, for a known pre-clipping norm (never reads a device tensor). */
  update(grads: Map<string, tf.Tensor>, lr: number, maxGradNorm: number, norm: number): void {
    const clip = maxGradNorm > 0 && norm > maxGradNorm ? maxGradNorm / (norm + 1e-6) : 1;
    const [b1, b2] = this.config.betas;
    const t = this.step + 1;
    const c1 = 1 - Math.pow(b1, t);
    const c2 = 1 - Math.pow(b2, t);
    const { eps, weightDecay } = this.config;
    const passes = this.passes;
    const hyper = new Float64Array([b1, b2, c1, c2, eps, lr, lr * weightDecay, clip]);
    for (const [name, p] of this.params) {
      const g0 = grads.get(name);
      if (!g0) continue;
      if (passes) {
        const g = g0.dataSync() as Float32Array;
        const md = this.hostM.get(name)!;
        const vd = this.hostV.get(name)!;
        const pd = p.dataSync() as Float32Array;
        // Update in place when the variable alone holds its buffer (the usual case between steps);
        // otherwise write a new buffer and assign it.
        const inPlace = passes.writableInPlace(p);
        const pN = inPlace ? pd : new Float32Array(pd.length);
        passes.adamw(pd, g, md, vd, pN, hyper);
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
        const g = clip === 1 ? g0 : tf.mul(g0, clip);
        const mNew = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1));
        const vNew = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2));
        m.assign(mNew);
        v.assign(vNew);
        const update = tf.div(tf.div(mNew, c1), tf.add(tf.sqrt(tf.div(vNew, c2)), eps));
        let next = tf.sub(p, tf.mul(update, lr));
        if (weightDecay > 0) next = tf.sub(next, tf.mul(p, lr * weightDecay));
        p.assign(next);
      });
    }
    this.step++;
  }

  dispose(): void {
    for (const t of [...this.devM.values(), ...this.devV.values()]) t.dispose();
    this.hostM.clear();
    this.hostV.clear();
  }
}
