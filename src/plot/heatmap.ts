/**
 * Accuracy heatmaps as the NIAH plots draw them: context length on x, depth percent on y (0 % at the top),
 * red → yellow → green; one panel per model, side by side for a comparison, with a shared colour bar.
 */
import { accuracyColor, textColorOn } from './color.js';
import { textWidth } from './font.js';
import { encodePng } from './png.js';
import { rasterizeScene } from './raster.js';
import { sceneToSvg, type Scene, type Shape } from './scene.js';

export interface HeatmapPanel {
  /** Panel title (the model name). */
  name: string;
  /** Context lengths, x axis, left to right. */
  lengths: number[];
  /** Depths in [0, 1], y axis, top to bottom. */
  depths: number[];
  /** accuracy[depthIndex][lengthIndex] in [0, 1], or null where no result exists. */
  accuracy: (number | null)[][];
}

export interface HeatmapOptions {
  /** Figure title above the panels. */
  title?: string;
  /** Line under the title (settings). */
  subtitle?: string;
}

/** "512", "1K", "32K": powers-of-two multiples of 1024 as K, everything else as is. */
export function lengthLabel(n: number): string {
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024}K` : String(n);
}

/** Depth fraction as a percent label, "25%", "12.5%". */
export function depthLabel(d: number): string {
  const p = Math.round(d * 1000) / 10;
  return `${p}%`;
}

/** Fit text into `maxWidth` pixels at `scale`, eliding the start ("...tail"), which keeps model names distinct. */
export function fitText(text: string, maxWidth: number, scale: number): string {
  if (textWidth(text, scale) <= maxWidth) return text;
  const chars = [...text];
  for (let keep = chars.length - 1; keep > 0; keep--) {
    const t = '...' + chars.slice(chars.length - keep).join('');
    if (textWidth(t, scale) <= maxWidth) return t;
  }
  return '...';
}

const S = 2; // font scale of labels
const CELL_H = 30;
const PANEL_GAP = 28;

/** The heatmap figure as a scene (one panel per entry, side by side). */
export function heatmapScene(panels: HeatmapPanel[], options: HeatmapOptions = {}): Scene {
  if (panels.length === 0) throw new RangeError('a heatmap needs at least one panel');
  const shapes: Shape[] = [];
  const allLengths = panels.flatMap((p) => p.lengths);
  const cellW = Math.max(56, ...allLengths.map((l) => textWidth(lengthLabel(l), S) + 14));
  const yLabelW = Math.max(...panels.flatMap((p) => p.depths.map((d) => textWidth(depthLabel(d), S))));
  const titleH = options.title ? 30 : 0;
  const subH = options.subtitle ? 20 : 0;
  const top = 16 + titleH + subH + 26; // room for the panel titles
  const left0 = 34; // vertical axis title
  let x = left0;
  const gridTop = top;
  let maxGridH = 0;
  let firstGx: number | undefined;
  let lastGridEnd = 0;
  for (const panel of panels) {
    const nL = panel.lengths.length;
    const nD = panel.depths.length;
    const gridW = nL * cellW;
    const gridH = nD * CELL_H;
    maxGridH = Math.max(maxGridH, gridH);
    const gx = x + yLabelW + 10;
    shapes.push({ kind: 'text', x: gx + gridW / 2, y: gridTop - 14, text: fitText(panel.name, gridW + yLabelW, S), size: S, anchor: 'middle', bold: true, role: 'panel-title' });
    panel.depths.forEach((d, di) => {
      const cy = gridTop + di * CELL_H;
      shapes.push({ kind: 'text', x: gx - 8, y: cy + CELL_H / 2, text: depthLabel(d), size: S, anchor: 'end', role: 'y-label' });
      panel.lengths.forEach((_, li) => {
        const acc = panel.accuracy[di]?.[li] ?? null;
        const fill = accuracyColor(acc);
        const cx = gx + li * cellW;
        shapes.push({ kind: 'rect', x: cx, y: cy, w: cellW, h: CELL_H, fill, stroke: '#FFFFFF', role: 'cell' });
        shapes.push({
          kind: 'text',
          x: cx + cellW / 2,
          y: cy + CELL_H / 2,
          text: acc === null ? '-' : String(Math.round(acc * 100)),
          size: S,
          anchor: 'middle',
          fill: textColorOn(fill),
          role: 'cell-value',
        });
      });
    });
    panel.lengths.forEach((l, li) => {
      shapes.push({ kind: 'text', x: gx + li * cellW + cellW / 2, y: gridTop + gridH + 14, text: lengthLabel(l), size: S, anchor: 'middle', role: 'x-label' });
    });
    firstGx ??= gx;
    lastGridEnd = gx + gridW;
    x = gx + gridW + PANEL_GAP;
  }
  // Axis titles, once, centred on the grids.
  const xTitle = 'Context length (tokens)';
  const xTitleX = Math.max((firstGx! + lastGridEnd) / 2, textWidth(xTitle, S) / 2 + 8);
  shapes.push({ kind: 'text', x: xTitleX, y: gridTop + maxGridH + 40, text: xTitle, size: S, anchor: 'middle', role: 'axis-title' });
  shapes.push({ kind: 'text', x: 16, y: gridTop + maxGridH / 2, text: 'Depth (%)', size: S, anchor: 'middle', vertical: true, role: 'axis-title' });
  // Colour bar.
  const barX = Math.max(x, xTitleX + textWidth(xTitle, S) / 2 + 16);
  const barH = Math.max(maxGridH - 8, 82);
  const barTop = gridTop + 8;
  const steps = 60;
  for (let i = 0; i < steps; i++) {
    const a = 1 - i / (steps - 1);
    shapes.push({ kind: 'rect', x: barX, y: barTop + (i * barH) / steps, w: 16, h: barH / steps + 1, fill: accuracyColor(a) });
  }
  for (const [a, label] of [
    [1, '100%'],
    [0.5, '50%'],
    [0, '0%'],
  ] as const) {
    shapes.push({ kind: 'text', x: barX + 22, y: barTop + (1 - a) * barH, text: label, size: S, anchor: 'start', role: 'legend-label' });
  }
  shapes.push({ kind: 'text', x: barX, y: gridTop - 14, text: 'Accuracy', size: S, anchor: 'start', role: 'legend-title' });
  const width = Math.ceil(barX + Math.max(textWidth('Accuracy', S), 22 + textWidth('100%', S)) + 12);
  if (options.title) shapes.push({ kind: 'text', x: width / 2, y: 22, text: fitText(options.title, width - 20, S), size: S, anchor: 'middle', bold: true, role: 'title' });
  if (options.subtitle) {
    shapes.push({ kind: 'text', x: width / 2, y: 22 + titleH - 4, text: fitText(options.subtitle, width - 20, 1), size: 1, anchor: 'middle', fill: '#444444', role: 'subtitle' });
  }
  const height = Math.ceil(Math.max(gridTop + maxGridH, barTop + barH) + 58);
  return { width, height, background: '#FFFFFF', title: options.title ?? panels.map((p) => p.name).join(' vs ') + ' accuracy heatmap', shapes };
}

export function renderHeatmapSvg(panels: HeatmapPanel | HeatmapPanel[], options: HeatmapOptions = {}): string {
  return sceneToSvg(heatmapScene(Array.isArray(panels) ? panels : [panels], options));
}

export function renderHeatmapPng(panels: HeatmapPanel | HeatmapPanel[], options: HeatmapOptions = {}): Buffer {
  return encodePng(rasterizeScene(heatmapScene(Array.isArray(panels) ? panels : [panels], options)));
}
