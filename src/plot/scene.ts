/**
 * Charts are drawn once as a scene of simple shapes, then rendered to SVG (here) or rasterized to PNG
 * (raster.ts), so both files show exactly the same picture. Coordinates are pixels, y down. Text is
 * anchored at (x, y) with y the vertical middle of the letters; `size` is the bitmap-font scale (glyphs
 * are 7·size pixels tall), which the SVG matches with a 10·size px font.
 */

export type TextAnchor = 'start' | 'middle' | 'end';

export type Shape =
  | { kind: 'rect'; x: number; y: number; w: number; h: number; fill: string; stroke?: string; role?: string }
  | { kind: 'line'; x1: number; y1: number; x2: number; y2: number; stroke: string; width?: number; dashed?: boolean }
  | { kind: 'polyline'; points: [number, number][]; stroke: string; width?: number }
  | { kind: 'circle'; cx: number; cy: number; r: number; fill: string }
  | {
      kind: 'text';
      x: number;
      y: number;
      text: string;
      size?: number;
      anchor?: TextAnchor;
      fill?: string;
      bold?: boolean;
      /** Rotated −90° (reads bottom to top), for y-axis titles. */
      vertical?: boolean;
      /** SVG-only class name, so tests and styles can find labels. */
      role?: string;
    };

export interface Scene {
  width: number;
  height: number;
  background: string;
  /** Accessible title (SVG <title>). */
  title: string;
  shapes: Shape[];
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const num = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(2));

/** The scene as a standalone SVG document. */
export function sceneToSvg(scene: Scene): string {
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${scene.width}" height="${scene.height}" viewBox="0 0 ${scene.width} ${scene.height}" font-family="Helvetica, Arial, sans-serif">`,
  );
  out.push(`<title>${escapeXml(scene.title)}</title>`);
  out.push(`<rect x="0" y="0" width="${scene.width}" height="${scene.height}" fill="${scene.background}"/>`);
  for (const s of scene.shapes) {
    switch (s.kind) {
      case 'rect':
        out.push(
          `<rect x="${num(s.x)}" y="${num(s.y)}" width="${num(s.w)}" height="${num(s.h)}" fill="${s.fill}"${s.stroke ? ` stroke="${s.stroke}"` : ''}${s.role ? ` class="${escapeXml(s.role)}"` : ''}/>`,
        );
        break;
      case 'line':
        out.push(
          `<line x1="${num(s.x1)}" y1="${num(s.y1)}" x2="${num(s.x2)}" y2="${num(s.y2)}" stroke="${s.stroke}" stroke-width="${s.width ?? 1}"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
        );
        break;
      case 'polyline':
        out.push(
          `<polyline points="${s.points.map(([x, y]) => `${num(x)},${num(y)}`).join(' ')}" fill="none" stroke="${s.stroke}" stroke-width="${s.width ?? 1}" stroke-linejoin="round"/>`,
        );
        break;
      case 'circle':
        out.push(`<circle cx="${num(s.cx)}" cy="${num(s.cy)}" r="${num(s.r)}" fill="${s.fill}"/>`);
        break;
      case 'text': {
        const size = s.size ?? 1;
        const anchor = s.anchor ?? 'start';
        const attrs = [
          `x="${num(s.x)}"`,
          `y="${num(s.y)}"`,
          `font-size="${10 * size}"`,
          `text-anchor="${anchor}"`,
          'dominant-baseline="central"',
          `fill="${s.fill ?? '#000000'}"`,
        ];
        if (s.bold) attrs.push('font-weight="bold"');
        if (s.vertical) attrs.push(`transform="rotate(-90 ${num(s.x)} ${num(s.y)})"`);
        if (s.role) attrs.push(`class="${escapeXml(s.role)}"`);
        out.push(`<text ${attrs.join(' ')}>${escapeXml(s.text)}</text>`);
        break;
      }
    }
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
