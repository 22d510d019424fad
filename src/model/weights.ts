/**
 * The weights of a Llama-family checkpoint in TensorFlow.js: every tensor the runtime needs, float32
 * (bf16/f16 converted on load), under its Hugging Face name, as a named tf.Variable a trainer can take
 * gradients with respect to. FoPE coefficients (shared, per layer, or under `model.language_model.`)
 * are loaded too and never regenerated.
 */
import * as tf from '../backend/tfjs.js';
import type { ModelSpec } from '../config/model-spec.js';
import { FopeifyError } from '../errors.js';
import { Checkpoint } from '../io/checkpoint.js';
import { transpose2d } from '../io/transpose.js';
import { checkWeightValues, firstNonFinite, MAX_ABS_WEIGHT } from './finite.js';

export { transpose2d };

/** Weights by Hugging Face name. Variables when loaded by loadWeights; any tensors for forwardLogits. */
export type WeightMap = Map<string, tf.Tensor>;

/** A prefix some VLM releases (Intern-S1-Pro) put in front of the text model's `model.` names. */
const LANGUAGE_MODEL_PREFIX = 'model.language_model.';

/** The name a checkpoint tensor has for the runtime (`model.language_model.x` → `model.x`). */
export function canonicalWeightName(name: string): string {
  return name.startsWith(LANGUAGE_MODEL_PREFIX) ? `model.${name.slice(LANGUAGE_MODEL_PREFIX.length)}` : name;
}

/** Names and shapes of every tensor a Llama-family decoder of this spec needs (FoPE coefficients aside). */
export function expectedWeights(spec: ModelSpec): { name: string; shape: number[] }[] {
  const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: hd, vocabSize: V } = spec;
  const out: { name: string; shape: number[] }[] = [{ name: 'model.embed_tokens.weight', shape: [V, H] }];
  for (let i = 0; i < spec.numLayers; i++) {
    const p = `model.layers.${i}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [H] });
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [H] });
    out.push({ name: `${p}.self_attn.q_proj.weight`, shape: [nH * hd, H] });
    out.push({ name: `${p}.self_attn.k_proj.weight`, shape: [nKv * hd, H] });
    out.push({ name: `${p}.self_attn.v_proj.weight`, shape: [nKv * hd, H] });
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [H, nH * hd] });
    if (spec.qkvBias) {
      out.push({ name: `${p}.self_attn.q_proj.bias`, shape: [nH * hd] });
      out.push({ name: `${p}.self_attn.k_proj.bias`, shape: [nKv * hd] });
      out.push({ name: `${p}.self_attn.v_proj.bias`, shape: [nKv * hd] });
    }
    if (spec.oBias) out.push({ name: `${p}.self_attn.o_proj.bias`, shape: [H] });
    if (spec.qkNorm) {
      out.push({ name: `${p}.self_attn.q_norm.weight`, shape: [hd] });
      out.push({ name: `${p}.self_attn.k_norm.weight`, shape: [hd] });
    }
    out.push({ name: `${p}.mlp.gate_proj.weight`, shape: [I, H] });
    out.push({ name: `${p}.mlp.up_proj.weight`, shape: [I, H] });
    out.push({ name: `${p}.mlp.down_proj.weight`, shape: [H, I] });
    if (spec.mlpBias) {
      out.push({ name: `${p}.mlp.gate_proj.bias`, shape: [I] });
      out.push({ name: `${p}.mlp.up_proj.bias`, shape: [I] });
      out.push({ name: `${p}.mlp.down_proj.bias`, shape: [H] });
    }
  }
  out.push({ name: 'model.norm.weight', shape: [H] });
  // A tied checkpoint may still carry lm_head.weight (some exporters write it); it is used when present.
  if (!spec.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [V, H] });
  return out;
}

/** Where a checkpoint keeps its FoPE coefficients (after canonicalWeightName). */
export type FopeLayout = 'shared' | 'per-layer';

export const SHARED_FOPE_PREFIX = 'model.rotary_emb';
export const layerFopePrefix = (layer: number) => `model.layers.${layer}.self_attn.rotary_emb`;

/** The FoPE coefficient layout found among (canonical) tensor names, or null for a RoPE checkpoint. */
export function detectFopeLayout(names: Iterable<string>, numLayers: number): FopeLayout | null {
  const set = new Set(names);
  const perLayer = Array.from({ length: numLayers }, (_, i) => set.has(`${layerFopePrefix(i)}.sin_coef`));
  if (perLayer.some(Boolean)) {
    const missing = perLayer.map((ok, i) => (ok ? -1 : i)).filter((i) => i >= 0);
    if (missing.length) {
      throw new FopeifyError('BAD_SAFETENSORS', `per-layer FoPE coefficients are missing for layer(s) ${missing.join(', ')}`);
    }
    return 'per-layer';
  }
  return set.has(`${SHARED_FOPE_PREFIX}.sin_coef`) ? 'shared' : null;
}

/** The names of layer `i`'s sin/cos coefficients under a layout. */
export function fopeCoefNames(layout: FopeLayout, layer: number): { sin: string; cos: string } {
  const p = layout === 'shared' ? SHARED_FOPE_PREFIX : layerFopePrefix(layer);
  return { sin: `${p}.sin_coef`, cos: `${p}.cos_coef` };
}

/**
 * Check a coefficient shape against the model: `[K, out]` or `[G, K, out]` with G = 1, the KV heads, or
 * (MHA) the query heads; K and out at most half the rotary dimension. Returns G.
 */
export function checkFopeCoefShape(spec: ModelSpec, name: string, shape: readonly number[]): number {
  const half = spec.rope.dim / 2;
  const bad = (why: string) =>
    new FopeifyError('BAD_SAFETENSORS', `FoPE coefficient ${name} has shape [${shape.join(', ')}]: ${why}`);
  if (shape.length !== 2 && shape.length !== 3) throw bad('expected [K, K] or [heads, K, K]');
  const G = shape.length === 3 ? shape[0]! : 1;
  const K = shape[shape.length - 2]!;
  const out = shape[shape.length - 1]!;
  if (K < 1 || K > half || out < 1 || out > half) throw bad(`K and the output size must be 1..${half} (rotary dim ${spec.rope.dim})`);
  if (G !== 1 && G !== spec.numKvHeads) {
    throw bad(`the head count must be 1 or the ${spec.numKvHeads} KV heads`);
  }
  // num_inv_freq, when recorded, is what every loader builds K from (fope.md §7); without it the shape decides.
  const recordedK = spec.fope?.numInvFreq ?? null;
  if (recordedK !== null && K !== recordedK) throw bad(`K = ${K}, but config.json says num_inv_freq = ${recordedK}`);
  return G;
}

/**
 * Suffix of a linear weight stored transposed, `[in, out]` instead of HF's `[out, in]`
 * (e.g. `model.layers.0.mlp.up_proj.weight^T`). The batched forward pass uses such a weight with a
 * plain matmul, which tfjs-wasm (and tfjs without BLAS) run much faster than the transposed one; see
 * `layout` for when it pays.
 */
export const TRANSPOSED_SUFFIX = '^T';

/** Names of the linear weights (HF layout `[out, in]`), which the inference layout stores transposed. */
export function isLinearWeight(name: string): boolean {
  return name === 'lm_head.weight' || /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/.test(name);
}

export interface LoadWeightsOptions {
  /**
   * 'hf' (default): every weight under its HF name and shape — what trainers, LoRA and writers expect.
   * 'inference': linear weights (an untied LM head included; a tied one reads the embedding itself) are
   * stored transposed under `<name>^T`; same results. It speeds up batched matmuls where the backend
   * has no fast transposed product (wasm, cpu without BLAS). It does not speed up decoding: with the
   * native kernels a decoding step is matrix-vector products, which want HF's row-major `[out, in]`
   * (sgemv) (measured on the SmolLM2-135M shape at 2048 context: 'hf' decodes faster, in the fused
   * step as in the tensor path).
   */
  layout?: 'hf' | 'inference';
  /** Which weights are trainable variables (default: none; FoPE coefficients never are). */
  trainable?: boolean | ((name: string) => boolean);
  /**
   * Load tensors holding NaN, ±Inf or |x| > MAX_ABS_WEIGHT (default false: refused with BAD_SAFETENSORS
   * naming the tensor). For users studying a broken checkpoint; evaluations still refuse NaN scores.
   */
  allowNonFinite?: boolean;
  /** Called after each tensor is loaded. */
  onProgress?: (done: number, total: number, name: string) => void;
}

export interface LoadedWeights {
  weights: Map<string, tf.Variable>;
  fopeLayout: FopeLayout | null;
}

let modelCounter = 0;

/**
 * Read every tensor the spec needs from a checkpoint folder into named tf.Variables (names are
 * `fopeify/<n>/<hf name>` so several models can live in one process). Unknown extra tensors (e.g. old
 * `rotary_emb.inv_freq` buffers) are ignored; missing or mis-shaped ones are errors.
 */
export async function loadWeights(dir: string, spec: ModelSpec, options: LoadWeightsOptions = {}): Promise<LoadedWeights> {
  const ckpt = await Checkpoint.open(dir);
  try {
    const byCanonical = new Map<string, string>();
    for (const name of ckpt.tensors.keys()) {
      const c = canonicalWeightName(name);
      // Prefer the canonical spelling if both exist.
      if (!byCanonical.has(c) || name === c) byCanonical.set(c, name);
    }
    const wanted = expectedWeights(spec);
    if (spec.tieWordEmbeddings && byCanonical.has('lm_head.weight')) {
      wanted.push({ name: 'lm_head.weight', shape: [spec.vocabSize, spec.hiddenSize] });
    }
    const fopeLayout = detectFopeLayout(byCanonical.keys(), spec.numLayers);
    if (spec.fope && !fopeLayout) {
      throw new FopeifyError(
        'BAD_SAFETENSORS',
        `config.json of ${dir} enables FoPE, but the checkpoint has no FoPE coefficients (${SHARED_FOPE_PREFIX}.{sin,cos}_coef or per-layer ${layerFopePrefix(0)}.*); a loader never regenerates them`,
      );
    }
    const coefNames: string[] = [];
    if (fopeLayout) {
      const layers = fopeLayout === 'shared' ? 1 : spec.numLayers;
      for (let i = 0; i < layers; i++) {
        const n = fopeCoefNames(fopeLayout, i);
        for (const name of [n.sin, n.cos]) {
          const src = byCanonical.get(name);
          if (!src) throw new FopeifyError('BAD_SAFETENSORS', `FoPE coefficient ${name} is missing`);
          checkFopeCoefShape(spec, name, ckpt.info(src).shape);
        }
        const sinShape = ckpt.info(byCanonical.get(n.sin)!).shape;
        const cosShape = ckpt.info(byCanonical.get(n.cos)!).shape;
        if (sinShape.join() !== cosShape.join()) {
          throw new FopeifyError('BAD_SAFETENSORS', `FoPE coefficients ${n.sin} [${sinShape}] and ${n.cos} [${cosShape}] differ in shape`);
        }
        coefNames.push(n.sin, n.cos);
      }
    }
    const missing = wanted.filter((w) => !byCanonical.has(w.name)).map((w) => w.name);
    if (missing.length) {
      const more = missing.length > 4 ? ` and ${missing.length - 4} more` : '';
      throw new FopeifyError(
        'BAD_SAFETENSORS',
        `checkpoint in ${dir} lacks ${missing.slice(0, 4).join(', ')}${more} (config.json describes a ${spec.architecture})`,
      );
    }
    for (const w of wanted) {
      const shape = ckpt.info(byCanonical.get(w.name)!).shape;
      if (shape.join() !== w.shape.join()) {
        throw new FopeifyError('BAD_SAFETENSORS', `${w.name} has shape [${shape.join(', ')}], config.json implies [${w.shape.join(', ')}]`);
      }
    }
    const id = modelCounter++;
    const trainable = options.trainable ?? false;
    const isTrainable = (name: string) => (typeof trainable === 'function' ? trainable(name) : trainable);
    const all = [...wanted.map((w) => w.name), ...coefNames];
    const inference = options.layout === 'inference';
    const weights = new Map<string, tf.Variable>();
    const add = (name: string, data: Float32Array, shape: number[], trainable: boolean) => {
      const t = tf.tensor(data, shape, 'float32');
      try {
        weights.set(name, tf.variable(t, trainable, `fopeify/${id}/${name}`, 'float32'));
      } finally {
        t.dispose();
      }
    };
    try {
      let done = 0;
      for (const name of all) {
        const src = byCanonical.get(name)!;
        const shape = ckpt.info(src).shape;
        const transposed = inference && isLinearWeight(name);
        // Read straight into the layout it is kept in: the file's bytes are the only other buffer.
        const data = await ckpt.readFloat32(src, { transposed });
        const trainable = coefNames.includes(name) ? false : isTrainable(name);
        if (transposed) {
          // A bad value is reported at its place in the file's [out, in] layout (the rare error path transposes back).
          if (!options.allowNonFinite && firstNonFinite(data, MAX_ABS_WEIGHT) >= 0) {
            checkWeightValues(src, transpose2d(data, shape[1]!, shape[0]!), shape);
          }
          add(name + TRANSPOSED_SUFFIX, data, [shape[1]!, shape[0]!], trainable);
        } else {
          if (!options.allowNonFinite) checkWeightValues(src, data, shape);
          // A tied LM head reads the embedding itself (a transposed-B product): no second [V, H] copy in memory.
          add(name, data, shape, trainable);
        }
        options.onProgress?.(++done, all.length, name);
      }
    } catch (err) {
      for (const v of weights.values()) v.dispose();
      throw err;
    }
    return { weights, fopeLayout };
  } finally {
    await ckpt.close();
  }
}

/** A weight by name, or a clear internal error. */
export function weight(weights: WeightMap, name: string): tf.Tensor {
  const w = weights.get(name);
  if (!w) throw new FopeifyError('INTERNAL', `weight ${name} is not loaded`);
  return w;
}
