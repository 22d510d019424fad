/**
 * Line charts (perplexity against context length): one line per model, log-2 x axis over the windows,
 * log y axis when the values span more than a factor of 10, an optional dashed marker (e.g. the training
 * length), optional error bars per point, legend on the right.
 */
import { SERIES_COLORS } from './color.js';
import { textWidth } from './font.js';
import { fitText, lengthLabel } from './heatmap.js';
import { encodePng } from './png.js';
import { rasterizeScene } from './raster.js';
import { sceneToSvg, type Scene, type Shape } from './scene.js';

export interface LineSeries {
  name: string;
  /** [x, y] points; non-finite y values break the line. */
  points: [number, number][];
  /**
   * Error bars: [low, high] for the point of the same index (e.g. a 95 % interval across seeds); null or
   * non-finite bounds draw no bar there.
   */
  errors?: ([number, number] | null)[];
}

export interface LineChartOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  series: LineSeries[];
  /** Log-2 x axis (default: when every x is positive and they span a factor ≥ 4). */
  logX?: boolean;
  /** Log-10 y axis (default: when every y is positive and they span a factor > 10). */
  logY?: boolean;
  /** Dashed vertical markers, e.g. `{ x: 2048, label: 'trained' }`. */
  markers?: { x: number; label: string }[];
  width?: number;
  height?: number;
}

/** 1–2–5 ticks covering [lo, hi], about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const e0 = Math.floor(Math.log10(lo));
  const e1 = Math.ceil(Math.log10(hi));
  const decades = e1 - e0;
  // 1-2-5 per decade for short ranges, powers of ten (every k-th) for long ones.
  const mantissas = decades <= 3 ? [1, 2, 5] : [1];
  const every = Math.max(1, Math.ceil(decades / 8));
  const out: number[] = [];
  for (let e = e0; e <= e1; e++) {
    if (mantissas.length === 1 && (e - e0) % every !== 0) continue;
    for (const m of mantissas) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(Number(v.toPrecision(12)));
    }
  }
  return out.length >= 2 ? out : [lo, hi];
}

/** Short tick / table text: 0.123, 4.56, 12.3, 456, 1.2e5. */
export function formatValue(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) {
    const [m, e] = v.toExponential(1).split('e');
    return `${m!.replace(/\.0$/, '')}e${Number(e)}`;
  }
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return Number(v.toFixed(1)).toString();
  return Number(v.toPrecision(3)).toString();
}

export function lineChartScene(options: LineChartOptions): Scene {
  const legendW = Math.min(380, Math.max(100, ...options.series.map((s) => textWidth(s.name, 2) + 40)));
  const width = options.width ?? 560 + legendW;
  const height = options.height ?? 440;
  const shapes: Shape[] = [];
  const pts = options.series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  // The axis covers the error bars too.
  const bars = options.series.flatMap((s) => (s.errors ?? []).flatMap((e) => (e ? e.filter((v) => Number.isFinite(v)) : [])));
  const xs = [...new Set(options.series.flatMap((s) => s.points.map(([x]) => x)))].sort((a, b) => a - b);
  const ys = [...pts.map(([, y]) => y), ...bars];
  const xMin = xs[0] ?? 0;
  const xMax = xs[xs.length - 1] ?? 1;
  const logX = options.logX ?? (xMin > 0 && xMax / xMin >= 4);
  let yMin = ys.length ? Math.min(...ys) : 0;
  let yMax = ys.length ? Math.max(...ys) : 1;
  const logY = options.logY ?? (yMin > 0 && yMax / yMin > 10);
  if (logY) {
    yMin /= 1.15;
    yMax *= 1.15;
  } else {
    const pad = (yMax - yMin) * 0.08 || Math.abs(yMax) * 0.1 || 1;
    yMin = Math.max(yMin >= 0 ? 0 : -Infinity, yMin - pad);
    yMax += pad;
  }
  const titleH = options.title ? 36 : 12;
  const yTicks = logY ? logTicks(yMin, yMax) : niceTicks(yMin, yMax);
  const left = 30 + 10 + Math.max(30, ...yTicks.map((t) => textWidth(formatValue(t), 2)));
  const area = { x: left, y: titleH + 12, w: width - left - legendW - 24, h: height - titleH - 12 - 62 };
  const fx = (x: number) => {
    const t = logX ? (Math.log2(x) - Math.log2(xMin)) / (Math.log2(xMax) - Math.log2(xMin) || 1) : (x - xMin) / (xMax - xMin || 1);
    return area.x + 12 + t * (area.w - 24);
  };
  const fy = (y: number) => {
    const t = logY ? (Math.log10(y) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin) || 1) : (y - yMin) / (yMax - yMin || 1);
    return area.y + area.h - t * area.h;
  };
  // Grid and y ticks.
  for (const t of yTicks) {
    const y = fy(t);
    shapes.push({ kind: 'line', x1: area.x, y1: y, x2: area.x + area.w, y2: y, stroke: '#E5E5E5' });
    shapes.push({ kind: 'text', x: area.x - 8, y, text: formatValue(t), size: 2, anchor: 'end', role: 'y-label' });
  }
  const xTicks = xs.length <= 12 ? xs : niceTicks(xMin, xMax, 8);
  for (const t of xTicks) {
    const x = fx(t);
    shapes.push({ kind: 'line', x1: x, y1: area.y, x2: x, y2: area.y + area.h, stroke: '#F0F0F0' });
    shapes.push({ kind: 'text', x, y: area.y + area.h + 14, text: lengthLabel(t), size: 2, anchor: 'middle', role: 'x-label' });
  }
  shapes.push({ kind: 'line', x1: area.x, y1: area.y + area.h, x2: area.x + area.w, y2: area.y + area.h, stroke: '#000000' });
  shapes.push({ kind: 'line', x1: area.x, y1: area.y, x2: area.x, y2: area.y + area.h, stroke: '#000000' });
  for (const m of options.markers ?? []) {
    if (!(m.x >= xMin && m.x <= xMax)) continue;
    const x = fx(m.x);
    shapes.push({ kind: 'line', x1: x, y1: area.y, x2: x, y2: area.y + area.h, stroke: '#777777', dashed: true });
    shapes.push({ kind: 'text', x: x + 4, y: area.y + 8, text: m.label, size: 1, anchor: 'start', fill: '#555555', role: 'marker' });
  }
  options.series.forEach((s, i) => {
    const color = SERIES_COLORS[i % SERIES_COLORS.length]!;
    let run: [number, number][] = [];
    const flush = () => {
      if (run.length > 1) shapes.push({ kind: 'polyline', points: run, stroke: color, width: 2 });
      run = [];
    };
    s.points.forEach(([x, y], k) => {
      const e = s.errors?.[k];
      if (!e || !Number.isFinite(y) || !Number.isFinite(e[0]) || !Number.isFinite(e[1]) || (logY && e[0] <= 0)) return;
      // Bars of different series at the same x are spread by a few pixels so each stays visible.
      const dodge = (i - (options.series.length - 1) / 2) * 3;
      const [cx, y0, y1] = [fx(x) + dodge, fy(e[0]), fy(e[1])];
      shapes.push({ kind: 'line', x1: cx, y1: y0, x2: cx, y2: y1, stroke: color, width: 1.5 });
      shapes.push({ kind: 'line', x1: cx - 4, y1: y0, x2: cx + 4, y2: y0, stroke: color, width: 1.5 });
      shapes.push({ kind: 'line', x1: cx - 4, y1: y1, x2: cx + 4, y2: y1, stroke: color, width: 1.5 });
    });
    for (const [x, y] of [...s.points].sort((a, b) => a[0] - b[0])) {
      if (!Number.isFinite(y) || (logY && y <= 0)) {
        flush();
        continue;
      }
      run.push([fx(x), fy(y)]);
      shapes.push({ kind: 'circle', cx: fx(x), cy: fy(y), r: 3.5, fill: color });
    }
    flush();
    const ly = area.y + 10 + i * 24;
    const lx = area.x + area.w + 20;
    shapes.push({ kind: 'rect', x: lx, y: ly - 5, w: 18, h: 10, fill: color });
    shapes.push({ kind: 'text', x: lx + 26, y: ly, text: fitText(s.name, legendW - 30, 2), size: 2, anchor: 'start', role: 'legend-label' });
  });
  if (options.xLabel) shapes.push({ kind: 'text', x: area.x + area.w / 2, y: area.y + area.h + 42, text: options.xLabel, size: 2, anchor: 'middle', role: 'axis-title' });
  if (options.yLabel) shapes.push({ kind: 'text', x: 16, y: area.y + area.h / 2, text: options.yLabel, size: 2, anchor: 'middle', vertical: true, role: 'axis-title' });
  if (options.title) shapes.push({ kind: 'text', x: width / 2, y: 22, text: fitText(options.title, width - 20, 2), size: 2, anchor: 'middle', bold: true, role: 'title' });
  return { width, height, background: '#FFFFFF', title: options.title ?? 'line chart', shapes };
}

export function lineChartSvg(options: LineChartOptions): string {
  return sceneToSvg(lineChartScene(options));
}

export function lineChartPng(options: LineChartOptions): Buffer {
  return encodePng(rasterizeScene(lineChartScene(options)));
}
