import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  accuracyColor,
  crc32,
  encodePng,
  heatmapScene,
  lineChartScene,
  lineChartSvg,
  NIAH_COLORS,
  niceTicks,
  rasterizeScene,
  renderHeatmapPng,
  renderHeatmapSvg,
  type HeatmapPanel,
} from '../../src/plot/index.js';
import { glyphRows, textWidth } from '../../src/plot/font.js';
import { decodePng } from './png-decode.js';

const hex = (rgb: [number, number, number]) => '#' + rgb.map((c) => c.toString(16).padStart(2, '0')).join('').toUpperCase();

describe('PNG encoder', () => {
  it('computes CRC-32 like zlib', () => {
    for (const s of ['', 'IEND', 'The quick brown fox jumps over the lazy dog']) {
      expect(crc32(Buffer.from(s))).toBe(zlibCrc32(Buffer.from(s)));
    }
  });

  it('writes a valid RGB PNG that reads back pixel for pixel', () => {
    const width = 7;
    const height = 5;
    const data = new Uint8Array(width * height * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 256;
    const png = decodePng(encodePng({ width, height, data }));
    expect(png.chunks).toEqual(['IHDR', 'IDAT', 'IEND']);
    expect([png.width, png.height]).toEqual([width, height]);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      expect(png.pixel(x, y)).toEqual([data[i], data[i + 1], data[i + 2]]);
    }
    expect(() => encodePng({ width: 2, height: 2, data: new Uint8Array(3) })).toThrow(/bytes/);
  });
});

describe('bitmap font', () => {
  it('has a glyph for printable ASCII and a fallback', () => {
    expect(glyphRows(' ')).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(glyphRows('1')).not.toEqual(glyphRows('7'));
    expect(glyphRows('é')).toEqual(glyphRows('?'));
    const distinct = new Set(Array.from({ length: 95 }, (_, i) => glyphRows(String.fromCharCode(32 + i)).join(',')));
    expect(distinct.size).toBe(95);
    expect(textWidth('abc', 2)).toBe(34);
  });
});

describe('colour scale', () => {
  it('runs red → yellow → green as the NIAH plots', () => {
    expect(accuracyColor(0)).toBe(NIAH_COLORS[0]);
    expect(accuracyColor(0.5)).toBe(NIAH_COLORS[1]);
    expect(accuracyColor(1)).toBe(NIAH_COLORS[2]);
    expect(accuracyColor(null)).toBe('#D9D9D9');
  });
});

const panelA: HeatmapPanel = {
  name: 'rope-model',
  lengths: [512, 1024, 2048],
  depths: [0, 0.5, 1],
  accuracy: [
    [1, 1, 0],
    [1, 0.5, 0],
    [1, null, 0.25],
  ],
};
const panelB: HeatmapPanel = { ...panelA, name: 'fope-model', accuracy: panelA.accuracy.map((r) => r.map(() => 1)) };

describe('heatmap', () => {
  it('SVG: length on x, depth percent on y, titles, one coloured cell per value', () => {
    const svg = renderHeatmapSvg(panelA, { title: 'Passkey retrieval accuracy' });
    const labels = (cls: string) => [...svg.matchAll(new RegExp(`class="${cls}">([^<]*)<`, 'g'))].map((m) => m[1]);
    expect(labels('x-label')).toEqual(['512', '1K', '2K']);
    expect(labels('y-label')).toEqual(['0%', '50%', '100%']);
    expect(labels('axis-title')).toEqual(['Context length (tokens)', 'Depth (%)']);
    expect(labels('panel-title')).toEqual(['rope-model']);
    expect(labels('title')).toEqual(['Passkey retrieval accuracy']);
    expect(labels('legend-label')).toEqual(['100%', '50%', '0%']);
    const cells = [...svg.matchAll(/fill="(#[0-9A-F]{6})"[^>]*class="cell"/g)].map((m) => m[1]);
    expect(cells).toEqual(panelA.accuracy.flat().map((a) => accuracyColor(a)));
    expect(labels('cell-value')).toEqual(['100', '100', '0', '100', '50', '0', '100', '-', '25']);
    expect(svg).toMatch(/transform="rotate\(-90 /);
  });

  it('comparison: one panel per model side by side', () => {
    const svg = renderHeatmapSvg([panelA, panelB]);
    expect([...svg.matchAll(/class="panel-title">([^<]*)</g)].map((m) => m[1])).toEqual(['rope-model', 'fope-model']);
    expect([...svg.matchAll(/class="cell"/g)]).toHaveLength(18);
  });

  it('PNG: the same picture, each cell filled with its colour', () => {
    const scene = heatmapScene([panelA, panelB], { title: 'x' });
    const png = decodePng(renderHeatmapPng([panelA, panelB], { title: 'x' }));
    expect([png.width, png.height]).toEqual([Math.ceil(scene.width), Math.ceil(scene.height)]);
    const cells = scene.shapes.filter((s) => s.kind === 'rect' && s.role === 'cell');
    expect(cells).toHaveLength(18);
    for (const c of cells) {
      if (c.kind !== 'rect') continue;
      // Near the corner: away from the white border and the value text in the middle.
      expect(hex(png.pixel(Math.round(c.x) + 4, Math.round(c.y) + 4))).toBe(c.fill);
    }
    // Labels are drawn: dark pixels exist left of the first grid (the depth labels).
    const first = cells[0]!;
    let dark = 0;
    if (first.kind === 'rect') {
      for (let y = Math.round(first.y); y < first.y + 30; y++) for (let x = 20; x < first.x - 2; x++) if (png.pixel(x, y)[0] < 100) dark++;
    }
    expect(dark).toBeGreaterThan(10);
  });
});

describe('line chart', () => {
  const series = [
    { name: 'rope', points: [[128, 20], [256, 19], [512, 60], [1024, 900]] as [number, number][] },
    { name: 'fope', points: [[128, 21], [256, 19.5], [512, 19], [1024, Infinity]] as [number, number][] },
  ];

  it('draws one line per model with labelled axes and a log y axis for a wide range', () => {
    const svg = lineChartSvg({ title: 'Perplexity vs context length', xLabel: 'Context window (tokens)', yLabel: 'Perplexity', series, markers: [{ x: 256, label: 'trained' }] });
    expect([...svg.matchAll(/class="x-label">([^<]*)</g)].map((m) => m[1])).toEqual(['128', '256', '512', '1K']);
    expect([...svg.matchAll(/class="legend-label">([^<]*)</g)].map((m) => m[1])).toEqual(['rope', 'fope']);
    expect(svg).toContain('>Perplexity<');
    expect(svg).toContain('stroke-dasharray');
    const yTicks = [...svg.matchAll(/class="y-label">([^<]*)</g)].map((m) => Number(m[1]));
    expect(yTicks).toContain(100); // log ticks 20, 50, 100, 200, 500
    expect(svg.match(/<polyline/g)).toHaveLength(2);
  });

  it('draws error bars, and the y axis covers them', () => {
    const plain = lineChartScene({ series: [{ name: 'a', points: [[256, 50], [512, 60]] }], logY: false });
    const withBars = lineChartScene({
      series: [{ name: 'a', points: [[256, 50], [512, 60]], errors: [[20, 80], null] }],
      logY: false,
    });
    const lines = (sc: typeof plain) => sc.shapes.filter((s) => s.kind === 'line' && s.stroke !== '#E5E5E5' && s.stroke !== '#F0F0F0' && s.stroke !== '#000000');
    // One bar (a vertical stroke and two caps) for the point with an interval, none for the other.
    expect(lines(withBars).length - lines(plain).length).toBe(3);
    const labels = (sc: typeof plain) => sc.shapes.filter((s) => s.kind === 'text' && s.role === 'y-label').map((s) => Number((s as { text: string }).text));
    expect(Math.max(...labels(withBars))).toBeGreaterThanOrEqual(80);
    expect(Math.max(...labels(plain))).toBeLessThan(80);
  });

  it('rasterizes', () => {
    const scene = lineChartScene({ series });
    const r = rasterizeScene(scene);
    expect([r.width, r.height]).toEqual([560 + 100, 440]);
    expect(niceTicks(0, 10)).toEqual([0, 2, 4, 6, 8, 10]);
  });
});
