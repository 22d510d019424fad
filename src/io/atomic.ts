/**
 * Atomic outputs. Every file fopeify writes is written into a new temporary sibling (created exclusively,
 * so never an existing file and never through a hard link shared with a source), flushed, and renamed over
 * its name; folders are built in a temporary sibling and renamed into place when complete. An interrupted
 * or failed run leaves the destination as it was, and every write error is a typed FopeifyError.
 */
import { constants as fsConstants, promises as fs, rmSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { FopeifyError, outputError, systemErrorCode } from '../errors.js';
import { checkOutputFolder, removeStaleTemps, tempSibling, type OutputFolderRules } from './output-folder.js';

/** Is `dir` missing or an empty folder? */
export async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    const st = await fs.stat(dir);
    if (!st.isDirectory()) return false;
    return (await fs.readdir(dir)).length === 0;
  } catch {
    return true;
  }
}

export interface FolderWriteOptions extends OutputFolderRules {
  /** Replace a non-empty folder (only ever by renaming the complete new one into place). */
  force?: boolean;
}

/**
 * Run `write(tmpDir)` and then move tmpDir to `dir`. The output rules (output-folder.ts) are checked
 * first. A non-empty `dir` is refused unless `force`; so is one that became non-empty while `write` ran
 * (another writer): nothing is ever deleted to make room unless `force` says so, and then only after the
 * new content is complete. Temporaries of dead fopeify processes next to `dir` are removed.
 */
export async function writeFolderAtomically<T>(dir: string, options: FolderWriteOptions, write: (tmpDir: string) => Promise<T>): Promise<T> {
  const target = await checkOutputFolder(dir, options);
  const exists = !(await isEmptyOrMissing(target));
  if (exists && !options.force) {
    throw new FopeifyError('OUTPUT_EXISTS', `output folder ${dir} exists and is not empty (use \`force\` to replace it)`, { option: 'force' });
  }
  try {
    const st = await fs.stat(target);
    if (!st.isDirectory()) throw new FopeifyError('OUTPUT_UNWRITABLE', `output ${dir} exists and is not a folder`);
  } catch (err) {
    if (err instanceof FopeifyError) throw err;
  }
  const parent = path.dirname(target);
  try {
    await fs.mkdir(parent, { recursive: true });
  } catch (err) {
    throw outputError(err, parent);
  }
  await removeStaleTemps(parent);
  const tmp = tempSibling(target);
  try {
    await fs.mkdir(tmp);
  } catch (err) {
    throw outputError(err, parent);
  }
  const onSignal = () => {
    // Synchronous removal: the process is about to exit and async work will not finish.
    try {
      rmSync(tmp, { recursive: true, force: true });
    } finally {
      process.exit(130);
    }
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const result = await write(tmp);
    await moveFolderIntoPlace(tmp, target, dir, options.force ?? false);
    return result;
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw outputError(err, dir);
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/** Codes rename(2) gives when the destination is a non-empty folder or not a folder. */
const OCCUPIED = new Set(['ENOTEMPTY', 'EEXIST', 'ENOTDIR', 'EISDIR']);

async function moveFolderIntoPlace(tmp: string, target: string, shown: string, force: boolean): Promise<void> {
  try {
    // Atomic when `target` is missing or an empty folder; fails (instead of deleting) when anything is in it.
    await fs.rename(tmp, target);
    return;
  } catch (err) {
    if (!OCCUPIED.has(systemErrorCode(err) ?? '')) throw err;
  }
  if (!force) {
    throw new FopeifyError(
      'OUTPUT_EXISTS',
      `output folder ${shown} was written to by something else while fopeify ran; it was left as it is and the new result discarded (use \`force\` to replace it)`,
      { option: 'force' },
    );
  }
  // --force: swap the complete new folder in; the old one goes only once the new one is in place.
  const old = `${tmp}-old`;
  await fs.rename(target, old);
  await fs.rename(tmp, target);
  await fs.rm(old, { recursive: true, force: true }).catch(() => undefined);
}

/**
 * Write `file` through a temporary sibling: `fill` writes into a new, exclusively created file, which is
 * flushed to disk and renamed over `file`. Whatever `file` was (maybe a hard link to a source's file) is
 * only unlinked by the rename, never written. On any error the temporary is removed and the error typed.
 */
export async function writeFileWith<T>(file: string, fill: (handle: FileHandle) => Promise<T>): Promise<T> {
  const tmp = tempSibling(file);
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(tmp, 'wx');
    const result = await fill(handle);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.rename(tmp, file);
    return result;
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw outputError(err, file);
  }
}

/** Write a file atomically (temp + fsync + rename). */
export async function writeFileAtomically(file: string, data: string | Uint8Array): Promise<void> {
  await writeFileWith(file, async (h) => {
    await h.writeFile(data);
  });
}

/** Copy `src` to `dst` atomically (temp + fsync + rename), checking that every byte arrived. */
export async function copyFileAtomically(src: string, dst: string): Promise<void> {
  const tmp = tempSibling(dst);
  try {
    await fs.copyFile(src, tmp, fsConstants.COPYFILE_EXCL);
    const [a, b] = await Promise.all([fs.stat(src), fs.stat(tmp)]);
    if (a.size !== b.size) {
      throw new FopeifyError('OUTPUT_UNWRITABLE', `copying ${src} to ${dst} wrote ${b.size} of ${a.size} bytes`);
    }
    const h = await fs.open(tmp, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
    await fs.rename(tmp, dst);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    if (systemErrorCode(err) === 'ENOENT' && !(await exists(src))) throw err; // the source is missing: the caller's call
    throw outputError(err, dst);
  }
}

const exists = (p: string) => fs.stat(p).then(() => true, () => false);

/**
 * Append `text` to `file` (created if missing). When the write fails (a full disk), the file is cut back
 * to its previous length, so it never ends in a torn record; the error is typed.
 */
export async function appendToFile(file: string, text: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(file, 'a');
    const { size } = await handle.stat();
    try {
      await handle.writeFile(text);
    } catch (err) {
      await handle.truncate(size).catch(() => undefined);
      throw err;
    }
    await handle.close();
    handle = undefined;
  } catch (err) {
    await handle?.close().catch(() => undefined);
    throw outputError(err, file);
  }
}

/** Cut `file` to `length` bytes and flush: one system call, so a kill leaves either the old or the new length. */
export async function truncateFile(file: string, length: number): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(file, 'r+');
    await handle.truncate(length);
    await handle.sync();
    await handle.close();
    handle = undefined;
  } catch (err) {
    await handle?.close().catch(() => undefined);
    throw outputError(err, file);
  }
}

/** Hard-link `src` to `dst`, copying when linking is impossible (another file system, no permission). */
export async function linkOrCopy(src: string, dst: string): Promise<'linked' | 'copied'> {
  // link(2) does not follow symlinks on Linux, and HF cache snapshots are symlinks to blobs: link the blob.
  const real = await fs.realpath(src);
  try {
    await fs.link(real, dst);
    return 'linked';
  } catch {
    await copyFileAtomically(real, dst);
    return 'copied';
  }
}
