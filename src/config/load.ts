import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FopeifyError } from '../errors.js';
import { parseModelConfig, type ModelSpec } from './model-spec.js';

/** Read and parse `<dir>/config.json`. */
export async function loadModelSpec(dir: string): Promise<ModelSpec> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    throw new FopeifyError('BAD_CONFIG', `${dir} has no config.json`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FopeifyError('BAD_CONFIG', `${file} is not valid JSON: ${(err as Error).message}`);
  }
  return parseModelConfig(raw, file);
}
