/**
 * The study's outputs for people: the RULER-style table (variant × length, Avg, effective length) as
 * text rows, table.csv, charts with 95 % error bars (accuracy by length, perplexity by window), one
 * depth × length heatmap per variant (mean over seeds), and report.html with the verdict on top.
 */
import path from 'node:path';
import { writeFileAtomically } from '../io/atomic.js';
import { type LineChartOptions, lineChartScene } from '../plot/chart.js';
import { heatmapScene, lengthLabel, type HeatmapPanel } from '../plot/heatmap.js';
import { inlineSvg, REPORT_STYLE, settingsTable } from '../eval/report.js';
import { writeScene } from '../plot/write.js';
import { sceneToSvg, escapeXml } from '../plot/scene.js';
import { VERSION } from '../version.js';
import type { SeededInterval, StudyAggregate } from './aggregate.js';
import { VARIANTS, type StudyPlan, type VariantId } from './plan.js';
import { INTERVAL_METHOD } from './stats.js';

export const STUDY_REPORT_HTML = 'report.html';
export const STUDY_TABLE_CSV = 'table.csv';
export const ACCURACY_CHART = 'accuracy';
export const PPL_CHART = 'ppl';
export const HEATMAP_FIGURE = 'heatmaps';

/** "62% ±21" (mean and half the 95 % interval; the bounds are clipped to [0, 100 %]). */
export function accuracyCell(iv: Pick<SeededInterval, 'mean' | 'lo' | 'hi' | 'n'> | undefined): string {
  if (!iv || !iv.n) return '–';
  const m = `${(iv.mean * 100).toFixed(0)}%`;
  if (iv.lo === null || iv.hi === null) return m;
  return `${m} [${(iv.lo * 100).toFixed(0)}, ${(iv.hi * 100).toFixed(0)}]`;
}

function pplCell(iv: Pick<SeededInterval, 'mean' | 'lo' | 'hi' | 'n'> | undefined): string {
  if (!iv || !iv.n) return '–';
  const f = (x: number) => x.toFixed(2);
  return iv.lo === null || iv.hi === null ? f(iv.mean) : `${f(iv.mean)} [${f(iv.lo)}, ${f(iv.hi)}]`;
}

export interface StudyTables {
  /** The RULER-style table: variant, one column per length, Avg, effective length. */
  accuracy: { head: string[]; rows: string[][] };
  perplexity: { head: string[]; rows: string[][] };
}

/** The tables as text cells (the CLI prints them, report.html and the README show them). */
export function studyTables(agg: StudyAggregate, plan: StudyPlan, variants: VariantId[]): StudyTables {
  const present = variants.filter((v) => agg.avg.some((a) => a.variant === v));
  const acc = (v: VariantId, L: number) => agg.accuracy.find((a) => a.variant === v && a.length === L);
  const ppl = (v: VariantId, w: number) => agg.perplexity.find((a) => a.variant === v && a.window === w);
  const mark = (x: number) => (x === plan.trainLength ? `${x}*` : String(x));
  return {
    accuracy: {
      head: ['variant', ...plan.lengths.map(mark), 'Avg', `eff. length (≥${Math.round(plan.threshold * 100)}%)`],
      rows: present.map((v) => {
        const eff = agg.effectiveLength.find((e) => e.variant === v)!;
        return [VARIANTS[v].label, ...plan.lengths.map((L) => accuracyCell(acc(v, L))), accuracyCell(agg.avg.find((a) => a.variant === v)), eff.length ? String(eff.length) : `< ${plan.lengths[0]}`];
      }),
    },
    perplexity: {
      head: ['variant', ...plan.windows.map(mark)],
      rows: present.map((v) => [VARIANTS[v].label, ...plan.windows.map((w) => pplCell(ppl(v, w)))]),
    },
  };
}

function htmlTable(t: { head: string[]; rows: string[][] }): string {
  const head = `<tr>${t.head.map((h) => `<th>${escapeXml(h)}</th>`).join('')}</tr>`;
  const rows = t.rows.map((r) => `<tr><th>${escapeXml(r[0]!)}</th>${r.slice(1).map((c) => `<td>${escapeXml(c)}</td>`).join('')}</tr>`);
  return `<table class="grid">${head}${rows.join('')}</table>`;
}

function chart(agg: StudyAggregate, plan: StudyPlan, variants: VariantId[], kind: 'accuracy' | 'ppl'): LineChartOptions {
  const rows = kind === 'accuracy' ? agg.accuracy.map((a) => ({ ...a, x: a.length })) : agg.perplexity.map((p) => ({ ...p, x: p.window }));
  const series = variants
    .map((v) => rows.filter((r) => r.variant === v && r.n > 0))
    .filter((rs) => rs.length)
    .map((rs) => ({
      name: VARIANTS[rs[0]!.variant].label,
      points: rs.map((r) => [r.x, kind === 'accuracy' ? r.mean * 100 : r.mean] as [number, number]),
      errors: rs.map((r) => (r.lo === null || r.hi === null ? null : ((kind === 'accuracy' ? [r.lo * 100, r.hi * 100] : [r.lo, r.hi]) as [number, number]))),
    }));
  return {
    title: kind === 'accuracy' ? 'Passkey accuracy by context length (mean, 95% CI)' : 'Perplexity by context window (mean, 95% CI)',
    xLabel: kind === 'accuracy' ? 'Context length (tokens)' : 'Context window (tokens)',
    yLabel: kind === 'accuracy' ? 'Accuracy (%)' : 'Perplexity',
    series,
    logY: kind === 'accuracy' ? false : undefined,
    markers: [
      { x: plan.trainLength, label: 'trained' },
      { x: plan.fineTuneLength, label: 'fine-tuned' },
    ],
  };
}

function heatmapPanelsOf(agg: StudyAggregate, plan: StudyPlan, variants: VariantId[]): HeatmapPanel[] {
  return variants
    .filter((v) => agg.depthAccuracy.some((d) => d.variant === v))
    .map((v) => ({
      // The short ids: long labels would be elided to the same tail ("...nly+YaRN") in narrow panels.
      name: v,
      lengths: plan.lengths,
      depths: plan.depths,
      accuracy: plan.depths.map((d) => plan.lengths.map((L) => agg.depthAccuracy.find((x) => x.variant === v && x.length === L && x.depth === d)?.accuracy ?? null)),
    }));
}

export interface StudyReportInput {
  plan: StudyPlan;
  variants: VariantId[];
  seeds: number[];
  model: string;
  quick: boolean;
  aggregate: StudyAggregate;
  verdict: string;
  seconds: number;
  cellSeconds: number;
}

/** table.csv, the charts and report.html in `out`; returns report.html's path. */
export async function writeStudyReport(out: string, r: StudyReportInput): Promise<string> {
  const { plan, variants, aggregate: agg } = r;
  const tables = studyTables(agg, plan, variants);
  const csv = [tables.accuracy.head, ...tables.accuracy.rows].map((row) => row.map((c) => (/[",]/.test(c) ? `"${c.replace(/"/g, '""')}"` : c)).join(',')).join('\n') + '\n';
  await writeFileAtomically(path.join(out, STUDY_TABLE_CSV), csv);
  const accScene = lineChartScene(chart(agg, plan, variants, 'accuracy'));
  const pplScene = lineChartScene(chart(agg, plan, variants, 'ppl'));
  await writeScene(out, ACCURACY_CHART, accScene);
  await writeScene(out, PPL_CHART, pplScene);
  const panels = heatmapPanelsOf(agg, plan, variants);
  const heat = panels.length ? heatmapScene(panels, { title: 'Passkey accuracy by depth and length (mean over seeds)', subtitle: `${plan.trials} trial${plan.trials === 1 ? '' : 's'} per cell per seed, ${r.seeds.length} seed${r.seeds.length === 1 ? '' : 's'}` }) : null;
  if (heat) await writeScene(out, HEATMAP_FIGURE, heat);
  const body: string[] = [
    `<h1>fopeify study${r.quick ? ' (quick)' : ''}</h1>`,
    ...r.verdict.split('\n').map((l) => (l.startsWith('- ') ? `<p class="headline">• ${escapeXml(l.slice(2))}</p>` : `<p class="headline">${escapeXml(l)}</p>`)),
    '<h2>Passkey accuracy (RULER-style)</h2>',
    `<p>Mean over ${r.seeds.length} seed${r.seeds.length === 1 ? '' : 's'} with the 95 % interval in brackets (${escapeXml(INTERVAL_METHOD)}). * marks the original training length (the short-context row). ` +
      `Effective length: the longest length up to which the mean accuracy stays ≥ ${Math.round(plan.threshold * 100)} % at every tested length.</p>`,
    htmlTable(tables.accuracy),
    inlineSvg(sceneToSvg(accScene)),
    heat ? inlineSvg(sceneToSvg(heat)) : '',
    '<h2>Perplexity on held-out Brown text</h2>',
    htmlTable(tables.perplexity),
    inlineSvg(sceneToSvg(pplScene)),
    '<h2>Variants</h2>',
    settingsTable(variants.map((v): [string, unknown] => [`${VARIANTS[v].label} (${v})`, `${VARIANTS[v].description} (recipe ${VARIANTS[v].recipe ?? 'none'})`])),
    '<h2>Plan</h2>',
    settingsTable([
      ['model', r.model],
      ['seeds', r.seeds],
      ['training length (tokens)', plan.trainLength],
      ['fine-tuning length (tokens)', plan.fineTuneLength],
      ['steps × batch', `${plan.steps} × ${plan.batch}`],
      ['learning rate', plan.lr],
      ['passkey lengths', plan.lengths.map(lengthLabel)],
      ['depths', plan.depths],
      ['trials per length × depth', plan.trials],
      ['perplexity windows', plan.windows],
      ['windows per size', plan.maxWindows],
      ['effective-length threshold', plan.threshold],
      ['Fourier gain (init factor) of the FoPE variants', plan.initFactor],
      ['time', `${(r.seconds / 60).toFixed(1)} min this run; ${(r.cellSeconds / 60).toFixed(1)} min for all cells`],
    ]),
    `<p class="files">Files: <a href="study.json">study.json</a> (every number, per seed, and the commands), <a href="${STUDY_TABLE_CSV}">${STUDY_TABLE_CSV}</a>, <a href="${ACCURACY_CHART}.png">${ACCURACY_CHART}.png</a>, <a href="${PPL_CHART}.png">${PPL_CHART}.png</a>${heat ? `, <a href="${HEATMAP_FIGURE}.png">${HEATMAP_FIGURE}.png</a>` : ''}; per cell: cells/&lt;variant&gt;/seed-&lt;n&gt;/ (cell.json, the model, needle records).</p>`,
    `<p class="files">Written by fopeify ${escapeXml(VERSION)}.</p>`,
  ];
  const html = `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>fopeify study</title><style>${REPORT_STYLE}</style></head>\n<body>\n${body.join('\n')}\n</body></html>\n`;
  const file = path.join(out, STUDY_REPORT_HTML);
  await writeFileAtomically(file, html);
  return file;
}
