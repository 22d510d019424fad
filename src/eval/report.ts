/**
 * The report folder: summary files, heatmaps (SVG + PNG), the perplexity chart, and report.html, which
 * shows whatever of the two measures the folder holds (needle summary.json, perplexity ppl.json), so one
 * report carries both of the FoPE paper's headline results.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomically } from '../io/atomic.js';
import { PPL_JSON, RESULTS_FILE, SUMMARY_JSON, type NeedleSummary, type PerplexitySummary } from '../io/formats.js';
import { prepareOutputFolder } from '../io/output-folder.js';
import { VERSION } from '../version.js';
import { formatValue, lineChartScene, type LineChartOptions } from '../plot/chart.js';
import { accuracyColor, textColorOn } from '../plot/color.js';
import { heatmapScene, lengthLabel, type HeatmapOptions } from '../plot/heatmap.js';
import { escapeXml } from '../plot/scene.js';
import { writeScene } from '../plot/write.js';
import { heatmapPanels, summaryCsv, summaryModels } from './summary.js';

export const SUMMARY_CSV = 'summary.csv';
export const REPORT_HTML = 'report.html';
export const COMPARISON_BASENAME = 'comparison';
export const PPL_CHART_BASENAME = 'ppl';

/** Every report file is written atomically: a reader (or a full disk) never sees half a heatmap. */
const write = writeFileAtomically;

/** File-name-safe, distinct names for models: `/x/runs/A` → `x_runs_A`. */
export function modelSlugs(models: string[]): string[] {
  const taken = new Set<string>();
  return models.map((m) => {
    let s = m.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[_.]+|_+$/g, '');
    if (s.length > 80) s = s.slice(s.length - 80);
    if (!s) s = 'model';
    let out = s;
    for (let i = 2; taken.has(out.toLowerCase()); i++) out = `${s}-${i}`;
    taken.add(out.toLowerCase());
    return out;
  });
}

export function taskTitle(summary: Pick<NeedleSummary, 'task'>): string {
  return summary.task === 'passkey' ? 'Passkey retrieval' : 'Needle in a haystack';
}

function heatmapOptions(summary: NeedleSummary): HeatmapOptions {
  return {
    title: `${taskTitle(summary)} accuracy`,
    subtitle: `${summary.mode}, ${summary.trials} trial${summary.trials === 1 ? '' : 's'} per cell, seed ${summary.seed}`,
  };
}

/** Where each model's heatmap goes. */
export function heatmapFiles(models: string[]): { model: string; base: string }[] {
  const slugs = modelSlugs(models);
  return models.map((model, i) => ({ model, base: `heatmap-${slugs[i]}` }));
}

/** summary.json, summary.csv, a heatmap per model, the side-by-side comparison and report.html. */
export async function writeNeedleReport(dir: string, summary: NeedleSummary): Promise<string[]> {
  await prepareOutputFolder(dir);
  const files: string[] = [];
  const json = path.join(dir, SUMMARY_JSON);
  await write(json, JSON.stringify(summary, null, 2) + '\n');
  const csv = path.join(dir, SUMMARY_CSV);
  await write(csv, summaryCsv(summary));
  files.push(json, csv);
  const panels = heatmapPanels(summary);
  const opts = heatmapOptions(summary);
  for (const [i, f] of heatmapFiles(panels.map((p) => p.name)).entries()) {
    files.push(...(await writeScene(dir, f.base, heatmapScene([panels[i]!], opts))));
  }
  files.push(...(await writeScene(dir, COMPARISON_BASENAME, heatmapScene(panels, opts))));
  files.push(await writeReport(dir));
  return files;
}

export interface PerplexityReportInput {
  windows: number[];
  results: { model: string; window: number; ppl: number | null }[];
  settings?: Record<string, unknown>;
  /** Dashed markers on the chart, e.g. each model's training length. */
  markers?: { x: number; label: string }[];
}

function pplChart(summary: PerplexitySummary, markers?: { x: number; label: string }[]): LineChartOptions {
  const models = [...new Set(summary.results.map((r) => r.model))];
  return {
    title: 'Perplexity vs context length',
    xLabel: 'Context window (tokens)',
    yLabel: 'Perplexity',
    series: models.map((m) => ({
      name: m,
      points: summary.results.filter((r) => r.model === m).map((r) => [r.window, r.ppl] as [number, number]),
    })),
    markers,
  };
}

/**
 * ppl.json (windows without a result are left out of `results`), the chart as ppl.svg / ppl.png, and
 * report.html (with the needle results too when the folder has them).
 */
export async function writePerplexityReport(dir: string, input: PerplexityReportInput): Promise<PerplexitySummary> {
  await prepareOutputFolder(dir);
  const summary: PerplexitySummary = {
    windows: [...input.windows],
    results: input.results.filter((r): r is { model: string; window: number; ppl: number } => r.ppl !== null && Number.isFinite(r.ppl)),
  };
  if (input.settings) summary.settings = input.settings;
  await write(path.join(dir, PPL_JSON), JSON.stringify(summary, null, 2) + '\n');
  await writeScene(dir, PPL_CHART_BASENAME, lineChartScene(pplChart(summary, input.markers)));
  await writeReport(dir);
  return summary;
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** A two-column key / value table (arrays joined, objects as key: value). */
export function settingsTable(rows: [string, unknown][]): string {
  const fmt = (v: unknown): string =>
    Array.isArray(v)
      ? v.join(', ')
      : typeof v === 'object' && v !== null
        ? Object.entries(v).map(([k, x]) => `${k}: ${typeof x === 'object' ? JSON.stringify(x) : String(x)}`).join(', ')
        : String(v);
  return `<table class="settings">${rows
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `<tr><th>${escapeXml(k)}</th><td>${escapeXml(fmt(v))}</td></tr>`)
    .join('')}</table>`;
}

function accuracyTable(summary: NeedleSummary): string {
  const head = `<tr><th>model</th>${summary.lengths.map((L) => `<th>${escapeXml(lengthLabel(L))}</th>`).join('')}</tr>`;
  const rows = summaryModels(summary).map((m) => {
    const cells = summary.lengths.map((L) => {
      const r = summary.results.find((x) => x.model === m && x.context_length === L);
      const acc = r && r.trials ? r.accuracy : null;
      const bg = accuracyColor(acc);
      const title = r ? `${r.trials} trials` : 'no results';
      return `<td style="background:${bg};color:${textColorOn(bg)}" title="${title}">${acc === null ? '-' : `${Math.round(acc * 100)}%`}</td>`;
    });
    return `<tr><th>${escapeXml(m)}</th>${cells.join('')}</tr>`;
  });
  return `<table class="grid">${head}${rows.join('')}</table>`;
}

function pplTable(summary: PerplexitySummary): string {
  const models = [...new Set(summary.results.map((r) => r.model))];
  const head = `<tr><th>model</th>${summary.windows.map((w) => `<th>${escapeXml(lengthLabel(w))}</th>`).join('')}</tr>`;
  const rows = models.map((m) => {
    const cells = summary.windows.map((w) => {
      const r = summary.results.find((x) => x.model === m && x.window === w);
      return `<td>${r ? escapeXml(formatValue(r.ppl)) : '-'}</td>`;
    });
    return `<tr><th>${escapeXml(m)}</th>${cells.join('')}</tr>`;
  });
  return `<table class="grid">${head}${rows.join('')}</table>`;
}

/** The stylesheet of every fopeify report page. */
export const REPORT_STYLE = `body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0}th,td{padding:.35em .7em;border:1px solid #e3e3e3;text-align:right}
table.settings th{text-align:left;background:#f7f7f7}table.settings td{text-align:left}
.figure{overflow-x:auto;margin:1em 0}.files{color:#666;font-size:.9em}`;

/** An SVG file's text as an inline figure (empty without one). */
export function inlineSvg(svg: string | null): string {
  if (!svg) return '';
  return `<div class="figure">${svg.replace(/^<\?xml[^>]*>\s*/, '')}</div>`;
}

async function readText(file: string): Promise<string | null> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch {
    return null;
  }
}

/** Optional `{paragraphs: string[]}` shown at the top of report.html. */
export const HEADLINE_JSON = 'headline.json';

/** (Re)write `dir/report.html` from the summaries present in `dir`; returns its path. */
export async function writeReport(dir: string): Promise<string> {
  const needle = await readJson<NeedleSummary>(path.join(dir, SUMMARY_JSON));
  const ppl = await readJson<PerplexitySummary>(path.join(dir, PPL_JSON));
  const body: string[] = ['<h1>fopeify report</h1>'];
  // Optional headline paragraphs written by the caller (the demo states its verdict here).
  const headline = await readJson<{ paragraphs?: string[] }>(path.join(dir, HEADLINE_JSON));
  for (const p of headline?.paragraphs ?? []) body.push(`<p class="headline">${escapeXml(p)}</p>`);
  if (needle && Array.isArray(needle.results)) {
    const models = summaryModels(needle);
    const extra = needle.settings ?? {};
    body.push(`<h2>${escapeXml(taskTitle(needle))}</h2>`);
    body.push(
      settingsTable([
        ['task', needle.task],
        ['scoring', needle.mode],
        ['models', models],
        ['context lengths (tokens)', needle.lengths],
        ['depths', needle.depths],
        ['trials per cell', needle.trials],
        ['seed', needle.seed],
        ...Object.entries(extra)
          .filter(([k]) => k !== 'models')
          .map(([k, v]): [string, unknown] => [k === 'prompt_tokens' ? 'prompt tokens per target (first model)' : k.replace(/_/g, ' '), v]),
      ]),
    );
    body.push('<h3>Accuracy per context length</h3>', accuracyTable(needle));
    body.push('<h3>Accuracy by depth and context length</h3>');
    body.push(inlineSvg(await readText(path.join(dir, `${COMPARISON_BASENAME}.svg`))));
    const files = heatmapFiles(models).map((f) => `<a href="${escapeXml(f.base)}.svg">${escapeXml(f.base)}.svg</a> / <a href="${escapeXml(f.base)}.png">.png</a>`);
    body.push(
      `<p class="files">Files: <a href="${RESULTS_FILE}">${RESULTS_FILE}</a>, <a href="${SUMMARY_CSV}">${SUMMARY_CSV}</a>, <a href="${SUMMARY_JSON}">${SUMMARY_JSON}</a>, <a href="${COMPARISON_BASENAME}.png">${COMPARISON_BASENAME}.png</a>; per model: ${files.join(', ')}</p>`,
    );
  }
  if (ppl && Array.isArray(ppl.results)) {
    body.push('<h2>Perplexity vs context length</h2>');
    if (ppl.settings) body.push(settingsTable(Object.entries(ppl.settings)));
    body.push(pplTable(ppl));
    body.push(inlineSvg(await readText(path.join(dir, `${PPL_CHART_BASENAME}.svg`))));
    body.push(`<p class="files">Files: <a href="${PPL_JSON}">${PPL_JSON}</a>, <a href="${PPL_CHART_BASENAME}.png">${PPL_CHART_BASENAME}.png</a></p>`);
  }
  if (body.length === 1) body.push('<p>No results in this folder yet.</p>');
  body.push(`<p class="files">Written by fopeify ${escapeXml(VERSION)}.</p>`);
  const html = `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>fopeify report</title><style>${REPORT_STYLE}</style></head>\n<body>\n${body.join('\n')}\n</body></html>\n`;
  const file = path.join(dir, REPORT_HTML);
  await write(file, html);
  return file;
}

