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
}

export interface DownloadProgress {
  file: string;
  bytes: number;
  totalBytes: number;
  filesDone: number;
  filesTotal: number;
}

/** One file of a resolved model, with its sha256 when it is known without reading the data. */
export interface SourceFile {
  path: string;
  size: number;
  sha256?: string;
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
