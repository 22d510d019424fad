/**
 * The model as the trainer sees it: the runtime's weights (src/model) plus the trainable parameters
 * (the weights themselves, or LoRA factors), and a loss whose gradient step needs memory linear in the
 * sequence length:
 *  - a decoder layer is either one checkpointed node (`recomputed`, tf.customGrad): only the residual
 *    stream between layers is kept, the layer's activations are recomputed in the backward pass; or,
 *    as the activation plan decides (activations.ts: `recompute`, the activation budget), taped
 *    plainly, its activations kept for the backward pass;
 *  - attention is blockwise in the forward and the backward pass (flash-attention.ts);
 *  - attention outputs of the forward pass are reused by the recomputation (flash-attention.ts);
 *  - the LM head and cross-entropy run in row chunks and produce their gradient during the forward
 *    pass (the loss is the last op), so `[T, vocab]` logits never exist whole;
 *  - the embedding gradient is a plain scatter-add in JS where tensors live in JS memory (wasm's
 *    tf.gather has no gradient), in a fixed order on the device elsewhere (embedding-grad.ts); a tied
 *    table's lookup rows are added straight into the LM head's gradient there (tied-embedding.ts).
 * Nothing here reads a tensor synchronously on a device backend (kernels without host passes, e.g.
 * webgpu, where synchronous reads do not exist): the loss comes back as a tensor or through one
 * `await data()`, and the FoPE coefficients are read once, asynchronously, by `ready()`.
 * The layer is the runtime's own (src/model/decoder.ts's `decoderLayer`), given the trained tensors
 * through a weight accessor that merges LoRA factors in, and differentiable ops; tests check the loss
 * against the runtime's `forwardLogits`. What is fast on this backend comes from the kernels.
 */
import * as tf from '../backend/tfjs.js';
import type { ModelSpec } from '../config/model-spec.js';
import { FopeifyError } from '../errors.js';
import type { Kernels } from '../backend/kernels.js';
import { segmentSumInto } from '../backend/segment-sum.js';
import { decoderLayer, type LayerOps, type LayerWeights } from '../model/decoder.js';
import { forwardLogits, fopeCoefficients, readFopeCoefficients } from '../model/llama.js';
import { cosSinTable, rotaryTables, type RotaryTables } from '../model/rotary.js';
import type { FopeLayout, WeightMap } from '../model/weights.js';
import { defaultLossChunk, lossChunks } from './binding-limit.js';
import { embeddingGradOnDevice } from './embedding-grad.js';
import { keepsLayer, keptLayerBytes, planActivations, type ActivationPlan, type RecomputePolicy } from './activations.js';
import { flashAttention, flashAttentionTokens, type AttentionResult, type FlashAttentionOptions } from './flash-attention.js';
import { isolatedGrads, namedGrads, recomputed, taping } from './grad.js';
import { EMBEDDING_TAP, TiedEmbeddingGrad } from './tied-embedding.js';
import { timed } from './timing.js';
import { initLora, isDirectlyTrainable, loraNames, loraTargetsOf, mergeLora } from './lora.js';
import type { LoraSettings, Trainable } from './recipe.js';

export interface TrainingModelOptions {
  /** The backend's kernels (BackendInfo.kernels): attention, SwiGLU and the loss head compute with them. */
  kernels: Kernels;
  trainable: Trainable;
  lora: LoraSettings;
  /** Seed of the LoRA init. */
  seed: number;
  /** Attention blocks (default 256 queries × 512 keys). */
  queryBlock?: number;
  keyBlock?: number;
  /** Most rows per LM-head chunk in the loss (default: about 64M logits, 256 MB); the rows are cut into equal chunks. */
  lossChunk?: number;
  /** Which layers recompute their activations in the backward pass (activations.ts; default 'always'). */
  recompute?: RecomputePolicy;
  /** The memory 'auto' may spend on kept activations, in bytes (default 0: all recomputed). */
  activationBudgetBytes?: number;
  /**
   * On host kernels, add a tied embedding table's lookup rows into the LM head's gradient in place
   * (tied-embedding.ts; default true). false: the tape adds two dense gradients (the same bits, slower).
   */
  tiedEmbeddingInPlace?: boolean;
}

/** How a layer runs: checkpointed forward, its recomputation in the backward pass, or taped with its activations kept. */
type LayerPhase = 'forward' | 'recompute' | 'kept';

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
  readonly kernels: Kernels;
  private coefficientsRead: Promise<void> | null = null;

  constructor(
    readonly spec: ModelSpec,
    /** Every base weight by HF name (FoPE coefficients included, frozen). */
    readonly weights: Map<string, tf.Variable>,
    readonly fopeLayout: FopeLayout | null,
    readonly options: TrainingModelOptions,
  ) {
    this.queryBlock = options.queryBlock;
    this.keyBlock = options.keyBlock;
    this.lossChunk = options.lossChunk ?? defaultLossChunk(spec.vocabSize);
    this.loraScale = options.lora.alpha / options.lora.rank;
    this.kernels = options.kernels;
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

  /**
   * Read what the model reads as plain data (the FoPE coefficients) asynchronously, once; the
   * synchronous methods (`lossTensor`, `lossAndGradTensors`, `logits`) need it done on a device backend.
   */
  ready(): Promise<void> {
    this.coefficientsRead ??= readFopeCoefficients(this.weights, this.fopeLayout, this.spec.numLayers);
    return this.coefficientsRead;
  }

  /** Mean causal-LM loss of a batch (no gradients). */
  async loss(batch: Batch): Promise<number> {
    await this.ready();
    const t = this.lossTensor(batch);
    try {
      return (await t.data())[0]!;
    } finally {
      t.dispose();
    }
  }

  /** The same as a scalar tensor, not read (caller disposes). */
  lossTensor(batch: Batch): tf.Scalar {
    const bt = batchTensors(batch);
    return tf.tidy(() => this.forwardLoss(bt));
  }

  /** Mean causal-LM loss of a batch and its gradient for every trainable parameter (caller disposes). */
  async lossAndGrads(batch: Batch): Promise<{ loss: number; grads: Map<string, tf.Tensor>; tokens: number }> {
    await this.ready();
    const { loss, grads, tokens } = this.lossAndGradTensors(batch);
    try {
      return { loss: (await loss.data())[0]!, grads, tokens };
    } finally {
      loss.dispose();
    }
  }

  /** The loss as a scalar tensor, not read, and the gradients (caller disposes both); after `ready()`. */
  lossAndGradTensors(batch: Batch): { loss: tf.Scalar; grads: Map<string, tf.Tensor>; tokens: number } {
    const bt = batchTensors(batch);
    const E = 'model.embed_tokens.weight';
    // Tied and trained on host kernels: the lookup's gradient is added into the head's in place.
    const tied =
      this.kernels.host && this.lmHeadName === E && this.params.has(E) && this.options.tiedEmbeddingInPlace !== false ? new TiedEmbeddingGrad(this.kernels.host) : null;
    try {
      const xs: [string, tf.Tensor][] = [...this.params];
      if (tied) xs.push([EMBEDDING_TAP, tied.tap]);
      const { loss, grads } = timed('step (forward + backward)', () => namedGrads(() => this.forwardLoss(bt, tied), xs));
      if (tied) {
        grads.get(EMBEDDING_TAP)!.dispose();
        grads.delete(EMBEDDING_TAP);
        grads.set(E, tied.addInto(grads.get(E)!, bt.ids));
      }
      return { loss, grads, tokens: bt.B * bt.T };
    } finally {
      this.clearAttention();
      tied?.dispose();
    }
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
    return this.withMergedWeights((w) =>
      forwardLogits(w, this.spec, ids as number[][], { queryBlock: this.queryBlock, keyBlock: this.keyBlock, kernels: this.kernels }),
    );
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

  /** Which layers keep their activations in a training step on `tokens` = B·T tokens. */
  activationPlan(tokens: number): ActivationPlan {
    const { numLayers } = this.spec;
    let loraElements = 0;
    for (const base of this.lora.keys()) if (base.startsWith('model.layers.0.')) loraElements += this.weights.get(base)!.size;
    const layerBytes = keptLayerBytes(this.spec, tokens, { biases: this.weights.has('model.layers.0.self_attn.q_proj.bias'), loraElements });
    return planActivations(this.options.recompute ?? 'always', numLayers, tokens, layerBytes, this.options.activationBudgetBytes ?? 0);
  }

  private forwardLoss(bt: BatchTensors, tied: TiedEmbeddingGrad | null = null): tf.Scalar {
    const { B, T } = bt;
    const rot = this.tables(T);
    const E = 'model.embed_tokens.weight';
    let h = tied ? tied.lookup(this.params.get(E) as tf.Tensor2D, bt.ids) : this.embed(bt, this.params.get(E));
    // Without a tape (evaluation) nothing is kept for a backward pass: every layer runs plainly.
    const plan = taping() ? this.activationPlan(B * T) : null;
    for (let i = 0; i < this.spec.numLayers; i++) {
      const names = this.layerParams[i]!;
      const run = (xs: tf.Tensor[], phase: LayerPhase) => timed(`layer ${phase}`, () => this.layer(xs[0] as tf.Tensor2D, i, names, xs.slice(1), B, T, rot[i]!, phase));
      const inputs = [h, ...names.map((n) => this.params.get(n)!)];
      // A kept layer is taped op by op; its tidy frees only what the tape does not hold (the tape keeps its own references).
      h = (!plan || keepsLayer(plan, i) ? tf.tidy(() => run(inputs, plan ? 'kept' : 'forward')) : recomputed(run)(...inputs)) as tf.Tensor2D;
    }
    return this.lossHead(h, bt);
  }

  /**
   * Embedding lookup; when trained, a custom gradient scatter-adds the rows: in JS over the data where
   * tensors live in JS memory, on the device elsewhere (embeddingGradOnDevice).
   */
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
        if (!this.kernels.host) return embeddingGradOnDevice(dy, bt.ids, V);
        const g = new Float32Array(V * H);
        segmentSumInto(dy.dataSync() as Float32Array, bt.ids, rows, H, V, g);
        return tf.tensor2d(g, [V, H]);
      },
    })) as unknown as Parameters<typeof tf.customGrad>[0]);
    const h = op(trained) as tf.Tensor2D;
    idsT.dispose();
    return h;
  }

  /** One decoder layer on `[B·T, H]` (the runtime's), with trained tensors taken from `xs`. */
  private layer(
    h: tf.Tensor2D,
    i: number,
    names: string[],
    xs: tf.Tensor[],
    B: number,
    T: number,
    rot: RotaryTables,
    phase: LayerPhase,
  ): tf.Tensor2D {
    const local = new Map<string, tf.Tensor>();
    names.forEach((n, j) => local.set(n, xs[j]!));
    const get = (name: string): tf.Tensor => {
      const t = local.get(name) ?? this.weights.get(name);
      if (!t) throw new FopeifyError('INTERNAL', `weight ${name} is not loaded`);
      return t;
    };
    // The accessor merges LoRA factors into their base weight: W + scale · B A.
    const weights: LayerWeights = {
      get,
      opt: (name) => local.get(name) ?? this.weights.get(name),
      linear: (name) => {
        const l = this.lora.get(name);
        const w = l ? tf.add(get(name), tf.mul(tf.matMul(get(l.b) as tf.Tensor2D, get(l.a) as tf.Tensor2D), this.loraScale)) : get(name);
        return { w, transposed: false };
      },
    };
    const { kernels } = this;
    // A checkpointed layer's forward pass in a training step keeps the attention result for its
    // recomputation, which reuses it. A kept layer's attention is taped: its own node saves o and lse.
    const attend = <O extends tf.Tensor>(run: (options: FlashAttentionOptions) => O): O => {
      const reuse = phase === 'recompute' ? this.attention.get(i) : undefined;
      const keep = phase === 'forward' && taping() ? (r: AttentionResult) => this.attention.set(i, r) : undefined;
      const o = run({ kernels, queryBlock: this.queryBlock, keyBlock: this.keyBlock, slidingWindow: this.spec.slidingWindow, reuse, keep });
      if (reuse) {
        tf.dispose([reuse.o, reuse.lse]);
        this.attention.delete(i);
      }
      return o;
    };
    const tm = kernels.tokenMajor;
    const ops: LayerOps = {
      kernels,
      // The kernels' differentiable RMSNorm and rotary (fused passes with their gradients where native).
      norm: (x, w, eps) => kernels.rmsNormTrainable(x, w, eps),
      activation: (g, u) => timed('swiglu activation', () => kernels.swiGluTrainable(g, u)),
      rotary: (x, t) => kernels.rotaryTrainable(x, t.cos, t.sin, t.dim),
      attention: (q, k, v) => attend((options) => flashAttention(q, k, v, options)),
      // Native kernels: the projections' rows straight into the rotary and the attention, no transposes.
      tokenMajor: tm && {
        rotary: (x, heads, t) => tm.rotaryTrainable(x, heads, t.cos, t.sin, t.dim),
        attention: (q, k, v, heads) => attend((options) => flashAttentionTokens(q, k, v, heads, tm, options)),
      },
      // The layer's caller scopes it (a tidy, or the checkpoint's node); the tape decides what lives.
      scope: (fn) => fn(),
    };
    return decoderLayer(h, i, rot, { spec: this.spec, B, T, weights, ops });
  }

  /**
   * Final norm, LM head and mean cross-entropy, in row chunks. The loss is the last op of the step, so
   * its gradient for dy = 1 is known during the forward pass: each chunk's
   * `dlogits = (softmax − onehot) / tokens` goes straight into the LM head's two products, and only
   * `dx` (`[rows, hidden]`) and the head's weight gradient are kept for the backward pass (scaled by
   * dy there; the final norm's backward is the kernels' RMSNorm gradient on `[rows, hidden]`). Logits are computed once per
   * chunk and never exist for the whole sequence. On the cpu backend the softmax is one fused JS pass.
   */
  private lossHead(h: tf.Tensor2D, bt: BatchTensors): tf.Scalar {
    if (bt.count === 0) throw new FopeifyError('INTERNAL', 'a batch without any target token');
    const { spec } = this;
    const names = this.headParams;
    const [N, H] = h.shape;
    const chunks = lossChunks(N, this.lossChunk);
    const normName = 'model.norm.weight';
    const jNorm = names.indexOf(normName);
    const jHead = names.indexOf(this.lmHeadName);
    const get = (ps: tf.Tensor[], name: string) => {
      const j = names.indexOf(name);
      return j >= 0 ? ps[j]! : this.weights.get(name)!;
    };

    /** dh (and the trained norm / head gradients) from the dx and dW kept by the forward pass, times dy. */
    const backward = (dy: tf.Scalar, saved: tf.Tensor[]): tf.Tensor[] =>
      tf.tidy((): tf.Tensor[] => {
        const hS = saved[0] as tf.Tensor2D;
        const pS = saved.slice(1, 1 + names.length);
        const dxS = saved[1 + names.length]!;
        const dWS = jHead >= 0 ? saved[2 + names.length]! : null;
        // dy is 1 when the loss is the step's result; read it only where reading is free (host memory).
        const c = this.kernels.host ? dy.dataSync()[0]! : null;
        const scaled = (t: tf.Tensor) => (c === 1 ? tf.clone(t) : tf.mul(t, c ?? dy));
        const normW = get(pS, normName);
        const gs = isolatedGrads(() => this.kernels.rmsNormTrainable(hS, normW, spec.rmsNormEps), jNorm >= 0 ? [hS, normW] : [hS], scaled(dxS));
        return [gs[0]!, ...pS.map((p, j) => (j === jNorm ? gs[1]! : j === jHead ? scaled(dWS!) : tf.zerosLike(p)))];
      });
    const op = tf.customGrad(((...args: unknown[]) => {
      const save = args.pop() as tf.GradSaveFunc;
      const [hIn, ...ps] = args as [tf.Tensor2D, ...tf.Tensor[]];
      const grad = taping();
      const r = timed('head (logits, loss, gradient)', () =>
        this.kernels.headLoss({
          N,
          H,
          V: spec.vocabSize,
          chunks,
          rows: (s, n) => this.kernels.rmsNormTrainable(n === N ? hIn : (tf.slice(hIn, [s, 0], [n, H]) as tf.Tensor2D), get(ps, normName), spec.rmsNormEps),
          W: get(ps, this.lmHeadName) as tf.Tensor2D,
          targets: bt.targets,
          tokens: bt.count,
          gradient: grad,
          weightGrad: jHead >= 0,
        }),
      );
      if (grad) save([hIn, ...ps, r.dx!, ...(r.dW ? [r.dW] : [])]);
      return { value: r.loss, gradFunc: backward };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    return op(h, ...names.map((n) => this.params.get(n)!)) as tf.Scalar;
  }
}
