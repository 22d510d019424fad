/**
 * What a study compares and with what budget: the six variants of the FoPE paper's comparison and
 * ablation, each one built from the same RoPE model by `convertModel` options (or a fine-tuning recipe)
 * and fine-tuned with the same data and budget; and the plan (lengths, depths, trials, windows).
 */
import type { ConvertOptions } from '../convert/convert.js';
import { badOption, FopeifyError, optionName } from '../errors.js';
import type { FineTuneBudget } from '../demo/stages.js';

export const VARIANT_IDS = ['rope', 'yarn', 'fope-yarn', 'clip-yarn', 'fourier-yarn', 'fope'] as const;
export type VariantId = (typeof VARIANT_IDS)[number];

/** The default Fourier gain of the FoPE variants (the demo's and SGLang's default; the paper used 0.3–0.6). */
export const STUDY_INIT_FACTOR = 0.1;

export interface VariantContext {
  /** YaRN factor: fine-tuning length / training length. */
  yarnFactor: number;
  /** head_dim / 2: the number of RoPE frequencies (keeping all of them = no clipping). */
  headDimHalf: number;
  /** Gain of the Fourier coefficients (`--init-factor`) of the variants that have a Fourier series. */
  initFactor: number;
  seed: number;
}

/** The convertModel settings a variant is built with (what its fopeify.json records). */
export type VariantConversion = Pick<ConvertOptions, 'initFactor' | 'numInvFreq' | 'yarn' | 'seed'>;

export interface Variant {
  id: VariantId;
  /** Name in tables and plots. */
  label: string;
  description: string;
  /** convertModel settings, or null: fine-tune the RoPE model itself. */
  conversion: ((ctx: VariantContext) => VariantConversion) | null;
  /** Fine-tuning recipe (null: none — train the model as it is, no scaling added). */
  recipe: string | null;
}

export const VARIANTS: Record<VariantId, Variant> = {
  rope: {
    id: 'rope',
    label: 'RoPE',
    description: 'RoPE fine-tuned at the target length, no scaling',
    conversion: null,
    recipe: null,
  },
  yarn: {
    id: 'yarn',
    label: 'YaRN',
    description: 'RoPE + YaRN (factor target / training length), fine-tuned (recipe yarn)',
    conversion: null,
    recipe: 'yarn',
  },
  'fope-yarn': {
    id: 'fope-yarn',
    label: 'FoPE+YaRN',
    description: 'FoPE (clipping + Fourier series, gain = the init factor) + YaRN, fine-tuned',
    conversion: (c) => ({ initFactor: c.initFactor, yarn: c.yarnFactor, seed: c.seed }),
    recipe: 'fope',
  },
  'clip-yarn': {
    id: 'clip-yarn',
    label: 'clip-only+YaRN',
    description: 'clipping of the floor frequencies only (--init-factor 0: identity coefficients) + YaRN, fine-tuned',
    conversion: (c) => ({ initFactor: 0, yarn: c.yarnFactor, seed: c.seed }),
    recipe: 'fope',
  },
  'fourier-yarn': {
    id: 'fourier-yarn',
    label: 'Fourier-only+YaRN',
    description: 'Fourier series only (--num-inv-freq head_dim/2: nothing clipped; gain = the init factor) + YaRN, fine-tuned',
    conversion: (c) => ({ initFactor: c.initFactor, numInvFreq: c.headDimHalf, yarn: c.yarnFactor, seed: c.seed }),
    recipe: 'fope',
  },
  fope: {
    id: 'fope',
    label: 'FoPE',
    description: 'FoPE (clipping + Fourier series, gain = the init factor) without YaRN, fine-tuned',
    conversion: (c) => ({ initFactor: c.initFactor, seed: c.seed }),
    recipe: 'fope',
  },
};

/** Parse `--variants` (comma-separated ids, or "all"), in the canonical order. */
export function parseVariants(spec: string | readonly string[] | undefined): VariantId[] {
  if (spec === undefined) return [...VARIANT_IDS];
  const parts = (typeof spec === 'string' ? spec.split(',') : spec.flatMap((s) => s.split(','))).map((s) => s.trim()).filter(Boolean);
  if (parts.length === 1 && parts[0] === 'all') return [...VARIANT_IDS];
  if (!parts.length) throw badOption('variants', `\`variants\` is empty (choose from ${VARIANT_IDS.join(', ')} or all)`);
  for (const p of parts) {
    if (!(VARIANT_IDS as readonly string[]).includes(p)) throw new FopeifyError('BAD_ARGUMENT', `unknown variant ${JSON.stringify(p)} (choose from ${VARIANT_IDS.join(', ')} or all)`);
  }
  return VARIANT_IDS.filter((v) => parts.includes(v));
}

export interface StudyPlan extends FineTuneBudget {
  /** The length the RoPE model was trained at (the short-context row). */
  trainLength: number;
  /** Passkey lengths (tokens); the training length is always one of them. */
  lengths: number[];
  depths: number[];
  trials: number;
  /** Perplexity windows (tokens); the training length is always one of them. */
  windows: number[];
  maxWindows: number;
  /** Accuracy a length must keep to count toward the effective length (the YaRN paper's 80 %). */
  threshold: number;
  /** Gain of the Fourier coefficients of the FoPE variants (clip-only always has 0). */
  initFactor: number;
  /** Seed of the fine-tuning documents (the same for every variant and seed; the seed changes their order). */
  dataSeed: number;
  /** Seed of the passkey prompts (the same for every cell, so cells are compared on the same prompts). */
  evalSeed: number;
}

export interface StudyDefaults {
  seeds: number;
}

/** The full plan, or the quick one (≤ 15 minutes on 2 cores with the shipped tiny model). */
export function studyPlan(trainLength: number, quick: boolean, targetLength?: number): StudyPlan & StudyDefaults {
  const fineTuneLength = targetLength ?? 2 * trainLength;
  if (!(Number.isInteger(fineTuneLength) && fineTuneLength > trainLength)) {
    throw badOption('targetLength', `\`targetLength\` must be an integer longer than the training length ${trainLength} (got ${fineTuneLength})`);
  }
  const multiples = quick ? [1, 2, 4] : [1, 2, 4, 8];
  return {
    trainLength,
    fineTuneLength,
    steps: quick ? 30 : 300,
    batch: quick ? 4 : 8,
    lr: 5e-4,
    lengths: multiples.map((m) => m * trainLength),
    depths: quick ? [0, 0.5, 1] : [0, 0.25, 0.5, 0.75, 1],
    trials: quick ? 2 : 8,
    windows: multiples.map((m) => m * trainLength),
    maxWindows: quick ? 2 : 16,
    threshold: 0.8,
    initFactor: STUDY_INIT_FACTOR,
    dataSeed: 1,
    evalSeed: 0,
    seeds: quick ? 2 : 3,
  };
}

/** Check a (possibly overridden) plan; the training length is added to lengths and windows when missing. */
export function checkPlan(plan: StudyPlan): StudyPlan {
  const ints = (name: string, xs: number[], min: number) => {
    if (!xs.length || xs.some((x) => !(Number.isInteger(x) && x >= min))) throw badOption(name, `${optionName(name)} must be integers ≥ ${min} (got ${xs.join(', ')})`);
  };
  ints('plan.lengths', plan.lengths, 16);
  ints('plan.windows', plan.windows, 2);
  ints('plan.steps', [plan.steps], 1);
  ints('plan.batch', [plan.batch], 1);
  ints('plan.trials', [plan.trials], 1);
  if (!plan.depths.length || plan.depths.some((d) => !(d >= 0 && d <= 1))) throw badOption('plan.depths', '`plan.depths` must be numbers in [0, 1]');
  if (!(plan.threshold > 0 && plan.threshold <= 1)) throw badOption('plan.threshold', `\`plan.threshold\` must be in (0, 1] (got ${plan.threshold})`);
  if (!(plan.initFactor > 0 && Number.isFinite(plan.initFactor))) {
    throw badOption('plan.initFactor', `\`plan.initFactor\` must be a number > 0 (got ${plan.initFactor}); 0 is the clip-only variant`);
  }
  const withTrain = (xs: number[]) => [...new Set([...xs, plan.trainLength])].sort((a, b) => a - b);
  return { ...plan, lengths: withTrain(plan.lengths), windows: withTrain(plan.windows), depths: [...plan.depths] };
}
