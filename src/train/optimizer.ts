/**
 * AdamW with decoupled weight decay and global-norm gradient clipping, over named tf.Variables. Written
 * out (instead of tf.train.adam) because exact resume needs the moments saved and restored by name, and
 * tfjs's optimizers have neither decoupled weight decay nor a stable state layout.
 */
import * as tf from '@tensorflow/tfjs';

export interface AdamWConfig {
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

let optimizerCounter = 0;

export class AdamW {
  /** Optimizer steps taken (bias correction uses step + 1). */
  step = 0;
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();

  constructor(
    readonly params: Map<string, tf.Variable>,
    readonly config: AdamWConfig,
  ) {
    // tfjs variable names are global: a per-optimizer prefix lets several optimizers live in one process.
    const id = optimizerCounter++;
    for (const [name, p] of params) {
      this.m.set(name, tf.variable(tf.zerosLike(p), false, `adam_m/${id}/${name}`));
      this.v.set(name, tf.variable(tf.zerosLike(p), false, `adam_v/${id}/${name}`));
    }
  }

  /** Global L2 norm of the gradients. */
  static globalNorm(grads: Map<string, tf.Tensor>): number {
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
    const norm = AdamW.globalNorm(grads);
    const clip = maxGradNorm > 0 && norm > maxGradNorm ? maxGradNorm / (norm + 1e-6) : 1;
    const [b1, b2] = this.config.betas;
    const t = this.step + 1;
    const c1 = 1 - Math.pow(b1, t);
    const c2 = 1 - Math.pow(b2, t);
    for (const [name, p] of this.params) {
      const g0 = grads.get(name);
      if (!g0) continue;
      tf.tidy(() => {
        const g = clip === 1 ? g0 : g0.mul(clip);
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        const mNew = m.mul(b1).add(g.mul(1 - b1));
        const vNew = v.mul(b2).add(g.square().mul(1 - b2));
        m.assign(mNew);
        v.assign(vNew);
        const update = mNew.div(c1).div(vNew.div(c2).sqrt().add(this.config.eps));
        let next = p.sub(update.mul(lr));
        if (this.config.weightDecay > 0) next = next.sub(p.mul(lr * this.config.weightDecay));
        p.assign(next);
      });
    }
    this.step++;
    return norm;
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}
