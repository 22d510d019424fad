/** Colours of the charts: the original NIAH red → yellow → green scale and a categorical palette. */

/** The NIAH heatmap colours (gkamradt's LinearSegmentedColormap): 0 → red, 0.5 → yellow, 1 → green. */
export const NIAH_COLORS = ['#F0496E', '#EBB839', '#0CD79F'] as const;
/** Cells without results. */
export const MISSING_COLOR = '#D9D9D9';
/** Series colours of line charts. */
export const SERIES_COLORS = ['#1F77B4', '#D62728', '#2CA02C', '#9467BD', '#FF7F0E', '#8C564B', '#E377C2', '#17BECF'];

export type Rgb = [number, number, number];

export function parseColor(color: string): Rgb {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) throw new RangeError(`colour must be #rrggbb, got ${color}`);
  const v = parseInt(m[1]!, 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

export function toHex(rgb: Rgb): string {
  return '#' + rgb.map((c) => Math.round(Math.min(255, Math.max(0, c))).toString(16).padStart(2, '0')).join('').toUpperCase();
}

/** The heatmap colour of an accuracy in [0, 1] (linear in RGB between the three stops); null → grey. */
export function accuracyColor(accuracy: number | null): string {
  if (accuracy === null || !Number.isFinite(accuracy)) return MISSING_COLOR;
  const a = Math.min(1, Math.max(0, accuracy));
  const [lo, hi, t] = a <= 0.5 ? [NIAH_COLORS[0], NIAH_COLORS[1], a / 0.5] : [NIAH_COLORS[1], NIAH_COLORS[2], (a - 0.5) / 0.5];
  const p = parseColor(lo);
  const q = parseColor(hi);
  return toHex([p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t, p[2] + (q[2] - p[2]) * t]);
}

/** Black or white, whichever reads better on `background`. */
export function textColorOn(background: string): string {
  const [r, g, b] = parseColor(background);
  return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? '#000000' : '#FFFFFF';
}
