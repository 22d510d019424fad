/**
 * `fopeify push <dir> <org/name>`: a model folder → one commit on the Hub.
 *
 * The upload itself is @huggingface/hub's commitIter (preupload → LFS batch → LFS PUTs → NDJSON commit),
 * given our retrying fetch, which also puts a deadline on every request (./http.ts). (uploadFiles is the same commit without events; uploadFilesWithProgress
 * replaces the `fetch` option with its own XMLHttpRequest wrapper, which would bypass our retries.) Around it: refuse what is not a model folder, check the token can write before
 * hashing gigabytes, create the repository (409 = it exists), refresh the model card, and leave out files
 * the branch already holds with the same content (compared by sha256 / git blob sha1 against the tree
 * listing), so pushing an unchanged folder uploads and commits nothing. An LFS object uploaded by an
 * interrupted push is stored on the Hub already: the rerun's LFS batch answers without `actions` for it
 * and the library does not send it again.
 */
import { commitIter, createBranch, createRepo, HubApiError, listFiles, modelInfo, whoAmI, type CommitOutput, type ListFileEntry } from '@huggingface/hub';
import { createHash } from 'node:crypto';
import { createReadStream, openAsBlob, promises as fs } from 'node:fs';
import path from 'node:path';
import { refreshRemoteCode } from '../bridge/remote-code.js';
import { FopeifyError, optionName } from '../errors.js';
import { isModelFileName } from '../io/model-files.js';
import { ModelFolder } from '../io/model-folder.js';
import { checkSnapshot } from './cache.js';
import { hubEndpoint, hubTimeoutMs, resolveToken } from './env.js';
import { createHubFetch, hubError, type ErrorContext } from './http.js';
import { refreshModelCard } from './model-card.js';
import { isSafeRepoPath } from './paths.js';
import { maskToken } from './redact.js';

export interface PushOptions {
  /** The model folder (config.json + safetensors weights). */
  dir: string;
  /** Target repository `org/name` (created when missing). */
  repo: string;
  /** Create the repository private (only when it does not exist yet). */
  private?: boolean;
  /** Branch to commit to (default main; created from main when missing). */
  revision?: string;
  /** Commit title (default "Upload model with fopeify"). */
  message?: string;
  /** Open a pull request instead of committing to the branch. */
  createPr?: boolean;
  /** Hub endpoint; default HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Write token; default HF_TOKEN or the token file. Never printed. */
  token?: string;
  /** Push a folder that is not a model folder. */
  force?: boolean;
  /** Write/refresh README.md before the upload (default true). */
  card?: boolean;
  onProgress?: (event: PushProgress) => void;
  /** Injected fetch (tests). */
  fetch?: typeof fetch;
  /** Retries for 429, 5xx and dropped connections (default 5); the commit itself is retried on 429 only. */
  retries?: number;
  /** Injected sleep between retries. */
  sleep?: (ms: number) => Promise<void>;
  /**
   * How long the Hub may keep a request waiting: for its answer, or between two chunks of an upload
   * (default: FOPEIFY_HUB_TIMEOUT in seconds, else 60 000 ms). A stalled request is retried, except the
   * commit itself, which fails with a HUB_ERROR (rerunning the push is safe).
   */
  stallTimeoutMs?: number;
}

export interface PushProgress {
  phase: 'card' | 'hashing' | 'preuploading' | 'uploading' | 'committing' | 'done';
  /** The file this event is about (hashing, uploading). */
  file?: string;
  /** 0..1 for `file`. */
  progress?: number;
  /** Files finished in this phase. */
  filesDone: number;
  filesTotal: number;
}

export interface PushResult {
  repoUrl: string;
  /** The new commit, or the branch head when nothing changed. */
  commitOid: string;
  commitUrl: string;
  pullRequestUrl?: string;
  /** Files in the commit (new or changed). */
  uploaded: string[];
  /** Files left out because the branch already has them with the same content. */
  unchanged: string[];
  /** LFS files not sent because the Hub already stores their content. */
  skippedLfs: number;
  /** LFS objects actually uploaded. */
  lfsUploaded: number;
  /** The repository was created by this push. */
  created: boolean;
  /** README.md was written or changed. */
  cardWritten: boolean;
}

interface LocalFile {
  path: string;
  abs: string;
  size: number;
  sha256: string;
  gitSha1: string;
}

const REPO_RE = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

async function assertModelFolder(dir: string): Promise<void> {
  const check = await checkSnapshot(dir);
  if (check.complete) return;
  if (check.pickleOnly) {
    throw new FopeifyError(
      'BAD_ARGUMENT',
      `${dir} has only pickle weights (${check.pickleOnly}); push a safetensors model folder (fopeify writes one), or pass ${optionName('force')} to push it anyway`,
      { option: 'force' },
    );
  }
  throw new FopeifyError(
    'BAD_ARGUMENT',
    `${dir} is not a model folder: missing ${check.missing.join(', ')} (expected config.json and safetensors weights); pass ${optionName('force')} to push it anyway`,
    { option: 'force' },
  );
}

/**
 * Files to upload: the regular files that belong to the folder (links only within it or into the Hugging
 * Face cache's blobs), but not dot-files/folders (.git, .cache, …) or unfinished downloads. Dangling links,
 * special files and links out of the folder are skipped, and refused when they stand for a model file
 * (config.json, a shard, …). `abs` is the checked real path, which is what gets read.
 */
async function listLocal(dir: string): Promise<{ path: string; abs: string; size: number }[]> {
  const { files, ignored } = await ModelFolder.at(dir).list();
  const needed = ignored.find((e) => isModelFileName(e.name));
  if (needed) {
    throw new FopeifyError('UNSAFE_PATH', `cannot push ${path.join(dir, needed.name)}: it ${needed.reason}; fix or remove it, then push again`);
  }
  for (const f of files) {
    if (!isSafeRepoPath(f.name)) throw new FopeifyError('BAD_ARGUMENT', `cannot push ${JSON.stringify(f.name)}: the Hub does not accept that file name`);
  }
  return files.map((f) => ({ path: f.name, abs: f.real, size: f.size }));
}

/** sha256 (the LFS oid) and git blob sha1 (a regular file's oid) in one read. */
async function hashFile(abs: string, size: number): Promise<{ sha256: string; gitSha1: string }> {
  const a = createHash('sha256');
  const b = createHash('sha1').update(`blob ${size}\0`);
  for await (const chunk of createReadStream(abs)) {
    a.update(chunk as Buffer);
    b.update(chunk as Buffer);
  }
  return { sha256: a.digest('hex'), gitSha1: b.digest('hex') };
}

function isStatus(err: unknown, status: number): boolean {
  return err instanceof HubApiError && err.statusCode === status;
}

/** The repository, branch and folder of a push, refused before anything reaches the Hub. */
async function checkPushInput(options: PushOptions): Promise<{ repo: string; branch: string; dir: string }> {
  const repo = options.repo;
  if (!REPO_RE.test(repo) || repo.includes('..')) {
    throw new FopeifyError('BAD_ARGUMENT', `repository must be given as org/name, got ${JSON.stringify(repo)}`);
  }
  const branch = options.revision ?? 'main';
  if (!isSafeRepoPath(branch)) throw new FopeifyError('BAD_ARGUMENT', `invalid branch name ${JSON.stringify(branch)}`);
  const dir = path.resolve(options.dir);
  const st = await fs.stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new FopeifyError('BAD_ARGUMENT', `${options.dir} is not a folder`);
  if (!options.force) await assertModelFolder(dir);
  await listLocal(dir); // refuse an unusable model file before anything reaches the Hub
  return { repo, branch, dir };
}

/** A push's connection to the Hub: the library's common options, the error context, LFS counters. */
interface HubSession {
  repo: string;
  branch: string;
  endpoint: string;
  common: { hubUrl: string; fetch: typeof fetch; accessToken: string };
  ctx: ErrorContext;
  /** LFS objects the Hub already stored (batch answers without an upload action) and objects uploaded. */
  lfs: { stored: number; uploaded: number };
}

async function openSession(options: PushOptions, repo: string, branch: string): Promise<HubSession> {
  const endpoint = hubEndpoint(options.endpoint);
  const { token, source } = await resolveToken(options.token);
  const hf = createHubFetch(options.fetch ?? globalThis.fetch, {
    retries: options.retries,
    sleep: options.sleep,
    authOrigin: endpoint,
    timeoutMs: hubTimeoutMs(options.stallTimeoutMs),
  });
  const ctx: ErrorContext = { repo, endpoint, token, tokenSource: source, op: 'write', revision: branch, state: hf.state };
  if (!token) {
    throw new FopeifyError('HUB_AUTH', `pushing to ${repo} needs a write token: none was given (pass ${optionName('token')}, set HF_TOKEN, or run \`huggingface-cli login\`)`, {
      option: 'token',
    });
  }
  // LFS bookkeeping, read off the protocol: the batch answer says what the Hub already stores.
  const lfs = { stored: 0, uploaded: 0 };
  const fetchWithLfsCount = (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    const res = await hf.fetch(input, init);
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (res.ok && url.endsWith('/info/lfs/objects/batch')) {
      try {
        const json = (await res.clone().json()) as { objects?: { actions?: { upload?: unknown } }[] };
        for (const o of json.objects ?? []) if (!o.actions?.upload) lfs.stored++;
      } catch {
        // the library reports a malformed answer itself
      }
    } else if (res.ok && (init?.method ?? 'GET').toUpperCase() === 'PUT') {
      lfs.uploaded++;
    }
    return res;
  }) as typeof fetch;
  return { repo, branch, endpoint, common: { hubUrl: endpoint, fetch: fetchWithLfsCount, accessToken: token }, ctx, lfs };
}

/** Check the token can write, create the repository and the branch when missing. Returns whether the repository was created. */
async function prepareRepo(session: HubSession, isPrivate: boolean | undefined): Promise<boolean> {
  const { common, repo, branch, ctx } = session;
  let created = false;
  try {
    // A read-only token fails here, clearly, instead of after hashing gigabytes.
    const me = await whoAmI(common);
    if (me.auth.accessToken?.role === 'read') {
      const source = ctx.tokenSource;
      throw new FopeifyError(
        'HUB_AUTH',
        `the token (${maskToken(common.accessToken)}${source && source !== 'option' ? ` from ${source}` : ''}) is read-only: pushing to ${repo} needs a token with the "write" role (create one at ${session.endpoint}/settings/tokens)`,
      );
    }
    try {
      await createRepo({ ...common, repo, ...(isPrivate !== undefined ? { private: isPrivate } : {}) });
      created = true;
    } catch (err) {
      if (!isStatus(err, 409)) throw err; // 409: it exists, which is fine
    }
    if (branch !== 'main') {
      try {
        await createBranch({ ...common, repo, branch });
      } catch (err) {
        if (!isStatus(err, 409)) throw err;
      }
    }
  } catch (err) {
    throw hubError(err, ctx);
  }
  return created;
}

/** The folder's files with their sha256 and git blob sha1. */
async function hashLocalFiles(dir: string, progress: (e: PushProgress) => void): Promise<LocalFile[]> {
  const listed = await listLocal(dir);
  const files: LocalFile[] = [];
  for (const [i, f] of listed.entries()) {
    progress({ phase: 'hashing', file: f.path, progress: 0, filesDone: i, filesTotal: listed.length });
    files.push({ ...f, ...(await hashFile(f.abs, f.size)) });
    progress({ phase: 'hashing', file: f.path, progress: 1, filesDone: i + 1, filesTotal: listed.length });
  }
  return files;
}

/** Which files the branch already holds with the same content (by LFS sha256 or git blob sha1). */
async function compareWithBranch(session: HubSession, files: LocalFile[]): Promise<{ changed: LocalFile[]; unchanged: string[]; unchangedLfs: number }> {
  const remote = new Map<string, ListFileEntry>();
  try {
    // listFiles puts the revision in the URL as is; a branch like `v1/dev` must be encoded.
    for await (const e of listFiles({ ...session.common, repo: session.repo, revision: encodeURIComponent(session.branch), recursive: true })) {
      if (e.type === 'file') remote.set(e.path, e);
    }
  } catch (err) {
    throw hubError(err, session.ctx);
  }
  const same = (f: LocalFile): boolean => {
    const r = remote.get(f.path);
    return Boolean(r && (r.lfs ? r.lfs.oid === f.sha256 && r.lfs.size === f.size : r.oid === f.gitSha1));
  };
  return {
    changed: files.filter((f) => !same(f)),
    unchanged: files.filter(same).map((f) => f.path),
    unchangedLfs: files.filter((f) => same(f) && remote.get(f.path)?.lfs).length,
  };
}

/** One commit (or pull request) of the changed files, with progress per file. */
async function commitFiles(session: HubSession, changed: LocalFile[], options: PushOptions, progress: (e: PushProgress) => void): Promise<CommitOutput> {
  const done = new Set<string>();
  const total = changed.length;
  let output: CommitOutput | undefined;
  try {
    const operations = await Promise.all(changed.map(async (f) => ({ operation: 'addOrUpdate' as const, path: f.path, content: await openAsBlob(f.abs) })));
    const it = commitIter({
      ...session.common,
      repo: session.repo,
      operations,
      title: options.message ?? 'Upload model with fopeify',
      branch: session.branch,
      isPullRequest: options.createPr,
      useXet: false, // the basic LFS protocol: resumable by oid, and what the local test Hub speaks
      useWebWorkers: false,
    });
    for (;;) {
      const r = await it.next();
      if (r.done) {
        output = r.value;
        break;
      }
      const ev = r.value;
      if (ev.event === 'phase') {
        const phase = ev.phase === 'preuploading' ? 'preuploading' : ev.phase === 'uploadingLargeFiles' ? 'uploading' : 'committing';
        progress({ phase, filesDone: done.size, filesTotal: total });
      } else if (ev.event === 'fileProgress') {
        if (ev.state === 'uploading' && ev.progress >= 1) done.add(ev.path);
        progress({ phase: ev.state === 'hashing' ? 'hashing' : 'uploading', file: ev.path, progress: ev.progress, filesDone: done.size, filesTotal: total });
      }
    }
  } catch (err) {
    const e = hubError(err, session.ctx);
    if (e.code === 'HUB_ERROR') {
      throw new FopeifyError('HUB_ERROR', `${e.message}; run the same push again: files the Hub already stores are not uploaded twice`);
    }
    throw e;
  }
  if (!output) throw new FopeifyError('HUB_ERROR', `the Hub did not confirm the commit to ${session.repo}`);
  // Regular files travel inside the commit request; they are done once it succeeded.
  for (const f of changed) {
    if (!done.has(f.path)) {
      done.add(f.path);
      progress({ phase: 'uploading', file: f.path, progress: 1, filesDone: done.size, filesTotal: total });
    }
  }
  progress({ phase: 'done', filesDone: total, filesTotal: total });
  return output;
}

export async function push(options: PushOptions): Promise<PushResult> {
  const { repo, branch, dir } = await checkPushInput(options);
  const session = await openSession(options, repo, branch);
  const progress = (e: PushProgress): void => options.onProgress?.(e);
  const created = await prepareRepo(session, options.private);

  let cardWritten = false;
  if (options.card !== false) {
    progress({ phase: 'card', file: 'README.md', filesDone: 0, filesTotal: 1 });
    cardWritten = (await refreshModelCard(dir, { repo })).changed;
  }
  // A FoPE remote-code folder travels with this fopeify's .py files (the Hub copy must load as FoPE).
  await refreshRemoteCode(dir);

  const files = await hashLocalFiles(dir, progress);
  const { changed, unchanged, unchangedLfs } = await compareWithBranch(session, files);
  const repoUrl = `${session.endpoint}/${repo}`;
  if (changed.length === 0) {
    // Nothing to commit (Python's upload_folder skips the empty commit too).
    let head: string;
    try {
      head = (await modelInfo({ ...session.common, name: repo, revision: branch, additionalFields: ['sha'] })).sha;
    } catch (err) {
      throw hubError(err, session.ctx);
    }
    progress({ phase: 'done', filesDone: 0, filesTotal: 0 });
    return { repoUrl, commitOid: head, commitUrl: `${repoUrl}/commit/${head}`, uploaded: [], unchanged, skippedLfs: unchangedLfs, lfsUploaded: 0, created, cardWritten };
  }
  const output = await commitFiles(session, changed, options, progress);
  return {
    repoUrl,
    commitOid: output.commit.oid,
    commitUrl: output.commit.url,
    ...(output.pullRequestUrl ? { pullRequestUrl: output.pullRequestUrl } : {}),
    uploaded: changed.map((f) => f.path),
    unchanged,
    skippedLfs: unchangedLfs + session.lfs.stored,
    lfsUploaded: session.lfs.uploaded,
    created,
    cardWritten,
  };
}
