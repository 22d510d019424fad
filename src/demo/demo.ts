/**
 * `fopeify demo`: the whole story on the shipped tiny RoPE model, in one command —
 * inspect → convert to FoPE(+YaRN) and a YaRN-only baseline → fine-tune both at 2× the training length
 * with the same budget → passkey retrieval of original, YaRN and FoPE+YaRN at 1×, 2×, 4× and 8× the
 * training length, plus perplexity against context length → report.html. Numbers are reported as they
 * come out; the verdict is computed from them, never tuned.
 */
import path from 'node:path';
import type { BackendInfo, BackendName } from '../backend/select.js';
import { convertModel } from '../convert/convert.js';
import { FopeifyError } from '../errors.js';
import { writeFileAtomically } from '../io/atomic.js';
import { checkOutputFolder, prepareOutputFolder, requireOutputPath } from '../io/output-folder.js';
import { HEADLINE_JSON, writePerplexityReport, writeReport } from '../eval/report.js';
import { runNeedle } from '../eval/needle.js';
import type { NeedleSummary } from '../eval/summary.js';
import { inspectModel, type InspectReport } from '../inspect/inspect.js';
import { useBackend } from '../model/model.js';
import { fixturesDir } from './data.js';
import { exists, fineTuneData, fineTuneSettings, fineTuneStage, heldOutText, HELD_OUT_TEXT, namedModelLoader, perplexityOfModels } from './stages.js';

export const DEMO_MODEL_DIR = 'tiny-rope-256';

export interface DemoOptions {
  /** Output folder (default ./fopeify-demo). Reruns resume finished stages. */
  out?: string;
  /** The ≤ 10-minute variant: fewer fine-tuning steps, depths and trials. */
  quick?: boolean;
  /** Base model (default: the shipped tiny RoPE model). */
  model?: string;
  /** The activated backend (setupBackend's BackendInfo); a name activates that one (default auto). */
  backend?: BackendInfo | BackendName;
  threads?: number;
  seed?: number;
  /** Override parts of the plan (tests run a miniature demo). */
  plan?: Partial<DemoPlan>;
  onLog?: (line: string) => void;
  /** Called once the inputs are checked, before the backend is set up and anything runs (a start banner). */
  onStart?: () => void;
  onProgress?: (text: string) => void;
}

export interface DemoPlan {
  trainLength: number;
  fineTuneLength: number;
  steps: number;
  batch: number;
  lr: number;
  lengths: number[];
  depths: number[];
  trials: number;
  windows: number[];
  maxWindows: number;
}

export interface DemoResult {
  out: string;
  report: string;
  plan: DemoPlan;
  models: { name: string; dir: string; description: string }[];
  needle: NeedleSummary;
  perplexity: { model: string; window: number; ppl: number | null }[];
  /** Accuracy per model per length (model → length → accuracy). */
  table: Record<string, Record<number, number>>;
  verdict: string;
  seconds: number;
  stageSeconds: Record<string, number>;
}

export function demoPlan(trainLength: number, quick: boolean): DemoPlan {
  return {
    trainLength,
    fineTuneLength: 2 * trainLength,
    steps: quick ? 40 : 300,
    batch: quick ? 4 : 8,
    lr: 5e-4,
    lengths: [1, 2, 4, 8].map((m) => m * trainLength),
    depths: quick ? [0, 0.5, 1] : [0, 0.25, 0.5, 0.75, 1],
    trials: quick ? 2 : 8,
    windows: [0.5, 1, 2, 4, 8].map((m) => m * trainLength),
    maxWindows: quick ? 4 : 16,
  };
}

/** One line per model and length: which model retrieves best beyond the training length, stated plainly. */
export function demoVerdict(table: Record<string, Record<number, number>>, trainLength: number, names: { rope: string; yarn: string; fope: string }): string {
  const beyond = (m: string) => Object.entries(table[m] ?? {}).filter(([l]) => Number(l) > trainLength);
  const mean = (m: string) => {
    const v = beyond(m).map(([, a]) => a);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : 0;
  };
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const [r, y, f] = [mean(names.rope), mean(names.yarn), mean(names.fope)];
  const head = `Mean passkey accuracy beyond the training length (${trainLength} tokens): RoPE ${pct(r)}, YaRN ${pct(y)}, FoPE+YaRN ${pct(f)}.`;
  if (f > y && f > r) return `${head} FoPE+YaRN did best at this scale.`;
  if (f === y && f === r) return `${head} The three models are tied at this scale; FoPE did not beat RoPE here.`;
  if (f >= y) return `${head} FoPE+YaRN matched YaRN but did not beat ${r > f ? 'the original RoPE model' : 'it'}; at this scale FoPE did not show an advantage.`;
  return `${head} FoPE+YaRN did not beat the YaRN baseline at this scale.`;
}

/** A demo whose inputs are checked: the output folder and the base model. */
export interface DemoSetup {
  out: string;
  base: string;
}

/** Check the demo's inputs (a wrong --out must fail before anything is printed, started or written). */
export async function planDemo(options: Pick<DemoOptions, 'out' | 'model'> = {}): Promise<DemoSetup> {
  const out = path.resolve(requireOutputPath(options.out ?? 'fopeify-demo'));
  const base = path.resolve(options.model ?? path.join(fixturesDir(), DEMO_MODEL_DIR));
  if (!(await exists(path.join(base, 'config.json')))) {
    throw new FopeifyError('MODEL_NOT_FOUND', `the demo model is missing: ${base} (run scripts/train-tiny-model.mjs to recreate it)`);
  }
  await checkOutputFolder(out, { sources: [base] });
  return { out, base };
}

/** The whole demo: check the inputs, announce (onStart), activate the backend (default auto) unless given one, run the stages. */
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const t0 = Date.now();
  const setup = await planDemo(options);
  options.onStart?.();
  const backend = await useBackend(options.backend ?? 'auto', { threads: options.threads, log: options.onLog ?? (() => undefined) });
  return runPlannedDemo(setup, backend, options, t0);
}

/** Elapsed seconds per stage. */
type StageClock = <T>(name: string, fn: () => Promise<T>) => Promise<T>;

/** The demo's stages on a checked setup and an activated backend. */
export async function runPlannedDemo(setup: DemoSetup, backend: BackendInfo, options: Omit<DemoOptions, 'backend' | 'threads' | 'onStart'> = {}, t0 = Date.now()): Promise<DemoResult> {
  const log = options.onLog ?? (() => undefined);
  const progress = options.onProgress ?? (() => undefined);
  const { out, base } = setup;
  await prepareOutputFolder(out, { sources: [base] });
  const seed = options.seed ?? 0;
  const stageSeconds: Record<string, number> = {};
  const stage: StageClock = async (name, fn) => {
    const s = Date.now();
    const r = await fn();
    stageSeconds[name] = (Date.now() - s) / 1000;
    return r;
  };

  // 1. inspect
  const report: InspectReport = await stage('inspect', () => inspectModel({ model: base }));
  const trainLength = report.maxPositionEmbeddings ?? 256;
  const plan = { ...demoPlan(trainLength, options.quick ?? false), ...options.plan };
  log(
    `base model: ${report.architecture}, ${report.parameters.toLocaleString()} parameters, rope ${report.rope?.type} θ=${report.rope?.theta}, trained at ${trainLength} tokens; ` +
      `${report.keptWithinLength} of ${report.frequencies?.length} frequencies complete a period within ${trainLength} tokens`,
  );
  log(
    `plan: fine-tune at ${plan.fineTuneLength} tokens for ${plan.steps} steps × batch ${plan.batch} (same for YaRN and FoPE), passkey at ${plan.lengths.join(', ')} tokens × ${plan.depths.length} depths × ${plan.trials} trials, perplexity at ${plan.windows.join(', ')}`,
  );
  // 2-3. convert and fine-tune.
  const models = await demoModels(setup, plan, trainLength, seed, backend, stage, log, progress);
  const reportDir = path.join(out, 'report');
  // 4. passkey retrieval across lengths and depths.
  const needle = await stage('needle', () =>
    runNeedle({
      models: models.map((m) => m.name),
      out: reportDir,
      task: 'passkey',
      lengths: plan.lengths,
      depths: plan.depths,
      trials: plan.trials,
      seed,
      mode: 'generate',
      loader: namedModelLoader(models, backend),
      onProgress: (e) => progress(`passkey: ${e.done}/${e.total} cells (${e.record.model} at ${e.record.context_length} tokens: ${e.record.correct ? 'right' : 'wrong'})`),
      onWarning: (w) => log(`note: ${w}`),
    }),
  );
  // 5. perplexity against context length on held-out Brown text.
  const heldOut = await heldOutText();
  const perplexity: DemoResult['perplexity'] = await stage('perplexity', () =>
    perplexityOfModels(models, heldOut, { windows: plan.windows, maxWindows: plan.maxWindows, onProgress: progress, backend }),
  );
  await writePerplexityReport(reportDir, {
    windows: plan.windows,
    results: perplexity,
    settings: { text: HELD_OUT_TEXT, max_windows: plan.maxWindows },
    markers: [
      { x: trainLength, label: 'trained' },
      { x: plan.fineTuneLength, label: 'fine-tuned' },
    ],
  });
  const table: Record<string, Record<number, number>> = {};
  for (const r of needle.results) (table[r.model] ??= {})[r.context_length] = r.accuracy;
  const result: DemoResult = {
    out,
    report: path.join(reportDir, 'report.html'),
    plan,
    models,
    needle,
    perplexity,
    table,
    verdict: demoSummaryVerdict(table, perplexity, plan),
    seconds: (Date.now() - t0) / 1000,
    stageSeconds,
  };
  await writeDemoFiles(result, backend, options.quick ?? false);
  return result;
}

/** The three models the demo compares: the base, and the YaRN and FoPE+YaRN models it converts and fine-tunes. */
async function demoModels(
  setup: DemoSetup,
  plan: DemoPlan,
  trainLength: number,
  seed: number,
  backend: BackendInfo,
  stage: StageClock,
  log: (line: string) => void,
  progress: (text: string) => void,
): Promise<DemoResult['models']> {
  const { out, base } = setup;
  // FoPE + YaRN (factor 2) — the YaRN-only baseline gets its scaling from the yarn recipe.
  const fopeConverted = path.join(out, 'fope-converted');
  if (!(await exists(path.join(fopeConverted, 'config.json')))) {
    await stage('convert', async () => {
      progress('converting to FoPE + YaRN');
      const r = await convertModel({ model: base, outDir: fopeConverted, yarn: 2, initFactor: 0.1, seed, force: true });
      log(`converted: FoPE keeps K=${r.k} of ${r.headDimHalf} frequencies (clip length ${r.clipLength}), YaRN ×2 → max_position_embeddings ${r.maxPositionEmbeddings}`);
    });
  }
  // Both fine-tuned with the same data and budget.
  const data = await fineTuneData(plan, seed + 1);
  const settings = fineTuneSettings(plan, seed);
  const tuned = async (name: string, model: string, recipe: string) => {
    const dir = path.join(out, name);
    if (!(await exists(path.join(dir, 'config.json')))) {
      await stage(`finetune ${name}`, () => fineTuneStage({ name, model, dir, recipe, data, settings, backend, onLog: log, onProgress: progress }));
    }
    return dir;
  };
  const yarnDir = await tuned('yarn-finetuned', base, 'yarn');
  const fopeDir = await tuned('fope-yarn-finetuned', fopeConverted, 'fope');
  return [
    { name: 'rope-original', dir: base, description: `the shipped RoPE model, trained at ${trainLength} tokens` },
    { name: 'yarn-finetuned', dir: yarnDir, description: `RoPE + YaRN ×2, fine-tuned at ${plan.fineTuneLength}` },
    { name: 'fope-yarn-finetuned', dir: fopeDir, description: `FoPE + YaRN ×2, fine-tuned at ${plan.fineTuneLength}` },
  ];
}

/** The verdict on passkey accuracy, with the perplexities at the longest window. */
function demoSummaryVerdict(table: DemoResult['table'], perplexity: DemoResult['perplexity'], plan: DemoPlan): string {
  const longest = plan.windows[plan.windows.length - 1]!;
  const pplAt = (m: string) => perplexity.find((p) => p.model === m && p.window === longest)?.ppl;
  const fmt = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : v.toFixed(2));
  return (
    demoVerdict(table, plan.trainLength, { rope: 'rope-original', yarn: 'yarn-finetuned', fope: 'fope-yarn-finetuned' }) +
    ` Perplexity at ${longest} tokens (${longest / plan.trainLength}× the training length): RoPE ${fmt(pplAt('rope-original'))}, YaRN ${fmt(pplAt('yarn-finetuned'))}, FoPE+YaRN ${fmt(pplAt('fope-yarn-finetuned'))}.`
  );
}

/** demo.json, the report's headline and report.html. */
async function writeDemoFiles(result: DemoResult, backend: BackendInfo, quick: boolean): Promise<void> {
  const reportDir = path.dirname(result.report);
  await writeFileAtomically(path.join(result.out, 'demo.json'), JSON.stringify({ ...result, backend: backend.description }, null, 2) + '\n');
  const lines = Object.entries(result.table).map(([m, row]) => `${m}: ${result.plan.lengths.map((l) => `${l} → ${((row[l] ?? 0) * 100).toFixed(0)}%`).join(', ')}`);
  await writeFileAtomically(
    path.join(reportDir, HEADLINE_JSON),
    JSON.stringify(
      { paragraphs: [`fopeify demo${quick ? ' (quick)' : ''}: ${result.verdict}`, ...lines, `Models: ${result.models.map((m) => `${m.name} = ${m.description}`).join('; ')}.`] },
      null,
      2,
    ) + '\n',
  );
  await writeReport(reportDir);
}
