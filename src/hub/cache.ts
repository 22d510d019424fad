/**
 * The HF cache in Python's layout, shared with transformers and huggingface_hub:
 *
 *   <cache>/models--org--name/
 *     blobs/<etag>                  file contents; etag = sha256 for LFS files, git blob sha1 otherwise
 *     blobs/<etag>.incomplete       a download in progress (resumed with Range)
 *   <cache>/.locks/models--org--name/<etag>.lock
 *                                   held while blobs/<etag> is downloaded (./cache-lock.ts; huggingface_hub's lock)
 *     refs/<revision>               the commit sha a branch or tag pointed to
 *     snapshots/<commit>/<path>     relative symlinks to ../../blobs/<etag>
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FopeifyError, systemErrorCode } from '../errors.js';
import { assertSafeRevision, isCommitSha, isSafeRepoPath, joinInside, repoFolderName } from './paths.js';
import type { SourceFile } from './source.js';
import { writeFileAtomically } from '../io/atomic.js';
import { ModelFolder } from '../io/model-folder.js';

export const INDEX_FILE = 'model.safetensors.index.json';
const PICKLE_RE = /\.(bin|pt|pth)$/;

export function repoStorage(cacheDir: string, repo: string): string {
  return path.join(cacheDir, repoFolderName(repo));
}

async function readIfExists(p: string): Promise<string | undefined> {
  try {
    return await fs.readFile(p, 'utf8');
  } catch (err) {
    if (systemErrorCode(err) === 'ENOENT' || systemErrorCode(err) === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** The commit a revision names in the cache: a sha as is, else the content of refs/<revision>. */
export async function cachedCommit(storage: string, revision: string): Promise<string | undefined> {
  if (isCommitSha(revision)) return revision;
  const ref = await readIfExists(joinInside(path.join(storage, 'refs'), assertSafeRevision(revision)));
  const commit = ref?.trim();
  return commit && isCommitSha(commit) ? commit : undefined;
}

export async function writeRef(storage: string, revision: string, commit: string): Promise<void> {
  if (isCommitSha(revision)) return;
  const refPath = joinInside(path.join(storage, 'refs'), assertSafeRevision(revision));
  await fs.mkdir(path.dirname(refPath), { recursive: true });
  // Python writes the bare sha, no newline; a temp file + rename keeps a reader from seeing half of it.
  await writeFileAtomically(refPath, commit);
}

async function isReadableFile(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isFile(); // follows the symlink: a dangling one is not a file
  } catch {
    return false;
  }
}

export interface SnapshotCheck {
  complete: boolean;
  /** What is missing, for messages. */
  missing: string[];
  /** config.json present, pickle weights present, no safetensors. */
  pickleOnly?: string;
}

/** Shard names from a safetensors index, validated (they become local paths). */
export function shardsFromIndex(indexText: string, where: string): string[] {
  let index: unknown;
  try {
    index = JSON.parse(indexText);
  } catch {
    throw new FopeifyError('BAD_SAFETENSORS', `${where}: ${INDEX_FILE} is not valid JSON`);
  }
  const map = (index as { weight_map?: unknown })?.weight_map;
  if (!map || typeof map !== 'object') throw new FopeifyError('BAD_SAFETENSORS', `${where}: ${INDEX_FILE} has no weight_map`);
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const s of shards) {
    if (!isSafeRepoPath(s) || s.includes('/')) {
      throw new FopeifyError(
        'UNSAFE_PATH',
        `refusing shard name ${JSON.stringify(String(s).slice(0, 200))} in ${where}/${INDEX_FILE}: shards are plain file names next to the index`,
      );
    }
  }
  return (shards as string[]).sort();
}

/** A snapshot is usable when it holds config.json and every safetensors file the model needs. */
export async function checkSnapshot(dir: string): Promise<SnapshotCheck> {
  const missing: string[] = [];
  if (!(await isReadableFile(path.join(dir, 'config.json')))) missing.push('config.json');
  let names: string[] = [];
  try {
    names = await fs.readdir(dir);
  } catch {
    return { complete: false, missing: ['config.json', 'weights'] };
  }
  if (names.includes(INDEX_FILE) && (await isReadableFile(path.join(dir, INDEX_FILE)))) {
    const shards = shardsFromIndex(await fs.readFile(path.join(dir, INDEX_FILE), 'utf8'), dir);
    for (const s of shards) if (!(await isReadableFile(path.join(dir, s)))) missing.push(s);
  } else {
    const weights: string[] = [];
    for (const n of names) if (n.endsWith('.safetensors') && (await isReadableFile(path.join(dir, n)))) weights.push(n);
    if (weights.length === 0) {
      const pickle = names.find((n) => PICKLE_RE.test(n));
      if (pickle && !missing.length) return { complete: false, missing: ['model.safetensors'], pickleOnly: pickle };
      missing.push('model.safetensors');
    }
  }
  return { complete: missing.length === 0, missing };
}

const HEX64 = /^[0-9a-f]{64}$/;
const HEX40 = /^[0-9a-f]{40}$/;

/** Files of a snapshot; the blob a symlink points at names the sha256 (LFS) or git sha1 without reading. */
export async function listSnapshot(dir: string): Promise<SourceFile[]> {
  // Through the folder's rules: a link that leaves the snapshot (other than to this storage's blobs), a
  // dangling one (blob removed) or a special file is not part of the usable snapshot.
  const { files } = await ModelFolder.at(dir).list();
  return files.map((f) => {
    const file: SourceFile = { path: f.name, size: f.size };
    const blob = f.real === f.path ? undefined : path.basename(f.real);
    if (blob && HEX64.test(blob)) {
      file.sha256 = blob;
      file.storage = 'lfs';
    } else if (blob && HEX40.test(blob)) {
      file.gitOid = blob;
      file.storage = 'git';
    }
    return file;
  });
}

/** snapshots/<commit>/<file> → a relative symlink to blobs/<etag> (a copy where symlinks are refused). */
export async function linkIntoSnapshot(storage: string, commit: string, file: string, blobName: string): Promise<void> {
  const snapshotDir = joinInside(path.join(storage, 'snapshots'), commit);
  const pointer = joinInside(snapshotDir, file);
  const blob = joinInside(path.join(storage, 'blobs'), blobName);
  await fs.mkdir(path.dirname(pointer), { recursive: true });
  const target = path.relative(path.dirname(pointer), blob);
  try {
    if ((await fs.readlink(pointer)) === target) return;
  } catch {
    // absent or not a link
  }
  // A link made under a private name and renamed over the pointer: two processes linking the same file
  // at once both succeed (rm + symlink would fail one of them with EEXIST), and no reader sees it absent.
  const tmp = path.join(path.dirname(pointer), `.${path.basename(pointer)}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`);
  try {
    try {
      await fs.symlink(target, tmp);
    } catch (err) {
      // Windows without developer mode: Python copies too.
      if (systemErrorCode(err) === 'EPERM' || systemErrorCode(err) === 'EACCES') await fs.copyFile(blob, tmp);
      else throw err;
    }
    await fs.rename(tmp, pointer);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
