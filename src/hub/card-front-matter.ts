/**
 * The Hub card's YAML front matter: fopeify's keys (base_model, library_name, tags, and model-index with
 * the evaluation results the Hub shows) merged into whatever keys the README already has.
 */
import { baseModelField, LIBRARY_NAME_FIELD, tagsField, yamlScalar } from '../card/markdown.js';
import { pickReportModel, type CardEvals } from './card-reports.js';

/** What the front matter is made from (a part of the card's input). */
export interface FrontMatterInput {
  baseModel?: string;
  evals?: CardEvals;
  fope?: boolean;
  tags?: string[];
  title?: string;
  modelName?: string;
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

function modelIndex(input: FrontMatterInput): string[] {
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

/** The card's front matter: fopeify's keys (base_model, library_name, tags, model-index) merged into the existing ones. */
export function frontMatter(input: FrontMatterInput, existingFront: string): string[] {
  const old = frontBlocks(existingFront);
  const get = (k: string): FrontBlock | undefined => old.find((b) => b.key === k);
  const out: string[] = [];
  const base = baseModelField(input.baseModel);
  out.push(...(base.length ? base : get('base_model')?.lines ?? []));
  out.push(...(get('library_name')?.lines ?? [LIBRARY_NAME_FIELD]));
  out.push(...tagsField([...new Set([...(input.fope ? ['fope'] : []), 'fopeify', ...(input.tags ?? []), ...tagsOf(get('tags'))])]));
  const index = modelIndex(input);
  if (index.length) out.push(...index);
  else if (get('model-index')) out.push(...get('model-index')!.lines);
  const managed = new Set(['base_model', 'library_name', 'tags', 'model-index']);
  for (const b of old) if (!managed.has(b.key)) out.push(...b.lines);
  return ['---', ...out, '---'];
}
