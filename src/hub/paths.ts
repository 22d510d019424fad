/**
 * Nothing a server sends becomes a local path unchecked: file names from a tree listing or an index,
 * oids used as blob names and commit shas used as snapshot folders are validated here, and every path
 * built from them is checked to stay inside its root.
 */
import path from 'node:path';
import { FopeifyError } from '../errors.js';

const HEX40 = /^[0-9a-f]{40}$/;
const HEX64 = /^[0-9a-f]{64}$/;

export function isCommitSha(s: string): boolean {
  return HEX40.test(s);
}

/** Quote a server-sent string for a message without letting control characters through. */
export function quoteUntrusted(s: unknown): string {
  return JSON.stringify(String(s).slice(0, 200));
}

/**
 * A repository file path as the Hub names it: relative, `/`-separated, no empty, `.` or `..` segment, no
 * backslash (a separator on Windows), no NUL or other control character, no drive letter.
 */
export function isSafeRepoPath(p: unknown): p is string {
  if (typeof p !== 'string' || p.length === 0 || p.length > 1024) return false;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(p)) return false;
  if (p.startsWith('/') || /^[A-Za-z]:/.test(p)) return false;
  return p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

export function assertSafeRepoPath(p: unknown, where: string): string {
  if (!isSafeRepoPath(p)) {
    throw new FopeifyError(
      'UNSAFE_PATH',
      `refusing unsafe file name ${quoteUntrusted(p)} from ${where}: a Hub file name must be a relative path without "..", "\\", NUL or a leading "/"`,
    );
  }
  return p;
}

/** A commit sha from the server or a refs file: 40 lowercase hex digits, used as a folder name. */
export function assertCommitSha(s: unknown, where: string): string {
  if (typeof s !== 'string' || !HEX40.test(s)) {
    throw new FopeifyError('UNSAFE_PATH', `refusing commit id ${quoteUntrusted(s)} from ${where}: not a 40-digit hex sha`);
  }
  return s;
}

/** A blob name (etag): git sha1 (40 hex) for regular files, sha256 (64 hex) for LFS files. */
export function assertBlobName(s: unknown, lfs: boolean, where: string): string {
  const ok = typeof s === 'string' && (lfs ? HEX64.test(s) : HEX40.test(s) || HEX64.test(s));
  if (!ok) {
    throw new FopeifyError(
      'UNSAFE_PATH',
      `refusing object id ${quoteUntrusted(s)} from ${where}: expected a ${lfs ? 'sha256' : 'git sha1'} in hex`,
    );
  }
  return s as string;
}

/** A revision (branch, tag, `refs/pr/1` or a sha) becomes `refs/<revision>`; keep it a relative path. */
export function assertSafeRevision(revision: string): string {
  if (!isSafeRepoPath(revision)) {
    throw new FopeifyError('UNSAFE_PATH', `invalid revision ${quoteUntrusted(revision)}: must be a branch, tag or commit sha`);
  }
  return revision;
}

/** `root/rel`, guaranteed (after normalisation) to lie strictly inside `root`. */
export function joinInside(root: string, rel: string): string {
  const base = path.resolve(root);
  const full = path.resolve(base, ...rel.split('/'));
  if (full === base || !full.startsWith(base + path.sep)) {
    throw new FopeifyError('UNSAFE_PATH', `refusing to write ${quoteUntrusted(rel)}: it resolves outside ${base}`);
  }
  return full;
}

/** Python's cache folder name for a model repo: `models--org--name`. */
export function repoFolderName(repo: string): string {
  return `models--${repo.split('/').join('--')}`;
}

/** Encode a repo path for a URL, segment by segment (keeps the `/`). */
export function encodeRepoPath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}
