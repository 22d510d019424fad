/**
 * The Python files of a FoPE model folder: the transformers remote code (`configuration_fope.py`,
 * `modeling_fope.py`) and the plain PyTorch core they import (`fope_*.py`). Their one source is the
 * repository's `python/fopeify_torch/` package; every FoPE folder fopeify writes gets a byte-identical copy
 * (transformers loads a folder's files and their relative imports, nothing else).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasFopeArchName, namedFopeConfig } from '../config/fope-arch.js';
import { parseModelConfig } from '../config/model-spec.js';
import { FopeifyError } from '../errors.js';
import { exists } from '../io/files.js';
import { REMOTE_CODE_FILES } from '../io/model-files.js';

/** Every Python file a FoPE folder carries (kept equal to REMOTE_CODE_FILES in fope_runner.py; a test checks). */
export { REMOTE_CODE_FILES };

/** The runner `fopeify logits --engine torch` calls inside the folder. */
export const RUNNER_FILE = 'fope_runner.py';

/** `python/fopeify_torch/` of the installed package (src/bridge and dist/bridge sit at the same depth). */
export function pythonPackageDir(): string {
  return fileURLToPath(new URL('../../python/fopeify_torch/', import.meta.url));
}

/** The repository's `python/` folder (the package's parent: PYTHONPATH for the Python tests). */
export function pythonRoot(): string {
  return path.dirname(pythonPackageDir());
}

/** Copy the Python files into a model folder (overwriting older copies). Returns the file names. */
export async function writeRemoteCode(dir: string): Promise<string[]> {
  const src = pythonPackageDir();
  for (const f of REMOTE_CODE_FILES) {
    try {
      await fs.copyFile(path.join(src, f), path.join(dir, f));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !(await exists(path.join(src, f)))) {
        throw new FopeifyError('INTERNAL', `fopeify's Python source ${path.join(src, f)} is missing (a broken install)`);
      }
      throw err;
    }
  }
  return [...REMOTE_CODE_FILES];
}

/** The Python files a folder lacks. */
export async function missingRemoteCode(dir: string): Promise<string[]> {
  const missing: string[] = [];
  for (const f of REMOTE_CODE_FILES) if (!(await exists(path.join(dir, f)))) missing.push(f);
  return missing;
}

/** Python files of the folder that differ from this fopeify's (older or edited copies). */
export async function staleRemoteCode(dir: string): Promise<string[]> {
  const src = pythonPackageDir();
  const stale: string[] = [];
  for (const f of REMOTE_CODE_FILES) {
    try {
      const [a, b] = await Promise.all([fs.readFile(path.join(dir, f)), fs.readFile(path.join(src, f))]);
      if (!a.equals(b)) stale.push(f);
    } catch {
      stale.push(f);
    }
  }
  return stale;
}

/**
 * A FoPE model's config under fopeify's remote-code names (`<base>_fope`, auto_map, base family, layout);
 * a config without FoPE settings comes back unchanged. For writers of FoPE folders (finetune output).
 */
export function fopeFolderConfig(config: Record<string, unknown>, layout: 'shared' | 'per-layer' | null): Record<string, unknown> {
  const spec = parseModelConfig(config);
  if (!spec.fope || !layout) return config;
  return namedFopeConfig(config, spec.family, 'fope', layout);
}

/**
 * Before a push: a folder named as fopeify's FoPE remote code gets this fopeify's Python files (missing or
 * older copies rewritten), so what reaches the Hub loads with `trust_remote_code=True`. Other folders are
 * left alone. Returns the files written.
 */
export async function refreshRemoteCode(dir: string): Promise<string[]> {
  let raw: unknown;
  try {
    raw = JSON.parse(await fs.readFile(path.join(dir, 'config.json'), 'utf8'));
  } catch {
    return [];
  }
  if (!raw || typeof raw !== 'object' || !hasFopeArchName(raw as Record<string, unknown>)) return [];
  const stale = await staleRemoteCode(dir);
  const src = pythonPackageDir();
  for (const f of stale) await fs.copyFile(path.join(src, f), path.join(dir, f));
  return stale;
}
