import { describe, expect, it } from 'vitest';
import { parseModelConfig } from '../../src/config/model-spec.js';
import { FopeifyError } from '../../src/errors.js';
import { TINY_KINDS, tinyConfig } from '../../src/testing/tiny-checkpoint.js';

const shape = { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 260, maxPositionEmbeddings: 64, ropeTheta: 10000, tieWordEmbeddings: false };

describe('config parsing', () => {
  it('reads every fixture family', () => {
    for (const kind of TINY_KINDS) {
      const s = parseModelConfig(tinyConfig(kind, shape, 'F32'));
      expect(s.numKvHeads).toBe(2);
      if (kind === 'qwen2') expect([s.qkvBias, s.oBias, s.tieWordEmbeddings]).toEqual([true, false, true]);
      if (kind === 'qwen3') expect([s.qkNorm, s.headDim]).toEqual([true, 32]);
      if (kind === 'llama-yarn') expect(s.rope.type).toBe('yarn');
      if (kind === 'llama3') expect(s.rope.params.low_freq_factor).toBe(1);
      if (kind === 'llama-v5') expect(s.rope.theta).toBe(10000);
    }
  });
  it('v5 rope_parameters win over v4 rope_scaling and hold rope_theta', () => {
    const cfg = { ...tinyConfig('llama', shape, 'F32'), rope_theta: 1, rope_scaling: { rope_type: 'linear', factor: 2 }, rope_parameters: { rope_type: 'default', rope_theta: 5e5 } };
    const s = parseModelConfig(cfg);
    expect([s.rope.type, s.rope.theta]).toEqual(['default', 5e5]);
  });
  it('legacy "type" key and FoPE keys', () => {
    const cfg = { ...tinyConfig('llama', shape, 'F32'), rope_scaling: { type: 'linear', factor: 2, fope_init_factor: 0.5, fope_sep_head: true, num_inv_freq: 3 } };
    const s = parseModelConfig(cfg);
    expect(s.rope.type).toBe('linear');
    expect(s.rope.params).toEqual({ factor: 2 });
    expect(s.fope).toEqual({ initFactor: 0.5, sepHead: true, numInvFreq: 3, sinPad: 1 });
  });
  it('names what is missing or unsupported', () => {
    const err = (cfg: unknown) => {
      try {
        parseModelConfig(cfg);
      } catch (e) {
        expect(e).toBeInstanceOf(FopeifyError);
        return (e as FopeifyError).message;
      }
      throw new Error('no error');
    };
    expect(err({ architectures: ['GPTNeoXForCausalLM'], model_type: 'gpt_neox' })).toMatch(/unsupported architecture GPTNeoXForCausalLM.*query_key_value/);
    expect(err({ architectures: ['GemmaForCausalLM'], model_type: 'gemma' })).toMatch(/GeGLU/);
    expect(err({ architectures: ['LlamaForCausalLM'], hidden_size: 64 })).toMatch(/missing intermediate_size, num_hidden_layers/);
    expect(err({ ...tinyConfig('llama', shape, 'F32'), rope_scaling: { rope_type: 'yarn' } })).toMatch(/needs factor/);
    expect(err({ ...tinyConfig('llama', shape, 'F32'), rope_scaling: { rope_type: 'weird' } })).toMatch(/unsupported rope type/);
    expect(err([1, 2])).toMatch(/not a JSON object/);
  });
});
