/** The run plan is pure: options and what the file system said → the decisions of a run, or a refusal. */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseModelConfig } from '../../src/config/model-spec.js';
import type { CheckpointState } from '../../src/train/checkpoint.js';
import { loadRecipe, resolveTrainSettings } from '../../src/train/recipe.js';
import { NONE_RECIPE } from '../../src/train/run-common.js';
import { checkpointsAt, evaluatesAt, planRun, planSettings, stopsAt, type RunInputs } from '../../src/train/run-plan.js';

const config = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 256,
  max_position_embeddings: 32,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};
const spec = parseModelConfig(config, 'config.json');
const inputs = (over: Partial<RunInputs> = {}): RunInputs => ({ resume: null, recipe: NONE_RECIPE, modelDir: '/models/tiny', spec, ...over });

describe('planRun', () => {
  it('resolves settings, output rules and the data argument without touching anything', () => {
    const plan = planRun(
      { model: 'org/tiny', outDir: 'out', settings: { seqLen: 32, steps: 6, batch: 2, gradAccum: 3, evalEvery: 2, saveEvery: 4 }, force: true, dtype: 'bf16' },
      inputs(),
    );
    expect(plan.model).toMatchObject({ name: 'org/tiny', given: 'org/tiny', dir: '/models/tiny' });
    expect(plan.recipeName).toBeNull();
    expect(plan.settings).toEqual(resolveTrainSettings(NONE_RECIPE, { seqLen: 32, steps: 6, batch: 2, gradAccum: 3, evalEvery: 2, saveEvery: 4 }));
    expect(plan.tokensPerStep).toBe(2 * 3 * 32);
    expect(plan.output).toEqual({ dir: path.resolve('out'), given: 'out', dtype: 'bf16', removeFirst: true, keepCheckpoints: 2, keepCheckpointsAtEnd: false });
    expect(plan.data).toEqual({ arg: undefined, checkpointArg: 'synthetic:passkey', evalBatches: 4, passkeyTrials: 5 });
    expect(plan.conversion).toEqual({ yarn: undefined, notes: [] });
    expect(plan.resume).toBeNull();
  });

  it('the yarn recipe at twice the original length plans YaRN ×2; a FoPE-only recipe is refused for a RoPE model', async () => {
    const yarn = await loadRecipe('yarn');
    expect(planRun({ model: 'm', outDir: 'o', settings: { seqLen: 64 } }, inputs({ recipe: yarn })).conversion.yarn).toBe(2);
    const noGain = planRun({ model: 'm', outDir: 'o', settings: { seqLen: 32 } }, inputs({ recipe: yarn }));
    expect(noGain.conversion.yarn).toBeUndefined();
    expect(noGain.conversion.notes[0]).toMatch(/YaRN not added: seq-len 32 is not longer/);
    const fope = await loadRecipe('fope');
    expect(() => planRun({ model: 'm', outDir: 'o', settings: { seqLen: 32 } }, inputs({ recipe: fope }))).toThrow(/fine-tunes a FoPE model/);
  });

  it('refuses bad options before anything else', () => {
    // Messages name the library options (the CLI shows their flags: test/errors.test.ts, test/train/cli.test.ts).
    const refusal = (message: RegExp, option: string) => expect.objectContaining({ code: 'BAD_ARGUMENT', message: expect.stringMatching(message), options: [option] });
    expect(() => planRun({ model: 'm', outDir: 'o', stopAfter: 0 }, inputs())).toThrow(refusal(/^`stopAfter` must be a positive integer/, 'stopAfter'));
    expect(() => planRun({ model: 'm', outDir: 'o', dtype: 'f8' as never }, inputs())).toThrow(refusal(/^`dtype` must be f32, bf16 or f16/, 'dtype'));
    expect(() => planRun({ model: 'm', outDir: ' ' }, inputs())).toThrow(refusal(/^`outDir` is empty/, 'outDir'));
    expect(() => planRun({ model: 'm', outDir: 'o', settings: { lr: -1 } }, inputs())).toThrow(/lr must be positive/);
  });

  it('a resumed run keeps the checkpoint\'s recipe, model, data and settings; only some settings may change', () => {
    const settings = resolveTrainSettings(NONE_RECIPE, { seqLen: 32, steps: 6 });
    const state = { recipe: null, model: 'first/model', settings, dataArg: 'corpus.txt' } as unknown as CheckpointState;
    const resume = { dir: '/o/checkpoints/step-00000003', state };
    const plan = planRun({ model: 'other', outDir: 'o', recipe: 'yarn', resume: true, force: true, settings: { steps: 9 } }, inputs({ resume }));
    expect(plan).toMatchObject({ recipeName: null, model: { name: 'first/model', given: 'other' }, data: { arg: 'corpus.txt', checkpointArg: 'corpus.txt' }, resume });
    expect(plan.settings.steps).toBe(9);
    expect(plan.output.removeFirst).toBe(false);
    expect(plan.notes).toEqual(['note: --recipe yarn ignored: the checkpoint was trained with none']);
    expect(() => planSettings({ settings: { lr: 1 } }, NONE_RECIPE, state)).toThrow(
      expect.objectContaining({ message: expect.stringMatching(/^`resume`: lr is .* it cannot change/), options: ['resume'] }),
    );
  });

  it('plans evaluations, checkpoints and the early stop per step', () => {
    const plan = planRun({ model: 'm', outDir: 'o', stopAfter: 3, settings: { steps: 10, evalEvery: 4, saveEvery: 5 } }, inputs());
    expect([...Array(10).keys()].map((i) => i + 1).filter((s) => evaluatesAt(plan, s))).toEqual([4, 8, 10]);
    expect([...Array(10).keys()].map((i) => i + 1).filter((s) => checkpointsAt(plan, s, s))).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(stopsAt(plan, 3, 3)).toBe(true);
    expect(stopsAt(plan, 3, 2)).toBe(false);
    expect(stopsAt(plan, 10, 3)).toBe(false);
  });
});
