/**
 * A self-contained transformer training step (forward + backward through tf.grads) with the ops a
 * Llama-style model uses: embedding gather, RMSNorm, rotary embedding (slice/neg/concat), causal
 * attention (reshape/transpose/batched matmul/softmax), SwiGLU, residuals, tied LM head and
 * cross-entropy. It is the workload the backend layer is tuned and benchmarked on (bench/gemm.mjs,
 * test/backend), independent of fopeify's real model code so that it stays a fixed yardstick.
 */
import * as tf from './tfjs.js';

export interface WorkloadConfig {
  dim: number;
  heads: number;
  ffn: number;
  layers: number;
  vocab: number;
  tokens: number;
  seed?: number;
}

/** The shape toolchain.md measured: SmolLM-135M-like blocks, 512 tokens, ~56 GFLOP per step. */
export const STEP_576: WorkloadConfig = { dim: 576, heads: 9, ffn: 1536, layers: 4, vocab: 1024, tokens: 512 };

export interface Workload {
  config: WorkloadConfig;
  params: tf.Tensor[];
  /** Loss and gradients for every parameter. The caller disposes them. */
  step(): { loss: tf.Scalar; grads: tf.Tensor[] };
  /** Matmul FLOPs of one forward+backward step (the standard 3x forward). */
  flops: number;
  dispose(): void;
}

function lcg(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export function makeWorkload(tfx: typeof tf, cfg: WorkloadConfig): Workload {
  const { dim, heads, ffn, layers, vocab, tokens } = cfg;
  const hd = dim / heads;
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new Error('dim / heads must be an even integer');
  const rnd = lcg(cfg.seed ?? 1234);
  const mat = (shape: number[], scale: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = (rnd() * 2 - 1) * scale;
    return tfx.tensor(v, shape, 'float32');
  };
  const params: tf.Tensor[] = [mat([vocab, dim], 0.5)];
  for (let l = 0; l < layers; l++) {
    const s = 1 / Math.sqrt(dim);
    params.push(tfx.ones([dim]), mat([dim, dim], s), mat([dim, dim], s), mat([dim, dim], s), mat([dim, dim], s));
    params.push(tfx.ones([dim]), mat([dim, ffn], s), mat([dim, ffn], s), mat([ffn, dim], 1 / Math.sqrt(ffn)));
  }
  params.push(tfx.ones([dim]));

  const ids = tfx.tensor1d(
    Array.from({ length: tokens }, () => Math.floor(rnd() * vocab)),
    'int32',
  );
  const targets = tfx.tensor1d(
    Array.from({ length: tokens }, () => Math.floor(rnd() * vocab)),
    'int32',
  );
  const targetOneHot = tfx.cast(tfx.oneHot(targets, vocab), 'float32');
  // Rotary tables [tokens, hd/2] and the causal mask [tokens, tokens].
  const half = hd / 2;
  const cosv = new Float32Array(tokens * half);
  const sinv = new Float32Array(tokens * half);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < half; i++) {
      const ang = t / Math.pow(10000, (2 * i) / hd);
      cosv[t * half + i] = Math.cos(ang);
      sinv[t * half + i] = Math.sin(ang);
    }
  }
  const cos = tfx.tensor2d(cosv, [tokens, half]);
  const sin = tfx.tensor2d(sinv, [tokens, half]);
  const maskv = new Float32Array(tokens * tokens);
  for (let i = 0; i < tokens; i++) for (let j = i + 1; j < tokens; j++) maskv[i * tokens + j] = -1e9;
  const mask = tfx.tensor2d(maskv, [tokens, tokens]);
  const scale = tfx.scalar(1 / Math.sqrt(hd));
  const eps = tfx.scalar(1e-5);

  const rms = (x: tf.Tensor, g: tf.Tensor) =>
    tfx.mul(tfx.mul(x, tfx.rsqrt(tfx.add(tfx.mean(tfx.square(x), -1, true), eps))), g);
  const rope = (x: tf.Tensor) => {
    // x: [heads, tokens, hd]; rotate the two halves.
    const x1 = tfx.slice(x, [0, 0, 0], [heads, tokens, half]);
    const x2 = tfx.slice(x, [0, 0, half], [heads, tokens, half]);
    return tfx.concat([tfx.sub(tfx.mul(x1, cos), tfx.mul(x2, sin)), tfx.add(tfx.mul(x2, cos), tfx.mul(x1, sin))], -1);
  };
  const splitHeads = (x: tf.Tensor) => tfx.transpose(tfx.reshape(x, [tokens, heads, hd]), [1, 0, 2]);

  const forward = (...p: tf.Tensor[]): tf.Scalar => {
    const emb = p[0]!;
    let x = tfx.gather(emb, ids); // [tokens, dim]
    let i = 1;
    for (let l = 0; l < layers; l++) {
      const [g1, wq, wk, wv, wo, g2, w1, w3, w2] = p.slice(i, i + 9) as tf.Tensor[];
      i += 9;
      const h = rms(x, g1!);
      const q = rope(splitHeads(tfx.matMul(h, wq!)));
      const k = rope(splitHeads(tfx.matMul(h, wk!)));
      const v = splitHeads(tfx.matMul(h, wv!));
      const att = tfx.softmax(tfx.add(tfx.mul(tfx.matMul(q, k, false, true), scale), mask), -1);
      const o = tfx.reshape(tfx.transpose(tfx.matMul(att, v), [1, 0, 2]), [tokens, dim]);
      x = tfx.add(x, tfx.matMul(o, wo!));
      const h2 = rms(x, g2!);
      const a = tfx.matMul(h2, w1!);
      const b = tfx.matMul(h2, w3!);
      const silu = tfx.mul(a, tfx.sigmoid(a));
      x = tfx.add(x, tfx.matMul(tfx.mul(silu, b), w2!));
    }
    const hf = rms(x, p[i]!);
    const logits = tfx.matMul(hf, emb, false, true); // tied head [tokens, vocab]
    const logp = tfx.logSoftmax(logits, -1);
    return tfx.neg(tfx.mean(tfx.sum(tfx.mul(logp, targetOneHot), -1))) as tf.Scalar;
  };
  const g = tfx.valueAndGrads(forward as (...args: tf.Tensor[]) => tf.Tensor);
  const perTokenFwd =
    layers * (2 * 4 * dim * dim + 2 * 3 * dim * ffn + 2 * 2 * tokens * dim) + 2 * dim * vocab;
  return {
    config: cfg,
    params,
    flops: 3 * tokens * perTokenFwd,
    step() {
      const { value, grads } = g(params);
      return { loss: value as tf.Scalar, grads };
    },
    dispose() {
      tfx.dispose([...params, ids, targets, targetOneHot, cos, sin, mask, scale, eps]);
    },
  };
}
