/**
 * Which weights train, and LoRA. Trainable sets:
 *  - `all`: every weight except the FoPE coefficients (never trained);
 *  - `attention`: q/k/v/o projections (and their biases, and Qwen3's q/k norms);
 *  - `lora`: a rank-r update `W + (α/r)·B·A` on each target projection (PEFT's init: A
 *    kaiming-uniform, B zero, so training starts from the base model), optionally with the embeddings
 *    and every RMSNorm trainable as LongLoRA does.
 * LoRA is merged into the weights at save, or saved as a PEFT adapter (adapter_config.json +
 * adapter_model.safetensors, PEFT's tensor names).
 */
import * as tf from '../backend/tfjs.js';
import { FopeifyError } from '../errors.js';
import { SeededRandom } from '../random.js';
import type { LoraSettings, Trainable } from './recipe.js';

export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

const ATTENTION_PARAM = /^model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj|q_norm|k_norm)\.(weight|bias)$/;
const NORM_PARAM = /(^|\.)(input_layernorm|post_attention_layernorm|q_norm|k_norm|norm)\.weight$/;
const FOPE_COEF = /rotary_emb\.(sin|cos)_coef$/;

export function isFopeCoefficient(name: string): boolean {
  return FOPE_COEF.test(name);
}

/** Is this base weight trained directly (not through LoRA)? FoPE coefficients never are. */
export function isDirectlyTrainable(name: string, trainable: Trainable, lora: LoraSettings): boolean {
  if (isFopeCoefficient(name)) return false;
  if (trainable === 'all') return true;
  if (trainable === 'attention') return ATTENTION_PARAM.test(name);
  if (lora.trainEmbeddings && name === 'model.embed_tokens.weight') return true;
  if (lora.trainNorms && NORM_PARAM.test(name)) return true;
  return false;
}

/** The base weights a LoRA targets: `model.layers.N.<self_attn|mlp>.<target>.weight`. */
export function loraTargetsOf(names: Iterable<string>, lora: LoraSettings): string[] {
  for (const t of lora.targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) {
      throw new FopeifyError('BAD_ARGUMENT', `unknown LoRA target "${t}" (expected some of ${LORA_TARGETS.join(', ')})`);
    }
  }
  if (!(Number.isInteger(lora.rank) && lora.rank > 0)) throw new FopeifyError('BAD_ARGUMENT', `LoRA rank must be a positive integer (got ${lora.rank})`);
  if (!(lora.alpha > 0)) throw new FopeifyError('BAD_ARGUMENT', `LoRA alpha must be positive (got ${lora.alpha})`);
  const re = new RegExp(`^model\\.layers\\.\\d+\\.(self_attn|mlp)\\.(${lora.targets.join('|')})\\.weight$`);
  return [...names].filter((n) => re.test(n));
}

/** `x.weight` → `x.lora_A.weight` / `x.lora_B.weight`. */
export function loraNames(base: string): { a: string; b: string } {
  const stem = base.replace(/\.weight$/, '');
  return { a: `${stem}.lora_A.weight`, b: `${stem}.lora_B.weight` };
}

/** PEFT's initial A `[r, in]` (kaiming-uniform with a = √5: U(−1/√in, 1/√in)) and B `[out, r]` = 0. */
export function initLora(base: string, shape: readonly number[], rank: number, seed: number): { a: Float32Array; b: Float32Array } {
  const [out, inDim] = shape as [number, number];
  const rng = new SeededRandom(seed, `lora/${base}`);
  const bound = 1 / Math.sqrt(inDim);
  const a = new Float32Array(rank * inDim);
  for (let i = 0; i < a.length; i++) a[i] = (2 * rng.next() - 1) * bound;
  return { a, b: new Float32Array(out * rank) };
}

/** `W + scale·B·A`. */
export function mergeLora(w: tf.Tensor, a: tf.Tensor, b: tf.Tensor, scale: number): tf.Tensor {
  return tf.tidy(() => tf.add(w, tf.mul(tf.matMul(b as tf.Tensor2D, a as tf.Tensor2D), scale)));
}

/** PEFT's adapter_config.json for a LoRA on a causal LM. */
export function peftAdapterConfig(lora: LoraSettings, baseModel: string, modulesToSave: string[]): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: lora.rank,
    lora_alpha: lora.alpha,
    lora_dropout: 0,
    target_modules: [...lora.targets],
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    use_rslora: false,
    modules_to_save: modulesToSave.length ? modulesToSave : null,
    revision: null,
  };
}

/** PEFT's tensor name for a LoRA or fully trained tensor of the base model. */
export function peftTensorName(name: string): string {
  return `base_model.model.${name}`;
}

/** PEFT module names (modules_to_save) covering the directly trained tensors of a LoRA run. */
export function modulesToSave(trained: readonly string[]): string[] {
  const out = new Set<string>();
  for (const n of trained) {
    if (n === 'model.embed_tokens.weight') out.add('embed_tokens');
    else if (n === 'lm_head.weight') out.add('lm_head');
    else if (NORM_PARAM.test(n)) out.add('norm'); // PEFT matches module names by suffix: every *norm
  }
  return [...out].sort();
}
