/**
 * From records to what people read: summary.json (fixed shape, read by the Hub model-card code),
 * summary.csv (model × length accuracy, like the FoPE paper's passkey CSV), heatmap panels and a
 * coloured terminal table.
 */
import { accuracyColor, parseColor, textColorOn } from '../plot/color.js';
import { depthLabel, lengthLabel, type HeatmapPanel } from '../plot/heatmap.js';
import type { NeedleCellResult, NeedleLengthResult, NeedleRecord, NeedleSettings, NeedleSummary } from '../io/formats.js';
import { recordKey } from './records.js';

const round = (v: number) => Math.round(v * 1e6) / 1e6;

/** Aggregate the records of the requested grid (other records in the file are ignored). */
export function summarize(records: NeedleRecord[], settings: NeedleSettings, models: string[], extra?: Record<string, unknown>): NeedleSummary {
  const byKey = new Map<string, NeedleRecord>();
  for (const r of records) byKey.set(recordKey(r), r);
  const results: NeedleLengthResult[] = [];
  const cells: NeedleCellResult[] = [];
  for (const model of models) {
    for (const L of settings.lengths) {
      let lc = 0;
      let ln = 0;
      for (const d of settings.depths) {
        let c = 0;
        let n = 0;
        for (let t = 0; t < settings.trials; t++) {
          const r = byKey.get(recordKey({ model, context_length: L, depth: d, trial: t }));
          if (!r) continue;
          n++;
          if (r.correct) c++;
        }
        cells.push({ model, context_length: L, depth: d, accuracy: n ? round(c / n) : 0, trials: n });
        lc += c;
        ln += n;
      }
      results.push({ model, context_length: L, accuracy: ln ? round(lc / ln) : 0, trials: ln });
    }
  }
  const summary: NeedleSummary = {
    task: settings.task,
    lengths: [...settings.lengths],
    depths: [...settings.depths],
    trials: settings.trials,
    seed: settings.seed,
    mode: settings.mode,
    results,
    cells,
  };
  if (extra) summary.settings = extra;
  return summary;
}

/** Models in the order they appear in a summary. */
export function summaryModels(summary: Pick<NeedleSummary, 'results'>): string[] {
  return [...new Set(summary.results.map((r) => r.model))];
}

function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** `model,512,1024,...` then one row of accuracies per model. */
export function summaryCsv(summary: NeedleSummary): string {
  const lines = [['model', ...summary.lengths.map(String)].join(',')];
  for (const model of summaryModels(summary)) {
    const row = summary.lengths.map((L) => {
      const r = summary.results.find((x) => x.model === model && x.context_length === L);
      return r && r.trials ? String(r.accuracy) : '';
    });
    lines.push([csvField(model), ...row].join(','));
  }
  return lines.join('\n') + '\n';
}

/** One heatmap panel (depth × length) per model. */
export function heatmapPanels(summary: NeedleSummary): HeatmapPanel[] {
  return summaryModels(summary).map((model) => ({
    name: model,
    lengths: summary.lengths,
    depths: summary.depths,
    accuracy: summary.depths.map((d) =>
      summary.lengths.map((L) => {
        const c = summary.cells.find((x) => x.model === model && x.context_length === L && x.depth === d);
        return c && c.trials ? c.accuracy : null;
      }),
    ),
  }));
}

function paint(text: string, background: string, color: boolean): string {
  if (!color) return text;
  const [r, g, b] = parseColor(background);
  const [fr, fg, fb] = parseColor(textColorOn(background));
  return `\x1b[48;2;${r};${g};${b}m\x1b[38;2;${fr};${fg};${fb}m${text}\x1b[0m`;
}

function grid(header: string[], rows: { label: string; values: (number | null)[] }[], color: boolean): string {
  const labelW = Math.max(header[0]!.length, ...rows.map((r) => r.label.length));
  const colW = Math.max(6, ...header.slice(1).map((h) => h.length + 2));
  const out = [header[0]!.padEnd(labelW) + ' ' + header.slice(1).map((h) => h.padStart(colW)).join('')];
  for (const r of rows) {
    const cells = r.values.map((v) => {
      const text = (v === null ? '-' : `${Math.round(v * 100)}%`).padStart(colW - 1) + ' ';
      return paint(text, accuracyColor(v), color);
    });
    out.push(r.label.padEnd(labelW) + ' ' + cells.join(''));
  }
  return out.join('\n');
}

/**
 * Accuracy per model and length, cells coloured on the heatmap scale when `color` is set (24-bit ANSI),
 * followed by each model's depth × length grid when `depths` is set.
 */
export function colorTable(summary: NeedleSummary, options: { color?: boolean; depths?: boolean } = {}): string {
  const color = options.color ?? false;
  const models = summaryModels(summary);
  const header = ['model', ...summary.lengths.map(lengthLabel)];
  const parts = [
    grid(
      header,
      models.map((m) => ({
        label: m,
        values: summary.lengths.map((L) => {
          const r = summary.results.find((x) => x.model === m && x.context_length === L);
          return r && r.trials ? r.accuracy : null;
        }),
      })),
      color,
    ),
  ];
  if (options.depths) {
    for (const panel of heatmapPanels(summary)) {
      parts.push(
        `\n${panel.name}: depth × length\n` +
          grid(
            ['depth', ...summary.lengths.map(lengthLabel)],
            panel.depths.map((d, i) => ({ label: depthLabel(d), values: panel.accuracy[i]! })),
            color,
          ),
      );
    }
  }
  return parts.join('\n');
}
