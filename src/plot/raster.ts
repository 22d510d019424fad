/** Rasterize a scene (rectangles, lines, discs, bitmap-font text) into an RGB image for the PNG encoder. */
import { parseColor, type Rgb } from './color.js';
import { GLYPH_ADVANCE, GLYPH_HEIGHT, GLYPH_WIDTH, glyphRows, textWidth } from './font.js';
import type { RgbImage } from './png.js';
import type { Scene, Shape } from './scene.js';

export class Raster implements RgbImage {
  readonly data: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb = [255, 255, 255],
  ) {
    this.data = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.data.set(background, i * 3);
  }

  setPixel(x: number, y: number, c: Rgb): void {
    x = Math.floor(x);
    y = Math.floor(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    this.data.set(c, (y * this.width + x) * 3);
  }

  getPixel(x: number, y: number): Rgb {
    const i = (Math.floor(y) * this.width + Math.floor(x)) * 3;
    return [this.data[i]!, this.data[i + 1]!, this.data[i + 2]!];
  }

  fillRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w));
    const y1 = Math.min(this.height, Math.round(y + h));
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) this.data.set(c, (yy * this.width + xx) * 3);
  }

  strokeRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    const x0 = Math.round(x);
    const y0 = Math.round(y);
    const x1 = Math.round(x + w) - 1;
    const y1 = Math.round(y + h) - 1;
    for (let xx = x0; xx <= x1; xx++) {
      this.setPixel(xx, y0, c);
      this.setPixel(xx, y1, c);
    }
    for (let yy = y0; yy <= y1; yy++) {
      this.setPixel(x0, yy, c);
      this.setPixel(x1, yy, c);
    }
  }

  /** A line `width` pixels thick (square brush); dashed as 6 on, 4 off. */
  line(x1: number, y1: number, x2: number, y2: number, c: Rgb, width = 1, dashed = false): void {
    const steps = Math.max(Math.abs(x2 - x1), Math.abs(y2 - y1), 1);
    const n = Math.ceil(steps);
    const half = (width - 1) / 2;
    for (let i = 0; i <= n; i++) {
      if (dashed && i % 10 >= 6) continue;
      const x = x1 + ((x2 - x1) * i) / n;
      const y = y1 + ((y2 - y1) * i) / n;
      if (width <= 1) this.setPixel(Math.round(x), Math.round(y), c);
      else this.fillRect(Math.round(x - half), Math.round(y - half), width, width, c);
    }
  }

  disc(cx: number, cy: number, r: number, c: Rgb): void {
    for (let y = Math.floor(cy - r); y <= Math.ceil(cy + r); y++) {
      for (let x = Math.floor(cx - r); x <= Math.ceil(cx + r); x++) {
        const dx = x + 0.5 - cx;
        const dy = y + 0.5 - cy;
        if (dx * dx + dy * dy <= r * r) this.setPixel(x, y, c);
      }
    }
  }

  /** Bitmap-font text anchored as in scene.ts (y = vertical middle of the letters). */
  text(x: number, y: number, text: string, scale: number, c: Rgb, anchor: 'start' | 'middle' | 'end' = 'start', vertical = false, bold = false): void {
    const w = textWidth(text, scale);
    const h = GLYPH_HEIGHT * scale;
    const shift = anchor === 'start' ? 0 : anchor === 'middle' ? w / 2 : w;
    const chars = [...text];
    // (u, v): pixel offset along the text and down the glyph, before rotation.
    const plot = (u: number, v: number) => {
      if (!vertical) this.fillRect(Math.round(x - shift) + u, Math.round(y - h / 2) + v, scale, scale, c);
      else this.fillRect(Math.round(x - h / 2) + v, Math.round(y + shift) - u - scale, scale, scale, c);
    };
    chars.forEach((ch, i) => {
      const rows = glyphRows(ch);
      for (let r = 0; r < GLYPH_HEIGHT; r++) {
        for (let col = 0; col < GLYPH_WIDTH; col++) {
          if ((rows[r]! >> (GLYPH_WIDTH - 1 - col)) & 1) {
            const u = (i * GLYPH_ADVANCE + col) * scale;
            plot(u, r * scale);
            if (bold) plot(u + 1, r * scale);
          }
        }
      }
    });
  }
}

function drawShape(r: Raster, s: Shape): void {
  switch (s.kind) {
    case 'rect':
      r.fillRect(s.x, s.y, s.w, s.h, parseColor(s.fill));
      if (s.stroke) r.strokeRect(s.x, s.y, s.w, s.h, parseColor(s.stroke));
      break;
    case 'line':
      r.line(s.x1, s.y1, s.x2, s.y2, parseColor(s.stroke), s.width ?? 1, s.dashed);
      break;
    case 'polyline': {
      const c = parseColor(s.stroke);
      for (let i = 1; i < s.points.length; i++) {
        const [a, b] = [s.points[i - 1]!, s.points[i]!];
        r.line(a[0], a[1], b[0], b[1], c, s.width ?? 1);
      }
      break;
    }
    case 'circle':
      r.disc(s.cx, s.cy, s.r, parseColor(s.fill));
      break;
    case 'text':
      r.text(s.x, s.y, s.text, s.size ?? 1, parseColor(s.fill ?? '#000000'), s.anchor, s.vertical, s.bold);
      break;
  }
}

/** Draw every shape of the scene, in order, on a fresh image. */
export function rasterizeScene(scene: Scene): Raster {
  const r = new Raster(Math.ceil(scene.width), Math.ceil(scene.height), parseColor(scene.background));
  for (const s of scene.shapes) drawShape(r, s);
  return r;
}
