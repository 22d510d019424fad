import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FopeifyError } from '../errors.js';
import type { ModelSourceOptions, ResolvedModel, SourceFile } from './source.js';

/** A Hub id looks like `org/name` (or `name`) and is not an existing path. */
export function looksLikeHubId(model: string): boolean {
  return /^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/.test(model) && !model.includes('..');
}

async function listFolder(dir: string): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  async function walk(rel: string): Promise<void> {
    const entries = await fs.readdir(path.join(dir, rel), { withFileTypes: true });
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.name.startsWith('.')) continue;
      if (e.isDirectory()) await walk(r);
      else {
        const st = await fs.stat(path.join(dir, r));
        if (st.isFile()) out.push({ path: r, size: st.size });
      }
    }
  }
  await walk('');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
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
