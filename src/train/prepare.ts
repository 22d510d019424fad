/**
 * The model a recipe trains: the source checkpoint, with the recipe's conversion applied in memory
 * (no intermediate folder):
 *  - `yarn: auto` adds YaRN with factor seq-len / original length, unless the model already has YaRN
 *    (or seq-len is not longer than the original length);
 *  - `fope: true` converts to FoPE exactly as `fopeify convert` does (same plan, same seeded
 *    coefficients), with `--yarn` when the recipe asks for YaRN too;
 *  - `requires_fope` refuses a model without FoPE coefficients.
 * The result carries the config.json the output folder will have.
 */
import * as tf from '../backend/tfjs.js';
import { loadModelSpec } from '../config/load.js';
import { parseModelConfig, ropeParameterDict, type ModelSpec, type RopeSpec } from '../config/model-spec.js';
import { DEFAULT_SETTINGS, outputRopeSpec, planConversion } from '../convert/plan.js';
import { badOption, FopeifyError, optionName } from '../errors.js';
import { detectFopeLayout, loadWeights, type FopeLayout } from '../model/weights.js';
import { ropeFrequencies } from '../rope/inv-freq.js';
import type { Recipe } from './recipe.js';

export interface ConversionInfo {
  /** What was applied: nothing, YaRN, FoPE, or FoPE with YaRN. */
  kind: 'none' | 'yarn' | 'fope' | 'fope-yarn';
  yarn?: { factor: number; originalLength: number; attentionFactor: number };
  fope?: { k: number; initFactor: number; coefficientShape: number[]; seed: number };
  /** max_position_embeddings raised to seq-len (default RoPE / FoPE with an explicit num_inv_freq). */
  maxPositionEmbeddings: { from: number; to: number } | null;
  /** Human-readable notes (skipped steps and why). */
  notes: string[];
}

export interface PreparedModel {
  spec: ModelSpec;
  /** The config.json of the trained model. */
  config: Record<string, unknown>;
  weights: Map<string, tf.Variable>;
  fopeLayout: FopeLayout | null;
  conversion: ConversionInfo;
}

/** The length a model was trained at: original_max_position_embeddings when present, else max_position_embeddings. */
export function originalLength(spec: ModelSpec): number {
  const o = spec.rope.params.original_max_position_embeddings;
  return typeof o === 'number' && o > 0 ? o : spec.rope.maxPositionEmbeddings;
}

/** config.json with YaRN written as rope-scaling.md asks (rope_scaling + rope_theta, and rope_parameters). */
export function yarnConfig(raw: Record<string, unknown>, rope: RopeSpec): Record<string, unknown> {
  const config = structuredClone(raw);
  const dict: Record<string, unknown> = { ...ropeParameterDict(raw), rope_type: 'yarn', ...rope.params };
  delete dict.type;
  delete dict.rope_theta;
  const partial = dict.partial_rotary_factor;
  delete dict.partial_rotary_factor;
  config.rope_theta = rope.theta;
  config.rope_scaling = { ...dict };
  config.rope_parameters = { ...dict, rope_theta: rope.theta, ...(partial !== undefined ? { partial_rotary_factor: partial } : {}) };
  config.max_position_embeddings = rope.maxPositionEmbeddings;
  return config;
}

/** The YaRN factor a recipe asks for at this length (undefined: none). */
function requestedYarn(recipe: Recipe | null, spec: ModelSpec, seqLen: number, notes: string[]): number | undefined {
  const y = recipe?.convert?.yarn;
  if (y === undefined || y === null) return undefined;
  const orig = originalLength(spec);
  const factor = y === 'auto' ? seqLen / orig : Number(y);
  if (!Number.isFinite(factor)) throw new FopeifyError('BAD_ARGUMENT', `recipe ${recipe!.name}: convert.yarn must be "auto" or a number`);
  if (spec.rope.type === 'yarn') {
    notes.push(`YaRN not added: the model already uses YaRN (factor ${String(spec.rope.params.factor)})`);
    return undefined;
  }
  if (!(factor > 1)) {
    notes.push(`YaRN not added: seq-len ${seqLen} is not longer than the original length ${orig}`);
    return undefined;
  }
  if (spec.rope.type !== 'default') {
    throw new FopeifyError(
      'BAD_ARGUMENT',
      `recipe ${recipe!.name} adds YaRN, but the model already uses rope_type ${spec.rope.type}; use a recipe without YaRN (e.g. ${optionName('recipe')} none)`,
      { option: 'recipe' },
    );
  }
  return factor;
}

/**
 * Can this recipe train this model at seq-len? Throws a clear error when not (cheap: config only, so a
 * caller can check before loading anything). Returns the YaRN factor to add, if any.
 */
export function checkRecipe(spec: ModelSpec, recipe: Recipe | null, seqLen: number, notes: string[] = []): number | undefined {
  if (recipe?.requiresFope && !spec.fope) {
    throw new FopeifyError(
      'BAD_ARGUMENT',
      `recipe ${recipe.name} fine-tunes a FoPE model, and the model has no FoPE settings; convert it first (fopeify convert <model> -o <dir>) or use ${optionName('recipe')} fope-yarn`,
      { option: 'recipe' },
    );
  }
  if (recipe?.convert?.fope && spec.fope) {
    throw badOption('recipe', `recipe ${recipe.name} converts to FoPE, and the model already is a FoPE model; use \`recipe\` fope`);
  }
  return requestedYarn(recipe, spec, seqLen, notes);
}

let prepareCounter = 0;

/** A model's config already read and checked against the recipe (a run plan holds one). */
export interface CheckedModel {
  spec: ModelSpec;
  /** checkRecipe's answer: the YaRN factor to add, if any. */
  yarn: number | undefined;
  /** checkRecipe's notes (kept in ConversionInfo.notes). */
  notes: string[];
}

export interface PrepareModelOptions {
  onProgress?: (done: number, total: number) => void;
  allowNonFinite?: boolean;
  /** The config and checkRecipe's answer when the caller has them: neither is read or checked again. */
  checked?: CheckedModel;
}

export async function prepareModel(dir: string, recipe: Recipe | null, seqLen: number, options: PrepareModelOptions = {}): Promise<PreparedModel> {
  let checked = options.checked;
  if (!checked) {
    const spec = await loadModelSpec(dir);
    const notes: string[] = [];
    checked = { spec, yarn: checkRecipe(spec, recipe, seqLen, notes), notes };
  }
  const { spec, yarn } = checked;
  const notes = [...checked.notes];
  const load = () => loadWeights(dir, spec, { allowNonFinite: options.allowNonFinite, onProgress: options.onProgress ? (d, t) => options.onProgress!(d, t) : undefined });
  let config: Record<string, unknown> = structuredClone(spec.raw);
  let conversion: ConversionInfo = { kind: 'none', maxPositionEmbeddings: null, notes };
  let weights: Map<string, tf.Variable>;

  if (recipe?.convert?.fope) {
    const initFactor = recipe.convert.initFactor ?? DEFAULT_SETTINGS.initFactor;
    const plan = planConversion(spec, { ...DEFAULT_SETTINGS, initFactor, yarn, originalLength: yarn ? originalLength(spec) : undefined });
    weights = (await load()).weights;
    const id = prepareCounter++;
    for (const c of plan.coefficients) {
      weights.set(c.name, tf.variable(tf.tensor(c.data, c.shape, 'float32'), false, `fopeify-train/${id}/${c.name}`));
    }
    config = plan.config;
    conversion = {
      kind: yarn ? 'fope-yarn' : 'fope',
      yarn: yarn ? { factor: yarn, originalLength: originalLength(spec), attentionFactor: plan.attentionFactor } : undefined,
      fope: { k: plan.k, initFactor, coefficientShape: plan.coefficients[0]!.shape, seed: DEFAULT_SETTINGS.seed },
      maxPositionEmbeddings: null,
      notes,
    };
  } else {
    if (yarn) {
      const rope = outputRopeSpec(spec, { yarn, originalLength: originalLength(spec), betaFast: DEFAULT_SETTINGS.betaFast, betaSlow: DEFAULT_SETTINGS.betaSlow });
      config = yarnConfig(spec.raw, rope);
      const { attentionFactor } = ropeFrequencies(rope, rope.maxPositionEmbeddings);
      conversion = { kind: 'yarn', yarn: { factor: yarn, originalLength: originalLength(spec), attentionFactor }, maxPositionEmbeddings: null, notes };
    }
    weights = (await load()).weights;
  }

  // The weights are loaded: free them if the converted config is refused.
  try {
    let trained = parseModelConfig(config, 'config.json (after the recipe conversion)');
    // A plain-RoPE model trained at a longer length can say so; scaled variants derive lengths from their factors.
    const fixedFope = !trained.fope || trained.fope.numInvFreq !== null;
    if (trained.rope.type === 'default' && fixedFope && seqLen > trained.rope.maxPositionEmbeddings) {
      conversion.maxPositionEmbeddings = { from: trained.rope.maxPositionEmbeddings, to: seqLen };
      config.max_position_embeddings = seqLen;
      trained = parseModelConfig(config, 'config.json (after the recipe conversion)');
    }
    const fopeLayout = detectFopeLayout(weights.keys(), trained.numLayers);
    if (trained.fope && !fopeLayout) throw new FopeifyError('INTERNAL', 'FoPE settings without coefficients after conversion');
    return { spec: trained, config, weights, fopeLayout, conversion };
  } catch (err) {
    for (const v of weights.values()) v.dispose();
    throw err;
  }
}
