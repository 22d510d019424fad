/**
 * The model as the trainer sees it: the runtime's weights (src/model) plus the trainable parameters
 * (the weights themselves, or LoRA factors), and a loss whose gradient step needs memory linear in the
 * sequence length:
 *  - each decoder layer is one checkpointed node (`recomputed`, tf.customGrad): only the residual
 *    stream between layers is kept, the layer's activations are recomputed in the backward pass;
 *  - attention is blockwise in the forward and the backward pass (flash-attention.ts);
 *  - attention outputs of the forward pass are reused by the recomputation (flash-attention.ts);
 *  - the LM head and cross-entropy run in row chunks and produce their gradient during the forward
 *    pass (the loss is the last op), so `[T, vocab]` logits never exist whole;
 *  - the embedding gradient is a plain scatter-add in JS (wasm's tf.gather has no gradient).
 * The layer math mirrors src/model/llama.ts's `decoderLayer` op for op (same building blocks), and
 * tests check the loss against the runtime's `forwardLogits`.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelSpec } from '../config/model-spec.js';
import { FopeifyError } from '../errors.js';
import { segmentSumInto } from '../backend/segment-sum.js';
import { forwardLogits, fopeCoefficients } from '../model/llama.js';
import { linear, rmsNorm, silu } from '../model/layers.js';
import { applyRotaryTf, cosSinTable, rotaryTables, type RotaryTables } from '../model/rotary.js';
import type { FopeLayout, WeightMap } from '../model/weights.js';
import { flashAttention, type AttentionResult } from './flash-attention.js';
import { isolatedGrads, namedGrads, recomputed, taping } from './grad.js';
import { crossEntropyRows, hostKernels, swiGluActivation } from './host-kernels.js';
import { acceleratedCpuAddon } from '../backend/select.js';
import { headChunkNative } from './native-attention.js';
import { timed } from './timing.js';
import { initLora, isDirectlyTrainable, loraNames, loraTargetsOf, mergeLora } from './lora.js';
import type { LoraSettings, Trainable } from './recipe.js';

export interface TrainingModelOptions {
  trainable: Trainable;
  lora: LoraSettings;
  /** Seed of the LoRA init. */
  seed: number;
  /** Attention blocks (default 256 queries × 512 keys). */
  queryBlock?: number;
  keyBlock?: number;
  /** Rows per LM-head chunk in the loss (default: about 32M logits, 128 MB, per chunk). */
  lossChunk?: number;
  /** Fused JS softmax passes (default: on the tfjs cpu backend; false: tf ops, as on GPU). */
  host?: boolean;
}

/** A batch of packed chunks (each seq-len + 1 tokens; −1 marks a padding token whose loss is ignored). */
export type Batch = readonly Int32Array[];

interface BatchTensors {
  B: number;
  T: number;
  ids: Int32Array;
  targets: Int32Array;
  count: number;
}

function batchTensors(batch: Batch): BatchTensors {
  const B = batch.length;
  if (!B) throw new FopeifyError('INTERNAL', 'empty batch');
  const T = batch[0]!.length - 1;
  if (T < 1) throw new FopeifyError('INTERNAL', 'chunks must hold at least 2 tokens');
  const ids = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  let count = 0;
  batch.forEach((c, b) => {
    if (c.length !== T + 1) throw new FopeifyError('INTERNAL', 'every chunk of a batch must have the same length');
    for (let t = 0; t < T; t++) {
      const x = c[t]!;
      ids[b * T + t] = x < 0 ? 0 : x; // padding: any valid id (later positions never see it, its loss is masked)
      const y = c[t + 1]!;
      targets[b * T + t] = y;
      if (y >= 0) count++;
    }
  });
  return { B, T, ids, targets, count };
}

let modelCounter = 0;

export class TrainingModel {
  /** Everything the optimizer updates, by name (base weights by HF name, LoRA as `<module>.lora_A.weight`). */
  readonly params = new Map<string, tf.Variable>();
  /** Base weight name → its LoRA factor names. */
  readonly lora = new Map<string, { a: string; b: string }>();
  readonly loraScale: number;
  /** The LM head weight's name (`lm_head.weight`, or the embeddings when tied). */
  readonly lmHeadName: string;
  private readonly layerParams: string[][];
  private readonly headParams: string[];
  private readonly rotary = new Map<number, RotaryTables[]>();
  /** Attention results of this step's forward pass, by layer, for the layer's recomputation. */
  private readonly attention = new Map<number, AttentionResult>();
  private readonly queryBlock?: number;
  private readonly keyBlock?: number;
  private readonly lossChunk: number;
  /** Fused JS / WebAssembly elementwise passes (the tfjs cpu backend). */
  private readonly host: boolean;

  constructor(
    readonly spec: ModelSpec,
    /** Every base weight by HF name (FoPE coefficients included, frozen). */
    readonly weights: Map<string, tf.Variable>,
    readonly fopeLayout: FopeLayout | null,
    readonly options: TrainingModelOptions,
  ) {
    this.queryBlock = options.queryBlock;
    this.keyBlock = options.keyBlock;
    this.lossChunk = options.lossChunk ?? Math.max(16, Math.min(2048, Math.floor(32_000_000 / spec.vocabSize)));
    this.loraScale = options.lora.alpha / options.lora.rank;
    this.host = options.host ?? hostKernels();
    this.lmHeadName = weights.has('lm_head.weight') ? 'lm_head.weight' : 'model.embed_tokens.weight';
    for (const [name, v] of weights) {
      if (isDirectlyTrainable(name, options.trainable, options.lora)) this.params.set(name, v);
    }
    if (options.trainable === 'lora') {
      const id = modelCounter++;
      const targets = loraTargetsOf(weights.keys(), options.lora);
      if (!targets.length) throw new FopeifyError('BAD_ARGUMENT', `no weight matches the LoRA targets ${options.lora.targets.join(', ')}`);
      for (const base of targets) {
        const names = loraNames(base);
        const w = weights.get(base)!;
        const init = initLora(base, w.shape, options.lora.rank, options.seed);
        this.params.set(names.a, tf.variable(tf.tensor2d(init.a, [options.lora.rank, w.shape[1]!]), true, `lora/${id}/${names.a}`));
        this.params.set(names.b, tf.variable(tf.tensor2d(init.b, [w.shape[0]!, options.lora.rank]), true, `lora/${id}/${names.b}`));
        this.lora.set(base, names);
      }
    }
    if (!this.params.size) throw new FopeifyError('BAD_ARGUMENT', 'nothing to train: the trainable set selects no weight');
    const names = [...this.params.keys()];
    this.layerParams = Array.from({ length: spec.numLayers }, (_, i) => names.filter((n) => n.startsWith(`model.layers.${i}.`)));
    this.headParams = names.filter((n) => n === 'model.norm.weight' || n === this.lmHeadName);
  }

  /** Trainable parameter count. */
  get trainableCount(): number {
    let n = 0;
    for (const v of this.params.values()) n += v.size;
    return n;
  }

  /** Mean causal-LM loss of a batch (no gradients). */
  loss(batch: Batch): number {
    const bt = batchTensors(batch);
    return tf.tidy(() => this.forwardLoss(bt).dataSync()[0]!);
  }

  /** Mean causal-LM loss of a batch and its gradient for every trainable parameter (caller disposes). */
  lossAndGrads(batch: Batch): { loss: number; grads: Map<string, tf.Tensor>; tokens: number } {
    const bt = batchTensors(batch);
    let result: ReturnType<typeof namedGrads>;
    try {
      result = timed('step (forward + backward)', () => namedGrads(() => this.forwardLoss(bt), [...this.params]));
    } finally {
      this.clearAttention();
    }
    const { loss, grads } = result;
    const value = loss.dataSync()[0]!;
    loss.dispose();
    return { loss: value, grads, tokens: bt.B * bt.T };
  }

  /**
   * Run `fn` on the weights the model currently computes with (LoRA merged in), as a WeightMap the
   * runtime accepts. Merged tensors are freed afterwards.
   */
  withMergedWeights<T>(fn: (weights: WeightMap) => T): T {
    if (!this.lora.size) return fn(this.weights);
    const merged = new Map<string, tf.Tensor>(this.weights);
    const temp: tf.Tensor[] = [];
    for (const [base, n] of this.lora) {
      const t = mergeLora(this.weights.get(base)!, this.params.get(n.a)!, this.params.get(n.b)!, this.loraScale);
      merged.set(base, t);
      temp.push(t);
    }
    try {
      return fn(merged);
    } finally {
      tf.dispose(temp);
    }
  }

  /** Logits `[B, T, V]` from the runtime's forward pass on the merged weights (caller disposes). */
  logits(ids: readonly number[] | readonly (readonly number[])[]): tf.Tensor3D {
    return this.withMergedWeights((w) => forwardLogits(w, this.spec, ids as number[][], { queryBlock: this.queryBlock, keyBlock: this.keyBlock }));
  }

  private clearAttention(): void {
    for (const r of this.attention.values()) tf.dispose([r.o, r.lse]);
    this.attention.clear();
  }

  dispose(): void {
    this.clearAttention();
    for (const [name, v] of this.params) if (!this.weights.has(name)) v.dispose();
    for (const tables of this.rotary.values()) for (const t of new Set(tables)) tf.dispose([t.cos, t.sin]);
    this.rotary.clear();
  }

  // -------------------------------------------------------------------------------------------

  /** Rotary tables for positions 0..T−1, per layer (built once per length). */
  private tables(T: number): RotaryTables[] {
    let t = this.rotary.get(T);
    if (!t) {
      const positions = Float32Array.from({ length: T }, (_, i) => i);
      const build = (layer: number) =>
        tf.tidy(() => {
          const r = rotaryTables(cosSinTable(this.spec, positions, fopeCoefficients(this.weights, this.fopeLayout, layer)));
          return { cos: tf.keep(r.cos), sin: tf.keep(r.sin), dim: r.dim };
        });
      if (this.fopeLayout === 'per-layer') t = Array.from({ length: this.spec.numLayers }, (_, i) => build(i));
      else {
        const shared = build(0);
        t = Array.from({ length: this.spec.numLayers }, () => shared);
      }
      this.rotary.set(T, t);
    }
    return t;
  }

  private forwardLoss(bt: BatchTensors): tf.Scalar {
    const { B, T } = bt;
    const rot = this.tables(T);
    const E = 'model.embed_tokens.weight';
    let h = this.embed(bt, this.params.get(E));
    for (let i = 0; i < this.spec.numLayers; i++) {
      const names = this.layerParams[i]!;
      const op = recomputed((xs, phase) => timed(`layer ${phase}`, () => this.layer(xs[0] as tf.Tensor2D, i, names, xs.slice(1), B, T, rot[i]!, phase)));
      h = op(h, ...names.map((n) => this.params.get(n)!)) as tf.Tensor2D;
    }
    return this.lossHead(h, bt);
  }

  /** Embedding lookup; when trained, a custom gradient scatter-adds the rows (any backend). */
  private embed(bt: BatchTensors, trained: tf.Variable | undefined): tf.Tensor2D {
    const E = this.weights.get('model.embed_tokens.weight')!;
    const idsT = tf.tensor1d(bt.ids, 'int32');
    if (!trained) {
      const h = tf.gather(E, idsT) as tf.Tensor2D;
      idsT.dispose();
      return h;
    }
    const [V, H] = E.shape as [number, number];
    const rows = bt.ids.length;
    const op = tf.customGrad(((e: tf.Tensor) => ({
      value: tf.gather(e, idsT),
      gradFunc: (dy: tf.Tensor) => {
        const g = new Float32Array(V * H);
        segmentSumInto(dy.dataSync() as Float32Array, bt.ids, rows, H, V, g);
        return tf.tensor2d(g, [V, H]);
      },
    })) as unknown as Parameters<typeof tf.customGrad>[0]);
    const h = op(trained) as tf.Tensor2D;
    idsT.dispose();
    return h;
  }

  /** One decoder layer on `[B·T, H]`, as llama.ts's decoderLayer, with trained tensors taken from `xs`. */
  private layer(
    h: tf.Tensor2D,
    i: number,
    names: string[],
    xs: tf.Tensor[],
    B: number,
    T: number,
    rot: RotaryTables,
    phase: 'forward' | 'recompute',
  ): tf.Tensor2D {
    const { spec } = this;
    const local = new Map<string, tf.Tensor>();
    names.forEach((n, j) => local.set(n, xs[j]!));
    const get = (name: string): tf.Tensor => {
      const t = local.get(name) ?? this.weights.get(name);
      if (!t) throw new FopeifyError('INTERNAL', `weight ${name} is not loaded`);
      return t;
    };
    const opt = (name: string) => local.get(name) ?? this.weights.get(name);
    const W = (name: string): tf.Tensor => {
      const l = this.lora.get(name);
      return l ? tf.add(get(name), tf.mul(tf.matMul(get(l.b) as tf.Tensor2D, get(l.a) as tf.Tensor2D), this.loraScale)) : get(name);
    };
    const { numHeads: nH, numKvHeads: nKv, headDim: D } = spec;
    const R = nH / nKv;
    const p = `model.layers.${i}`;
    const a = `${p}.self_attn`;
    const heads = (y: tf.Tensor2D, n: number) => tf.transpose(y.reshape([B, T, n, D]), [0, 2, 1, 3]) as tf.Tensor4D;
    const x = rmsNorm(h, get(`${p}.input_layernorm.weight`), spec.rmsNormEps);
    let q = heads(linear(x, W(`${a}.q_proj.weight`), opt(`${a}.q_proj.bias`)), nH);
    let k = heads(linear(x, W(`${a}.k_proj.weight`), opt(`${a}.k_proj.bias`)), nKv);
    const v = heads(linear(x, W(`${a}.v_proj.weight`), opt(`${a}.v_proj.bias`)), nKv);
    if (spec.qkNorm) {
      q = rmsNorm(q, get(`${a}.q_norm.weight`), spec.rmsNormEps);
      k = rmsNorm(k, get(`${a}.k_norm.weight`), spec.rmsNormEps);
    }
    const qr = applyRotaryTf(q.reshape([B, nKv, R, T, D]) as tf.Tensor5D, rot).reshape([B * nKv, R, T, D]) as tf.Tensor4D;
    const kr = applyRotaryTf(k.reshape([B, nKv, 1, T, D]) as tf.Tensor5D, rot).reshape([B * nKv, T, D]) as tf.Tensor3D;
    const vr = v.reshape([B * nKv, T, D]) as tf.Tensor3D;
    // The forward pass of a training step keeps the attention result; the recomputation reuses it.
    const reuse = phase === 'recompute' ? this.attention.get(i) : undefined;
    const keep = phase === 'forward' && taping() ? (r: AttentionResult) => this.attention.set(i, r) : undefined;
    const o = flashAttention(qr, kr, vr, { queryBlock: this.queryBlock, keyBlock: this.keyBlock, slidingWindow: spec.slidingWindow, reuse, keep, host: this.host });
    if (reuse) {
      tf.dispose([reuse.o, reuse.lse]);
      this.attention.delete(i);
    }
    const merged = tf.transpose(o.reshape([B, nH, T, D]), [0, 2, 1, 3]).reshape([B * T, nH * D]) as tf.Tensor2D;
    const h1 = tf.add(h, linear(merged, W(`${a}.o_proj.weight`), opt(`${a}.o_proj.bias`))) as tf.Tensor2D;
    const y = rmsNorm(h1, get(`${p}.post_attention_layernorm.weight`), spec.rmsNormEps);
    const gate = linear(y, W(`${p}.mlp.gate_proj.weight`), opt(`${p}.mlp.gate_proj.bias`));
    const up = linear(y, W(`${p}.mlp.up_proj.weight`), opt(`${p}.mlp.up_proj.bias`));
    const act = this.host ? timed('swiglu activation', () => swiGluActivation(gate, up)) : (tf.mul(silu(gate), up) as tf.Tensor2D);
    const mlp = linear(act, W(`${p}.mlp.down_proj.weight`), opt(`${p}.mlp.down_proj.bias`));
    return tf.add(h1, mlp) as tf.Tensor2D;
  }

  /**
   * Final norm, LM head and mean cross-entropy, in row chunks. The loss is the last op of the step, so
   * its gradient for dy = 1 is known during the forward pass: each chunk's
   * `dlogits = (softmax − onehot) / tokens` goes straight into the LM head's two products, and only
   * `dx` (`[rows, hidden]`) and the head's weight gradient are kept for the backward pass (scaled by
   * dy there; the final norm's backward is autodiff on `[rows, hidden]`). Logits are computed once per
   * chunk and never exist for the whole sequence. On the cpu backend the softmax is one fused JS pass.
   */
  private lossHead(h: tf.Tensor2D, bt: BatchTensors): tf.Scalar {
    if (bt.count === 0) throw new FopeifyError('INTERNAL', 'a batch without any target token');
    const { spec } = this;
    const names = this.headParams;
    const N = h.shape[0];
    const V = spec.vocabSize;
    const chunks: [number, number][] = [];
    for (let s = 0; s < N; s += this.lossChunk) chunks.push([s, Math.min(this.lossChunk, N - s)]);
    const inv = 1 / bt.count;
    const normName = 'model.norm.weight';
    const jNorm = names.indexOf(normName);
    const jHead = names.indexOf(this.lmHeadName);
    const get = (ps: tf.Tensor[], name: string) => {
      const j = names.indexOf(name);
      return j >= 0 ? ps[j]! : this.weights.get(name)!;
    };
    const host = this.host;
    const rowsOf = (x: tf.Tensor2D, s: number, n: number) => (n === N ? x : (tf.slice(x, [s, 0], [n, x.shape[1]]) as tf.Tensor2D));

    /** One chunk: summed NLL, and with `grad` the chunk's dx `[n, H]` and LM-head gradient `[V, H]`. */
    const chunk = (hIn: tf.Tensor2D, ps: tf.Tensor[], s: number, n: number, grad: boolean): { nll: number; dx?: tf.Tensor2D; dW?: tf.Tensor2D } => {
      const tg = bt.targets.subarray(s, s + n);
      let nll = 0;
      const out = tf.tidy(() => {
        const W = get(ps, this.lmHeadName) as tf.Tensor2D;
        const x = rmsNorm(rowsOf(hIn, s, n), get(ps, normName), spec.rmsNormEps);
        const logits = tf.matMul(x, W, false, true);
        let dlogits: tf.Tensor2D | null = null;
        if (host) {
          const r = crossEntropyRows(logits.dataSync() as Float32Array, n, V, tg, grad ? inv : null);
          nll = r.nll;
          if (r.dlogits) dlogits = tf.tensor2d(r.dlogits, [n, V]);
        } else {
          const lse = tf.logSumExp(logits, 1, true);
          const picked = tf.gather(logits.reshape([n * V]), tf.tensor1d(Int32Array.from(tg, (t, i) => i * V + Math.max(t, 0)), 'int32'));
          const mask = tf.tensor1d(Float32Array.from(tg, (t) => (t >= 0 ? 1 : 0)));
          nll = tf.sum(tf.mul(tf.sub(lse.reshape([n]), picked), mask)).dataSync()[0]!;
          if (grad) {
            // (softmax − onehot) / tokens; padding rows get lse = +∞, so their softmax row is 0.
            const shift = tf.tensor2d(Float32Array.from(tg, (t) => (t >= 0 ? Math.log(bt.count) : Infinity)), [n, 1]);
            const p = tf.exp(tf.sub(logits, tf.add(lse, shift)));
            dlogits = tf.sub(p, tf.oneHot(tf.tensor1d(tg, 'int32'), V, inv, 0, 'float32')) as tf.Tensor2D;
          }
        }
        if (!dlogits) return {};
        return { dx: tf.matMul(dlogits, W), ...(jHead >= 0 ? { dW: tf.matMul(dlogits, x, true, false) } : {}) };
      }) as { dx?: tf.Tensor2D; dW?: tf.Tensor2D };
      return { nll, ...out };
    };

    const blas = host ? acceleratedCpuAddon() : null;
    const H = h.shape[1];
    /** dh (and the trained norm / head gradients) from the dx and dW kept by the forward pass, times dy. */
    const backward = (dy: tf.Scalar, saved: tf.Tensor[]): tf.Tensor[] =>
      tf.tidy((): tf.Tensor[] => {
        const hS = saved[0] as tf.Tensor2D;
        const pS = saved.slice(1, 1 + names.length);
        const dxS = saved[1 + names.length]!;
        const dWS = jHead >= 0 ? saved[2 + names.length]! : null;
        const c = dy.dataSync()[0]!;
        const scaled = (t: tf.Tensor) => (c === 1 ? tf.clone(t) : tf.mul(t, c));
        const normW = get(pS, normName);
        const gs = isolatedGrads(() => rmsNorm(hS, normW, spec.rmsNormEps), jNorm >= 0 ? [hS, normW] : [hS], scaled(dxS));
        return [gs[0]!, ...pS.map((p, j) => (j === jNorm ? gs[1]! : j === jHead ? scaled(dWS!) : tf.zerosLike(p)))];
      });
    const op = tf.customGrad(((...args: unknown[]) => {
      const save = args.pop() as tf.GradSaveFunc;
      const [hIn, ...ps] = args as [tf.Tensor2D, ...tf.Tensor[]];
      const grad = taping();
      let total = 0;
      if (blas) {
        // BLAS straight on the data: logits only in a scratch buffer, dW accumulated in place.
        const Wd = get(ps, this.lmHeadName).dataSync() as Float32Array;
        const dxAll = grad ? new Float32Array(N * H) : null;
        const dWAll = grad && jHead >= 0 ? new Float32Array(V * H) : null;
        for (const [s, n] of chunks) {
          const xd = tf.tidy(() => rmsNorm(rowsOf(hIn, s, n), get(ps, normName), spec.rmsNormEps).dataSync() as Float32Array);
          total += timed('head (logits, loss, gradient)', () => headChunkNative(blas, xd, Wd, n, H, V, bt.targets.subarray(s, s + n), grad ? inv : null, dxAll, s * H, dWAll));
        }
        if (grad) save([hIn, ...ps, tf.tensor2d(dxAll!, [N, H]), ...(dWAll ? [tf.tensor2d(dWAll, [V, H])] : [])]);
        return { value: tf.scalar(total * inv), gradFunc: backward };
      }
      const dxs: tf.Tensor2D[] = [];
      let dW: tf.Tensor2D | null = null;
      for (const [s, n] of chunks) {
        const r = chunk(hIn, ps, s, n, grad);
        total += r.nll;
        if (r.dx) dxs.push(r.dx);
        if (r.dW) {
          const prev: tf.Tensor2D | null = dW;
          dW = prev ? (tf.add(prev, r.dW) as tf.Tensor2D) : r.dW;
          if (prev) {
            prev.dispose();
            r.dW.dispose();
          }
        }
      }
      if (grad) {
        const dx = dxs.length === 1 ? dxs[0]! : (tf.concat(dxs, 0) as tf.Tensor2D);
        save([hIn, ...ps, dx, ...(dW ? [dW] : [])]);
      }
      return { value: tf.scalar(total * inv), gradFunc: backward };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    return op(h, ...names.map((n) => this.params.get(n)!)) as tf.Scalar;
  }
}
