/**
 * One file from `/{repo}/resolve/{commit}/{path}` into `blobs/<etag>`.
 *
 * This is written against the Hub's HTTP protocol rather than with @huggingface/hub's downloadFile /
 * downloadFileToCacheDir because those cannot resume (`.incomplete` is rewritten from byte 0), report no
 * progress, verify neither size nor hash, retry nothing, and print a console.debug line per file.
 * Here: `.incomplete` is continued with `Range: bytes=<n>-`, a dropped connection mid-body resumes where
 * it stopped (bounded retries), the content is hashed while it streams (sha256 for LFS files, the git blob
 * sha1 for regular ones) and compared with the oid from the tree listing before the rename into place.
 *
 * Concurrency: the whole download of one blob (from the size check of an existing blob to the rename of
 * `.incomplete`) runs under the blob's cache lock (./cache-lock.ts, the lock huggingface_hub takes), so two
 * processes never write one `.incomplete`; a waiter finds the finished blob and fetches nothing. The
 * blob is renamed into place only after its hash and its size on disk match the listing.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { FopeifyError, outputError, systemErrorCode } from '../errors.js';
import { acquireCacheLock, type LockOptions } from './cache-lock.js';
import {
  backoffMs,
  networkErrorCode,
  parseRetryAfter,
  RETRY_STATUSES,
  serverErrorText,
  statusError,
  type ErrorContext,
  type RetryOptions,
} from './http.js';
import { redact } from './redact.js';

export interface BlobDownload {
  /** Repository path, for messages and progress. */
  file: string;
  url: string;
  blobPath: string;
  size: number;
  /** sha256 (LFS) or git blob sha1 (regular file) the content must hash to. */
  oid: string;
  lfs: boolean;
  /** The cache lock of this blob: `<cache>/.locks/<repo folder>/<etag>.lock`. */
  lockPath: string;
}

export interface DownloadContext {
  fetch: typeof fetch;
  /** Sent to the Hub; fetch drops it when following a redirect to another origin (the CDN). */
  token?: string;
  retry: Required<RetryOptions>;
  stallTimeoutMs: number;
  errors: ErrorContext;
  /** Called with the bytes of this file on disk, as they grow. */
  onBytes?: (bytes: number) => void;
  /** How long to wait for another process's download of the same blob that makes no progress. */
  lock?: Pick<LockOptions, 'noProgressMs' | 'mechanism'>;
}

async function fileSize(p: string): Promise<number | undefined> {
  try {
    return (await fs.stat(p)).size;
  } catch (err) {
    if (systemErrorCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

function newHash(d: BlobDownload): Hash {
  if (d.lfs) return createHash('sha256');
  // git's blob id: sha1("blob <size>\0" + content)
  return createHash('sha1').update(`blob ${d.size}\0`);
}

async function hashPrefix(p: string, h: Hash): Promise<void> {
  for await (const chunk of createReadStream(p)) h.update(chunk as Buffer);
}

/** `Content-Range: bytes <start>-<end>/<total>` → start. */
function rangeStart(res: Response): number | undefined {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('Content-Range') ?? '');
  return m ? Number(m[1]) : undefined;
}

/** Download `d` unless its blob is already there with the right size. Returns the bytes fetched. */
export async function downloadBlob(d: BlobDownload, ctx: DownloadContext): Promise<number> {
  if ((await fileSize(d.blobPath)) === d.size) return 0;
  const lock = await acquireCacheLock(d.lockPath, { ...ctx.lock, progressFile: `${d.blobPath}.incomplete`, what: `${d.file} of ${ctx.errors.repo}` });
  try {
    return await downloadLocked(d, ctx);
  } finally {
    await lock.release();
  }
}

/** The download proper, with the blob's lock held. */
async function downloadLocked(d: BlobDownload, ctx: DownloadContext): Promise<number> {
  const existing = await fileSize(d.blobPath);
  if (existing === d.size) return 0; // another process finished it while we waited for the lock
  if (existing !== undefined) await fs.rm(d.blobPath, { force: true }); // wrong size: not a blob we trust

  const incomplete = `${d.blobPath}.incomplete`;
  let offset = (await fileSize(incomplete)) ?? 0;
  if (offset > d.size) {
    await fs.truncate(incomplete, 0);
    offset = 0;
  }
  let hash = newHash(d);
  if (offset > 0) await hashPrefix(incomplete, hash);
  ctx.onBytes?.(offset);
  let fetched = 0;
  const errCtx: ErrorContext = { ...ctx.errors, file: d.file };
  const r = ctx.retry;

  for (let attempt = 0; offset < d.size; attempt++) {
    const restart = async (): Promise<void> => {
      await fs.truncate(incomplete, 0).catch(() => undefined);
      offset = 0;
      hash = newHash(d);
      ctx.onBytes?.(0);
    };
    const headers: Record<string, string> = {};
    if (ctx.token) headers.Authorization = `Bearer ${ctx.token}`;
    if (offset > 0) headers.Range = `bytes=${offset}-`;
    const abort = new AbortController();
    let stall: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(stall);
      stall = setTimeout(() => abort.abort(new Error(`no data for ${ctx.stallTimeoutMs} ms`)), ctx.stallTimeoutMs);
    };
    let res: Response | undefined;
    try {
      arm();
      res = await ctx.fetch(d.url, { headers, signal: abort.signal, redirect: 'follow' });
      if (res.status === 416) {
        // Our partial file does not fit the server's file (changed or corrupt): start over.
        await res.body?.cancel().catch(() => undefined);
        clearTimeout(stall);
        await restart();
        if (attempt >= r.retries) break;
        continue;
      }
      if (res.status === 429 || RETRY_STATUSES.has(res.status)) {
        const after = parseRetryAfter(res.headers.get('Retry-After'));
        await res.body?.cancel().catch(() => undefined);
        clearTimeout(stall);
        if (attempt >= r.retries || (after !== undefined && after > r.maxRetryAfterMs)) {
          throw statusError(res.status, undefined, undefined, { ...errCtx, state: { errorCodes: new Map(), lastAttempts: attempt + 1 } });
        }
        await r.sleep(after ?? backoffMs(attempt, r));
        continue;
      }
      if (!res.ok) {
        clearTimeout(stall);
        const text = await serverErrorText(res);
        throw statusError(res.status, res.headers.get('X-Error-Code') ?? undefined, text && redact(text, ctx.token), errCtx);
      }
      if (offset > 0 && (res.status !== 206 || rangeStart(res) !== offset)) {
        // The server ignored or changed our Range: its body starts at byte 0.
        await restart();
      }
      if (!res.body) throw new FopeifyError('HUB_ERROR', `empty answer for ${d.file} from ${ctx.errors.endpoint}`);
      const fh = await fs.open(incomplete, offset === 0 ? 'w' : 'a');
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          arm();
          if (offset + chunk.length > d.size) {
            throw new FopeifyError('HUB_ERROR', `${d.file}: the Hub sent more than the ${d.size} bytes its listing announced`);
          }
          try {
            await fh.write(chunk);
          } catch (err) {
            throw outputError(err, incomplete);
          }
          hash.update(chunk);
          offset += chunk.length;
          fetched += chunk.length;
          ctx.onBytes?.(offset);
        }
      } finally {
        clearTimeout(stall);
        await fh.close();
      }
      if (offset < d.size) {
        // The body ended early without an error (server hung up cleanly): resume from here.
        if (attempt >= r.retries) break;
        await r.sleep(backoffMs(attempt, r));
      }
    } catch (err) {
      clearTimeout(stall);
      if (err instanceof FopeifyError) throw err;
      const net = abort.signal.aborted ? `ETIMEDOUT: no data for ${ctx.stallTimeoutMs / 1000} s` : networkErrorCode(err);
      if (!net) throw err;
      if (attempt >= r.retries) {
        throw new FopeifyError(
          'HUB_ERROR',
          redact(
            `download of ${d.file} from ${ctx.errors.repo} failed after ${attempt + 1} attempts: connection ${net}; run again to resume from byte ${offset} of ${d.size}`,
            ctx.token,
          ),
        );
      }
      await r.sleep(backoffMs(attempt, r));
    }
  }
  if (offset !== d.size) {
    throw new FopeifyError(
      'HUB_ERROR',
      `download of ${d.file} from ${ctx.errors.repo} stopped at byte ${offset} of ${d.size} after ${r.retries + 1} attempts; run again to resume`,
    );
  }
  const got = hash.digest('hex');
  if (got !== d.oid) {
    await fs.rm(incomplete, { force: true });
    throw new FopeifyError(
      'HUB_ERROR',
      `download of ${d.file} from ${ctx.errors.repo} is corrupt: its ${d.lfs ? 'sha256' : 'git sha1'} is ${got}, the Hub lists ${d.oid}; the partial file was deleted, run again`,
    );
  }
  // The hash covers what this process wrote; the size on disk covers anything else that wrote there.
  const onDisk = await fileSize(incomplete);
  if (onDisk !== d.size) {
    await fs.rm(incomplete, { force: true });
    throw new FopeifyError(
      'HUB_ERROR',
      `download of ${d.file} from ${ctx.errors.repo} is corrupt: ${onDisk ?? 0} bytes on disk, the Hub lists ${d.size} (another program wrote to ${incomplete}?); the partial file was deleted, run again`,
    );
  }
  await fs.rename(incomplete, d.blobPath);
  return fetched;
}
