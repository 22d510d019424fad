/**
 * `runNeedle`: paired passkey / needle-in-a-haystack comparison of models over a grid of context lengths ×
 * depths × trials. Every model is scored on the same prompt text per cell (keys from
 * SeededRandom(seed, "length:depth:trial"), so adding models or lengths never changes existing cells);
 * prompts are sized with the first model's tokenizer and each record keeps its own model's token count.
 * Records are appended to results.jsonl as they finish; a rerun into the same folder skips them.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FopeifyError, outputError } from '../errors.js';
import type { BackendInfo } from '../backend/select.js';
import type { ModelSourceOptions } from '../hub/source.js';
import { localFolders, prepareOutputFolder } from '../io/output-folder.js';
import { buildNiahPrompt, buildPasskeyPrompt, niahNeedleFor, passkeyFor, type NeedlePrompt, type NeedleTask } from './prompts.js';
import { appendRecord, readRecords, recordKey, type NeedleRecord } from './records.js';
import { RESULTS_FILE, writeNeedleReport } from './report.js';
import { runtimeLoader, type EvalModel, type EvalModelLoader, type EvalTokenizer } from './runner.js';
import { scoreCell, type ScoringMode } from './scoring.js';
import { summarize, type NeedleSettings, type NeedleSummary } from './summary.js';

export const NEEDLE_DEFAULTS = {
  task: 'passkey' as NeedleTask,
  lengths: [512, 1024, 2048, 4096],
  depths: [0, 0.25, 0.5, 0.75, 1],
  trials: 5,
  seed: 0,
  mode: 'generate' as ScoringMode,
  maxNewTokens: 10,
};

export interface NeedleProgress {
  /** The record just written. */
  record: NeedleRecord;
  /** Cells scored in this run so far, and how many this run has to score in all. */
  done: number;
  total: number;
  /** Cells found finished in results.jsonl and skipped. */
  skipped: number;
}

export interface NeedleOptions {
  /** Models (folders or Hub ids), in report order; records name them as given. */
  models: string[];
  /** Output folder (created; a rerun into it resumes). */
  out: string;
  /** 'passkey' (default) or 'niah'. */
  task?: NeedleTask;
  /** Target prompt lengths in tokens (default 512, 1024, 2048, 4096). */
  lengths?: number[];
  /** Key depths in [0, 1] (default 0, 0.25, 0.5, 0.75, 1). */
  depths?: number[];
  /** Trials per cell (default 5). */
  trials?: number;
  /** Seed of keys and haystack offsets (default 0). */
  seed?: number;
  /** 'generate' (default): greedy decoding, first integer; 'teacher-forced': argmax of every answer token. */
  mode?: ScoringMode;
  /** niah: a text file to use as the haystack (default: the built-in filler). */
  haystack?: string;
  /** niah: the haystack text itself (instead of a file). */
  haystackText?: string;
  /** New tokens in generate mode (default 10). */
  maxNewTokens?: number;
  /** Hub resolution options for the default loader. */
  source?: ModelSourceOptions;
  /** Default loader: load weights holding NaN / Inf anyway (scores computed from them are still refused). */
  allowNonFinite?: boolean;
  /** Default loader: the activated backend the models compute on (default: the active one). */
  backend?: BackendInfo;
  /** Where models come from (default: fopeify's tfjs runtime). */
  loader?: EvalModelLoader;
  /** Before the first cell: how many cells this run scores and how many it found finished. */
  onStart?: (event: { total: number; skipped: number }) => void;
  onProgress?: (event: NeedleProgress) => void;
  /** A model starts loading / is loaded / has nothing left to do. */
  onModel?: (event: { model: string; phase: 'loading' | 'loaded' | 'skipped' }) => void;
  /** Things the user should know (prompts longer than a target, differing tokenizers). */
  onWarning?: (message: string) => void;
}

function bad(message: string): FopeifyError {
  return new FopeifyError('BAD_ARGUMENT', message);
}

/** Options with defaults applied and checked. */
export function needleSettings(options: NeedleOptions): NeedleSettings & { maxNewTokens: number } {
  const task = options.task ?? NEEDLE_DEFAULTS.task;
  const mode = options.mode ?? NEEDLE_DEFAULTS.mode;
  const lengths = options.lengths ?? NEEDLE_DEFAULTS.lengths;
  const depths = options.depths ?? NEEDLE_DEFAULTS.depths;
  const trials = options.trials ?? NEEDLE_DEFAULTS.trials;
  const seed = options.seed ?? NEEDLE_DEFAULTS.seed;
  const maxNewTokens = options.maxNewTokens ?? NEEDLE_DEFAULTS.maxNewTokens;
  if (task !== 'passkey' && task !== 'niah') throw bad(`--task must be passkey or niah (got ${task})`);
  if (mode !== 'generate' && mode !== 'teacher-forced') throw bad(`--mode must be generate or teacher-forced (got ${mode})`);
  if (!options.models.length) throw bad('--models needs at least one model');
  if (new Set(options.models).size !== options.models.length) throw bad('--models lists a model twice');
  if (!lengths.length || lengths.some((l) => !Number.isInteger(l) || l < 1)) throw bad(`--lengths must be positive integers (got ${lengths.join(',')})`);
  if (new Set(lengths).size !== lengths.length) throw bad('--lengths lists a length twice');
  if (!depths.length || depths.some((d) => !(d >= 0 && d <= 1))) {
    throw bad(`--depths must be fractions from 0 to 1, e.g. 0,0.25,0.5,0.75,1 (got ${depths.join(',')})`);
  }
  if (new Set(depths).size !== depths.length) throw bad('--depths lists a depth twice');
  if (!Number.isInteger(trials) || trials < 1) throw bad(`--trials must be a positive integer (got ${trials})`);
  if (!Number.isInteger(seed)) throw bad(`--seed must be an integer (got ${seed})`);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw bad(`max new tokens must be a positive integer (got ${maxNewTokens})`);
  if (task === 'passkey' && (options.haystack !== undefined || options.haystackText !== undefined)) {
    throw bad('--haystack applies to --task niah only (the passkey filler is fixed by its template)');
  }
  return { task, lengths: [...lengths], depths: [...depths], trials, seed, mode, maxNewTokens };
}

async function readHaystack(options: NeedleOptions): Promise<{ text?: string; id: string }> {
  if (options.haystackText !== undefined) {
    if (!options.haystackText.trim()) throw bad('the haystack text is empty');
    return { text: options.haystackText, id: 'sha256:' + createHash('sha256').update(options.haystackText).digest('hex').slice(0, 16) };
  }
  if (options.haystack === undefined) return { id: 'builtin' };
  let text: string;
  try {
    text = await fs.readFile(options.haystack, 'utf8');
  } catch {
    throw bad(`cannot read --haystack ${options.haystack}`);
  }
  if (!text.trim()) throw bad(`--haystack ${options.haystack} is empty`);
  return { text, id: 'sha256:' + createHash('sha256').update(text).digest('hex').slice(0, 16) };
}

interface Cell {
  length: number;
  depth: number;
  trial: number;
}

/** Builds and caches the prompt of each cell, sized with one reference tokenizer. */
class PromptBook {
  private readonly prompts = new Map<string, NeedlePrompt>();
  private readonly hints = new Map<number, number>();
  private readonly warned = new Set<number>();
  constructor(
    private readonly settings: NeedleSettings,
    private readonly tokenizer: EvalTokenizer,
    private readonly haystack: string | undefined,
    private readonly warn: (m: string) => void,
  ) {}

  get(cell: Cell): NeedlePrompt {
    const k = `${cell.length}:${cell.depth}:${cell.trial}`;
    let p = this.prompts.get(k);
    if (p) return p;
    const { seed } = this.settings;
    const common = {
      targetTokens: cell.length,
      depth: cell.depth,
      countTokens: (text: string) => this.tokenizer.encode(text).length,
      hint: this.hints.get(cell.length),
    };
    p =
      this.settings.task === 'passkey'
        ? buildPasskeyPrompt({ ...common, key: passkeyFor(seed, cell.length, cell.depth, cell.trial) })
        : buildNiahPrompt({ ...common, needle: niahNeedleFor(seed, cell.length, cell.depth, cell.trial), haystack: this.haystack });
    this.hints.set(cell.length, p.fillerChars);
    if (p.overLength && !this.warned.has(cell.length)) {
      this.warned.add(cell.length);
      this.warn(`length ${cell.length} is shorter than the ${this.settings.task} template alone (${p.tokens} tokens): its prompts have no filler`);
    }
    this.prompts.set(k, p);
    return p;
  }
}

/** Run (or resume) the comparison and write every output file; returns summary.json's content. */
export async function runNeedle(options: NeedleOptions): Promise<NeedleSummary> {
  const settings = needleSettings(options);
  const warn = options.onWarning ?? (() => {});
  const haystack = settings.task === 'niah' ? await readHaystack(options) : undefined;
  const loader = options.loader ?? runtimeLoader({ source: options.source, allowNonFinite: options.allowNonFinite, backend: options.backend });
  // Never into (or around) a model folder it reads; stale temporaries of killed runs go.
  const out = await prepareOutputFolder(options.out, { sources: await localFolders(options.models) });
  const resultsFile = path.join(out, RESULTS_FILE);
  const existing = await readRecords(resultsFile);
  const foreign = existing.find(
    (r) => r.task !== settings.task || r.mode !== settings.mode || r.seed !== settings.seed || (settings.task === 'niah' && r.haystack !== haystack?.id),
  );
  if (foreign) {
    throw new FopeifyError(
      'OUTPUT_EXISTS',
      `${options.out} holds results of another run (task ${foreign.task}, mode ${foreign.mode}, seed ${foreign.seed}${foreign.task === 'niah' ? ', another haystack' : ''}); choose another --out to keep both`,
    );
  }
  const finished = new Set(existing.map(recordKey));
  const cells: Cell[] = [];
  for (const length of settings.lengths) for (const depth of settings.depths) for (let trial = 0; trial < settings.trials; trial++) cells.push({ length, depth, trial });
  const pending = options.models.map((model) => ({
    model,
    cells: cells.filter((c) => !finished.has(recordKey({ model, context_length: c.length, depth: c.depth, trial: c.trial }))),
  }));
  const total = pending.reduce((s, p) => s + p.cells.length, 0);
  const skipped = options.models.length * cells.length - total;
  options.onStart?.({ total, skipped });
  const records = [...existing];
  let book: PromptBook | undefined;
  let done = 0;
  for (const { model, cells: remaining } of pending) {
    if (!remaining.length) {
      options.onModel?.({ model, phase: 'skipped' });
      continue;
    }
    book ??= new PromptBook(settings, await loader.tokenizer(options.models[0]!), haystack?.text, warn);
    options.onModel?.({ model, phase: 'loading' });
    const lm: EvalModel = await loader.load(model);
    options.onModel?.({ model, phase: 'loaded' });
    let tokenizerWarned = false;
    try {
      for (const cell of remaining) {
        const prompt = book.get(cell);
        const t0 = performance.now();
        const outcome = await scoreCell(lm, prompt, settings.mode, settings.maxNewTokens);
        const seconds = Math.round(performance.now() - t0) / 1000;
        if (outcome.promptTokens !== prompt.tokens && !tokenizerWarned) {
          tokenizerWarned = true;
          warn(
            `${model} tokenizes the prompts differently from ${options.models[0]} (${outcome.promptTokens} vs ${prompt.tokens} tokens at length ${cell.length}); every model gets the same text, each record keeps its own prompt_tokens`,
          );
        }
        const record: NeedleRecord = {
          model,
          context_length: cell.length,
          depth: cell.depth,
          trial: cell.trial,
          key: prompt.key,
          response: outcome.response,
          correct: outcome.correct,
          seconds,
          task: settings.task,
          mode: settings.mode,
          seed: settings.seed,
          prompt_tokens: outcome.promptTokens,
          depth_actual: Math.round(prompt.depthActual * 1e4) / 1e4,
        };
        if (haystack) record.haystack = haystack.id;
        try {
          await appendRecord(resultsFile, record);
        } catch (err) {
          throw outputError(err, resultsFile);
        }
        records.push(record);
        done++;
        options.onProgress?.({ record, done, total, skipped });
      }
    } finally {
      lm.dispose();
    }
  }
  // Actual prompt lengths (with the reference tokenizer) per target, so over-length targets show.
  const ref = options.models[0]!;
  const promptTokens: Record<string, number | string> = {};
  for (const L of settings.lengths) {
    const ts = records
      .filter((r) => r.model === ref && r.context_length === L && settings.depths.includes(r.depth) && r.trial < settings.trials)
      .map((r) => r.prompt_tokens);
    if (!ts.length) continue;
    const lo = Math.min(...ts);
    const hi = Math.max(...ts);
    promptTokens[String(L)] = lo === hi ? lo : `${lo}-${hi}`;
  }
  const summary = summarize(records, settings, options.models, {
    models: options.models,
    prompt_tokens: promptTokens,
    max_new_tokens: settings.mode === 'generate' ? settings.maxNewTokens : undefined,
    haystack: settings.task === 'niah' ? (options.haystack ?? (options.haystackText !== undefined ? 'text' : 'built-in')) : undefined,
    prompt_tokenizer: options.models[0],
  });
  await writeNeedleReport(out, summary);
  return summary;
}
