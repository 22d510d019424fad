/** A scene on disk: `<base>.svg` and `<base>.png`, each written atomically (a reader never sees half a figure). */
import path from 'node:path';
import { writeFileAtomically } from '../io/atomic.js';
import { encodePng } from './png.js';
import { rasterizeScene } from './raster.js';
import { sceneToSvg, type Scene } from './scene.js';

/** A scene as `<base>.svg` and `<base>.png` in `dir`; returns the two paths. */
export async function writeScene(dir: string, base: string, scene: Scene): Promise<string[]> {
  const svg = path.join(dir, `${base}.svg`);
  const png = path.join(dir, `${base}.png`);
  await writeFileAtomically(svg, sceneToSvg(scene));
  await writeFileAtomically(png, encodePng(rasterizeScene(scene)));
  return [svg, png];
}
