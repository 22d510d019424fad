/**
 * The plain file edits of fuzz mutations (./fuzz-apply.ts): JSON read / write and edits by dotted path,
 * pathologically deep JSON, a file replaced by a symlink.
 */
import { promises as fs } from 'node:fs';

export async function readJson(file: string): Promise<Record<string, unknown> | null> {
  try {
    const v = JSON.parse(await fs.readFile(file, 'utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export async function writeJson(file: string, value: unknown): Promise<void> {
  await fs.writeFile(file, JSON.stringify(value, null, 2) + '\n');
}

export function deepNesting(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

export function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    const next = cur[k];
    if (!next || typeof next !== 'object' || Array.isArray(next)) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

export function deletePath(obj: Record<string, unknown>, dotted: string): void {
  const keys = dotted.split('.');
  let cur: unknown = obj;
  for (const k of keys.slice(0, -1)) cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[k] : undefined;
  if (cur && typeof cur === 'object') delete (cur as Record<string, unknown>)[keys[keys.length - 1]!];
}

/** A symlink at `at` pointing to `target` (relative targets are relative to the link's folder). */
export async function replaceWithSymlink(at: string, target: string): Promise<void> {
  await fs.rm(at, { recursive: true, force: true });
  await fs.symlink(target, at);
}
