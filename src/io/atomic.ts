/**
 * Atomic output folders: everything is written into a temporary sibling and renamed into place at the
 * end, so an interrupted or failed run leaves the destination as it was.
 */
import { promises as fs, rmSync } from 'node:fs';
import path from 'node:path';
import { FopeifyError, outputError } from '../errors.js';

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

/**
 * Run `write(tmpDir)` and then move tmpDir to `dir`. A non-empty `dir` is refused unless `force`, in which
 * case it is replaced only after the new content is complete.
 */
export async function writeFolderAtomically<T>(
  dir: string,
  options: { force?: boolean },
  write: (tmpDir: string) => Promise<T>,
): Promise<T> {
  const target = path.resolve(dir);
  const exists = !(await isEmptyOrMissing(target));
  if (exists && !options.force) {
    throw new FopeifyError('OUTPUT_EXISTS', `output folder ${dir} exists and is not empty (use --force to replace it)`);
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
  const tmp = path.join(parent, `.${path.basename(target)}.fopeify-tmp-${process.pid}-${Date.now()}`);
  try {
    await fs.mkdir(tmp);
  } catch (err) {
    throw outputError(err, parent);
  }
  const cleanup = () => fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
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
    if (exists) {
      const old = `${tmp}-old`;
      await fs.rename(target, old);
      await fs.rename(tmp, target);
      await fs.rm(old, { recursive: true, force: true });
    } else {
      await fs.rm(target, { recursive: true, force: true }); // an empty folder
      await fs.rename(tmp, target);
    }
    return result;
  } catch (err) {
    await cleanup();
    throw outputError(err, dir);
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}


/** Write a small file atomically (temp + rename). */
export async function writeFileAtomically(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
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
    try {
      await fs.copyFile(real, dst);
      return 'copied';
    } catch (err) {
      throw outputError(err, dst);
    }
  }
}
