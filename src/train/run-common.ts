/**
 * The parts of a fine-tuning run both engines share (tfjs: finetune.ts, PyTorch: torch-finetune.ts): the
 * recipe and the resolved settings (including what a resumed run may change), the tokenized and packed
 * data, and the finished model folder (card, finetune.json, weights, remote code).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { loadModelSpec } from '../config/load.js';
import { resolveModel } from '../hub/resolve.js';
import type { ModelSourceOptions, ResolvedModel } from '../hub/source.js';
import { checkOutputFolder, prepareOutputFolder } from '../io/output-folder.js';
import type { ModelSpec } from '../config/model-spec.js';
import { badOption, FopeifyError, outputError } from '../errors.js';
import type { TextTokenizer } from '../model/index.js';
import { PackedDataset, packChunks, readDocuments, splitHeldOut } from './data.js';
import type { ActivationPlan } from './activations.js';
import type { TrainingModel } from './model.js';
import type { MetricsRecord } from '../io/formats.js';
import { finetuneModelCard } from './model-card.js';
import { readMetrics, writeModelFolder, type OutputDtype } from './output.js';
import { passkeyChunks } from './passkey.js';
import { checkRecipe, type ConversionInfo } from './prepare.js';
import { loadRecipe, resolveTrainSettings, type Recipe, type TrainOverrides, type TrainSettings } from './recipe.js';

export const SYNTHETIC_PASSKEY = 'synthetic:passkey';
/** Documents of --data synthetic:passkey. */
export const SYNTHETIC_DOCUMENTS = 256;

/** Settings a resumed run may change; anything else must match the checkpoint. */
export const RESUMABLE_CHANGES: readonly (keyof TrainSettings)[] = ['steps', 'evalEvery', 'saveEvery', 'evalPasskey'];

export const NONE_RECIPE: Recipe = {
  name: 'none',
  description: 'no conversion: train the model as it is',
  file: '',
  convert: null,
  requiresFope: false,
  train: {},
};

export async function recipeFor(name: string | null | undefined): Promise<Recipe> {
  if (name === undefined || name === null) return NONE_RECIPE;
  return loadRecipe(name);
}

export function eosOf(tok: TextTokenizer, config: Record<string, unknown>): number {
  if (tok.eosTokenId !== null) return tok.eosTokenId;
  const e = config.eos_token_id;
  const id = Array.isArray(e) ? e[0] : e;
  if (typeof id === 'number') return id;
  throw new FopeifyError('BAD_CONFIG', 'the model names no end-of-sequence token (tokenizer_config.json eos_token or config.json eos_token_id)');
}

export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** A resumed run's settings: the saved ones, with only the RESUMABLE_CHANGES overrides applied. */
export function resumedSettings(saved: TrainSettings, overrides: TrainOverrides | undefined): TrainSettings {
  let settings: TrainSettings = { ...saved };
  for (const [k, v] of Object.entries(overrides ?? {})) {
    if (v === undefined) continue;
    const key = k as keyof TrainSettings;
    const merged = key === 'lora' ? { ...settings.lora, ...(v as object) } : v;
    if (sameJson(settings[key], merged)) continue;
    if (!RESUMABLE_CHANGES.includes(key)) {
      throw badOption('resume', `\`resume\`: ${k} is ${JSON.stringify(settings[key])} in the checkpoint; it cannot change when resuming (only ${RESUMABLE_CHANGES.join(', ')} can)`);
    }
    settings = { ...settings, [key]: merged };
  }
  return resolveTrainSettings(NONE_RECIPE, settings);
}

export type DataArg = string | { texts: string[]; name?: string } | undefined;

/** Train data and held-out chunks. */
export async function buildData(
  data: DataArg,
  tok: TextTokenizer,
  eos: number,
  s: TrainSettings,
  evalBatches: number,
  log: (l: string) => void,
): Promise<{ train: PackedDataset; heldOut: Int32Array[]; description: string }> {
  if (data === undefined || data === SYNTHETIC_PASSKEY) {
    // A fixed number of documents (not a function of --steps, so a resumed run may extend training).
    const n = SYNTHETIC_DOCUMENTS;
    const train = passkeyChunks(tok, eos, s.seqLen, n, s.seed);
    const heldOut = passkeyChunks(tok, eos, s.seqLen, evalBatches, s.seed, 1_000_000);
    log(`data: ${n} synthetic passkey documents of ${s.seqLen} tokens`);
    return { train: new PackedDataset(train, s.seed), heldOut, description: `${SYNTHETIC_PASSKEY} (${n} documents of ${s.seqLen} tokens)` };
  }
  const { docs, description } =
    typeof data === 'string'
      ? await readDocuments(data).then((r) => ({ docs: r.docs, description: `${data} (${r.files.length} file${r.files.length === 1 ? '' : 's'}, ${r.docs.length} documents)` }))
      : { docs: data.texts, description: `${data.name ?? 'in-memory texts'} (${data.texts.length} documents)` };
  const tokens = docs.map((d) => tok.encode(d, { addSpecialTokens: false }));
  const all = packChunks(tokens, eos, s.seqLen + 1);
  // Always held out (whether or not this run evaluates), so the training chunks never depend on --eval-every.
  const split = splitHeldOut(all);
  const count = tokens.reduce((a, t) => a + t.length + 1, 0);
  log(`data: ${description}: ${count} tokens → ${split.train.length} training chunks of ${s.seqLen + 1} tokens, ${split.heldOut.length} held out`);
  return { train: new PackedDataset(split.train, s.seed), heldOut: split.heldOut.slice(0, Math.max(1, evalBatches)), description: `${description}, ${count} tokens` };
}

/** What finetune.json says before the run's results (both engines). */
export interface SummaryBase {
  fopeify_finetune: 1;
  model: string;
  recipe: string | null;
  settings: TrainSettings;
  conversion: ConversionInfo;
  data: string;
  backend: string;
  /** tfjs engine: which decoder layers keep their activations and which are recomputed (--recompute). */
  activations?: ActivationPlan;
}

/** Write the completed model folder (card, finetune.json, loss curve, weights) from the run's metrics. */
export async function completeModelFolder(c: {
  outDir: string;
  sourceDir: string;
  recipe: Recipe;
  summaryBase: SummaryBase;
  model: TrainingModel;
  config: Record<string, unknown>;
  dtype: OutputDtype;
  stepsDone: number;
  tokens: number;
  parameters: number;
  seconds: number;
  finalLoss: number | null;
  extra?: Record<string, unknown>;
}): Promise<{ files: string[]; finalLoss: number | null; lastEval: MetricsRecord | null }> {
  const { summaryBase: base, model: tm } = c;
  const metrics = await readMetrics(c.outDir);
  const finalLoss = metrics.length ? metrics[metrics.length - 1]!.loss : c.finalLoss;
  const lastEval = [...metrics].reverse().find((r) => r.eval_loss !== undefined) ?? null;
  const adapter = base.settings.trainable === 'lora' && base.settings.lora.save === 'adapter';
  const card = finetuneModelCard({
    baseModel: base.model,
    recipe: base.recipe,
    recipeDescription: c.recipe.description,
    settings: base.settings,
    conversion: base.conversion,
    data: base.data,
    stepsDone: c.stepsDone,
    tokens: c.tokens,
    finalLoss,
    lastEval,
    trainable: tm.trainableCount,
    parameters: c.parameters,
    adapter,
    backend: base.backend,
  });
  const summary = {
    ...base,
    ...c.extra,
    status: 'completed',
    steps_done: c.stepsDone,
    tokens: c.tokens,
    final_loss: finalLoss,
    last_eval: lastEval,
    trainable_parameters: tm.trainableCount,
    parameters: c.parameters,
    seconds: c.seconds,
  };
  const files = await writeModelFolder({
    outDir: c.outDir,
    sourceDir: c.sourceDir,
    model: tm,
    config: c.config,
    dtype: c.dtype,
    loraSave: base.settings.lora.save,
    baseModel: base.model,
    card,
    summary,
    metrics,
  });
  return { files, finalLoss, lastEval };
}

/** `path` relative to the working folder when inside it (for messages). */
export function shownPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return !rel ? '.' : rel.startsWith('..') ? p : rel;
}

/** The model of a run: resolved to a folder, its config read once and checked against the recipe. */
export async function checkRunModel(model: string, source: ModelSourceOptions): Promise<{ resolved: ResolvedModel; spec: ModelSpec }> {
  const resolved = await resolveModel(model, source);
  return { resolved, spec: await loadModelSpec(resolved.dir) };
}

/** The output of a run against the model: it may not be, hold, or lie inside it (--force would delete it). */
export async function checkRunOutput(given: string, modelDir: string): Promise<void> {
  await checkOutputFolder(given, { sources: [modelDir], option: 'outDir' });
}

/**
 * Create a run's output folder (checked by checkRunOutput): with `removeFirst` (--force and nothing to
 * resume) the old content is removed first; then it is cleared of temporaries of killed runs.
 */
export async function createRunOutput(given: string, outDir: string, modelDir: string, removeFirst: boolean): Promise<void> {
  if (removeFirst) {
    try {
      await fs.rm(outDir, { recursive: true, force: true });
    } catch (err) {
      throw outputError(err, given);
    }
  }
  await prepareOutputFolder(outDir, { sources: [modelDir], option: 'outDir' });
}

/** What prepareRunFolders checked: the model folder, its config, and checkRecipe's YaRN factor and notes. */
export interface CheckedRunModel {
  resolved: ResolvedModel;
  spec: ModelSpec;
  yarn: number | undefined;
  notes: string[];
}

/**
 * The model and the output folder of a torch-engine run, checked before any work starts (the tfjs engine
 * does the same through its run plan): the recipe against the model's config, and the output against the
 * model; then the output folder is created (emptied first with --force and nothing to resume).
 */
export async function prepareRunFolders(
  options: ModelSourceOptions & { model: string; outDir: string; force?: boolean },
  outDir: string,
  recipe: Recipe,
  seqLen: number,
  resuming: boolean,
): Promise<CheckedRunModel> {
  const { resolved, spec } = await checkRunModel(options.model, options);
  const notes: string[] = [];
  const yarn = checkRecipe(spec, recipe, seqLen, notes);
  await checkRunOutput(options.outDir, resolved.dir);
  await createRunOutput(options.outDir, outDir, resolved.dir, !resuming && options.force === true);
  return { resolved, spec, yarn, notes };
}
