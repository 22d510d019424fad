/**
 * `fopeify study`: the FoPE paper's comparison and ablation at small scale. From one RoPE model it builds
 * the variants (plan.ts), fine-tunes each with the same data and budget for each seed, measures passkey
 * accuracy by length × depth and perplexity by window (the training length included: the short-context
 * row), and aggregates across seeds with 95 % intervals (aggregate.ts) into study.json and report.html.
 *
 * Resumable per cell: a variant × seed whose cell.json exists is not run again; an unfinished cell
 * resumes its conversion, fine-tuning checkpoints and needle records.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { BackendInfo, BackendName } from '../backend/select.js';
import { useBackend } from '../model/model.js';
import { loadModelSpec } from '../config/load.js';
import { convertModel } from '../convert/convert.js';
import { fixturesDir } from '../demo/data.js';
import { exists, fineTuneData, fineTuneSettings, fineTuneStage, heldOutText, HELD_OUT_TEXT, namedModelLoader, perplexityOfModels } from '../demo/stages.js';
import { runNeedle } from '../eval/needle.js';
import { badOption, FopeifyError, optionName } from '../errors.js';
import { resolveModel } from '../hub/resolve.js';
import type { ModelSourceOptions } from '../hub/source.js';
import { writeFileAtomically } from '../io/atomic.js';
import { checkOutputFolder, prepareOutputFolder, requireOutputPath } from '../io/output-folder.js';
import { SUMMARY_FILE } from '../io/formats.js';
import { originalLength } from '../train/prepare.js';
import { VERSION } from '../version.js';
import { aggregateStudy, type StudyAggregate } from './aggregate.js';
import { checkPlan, parseVariants, studyPlan, VARIANTS, type StudyPlan, type VariantConversion, type VariantId } from './plan.js';
import { writeStudyReport } from './report.js';
import { INTERVAL_METHOD } from './stats.js';

export const STUDY_JSON = 'study.json';
export const STUDY_PLAN_JSON = 'study-plan.json';
export const CELL_JSON = 'cell.json';
export const STUDY_MODEL_DIR = 'tiny-rope-256';

export interface StudyOptions {
  /** The RoPE model (folder or Hub id; default: the shipped tiny model). */
  model?: string;
  /** Output folder (default ./fopeify-study). A rerun skips finished variant × seed cells. */
  out?: string;
  /** Variant ids (default: all six). */
  variants?: VariantId[] | string;
  /** Seeds 0 … seeds−1 (default 3; quick: 2). */
  seeds?: number;
  /** Fine-tuning length (default 2 × the training length). */
  targetLength?: number;
  /** Fine-tuning steps per cell. */
  steps?: number;
  /** The ≤ 15-minute variant (fewer steps, lengths, depths and trials). */
  quick?: boolean;
  /** Override parts of the plan (tests run a miniature study; the CLI exposes a few). */
  plan?: Partial<StudyPlan>;
  /** The activated backend (setupBackend's BackendInfo); a name activates that one (default auto). */
  backend?: BackendInfo | BackendName;
  threads?: number;
  /** With a backend name 'webgpu' (or auto): a software adapter may be used. */
  allowSoftwareAdapter?: boolean;
  source?: ModelSourceOptions;
  /** The command line that started this run, recorded in study.json. */
  command?: string;
  /** Once the inputs are checked and before any cell runs: what this study will do. */
  onStart?: (info: { plan: StudyPlan; variants: VariantId[]; seeds: number[]; quick: boolean }) => void;
  onLog?: (line: string) => void;
  onProgress?: (text: string) => void;
}

/** One variant × seed: everything measured, as stored in cells/<variant>/seed-<n>/cell.json. */
export interface StudyCell {
  variant: VariantId;
  seed: number;
  /** The fine-tuned model folder, relative to the study folder. */
  model: string;
  /** The convert options it was built with (null: the RoPE model itself), and the equivalent command. */
  conversion: VariantConversion | null;
  convertCommand: string | null;
  recipe: string | null;
  finetune: { steps: number; finalLoss: number | null; seconds: number } | null;
  /** Passkey accuracy by length × depth and by length. */
  passkeyCells: { length: number; depth: number; accuracy: number; trials: number }[];
  accuracy: { length: number; accuracy: number; trials: number }[];
  perplexity: { window: number; ppl: number | null }[];
  seconds: number;
}

export interface StudyResult {
  out: string;
  report: string;
  model: string;
  plan: StudyPlan;
  variants: VariantId[];
  seeds: number[];
  quick: boolean;
  intervalMethod: string;
  cells: StudyCell[];
  /** Cells run by this invocation (the others were found finished). */
  ranCells: string[];
  aggregate: StudyAggregate;
  verdict: string;
  /** Seconds of this invocation. */
  seconds: number;
  /** Seconds all cells took when they ran (over every invocation). */
  cellSeconds: number;
}

function cellName(v: VariantId, seed: number): string {
  return `${v}/seed-${seed}`;
}

function convertCommandLine(model: string, outDir: string, c: VariantConversion): string {
  const flags = [`--init-factor ${c.initFactor}`];
  if (c.numInvFreq !== undefined) flags.push(`--num-inv-freq ${c.numInvFreq}`);
  if (c.yarn !== undefined) flags.push(`--yarn ${c.yarn}`);
  flags.push(`--seed ${c.seed}`);
  return `fopeify convert ${JSON.stringify(model)} --out ${JSON.stringify(outDir)} ${flags.join(' ')}`;
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** What a fine-tuned folder's finetune.json says (a cell resumed after its fine-tuning had finished). */
async function finishedFineTune(dir: string): Promise<StudyCell['finetune']> {
  const j = await readJson<{ steps_done?: number; final_loss?: number | null; seconds?: number }>(path.join(dir, SUMMARY_FILE));
  return j && typeof j.steps_done === 'number' ? { steps: j.steps_done, finalLoss: j.final_loss ?? null, seconds: j.seconds ?? 0 } : null;
}

/** JSON with object keys sorted, so equal plans compare equal whatever order their keys were written in. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

const minutes = (s: number) => (s >= 90 ? `${(s / 60).toFixed(1)} min` : `${Math.round(s)} s`);

/** What one cell of the study needs: its variant and seed, folders, the shared plan, data and backend. */
interface CellJob {
  v: VariantId;
  seed: number;
  name: string;
  cellDir: string;
  out: string;
  base: string;
  plan: StudyPlan;
  ctx: { yarnFactor: number; headDimHalf: number; initFactor: number };
  data: { texts: string[]; name: string };
  text: string;
  backend: BackendInfo;
  log: (line: string) => void;
  cellProgress: (text: string) => void;
  started: number;
}

/** One cell: convert (FoPE variants), fine-tune, passkey by length × depth, perplexity by window. */
async function runCell(job: CellJob): Promise<StudyCell> {
  const { v, seed, name, cellDir, out, base, plan, ctx, data, text, backend, log, cellProgress, started } = job;
  const variant = VARIANTS[v];
  await fs.mkdir(cellDir, { recursive: true });
  // 1. build: convert (FoPE variants) or start from the RoPE model.
  let start = base;
  let conversion: VariantConversion | null = null;
  let convertCommand: string | null = null;
  if (variant.conversion) {
    conversion = variant.conversion({ ...ctx, seed });
    start = path.join(cellDir, 'converted');
    convertCommand = convertCommandLine(base, start, conversion);
    if (!(await exists(path.join(start, 'config.json')))) {
      cellProgress('converting');
      const r = await convertModel({ model: base, outDir: start, ...conversion, force: true });
      log(`${name}: converted, K=${r.k} of ${r.headDimHalf} frequencies kept (clip length ${r.clipLength}), max_position_embeddings ${r.maxPositionEmbeddings}`);
    }
  }
  // 2. fine-tune with the shared data and budget; the seed orders the data.
  const tunedDir = path.join(cellDir, 'model');
  const ft = await fineTuneStage({
    name,
    model: start,
    dir: tunedDir,
    recipe: variant.recipe,
    data,
    settings: fineTuneSettings(plan, seed),
    backend,
    onLog: log,
    onProgress: cellProgress,
  });
  // 3. passkey by length × depth on the same prompts for every cell.
  const needle = await runNeedle({
    models: [name],
    out: path.join(cellDir, 'needle'),
    task: 'passkey',
    lengths: plan.lengths,
    depths: plan.depths,
    trials: plan.trials,
    seed: plan.evalSeed,
    mode: 'generate',
    loader: namedModelLoader([{ name, dir: tunedDir }], backend),
    onProgress: (e) => cellProgress(`passkey ${e.done}/${e.total} (${e.record.context_length} tokens: ${e.record.correct ? 'right' : 'wrong'})`),
    onWarning: (w) => log(`${name}: note: ${w}`),
  });
  // 4. perplexity by window on the held-out text.
  const ppl = await perplexityOfModels([{ name, dir: tunedDir }], text, { windows: plan.windows, maxWindows: plan.maxWindows, onProgress: () => cellProgress('perplexity'), backend });
  const cell: StudyCell = {
    variant: v,
    seed,
    model: path.relative(out, tunedDir),
    conversion,
    convertCommand,
    recipe: variant.recipe,
    finetune: ft ? { steps: ft.step, finalLoss: ft.finalLoss, seconds: ft.seconds } : await finishedFineTune(tunedDir),
    passkeyCells: needle.cells.map((c) => ({ length: c.context_length, depth: c.depth, accuracy: c.accuracy, trials: c.trials })),
    accuracy: needle.results.map((r) => ({ length: r.context_length, accuracy: r.accuracy, trials: r.trials })),
    perplexity: ppl.map((p) => ({ window: p.window, ppl: p.ppl })),
    seconds: (Date.now() - started) / 1000,
  };
  return cell;
}

/** Run (or resume) a study. */
export async function runStudy(options: StudyOptions = {}): Promise<StudyResult> {
  const t0 = Date.now();
  const log = options.onLog ?? (() => undefined);
  const progress = options.onProgress ?? (() => undefined);
  const quick = options.quick ?? false;
  const out = path.resolve(requireOutputPath(options.out ?? 'fopeify-study'));
  const variants = parseVariants(options.variants);
  const resolved = await resolveModel(options.model ?? path.join(fixturesDir(), STUDY_MODEL_DIR), options.source);
  const base = resolved.dir;
  const spec = await loadModelSpec(base);
  if (spec.fope) throw new FopeifyError('BAD_ARGUMENT', 'the study starts from a RoPE model, and this one already is a FoPE model');
  if (spec.rope.type !== 'default') throw new FopeifyError('BAD_ARGUMENT', `the study starts from a plain RoPE model (rope_type default); this one uses ${spec.rope.type}`);
  const trainLength = originalLength(spec);
  const defaults = studyPlan(trainLength, quick, options.targetLength ?? options.plan?.fineTuneLength);
  const seedCount = options.seeds ?? defaults.seeds;
  if (!(Number.isInteger(seedCount) && seedCount >= 1)) throw badOption('seeds', `\`seeds\` must be a positive integer (got ${seedCount})`);
  const { seeds: _omit, ...defaultPlan } = defaults;
  const plan = checkPlan({ ...defaultPlan, ...options.plan, ...(options.steps !== undefined ? { steps: options.steps } : {}), trainLength });
  const seeds = Array.from({ length: seedCount }, (_, i) => i);
  // The output rules and the backend before anything is printed or written.
  await checkOutputFolder(out, { sources: [base] });
  const backend = await useBackend(options.backend ?? 'auto', { threads: options.threads, allowSoftwareAdapter: options.allowSoftwareAdapter, log });
  await prepareOutputFolder(out, { sources: [base] });

  const commands = await claimStudyFolder(out, base, plan, options.out, options.command ?? `runStudy(${JSON.stringify({ model: options.model, variants, seeds: seedCount, quick })})`);

  options.onStart?.({ plan, variants, seeds, quick });
  log(
    `study of ${base}: trained at ${trainLength} tokens; ${variants.length} variants × ${seeds.length} seed${seeds.length === 1 ? '' : 's'}, each fine-tuned at ${plan.fineTuneLength} tokens for ${plan.steps} steps × batch ${plan.batch}; ` +
      `passkey at ${plan.lengths.join(', ')} × ${plan.depths.length} depths × ${plan.trials} trials, perplexity at ${plan.windows.join(', ')}`,
  );

  const data = await fineTuneData(plan, plan.dataSeed);
  const text = await heldOutText();
  const ctx = { yarnFactor: plan.fineTuneLength / trainLength, headDimHalf: Math.floor(spec.rope.dim / 2), initFactor: plan.initFactor };
  const plannedCells = variants.flatMap((v) => seeds.map((seed) => ({ v, seed })));
  const cells: StudyCell[] = [];
  const ranCells: string[] = [];
  const cellSeconds: number[] = [];
  for (const [i, { v, seed }] of plannedCells.entries()) {
    const name = cellName(v, seed);
    const cellDir = path.join(out, 'cells', v, `seed-${seed}`);
    const done = await readJson<StudyCell>(path.join(cellDir, CELL_JSON));
    if (done) {
      cells.push(done);
      continue;
    }
    const started = Date.now();
    const remaining = plannedCells.length - i;
    const eta = () => {
      if (!cellSeconds.length) return '';
      const mean = cellSeconds.reduce((a, b) => a + b, 0) / cellSeconds.length;
      return `; study ETA ${minutes(Math.max(0, remaining * mean - (Date.now() - started) / 1000))}`;
    };
    const tag = `[${i + 1}/${plannedCells.length} ${name}]`;
    const cellProgress = (t: string) => progress(`${tag} ${t}${eta()}`);
    const cell = await runCell({ v, seed, name, cellDir, out, base, plan, ctx, data, text, backend, log, cellProgress, started });
    // Atomic: a cell.json is either complete or absent, so a killed run resumes at this cell.
    await writeFileAtomically(path.join(cellDir, CELL_JSON), JSON.stringify(cell, null, 2) + '\n');
    cells.push(cell);
    ranCells.push(name);
    cellSeconds.push(cell.seconds);
    const acc = cell.accuracy.map((a) => `${a.length}: ${(a.accuracy * 100).toFixed(0)}%`).join(', ');
    log(`${tag} done in ${minutes(cell.seconds)}: passkey ${acc}`);
  }

  const aggregate = aggregateStudy(cells, { plan, variants, seeds });
  const result: StudyResult = {
    out,
    report: path.join(out, 'report.html'),
    model: base,
    plan,
    variants,
    seeds,
    quick,
    intervalMethod: INTERVAL_METHOD,
    cells,
    ranCells,
    aggregate,
    verdict: aggregate.verdict.text,
    seconds: (Date.now() - t0) / 1000,
    cellSeconds: cells.reduce((a, c) => a + c.seconds, 0),
  };
  await writeStudyFiles(result, commands, backend);
  return result;
}

/**
 * A folder holds one plan: cells measured under another budget must not be mixed into this one. Records
 * the plan in a fresh folder; returns the command lines of the runs so far, this one last.
 */
async function claimStudyFolder(out: string, base: string, plan: StudyPlan, given: string | undefined, command: string): Promise<string[]> {
  const planRecord = { model: base, plan };
  const previous = await readJson<typeof planRecord>(path.join(out, STUDY_PLAN_JSON));
  if (previous && canonicalJson(previous) !== canonicalJson(planRecord)) {
    throw new FopeifyError('OUTPUT_EXISTS', `${given ?? 'fopeify-study'} holds a study with another model or plan (see ${STUDY_PLAN_JSON}); choose another ${optionName('out')} to run this one`, {
      option: 'out',
    });
  }
  if (!previous) await writeFileAtomically(path.join(out, STUDY_PLAN_JSON), JSON.stringify(planRecord, null, 2) + '\n');
  const earlier = await readJson<{ commands?: string[] }>(path.join(out, STUDY_JSON));
  return [...(earlier?.commands ?? []), command];
}

/** study.json and report.html. */
async function writeStudyFiles(result: StudyResult, commands: string[], backend: BackendInfo): Promise<void> {
  const studyJson = {
    fopeify_study: 1,
    fopeify_version: VERSION,
    commands,
    backend: backend.description,
    heldOutText: HELD_OUT_TEXT,
    variantDescriptions: Object.fromEntries(result.variants.map((v) => [v, { label: VARIANTS[v].label, description: VARIANTS[v].description, recipe: VARIANTS[v].recipe }])),
    ...result,
  };
  await writeFileAtomically(path.join(result.out, STUDY_JSON), JSON.stringify(studyJson, null, 2) + '\n');
  await writeStudyReport(result.out, result);
}
