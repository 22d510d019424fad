import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FopeifyError } from '../errors.js';
import { ModelFolder } from '../io/model-folder.js';
import type { ModelSourceOptions, ResolvedModel, SourceFile } from './source.js';

/** A Hub id looks like `org/name` (or `name`) and is not an existing path. */
export function looksLikeHubId(model: string): boolean {
  return /^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/.test(model) && !model.includes('..');
}

/** The files that belong to a local model folder; dangling links, special files and links out of it are left out. */
async function listFolder(dir: string): Promise<SourceFile[]> {
  const { files } = await ModelFolder.at(dir).list();
  return files.map((f) => ({ path: f.name, size: f.size }));
}

/**
 * Resolve `<model>`: an existing folder is used as is; anything else that looks like a Hub id is looked up
 * in the local HF cache and downloaded when missing.
 */
export async function resolveModel(model: string, options: ModelSourceOptions = {}): Promise<ResolvedModel> {
  let stat;
  try {
    stat = await fs.stat(model);
  } catch {
    stat = undefined;
  }
  if (stat?.isDirectory()) {
    const dir = path.resolve(model);
    return { dir, kind: 'folder', id: model, files: await listFolder(dir) };
  }
  if (stat) throw new FopeifyError('MODEL_NOT_FOUND', `${model} is a file, not a model folder or Hub id`);
  if (!looksLikeHubId(model) || model.startsWith('.') || model.startsWith('/')) {
    throw new FopeifyError('MODEL_NOT_FOUND', `model not found: ${model} is neither a folder nor a Hub id (org/name)`);
  }
  const { resolveHubModel } = await import('./hub-model.js');
  return resolveHubModel(model, options);
}
