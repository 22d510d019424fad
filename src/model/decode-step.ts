/**
 * Cached decoding, one token per step, on buffers allocated once: the decoder layer of decoder.ts
 * (RMSNorm → q/k/v → q/k norm → rotary / FoPE → attention over the cache → o_proj → residual → RMSNorm →
 * SwiGLU → residual) and the LM head, as calls of the kernels' `decode` pieces (matrix-vector products,
 * the C passes) on the weights' own data and on a KV cache of plain float32 buffers grown in place.
 * At one token a tensor op costs more in allocation and dispatch than in arithmetic; here no tensor is
 * made per token. Only kernels that offer `decode` (the native ones) run it; generate.ts falls back to
 * the tensor forward pass otherwise.
 *
 * Same mathematics as forwardLogits with a KvCache, op for op: the norms, SwiGLU, rotary, residual and
 * bias additions and the attention recurrence (in the cache's key blocks) give the same bits; the
 * projections are matrix-vector products (sgemv), which sum in another order than the batched GEMM, so
 * logits agree to float32 rounding (test/model/decode-step.test.ts), not bit for bit.
 */
import type { ModelSpec } from '../config/model-spec.js';
import type { DecodeKernels } from '../backend/kernels.js';
import { FopeifyError } from '../errors.js';
import { DEFAULT_KEY_BLOCK } from './attention.js';
import type { KvCache } from './cache.js';
import { mapWeights } from './decoder.js';
import { fopeCoefficients } from './llama.js';
import { cosSinTable } from './rotary.js';
import { detectFopeLayout, TRANSPOSED_SUFFIX, weight, type FopeLayout, type WeightMap } from './weights.js';

/** A linear layer's weight data: y[rows] = W·x (+ bias), W `[rows, cols]`, or `[cols, rows]` when transposed. */
interface LinearData {
  w: Float32Array;
  rows: number;
  cols: number;
  transposed: boolean;
  bias: Float32Array | null;
}

interface LayerData {
  inputNorm: Float32Array;
  postNorm: Float32Array;
  q: LinearData;
  k: LinearData;
  v: LinearData;
  o: LinearData;
  gate: LinearData;
  up: LinearData;
  down: LinearData;
  qNorm: Float32Array | null;
  kNorm: Float32Array | null;
  /** Per-KV-cache row buffers `[nKv, capacity, D]`. */
  keys: Float32Array;
  values: Float32Array;
}

export interface TokenDecoderOptions {
  /** Tokens the cache holds before it grows (it doubles when full; default 256). */
  capacity?: number;
  /** Keys per attention block: the KvCache's block size the tensor forward would use (default 512). */
  keyBlock?: number;
}

export class TokenDecoder {
  /** Sequence positions stored (the next token gets index `length`). */
  length = 0;
  /** Decoding steps run (for callers and tests that check which path decoded). */
  steps = 0;
  private capacity: number;
  private readonly layers: LayerData[];
  private readonly embed: Float32Array;
  private readonly finalNorm: Float32Array;
  private readonly head: LinearData;
  private readonly fopeLayout: FopeLayout | null;
  private readonly keyBlock: number;
  // Work buffers of one token.
  private readonly h: Float32Array;
  private readonly x: Float32Array;
  private readonly q: Float32Array;
  private readonly qn: Float32Array;
  private readonly k: Float32Array;
  private readonly kn: Float32Array;
  private readonly v: Float32Array;
  private readonly attn: Float32Array;
  private readonly hidden: Float32Array;
  private readonly gate: Float32Array;
  private readonly up: Float32Array;
  private readonly act: Float32Array;
  private readonly logits: Float32Array;

  constructor(
    private readonly weights: WeightMap,
    private readonly spec: ModelSpec,
    private readonly kernels: DecodeKernels,
    options: TokenDecoderOptions = {},
  ) {
    const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: D, vocabSize: V } = spec;
    this.capacity = Math.max(1, Math.floor(options.capacity ?? 256));
    this.keyBlock = Math.max(1, Math.floor(options.keyBlock ?? DEFAULT_KEY_BLOCK));
    this.fopeLayout = detectFopeLayout(weights.keys(), spec.numLayers);
    const data = (name: string) => kernels.data(weight(weights, name));
    const opt = (name: string) => {
      const t = weights.get(name);
      return t ? kernels.data(t) : null;
    };
    const lw = mapWeights(weights);
    const linear = (prefix: string): LinearData => {
      const { w, transposed } = lw.linear(`${prefix}.weight`);
      const [a, b] = w.shape as [number, number];
      return { w: kernels.data(w), rows: transposed ? b : a, cols: transposed ? a : b, transposed, bias: opt(`${prefix}.bias`) };
    };
    this.layers = Array.from({ length: spec.numLayers }, (_, i) => {
      const p = `model.layers.${i}`;
      const a = `${p}.self_attn`;
      return {
        inputNorm: data(`${p}.input_layernorm.weight`),
        postNorm: data(`${p}.post_attention_layernorm.weight`),
        q: linear(`${a}.q_proj`),
        k: linear(`${a}.k_proj`),
        v: linear(`${a}.v_proj`),
        o: linear(`${a}.o_proj`),
        gate: linear(`${p}.mlp.gate_proj`),
        up: linear(`${p}.mlp.up_proj`),
        down: linear(`${p}.mlp.down_proj`),
        qNorm: spec.qkNorm ? data(`${a}.q_norm.weight`) : null,
        kNorm: spec.qkNorm ? data(`${a}.k_norm.weight`) : null,
        keys: new Float32Array(nKv * this.capacity * D),
        values: new Float32Array(nKv * this.capacity * D),
      };
    });
    this.embed = data('model.embed_tokens.weight');
    this.finalNorm = data('model.norm.weight');
    // The LM head lmHead() uses: the inference-layout copy, else lm_head, else the tied embedding.
    const headT = weights.get('lm_head.weight' + TRANSPOSED_SUFFIX);
    const headW = headT ?? weights.get('lm_head.weight') ?? weight(weights, 'model.embed_tokens.weight');
    this.head = { w: kernels.data(headW), rows: V, cols: H, transposed: headT !== undefined, bias: null };
    this.h = new Float32Array(H);
    this.x = new Float32Array(H);
    this.q = new Float32Array(nH * D);
    this.qn = new Float32Array(nH * D);
    this.k = new Float32Array(nKv * D);
    this.kn = new Float32Array(nKv * D);
    this.v = new Float32Array(nKv * D);
    this.attn = new Float32Array(nH * D);
    this.hidden = new Float32Array(H);
    this.gate = new Float32Array(I);
    this.up = new Float32Array(I);
    this.act = new Float32Array(I);
    this.logits = new Float32Array(V);
  }

  /**
   * A decoder continuing where a (single-sequence) KvCache stands: its keys and values copied into
   * this decoder's buffers, which have room for `capacity` tokens at least. The KvCache is left as is
   * (the caller may dispose it).
   */
  static fromCache(weights: WeightMap, spec: ModelSpec, kernels: DecodeKernels, cache: KvCache, capacity = 0): TokenDecoder {
    const dec = new TokenDecoder(weights, spec, kernels, { capacity: Math.max(capacity, cache.length + 1), keyBlock: cache.blockSize });
    const { numKvHeads: nKv, headDim: D } = spec;
    dec.layers.forEach((layer, i) => {
      for (const block of cache.blocks(i)) {
        const [BK, n] = block.k.shape;
        if (BK !== nKv) throw new FopeifyError('INTERNAL', 'the decoding step continues one sequence only');
        const k = kernels.data(block.k);
        const v = kernels.data(block.v);
        for (let b = 0; b < nKv; b++) {
          const at = (b * dec.capacity + block.start) * D;
          layer.keys.set(k.subarray(b * n * D, (b + 1) * n * D), at);
          layer.values.set(v.subarray(b * n * D, (b + 1) * n * D), at);
        }
      }
    });
    dec.length = cache.length;
    return dec;
  }

  /**
   * Run one token at position `length` through the model; returns the next-token logits (a buffer
   * this decoder reuses: read it before the next step).
   */
  step(token: number): Float32Array {
    const { spec, kernels: kd } = this;
    const { hiddenSize: H, numHeads: nH, numKvHeads: nKv, headDim: D, vocabSize: V, rmsNormEps: eps } = spec;
    if (!Number.isInteger(token) || token < 0 || token >= V) {
      throw new FopeifyError('BAD_ARGUMENT', `token id ${token} is outside the vocabulary (0..${V - 1})`);
    }
    const pos = this.length;
    if (pos >= this.capacity) this.grow(Math.max(2 * this.capacity, pos + 1));
    const { h, x, q, qn, k, kn, v, attn, hidden } = this;
    h.set(this.embed.subarray(token * H, (token + 1) * H));
    const positions = Float32Array.of(pos);
    let tables: { cos: Float32Array; sin: Float32Array; groups: number; dim: number } | null = null;
    const R = nH / nKv;
    for (let i = 0; i < this.layers.length; i++) {
      const L = this.layers[i]!;
      kd.rmsNorm(h, L.inputNorm, x, eps);
      this.linear(L.q, x, q);
      this.linear(L.k, x, k);
      this.linear(L.v, x, v);
      let qr = q;
      let kr = k;
      if (L.qNorm && L.kNorm) {
        kd.rmsNorm(q, L.qNorm, qn, eps);
        kd.rmsNorm(k, L.kNorm, kn, eps);
        qr = qn;
        kr = kn;
      }
      if (!tables || this.fopeLayout === 'per-layer') tables = this.rotaryTables(i, positions);
      kd.rotary(qr, nH, nH / tables.groups, D, tables.dim, tables.cos, tables.sin);
      kd.rotary(kr, nKv, nKv / tables.groups, D, tables.dim, tables.cos, tables.sin);
      for (let b = 0; b < nKv; b++) {
        const at = (b * this.capacity + pos) * D;
        L.keys.set(kr.subarray(b * D, (b + 1) * D), at);
        L.values.set(v.subarray(b * D, (b + 1) * D), at);
      }
      kd.attention(qr, { k: L.keys, v: L.values, capacity: this.capacity }, { nKv, R, D, len: pos + 1, keyBlock: this.keyBlock, window: spec.slidingWindow, scale: 1 / Math.sqrt(D) }, attn);
      this.linear(L.o, attn, hidden);
      addInPlace(h, hidden);
      kd.rmsNorm(h, L.postNorm, x, eps);
      this.linear(L.gate, x, this.gate);
      this.linear(L.up, x, this.up);
      kd.swiGlu(this.gate, this.up, this.act);
      this.linear(L.down, this.act, hidden);
      addInPlace(h, hidden);
    }
    kd.rmsNorm(h, this.finalNorm, x, eps);
    this.linear(this.head, x, this.logits);
    this.length = pos + 1;
    this.steps++;
    return this.logits;
  }

  private linear(l: LinearData, x: Float32Array, y: Float32Array): void {
    this.kernels.linear(l.w, l.rows, l.cols, x, y, l.transposed);
    if (l.bias) addInPlace(y, l.bias);
  }

  /** Half tables `[groups, dim/2]` of layer i at one position (rotary.ts's tables, the first halves). */
  private rotaryTables(layer: number, positions: Float32Array): { cos: Float32Array; sin: Float32Array; groups: number; dim: number } {
    const t = cosSinTable(this.spec, positions, fopeCoefficients(this.weights, this.fopeLayout, layer));
    const half = t.dim / 2;
    const cos = new Float32Array(t.groups * half);
    const sin = new Float32Array(t.groups * half);
    for (let g = 0; g < t.groups; g++) {
      cos.set(t.cos.subarray(g * t.dim, g * t.dim + half), g * half);
      sin.set(t.sin.subarray(g * t.dim, g * t.dim + half), g * half);
    }
    return { cos, sin, groups: t.groups, dim: t.dim };
  }

  /** Move every layer's cache into buffers of `capacity` tokens (the first `length` rows kept). */
  private grow(capacity: number): void {
    const { numKvHeads: nKv, headDim: D } = this.spec;
    for (const L of this.layers) {
      for (const key of ['keys', 'values'] as const) {
        const old = L[key];
        const next = new Float32Array(nKv * capacity * D);
        for (let b = 0; b < nKv; b++) next.set(old.subarray(b * this.capacity * D, (b * this.capacity + this.length) * D), b * capacity * D);
        L[key] = next;
      }
    }
    this.capacity = capacity;
  }
}

/** y += b elementwise (float32 sums: the bits of tf.add). */
function addInPlace(y: Float32Array, b: Float32Array): void {
  for (let i = 0; i < y.length; i++) y[i] = y[i]! + b[i]!;
}
