/**
 * The README.md model card: YAML front matter the Hub indexes (base_model, tags, library_name,
 * model-index with eval results) and a body whose fopeify part sits between two HTML comments, so a
 * refresh rewrites only that part and keeps whatever the user wrote around it.
 *
 * `buildModelCard` is pure (text in, text out) so convert can use the same format; `refreshModelCard`
 * gathers its inputs from a model folder (config.json, fopeify.json, eval reports) for push.
 */
import { howToLoadMarkdown } from '../bridge/engines.js';
import { hasFopeArchName } from '../config/fope-arch.js';
import path from 'node:path';
import { writeFileAtomically } from '../io/atomic.js';
import { parseBoundedJson } from '../io/bounded-json.js';
import { MAX_JSON_DEPTH, ModelFolder, readOptionalRegularFile } from '../io/model-folder.js';
import { redact } from './redact.js';

/** Cards, configs and reports read for a card are small; anything larger is not one of them. */
const MAX_CARD_INPUT_BYTES = 16 * 1024 * 1024;

export const CARD_BEGIN = '<!-- fopeify:begin — this section is rewritten by fopeify; edit outside it -->';
export const CARD_END = '<!-- fopeify:end -->';
const BEGIN_RE = /<!-- fopeify:begin[^>]*-->/;

/** A needle / passkey report (`summary.json`). */
export interface NeedleSummary {
  task: 'passkey' | 'niah';
  lengths: number[];
  results: { model: string; context_length: number; accuracy: number; trials: number }[];
}

/** A perplexity-by-window report (`ppl.json`). */
export interface PplReport {
  windows: number[];
  results: { model: string; window: number; ppl: number }[];
  /** Name of the evaluated text, when the report gives one. */
  dataset?: string;
}

export interface CardEvals {
  needle?: NeedleSummary;
  ppl?: PplReport;
  /** Which `model` of the reports is the model of this card (default: guessed per report, see `pickReportModel`). */
  model?: string;
  /** Names this model may have in the reports (repo id, folder path, folder name), for the guess. */
  aliases?: string[];
}

export interface ModelCardInput {
  /** The model it was made from (Hub id or path); a Hub id becomes `base_model`. */
  baseModel?: string;
  /** What was done, one line each (rendered as a list). */
  done?: string[];
  /** fopeify.json (provenance); summarised in the card, never dumped whole. */
  provenance?: Record<string, unknown>;
  evals?: CardEvals;
  /** The config has FoPE keys: adds the `fope` tag. */
  fope?: boolean;
  /** Extra tags. */
  tags?: string[];
  /** H1 title (default "FoPE conversion of <base>" / "FoPE model"). */
  title?: string;
  /** Name in model-index (the repo id, usually). */
  modelName?: string;
  /** Further `## heading` sections inside fopeify's part (convert's settings table, loading notes, …). */
  sections?: { heading: string; body: string }[];
  /** The current README.md, to merge into (front matter keys and body text outside fopeify's part are kept). */
  existing?: string;
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

// ------------------------------------------------------------------ report parsing

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
async function readFolderJson(dir: string, name: string): Promise<unknown> {
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
  for (const place of places) {
    if (!out.needle) {
      const p = path.join(place, 'summary.json');
      const n = parseNeedleSummary(await readJson(p));
      if (n) {
        out.needle = n;
        out.files.push(p);
      }
    }
    if (!out.ppl) {
      const p = path.join(place, 'ppl.json');
      const r = parsePplReport(await readJson(p));
      if (r) {
        out.ppl = r;
        out.files.push(p);
      }
    }
  }
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

// ------------------------------------------------------------------ YAML

/** A YAML scalar: JSON's double-quoted strings are valid YAML; plain when unambiguous. */
function yamlScalar(v: string | number | boolean): string {
  if (typeof v !== 'string') return String(v);
  return /^[A-Za-z0-9][\w./-]*$/.test(v) && !/^(true|false|null|yes|no|on|off|~)$/i.test(v) && !/^[\d.]+$/.test(v) ? v : JSON.stringify(v);
}

function round(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}

interface FrontBlock {
  key: string;
  lines: string[];
}

/** Split YAML front matter into top-level blocks (a key line and its indented/list continuation). */
function frontBlocks(yaml: string): FrontBlock[] {
  const blocks: FrontBlock[] = [];
  for (const line of yaml.split('\n')) {
    const m = /^([A-Za-z_][\w-]*)\s*:/.exec(line);
    if (m) blocks.push({ key: m[1], lines: [line] });
    else if (blocks.length && line.trim() !== '') blocks[blocks.length - 1].lines.push(line);
  }
  return blocks;
}

function tagsOf(block: FrontBlock | undefined): string[] {
  if (!block) return [];
  const inline = /^tags\s*:\s*\[(.*)\]\s*$/.exec(block.lines[0]);
  if (inline) return inline[1].split(',').map((t) => t.trim().replace(/^["']|["']$/g, '')).filter(Boolean);
  return block.lines
    .slice(1)
    .map((l) => /^\s*-\s*(.+?)\s*$/.exec(l)?.[1])
    .filter((t): t is string => Boolean(t))
    .map((t) => t.replace(/^["']|["']$/g, ''));
}

/** Split a README into front matter (without the fences) and body. */
export function splitCard(text: string): { front: string; body: string } {
  const m = /^---\r?\n([\s\S]*?)\r?\n---[ \t]*(?:\r?\n|$)/.exec(text);
  return m ? { front: m[1], body: text.slice(m[0].length) } : { front: '', body: text };
}

function modelIndex(input: ModelCardInput): string[] {
  const ev = input.evals;
  if (!ev || (!ev.needle && !ev.ppl)) return [];
  // Each report is matched on its own: an eval run may name the model by path, another by repo id.
  const mineIn = (rows: { model: string }[]): string | undefined =>
    ev.model ?? pickReportModel(rows.map((r) => r.model), [input.modelName ?? '', ...(ev.aliases ?? [])], input.baseModel);
  const results: string[] = [];
  if (ev.needle) {
    const mine = mineIn(ev.needle.results);
    const rows = ev.needle.results.filter((r) => r.model === mine).sort((a, b) => a.context_length - b.context_length);
    if (rows.length) {
      const [name, type] = ev.needle.task === 'passkey' ? ['Passkey retrieval (synthetic)', 'passkey'] : ['Needle in a haystack (synthetic)', 'needle-in-a-haystack'];
      results.push('  - task:', '      type: text-generation', '      name: Text Generation', '    dataset:', `      name: ${yamlScalar(name)}`, `      type: ${type}`, '    metrics:');
      for (const r of rows) {
        results.push('    - type: accuracy', `      name: ${yamlScalar(`accuracy at ${r.context_length} tokens (${r.trials} trials)`)}`, `      value: ${round(r.accuracy)}`);
      }
    }
  }
  if (ev.ppl) {
    const mine = mineIn(ev.ppl.results);
    const rows = ev.ppl.results.filter((r) => r.model === mine).sort((a, b) => a.window - b.window);
    if (rows.length) {
      results.push('  - task:', '      type: text-generation', '      name: Text Generation', '    dataset:', `      name: ${yamlScalar(ev.ppl.dataset ?? 'held-out text')}`, '      type: text', '    metrics:');
      for (const r of rows) results.push('    - type: perplexity', `      name: ${yamlScalar(`perplexity at ${r.window} tokens`)}`, `      value: ${round(r.ppl)}`);
    }
  }
  if (!results.length) return [];
  const name = input.modelName ?? ev.model ?? input.title ?? 'model';
  return ['model-index:', `- name: ${yamlScalar(name)}`, '  results:', ...results];
}

function frontMatter(input: ModelCardInput, existingFront: string): string[] {
  const old = frontBlocks(existingFront);
  const get = (k: string): FrontBlock | undefined => old.find((b) => b.key === k);
  const out: string[] = [];
  const hubBase = input.baseModel && HUB_ID.test(input.baseModel) ? input.baseModel : undefined;
  if (hubBase) out.push(`base_model: ${yamlScalar(hubBase)}`);
  else if (get('base_model')) out.push(...get('base_model')!.lines);
  out.push(...(get('library_name')?.lines ?? ['library_name: transformers']));
  const tags = [...new Set([...(input.fope ? ['fope'] : []), 'fopeify', ...(input.tags ?? []), ...tagsOf(get('tags'))])];
  out.push('tags:', ...tags.map((t) => `- ${yamlScalar(t)}`));
  const index = modelIndex(input);
  if (index.length) out.push(...index);
  else if (get('model-index')) out.push(...get('model-index')!.lines);
  const managed = new Set(['base_model', 'library_name', 'tags', 'model-index']);
  for (const b of old) if (!managed.has(b.key)) out.push(...b.lines);
  return ['---', ...out, '---'];
}

// ------------------------------------------------------------------ body

function table(header: string[], rows: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

function evalSection(ev: CardEvals): string[] {
  const out: string[] = [];
  if (ev.needle?.results.length) {
    const n = ev.needle;
    const lengths = n.lengths.length ? n.lengths : [...new Set(n.results.map((r) => r.context_length))].sort((a, b) => a - b);
    const models = [...new Set(n.results.map((r) => r.model))];
    out.push(`${n.task === 'passkey' ? 'Passkey retrieval' : 'Needle in a haystack'} accuracy by context length (tokens):`, '');
    out.push(
      ...table(
        ['model', ...lengths.map(String)],
        models.map((m) => [
          `\`${m}\``,
          ...lengths.map((L) => {
            const r = n.results.find((x) => x.model === m && x.context_length === L);
            return r ? `${(r.accuracy * 100).toFixed(0)}% (${r.trials})` : '–';
          }),
        ]),
      ),
      '',
    );
  }
  if (ev.ppl?.results.length) {
    const p = ev.ppl;
    const windows = p.windows.length ? p.windows : [...new Set(p.results.map((r) => r.window))].sort((a, b) => a - b);
    const models = [...new Set(p.results.map((r) => r.model))];
    out.push(`Perplexity by context window (tokens)${p.dataset ? ` on ${p.dataset}` : ''}:`, '');
    out.push(
      ...table(
        ['model', ...windows.map(String)],
        models.map((m) => [`\`${m}\``, ...windows.map((w) => p.results.find((x) => x.model === m && x.window === w)?.ppl.toFixed(2) ?? '–')]),
      ),
      '',
    );
  }
  return out;
}

function fmt(v: unknown): string {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'object') return `\`${JSON.stringify(v)}\``;
  return String(v);
}

function provenanceSection(p: Record<string, unknown>): string[] {
  const rows: string[][] = [];
  const src = p.source as Record<string, unknown> | undefined;
  if (src?.id) rows.push(['source', `${fmt(src.id)}${src.commit ? ` @ \`${String(src.commit).slice(0, 12)}\`` : src.revision ? ` (${fmt(src.revision)})` : ''}`]);
  if (p.tool || p.version) rows.push(['tool', `${fmt(p.tool ?? 'fopeify')} ${fmt(p.version ?? '')}`.trim()]);
  if (p.command) rows.push(['command', fmt(p.command)]);
  const opts = p.options as Record<string, unknown> | undefined;
  if (opts && typeof opts === 'object') {
    const set = Object.entries(opts).filter(([, v]) => v !== null && v !== undefined);
    if (set.length) rows.push(['options', set.map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(', ')]);
  }
  const fope = p.fope as Record<string, unknown> | undefined;
  if (fope && typeof fope === 'object') {
    for (const k of ['family', 'num_inv_freq', 'clip_length', 'coefficient_shape', 'yarn_semantics']) {
      if (fope[k] !== undefined && fope[k] !== null) rows.push([`fope.${k}`, fmt(fope[k])]);
    }
  }
  if (!rows.length) return ['Provenance is in `fopeify.json`.', ''];
  return [...table(['', ''], rows.map((r) => r.map((c) => c.replace(/\|/g, '\\|')))), '', 'Full provenance (source files and hashes, every option) is in `fopeify.json`.', ''];
}

/** fopeify's part of the body (between the markers). */
function fopeifySection(input: ModelCardInput, withTitle: boolean): string[] {
  const title = input.title ?? (input.baseModel ? `FoPE conversion of ${input.baseModel}` : 'FoPE model');
  const out: string[] = [CARD_BEGIN, ''];
  if (withTitle) out.push(`# ${title}`, '');
  const base = input.baseModel
    ? HUB_ID.test(input.baseModel)
      ? `[${input.baseModel}](https://huggingface.co/${input.baseModel})`
      : `\`${input.baseModel}\``
    : undefined;
  out.push(
    `${input.fope ? 'A FoPE (Fourier Position Embedding, arXiv 2412.17739) model' : 'A model'}${base ? ` made from ${base}` : ''} with [fopeify](https://www.npmjs.com/package/fopeify).`,
    '',
  );
  if (input.done?.length) out.push('## What was done', '', ...input.done.map((l) => `- ${l}`), '');
  for (const s of input.sections ?? []) out.push(`## ${s.heading}`, '', s.body.trim(), '');
  if (input.evals && (input.evals.needle?.results.length || input.evals.ppl?.results.length)) out.push('## Evaluation', '', ...evalSection(input.evals));
  if (input.provenance) out.push('## Provenance', '', ...provenanceSection(input.provenance));
  out.push(CARD_END);
  return out;
}

/** H2 sections of a markdown body: heading → text. */
export function h2Sections(body: string): { heading: string; body: string }[] {
  const out: { heading: string; body: string }[] = [];
  for (const line of body.split('\n')) {
    const m = /^##\s+(.+?)\s*$/.exec(line);
    if (m) out.push({ heading: m[1], body: '' });
    else if (out.length) out[out.length - 1].body += line + '\n';
  }
  return out;
}

/** A card body written by an older fopeify (no markers): convert's card says "by fopeify". */
export function isUnmarkedFopeifyCard(body: string): boolean {
  return !BEGIN_RE.test(body) && /^# FoPE conversion of /m.test(body) && /\bby fopeify\b/.test(body);
}

/** The whole README.md for `input`, merged into `input.existing` when given. */
export function buildModelCard(input: ModelCardInput): string {
  const { front, body } = splitCard(input.existing ?? '');
  let before = '';
  let after = '';
  if (BEGIN_RE.test(body)) {
    const start = body.search(BEGIN_RE);
    const endAt = body.indexOf(CARD_END, start);
    before = body.slice(0, start);
    after = endAt >= 0 ? body.slice(endAt + CARD_END.length) : '';
  } else if (!isUnmarkedFopeifyCard(body)) {
    before = body; // the user's own text: kept, with fopeify's part appended below it
  }
  const userText = before + after;
  const withTitle = !/^#\s/m.test(userText);
  const parts = [
    frontMatter(input, front).join('\n'),
    '',
    before.trim() ? before.trimEnd() + '\n' : undefined,
    fopeifySection(input, withTitle).join('\n'),
    after.trim() ? '\n' + after.trim() : undefined,
  ].filter((x): x is string => x !== undefined);
  return redact(parts.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n');
}

// ------------------------------------------------------------------ from a folder

/** FoPE is on when any FoPE key is non-null in rope_parameters / rope_scaling (or at the top level). */
export function hasFopeKeys(config: unknown): boolean {
  const keys = ['fope_init_factor', 'fope_sep_head', 'num_inv_freq', 'fope_num_inv_freq'];
  const c = config as Record<string, unknown> | null;
  if (!c || typeof c !== 'object') return false;
  const dicts = [c, c.rope_parameters, c.rope_scaling].filter((d): d is Record<string, unknown> => Boolean(d) && typeof d === 'object');
  return dicts.some((d) => keys.some((k) => d[k] !== undefined && d[k] !== null));
}

function doneFromProvenance(p: Record<string, unknown> | undefined, fope: boolean): string[] {
  for (const k of ['done', 'steps']) {
    const v = p?.[k];
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  }
  const lines: string[] = [];
  const f = p?.fope as Record<string, unknown> | undefined;
  if (p?.command === 'convert' || f) {
    lines.push(
      `Rotary position embedding replaced by FoPE${f?.num_inv_freq ? ` (kept ${String(f.num_inv_freq)} frequencies${f.clip_length ? `, clip length ${String(f.clip_length)} tokens` : ''})` : ''}.`,
    );
  } else if (fope) {
    lines.push('Rotary position embedding replaced by FoPE (see the FoPE keys in config.json).');
  }
  return lines;
}

export interface RefreshCardOptions {
  /** Repository the card is for (model-index name, report matching). */
  repo?: string;
  /** Evals to use instead of looking for reports. */
  evals?: CardEvals;
}

/** Write (or rewrite) `<dir>/README.md` from the folder's config, fopeify.json and eval reports. */
export async function refreshModelCard(dir: string, options: RefreshCardOptions = {}): Promise<{ path: string; changed: boolean; content: string }> {
  const config = await readFolderJson(dir, 'config.json');
  const prov = (await readFolderJson(dir, 'fopeify.json')) as Record<string, unknown> | undefined;
  const provenance = prov && typeof prov === 'object' && !Array.isArray(prov) ? prov : undefined;
  const source = provenance?.source as { id?: unknown } | undefined;
  const baseModel = typeof source?.id === 'string' ? source.id : undefined;
  const fope = hasFopeKeys(config);
  const readmePath = path.join(dir, 'README.md');
  let existing: string | undefined;
  // Read through the folder's checks: a README.md linked from outside (or a FIFO) is refused, never read into the card.
  existing = await ModelFolder.at(dir).readText('README.md', { maxBytes: MAX_CARD_INPUT_BYTES, code: 'BAD_ARGUMENT' });
  let done = doneFromProvenance(provenance, fope);
  let sections: { heading: string; body: string }[] | undefined;
  let title: string | undefined;
  const body = existing ? splitCard(existing).body : '';
  if (existing && isUnmarkedFopeifyCard(body)) {
    // A card from convert (before it used this format): keep its details as fopeify's own sections.
    const old = h2Sections(body);
    const oldDone = old.find((s) => s.heading === 'What was done');
    const bullets = oldDone?.body.split('\n').map((l) => /^\s*-\s+(.+)$/.exec(l)?.[1]).filter((x): x is string => Boolean(x));
    if (bullets?.length) done = bullets;
    sections = old.filter((s) => !['What was done', 'Evaluation', 'Provenance', 'How to load', 'Loading'].includes(s.heading));
    title = /^# (.+)$/m.exec(body)?.[1];
  }
  if (fope && config && typeof config === 'object') {
    // Load instructions name where the model will be (the repository), for the naming it has.
    const arch = hasFopeArchName(config as Record<string, unknown>) ? 'fope' : 'keep';
    sections = [...(sections ?? []), { heading: 'How to load', body: howToLoadMarkdown(arch, options.repo ?? `./${path.basename(path.resolve(dir))}`) }];
  }
  let evals = options.evals;
  if (!evals) {
    const found = await findEvalReports(dir);
    evals = { needle: found.needle, ppl: found.ppl, aliases: [options.repo ?? '', dir, path.basename(path.resolve(dir))] };
  }
  const content = buildModelCard({
    baseModel,
    done,
    provenance,
    evals,
    fope,
    title,
    sections,
    modelName: options.repo,
    existing,
  });
  const changed = content !== existing;
  if (changed) await writeFileAtomically(readmePath, content);
  return { path: readmePath, changed, content };
}
