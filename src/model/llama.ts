/**
 * The Llama-family decoder (Llama, Mistral, Qwen2, Qwen3 differ only by ModelSpec flags), as a pure
 * function of a weight map: embeddings → N × [RMSNorm → GQA attention with RoPE/FoPE → residual →
 * RMSNorm → SwiGLU → residual] → final RMSNorm → LM head. Like HF's modeling_llama:
 *  - q/k norm (Qwen3) comes before the rotary embedding, and the KV cache stores rotated keys;
 *  - FoPE sits exactly where RoPE sits, with YaRN's attention factor on its cos and sin;
 *  - positions are float32.
 * `forwardLogits(weights, spec, ids)` uses only tfjs ops on the given tensors, so a trainer can call it
 * inside tf.grads / tf.customGrad with its own (variable or LoRA-merged) weights.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelSpec } from '../config/model-spec.js';
import { FopeifyError } from '../errors.js';
import { blockwiseAttention, DEFAULT_KEY_BLOCK, kvBlocks } from './attention.js';
import { inferenceBlas } from './native-inference.js';
import type { KvCache } from './cache.js';
import { linear, rmsNorm, swiGlu } from './layers.js';
import { applyRotaryTf, cosSinTable, rotaryTables, type FopeCoefficientData, type RotaryTables } from './rotary.js';
import { detectFopeLayout, fopeCoefNames, TRANSPOSED_SUFFIX, weight, type FopeLayout, type WeightMap } from './weights.js';

/** Token ids: one sequence, a batch of equal-length sequences, or an int32 `[B, T]` tensor. */
export type TokenIds = readonly number[] | Int32Array | readonly (readonly number[])[] | tf.Tensor2D;

export interface ForwardOptions {
  /** Append this call's keys/values to the cache and attend over everything it holds. */
  cache?: KvCache;
  /**
   * Rotary positions of this call's tokens (shared by the batch), as float32. Default: consecutive from
   * the cache length (0 without a cache).
   */
  positions?: ArrayLike<number>;
  /** Logits for every position (default) or only the last one (generation, prefill). */
  logits?: 'all' | 'last';
  /** Queries per attention block (default 256). */
  queryBlock?: number;
  /** Keys per attention block without a cache (default 512; with a cache, its block size). */
  keyBlock?: number;
}

/** Token ids as an int32 `[B, T]` tensor; plain ids are checked against the vocabulary first. */
function idsTensor(ids: TokenIds, vocabSize: number): { t: tf.Tensor2D; owned: boolean } {
  if (ids instanceof tf.Tensor) {
    if (ids.rank !== 2) throw new FopeifyError('BAD_ARGUMENT', `token ids must be [batch, T], got shape [${ids.shape}]`);
    return { t: ids.dtype === 'int32' ? ids : (ids.cast('int32') as tf.Tensor2D), owned: ids.dtype !== 'int32' };
  }
  const rows: ArrayLike<number>[] =
    ids.length > 0 && typeof (ids as ArrayLike<unknown>)[0] !== 'number' ? [...(ids as readonly (readonly number[])[])] : [ids as ArrayLike<number>];
  const T = rows[0]?.length ?? 0;
  if (T === 0) throw new FopeifyError('BAD_ARGUMENT', 'no token ids given');
  const flat = new Int32Array(rows.length * T);
  rows.forEach((r, b) => {
    if (r.length !== T) throw new FopeifyError('BAD_ARGUMENT', 'every sequence of a batch must have the same length');
    for (let i = 0; i < T; i++) {
      const id = r[i]!;
      // tf.gather gives zeros (or throws, per backend) for an id outside the table: say which id it was.
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new FopeifyError('BAD_ARGUMENT', `token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
      }
      flat[b * T + i] = id;
    }
  });
  return { t: tf.tensor2d(flat, [rows.length, T], 'int32'), owned: true };
}

/** Plain data of coefficient tensors, keyed by their data (a Variable that is assigned gets a new dataId). */
const coefCache = new WeakMap<object, Float32Array>();
function tensorData(t: tf.Tensor): Float32Array {
  const key = t.dataId as object;
  let d = coefCache.get(key);
  if (!d) {
    d = t.dataSync() as Float32Array;
    coefCache.set(key, d);
  }
  return d;
}

/** The FoPE coefficients of layer `i` as plain data, or null (RoPE). */
export function fopeCoefficients(weights: WeightMap, layout: FopeLayout | null, layer: number): FopeCoefficientData | null {
  if (!layout) return null;
  const names = fopeCoefNames(layout, layer);
  const s = weight(weights, names.sin);
  const c = weight(weights, names.cos);
  return { shape: s.shape, sin: tensorData(s), cos: tensorData(c) };
}

/**
 * Rotary tables per layer for one set of positions, built lazily (shared tables once). Exposed for
 * per-layer callers (e.g. a trainer recomputing layers under tf.customGrad); dispose() when done.
 */
export class RotaryProvider {
  private shared: RotaryTables | null = null;
  private perLayer = new Map<number, RotaryTables>();
  private readonly layout: FopeLayout | null;
  constructor(
    private readonly weights: WeightMap,
    private readonly spec: ModelSpec,
    private readonly positions: ArrayLike<number>,
  ) {
    this.layout = detectFopeLayout(weights.keys(), spec.numLayers);
  }

  get(layer: number): RotaryTables {
    if (this.layout !== 'per-layer') {
      this.shared ??= this.build(0);
      return this.shared;
    }
    let t = this.perLayer.get(layer);
    if (!t) {
      t = this.build(layer);
      this.perLayer.set(layer, t);
    }
    return t;
  }

  /** Free a layer's tables once it is done (per-layer layout). */
  release(layer: number): void {
    const t = this.perLayer.get(layer);
    if (t) {
      t.cos.dispose();
      t.sin.dispose();
      this.perLayer.delete(layer);
    }
  }

  dispose(): void {
    for (const l of [...this.perLayer.keys()]) this.release(l);
    if (this.shared) {
      this.shared.cos.dispose();
      this.shared.sin.dispose();
      this.shared = null;
    }
  }

  private build(layer: number): RotaryTables {
    return tf.tidy(() => {
      const t = rotaryTables(cosSinTable(this.spec, this.positions, fopeCoefficients(this.weights, this.layout, layer)));
      return { cos: tf.keep(t.cos), sin: tf.keep(t.sin), dim: t.dim };
    });
  }
}

/** What one decoder layer needs besides its input: weights, shapes, where the queries sit, the cache. */
export interface LayerContext {
  weights: WeightMap;
  spec: ModelSpec;
  /** Batch and sequence length of this call (the layer's input is `[B·T, H]`). */
  B: number;
  T: number;
  /** Sequence index of this call's first token (the cache length, 0 without a cache). */
  qStart: number;
  cache?: KvCache;
  queryBlock?: number;
  keyBlock: number;
}

const opt = (weights: WeightMap, name: string): tf.Tensor | undefined => weights.get(name);

/** The linear layer `<prefix>.weight` (+ bias): its inference-layout `^T` twin when present, else the HF weight. */
function proj(w: WeightMap, x: tf.Tensor2D, prefix: string): tf.Tensor2D {
  const t = w.get(`${prefix}.weight${TRANSPOSED_SUFFIX}`);
  return linear(x, t ?? weight(w, `${prefix}.weight`), w.get(`${prefix}.bias`), t !== undefined);
}

/** A linear weight in whichever layout the map holds: `{ w, transposed }`. */
function linearWeight(w: WeightMap, name: string): { w: tf.Tensor; transposed: boolean } {
  const t = w.get(name + TRANSPOSED_SUFFIX);
  return t ? { w: t, transposed: true } : { w: weight(w, name), transposed: false };
}

/** Self-attention of layer i on normed hidden states `[B·T, H]`; returns `[B·T, H]` (o_proj applied). */
export function selfAttention(x: tf.Tensor2D, layer: number, rot: RotaryTables, ctx: LayerContext): tf.Tensor2D {
  const { weights: w, spec, B, T } = ctx;
  const { numHeads: nH, numKvHeads: nKv, headDim: D } = spec;
  const R = nH / nKv;
  const p = `model.layers.${layer}.self_attn`;
  return tf.tidy(() => {
    // [B·T, n·D] → [B, n, T, D]
    const heads = (y: tf.Tensor2D, n: number) => tf.transpose(y.reshape([B, T, n, D]), [0, 2, 1, 3]) as tf.Tensor4D;
    let q = heads(proj(w, x, `${p}.q_proj`), nH);
    let k = heads(proj(w, x, `${p}.k_proj`), nKv);
    const v = heads(proj(w, x, `${p}.v_proj`), nKv);
    if (spec.qkNorm) {
      q = normRows(q, weight(w, `${p}.q_norm.weight`), spec.rmsNormEps);
      k = normRows(k, weight(w, `${p}.k_norm.weight`), spec.rmsNormEps);
    }
    // Query head h shares KV head floor(h / R): view q as [B, nKv, R, T, D] (HF's repeat_kv order).
    const qr = applyRotaryTf(q.reshape([B, nKv, R, T, D]) as tf.Tensor5D, rot).reshape([B * nKv, R, T, D]) as tf.Tensor4D;
    const kr = applyRotaryTf(k.reshape([B, nKv, 1, T, D]) as tf.Tensor5D, rot).reshape([B * nKv, T, D]) as tf.Tensor3D;
    const vr = v.reshape([B * nKv, T, D]) as tf.Tensor3D;
    const blocks = ctx.cache ? ctx.cache.append(layer, kr, vr) : kvBlocks(kr, vr, ctx.qStart, ctx.keyBlock);
    const o = blockwiseAttention(qr, blocks, ctx.qStart, { queryBlock: ctx.queryBlock, slidingWindow: spec.slidingWindow });
    const merged = tf.transpose(o.reshape([B, nH, T, D]), [0, 2, 1, 3]).reshape([B * T, nH * D]) as tf.Tensor2D;
    return proj(w, merged, `${p}.o_proj`);
  });
}

/**
 * RMSNorm of the runtime's forward pass: on the accelerated cpu backend outside tf.grads one threaded C
 * pass (the tf-op version is five kernels with their buffers); otherwise layers.ts's rmsNorm. Training
 * keeps rmsNorm itself (src/train), so its numerics do not depend on this.
 */
function normRows<T extends tf.Tensor>(x: T, w: tf.Tensor, eps: number): T {
  const addon = inferenceBlas();
  if (!addon?.rmsnorm) return rmsNorm(x, w, eps);
  const out = new Float32Array(x.size);
  addon.rmsnorm(x.dataSync() as Float32Array, w.dataSync() as Float32Array, out, eps);
  return tf.tensor(out, x.shape) as T;
}

/** One decoder layer on the residual stream `[B·T, H]`. */
export function decoderLayer(h: tf.Tensor2D, layer: number, rot: RotaryTables, ctx: LayerContext): tf.Tensor2D {
  const { weights: w, spec } = ctx;
  const p = `model.layers.${layer}`;
  return tf.tidy(() => {
    const x = normRows(h, weight(w, `${p}.input_layernorm.weight`), spec.rmsNormEps);
    const h1 = tf.add(h, selfAttention(x, layer, rot, ctx)) as tf.Tensor2D;
    const y = normRows(h1, weight(w, `${p}.post_attention_layernorm.weight`), spec.rmsNormEps);
    const gate = linearWeight(w, `${p}.mlp.gate_proj.weight`);
    const mlp = swiGlu(y, {
      transposed: gate.transposed,
      gate: gate.w,
      up: linearWeight(w, `${p}.mlp.up_proj.weight`).w,
      down: linearWeight(w, `${p}.mlp.down_proj.weight`).w,
      gateBias: opt(w, `${p}.mlp.gate_proj.bias`),
      upBias: opt(w, `${p}.mlp.up_proj.bias`),
      downBias: opt(w, `${p}.mlp.down_proj.bias`),
    });
    return tf.add(h1, mlp) as tf.Tensor2D;
  });
}

/**
 * Final hidden states `[B, T, H]` (after the last RMSNorm). With a cache, this call's keys/values are
 * appended to it and `cache.length` advances by T.
 */
export function forwardHidden(weights: WeightMap, spec: ModelSpec, ids: TokenIds, options: ForwardOptions = {}): tf.Tensor3D {
  const { t: idT, owned } = idsTensor(ids, spec.vocabSize);
  const [B, T] = idT.shape;
  const cache = options.cache;
  const qStart = cache ? cache.length : 0;
  // Everything made here is freed on every path, a throw included (a failing forward leaks nothing).
  let rotary: RotaryProvider | undefined;
  let h: tf.Tensor2D | undefined;
  try {
    let positions = options.positions;
    if (positions) {
      if (positions.length !== T) throw new FopeifyError('BAD_ARGUMENT', `${positions.length} positions given for ${T} tokens`);
    } else {
      const p = new Float32Array(T);
      for (let i = 0; i < T; i++) p[i] = qStart + i;
      positions = p;
    }
    if (cache && cache.numLayers !== spec.numLayers) throw new FopeifyError('BAD_ARGUMENT', 'the KV cache belongs to another model');
    rotary = new RotaryProvider(weights, spec, positions);
    const ctx: LayerContext = {
      weights,
      spec,
      B,
      T,
      qStart,
      cache,
      queryBlock: options.queryBlock,
      keyBlock: options.keyBlock ?? DEFAULT_KEY_BLOCK,
    };
    h = tf.tidy(() => tf.gather(weight(weights, 'model.embed_tokens.weight'), idT.reshape([B * T])) as tf.Tensor2D);
    for (let i = 0; i < spec.numLayers; i++) {
      const next = decoderLayer(h, i, rotary.get(i), ctx);
      h.dispose();
      h = next;
      rotary.release(i);
    }
    if (cache) cache.advance(T);
    const last = h;
    return tf.tidy(() => normRows(last, weight(weights, 'model.norm.weight'), spec.rmsNormEps).reshape([B, T, spec.hiddenSize]) as tf.Tensor3D);
  } finally {
    h?.dispose();
    rotary?.dispose();
    if (owned) idT.dispose();
  }
}

/** LM head on hidden states `[N, H]` → logits `[N, V]` (the embedding matrix when tied). */
export function lmHead(weights: WeightMap, spec: ModelSpec, h: tf.Tensor2D): tf.Tensor2D {
  void spec;
  const t = weights.get('lm_head.weight' + TRANSPOSED_SUFFIX);
  if (t) return tf.matMul(h, t as tf.Tensor2D);
  const w = weights.get('lm_head.weight') ?? weight(weights, 'model.embed_tokens.weight');
  return tf.matMul(h, w as tf.Tensor2D, false, true);
}

/** Logits `[B, T, V]` (or `[B, 1, V]` with `logits: 'last'`). */
export function forwardLogits(weights: WeightMap, spec: ModelSpec, ids: TokenIds, options: ForwardOptions = {}): tf.Tensor3D {
  const h = forwardHidden(weights, spec, ids, options);
  try {
    return tf.tidy(() => {
      const [B, T, H] = h.shape;
      const rows = options.logits === 'last' ? tf.slice(h, [0, T - 1, 0], [B, 1, H]) : h;
      const n = options.logits === 'last' ? 1 : T;
      return lmHead(weights, spec, rows.reshape([B * n, H]) as tf.Tensor2D).reshape([B, n, spec.vocabSize]) as tf.Tensor3D;
    });
  } finally {
    h.dispose();
  }
}
