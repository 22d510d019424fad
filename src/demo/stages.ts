/**
 * The stages `fopeify demo` and `fopeify study` share: fine-tuning a model with a fixed budget (skipped
 * when its folder is complete, resumed from its checkpoints otherwise), loading models under short names
 * for the needle runner, and perplexity by window on the held-out Brown text. One implementation, so the
 * demo and the study measure the same way.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { BackendInfo } from '../backend/select.js';
import { perplexityByWindow } from '../eval/perplexity.js';
import { runtimeLoader, type EvalModelLoader } from '../eval/runner.js';
import { loadModel } from '../model/model.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { finetune, type FinetuneResult, type StepInfo } from '../train/finetune.js';
import type { TrainOverrides } from '../train/recipe.js';
import { asciiOnly, demoTexts, fixturesDir } from './data.js';

/** The held-out text perplexity is measured on (relative to the package). */
export const HELD_OUT_TEXT = 'fixtures/text/brown-heldout.txt';

export const exists = (p: string): Promise<boolean> => fs.stat(p).then(() => true, () => false);

/** The budget of one fine-tuning run: what the demo's and the study's plans share. */
export interface FineTuneBudget {
  fineTuneLength: number;
  steps: number;
  batch: number;
  lr: number;
}

/** The training settings of a budget (cosine schedule, a short warm-up, a checkpoint every quarter). */
export function fineTuneSettings(budget: FineTuneBudget, seed: number): TrainOverrides {
  return {
    seqLen: budget.fineTuneLength,
    steps: budget.steps,
    batch: budget.batch,
    gradAccum: 1,
    lr: budget.lr,
    warmupSteps: Math.min(20, Math.floor(budget.steps / 4)),
    schedule: 'cosine' as const,
    seed,
    evalEvery: 0,
    saveEvery: Math.max(10, Math.floor(budget.steps / 4)),
  };
}

/** Brown text + passkey documents of exactly the fine-tuning length, enough for every step. */
export async function fineTuneData(budget: FineTuneBudget, dataSeed: number): Promise<{ texts: string[]; name: string }> {
  const texts = await demoTexts({ length: budget.fineTuneLength, count: Math.max(64, budget.steps * budget.batch), seed: dataSeed });
  return { texts, name: `Brown + passkey documents (${budget.fineTuneLength} bytes each)` };
}

export interface FineTuneStage {
  /** Short name for progress lines. */
  name: string;
  /** Model to start from. */
  model: string;
  /** The fine-tuned model's folder. */
  dir: string;
  /** Recipe (null: none — train the model as it is). */
  recipe: string | null;
  data: { texts: string[]; name: string };
  settings: TrainOverrides;
  onLog?: (line: string) => void;
  onProgress?: (text: string) => void;
  /** Extra text after the step counter (e.g. the study's overall ETA). */
  progressSuffix?: () => string;
  /** The activated backend to train on (default: the active one). */
  backend?: BackendInfo;
}

/**
 * Fine-tune unless `dir` already holds the finished model; a folder with checkpoints resumes from the
 * newest. Returns null when nothing had to be done.
 */
export async function fineTuneStage(stage: FineTuneStage): Promise<FinetuneResult | null> {
  if (await exists(path.join(stage.dir, 'config.json'))) return null;
  const resume = await exists(path.join(stage.dir, 'checkpoints'));
  const log = stage.onLog ?? (() => undefined);
  return finetune({
    model: stage.model,
    outDir: stage.dir,
    recipe: stage.recipe,
    data: stage.data,
    settings: stage.settings,
    resume,
    force: !resume,
    backend: stage.backend,
    quietBackend: true,
    onStep: (s: StepInfo) =>
      stage.onProgress?.(
        `fine-tuning ${stage.name}: step ${s.step}/${s.steps}, loss ${s.loss.toFixed(3)}, ${s.tokensPerSecond.toFixed(0)} tok/s, ETA ${s.etaSeconds.toFixed(0)}s${stage.progressSuffix?.() ?? ''}`,
      ),
    onLog: (l) => (l.startsWith('settings') ? undefined : log(`${stage.name}: ${l}`)),
  });
}

/**
 * A needle loader that knows models by short names ("rope-original", "yarn/seed-1", ...): records,
 * tables and heatmaps use the names, and each name maps to its folder.
 */
export function namedModelLoader(models: readonly { name: string; dir: string }[], backend?: BackendInfo): EvalModelLoader {
  const dirOf = new Map(models.map((m) => [m.name, m.dir]));
  const folder = (name: string) => dirOf.get(name) ?? name;
  const runtime = runtimeLoader({ backend });
  return { tokenizer: (name) => runtime.tokenizer(folder(name)), load: (name) => runtime.load(folder(name)) };
}

/** The held-out Brown text, ASCII only (bytes = tokens for the byte-level tokenizer). */
export async function heldOutText(): Promise<string> {
  return asciiOnly(await fs.readFile(path.join(fixturesDir(), 'text', 'brown-heldout.txt'), 'utf8'));
}

export interface WindowPpl {
  model: string;
  window: number;
  ppl: number | null;
}

/** Perplexity of each model at each window on `text` (at most `maxWindows` windows per size). */
export async function perplexityOfModels(
  models: readonly { name: string; dir: string }[],
  text: string,
  options: { windows: number[]; maxWindows: number; onProgress?: (text: string) => void; backend?: BackendInfo },
): Promise<WindowPpl[]> {
  const rows: WindowPpl[] = [];
  for (const m of models) {
    options.onProgress?.(`perplexity: ${m.name}`);
    const tok = await loadTokenizer(m.dir);
    const ids = tok.encode(text, { addSpecialTokens: false });
    const lm = await loadModel(m.dir, { backend: options.backend });
    try {
      const r = await perplexityByWindow(lm, ids, { windows: options.windows, maxWindows: options.maxWindows });
      for (const w of r.results) rows.push({ model: m.name, window: w.window, ppl: w.ppl });
    } finally {
      lm.dispose();
    }
  }
  return rows;
}
