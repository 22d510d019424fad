/**
 * Generator of small HF-format checkpoints (config.json, safetensors, tokenizer) with seeded random
 * weights: the fixtures of the test suite and the random-weight stand-ins for speed benchmarks
 * (models.md: no Hub access on the build machines).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { encodeFromF32, torchDtypeOf, type FloatDtype } from '../io/dtype.js';
import { writeShardedSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { SeededRandom } from '../random.js';
import { BYTE_EOS_ID, BYTE_VOCAB_SIZE, byteTokenizerConfig, byteTokenizerJson } from './byte-tokenizer.js';

export type TinyKind = 'llama' | 'qwen2' | 'qwen3' | 'llama-yarn' | 'llama3' | 'mistral' | 'llama-v5';
export const TINY_KINDS: readonly TinyKind[] = ['llama', 'qwen2', 'qwen3', 'llama-yarn', 'llama3', 'mistral', 'llama-v5'];

export interface ModelShape {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim?: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  ropeTheta: number;
  tieWordEmbeddings: boolean;
}

export interface TinyCheckpointOptions {
  kind?: TinyKind;
  dtype?: FloatDtype;
  /** Data bytes per shard; smaller than the model → sharded with an index. */
  maxShardBytes?: number;
  seed?: number;
  /** Override any dimension (benchmarks use SmolLM2-135M's). */
  shape?: Partial<ModelShape>;
  /** Std of random linear weights. */
  initStd?: number;
  /** Std of the embedding table (default 0.5: large enough that untrained fixtures give varied logits). */
  embedStd?: number;
  /** Std of the noise around 1 in norm weights (default 0.1; 0 for a clean init to train from). */
  normNoise?: number;
  /** Write the byte-level tokenizer (default true). */
  tokenizer?: boolean;
}

/** The shape of SmolLM2-135M (models.md), for random-weight benchmarks. */
export const SMOLLM2_135M_SHAPE: ModelShape = {
  hiddenSize: 576,
  intermediateSize: 1536,
  numLayers: 30,
  numHeads: 9,
  numKvHeads: 3,
  vocabSize: 49152,
  maxPositionEmbeddings: 8192,
  ropeTheta: 100000,
  tieWordEmbeddings: true,
};

export const TINY_SHAPE: ModelShape = {
  hiddenSize: 64,
  intermediateSize: 128,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  vocabSize: BYTE_VOCAB_SIZE,
  maxPositionEmbeddings: 64,
  ropeTheta: 10000,
  tieWordEmbeddings: false,
};

export function tinyConfig(kind: TinyKind, shape: ModelShape, dtype: FloatDtype): Record<string, unknown> {
  const arch =
    kind === 'qwen2' ? 'Qwen2ForCausalLM' : kind === 'qwen3' ? 'Qwen3ForCausalLM' : kind === 'mistral' ? 'MistralForCausalLM' : 'LlamaForCausalLM';
  const modelType = kind === 'qwen2' ? 'qwen2' : kind === 'qwen3' ? 'qwen3' : kind === 'mistral' ? 'mistral' : 'llama';
  const cfg: Record<string, unknown> = {
    architectures: [arch],
    model_type: modelType,
    hidden_size: shape.hiddenSize,
    intermediate_size: shape.intermediateSize,
    num_hidden_layers: shape.numLayers,
    num_attention_heads: shape.numHeads,
    num_key_value_heads: shape.numKvHeads,
    vocab_size: shape.vocabSize,
    max_position_embeddings: shape.maxPositionEmbeddings,
    rms_norm_eps: 1e-5,
    hidden_act: 'silu',
    rope_theta: shape.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: shape.tieWordEmbeddings,
    bos_token_id: BYTE_EOS_ID,
    eos_token_id: BYTE_EOS_ID,
    torch_dtype: torchDtypeOf(dtype),
    attention_bias: false,
    transformers_version: '4.46.0',
  };
  if (shape.headDim !== undefined) cfg.head_dim = shape.headDim;
  if (kind === 'qwen2') cfg.tie_word_embeddings = true;
  if (kind === 'qwen3') cfg.head_dim = shape.headDim ?? (2 * shape.hiddenSize) / shape.numHeads;
  if (kind === 'mistral') cfg.sliding_window = null;
  if (kind === 'llama-yarn') {
    cfg.rope_scaling = { rope_type: 'yarn', factor: 4, original_max_position_embeddings: shape.maxPositionEmbeddings };
    cfg.max_position_embeddings = 4 * shape.maxPositionEmbeddings;
  }
  if (kind === 'llama3') {
    cfg.rope_theta = 500000;
    cfg.rope_scaling = {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: shape.maxPositionEmbeddings,
    };
    cfg.max_position_embeddings = 8 * shape.maxPositionEmbeddings;
  }
  if (kind === 'llama-v5') {
    delete cfg.rope_theta;
    delete cfg.rope_scaling;
    cfg.rope_parameters = { rope_type: 'default', rope_theta: shape.ropeTheta };
    cfg.transformers_version = '5.0.0';
  }
  return cfg;
}

/** Tensor names and shapes of a Llama-family checkpoint (HF names). */
export function tensorShapes(cfg: Record<string, unknown>): { name: string; shape: number[]; kind: 'linear' | 'norm' | 'bias' | 'embed' }[] {
  const H = cfg.hidden_size as number;
  const I = cfg.intermediate_size as number;
  const nH = cfg.num_attention_heads as number;
  const nKv = cfg.num_key_value_heads as number;
  const hd = (cfg.head_dim as number | undefined) ?? H / nH;
  const V = cfg.vocab_size as number;
  const qwen2 = cfg.model_type === 'qwen2';
  const qwen3 = cfg.model_type === 'qwen3';
  const out: { name: string; shape: number[]; kind: 'linear' | 'norm' | 'bias' | 'embed' }[] = [];
  out.push({ name: 'model.embed_tokens.weight', shape: [V, H], kind: 'embed' });
  for (let i = 0; i < (cfg.num_hidden_layers as number); i++) {
    const p = `model.layers.${i}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [H], kind: 'norm' });
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [H], kind: 'norm' });
    out.push({ name: `${p}.self_attn.q_proj.weight`, shape: [nH * hd, H], kind: 'linear' });
    out.push({ name: `${p}.self_attn.k_proj.weight`, shape: [nKv * hd, H], kind: 'linear' });
    out.push({ name: `${p}.self_attn.v_proj.weight`, shape: [nKv * hd, H], kind: 'linear' });
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [H, nH * hd], kind: 'linear' });
    if (qwen2) {
      out.push({ name: `${p}.self_attn.q_proj.bias`, shape: [nH * hd], kind: 'bias' });
      out.push({ name: `${p}.self_attn.k_proj.bias`, shape: [nKv * hd], kind: 'bias' });
      out.push({ name: `${p}.self_attn.v_proj.bias`, shape: [nKv * hd], kind: 'bias' });
    }
    if (qwen3) {
      out.push({ name: `${p}.self_attn.q_norm.weight`, shape: [hd], kind: 'norm' });
      out.push({ name: `${p}.self_attn.k_norm.weight`, shape: [hd], kind: 'norm' });
    }
    out.push({ name: `${p}.mlp.gate_proj.weight`, shape: [I, H], kind: 'linear' });
    out.push({ name: `${p}.mlp.up_proj.weight`, shape: [I, H], kind: 'linear' });
    out.push({ name: `${p}.mlp.down_proj.weight`, shape: [H, I], kind: 'linear' });
  }
  out.push({ name: 'model.norm.weight', shape: [H], kind: 'norm' });
  if (!cfg.tie_word_embeddings) out.push({ name: 'lm_head.weight', shape: [V, H], kind: 'linear' });
  return out;
}

/**
 * Write a checkpoint folder. Weights are seeded random: linear N(0, initStd), norms 1 + N(0, 0.1) (so a
 * runtime that ignores a norm weight fails its tests), biases N(0, 0.05). Tensors are generated one at a
 * time while writing, so multi-GB benchmark checkpoints never sit in memory.
 */
export async function writeTinyCheckpoint(dir: string, options: TinyCheckpointOptions = {}): Promise<Record<string, unknown>> {
  const kind = options.kind ?? 'llama';
  const dtype = options.dtype ?? 'F32';
  const shape = { ...TINY_SHAPE, ...options.shape };
  const cfg = tinyConfig(kind, shape, dtype);
  const seed = options.seed ?? 0;
  const std = options.initStd ?? 0.08;
  await fs.mkdir(dir, { recursive: true });
  const tensors: TensorToWrite[] = tensorShapes(cfg).map((t) => ({
    name: t.name,
    dtype,
    shape: t.shape,
    data: async () => {
      const rng = new SeededRandom(seed, t.name);
      const n = t.shape.reduce((a, b) => a * b, 1);
      const v = new Float32Array(n);
      if (t.kind === 'norm') for (let i = 0; i < n; i++) v[i] = 1 + (options.normNoise ?? 0.1) * rng.normal();
      else {
        const s = t.kind === 'bias' ? 0.05 : t.kind === 'embed' ? (options.embedStd ?? 0.5) : std;
        for (let i = 0; i < n; i++) v[i] = s * rng.normal();
      }
      return encodeFromF32(v, dtype);
    },
  }));
  await writeShardedSafetensors(dir, tensors, { maxShardBytes: options.maxShardBytes, metadata: { format: 'pt' } });
  await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
  await fs.writeFile(
    path.join(dir, 'generation_config.json'),
    JSON.stringify({ bos_token_id: BYTE_EOS_ID, eos_token_id: BYTE_EOS_ID, do_sample: false }, null, 2) + '\n',
  );
  if (options.tokenizer ?? true) {
    await fs.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(byteTokenizerJson()) + '\n');
    await fs.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(byteTokenizerConfig(), null, 2) + '\n');
  }
  return cfg;
}
