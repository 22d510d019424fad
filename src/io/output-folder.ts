/**
 * The rules every command follows before it writes a folder, in one place: an output is never the
 * empty string (which path.resolve turns into the current folder), never the model it reads, never
 * inside that model and never around it (replacing a parent would delete the source with it). Also the
 * naming of fopeify's temporary files and folders, and the removal of those left by dead processes.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { badOption, optionName, outputError } from '../errors.js';
import { namesIn } from './files.js';

/** Marks fopeify's temporary siblings: `.<name>.fopeify-tmp-<pid>-<time>-<host>-<n>`. */
const TEMP_MARK = '.fopeify-tmp-';
/** The temporary folder of finetune's model files before this naming existed. */
const LEGACY_FINAL_TEMP = /^\.fopeify-final-(\d+)$/;

/** A short tag of this machine's name: a pid means nothing on another host sharing the folder. */
const HOST_TAG = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
let tempCounter = 0;

/** A fresh temporary path next to `target` (same folder, so renaming it onto `target` is atomic). */
export function tempSibling(target: string): string {
  const name = `.${path.basename(target)}${TEMP_MARK}${process.pid}-${Date.now()}-${HOST_TAG}-${tempCounter++}`;
  return path.join(path.dirname(target), name);
}

/** The pid and host tag of a fopeify temporary name, or null for any other name. */
export function parseTempName(name: string): { pid: number; host?: string } | null {
  const legacy = LEGACY_FINAL_TEMP.exec(name);
  if (legacy) return { pid: Number(legacy[1]) };
  const at = name.lastIndexOf(TEMP_MARK);
  if (!name.startsWith('.') || at <= 0) return null;
  const parts = name.slice(at + TEMP_MARK.length).split('-');
  if (parts.length < 2 || !/^\d+$/.test(parts[0]!) || !/^\d+$/.test(parts[1]!)) return null;
  const host = parts[2] !== undefined && /^[0-9a-f]{8}$/.test(parts[2]) ? parts[2] : undefined;
  return { pid: Number(parts[0]), host };
}

/** Is process `pid` running? EPERM means it runs under another user: alive. */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove the temporaries in `dir` that fopeify processes left when they were killed: only names in
 * fopeify's temporary format, only of processes on this host that are no longer running (never this
 * process's own, never a live one's). Returns the names removed; errors are ignored (best effort).
 */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await namesIn(dir)) {
    const t = parseTempName(name);
    if (!t || t.pid === process.pid) continue;
    if (t.host !== undefined && t.host !== HOST_TAG) continue;
    if (processAlive(t.pid)) continue;
    try {
      await fs.rm(path.join(dir, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      /* someone else's to deal with */
    }
  }
  return removed;
}

/**
 * Refuse an output given as an empty (or blank) string: path.resolve('') is the current folder. `option`
 * is the library option that gave it (`outDir`), which the message names and the CLI shows as its flag.
 */
export function requireOutputPath(out: unknown, option = 'out'): string {
  if (typeof out !== 'string' || !out.trim()) {
    throw badOption(option, `${optionName(option)} is empty: name an output folder (the current folder is never used implicitly)`);
  }
  return out;
}

/** The real path of `p`, also when its last parts do not exist yet (the nearest existing parent is resolved). */
export async function realPathOf(p: string): Promise<string> {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      return path.join(await fs.realpath(cur), ...rest.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return abs;
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/** Is `inner` equal to `outer` or inside it? (Both absolute and normalized.) */
export function isSameOrInside(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

export interface OutputFolderRules {
  /** Folders the command reads (model folders): the output may not be one, be inside one, or contain one. */
  sources?: readonly string[];
  /** The library option that named the output, for messages (default `out`). */
  option?: string;
}

/**
 * Check an output folder against the rules (see the file comment), comparing real paths so symlinks and
 * `..` do not hide a match. Returns the absolute output path (not resolved through symlinks).
 */
export async function checkOutputFolder(out: string, rules: OutputFolderRules = {}): Promise<string> {
  const option = rules.option ?? 'out';
  requireOutputPath(out, option);
  const bad = (what: string) => badOption(option, `${optionName(option)} ${out} ${what}`);
  const abs = path.resolve(out);
  const real = await realPathOf(abs);
  if (path.dirname(real) === real) throw bad('is the root of the file system');
  for (const source of rules.sources ?? []) {
    const src = await realPathOf(source);
    if (real === src) throw bad(`is the model folder being read (${source}); choose another output folder`);
    if (isSameOrInside(real, src)) throw bad(`is inside the model folder being read (${source}); choose a folder outside it`);
    if (isSameOrInside(src, real)) throw bad(`contains the model folder being read (${source}); choose a folder that does not hold it`);
  }
  return abs;
}

/** The model arguments that name existing local folders (Hub ids are not folders here). */
export async function localFolders(models: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const m of models) {
    if (!m) continue;
    const st = await fs.stat(m).catch(() => undefined);
    if (st?.isDirectory()) out.push(m);
  }
  return out;
}

/**
 * For commands that add files to a folder (needle, ppl, demo, finetune): check the rules, create the
 * folder, and remove what killed fopeify runs left in it. Returns the absolute path.
 */
export async function prepareOutputFolder(out: string, rules: OutputFolderRules = {}): Promise<string> {
  const abs = await checkOutputFolder(out, rules);
  try {
    await fs.mkdir(abs, { recursive: true });
  } catch (err) {
    throw outputError(err, out);
  }
  await removeStaleTemps(abs);
  return abs;
}
