import { afterEach, describe, expect, it, vi } from 'vitest';
import { optionFlag, reportError } from '../src/cli/main.js';
import { convertModel } from '../src/convert/convert.js';
import { FopeifyError, messageNamingOptions } from '../src/errors.js';
import { needleSettings } from '../src/eval/needle.js';
import { requireOutputPath } from '../src/io/output-folder.js';
import { checkWeightValues } from '../src/model/finite.js';
import { checkPlan, parseVariants, studyPlan } from '../src/study/plan.js';
import { checkEngine } from '../src/train/finetune.js';
import { NONE_RECIPE, resumedSettings } from '../src/train/run-common.js';
import { checkRunOptions } from '../src/train/run-plan.js';
import { resolveTrainSettings } from '../src/train/recipe.js';
import { checkTopology } from '../src/train/torch-job.js';

/** What the CLI prints for an error (stderr), and its exit code. */
function printed(err: unknown): { text: string; code: number } {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    const code = reportError(err);
    return { text: lines.join(''), code };
  } finally {
    spy.mockRestore();
  }
}

function thrown(f: () => unknown): FopeifyError {
  try {
    f();
  } catch (err) {
    if (err instanceof FopeifyError) return err;
    throw err;
  }
  throw new Error('did not throw');
}

afterEach(() => vi.restoreAllMocks());

describe('library errors name options, the CLI shows flags', () => {
  it('maps option names to flags', () => {
    expect(optionFlag('targetLength')).toBe('--target-length');
    expect(optionFlag('nprocPerNode')).toBe('--nproc-per-node');
    expect(optionFlag('seed')).toBe('--seed');
    expect(optionFlag('outDir')).toBe('--out');
    // Nested options (the study's plan, the trainer's settings) have the flag of their last part.
    expect(optionFlag('plan.initFactor')).toBe('--init-factor');
    expect(optionFlag('settings.lr')).toBe('--lr');
  });

  it('a convert option: the library names `layout`, the CLI prints --layout as before', async () => {
    const err = await convertModel({ model: 'unused', outDir: 'x', layout: 'diagonal' as 'shared' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FopeifyError);
    const e = err as FopeifyError;
    expect(e.message).toBe('`layout` must be shared or per-layer (got diagonal)');
    expect(e.options).toEqual(['layout']);
    expect(printed(e)).toEqual({ text: 'fopeify: error: --layout must be shared or per-layer (got diagonal)\n', code: 2 });
  });

  it('a message about two options shows both flags', () => {
    const e = thrown(() => needleSettings({ models: ['m'], out: 'o', haystack: 'x.txt' }));
    expect(e.message).toBe('`haystack` applies to `task` niah only (the passkey filler is fixed by its template)');
    expect(messageNamingOptions(e, optionFlag)).toBe('--haystack applies to --task niah only (the passkey filler is fixed by its template)');
  });

  it('camel-case options become kebab-case flags; the output folder option is --out', () => {
    const e = thrown(() => checkTopology({ nprocPerNode: 0, nnodes: 1, nodeRank: 0, masterPort: 29500 }));
    expect(e.message).toBe('`nprocPerNode` must be a positive integer (got 0)');
    expect(printed(e).text).toBe('fopeify: error: --nproc-per-node must be a positive integer (got 0)\n');
    const out = thrown(() => requireOutputPath('', 'outDir'));
    expect(out.message).toMatch(/^`outDir` is empty/);
    expect(printed(out).text).toMatch(/^fopeify: error: --out is empty: name an output folder/);
  });

  it('fine-tuning, study and load refusals: the library names options, the CLI prints the flags it always printed', () => {
    const plan = studyPlan(32, true);
    const cases: [() => unknown, string, string[], string][] = [
      [() => checkRunOptions({ outDir: 'o', stopAfter: 0 }), '`stopAfter` must be a positive integer (got 0)', ['stopAfter'], '--stop-after must be a positive integer (got 0)'],
      [() => checkRunOptions({ outDir: 'o', dtype: 'f8' as never }), '`dtype` must be f32, bf16 or f16 (got f8)', ['dtype'], '--dtype must be f32, bf16 or f16 (got f8)'],
      [() => checkEngine('jax' as never), '`engine` must be tfjs or torch (got jax)', ['engine'], '--engine must be tfjs or torch (got jax)'],
      [
        () => resumedSettings(resolveTrainSettings(NONE_RECIPE, { seqLen: 32 }), { seqLen: 64 }),
        '`resume`: seqLen is 32 in the checkpoint; it cannot change when resuming (only steps, evalEvery, saveEvery, evalPasskey can)',
        ['resume'],
        '--resume: seqLen is 32 in the checkpoint; it cannot change when resuming (only steps, evalEvery, saveEvery, evalPasskey can)',
      ],
      [() => studyPlan(32, true, 16), '`targetLength` must be an integer longer than the training length 32 (got 16)', ['targetLength'], '--target-length must be an integer longer than the training length 32 (got 16)'],
      [() => parseVariants(' , '), '`variants` is empty (choose from rope, yarn, fope-yarn, clip-yarn, fourier-yarn, fope or all)', ['variants'], '--variants is empty (choose from rope, yarn, fope-yarn, clip-yarn, fourier-yarn, fope or all)'],
      [() => checkPlan({ ...plan, lengths: [8] }), '`plan.lengths` must be integers ≥ 16 (got 8)', ['plan.lengths'], '--lengths must be integers ≥ 16 (got 8)'],
      [() => checkPlan({ ...plan, batch: 0 }), '`plan.batch` must be integers ≥ 1 (got 0)', ['plan.batch'], '--batch must be integers ≥ 1 (got 0)'],
      [() => checkPlan({ ...plan, depths: [2] }), '`plan.depths` must be numbers in [0, 1]', ['plan.depths'], '--depths must be numbers in [0, 1]'],
      [() => checkPlan({ ...plan, threshold: 0 }), '`plan.threshold` must be in (0, 1] (got 0)', ['plan.threshold'], '--threshold must be in (0, 1] (got 0)'],
      [() => checkPlan({ ...plan, initFactor: 0 }), '`plan.initFactor` must be a number > 0 (got 0); 0 is the clip-only variant', ['plan.initFactor'], '--init-factor must be a number > 0 (got 0); 0 is the clip-only variant'],
      [
        () => checkWeightValues('lm_head.weight', [0, NaN], [2]),
        'tensor lm_head.weight holds NaN at element [1]; the model would compute NaN or Inf (`allowNonFinite` loads it anyway)',
        ['allowNonFinite'],
        'tensor lm_head.weight holds NaN at element [1]; the model would compute NaN or Inf (--allow-non-finite loads it anyway)',
      ],
    ];
    for (const [f, message, options, cli] of cases) {
      const e = thrown(f);
      expect(e.message).toBe(message);
      expect(e.options).toEqual(options);
      expect(printed(e).text).toBe(`fopeify: error: ${cli}\n`);
    }
  });

  it('a message that names no option is printed as it is', () => {
    const e = new FopeifyError('BAD_CONFIG', 'config.json: `vocab_size` is missing');
    expect(e.options).toEqual([]);
    expect(printed(e).text).toBe('fopeify: error: config.json: `vocab_size` is missing\n');
  });
});
