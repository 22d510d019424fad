/**
 * The model as the trainer sees it: the runtime's weights (src/model) plus the trainable parameters
 * (the weights themselves, or LoRA factors), and a loss whose gradient step needs memory linear in the
 * sequence length:
 *  - each decoder layer is one checkpointed node (`recomputed`, tf.customGrad): only the residual
 *    stream between layers is kept, the layer's activations are recomputed in the backward pass;
 *  - attention is blockwise in the forward and the backward pass (flash-attention.ts);
 *  - the LM head and cross-entropy run in row chunks, recomputed chunk by chunk in the backward
 *    pass, so `[T, vocab]` logits never exist whole;
 *  - the embedding gradient is a plain scatter-add in JS (wasm's tf.gather has no gradient).
 * The layer math mirrors src/model/llama.ts's `decoderLayer` op for op (same building blocks), and
 * tests check the loss against the runtime's `forwardLogits`.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelSpec } from '../config/model-spec.js';
import { FopeifyError } from '../errors.js';
import { segmentSumInto } from '../backend/segment-sum.js';
import { forwardLogits, fopeCoefficients } from '../model/llama.js';
import { linear, rmsNorm, swiGlu } from '../model/layers.js';
import { applyRotaryTf, cosSinTable, rotaryTables, type RotaryTables } from '../model/rotary.js';
import type { FopeLayout, WeightMap } from '../model/weights.js';
import { flashAttention } from './flash-attention.js';
import { isolatedGrads, namedGrads, recomputed } from './grad.js';
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
  /** Rows per LM-head chunk in the loss (default: about 8M logits per chunk). */
  lossChunk?: number;
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
  private readonly queryBlock?: number;
  private readonly keyBlock?: number;
  private readonly lossChunk: number;

  constructor(
    readonly spec: ModelSpec,
    /** Every base weight by HF name (FoPE coefficients included, frozen). */
    readonly weights: Map<string, tf.Variable>,
    readonly fopeLayout: FopeLayout | null,
    readonly options: TrainingModelOptions,
  ) {
    this.queryBlock = options.queryBlock;
    this.keyBlock = options.keyBlock;
    this.lossChunk = options.lossChunk ?? Math.max(16, Math.min(1024, Math.floor(8_000_000 / spec.vocabSize)));
    this.loraScale = options.lora.alpha / options.lora.rank;
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
    const { loss, grads } = namedGrads(() => this.forwardLoss(bt), [...this.params]);
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

  dispose(): void {
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
      const op = recomputed((xs) => this.layer(xs[0] as tf.Tensor2D, i, names, xs.slice(1), B, T, rot[i]!));
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
  private layer(h: tf.Tensor2D, i: number, names: string[], xs: tf.Tensor[], B: number, T: number, rot: RotaryTables): tf.Tensor2D {
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
    const o = flashAttention(qr, kr, vr, { queryBlock: this.queryBlock, keyBlock: this.keyBlock, slidingWindow: spec.slidingWindow });
    const merged = tf.transpose(o.reshape([B, nH, T, D]), [0, 2, 1, 3]).reshape([B * T, nH * D]) as tf.Tensor2D;
    const h1 = tf.add(h, linear(merged, W(`${a}.o_proj.weight`), opt(`${a}.o_proj.bias`))) as tf.Tensor2D;
    const y = rmsNorm(h1, get(`${p}.post_attention_layernorm.weight`), spec.rmsNormEps);
    const mlp = swiGlu(y, {
      gate: W(`${p}.mlp.gate_proj.weight`),
      up: W(`${p}.mlp.up_proj.weight`),
      down: W(`${p}.mlp.down_proj.weight`),
      gateBias: opt(`${p}.mlp.gate_proj.bias`),
      upBias: opt(`${p}.mlp.up_proj.bias`),
      downBias: opt(`${p}.mlp.down_proj.bias`),
    });
    return tf.add(h1, mlp) as tf.Tensor2D;
  }

  /** Final norm, LM head and mean cross-entropy, in row chunks, recomputed chunk by chunk backward. */
  private lossHead(h: tf.Tensor2D, bt: BatchTensors): tf.Scalar {
    if (bt.count === 0) throw new FopeifyError('INTERNAL', 'a batch without any target token');
    const { spec } = this;
    const names = this.headParams;
    const N = h.shape[0];
    const V = spec.vocabSize;
    const chunks: [number, number][] = [];
    for (let s = 0; s < N; s += this.lossChunk) chunks.push([s, Math.min(this.lossChunk, N - s)]);
    const inv = 1 / bt.count;
    const chunkNll = (hc: tf.Tensor2D, start: number, n: number, ps: tf.Tensor[]): tf.Scalar => {
      const get = (name: string) => {
        const j = names.indexOf(name);
        return j >= 0 ? ps[j]! : this.weights.get(name)!;
      };
      const x = rmsNorm(hc, get('model.norm.weight'), spec.rmsNormEps);
      const logits = tf.matMul(x, get(this.lmHeadName) as tf.Tensor2D, false, true);
      const tg = bt.targets.subarray(start, start + n);
      const oneHot = tf.oneHot(tf.tensor1d(tg, 'int32'), V, 1, 0, 'float32');
      const mask = tf.tensor1d(Float32Array.from(tg, (t) => (t >= 0 ? 1 : 0)));
      const nll = tf.sub(tf.logSumExp(logits, 1), tf.sum(tf.mul(logits, oneHot), 1));
      return tf.mul(tf.sum(tf.mul(nll, mask)), inv) as tf.Scalar;
    };
    const rowsOf = (x: tf.Tensor2D, s: number, n: number) => (n === N ? x : (tf.slice(x, [s, 0], [n, x.shape[1]]) as tf.Tensor2D));
    const op = tf.customGrad(((...args: unknown[]) => {
      const save = args.pop() as tf.GradSaveFunc;
      const [hIn, ...ps] = args as [tf.Tensor2D, ...tf.Tensor[]];
      let total: tf.Scalar | null = null;
      for (const [s, n] of chunks) {
        const prev: tf.Scalar | null = total;
        total = tf.tidy((): tf.Scalar => {
          const part = chunkNll(rowsOf(hIn, s, n), s, n, ps);
          return prev ? (tf.add(prev, part) as tf.Scalar) : part;
        });
        prev?.dispose();
      }
      save([hIn, ...ps]);
      return {
        value: total!,
        gradFunc: (dy: tf.Scalar, saved: tf.Tensor[]) =>
          tf.tidy((): tf.Tensor[] => {
            const [hS, ...pS] = saved as [tf.Tensor2D, ...tf.Tensor[]];
            const dh: tf.Tensor[] = [];
            const dps: (tf.Tensor | null)[] = pS.map(() => null);
            for (const [s, n] of chunks) {
              const hc = n === N ? hS : (tf.slice(hS, [s, 0], [n, hS.shape[1]]) as tf.Tensor2D);
              const gs = isolatedGrads(() => chunkNll(hc, s, n, pS), [hc, ...pS], dy);
              dh.push(gs[0]!);
              gs.slice(1).forEach((g, j) => {
                const prev = dps[j];
                dps[j] = prev ? tf.add(prev, g) : g;
                if (prev) {
                  prev.dispose();
                  g.dispose();
                }
              });
              if (hc !== hS) hc.dispose();
            }
            return [dh.length === 1 ? dh[0]! : tf.concat(dh, 0), ...(dps as tf.Tensor[])];
          }),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    return op(h, ...names.map((n) => this.params.get(n)!)) as tf.Scalar;
  }
}
