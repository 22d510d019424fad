/**
 * A Hub id → a local snapshot folder: the HF cache first (shared with Python tools), else a download of
 * just what fopeify needs (config, safetensors weights, tokenizer and generation files, card, provenance).
 *
 * Listing and repository info go through @huggingface/hub (modelInfo, listFiles) with our retrying fetch;
 * file bodies go through ./download.ts (resume, progress, verification the library lacks).
 */
import { FOPEIFY_JSON } from '../io/formats.js';
import { REMOTE_CODE_FILES, TOKENIZER_FILES } from '../io/model-files.js';
import { listFiles, modelInfo, type ListFileEntry } from '@huggingface/hub';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FopeifyError, optionName } from '../errors.js';
import { checkSnapshot, cachedCommit, INDEX_FILE, linkIntoSnapshot, listSnapshot, repoStorage, shardsFromIndex, writeRef } from './cache.js';
import { blobLockPath } from './cache-lock.js';
import { downloadBlob, type BlobDownload } from './download.js';
import { hubCacheDir, hubEndpoint, hubTimeoutMs, isOffline, resolveToken } from './env.js';
import { createHubFetch, hubError, type ErrorContext } from './http.js';
import { assertBlobName, assertCommitSha, assertSafeRepoPath, assertSafeRevision, encodeRepoPath, joinInside } from './paths.js';
import type { ModelSourceOptions, ResolvedModel } from './source.js';

export { TOKENIZER_FILES };
/** Fetched when present, besides config.json and the weights. */
export const OPTIONAL_FILES = [...TOKENIZER_FILES, 'generation_config.json', 'README.md', FOPEIFY_JSON, ...REMOTE_CODE_FILES];
const PICKLE_RE = /\.(bin|pt|pth)$/;
const HUB_ID = /^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/;

function assertHubId(repo: string): void {
  if (!HUB_ID.test(repo) || repo.includes('..')) {
    throw new FopeifyError('MODEL_NOT_FOUND', `model not found: ${JSON.stringify(repo)} is neither a folder nor a Hub id (org/name)`);
  }
}

export interface DownloadPlanEntry {
  path: string;
  size: number;
  oid: string;
  lfs: boolean;
}

/** Which root files a listing offers as weights, or a clear refusal (pickle only, none). */
export function weightsInListing(repo: string, revision: string, names: string[]): { index: boolean; safetensors: string[] } {
  const root = names.filter((n) => !n.includes('/'));
  const index = root.includes(INDEX_FILE);
  const safetensors = root.filter((n) => n.endsWith('.safetensors')).sort();
  if (!index && safetensors.length === 0) {
    const pickle = root.filter((n) => PICKLE_RE.test(n)).sort();
    if (pickle.length > 0) {
      throw new FopeifyError(
        'PICKLE_ONLY',
        `${repo} (revision ${revision}) has only pickle weights (${pickle.slice(0, 3).join(', ')}${pickle.length > 3 ? ', …' : ''}); fopeify never unpickles (loading a pickle can run arbitrary code); convert it to safetensors first (for example with transformers: save_pretrained(dir, safe_serialization=True)), or choose a revision that has *.safetensors`,
      );
    }
    throw new FopeifyError('MODEL_NOT_FOUND', `${repo} (revision ${revision}) has no weights: no *.safetensors and no ${INDEX_FILE}`);
  }
  return { index, safetensors };
}

function offlineError(repo: string, revision: string, cacheDir: string, why: string, missing?: string[]): FopeifyError {
  const partial = missing?.length ? ` (the cached snapshot lacks ${missing.join(', ')})` : '';
  return new FopeifyError(
    'OFFLINE',
    `${repo} (revision ${revision}) is not in the Hub cache at ${cacheDir}${partial}, and offline mode is on (${why}), so nothing is downloaded; run once with network access, or pass a local model folder`,
    { option: 'offline' },
  );
}

export async function resolveHubModel(model: string, options: ModelSourceOptions = {}): Promise<ResolvedModel> {
  const repo = model;
  assertHubId(repo);
  const revision = assertSafeRevision(options.revision ?? 'main');
  const cacheDir = hubCacheDir(options.cacheDir);
  const storage = repoStorage(cacheDir, repo);

  // 1. The cache, without touching the network. A branch name is trusted as cached (as transformers does
  //    with a warm cache); pass a commit sha to pin, or clear refs/<branch> to refresh.
  const cached = await cachedCommit(storage, revision);
  let missing: string[] | undefined;
  if (cached) {
    const dir = path.join(storage, 'snapshots', cached);
    const check = await checkSnapshot(dir);
    if (check.complete) return { dir, kind: 'cache', id: model, revision, commit: cached, files: await listSnapshot(dir) };
    missing = check.missing;
  }
  if (isOffline(options.offline)) {
    throw offlineError(repo, revision, cacheDir, options.offline ? optionName('offline') : 'HF_HUB_OFFLINE is set', missing);
  }

  // 2. The Hub.
  const endpoint = hubEndpoint(options.endpoint);
  const { token, source } = await resolveToken(options.token);
  const stallTimeoutMs = hubTimeoutMs(options.stallTimeoutMs);
  const hf = createHubFetch(options.fetch ?? globalThis.fetch, {
    retries: options.retries,
    sleep: options.sleep,
    authOrigin: endpoint,
    timeoutMs: stallTimeoutMs,
  });
  const errCtx: ErrorContext = { repo, endpoint, token, tokenSource: source, op: 'read', revision, state: hf.state };
  const common = { hubUrl: endpoint, fetch: hf.fetch, ...(token ? { accessToken: token } : {}) };

  let commit: string;
  const entries = new Map<string, ListFileEntry>();
  try {
    const info = await modelInfo({ ...common, name: repo, revision, additionalFields: ['sha'] });
    commit = assertCommitSha(info.sha, `the model info of ${repo} from ${endpoint}`);
    const dir = path.join(storage, 'snapshots', commit);
    if (commit !== cached && (await checkSnapshot(dir)).complete) {
      await writeRef(storage, revision, commit);
      return { dir, kind: 'cache', id: model, revision, commit, files: await listSnapshot(dir) };
    }
    for await (const e of listFiles({ ...common, repo, revision: commit, recursive: true })) {
      // Every name is checked, not only those we fetch: a listing with one hostile name is not trusted.
      assertSafeRepoPath(e.path, `the file listing of ${repo} from ${endpoint}`);
      if (e.type === 'file') entries.set(e.path, e);
    }
  } catch (err) {
    throw hubError(err, errCtx);
  }

  if (!entries.has('config.json')) {
    throw new FopeifyError('MODEL_NOT_FOUND', `${repo} (revision ${revision}) has no config.json: it is not a transformers model repository`);
  }
  const weights = weightsInListing(repo, revision, [...entries.keys()]); // refuses pickle-only before any download

  const plan = (name: string): DownloadPlanEntry => {
    const e = entries.get(name);
    if (!e) throw new FopeifyError('MISSING_SHARD', `${repo} (revision ${revision}): ${INDEX_FILE} names ${name}, which is not in the repository`);
    const lfs = Boolean(e.lfs);
    const oid = assertBlobName(lfs ? e.lfs?.oid : e.oid, lfs, `the file listing of ${repo} (${name})`);
    return { path: name, size: e.lfs?.size ?? e.size, oid, lfs };
  };

  const blobs = path.join(storage, 'blobs');
  await fs.mkdir(blobs, { recursive: true });
  const retry = hf.retry;
  const baseFetch = options.fetch ?? globalThis.fetch;
  let filesDone = 0;
  let filesTotal = 1;
  let allTotal = 0;
  let allDone = 0;

  const fetchOne = async (p: DownloadPlanEntry): Promise<void> => {
    const d: BlobDownload = {
      file: p.path,
      url: `${endpoint}/${repo}/resolve/${commit}/${encodeRepoPath(p.path)}`,
      blobPath: joinInside(blobs, p.oid),
      size: p.size,
      oid: p.oid,
      lfs: p.lfs,
      lockPath: blobLockPath(cacheDir, repo, p.oid),
    };
    let last = -1;
    await downloadBlob(d, {
      fetch: baseFetch,
      token,
      retry,
      stallTimeoutMs,
      errors: errCtx,
      lock: { noProgressMs: options.lockStallMs },
      onBytes: (bytes) => {
        // At most one event per 256 KiB (and the last byte), so a 10 GB shard does not flood the sink.
        if (bytes !== p.size && bytes - last < 262_144 && bytes > last) return;
        last = bytes;
        options.onProgress?.({ file: p.path, bytes, totalBytes: p.size, filesDone, filesTotal, allBytes: allDone + bytes, allTotalBytes: allTotal });
      },
    });
    await linkIntoSnapshot(storage, commit, p.path, p.oid);
    filesDone++;
    allDone += p.size;
    options.onProgress?.({ file: p.path, bytes: p.size, totalBytes: p.size, filesDone, filesTotal, allBytes: allDone, allTotalBytes: allTotal });
  };

  // The index first (it names the shards), then everything else.
  let weightFiles: string[];
  const first: DownloadPlanEntry[] = [];
  if (weights.index) {
    const indexPlan = plan(INDEX_FILE);
    first.push(indexPlan);
    allTotal = indexPlan.size;
    await fetchOne(indexPlan);
    const text = await fs.readFile(joinInside(blobs, indexPlan.oid), 'utf8');
    weightFiles = shardsFromIndex(text, `${repo}@${commit.slice(0, 8)}`);
  } else {
    weightFiles = weights.safetensors.includes('model.safetensors') ? ['model.safetensors'] : weights.safetensors;
  }
  const rest = ['config.json', ...weightFiles, ...OPTIONAL_FILES.filter((f) => entries.has(f) && !weightFiles.includes(f))].map(plan);
  filesTotal = first.length + rest.length;
  allTotal += rest.reduce((s, p) => s + p.size, 0);
  for (const p of rest) await fetchOne(p);

  await writeRef(storage, revision, commit);
  const dir = path.join(storage, 'snapshots', commit);
  return { dir, kind: 'hub', id: model, revision, commit, files: await listSnapshot(dir) };
}
