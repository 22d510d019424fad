/**
 * The README.md model card of a folder pushed to the Hub: YAML front matter the Hub indexes (base_model,
 * tags, library_name, model-index with eval results; ./card-front-matter.ts) and a body whose fopeify part
 * sits between two HTML comments, so a refresh rewrites only that part and keeps whatever the user wrote
 * around it. Built from the pieces every fopeify card shares (src/card/markdown.ts).
 *
 * `buildModelCard` is pure (text in, text out); `refreshModelCard` gathers its inputs from a model folder
 * (config.json, fopeify.json, eval reports; ./card-reports.ts) for push.
 */
import path from 'node:path';
import { howToLoadMarkdown } from '../bridge/engines.js';
import { bulletList, HUB_ID, markdownTable, sectionLines } from '../card/markdown.js';
import { hasFopeArchName } from '../config/fope-arch.js';
import { writeFileAtomically } from '../io/atomic.js';
import { FOPEIFY_JSON, type FopeifyJson } from '../io/formats.js';
import { ModelFolder } from '../io/model-folder.js';
import { frontMatter, splitCard } from './card-front-matter.js';
import { findEvalReports, MAX_CARD_INPUT_BYTES, readFolderJson, type CardEvals } from './card-reports.js';
import { redact } from './redact.js';

export const CARD_BEGIN = '<!-- fopeify:begin — this section is rewritten by fopeify; edit outside it -->';
export const CARD_END = '<!-- fopeify:end -->';
const BEGIN_RE = /<!-- fopeify:begin[^>]*-->/;

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

function evalSection(ev: CardEvals): string[] {
  const out: string[] = [];
  if (ev.needle?.results.length) {
    const n = ev.needle;
    const lengths = n.lengths.length ? n.lengths : [...new Set(n.results.map((r) => r.context_length))].sort((a, b) => a - b);
    const models = [...new Set(n.results.map((r) => r.model))];
    out.push(`${n.task === 'passkey' ? 'Passkey retrieval' : 'Needle in a haystack'} accuracy by context length (tokens):`, '');
    out.push(
      ...markdownTable(
        ['model', ...lengths.map(String)],
        models.map((m) => [
          `\`${m}\``,
          ...lengths.map((L) => {
            const r = n.results.find((x) => x.model === m && x.context_length === L);
            return r ? `${(r.accuracy * 100).toFixed(0)}% (${r.trials})` : '–';
          }),
        ]),
      ),
    );
  }
  if (ev.ppl?.results.length) {
    if (out.length) out.push('');
    const p = ev.ppl;
    const windows = p.windows.length ? p.windows : [...new Set(p.results.map((r) => r.window))].sort((a, b) => a - b);
    const models = [...new Set(p.results.map((r) => r.model))];
    out.push(`Perplexity by context window (tokens)${p.dataset ? ` on ${p.dataset}` : ''}:`, '');
    out.push(
      ...markdownTable(
        ['model', ...windows.map(String)],
        models.map((m) => [`\`${m}\``, ...windows.map((w) => p.results.find((x) => x.model === m && x.window === w)?.ppl.toFixed(2) ?? '–')]),
      ),
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
  const src = p.source as Partial<FopeifyJson['source']> | undefined;
  if (src?.id) rows.push(['source', `${fmt(src.id)}${src.commit ? ` @ \`${String(src.commit).slice(0, 12)}\`` : src.revision ? ` (${fmt(src.revision)})` : ''}`]);
  if (p.tool || p.version) rows.push(['tool', `${fmt(p.tool ?? 'fopeify')} ${fmt(p.version ?? '')}`.trim()]);
  if (p.command) rows.push(['command', fmt(p.command)]);
  const opts = p.options as Record<string, unknown> | undefined;
  if (opts && typeof opts === 'object') {
    const set = Object.entries(opts).filter(([, v]) => v !== null && v !== undefined);
    if (set.length) rows.push(['options', set.map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(', ')]);
  }
  const fope = p.fope as Partial<FopeifyJson['fope']> | undefined;
  if (fope && typeof fope === 'object') {
    for (const k of ['family', 'num_inv_freq', 'clip_length', 'coefficient_shape', 'yarn_semantics'] as const) {
      if (fope[k] !== undefined && fope[k] !== null) rows.push([`fope.${k}`, fmt(fope[k])]);
    }
  }
  if (!rows.length) return [`Provenance is in \`${FOPEIFY_JSON}\`.`];
  return [...markdownTable(['', ''], rows.map((r) => r.map((c) => c.replace(/\|/g, '\\|')))), '', `Full provenance (source files and hashes, every option) is in \`${FOPEIFY_JSON}\`.`];
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
  if (input.done?.length) out.push(...sectionLines({ heading: 'What was done', lines: bulletList(input.done) }));
  for (const s of input.sections ?? []) out.push(...sectionLines({ heading: s.heading, lines: [s.body.trim()] }));
  if (input.evals && (input.evals.needle?.results.length || input.evals.ppl?.results.length)) out.push(...sectionLines({ heading: 'Evaluation', lines: evalSection(input.evals) }));
  if (input.provenance) out.push(...sectionLines({ heading: 'Provenance', lines: provenanceSection(input.provenance) }));
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
  const prov = (await readFolderJson(dir, FOPEIFY_JSON)) as Record<string, unknown> | undefined;
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
