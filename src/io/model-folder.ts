/**
 * The one way fopeify reads a model folder. A folder is input, not trust: a file in it is used only when it
 * is a regular file whose real path stays inside the folder, or a Hugging Face cache blob
 * (snapshots/<commit>/x → ../../blobs/<etag> of the same models--org--name storage). Anything else (a link
 * leaving the folder, a FIFO, a device, a socket, a folder in a file's place, a link loop) is refused with
 * UNSAFE_PATH when the model needs the file, and left out of listings when it does not; a dangling link
 * counts as a missing file.
 *
 * Files are checked with stat before they are opened, opened O_NONBLOCK (a FIFO cannot block the open) and
 * O_NOFOLLOW on their real path, and checked again on the open handle, so a file swapped between the check
 * and the open is refused too. Small JSON files are read under a size and nesting limit.
 */
import { constants, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { FopeifyError, systemErrorCode, type ErrorCode } from '../errors.js';
import { JsonShapeError, parseBoundedJson } from './bounded-json.js';
import { writeFileWith } from './atomic.js';

const MiB = 1024 * 1024;
/** config.json, generation_config.json and other configuration files. */
export const MAX_CONFIG_BYTES = 4 * MiB;
/** model.safetensors.index.json (large mixture-of-experts models list ~100k tensors, ~10 MB). */
export const MAX_INDEX_BYTES = 64 * MiB;
/** tokenizer.json and tokenizer_config.json (the largest vocabularies are ~35 MB). */
export const MAX_TOKENIZER_BYTES = 64 * MiB;
/** Nesting limit of model JSON files (real configs and tokenizers stay under 10). */
export const MAX_JSON_DEPTH = 64;

const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);
const READ_REAL_FLAGS = READ_FLAGS | (constants.O_NOFOLLOW ?? 0);

/** A file that belongs to a model folder. */
export interface ModelFile {
  /** Path relative to the folder, `/`-separated. */
  name: string;
  /** Absolute path inside the folder (may be a symlink). */
  path: string;
  /** Where the content is: the file itself, or the link's target inside the folder or in the cache's blobs. */
  real: string;
  size: number;
}

/** A folder entry left out of a listing, and why. */
export interface IgnoredEntry {
  name: string;
  reason: string;
}

/** A model file opened for reading: the handle is the caller's to close. */
export interface OpenModelFile extends ModelFile {
  handle: FileHandle;
}

type Examined = { file: ModelFile; stat: Stats } | { missing: true } | { unsafe: string };

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function notRegular(st: Stats): string {
  return st.isDirectory() ? 'is a folder, not a file' : `is ${kindOf(st)}, not a regular file`;
}

function sameFile(a: Stats, b: Stats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * Open `file` (any path; symlinks followed) only if it is a regular file: stat first, open O_NONBLOCK, check
 * the handle. For files outside a model folder (reports next to it, a shard given by path). Open errors
 * (ENOENT, EACCES) are thrown as is for the caller to word; a special file is UNSAFE_PATH.
 */
export async function openRegularFile(file: string): Promise<{ handle: FileHandle; size: number }> {
  const before = await fs.stat(file);
  if (!before.isFile()) throw new FopeifyError('UNSAFE_PATH', `${file} ${notRegular(before)}; fopeify reads regular files only`);
  const handle = await fs.open(file, READ_FLAGS);
  try {
    const st = await handle.stat();
    if (!st.isFile() || !sameFile(st, before)) {
      throw new FopeifyError('UNSAFE_PATH', `${file} changed while being opened (${notRegular(st)}); fopeify reads regular files only`);
    }
    return { handle, size: st.size };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** Read a whole open file of known size (at most `size` bytes, however the file changes meanwhile). */
export async function readHandle(handle: FileHandle, size: number): Promise<Buffer> {
  const buf = Buffer.alloc(size);
  let done = 0;
  while (done < size) {
    const { bytesRead } = await handle.read(buf, done, size - done, done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === size ? buf : buf.subarray(0, done);
}

/**
 * Text of a regular file at any path, or undefined when it is missing, not a regular file, larger than
 * `maxBytes` or unreadable: for optional inputs (eval reports) whose absence changes nothing.
 */
export async function readOptionalRegularFile(file: string, maxBytes: number): Promise<string | undefined> {
  let opened;
  try {
    opened = await openRegularFile(file);
  } catch {
    return undefined;
  }
  try {
    if (opened.size > maxBytes) return undefined;
    return (await readHandle(opened.handle, opened.size)).toString('utf8');
  } catch {
    return undefined;
  } finally {
    await opened.handle.close();
  }
}

/** Is `name` a plain relative path (no absolute path, no `.`/`..` segment)? */
function isPlainRelative(name: string): boolean {
  if (!name || name.includes('\0') || name.includes('\\') || path.isAbsolute(name)) return false;
  return name.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

interface Roots {
  /** The folder's real path. */
  real: string;
  /** The real path of blobs/ when the folder is (inside) a snapshot of a Hugging Face cache. */
  blobs?: string;
}

/** A model folder, read only where it belongs. */
export class ModelFolder {
  private roots: Promise<Roots | undefined> | undefined;

  private constructor(readonly dir: string) {}

  static at(dir: string): ModelFolder {
    return new ModelFolder(path.resolve(dir));
  }

  private getRoots(): Promise<Roots | undefined> {
    this.roots ??= (async () => {
      let real: string;
      try {
        real = await fs.realpath(this.dir);
      } catch {
        return undefined;
      }
      // <cache>/models--org--name/snapshots/<commit>[/sub...]: links may lead to that storage's blobs/.
      for (let a = real; path.dirname(a) !== a; a = path.dirname(a)) {
        const snapshots = path.dirname(a);
        const storage = path.dirname(snapshots);
        if (path.basename(snapshots) === 'snapshots' && path.basename(storage).startsWith('models--')) {
          const blobs = await fs.realpath(path.join(storage, 'blobs')).catch(() => undefined);
          return { real, ...(blobs ? { blobs } : {}) };
        }
      }
      return { real };
    })();
    return this.roots;
  }

  /** Absolute path of `name` in the folder (for messages). */
  pathOf(name: string): string {
    return path.join(this.dir, ...name.split('/'));
  }

  /** Where `name` leads, and whether fopeify may read it; opens nothing. */
  private async examine(name: string): Promise<Examined> {
    if (!isPlainRelative(name)) return { unsafe: 'is not a plain file name inside the folder' };
    const roots = await this.getRoots();
    if (!roots) return { missing: true };
    const abs = this.pathOf(name);
    let real: string;
    try {
      real = await fs.realpath(abs);
    } catch (err) {
      const code = systemErrorCode(err);
      if (code === 'ELOOP') return { unsafe: 'is a symlink loop' };
      if (code === 'ENOENT' || code === 'ENOTDIR') return { missing: true }; // absent, or a dangling link
      return { unsafe: `cannot be resolved (${code ?? String(err)})` };
    }
    const inside = real.startsWith(roots.real + path.sep);
    const blob = roots.blobs !== undefined && path.dirname(real) === roots.blobs;
    if (!inside && !blob) {
      return {
        unsafe: `is a symlink to ${real}, outside the model folder (fopeify follows links only within the folder or into the Hugging Face cache's blobs)`,
      };
    }
    let stat: Stats;
    try {
      stat = await fs.lstat(real); // a real path has no link left in it
    } catch (err) {
      return { unsafe: `cannot be read (${systemErrorCode(err) ?? String(err)})` };
    }
    if (!stat.isFile()) return { unsafe: notRegular(stat) };
    return { file: { name, path: abs, real, size: stat.size }, stat };
  }

  private refusal(name: string, why: string): FopeifyError {
    return new FopeifyError('UNSAFE_PATH', `${this.pathOf(name)} ${why}; the model needs this file, so fopeify refuses to go on`);
  }

  /** `name` if it belongs to the folder; undefined when missing; UNSAFE_PATH when it is there but unusable. */
  async locate(name: string): Promise<ModelFile | undefined> {
    const e = await this.examine(name);
    if ('unsafe' in e) throw this.refusal(name, e.unsafe);
    return 'missing' in e ? undefined : e.file;
  }

  /** Open `name` for reading: undefined when missing; UNSAFE_PATH when it is there but unusable. */
  async open(name: string): Promise<OpenModelFile | undefined> {
    const e = await this.examine(name);
    if ('unsafe' in e) throw this.refusal(name, e.unsafe);
    if ('missing' in e) return undefined;
    let handle: FileHandle;
    try {
      handle = await fs.open(e.file.real, READ_REAL_FLAGS);
    } catch (err) {
      const code = systemErrorCode(err);
      if (code === 'ENOENT') return undefined; // removed since the check
      if (code === 'ELOOP') throw this.refusal(name, 'was replaced by a symlink while being opened');
      throw new FopeifyError('MODEL_NOT_FOUND', `cannot read ${this.pathOf(name)}: ${code ?? String(err)}`, { cause: err });
    }
    try {
      const st = await handle.stat();
      if (!st.isFile() || !sameFile(st, e.stat)) throw this.refusal(name, 'changed while being opened');
      return { ...e.file, size: st.size, handle };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /**
   * The text of `name`, at most `maxBytes` long: undefined when missing; UNSAFE_PATH when unusable;
   * `code` (the caller's error code for a bad file of this kind) when it is larger.
   */
  async readText(name: string, options: { maxBytes: number; code: ErrorCode }): Promise<string | undefined> {
    const f = await this.open(name);
    if (!f) return undefined;
    try {
      if (f.size > options.maxBytes) {
        throw new FopeifyError(
          options.code,
          `${f.path} is ${f.size} bytes, over the ${options.maxBytes}-byte limit for this file; it is not a file fopeify expects here`,
        );
      }
      return (await readHandle(f.handle, f.size)).toString('utf8');
    } finally {
      await f.handle.close();
    }
  }

  /** `name` parsed as JSON under the size limit and MAX_JSON_DEPTH; `code` for a file that is not such JSON. */
  async readJson(name: string, options: { maxBytes: number; code: ErrorCode; maxDepth?: number }): Promise<unknown> {
    const text = await this.readText(name, options);
    if (text === undefined) return undefined;
    try {
      return parseBoundedJson(text, options.maxDepth ?? MAX_JSON_DEPTH);
    } catch (err) {
      if (!(err instanceof JsonShapeError)) throw err;
      throw new FopeifyError(options.code, `${this.pathOf(name)} is not valid JSON: ${err.message}`);
    }
  }

  /**
   * Copy `name` to `dest` (a new file) from the checked handle: false when missing; UNSAFE_PATH when
   * unusable, so an outside file never travels into an output.
   */
  async copyTo(name: string, dest: string): Promise<boolean> {
    const f = await this.open(name);
    if (!f) return false;
    try {
      // temp + rename with typed write errors (a full disk is DISK_FULL, and nothing half-copied remains)
      await writeFileWith(dest, async (out) => {
        const chunk = Buffer.alloc(Math.min(Math.max(f.size, 1), 4 * MiB));
        for (let pos = 0; ; ) {
          const { bytesRead } = await f.handle.read(chunk, 0, chunk.length, pos);
          if (bytesRead === 0) break;
          for (let w = 0; w < bytesRead; ) w += (await out.write(chunk, w, bytesRead - w)).bytesWritten;
          pos += bytesRead;
        }
      });
      return true;
    } finally {
      await f.handle.close();
    }
  }

  /**
   * Every file that belongs to the folder (sorted by name), and the entries left out with the reason:
   * dot-files and dot-folders (.git, .cache, fopeify's temporary folders), unfinished downloads, links that
   * leave the folder, dangling links, loops, special files and symlinked folders. Real subfolders are walked.
   */
  async list(): Promise<{ files: ModelFile[]; ignored: IgnoredEntry[] }> {
    const files: ModelFile[] = [];
    const ignored: IgnoredEntry[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(rel ? this.pathOf(rel) : this.dir, { withFileTypes: true });
      } catch (err) {
        if (!rel) throw new FopeifyError('MODEL_NOT_FOUND', `cannot list model folder ${this.dir}: ${systemErrorCode(err) ?? String(err)}`);
        ignored.push({ name: rel, reason: `cannot be listed (${systemErrorCode(err) ?? String(err)})` });
        return;
      }
      for (const e of entries) {
        if (e.name.startsWith('.') || e.name.endsWith('.incomplete')) continue;
        const name = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          await walk(name);
          continue;
        }
        if (!e.isFile() && !e.isSymbolicLink()) {
          const st = await fs.lstat(this.pathOf(name)).catch(() => undefined);
          ignored.push({ name, reason: st ? `is ${kindOf(st)}` : 'vanished while being listed' });
          continue;
        }
        const x = await this.examine(name);
        if ('file' in x) files.push(x.file);
        else ignored.push({ name, reason: 'missing' in x ? 'is a dangling symlink' : x.unsafe });
      }
    };
    await walk('');
    const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    return { files: files.sort(byName), ignored: ignored.sort(byName) };
  }
}
