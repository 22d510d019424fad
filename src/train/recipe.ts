/**
 * Fine-tuning recipes: data files (recipes/*.json or *.yaml) that set defaults; command-line flags override
 * them; the resolved settings are printed and saved with every checkpoint.
 */
import { existsSync, promises as fs, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FopeifyError } from '../errors.js';
import { parseYamlLite } from './yaml-lite.js';

export type Trainable = 'all' | 'attention' | 'lora';
export type Schedule = 'constant' | 'cosine' | 'linear';

export interface LoraSettings {
  rank: number;
  alpha: number;
  targets: string[];
  trainEmbeddings: boolean;
  trainNorms: boolean;
  /** Merge into the weights at save, or save a PEFT adapter next to the base weights. */
  save: 'merged' | 'adapter';
}

export interface TrainSettings {
  seqLen: number;
  steps: number;
  batch: number;
  gradAccum: number;
  lr: number;
  betas: [number, number];
  weightDecay: number;
  warmupSteps: number;
  schedule: Schedule;
  /** Final lr as a fraction of lr for cosine/linear decay. */
  minLrRatio: number;
  maxGradNorm: number;
  trainable: Trainable;
  lora: LoraSettings;
  seed: number;
  evalEvery: number;
  saveEvery: number;
  /** Evaluate passkey accuracy at seq-len during --eval-every (costly). */
  evalPasskey: boolean;
}

export interface RecipeConvert {
  /** "auto": factor = seq-len / original length. */
  yarn?: 'auto' | number | null;
  fope?: boolean;
  initFactor?: number;
}

export interface Recipe {
  name: string;
  description: string;
  file: string;
  convert: RecipeConvert | null;
  requiresFope: boolean;
  train: Partial<TrainSettings>;
}

export const DEFAULT_TRAIN: TrainSettings = {
  seqLen: 2048,
  steps: 100,
  batch: 1,
  gradAccum: 1,
  lr: 2e-5,
  betas: [0.9, 0.95],
  weightDecay: 0,
  warmupSteps: 20,
  schedule: 'constant',
  minLrRatio: 0.1,
  maxGradNorm: 1,
  trainable: 'all',
  lora: { rank: 8, alpha: 16, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], trainEmbeddings: true, trainNorms: true, save: 'merged' },
  seed: 0,
  evalEvery: 0,
  saveEvery: 50,
  evalPasskey: false,
};

/** The recipes/ folder shipped with the package (two levels up from dist/train or src/train). */
export function recipesDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'recipes');
}

const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

function normalizeTrain(raw: Record<string, unknown>, file: string): Partial<TrainSettings> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    const key = camel(k);
    if (key === 'lora' && v && typeof v === 'object') {
      out.lora = { ...DEFAULT_TRAIN.lora, ...Object.fromEntries(Object.entries(v).map(([a, b]) => [camel(a), b])) };
    } else if (key in DEFAULT_TRAIN) out[key] = v;
    else throw new FopeifyError('BAD_ARGUMENT', `${file}: unknown train setting "${k}"`);
  }
  return out as Partial<TrainSettings>;
}

export async function loadRecipe(nameOrFile: string): Promise<Recipe> {
  let file = nameOrFile;
  if (!existsSync(file)) {
    const dir = recipesDir();
    const found = ['.json', '.yaml', '.yml'].map((e) => path.join(dir, nameOrFile + e)).find((p) => existsSync(p));
    if (!found) {
      throw new FopeifyError('BAD_ARGUMENT', `unknown recipe "${nameOrFile}" (available: ${listRecipeNames().join(', ')}; or give a file path)`);
    }
    file = found;
  }
  const text = await fs.readFile(file, 'utf8');
  let raw: Record<string, unknown>;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : parseYamlLite(text, file);
  } catch (err) {
    if (err instanceof FopeifyError) throw err;
    throw new FopeifyError('BAD_ARGUMENT', `recipe ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const conv = raw.convert as Record<string, unknown> | null | undefined;
  return {
    name: String(raw.name ?? path.basename(file).replace(/\.(json|ya?ml)$/, '')),
    description: String(raw.description ?? ''),
    file,
    convert: conv ? { yarn: conv.yarn as RecipeConvert['yarn'], fope: conv.fope === true, initFactor: typeof conv.init_factor === 'number' ? conv.init_factor : undefined } : null,
    requiresFope: raw.requires_fope === true,
    train: normalizeTrain((raw.train as Record<string, unknown>) ?? {}, file),
  };
}

export function listRecipeNames(): string[] {
  const dir = recipesDir();
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /\.(json|ya?ml)$/.test(f))
    .map((f) => f.replace(/\.(json|ya?ml)$/, ''))
    .sort();
}

export async function listRecipes(): Promise<Recipe[]> {
  return Promise.all(listRecipeNames().map((n) => loadRecipe(n)));
}

/** Explicit settings over a recipe's: any subset, LoRA settings too (undefined = not given). */
export type TrainOverrides = Partial<Omit<TrainSettings, 'lora'>> & { lora?: Partial<LoraSettings> };

/** Recipe defaults, then explicit overrides (undefined = not given). Validates the result. */
export function resolveTrainSettings(recipe: Recipe, overrides: TrainOverrides): TrainSettings {
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  const s: TrainSettings = { ...DEFAULT_TRAIN, ...recipe.train, ...defined } as TrainSettings;
  s.lora = { ...DEFAULT_TRAIN.lora, ...(recipe.train.lora ?? {}), ...((defined.lora as Partial<LoraSettings>) ?? {}) };
  const positiveInt = (k: keyof TrainSettings) => {
    const v = s[k] as number;
    if (!(Number.isInteger(v) && v > 0)) throw new FopeifyError('BAD_ARGUMENT', `${k} must be a positive integer (got ${v})`);
  };
  (['seqLen', 'steps', 'batch', 'gradAccum'] as const).forEach(positiveInt);
  if (!(s.lr > 0)) throw new FopeifyError('BAD_ARGUMENT', `lr must be positive (got ${s.lr})`);
  if (!['constant', 'cosine', 'linear'].includes(s.schedule)) throw new FopeifyError('BAD_ARGUMENT', `schedule must be constant, cosine or linear`);
  if (!['all', 'attention', 'lora'].includes(s.trainable)) throw new FopeifyError('BAD_ARGUMENT', `trainable must be all, attention or lora`);
  if (!(Number.isInteger(s.seed) && s.seed >= 0)) throw new FopeifyError('BAD_ARGUMENT', `seed must be an integer ≥ 0 (got ${s.seed})`);
  for (const k of ['evalEvery', 'saveEvery', 'warmupSteps'] as const) {
    if (!(Number.isInteger(s[k]) && s[k] >= 0)) throw new FopeifyError('BAD_ARGUMENT', `${k} must be an integer ≥ 0 (got ${s[k]})`);
  }
  if (!(s.weightDecay >= 0) || !(s.maxGradNorm >= 0) || !(s.minLrRatio >= 0 && s.minLrRatio <= 1)) {
    throw new FopeifyError('BAD_ARGUMENT', 'weightDecay and maxGradNorm must be ≥ 0, minLrRatio within [0, 1]');
  }
  if (!Array.isArray(s.betas) || s.betas.length !== 2 || !s.betas.every((b) => b >= 0 && b < 1)) {
    throw new FopeifyError('BAD_ARGUMENT', `betas must be two numbers in [0, 1) (got ${JSON.stringify(s.betas)})`);
  }
  if (s.lora.save !== 'merged' && s.lora.save !== 'adapter') throw new FopeifyError('BAD_ARGUMENT', `lora.save must be merged or adapter`);
  return s;
}
