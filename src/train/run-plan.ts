/**
 * The run plan of a fine-tuning run: everything decided before training starts — the model and its
 * config, the recipe and the resolved settings (a resumed run's included), the conversion the recipe asks
 * for, the data argument, the output folder and what happens to it, the checkpoint to resume. `planRun`
 * is pure (options + what the file system said → plan, or a FopeifyError); `prepareRun` reads what it
 * needs (checkpoint state, recipe, config) in the order the refusals are reported and returns the plan.
 * Nothing is written and no backend is touched until the plan exists.
 */
import path from 'node:path';
import type { ModelSpec } from '../config/model-spec.js';
import { badOption, FopeifyError, optionName } from '../errors.js';
import type { ModelSourceOptions } from '../hub/source.js';
import { isEmptyOrMissing } from '../io/atomic.js';
import { requireOutputPath } from '../io/output-folder.js';
import { checkActivationBudget, checkRecompute, type RecomputePolicy } from './activations.js';
import { latestCheckpoint, readCheckpointState, type CheckpointState } from './checkpoint.js';
import type { OutputDtype } from './output.js';
import { checkRecipe } from './prepare.js';
import { resolveTrainSettings, type Recipe, type TrainOverrides, type TrainSettings } from './recipe.js';
import { checkRunModel, checkRunOutput, recipeFor, resumedSettings, SYNTHETIC_PASSKEY, type DataArg } from './run-common.js';

/** The options a plan is made from (FinetuneOptions holds them, with the run's callbacks). */
export interface RunOptions extends ModelSourceOptions {
  /** Model folder or Hub id. */
  model: string;
  /** Output folder: the model folder at the end, checkpoints and metrics.jsonl meanwhile. */
  outDir: string;
  /** Recipe name (recipes/) or file; omitted, null or "none": no conversion, library defaults. */
  recipe?: string | null;
  /** Training text: a .txt/.md/.jsonl file or folder, "synthetic:passkey", or texts in memory. */
  data?: string | { texts: string[]; name?: string };
  /** Settings over the recipe's (undefined values are ignored). */
  settings?: TrainOverrides;
  /** End cleanly after this many steps of this run, leaving a resumable checkpoint. */
  stopAfter?: number;
  /** Continue from the newest checkpoint in outDir. */
  resume?: boolean;
  /** Start over in a non-empty outDir (its content is removed). */
  force?: boolean;
  /** Weights dtype of the saved model (default f32; FoPE coefficients are always f32). */
  dtype?: OutputDtype;
  /** Checkpoints kept while training (default 2) and after completion (default 0: removed). */
  keepCheckpoints?: number;
  keepCheckpointsAtEnd?: boolean;
  /** Held-out chunks per evaluation (default 4). */
  evalBatches?: number;
  /** Passkey prompts per evaluation (default 5). */
  passkeyTrials?: number;
  /** Attention blocks and LM-head chunk rows (memory / speed trade-offs). */
  queryBlock?: number;
  keyBlock?: number;
  lossChunk?: number;
  /**
   * Which decoder layers recompute their activations in the backward pass: 'auto' (default) keeps as many
   * as fit `activationBudgetBytes`, 'always' recomputes all (least memory), 'never' keeps all (fastest).
   */
  recompute?: RecomputePolicy;
  /** What 'auto' may spend on kept activations, in bytes (default: a quarter of the memory, at most 8 GiB). */
  activationBudgetBytes?: number;
}

/** What the file system said, read by prepareRun (tests make these up). */
export interface RunInputs {
  /** The checkpoint to continue (with `resume`). */
  resume: { dir: string; state: CheckpointState } | null;
  recipe: Recipe;
  /** The model folder (resolved) and its config. */
  modelDir: string;
  spec: ModelSpec;
}

export interface RunPlan {
  /** The model argument the run records (a resumed run keeps its first one), and the folder read. */
  model: { name: string; given: string; dir: string; spec: ModelSpec };
  /** Recipe name or file as given (null: none), and the recipe. */
  recipeName: string | null;
  recipe: Recipe;
  settings: TrainSettings;
  /** What checkRecipe decided: the YaRN factor to add (if any), and why steps were skipped. */
  conversion: { yarn: number | undefined; notes: string[] };
  data: {
    arg: DataArg;
    /** The data argument a checkpoint records (null for in-memory texts). */
    checkpointArg: string | null;
    evalBatches: number;
    passkeyTrials: number;
  };
  output: {
    dir: string;
    /** The folder as given (messages). */
    given: string;
    dtype: OutputDtype;
    /** --force on a fresh run: remove the folder's content first. */
    removeFirst: boolean;
    keepCheckpoints: number;
    keepCheckpointsAtEnd: boolean;
  };
  resume: { dir: string; state: CheckpointState } | null;
  stopAfter: number | undefined;
  /** Tokens of one optimizer step. */
  tokensPerStep: number;
  blocks: { queryBlock?: number; keyBlock?: number; lossChunk?: number };
  /** The activation policy and budget (checked; the trainer decides per layer). */
  activations: { recompute: RecomputePolicy; activationBudgetBytes: number | undefined };
  /** Lines to log before training (options the plan overrode). */
  notes: string[];
}

/** Refusals that need nothing but the options; returns the absolute output folder. */
export function checkRunOptions(options: Pick<RunOptions, 'stopAfter' | 'dtype' | 'outDir' | 'recompute' | 'activationBudgetBytes'>): string {
  if (options.stopAfter !== undefined && !(Number.isInteger(options.stopAfter) && options.stopAfter > 0)) {
    throw badOption('stopAfter', `\`stopAfter\` must be a positive integer (got ${options.stopAfter})`);
  }
  const dtype = options.dtype ?? 'f32';
  if (!['f32', 'bf16', 'f16'].includes(dtype)) throw badOption('dtype', `\`dtype\` must be f32, bf16 or f16 (got ${String(dtype)})`);
  checkRecompute(options.recompute);
  checkActivationBudget(options.activationBudgetBytes);
  return path.resolve(requireOutputPath(options.outDir, 'outDir'));
}

/** The recipe a run uses: the checkpoint's when resuming, else the option's (null: none). */
export function runRecipeName(options: Pick<RunOptions, 'recipe'>, resume: CheckpointState | null): string | null {
  if (resume) return resume.recipe;
  return options.recipe === undefined || options.recipe === null ? null : options.recipe;
}

/** The recipe name, settings and notes of a run (pure; a resumed run changes only what it may). */
export function planSettings(options: Pick<RunOptions, 'recipe' | 'settings'>, recipe: Recipe, resume: CheckpointState | null): { recipeName: string | null; settings: TrainSettings; notes: string[] } {
  const recipeName = runRecipeName(options, resume);
  const notes: string[] = [];
  if (!resume) return { recipeName, settings: resolveTrainSettings(recipe, options.settings ?? {}), notes };
  if (options.recipe && options.recipe !== recipeName) notes.push(`note: --recipe ${options.recipe} ignored: the checkpoint was trained with ${recipeName ?? 'none'}`);
  return { recipeName, settings: resumedSettings(resume.settings, options.settings), notes };
}

/**
 * Pure: the plan of a run from its options and what the file system said. `decided` is planSettings's
 * answer when the caller already has it (prepareRun refuses bad settings before it resolves the model).
 */
export function planRun(options: RunOptions, inputs: RunInputs, decided = planSettings(options, inputs.recipe, inputs.resume?.state ?? null)): RunPlan {
  const outDir = checkRunOptions(options);
  const state = inputs.resume?.state ?? null;
  const { recipeName, settings, notes } = decided;
  const conversionNotes: string[] = [];
  const yarn = checkRecipe(inputs.spec, inputs.recipe, settings.seqLen, conversionNotes);
  const dataArg = options.data ?? state?.dataArg ?? undefined;
  return {
    model: { name: state?.model ?? options.model, given: options.model, dir: inputs.modelDir, spec: inputs.spec },
    recipeName,
    recipe: inputs.recipe,
    settings,
    conversion: { yarn, notes: conversionNotes },
    data: {
      arg: dataArg,
      checkpointArg: typeof dataArg === 'string' ? dataArg : dataArg === undefined ? SYNTHETIC_PASSKEY : null,
      evalBatches: Math.max(1, options.evalBatches ?? 4),
      passkeyTrials: options.passkeyTrials ?? 5,
    },
    output: {
      dir: outDir,
      given: options.outDir,
      dtype: options.dtype ?? 'f32',
      removeFirst: !state && options.force === true,
      keepCheckpoints: options.keepCheckpoints ?? 2,
      keepCheckpointsAtEnd: options.keepCheckpointsAtEnd ?? false,
    },
    resume: inputs.resume,
    stopAfter: options.stopAfter,
    tokensPerStep: settings.batch * settings.gradAccum * settings.seqLen,
    blocks: { queryBlock: options.queryBlock, keyBlock: options.keyBlock, lossChunk: options.lossChunk },
    activations: { recompute: checkRecompute(options.recompute), activationBudgetBytes: checkActivationBudget(options.activationBudgetBytes) },
    notes,
  };
}

/** Does this step (1-based, just done) evaluate? */
export function evaluatesAt(plan: Pick<RunPlan, 'settings'>, step: number): boolean {
  const s = plan.settings;
  return s.evalEvery > 0 && (step % s.evalEvery === 0 || step === s.steps);
}

/** Does this step (1-based, just done) end the run early (--stop-after)? */
export function stopsAt(plan: Pick<RunPlan, 'settings' | 'stopAfter'>, step: number, stepsThisRun: number): boolean {
  return plan.stopAfter !== undefined && stepsThisRun >= plan.stopAfter && step < plan.settings.steps;
}

/** Does this step (1-based, just done) write a checkpoint? */
export function checkpointsAt(plan: Pick<RunPlan, 'settings' | 'stopAfter'>, step: number, stepsThisRun: number): boolean {
  const s = plan.settings;
  return stopsAt(plan, step, stepsThisRun) || (s.saveEvery > 0 && step % s.saveEvery === 0 && step < s.steps);
}

/**
 * Read what a run needs to be planned — the checkpoint to resume, the recipe, the model's config — with
 * every refusal before any work: options, missing checkpoint, non-empty output, recipe, model, recipe
 * against config, output against the model.
 */
export async function prepareRun(options: RunOptions): Promise<RunPlan> {
  const outDir = checkRunOptions(options);
  let resume: RunInputs['resume'] = null;
  if (options.resume) {
    const dir = await latestCheckpoint(outDir);
    if (!dir) throw badOption('resume', `\`resume\`: no checkpoint in ${path.join(outDir, 'checkpoints')}`);
    resume = { dir, state: await readCheckpointState(dir) };
  } else if (!(await isEmptyOrMissing(outDir)) && !options.force) {
    throw new FopeifyError('OUTPUT_EXISTS', `output folder ${options.outDir} is not empty (${optionName('resume')} continues its newest checkpoint, ${optionName('force')} starts over)`, {
      option: ['resume', 'force'],
    });
  }
  const recipe = await recipeFor(runRecipeName(options, resume?.state ?? null));
  const decided = planSettings(options, recipe, resume?.state ?? null);
  const { resolved, spec } = await checkRunModel(options.model, options);
  const plan = planRun(options, { resume, recipe, modelDir: resolved.dir, spec }, decided);
  await checkRunOutput(options.outDir, resolved.dir);
  return plan;
}
