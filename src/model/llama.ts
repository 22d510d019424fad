/**
 * The Llama-family decoder (Llama, Mistral, Qwen2, Qwen3 differ only by ModelSpec flags), as a pure
 * function of a weight map: embeddings → N × [RMSNorm → GQA attention with RoPE/FoPE → residual →
 * RMSNorm → SwiGLU → residual] → final RMSNorm → LM head. Like HF's modeling_llama:
 *  - q/k norm (Qwen3) comes before the rotary embedding, and the KV cache stores rotated keys;
 *  - FoPE sits exactly where RoPE sits, with YaRN's attention factor on its cos and sin;
 *  - positions are float32.
 * `forwardLogits(weights, spec, ids)` uses only tfjs ops on the given tensors, so a trainer can call it
 * inside tf.grads / tf.customGrad with its own (variable or LoRA-merged) weights; with `kernels` (the
 * backend's, BackendInfo.kernels) it takes their fast forward-only paths when no gradient is recorded.
 * The decoder layer itself is decoder.ts's, shared with the trainer.
 */
import * as tf from '../backend/tfjs.js';
import type { ModelSpec } from '../config/model-spec.js';
import { FopeifyError } from '../errors.js';
import { fullCollection } from '../backend/full-collection.js';
import { recordingGradient, type Kernels, type TokenMajorKernels } from '../backend/kernels.js';
import { tfKernels } from '../backend/kernels-tf.js';
import { blockwiseAttention, DEFAULT_KEY_BLOCK, DEFAULT_QUERY_BLOCK, kvBlocks } from './attention.js';
import type { KvCache } from './cache.js';
import { prefillInSteps, type KeepHidden } from './prefill.js';
import { decoderLayer, mapWeights, type DecoderContext, type LayerOps } from './decoder.js';
import { cosSinTable, rotaryTables, type FopeCoefficientData, type RotaryTables } from './rotary.js';
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
  /** The backend's kernels (BackendInfo.kernels; default: plain tf ops). */
  kernels?: Kernels;
  /**
   * Tokens per step of a prefill into a cache (default 1024, rounded up to the cache's block size): the
   * activations exist for one step's tokens only (prefill.ts). Infinity: one pass.
   */
  prefillChunk?: number;
  /**
   * Run a full V8 collection after each layer, so that one layer's freed temporaries are memory again
   * before the next allocates its own (backend/full-collection.ts). Default: during the steps of a
   * stepped prefill on the cpu backend (tensor data in ArrayBuffers) whose layers make ≥ 16 MiB of
   * temporaries per step (prefill.ts), unless FOPEIFY_PREFILL_GC=0 — 10-20 % of a long prefill's time
   * for ~90 MiB less peak memory at 8192 tokens (SmolLM2-135M shape).
   */
  collectBetweenLayers?: boolean;
}

/** Token ids as an int32 `[B, T]` tensor; plain ids are checked against the vocabulary first. */
function idsTensor(ids: TokenIds, vocabSize: number): { t: tf.Tensor2D; owned: boolean } {
  if (ids instanceof tf.Tensor) {
    if (ids.rank !== 2) throw new FopeifyError('BAD_ARGUMENT', `token ids must be [batch, T], got shape [${ids.shape}]`);
    return { t: ids.dtype === 'int32' ? ids : (tf.cast(ids, 'int32') as tf.Tensor2D), owned: ids.dtype !== 'int32' };
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

/**
 * Read every FoPE coefficient tensor of the model asynchronously, so that `fopeCoefficients` never
 * reads synchronously afterwards (a GPU backend cannot: its coefficients may live on the device).
 */
export async function readFopeCoefficients(weights: WeightMap, layout: FopeLayout | null, numLayers: number): Promise<void> {
  if (!layout) return;
  for (let layer = 0; layer < (layout === 'per-layer' ? numLayers : 1); layer++) {
    const names = fopeCoefNames(layout, layer);
    for (const t of [weight(weights, names.sin), weight(weights, names.cos)]) {
      if (!coefCache.has(t.dataId as object)) coefCache.set(t.dataId as object, (await t.data()) as Float32Array);
    }
  }
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

/**
 * The ops of an inference forward pass: the kernels' forward-only fast paths (plain tf ops under a
 * gradient tape, so a trainer or a test can differentiate the runtime), and attention over the KV
 * cache's blocks or over this call's keys cut into blocks.
 */
export function inferenceOps(
  kernels: Kernels,
  options: { qStart: number; cache?: KvCache; queryBlock?: number; keyBlock: number; slidingWindow: number | null },
): LayerOps {
  const k = recordingGradient() ? tfKernels : kernels;
  return {
    kernels: k,
    norm: (x, w, eps) => k.rmsNorm(x, w, eps),
    activation: (g, u) => k.swiGlu(g, u),
    rotary: (x, t) => k.rotary(x, t.cos, t.sin, t.dim),
    attention(q, kr, vr, layer) {
      const blocks = options.cache ? options.cache.append(layer, kr, vr) : kvBlocks(kr, vr, options.qStart, options.keyBlock);
      return blockwiseAttention(q, blocks, options.qStart, { queryBlock: options.queryBlock, slidingWindow: options.slidingWindow, kernels: k });
    },
    tokenMajor: k.tokenMajor && tokenMajorInferenceOps(k.tokenMajor, options),
    scope: (fn) => tf.tidy(fn),
  };
}

/**
 * The attention of inferenceOps on the projections' token-major rows. Without a cache this call's keys
 * are one token-major block (the kernel walks it in runs of keyBlock: kvBlocks' blocks). A KV cache
 * keeps head-major blocks (the decoding step reads them as such), so k and v are transposed into it;
 * q and the output never are.
 */
function tokenMajorInferenceOps(
  tm: TokenMajorKernels,
  options: { qStart: number; cache?: KvCache; queryBlock?: number; keyBlock: number; slidingWindow: number | null },
): LayerOps['tokenMajor'] {
  return {
    rotary: (x, heads, t) => tm.rotary(x, heads, t.cos, t.sin, t.dim),
    attention(q, kr, vr, heads, layer) {
      const { B, nKv, D } = heads;
      const T = kr.shape[0] / B;
      const g = { queryBlock: Math.max(1, options.queryBlock ?? DEFAULT_QUERY_BLOCK), window: options.slidingWindow, scale: 1 / Math.sqrt(D) };
      const cache = options.cache;
      const toHeads = (y: tf.Tensor2D) => tf.reshape(tf.transpose(tf.reshape(y, [B, T, nKv, D]), [0, 2, 1, 3]), [B * nKv, T, D]) as tf.Tensor3D;
      const tokens = (y: tf.Tensor2D) => tf.reshape(y, [B, T, nKv * D]) as tf.Tensor3D;
      const { o, lse } = cache
        ? tm.attentionForward(q, cache.append(layer, toHeads(kr), toHeads(vr)), false, options.qStart, g, heads)
        : tm.attentionForward(q, [{ k: tokens(kr), v: tokens(vr), start: options.qStart }], true, options.qStart, { ...g, keyBlock: options.keyBlock }, heads);
      lse.dispose();
      return o;
    },
  };
}

/**
 * Final hidden states `[B, T, H]` (after the last RMSNorm). With a cache, this call's keys/values are
 * appended to it and `cache.length` advances by T.
 */
export function forwardHidden(weights: WeightMap, spec: ModelSpec, ids: TokenIds, options: ForwardOptions = {}): tf.Tensor3D {
  return hiddenStates(weights, spec, ids, options, 'all');
}

/** forwardHidden, or with 'last-step' only the hidden states of a stepped prefill's last step (the last token is its last row). */
function hiddenStates(weights: WeightMap, spec: ModelSpec, ids: TokenIds, options: ForwardOptions, keep: KeepHidden): tf.Tensor3D {
  const stepped = prefillInSteps(forwardHidden, weights, spec, ids, options, keep);
  if (stepped) return stepped;
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
    const ops = inferenceOps(options.kernels ?? tfKernels, {
      qStart,
      cache,
      queryBlock: options.queryBlock,
      keyBlock: options.keyBlock ?? DEFAULT_KEY_BLOCK,
      slidingWindow: spec.slidingWindow,
    });
    const ctx: DecoderContext = { spec, B, T, weights: mapWeights(weights), ops };
    h = tf.tidy(() => tf.gather(weight(weights, 'model.embed_tokens.weight'), tf.reshape(idT, [B * T])) as tf.Tensor2D);
    const collect = options.collectBetweenLayers ? fullCollection() : null;
    for (let i = 0; i < spec.numLayers; i++) {
      const hIn: tf.Tensor2D = h;
      const tables = rotary.get(i);
      const next: tf.Tensor2D = tf.tidy(() => decoderLayer(hIn, i, tables, ctx));
      h.dispose();
      h = next;
      rotary.release(i);
      collect?.();
    }
    if (cache) cache.advance(T);
    const last = h;
    return tf.tidy(() => tf.reshape(ops.norm(last, weight(weights, 'model.norm.weight'), spec.rmsNormEps), [B, T, spec.hiddenSize]) as tf.Tensor3D);
  } finally {
    h?.dispose();
    rotary?.dispose();
    if (owned) idT.dispose();
  }
}

/** LM head on hidden states `[N, H]` → logits `[N, V]` (the embedding matrix when tied). */
export function lmHead(weights: WeightMap, spec: ModelSpec, h: tf.Tensor2D, kernels: Pick<Kernels, 'matMul'> = tfKernels): tf.Tensor2D {
  void spec;
  const t = weights.get('lm_head.weight' + TRANSPOSED_SUFFIX);
  if (t) return kernels.matMul(h, t);
  const w = weights.get('lm_head.weight') ?? weight(weights, 'model.embed_tokens.weight');
  return kernels.matMul(h, w, false, true);
}

/** Logits `[B, T, V]` (or `[B, 1, V]` with `logits: 'last'`). */
export function forwardLogits(weights: WeightMap, spec: ModelSpec, ids: TokenIds, options: ForwardOptions = {}): tf.Tensor3D {
  // For the last token's logits the earlier prefill steps' hidden states need not be kept.
  const h = hiddenStates(weights, spec, ids, options, options.logits === 'last' ? 'last-step' : 'all');
  try {
    return tf.tidy(() => {
      const [B, T, H] = h.shape;
      const rows = options.logits === 'last' ? tf.slice(h, [0, T - 1, 0], [B, 1, H]) : h;
      const n = options.logits === 'last' ? 1 : T;
      return tf.reshape(lmHead(weights, spec, tf.reshape(rows, [B * n, H]) as tf.Tensor2D, options.kernels), [B, n, spec.vocabSize]) as tf.Tensor3D;
    });
  } finally {
    h.dispose();
  }
}
