/**
 * The `<model>` argument of every command, resolved to a local folder. This file holds the types and the
 * local-folder case; Hub ids (cache first, then download) are resolved in ./resolve.ts.
 */
export interface ModelSourceOptions {
  /** Branch, tag or commit for Hub ids. Default "main". */
  revision?: string;
  /** Hub endpoint; default HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Access token; default HF_TOKEN or the token file under HF_HOME. Never printed. */
  token?: string;
  /** Hub cache folder; default from HF_HUB_CACHE / HUGGINGFACE_HUB_CACHE / HF_HOME / XDG_CACHE_HOME. */
  cacheDir?: string;
  /** No network (default: HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Injected fetch (tests, progress wrapping). */
  fetch?: typeof fetch;
  /** Progress sink for downloads. */
  onProgress?: (event: DownloadProgress) => void;
  /** Retries for 429, 5xx and dropped connections (default 5), with exponential backoff. */
  retries?: number;
  /** Injected sleep used between retries (tests pass a recorder so they do not wait). */
  sleep?: (ms: number) => Promise<void>;
  /**
   * How long the Hub may keep us waiting: for the answer to a request, and between two chunks of a body
   * (a download that makes progress is never cut). A stalled request is aborted and retried. Default:
   * FOPEIFY_HUB_TIMEOUT (seconds), else 60 000 ms.
   */
  stallTimeoutMs?: number;
  /**
   * Another process (fopeify or Python's huggingface_hub) downloading the same file into the same cache
   * is waited for; give up when its download has made no progress for this long (default 10 minutes).
   */
  lockStallMs?: number;
}

export interface DownloadProgress {
  /** Path of the file in the repository. */
  file: string;
  /** Bytes of `file` on disk so far (a resumed download starts at what was already there). */
  bytes: number;
  /** Size of `file`. */
  totalBytes: number;
  /** Files finished (downloaded, or already in the cache). */
  filesDone: number;
  /** Files this resolution needs. */
  filesTotal: number;
  /** Bytes of all needed files on disk so far, and their total size. */
  allBytes?: number;
  allTotalBytes?: number;
}

/** One file of a resolved model, with its sha256 when it is known without reading the data. */
export interface SourceFile {
  path: string;
  size: number;
  /** sha256 of the content, known without reading it: the LFS oid, which names the HF-cache blob. */
  sha256?: string;
  /**
   * Where a file's identity came from: `lfs` (blob named by the LFS sha256, which is `sha256`),
   * `git` (a regular git file; its blob is named by the git blob sha1 in `gitOid`, no sha256 known).
   */
  storage?: 'lfs' | 'git';
  /** Git blob sha1 of a regular (non-LFS) file. */
  gitOid?: string;
}

export interface ResolvedModel {
  /** Local folder holding config.json and the weights. */
  dir: string;
  kind: 'folder' | 'cache' | 'hub';
  /** The argument as given by the user. */
  id: string;
  /** Requested revision (Hub ids). */
  revision?: string;
  /** Commit sha the revision resolved to (Hub ids), when known. */
  commit?: string;
  /** Files of the snapshot (relative paths). */
  files: SourceFile[];
}
