/**
 * One Llama-family decoder layer, used by inference (llama.ts) and training (src/train/model.ts) alike:
 * RMSNorm → GQA attention with RoPE/FoPE → residual → RMSNorm → SwiGLU → residual, as HF's
 * modeling_llama (q/k norm, Qwen3's, comes before the rotary embedding). What differs between the two
 * is supplied, not copied:
 *  - the weights, through a `LayerWeights` accessor (inference: the weight map with its transposed
 *    `^T` twins; training: trained tensors, LoRA merged in by the accessor);
 *  - the ops, through `LayerOps` (inference: the kernels' forward-only fast paths and the KV cache;
 *    training: differentiable ops and the checkpointed flash attention).
 */
import * as tf from '../backend/tfjs.js';
import type { Kernels, TokenHeads } from '../backend/kernels.js';
import type { ModelSpec } from '../config/model-spec.js';
import { linear } from './layers.js';
import type { RotaryTables } from './rotary.js';
import { TRANSPOSED_SUFFIX, weight, type WeightMap } from './weights.js';

/** Where a layer gets its weights. */
export interface LayerWeights {
  /** A weight by HF name (a FopeifyError when it is missing). */
  get(name: string): tf.Tensor;
  /** An optional weight (a bias), or undefined. */
  opt(name: string): tf.Tensor | undefined;
  /** A linear layer's weight `<prefix>.weight`: HF's `[out, in]`, or `[in, out]` when `transposed`. */
  linear(name: string): { w: tf.Tensor; transposed: boolean };
}

/** How a layer computes the parts that differ between inference and training. */
export interface LayerOps {
  /** Matmuls of the projections. */
  kernels: Pick<Kernels, 'matMul'>;
  /** RMSNorm over the last axis. */
  norm<T extends tf.Tensor>(x: T, w: tf.Tensor, eps: number): T;
  /** SwiGLU's activation `silu(g) · u`. */
  activation(g: tf.Tensor2D, u: tf.Tensor2D): tf.Tensor2D;
  /** Rotary / FoPE of q or k `[B, nKv, R, T, D]` with this call's tables (Kernels.rotary). */
  rotary(x: tf.Tensor5D, tables: RotaryTables): tf.Tensor5D;
  /** Attention of rotated queries `[B·nKv, R, T, D]` over this call's keys and values `[B·nKv, T, D]` of `layer`. */
  attention(q: tf.Tensor4D, k: tf.Tensor3D, v: tf.Tensor3D, layer: number): tf.Tensor4D;
  /**
   * Rotary and attention on the projections' token-major rows `[B·T, n·D]`, where the kernels address
   * heads by row strides (native): then no head-major copy of q, k, v or the output is made (nor of
   * their gradients). Absent: `rotary` and `attention` on head-major views.
   */
  tokenMajor?: {
    /** `rotary` of x `[B·T, nKv·R·D]` (R = 1 for keys). */
    rotary(x: tf.Tensor2D, heads: TokenHeads, tables: RotaryTables): tf.Tensor2D;
    /** `attention` of rotated q `[B·T, nH·D]` over k, v `[B·T, nKv·D]` of `layer`; returns `[B·T, nH·D]`. */
    attention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, heads: TokenHeads, layer: number): tf.Tensor2D;
  };
  /** Run a part of the layer, freeing its intermediates early when the caller needs none of them (tf.tidy). */
  scope<T extends tf.TensorContainer>(fn: () => T): T;
}

export interface DecoderContext {
  spec: ModelSpec;
  /** Batch and sequence length of this call (the layer's input is `[B·T, H]`). */
  B: number;
  T: number;
  weights: LayerWeights;
  ops: LayerOps;
}

/** The accessor of a runtime weight map: a linear weight's inference-layout `^T` twin when present. */
export function mapWeights(w: WeightMap): LayerWeights {
  return {
    get: (name) => weight(w, name),
    opt: (name) => w.get(name),
    linear(name) {
      const t = w.get(name + TRANSPOSED_SUFFIX);
      return t ? { w: t, transposed: true } : { w: weight(w, name), transposed: false };
    },
  };
}

/** The linear layer `<prefix>.weight` (+ bias) applied to x. */
function proj(ctx: DecoderContext, x: tf.Tensor2D, prefix: string): tf.Tensor2D {
  const { w, transposed } = ctx.weights.linear(`${prefix}.weight`);
  return linear(x, w, ctx.weights.opt(`${prefix}.bias`), transposed, ctx.ops.kernels);
}

/** Self-attention of layer i on normed hidden states `[B·T, H]`; returns `[B·T, H]` (o_proj applied). */
export function selfAttention(x: tf.Tensor2D, layer: number, rot: RotaryTables, ctx: DecoderContext): tf.Tensor2D {
  const { spec, B, T, ops } = ctx;
  const { numHeads: nH, numKvHeads: nKv, headDim: D } = spec;
  const R = nH / nKv;
  const p = `model.layers.${layer}.self_attn`;
  return ops.scope(() => {
    const tm = ops.tokenMajor;
    if (tm) {
      // The projections' rows as they are: q/k norm per head on [B·T·n, D] views, rotary and attention by strides.
      const perHead = (y: tf.Tensor2D, n: number, name: string) =>
        spec.qkNorm ? (tf.reshape(ops.norm(tf.reshape(y, [B * T * n, D]) as tf.Tensor2D, ctx.weights.get(`${p}.${name}.weight`), spec.rmsNormEps), [B * T, n * D]) as tf.Tensor2D) : y;
      const heads: TokenHeads = { B, nKv, R, D };
      const q = tm.rotary(perHead(proj(ctx, x, `${p}.q_proj`), nH, 'q_norm'), heads, rot);
      const k = tm.rotary(perHead(proj(ctx, x, `${p}.k_proj`), nKv, 'k_norm'), { ...heads, R: 1 }, rot);
      const v = proj(ctx, x, `${p}.v_proj`);
      return proj(ctx, tm.attention(q, k, v, heads, layer), `${p}.o_proj`);
    }
    // [B·T, n·D] → [B, n, T, D]
    const heads = (y: tf.Tensor2D, n: number) => tf.transpose(tf.reshape(y, [B, T, n, D]), [0, 2, 1, 3]) as tf.Tensor4D;
    let q = heads(proj(ctx, x, `${p}.q_proj`), nH);
    let k = heads(proj(ctx, x, `${p}.k_proj`), nKv);
    const v = heads(proj(ctx, x, `${p}.v_proj`), nKv);
    if (spec.qkNorm) {
      q = ops.norm(q, ctx.weights.get(`${p}.q_norm.weight`), spec.rmsNormEps);
      k = ops.norm(k, ctx.weights.get(`${p}.k_norm.weight`), spec.rmsNormEps);
    }
    // Query head h shares KV head floor(h / R): view q as [B, nKv, R, T, D] (HF's repeat_kv order).
    const qr = tf.reshape(ops.rotary(tf.reshape(q, [B, nKv, R, T, D]) as tf.Tensor5D, rot), [B * nKv, R, T, D]) as tf.Tensor4D;
    const kr = tf.reshape(ops.rotary(tf.reshape(k, [B, nKv, 1, T, D]) as tf.Tensor5D, rot), [B * nKv, T, D]) as tf.Tensor3D;
    const vr = tf.reshape(v, [B * nKv, T, D]) as tf.Tensor3D;
    const o = ops.attention(qr, kr, vr, layer);
    const merged = tf.reshape(tf.transpose(tf.reshape(o, [B, nH, T, D]), [0, 2, 1, 3]), [B * T, nH * D]) as tf.Tensor2D;
    return proj(ctx, merged, `${p}.o_proj`);
  });
}

/** One decoder layer on the residual stream `[B·T, H]`. */
export function decoderLayer(h: tf.Tensor2D, layer: number, rot: RotaryTables, ctx: DecoderContext): tf.Tensor2D {
  const { spec, ops, weights: w } = ctx;
  const p = `model.layers.${layer}`;
  const x = ops.norm(h, w.get(`${p}.input_layernorm.weight`), spec.rmsNormEps);
  const h1 = tf.add(h, selfAttention(x, layer, rot, ctx)) as tf.Tensor2D;
  const y = ops.norm(h1, w.get(`${p}.post_attention_layernorm.weight`), spec.rmsNormEps);
  const mlp = ops.scope(() => {
    const gate = proj(ctx, y, `${p}.mlp.gate_proj`);
    const up = proj(ctx, y, `${p}.mlp.up_proj`);
    return proj(ctx, ops.activation(gate, up), `${p}.mlp.down_proj`);
  });
  return tf.add(h1, mlp) as tf.Tensor2D;
}
