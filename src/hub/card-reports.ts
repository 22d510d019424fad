/**
 * The evaluation reports a model card reads (`summary.json`, `ppl.json`, written by `fopeify needle` /
 * `fopeify ppl`), parsed defensively: a folder may hold hand-edited or foreign files, and a report that
 * is not one is skipped, never trusted.
 */
import path from 'node:path';
import { parseBoundedJson } from '../io/bounded-json.js';
import { PPL_JSON, SUMMARY_JSON, type NeedleSummary as NeedleSummaryFile, type PerplexitySummary } from '../io/formats.js';
import { MAX_JSON_DEPTH, ModelFolder, readOptionalRegularFile } from '../io/model-folder.js';

/** Cards, configs and reports read for a card are small; anything larger is not one of them. */
export const MAX_CARD_INPUT_BYTES = 16 * 1024 * 1024;

/** What a card reads of a needle / passkey report (`summary.json`). */
export type NeedleSummary = Pick<NeedleSummaryFile, 'task' | 'lengths' | 'results'>;

/** What a card reads of a perplexity-by-window report (`ppl.json`). */
export type PplReport = Pick<PerplexitySummary, 'windows' | 'results' | 'dataset'>;

export interface CardEvals {
  needle?: NeedleSummary;
  ppl?: PplReport;
  /** Which `model` of the reports is the model of this card (default: guessed per report, see `pickReportModel`). */
  model?: string;
  /** Names this model may have in the reports (repo id, folder path, folder name), for the guess. */
  aliases?: string[];
}

function isNum(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

/** A `summary.json` as the eval command writes it, or undefined when it is not one. */
export function parseNeedleSummary(json: unknown): NeedleSummary | undefined {
  const j = json as Partial<NeedleSummary> | null;
  if (!j || (j.task !== 'passkey' && j.task !== 'niah') || !Array.isArray(j.lengths) || !Array.isArray(j.results)) return undefined;
  const results = j.results.filter(
    (r) => r && typeof r.model === 'string' && isNum(r.context_length) && isNum(r.accuracy) && isNum(r.trials),
  );
  return { task: j.task, lengths: j.lengths.filter(isNum), results };
}

/** A `ppl.json` as the eval command writes it, or undefined when it is not one. */
export function parsePplReport(json: unknown): PplReport | undefined {
  const j = json as Partial<PplReport> | null;
  if (!j || !Array.isArray(j.windows) || !Array.isArray(j.results)) return undefined;
  const results = j.results.filter((r) => r && typeof r.model === 'string' && isNum(r.window) && isNum(r.ppl));
  return { windows: j.windows.filter(isNum), results, ...(typeof j.dataset === 'string' ? { dataset: j.dataset } : {}) };
}

/** An optional JSON input (report, config): undefined when missing, not a regular file, too large or not JSON. */
async function readJson(p: string): Promise<unknown> {
  const text = await readOptionalRegularFile(p, MAX_CARD_INPUT_BYTES);
  try {
    return text === undefined ? undefined : parseBoundedJson(text, MAX_JSON_DEPTH);
  } catch {
    return undefined;
  }
}

/** A model folder's own JSON file: undefined when missing or not JSON; UNSAFE_PATH when it leads out of the folder. */
export async function readFolderJson(dir: string, name: string): Promise<unknown> {
  const text = await ModelFolder.at(dir).readText(name, { maxBytes: MAX_CARD_INPUT_BYTES, code: 'BAD_CONFIG' });
  try {
    return text === undefined ? undefined : parseBoundedJson(text, MAX_JSON_DEPTH);
  } catch {
    return undefined;
  }
}

/** Eval reports in `<dir>`, `<dir>/eval` or `<dir>/../report` (first found of each kind wins). */
export async function findEvalReports(dir: string): Promise<{ needle?: NeedleSummary; ppl?: PplReport; files: string[] }> {
  const places = [dir, path.join(dir, 'eval'), path.join(dir, '..', 'report')];
  const out: { needle?: NeedleSummary; ppl?: PplReport; files: string[] } = { files: [] };
  // The first report of a kind found (in the order of `places`) wins.
  const first = async <T>(name: string, parse: (json: unknown) => T | undefined): Promise<T | undefined> => {
    for (const place of places) {
      const p = path.join(place, name);
      const report = parse(await readJson(p));
      if (report) {
        out.files.push(p);
        return report;
      }
    }
    return undefined;
  };
  out.needle = await first(SUMMARY_JSON, parseNeedleSummary);
  out.ppl = await first(PPL_JSON, parsePplReport);
  return out;
}

/**
 * Which report `model` is this card's model: an exact or last-segment match with a candidate (repo id,
 * folder name), else the only model, else the only one that is not the base model. Undefined when unsure
 * (then the card shows the comparison tables but claims no model-index results).
 */
export function pickReportModel(models: string[], candidates: string[], baseModel?: string): string | undefined {
  const distinct = [...new Set(models)];
  const last = (s: string): string => s.replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? s;
  for (const c of candidates.filter(Boolean)) {
    const hit = distinct.find((m) => m === c) ?? distinct.find((m) => last(m) === last(c));
    if (hit) return hit;
  }
  if (distinct.length === 1) return distinct[0];
  if (baseModel) {
    const others = distinct.filter((m) => m !== baseModel && last(m) !== last(baseModel));
    if (others.length === 1) return others[0];
  }
  return undefined;
}
