/**
 * Validation before allocation (issue 18): every number of config.json that sizes a tensor, a loop or a
 * rope table is typed and bounded, and a rope dict that is not an object is refused instead of ignored.
 * Real configs up to Llama 3.1 405B and 1M-token contexts keep parsing.
 */
import { describe, expect, it } from 'vitest';
import { parseModelConfig } from '../../src/config/model-spec.js';
import { FopeifyError } from '../../src/errors.js';
import { tinyConfig } from '../../src/testing/tiny-checkpoint.js';

const shape = { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 260, maxPositionEmbeddings: 64, ropeTheta: 10000, tieWordEmbeddings: false };
const base = () => tinyConfig('llama', shape, 'F32');

function refusal(cfg: unknown): FopeifyError {
  try {
    parseModelConfig(cfg);
  } catch (e) {
    expect(e).toBeInstanceOf(FopeifyError);
    return e as FopeifyError;
  }
  throw new Error(`accepted ${JSON.stringify(cfg).slice(0, 200)}`);
}

/** Real configs (values from their config.json on the Hub). */
const llama = (o: Record<string, unknown>) => ({ architectures: ['LlamaForCausalLM'], model_type: 'llama', rms_norm_eps: 1e-5, ...o });
const REAL: Record<string, Record<string, unknown>> = {
  'SmolLM2-135M': llama({ hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, vocab_size: 49152, max_position_embeddings: 8192, rope_theta: 100000, tie_word_embeddings: true, rope_scaling: null }),
  'Llama-3.1-405B': llama({
    hidden_size: 16384, intermediate_size: 53248, num_hidden_layers: 126, num_attention_heads: 128, num_key_value_heads: 8, vocab_size: 128256,
    max_position_embeddings: 131072, rope_theta: 500000, head_dim: 128, mlp_bias: false, attention_bias: false, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009],
    rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  }),
  'Qwen2.5-7B-Instruct-1M': {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 3584, intermediate_size: 18944, num_hidden_layers: 28, num_attention_heads: 28, num_key_value_heads: 4,
    vocab_size: 152064, max_position_embeddings: 1010000, rope_theta: 10000000, rms_norm_eps: 1e-5, sliding_window: 32768, use_sliding_window: false, rope_scaling: null, tie_word_embeddings: false,
  },
  'Qwen3-0.6B': {
    architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: 1024, intermediate_size: 3072, num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128,
    vocab_size: 151936, max_position_embeddings: 40960, rope_theta: 1000000, rms_norm_eps: 1e-6, sliding_window: null, use_sliding_window: false, rope_scaling: null, tie_word_embeddings: true,
  },
  'Mistral-7B-v0.1': {
    architectures: ['MistralForCausalLM'], model_type: 'mistral', hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8,
    vocab_size: 32000, max_position_embeddings: 32768, rope_theta: 10000.0, rms_norm_eps: 1e-5, sliding_window: 4096, head_dim: null,
  },
  'Qwen3-4B-YaRN': {
    architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: 2560, intermediate_size: 9728, num_hidden_layers: 36, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128,
    vocab_size: 151936, max_position_embeddings: 131072, rope_theta: 1000000, rms_norm_eps: 1e-6, rope_scaling: { rope_type: 'yarn', factor: 4.0, original_max_position_embeddings: 32768 },
  },
};

describe('config validation', () => {
  it('keeps real configs working, up to 405B parameters and 1M-token contexts', () => {
    for (const [name, cfg] of Object.entries(REAL)) {
      const s = parseModelConfig(cfg, name);
      expect(s.numLayers, name).toBeGreaterThan(0);
    }
    expect(parseModelConfig(REAL['Mistral-7B-v0.1']!).slidingWindow).toBe(4096);
    expect(parseModelConfig(REAL['Mistral-7B-v0.1']!).headDim).toBe(128);
    expect(parseModelConfig(REAL['Llama-3.1-405B']!).eosTokenId).toEqual([128001, 128008, 128009]);
  });

  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['hidden_size 2^31', { hidden_size: 2 ** 31 }, /hidden_size must be an integer in 1\.\.131072 \(got 2147483648\)/],
    ['hidden_size as a string', { hidden_size: '64' }, /hidden_size must be an integer .*got "64"/],
    ['hidden_size fractional', { hidden_size: 64.5 }, /hidden_size must be an integer/],
    ['head_dim 1e30', { head_dim: 1e30 }, /head_dim must be an integer in 1\.\.4096/],
    ['num_hidden_layers 10^6', { num_hidden_layers: 1e6 }, /num_hidden_layers must be an integer in 1\.\.1024/],
    ['num_hidden_layers 0', { num_hidden_layers: 0 }, /num_hidden_layers must be an integer in 1\./],
    ['num_hidden_layers -3', { num_hidden_layers: -3 }, /num_hidden_layers/],
    ['negative num_key_value_heads', { num_key_value_heads: -2 }, /num_key_value_heads must be an integer in 1\.\.4/],
    ['more KV heads than heads', { num_key_value_heads: 8 }, /num_key_value_heads must be an integer in 1\.\.4/],
    ['KV heads not dividing heads', { num_key_value_heads: 3 }, /not a multiple of 3 KV heads/],
    ['num_attention_heads 0', { num_attention_heads: 0 }, /num_attention_heads must be an integer in 1\./],
    ['vocab_size 0', { vocab_size: 0 }, /vocab_size must be an integer in 1\./],
    ['intermediate_size huge', { intermediate_size: 1e9 }, /intermediate_size must be an integer/],
    ['max_position_embeddings negative', { max_position_embeddings: -1 }, /max_position_embeddings must be an integer/],
    ['max_position_embeddings 1e12', { max_position_embeddings: 1e12 }, /max_position_embeddings must be an integer/],
    ['rope_theta 0', { rope_theta: 0 }, /rope_theta must be a finite number > 1/],
    ['rope_theta negative', { rope_theta: -10000 }, /rope_theta must be a finite number > 1/],
    ['rope_theta Infinity (1e999 in JSON)', { rope_theta: JSON.parse('1e999') }, /rope_theta must be a finite number/],
    ['rope_theta as a string', { rope_theta: '10000' }, /rope_theta must be .*got "10000"/],
    ['rms_norm_eps negative', { rms_norm_eps: -1e-5 }, /rms_norm_eps must be a finite number in \[0, 1\]/],
    ['partial_rotary_factor 1.5', { partial_rotary_factor: 1.5 }, /partial_rotary_factor must be a finite number in \(0, 1\]/],
    ['partial_rotary_factor 0', { partial_rotary_factor: 0 }, /partial_rotary_factor/],
    ['sliding_window -64', { sliding_window: -64 }, /sliding_window must be an integer in 1\./],
    ['sliding_window 0.5', { sliding_window: 0.5 }, /sliding_window must be an integer/],
    ['a 2e12-parameter model', { hidden_size: 131072, intermediate_size: 1048576, num_hidden_layers: 1024, num_attention_heads: 1024, num_key_value_heads: 1024 }, /describes a model of .* parameters, more than fopeify handles/],
    ['rope_scaling as a string', { rope_scaling: 'yarn' }, /rope_scaling must be an object or null \(got "yarn"\)/],
    ['rope_scaling as a list', { rope_scaling: [{ rope_type: 'yarn', factor: 4 }] }, /rope_scaling must be an object or null \(got a list of 1\)/],
    ['rope_parameters as a number', { rope_parameters: 4 }, /rope_parameters must be an object or null/],
    ['rope_type not a string', { rope_scaling: { rope_type: 7, factor: 2 } }, /unsupported rope type 7/],
    ['yarn factor 0.5', { rope_scaling: { rope_type: 'yarn', factor: 0.5 } }, /rope_scaling: factor must be a finite number ≥ 1/],
    ['yarn factor a string', { rope_scaling: { rope_type: 'yarn', factor: '4' } }, /factor must be a finite number ≥ 1 \(got "4"\)/],
    ['yarn beta_fast negative', { rope_scaling: { rope_type: 'yarn', factor: 4, beta_fast: -32 } }, /beta_fast must be a finite number > 0/],
    ['yarn beta_slow Infinity', { rope_scaling: { rope_type: 'yarn', factor: 4, beta_slow: Infinity } }, /beta_slow must be a finite number/],
    ['yarn original length 0', { rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 0 } }, /original_max_position_embeddings must be an integer/],
    ['linear factor negative', { rope_scaling: { rope_type: 'linear', factor: -2 } }, /factor must be a finite number ≥ 1/],
    ['llama3 equal freq factors', { rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 1, original_max_position_embeddings: 64 } }, /high_freq_factor \(1\) must exceed low_freq_factor \(1\)/],
    ['longrope short list', { rope_scaling: { rope_type: 'longrope', short_factor: [1, 1], long_factor: [1, 1] } }, /short_factor must be a list of 8 positive numbers/],
    ['num_inv_freq beyond the rotary dim', { rope_scaling: { rope_type: 'default', num_inv_freq: 9, fope_init_factor: 0.1 } }, /num_inv_freq 9 exceeds the 8 rotary frequencies/],
    ['num_inv_freq -1', { num_inv_freq: -1 }, /num_inv_freq must be an integer/],
    ['fope_init_factor NaN-like', { fope_init_factor: 'big' }, /fope_init_factor must be a finite number ≥ 0/],
  ];
  for (const [name, patch, message] of cases) {
    it(`refuses ${name}`, () => {
      const err = refusal({ ...base(), ...patch });
      expect(err.code).toMatch(/BAD_CONFIG|UNSUPPORTED_ARCHITECTURE/);
      expect(err.message).toMatch(message);
    });
  }

  it('still accepts null for optional fields, as HF writes them', () => {
    const s = parseModelConfig({ ...base(), head_dim: null, sliding_window: null, rope_scaling: null, rope_parameters: null, num_key_value_heads: null });
    expect([s.headDim, s.slidingWindow, s.numKvHeads, s.rope.type]).toEqual([16, null, 4, 'default']);
  });
});
