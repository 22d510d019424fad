/**
 * Locks on HF-cache blobs, shared with Python's huggingface_hub.
 *
 * huggingface_hub downloads a blob under `filelock.FileLock(<cache>/.locks/models--org--name/<etag>.lock)`,
 * held from before `blobs/<etag>.incomplete` is opened until the blob has been renamed into place. On
 * Unix that lock is flock(2) on the lock file (py-filelock's UnixFileLock: open O_RDWR|O_CREAT|O_TRUNC,
 * then flock(LOCK_EX|LOCK_NB) polled), and the file is left behind on release: deleting it would let a
 * waiter that holds the old inode and a newcomer that creates a new one both "own" the lock.
 *
 * Node has no flock(2), so a lock is taken by one of two mechanisms:
 *
 * - `flock` (the default where it exists): a child process `flock -x <lock file> sh -c 'echo; exec cat'`
 *   takes the very flock(2) lock Python takes, on the same path, and holds it until its stdin closes:
 *   when we release, or when this process ends in any way (kill -9 included: the pipe closes and the
 *   child exits), so a lock never outlives its owner and needs no stale-lock detection. The `flock`
 *   command is util-linux's, present on glibc and musl Linux distributions. This excludes Python
 *   processes (huggingface_hub/filelock) and other fopeify processes alike; test/hub/cache-lock.test.ts
 *   checks it against Python's fcntl.flock used exactly as filelock uses it. Where flock(2) itself is
 *   not honoured across machines (some network file systems), neither Python's lock nor ours is.
 *   The npm packages that wrap flock(2) (fs-ext and its forks) are native addons compiled at install
 *   time, which this package avoids; spawning one small process per downloaded file costs milliseconds.
 * - `file` (where `flock` is missing, e.g. macOS, or with FOPEIFY_HUB_LOCK=file): an exclusive-create
 *   file `<etag>.lock.fopeify` holding `pid host`, refreshed every few seconds and removed on release.
 *   A lock whose owner is gone (same host, pid not alive) or that was not refreshed for LOCK_STALE_MS is
 *   taken over. It excludes other fopeify processes only, NOT Python's huggingface_hub; and taking over
 *   a stale lock has a narrow race (two waiters judging the same stale file) that the flock mechanism
 *   does not have.
 *
 * Waiting is not bounded by a fixed time, since the holder may be downloading gigabytes: a waiter gives
 * up only when the holder makes no progress (its `.incomplete` file neither grows nor changes) for
 * `noProgressMs`, with a typed error naming the file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FopeifyError, systemErrorCode } from '../errors.js';
import { joinInside, repoFolderName } from './paths.js';

export type LockMechanism = 'flock' | 'file';

export interface CacheLock {
  readonly path: string;
  readonly mechanism: LockMechanism;
  release(): Promise<void>;
}

/** A held lock whose `release` runs `free` once, however often it is called. */
function heldLock(lockPath: string, mechanism: LockMechanism, free: () => Promise<void>): CacheLock {
  let released = false;
  return {
    path: lockPath,
    mechanism,
    async release() {
      if (released) return;
      released = true;
      await free();
    },
  };
}

export interface LockOptions {
  /** Give up when the holder has shown no progress for this long (default 10 minutes). */
  noProgressMs?: number;
  /** What the holder's progress is measured by (a file that grows while it downloads), and what the lock protects, for messages. */
  progressFile?: string;
  what?: string;
  /** Force a mechanism (tests); default: FOPEIFY_HUB_LOCK, else flock where the command exists. */
  mechanism?: LockMechanism;
}

/** `<cache>/.locks/models--org--name/<etag>.lock`, the path huggingface_hub locks. */
export function blobLockPath(cacheDir: string, repo: string, etag: string): string {
  return joinInside(path.join(cacheDir, '.locks', repoFolderName(repo)), `${etag}.lock`);
}

const POLL_MS = 100;
const PROGRESS_POLL_MS = 500;
export const LOCK_STALE_MS = 30_000;
const LOCK_REFRESH_MS = 5_000;
const DEFAULT_NO_PROGRESS_MS = 10 * 60_000;

let flockCommand: Promise<boolean> | undefined;

/** Whether the `flock` command runs here (checked once per process). */
function flockAvailable(): Promise<boolean> {
  flockCommand ??= new Promise((resolve) => {
    const child = spawn('flock', ['--version'], { stdio: 'ignore' });
    child.on('error', () => resolve(false));
    child.on('exit', (code) => resolve(code === 0));
  });
  return flockCommand;
}

async function chooseMechanism(forced?: LockMechanism): Promise<LockMechanism> {
  const env = process.env.FOPEIFY_HUB_LOCK;
  const wanted = forced ?? (env === 'file' || env === 'flock' ? env : undefined);
  if (wanted === 'file') return 'file';
  if (await flockAvailable()) return 'flock';
  if (wanted === 'flock') throw new FopeifyError('BAD_ARGUMENT', 'FOPEIFY_HUB_LOCK=flock, but the flock command is not available here');
  return 'file';
}

/** What the holder has done so far, as a string that changes when it makes progress. */
async function progressMark(file: string | undefined): Promise<string> {
  if (!file) return '';
  try {
    const st = await fs.stat(file);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return 'absent';
  }
}

/**
 * Resolves when `tryOnce` succeeds; between tries, watches the holder's progress and fails with a
 * typed error once it has stalled for `noProgressMs`.
 */
async function waitForLock<T>(lockPath: string, o: LockOptions, tryOnce: () => Promise<T | undefined>, cancel?: () => void): Promise<T> {
  const noProgressMs = o.noProgressMs ?? DEFAULT_NO_PROGRESS_MS;
  let mark = await progressMark(o.progressFile);
  let since = Date.now();
  let lastCheck = Date.now();
  for (;;) {
    const got = await tryOnce();
    if (got !== undefined) return got;
    const now = Date.now();
    if (now - lastCheck >= Math.min(PROGRESS_POLL_MS, noProgressMs / 2)) {
      lastCheck = now;
      const m = await progressMark(o.progressFile);
      if (m !== mark) {
        mark = m;
        since = now;
      }
    }
    if (now - since >= noProgressMs) {
      cancel?.();
      throw new FopeifyError(
        'HUB_ERROR',
        `another process holds the cache lock ${lockPath}${o.what ? ` (downloading ${o.what})` : ''} and has made no progress for ${+(noProgressMs / 1000).toFixed(1)} s; stop that process or run again later`,
      );
    }
    await new Promise((r) => setTimeout(r, POLL_MS + Math.random() * POLL_MS));
  }
}

async function flockLock(lockPath: string, o: LockOptions): Promise<CacheLock> {
  // The child prints a line once it holds the lock, then holds it until its stdin closes.
  const child: ChildProcess = spawn('flock', ['--exclusive', lockPath, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let state: 'waiting' | 'held' | 'failed' = 'waiting';
  let failure = '';
  child.stdout!.once('data', () => {
    if (state === 'waiting') state = 'held';
  });
  child.stderr!.on('data', (d: Buffer) => (failure += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  child.once('exit', (code) => {
    if (state === 'waiting') {
      state = 'failed';
      failure ||= `flock exited with ${code}`;
    }
  });
  child.once('error', (err) => {
    state = 'failed';
    failure = err.message;
  });
  child.stdin!.on('error', () => undefined); // EPIPE if the child died first
  await waitForLock(
    lockPath,
    o,
    async () => {
      if (state === 'failed') throw new FopeifyError('OUTPUT_UNWRITABLE', `cannot lock ${lockPath}: ${failure.trim().slice(0, 200)}`);
      return state === 'held' ? true : undefined;
    },
    () => child.kill(),
  );
  return heldLock(lockPath, 'flock', async () => {
    child.stdin!.end();
    await exited;
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return systemErrorCode(err) === 'EPERM';
  }
}

/** A `file` lock is stale when its owner (on this host) is gone, or it was not refreshed for LOCK_STALE_MS. */
async function isStale(file: string): Promise<boolean> {
  let text: string;
  let mtime: number;
  try {
    [text, mtime] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file).then((s) => s.mtimeMs)]);
  } catch (err) {
    if (systemErrorCode(err) === 'ENOENT') return false; // released meanwhile: the next try takes it
    throw err;
  }
  const [pidText, host] = text.trim().split(' ');
  const pid = Number(pidText);
  if (host === os.hostname() && Number.isInteger(pid) && pid > 0 && !pidAlive(pid)) return true;
  return Date.now() - mtime > LOCK_STALE_MS;
}

async function fileLock(lockPath: string, o: LockOptions): Promise<CacheLock> {
  const file = `${lockPath}.fopeify`;
  const owner = `${process.pid} ${os.hostname()}\n`;
  await waitForLock(file, o, async () => {
    try {
      const fh = await fs.open(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o644);
      try {
        await fh.writeFile(owner);
      } finally {
        await fh.close();
      }
      return true;
    } catch (err) {
      if (systemErrorCode(err) !== 'EEXIST') throw err;
    }
    if (await isStale(file)) {
      // Move it aside first: of two waiters that judged it stale, only one rename succeeds.
      const aside = `${file}.${process.pid}.stale`;
      try {
        await fs.rename(file, aside);
        await fs.rm(aside, { force: true });
      } catch (err) {
        if (systemErrorCode(err) !== 'ENOENT') throw err;
      }
    }
    return undefined;
  });
  const refresh = setInterval(() => {
    const now = new Date();
    fs.utimes(file, now, now).catch(() => undefined);
  }, LOCK_REFRESH_MS);
  refresh.unref();
  return heldLock(file, 'file', async () => {
    clearInterval(refresh);
    // Remove it only while it is still ours (a takeover after a long pause makes it someone else's).
    const text = await fs.readFile(file, 'utf8').catch(() => '');
    if (text === owner) await fs.rm(file, { force: true });
  });
}

/** Take the lock at `lockPath` (creating its folder), waiting while another process holds it. */
export async function acquireCacheLock(lockPath: string, o: LockOptions = {}): Promise<CacheLock> {
  try {
    await fs.mkdir(path.dirname(lockPath), { recursive: true });
  } catch (err) {
    throw new FopeifyError('OUTPUT_UNWRITABLE', `cannot create the lock folder ${path.dirname(lockPath)}: ${systemErrorCode(err) ?? String(err)}`);
  }
  const mechanism = await chooseMechanism(o.mechanism);
  return mechanism === 'flock' ? flockLock(lockPath, o) : fileLock(lockPath, o);
}
