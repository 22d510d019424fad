/**
 * A local Hugging Face Hub for tests: node:http on 127.0.0.1, a random port, repositories in memory.
 *
 * It speaks the endpoints @huggingface/hub 2.17 calls (see /work/shared/reference/toolchain.md) the way
 * the real Hub answers them — including what the real Hub refuses (un-uploaded LFS oids in a commit, `..`
 * paths, bad or read-only tokens) — so a client that works here is exercised against the protocol, not
 * against a mock. Tests can inject failures (429 with Retry-After, 5xx, connection resets before an answer,
 * requests never answered, uploads never read, hang-ups (truncation) or stalls mid-body, slow bodies) and
 * serve a hostile tree listing.
 *
 * Tokens: `hf_write…` may write, `hf_read…` may only read, any other `Bearer` value is rejected with 401.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StoredFile {
  path: string;
  size: number;
  /** git blob sha1 of the content (regular) or of the pointer file (LFS), as in the Hub's tree. */
  oid: string;
  lfs?: { oid: string; size: number; pointerSize: number };
  /** Content of a regular file; LFS content lives in the repo's LFS store. */
  data?: Buffer;
  /** The commit that last changed this file. */
  lastCommit: string;
}

export interface Commit {
  id: string;
  parent?: string;
  title: string;
  date: string;
  files: Map<string, StoredFile>;
}

export interface Repo {
  id: string;
  internalId: string;
  private: boolean;
  /** Gated: files other than README.md / .gitattributes need a token in `gatedGrants`. */
  gated: boolean;
  gatedGrants: Set<string>;
  commits: Map<string, Commit>;
  /** Branch or ref name (`main`, `refs/pr/1`) → commit id. */
  refs: Map<string, string>;
  /** LFS objects by sha256. */
  lfs: Map<string, Buffer>;
  prCount: number;
  /** Served verbatim by the tree endpoint instead of the real listing (hostile-server tests). */
  treeOverride?: unknown[];
}

export type Fault =
  /** Answer with this status (and headers, e.g. Retry-After) instead of handling the request. */
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: unknown }
  /** Destroy the connection before answering. */
  | { kind: 'reset' }
  /** Serve a file body, but destroy the connection after `afterBytes` bytes. */
  | { kind: 'hangup'; afterBytes: number }
  /** Serve a file body, but stop sending after `afterBytes` bytes and keep the connection open. */
  | { kind: 'stall'; afterBytes: number }
  /**
   * Never answer (no status line), keeping the connection open; with `readBody: false` also stop reading
   * the request body, so an upload stalls once the socket buffers are full.
   */
  | { kind: 'hang'; readBody?: boolean }
  /** Serve a file body in `chunkBytes` pieces, `delayMs` apart (a slow but live connection). */
  | { kind: 'slow'; chunkBytes: number; delayMs: number };

export interface Injection {
  /** HTTP method to match (any when absent). */
  method?: string;
  /** Matched against the request path (with query). */
  path: RegExp | string;
  /** How many matching requests fail (default 1). */
  times?: number;
  fault: Fault;
}

export interface LoggedRequest {
  method: string;
  path: string;
  url: string;
  range?: string;
  auth: AuthLevel;
  status?: number;
  fault?: Fault['kind'];
}

type AuthLevel = 'none' | 'read' | 'write' | 'invalid';

const GITATTRIBUTES = [
  '*.7z', '*.arrow', '*.bin', '*.bz2', '*.ckpt', '*.ftz', '*.gz', '*.h5', '*.joblib', '*.lfs.*', '*.mlmodel',
  '*.model', '*.msgpack', '*.npy', '*.npz', '*.onnx', '*.ot', '*.parquet', '*.pb', '*.pickle', '*.pkl', '*.pt',
  '*.pth', '*.rar', '*.safetensors', 'saved_model/**/*', '*.tar.*', '*.tar', '*.tflite', '*.tgz', '*.wasm',
  '*.xz', '*.zip', '*.zst', '*tfevents*',
]
  .map((p) => `${p} filter=lfs diff=lfs merge=lfs -text`)
  .join('\n') + '\n';

export function gitBlobSha1(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function lfsPointer(oid: string, size: number): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize ${size}\n`);
}

/** The Hub's own path rule for commits: relative, no `..`/`.`/empty segment, no backslash or control char. */
function validCommitPath(p: unknown): p is string {
  return (
    typeof p === 'string' &&
    p.length > 0 &&
    // eslint-disable-next-line no-control-regex
    !/[\u0000-\u001f\\]/.test(p) &&
    !p.startsWith('/') &&
    p.split('/').every((s) => s !== '' && s !== '.' && s !== '..')
  );
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errorCode?: string,
  ) {
    super(message);
  }
}

export interface HubServerOptions {
  /** Entries per page of a tree listing (the real Hub uses ~1000; tests use small pages to paginate). */
  treePageSize?: number;
  /**
   * Redirect LFS downloads to a "CDN" on another port, as the real Hub redirects to another host (default
   * true). Python's huggingface_hub compares host names only and would follow a redirect to 127.0.0.1;
   * start with `false` to serve it.
   */
  lfsRedirect?: boolean;
  /** Name whoami reports. */
  userName?: string;
}

export class HubServer {
  readonly repos = new Map<string, Repo>();
  readonly requests: LoggedRequest[] = [];
  /** Successful LFS uploads (PUTs of objects), by oid, in order. */
  readonly lfsUploads: string[] = [];
  /** The same, per repository. */
  readonly lfsUploadsByRepo = new Map<string, string[]>();
  url = '';
  /** The "CDN" LFS downloads are redirected to: another origin (port), as on the real Hub. */
  cdnUrl = '';
  private server: http.Server;
  private cdn: http.Server;
  private injections: (Injection & { left: number })[] = [];
  private pendingUploads = new Map<string, { repo: string; oid: string; size: number }>();
  private counter = 0;
  private reqOf = new WeakMap<http.ServerResponse, http.IncomingMessage>();
  private readonly opts: Required<HubServerOptions>;

  private constructor(opts: HubServerOptions) {
    this.opts = { treePageSize: opts.treePageSize ?? 1000, lfsRedirect: opts.lfsRedirect ?? true, userName: opts.userName ?? 'tester' };
    const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.json(res, 500, { error: `test server bug: ${(err as Error).message}` });
        else res.destroy();
      });
    };
    this.server = http.createServer(listener);
    this.cdn = http.createServer(listener);
  }

  static async start(opts: HubServerOptions = {}): Promise<HubServer> {
    const s = new HubServer(opts);
    await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => s.cdn.listen(0, '127.0.0.1', resolve));
    s.url = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
    s.cdnUrl = `http://127.0.0.1:${(s.cdn.address() as AddressInfo).port}`;
    return s;
  }

  async close(): Promise<void> {
    for (const srv of [this.server, this.cdn]) {
      srv.closeAllConnections();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  }

  // ---------------------------------------------------------------- test controls

  /** Fail the next `times` requests matching `path` (and `method`). */
  inject(inj: Injection): void {
    this.injections.push({ ...inj, left: inj.times ?? 1 });
  }

  clearInjections(): void {
    this.injections = [];
  }

  /** Create a repository with one commit holding `files` (LFS by the default .gitattributes). */
  seedRepo(
    id: string,
    files: Record<string, string | Buffer>,
    opts: { private?: boolean; gated?: boolean; lfs?: (path: string) => boolean } = {},
  ): string {
    const repo = this.newRepo(id, opts.private ?? false);
    repo.gated = opts.gated ?? false;
    return this.commitDirect(id, files, { title: 'Seed', lfs: opts.lfs });
  }

  /** Add a commit to `branch` directly (no protocol), returning its id. */
  commitDirect(
    id: string,
    files: Record<string, string | Buffer>,
    opts: { branch?: string; title?: string; lfs?: (path: string) => boolean } = {},
  ): string {
    const repo = this.repo(id);
    const branch = opts.branch ?? 'main';
    const parent = repo.refs.get(branch);
    const commitId = this.newCommitId();
    const map = new Map(parent ? repo.commits.get(parent)!.files : []);
    for (const [p, content] of Object.entries(files)) {
      const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
      const isLfs = opts.lfs ? opts.lfs(p) : this.lfsPatterns(repo, parent).some((re) => re.test(p) || re.test(p.split('/').pop()!));
      if (isLfs) {
        const oid = sha256Hex(data);
        repo.lfs.set(oid, data);
        map.set(p, this.lfsEntry(p, oid, data.length, commitId));
      } else {
        map.set(p, { path: p, size: data.length, oid: gitBlobSha1(data), data, lastCommit: commitId });
      }
    }
    repo.commits.set(commitId, { id: commitId, parent, title: opts.title ?? 'Update', date: new Date().toISOString(), files: map });
    repo.refs.set(branch, commitId);
    return commitId;
  }

  /** Serve `entries` verbatim as the tree listing of `id`. */
  setTreeOverride(id: string, entries: unknown[]): void {
    this.repo(id).treeOverride = entries;
  }

  /** Files of `rev` (default main) as path → bytes. */
  snapshot(id: string, rev = 'main'): Map<string, Buffer> {
    const repo = this.repo(id);
    const commit = repo.commits.get(repo.refs.get(rev) ?? rev);
    if (!commit) throw new Error(`no revision ${rev} in ${id}`);
    return new Map([...commit.files.values()].map((f) => [f.path, f.lfs ? repo.lfs.get(f.lfs.oid)! : f.data!]));
  }

  head(id: string, branch = 'main'): string | undefined {
    return this.repos.get(id)?.refs.get(branch);
  }

  count(method: string, path: RegExp): number {
    return this.requests.filter((r) => r.method === method && path.test(r.path)).length;
  }

  // ---------------------------------------------------------------- internals

  private repo(id: string): Repo {
    const r = this.repos.get(id);
    if (!r) throw new Error(`no repo ${id}`);
    return r;
  }

  private newRepo(id: string, isPrivate: boolean): Repo {
    const repo: Repo = {
      id,
      internalId: randomBytes(12).toString('hex'),
      private: isPrivate,
      gated: false,
      gatedGrants: new Set(),
      commits: new Map(),
      refs: new Map(),
      lfs: new Map(),
      prCount: 0,
    };
    this.repos.set(id, repo);
    return repo;
  }

  private newCommitId(): string {
    return createHash('sha1').update(`commit ${++this.counter} ${randomBytes(8).toString('hex')}`).digest('hex');
  }

  private lfsEntry(p: string, oid: string, size: number, commitId: string): StoredFile {
    const pointer = lfsPointer(oid, size);
    return { path: p, size, oid: gitBlobSha1(pointer), lfs: { oid, size, pointerSize: pointer.length }, lastCommit: commitId };
  }

  private lfsPatterns(repo: Repo, commitId: string | undefined): RegExp[] {
    const ga = commitId ? repo.commits.get(commitId)?.files.get('.gitattributes')?.data?.toString() : undefined;
    return (ga ?? GITATTRIBUTES)
      .split('\n')
      .filter((l) => /\bfilter=lfs\b/.test(l))
      .map((l) => globToRegExp(l.trim().split(/\s+/)[0]));
  }

  private auth(req: http.IncomingMessage): { level: AuthLevel; token?: string } {
    const h = req.headers.authorization;
    if (!h) return { level: 'none' };
    const m = /^Bearer (\S+)$/.exec(h);
    const token = m?.[1];
    if (token?.startsWith('hf_write')) return { level: 'write', token };
    if (token?.startsWith('hf_read')) return { level: 'read', token };
    return { level: 'invalid', token };
  }

  private takeFault(req: http.IncomingMessage, kinds: Fault['kind'][]): Fault | undefined {
    for (const inj of this.injections) {
      if (inj.left <= 0 || !kinds.includes(inj.fault.kind)) continue;
      if (inj.method && inj.method !== req.method) continue;
      const url = req.url ?? '';
      if (typeof inj.path === 'string' ? !url.includes(inj.path) : !inj.path.test(url)) continue;
      inj.left--;
      return inj.fault;
    }
    return undefined;
  }

  private json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': text.length, ...headers });
    // A JSON answer can be cut mid-body too (a listing page, model info).
    const req = this.reqOf.get(res);
    const fault = status < 300 && req ? this.takeFault(req, ['hangup', 'stall']) : undefined;
    if (fault?.kind === 'hangup' || fault?.kind === 'stall') {
      res.write(text.subarray(0, Math.min(fault.afterBytes, text.length)), () => {
        if (fault.kind === 'hangup') setTimeout(() => res.socket?.destroy(), 5);
      });
      return;
    }
    res.end(text);
  }

  private async body(req: http.IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const log: LoggedRequest = {
      method: req.method ?? 'GET',
      path: decodeURIComponent(url.pathname),
      url: req.url ?? '/',
      range: req.headers.range,
      auth: this.auth(req).level,
    };
    this.requests.push(log);
    this.reqOf.set(res, req);
    res.on('finish', () => (log.status = res.statusCode));

    const fault = this.takeFault(req, ['status', 'reset', 'hang']);
    if (fault) {
      log.fault = fault.kind;
      if (fault.kind === 'hang') {
        if (fault.readBody === false) req.pause();
        else req.resume();
        return; // the connection stays open until the client gives up or the server closes
      }
      if (fault.kind === 'reset') {
        req.socket.destroy();
        return;
      }
      if (fault.kind === 'status') {
        await this.body(req);
        this.json(res, fault.status, fault.body ?? { error: `injected ${fault.status}` }, fault.headers);
        return;
      }
    }
    try {
      await this.route(req, res, url, log);
    } catch (err) {
      if (err instanceof HttpError) {
        if (!req.complete) await this.body(req).catch(() => undefined);
        this.json(res, err.status, { error: err.message }, err.errorCode ? { 'X-Error-Code': err.errorCode } : {});
        return;
      }
      throw err;
    }
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse, url: URL, log: LoggedRequest): Promise<void> {
    const p = url.pathname;
    const method = req.method ?? 'GET';
    const auth = this.auth(req);
    let m: RegExpExecArray | null;

    // Presigned storage URLs carry their capability in the URL, not in Authorization (like S3).
    if ((m = /^\/lfs-upload\/([0-9a-f]+)$/.exec(p)) && method === 'PUT') return this.lfsPut(req, res, m[1]);
    if ((m = /^\/lfs-cdn\/(.+)\/([0-9a-f]{64})$/.exec(p)) && (method === 'GET' || method === 'HEAD')) {
      const repo = this.repos.get(decodeURIComponent(m[1]));
      const data = repo?.lfs.get(m[2]);
      if (!data) throw new HttpError(404, 'Not found');
      return this.serveBytes(req, res, data, { ETag: `"cdn-${createHash('md5').update(data).digest('hex')}"` });
    }

    if (auth.level === 'invalid') throw new HttpError(401, 'Invalid credentials in Authorization header');

    if (p === '/api/whoami-v2' && method === 'GET') {
      if (auth.level === 'none') throw new HttpError(401, 'Invalid username or password.');
      return this.json(res, 200, {
        type: 'user',
        id: 'u1',
        name: this.opts.userName,
        fullname: 'Test User',
        orgs: [{ name: 'org', type: 'org' }],
        auth: { type: 'access_token', accessToken: { displayName: 'test', role: auth.level, createdAt: '2025-01-01T00:00:00.000Z' } },
      });
    }
    if (p === '/api/repos/create' && method === 'POST') return this.createRepo(req, res, auth.level);

    if ((m = /^\/api\/models\/(.+?)\/(revision|tree|paths-info|preupload|commit|branch)\/(.*)$/.exec(p))) {
      const repoId = this.repoIdFrom(m[1]);
      const [, , kind, rest] = m;
      if (kind === 'revision' && method === 'GET') return this.modelInfo(res, repoId, decodeURIComponent(rest), auth.level);
      if (kind === 'tree' && method === 'GET') return this.tree(res, url, repoId, rest, auth.level);
      if (kind === 'paths-info' && method === 'POST') return this.pathsInfo(req, res, repoId, decodeURIComponent(rest), auth.level);
      if (kind === 'preupload' && method === 'POST') return this.preupload(req, res, repoId, decodeURIComponent(rest), auth.level);
      if (kind === 'commit' && method === 'POST') return this.commit(req, res, url, repoId, decodeURIComponent(rest), auth.level);
      if (kind === 'branch' && method === 'POST') return this.createBranch(req, res, repoId, decodeURIComponent(rest), auth.level);
    }
    if ((m = /^\/api\/models\/([^/]+(?:\/[^/]+)?)$/.exec(p)) && method === 'GET') {
      return this.modelInfo(res, decodeURIComponent(m[1]), 'main', auth.level);
    }
    if ((m = /^\/(.+?)\.git\/info\/lfs\/objects\/batch$/.exec(p)) && method === 'POST') {
      return this.lfsBatch(req, res, decodeURIComponent(m[1]), auth.level);
    }
    if ((m = /^\/(.+?)\/(resolve|raw)\/([^/]+)\/(.+)$/.exec(p)) && (method === 'GET' || method === 'HEAD')) {
      const repoId = this.repoIdFrom(m[1]);
      return this.resolveFile(req, res, repoId, m[2] as 'resolve' | 'raw', decodeURIComponent(m[3]), decodeURIComponent(m[4]), auth.level, log);
    }
    throw new HttpError(404, `no route for ${method} ${p}`);
  }

  /** `org/name` or `name` as it appears before an endpoint keyword. */
  private repoIdFrom(s: string): string {
    return decodeURIComponent(s);
  }

  private readable(repoId: string, level: AuthLevel): Repo {
    const repo = this.repos.get(repoId);
    // The real Hub does not reveal whether a repo exists to someone who may not see it.
    if (!repo || (repo.private && level === 'none')) {
      throw new HttpError(level === 'none' ? 401 : 404, 'Repository not found', 'RepoNotFound');
    }
    return repo;
  }

  private writable(repoId: string, level: AuthLevel): Repo {
    if (level === 'none') throw new HttpError(401, 'You must be authenticated to write');
    const repo = this.readable(repoId, level);
    if (level !== 'write') throw new HttpError(403, `You don't have the rights to write to ${repoId}: the token is read-only`);
    return repo;
  }

  private commitOf(repo: Repo, rev: string): Commit {
    const id = /^[0-9a-f]{40}$/.test(rev) && repo.commits.has(rev) ? rev : repo.refs.get(rev);
    const c = id ? repo.commits.get(id) : undefined;
    if (!c) throw new HttpError(404, `Invalid rev id: ${rev}`, 'RevisionNotFound');
    return c;
  }

  private async createRepo(req: http.IncomingMessage, res: http.ServerResponse, level: AuthLevel): Promise<void> {
    const body = JSON.parse((await this.body(req)).toString() || '{}') as {
      name?: string;
      organization?: string;
      type?: string;
      private?: boolean;
      visibility?: string;
    };
    if (level === 'none') throw new HttpError(401, 'You must be authenticated to create a repo');
    if (level !== 'write') throw new HttpError(403, 'You don\'t have the rights to create a model under this namespace');
    if (!body.name || !/^[\w.-]+$/.test(body.name)) throw new HttpError(400, 'Invalid repo name');
    if ((body.type ?? 'model') !== 'model') throw new HttpError(400, 'This test Hub only hosts models');
    const id = `${body.organization ?? this.opts.userName}/${body.name}`;
    if (this.repos.has(id)) {
      this.json(res, 409, { error: 'You already created this model repo', url: `${this.url}/${id}` });
      return;
    }
    const repo = this.newRepo(id, body.private ?? body.visibility === 'private');
    const commitId = this.newCommitId();
    const ga = Buffer.from(GITATTRIBUTES);
    repo.commits.set(commitId, {
      id: commitId,
      title: 'initial commit',
      date: new Date().toISOString(),
      files: new Map([['.gitattributes', { path: '.gitattributes', size: ga.length, oid: gitBlobSha1(ga), data: ga, lastCommit: commitId }]]),
    });
    repo.refs.set('main', commitId);
    this.json(res, 200, { url: `${this.url}/${id}`, name: id, id: repo.internalId });
  }

  private async createBranch(req: http.IncomingMessage, res: http.ServerResponse, repoId: string, branch: string, level: AuthLevel): Promise<void> {
    const body = JSON.parse((await this.body(req)).toString() || '{}') as { startingPoint?: string; overwrite?: boolean; emptyBranch?: boolean };
    const repo = this.writable(repoId, level);
    if (repo.refs.has(branch) && !body.overwrite) throw new HttpError(409, `Reference already exists: refs/heads/${branch}`);
    const from = this.commitOf(repo, body.startingPoint ?? 'main');
    repo.refs.set(branch, from.id);
    this.json(res, 200, {});
  }

  private modelInfo(res: http.ServerResponse, repoId: string, rev: string, level: AuthLevel): void {
    const repo = this.readable(repoId, level);
    const c = this.commitOf(repo, rev === 'HEAD' ? 'main' : rev);
    this.json(res, 200, {
      _id: repo.internalId,
      id: repo.id,
      modelId: repo.id,
      sha: c.id,
      lastModified: c.date,
      createdAt: c.date,
      private: repo.private,
      gated: repo.gated ? 'manual' : false,
      disabled: false,
      downloads: 0,
      likes: 0,
      tags: [],
      library_name: 'transformers',
      siblings: [...c.files.keys()].sort().map((rfilename) => ({ rfilename })),
    });
  }

  private entry(f: StoredFile, repo: Repo, expand: boolean): Record<string, unknown> {
    const e: Record<string, unknown> = { type: 'file', oid: f.oid, size: f.size, path: f.path };
    if (f.lfs) e.lfs = { ...f.lfs };
    if (expand) {
      const c = repo.commits.get(f.lastCommit)!;
      e.lastCommit = { id: c.id, title: c.title, date: c.date };
      e.securityFileStatus = { status: 'safe' };
    }
    return e;
  }

  private listing(repo: Repo, c: Commit, prefix: string, recursive: boolean, expand: boolean): Record<string, unknown>[] {
    const dirs = new Set<string>();
    const files: Record<string, unknown>[] = [];
    for (const f of c.files.values()) {
      if (prefix && !f.path.startsWith(prefix + '/')) continue;
      const rel = prefix ? f.path.slice(prefix.length + 1) : f.path;
      const parts = rel.split('/');
      for (let i = 1; i < parts.length; i++) {
        if (!recursive && i > 1) break;
        dirs.add((prefix ? prefix + '/' : '') + parts.slice(0, i).join('/'));
      }
      if (recursive || parts.length === 1) files.push(this.entry(f, repo, expand));
    }
    const dirEntries = [...dirs].map((d) => ({ type: 'directory', oid: createHash('sha1').update(`tree ${d}`).digest('hex'), size: 0, path: d }));
    return [...dirEntries, ...files].sort((a, b) => (String(a.path) < String(b.path) ? -1 : 1));
  }

  private tree(res: http.ServerResponse, url: URL, repoId: string, rest: string, level: AuthLevel): void {
    const repo = this.readable(repoId, level);
    const [rev, ...sub] = rest.split('/');
    const c = this.commitOf(repo, decodeURIComponent(rev));
    if (repo.treeOverride) return this.json(res, 200, repo.treeOverride);
    const prefix = sub.map(decodeURIComponent).join('/');
    if (prefix && ![...c.files.keys()].some((f) => f.startsWith(prefix + '/'))) {
      throw new HttpError(404, `Entry not found: ${prefix}`, 'EntryNotFound');
    }
    const all = this.listing(repo, c, prefix, url.searchParams.get('recursive') === 'true', url.searchParams.get('expand') === 'true');
    const start = Number(url.searchParams.get('cursor') ?? '0');
    const page = all.slice(start, start + this.opts.treePageSize);
    const headers: Record<string, string> = {};
    if (start + this.opts.treePageSize < all.length) {
      const next = new URL(url.href);
      next.searchParams.set('cursor', String(start + this.opts.treePageSize));
      headers.Link = `<${next.href}>; rel="next"`;
    }
    this.json(res, 200, page, headers);
  }

  private async pathsInfo(req: http.IncomingMessage, res: http.ServerResponse, repoId: string, rev: string, level: AuthLevel): Promise<void> {
    const body = JSON.parse((await this.body(req)).toString() || '{}') as { paths?: string[]; expand?: boolean };
    const repo = this.readable(repoId, level);
    const c = this.commitOf(repo, rev);
    const out: Record<string, unknown>[] = [];
    for (const p of body.paths ?? []) {
      const f = c.files.get(p);
      if (f) out.push(this.entry(f, repo, Boolean(body.expand)));
      else if ([...c.files.keys()].some((k) => k.startsWith(p + '/'))) out.push({ type: 'directory', oid: createHash('sha1').update(`tree ${p}`).digest('hex'), size: 0, path: p });
    }
    this.json(res, 200, out);
  }

  private async preupload(req: http.IncomingMessage, res: http.ServerResponse, repoId: string, rev: string, level: AuthLevel): Promise<void> {
    const body = JSON.parse((await this.body(req)).toString() || '{}') as { files?: { path: string; size: number; sample: string }[]; gitAttributes?: string };
    const repo = this.writable(repoId, level);
    const c = this.commitOf(repo, rev);
    const patterns = body.gitAttributes
      ? body.gitAttributes.split('\n').filter((l) => /filter=lfs/.test(l)).map((l) => globToRegExp(l.trim().split(/\s+/)[0]))
      : this.lfsPatterns(repo, c.id);
    const files = (body.files ?? []).map((f) => {
      const sample = Buffer.from(f.sample ?? '', 'base64');
      const byPattern = patterns.some((re) => re.test(f.path) || re.test(f.path.split('/').pop()!));
      // The Hub also sends big (≥ 10 MB) and binary-looking files to LFS.
      const lfs = byPattern || f.size >= 10 * 1024 * 1024 || sample.includes(0);
      const existing = c.files.get(f.path);
      return { path: f.path, uploadMode: lfs ? 'lfs' : 'regular', shouldIgnore: false, ...(existing ? { oid: existing.lfs?.oid ?? existing.oid } : {}) };
    });
    this.json(res, 200, { files, commitOid: c.id });
  }

  private async lfsBatch(req: http.IncomingMessage, res: http.ServerResponse, repoId: string, level: AuthLevel): Promise<void> {
    const body = JSON.parse((await this.body(req)).toString() || '{}') as {
      operation?: string;
      transfers?: string[];
      hash_algo?: string;
      objects?: { oid: string; size: number }[];
    };
    const repo = body.operation === 'upload' ? this.writable(repoId, level) : this.readable(repoId, level);
    // @huggingface/hub sends "sha_256", Python's huggingface_hub "sha256"; the Hub takes both.
    if (body.hash_algo && body.hash_algo !== 'sha_256' && body.hash_algo !== 'sha256') throw new HttpError(422, 'Unsupported hash algorithm');
    const objects = (body.objects ?? []).map((o) => {
      if (!/^[0-9a-f]{64}$/.test(o.oid) || !Number.isInteger(o.size) || o.size < 0) {
        return { oid: o.oid, size: o.size, error: { code: 422, message: 'Invalid object: oid must be a sha256 and size a non-negative integer' } };
      }
      const stored = repo.lfs.get(o.oid);
      // Already stored: no `actions`, which tells the client not to upload.
      if (stored && stored.length === o.size) return { oid: o.oid, size: o.size, authenticated: true };
      const id = randomBytes(16).toString('hex');
      this.pendingUploads.set(id, { repo: repoId, oid: o.oid, size: o.size });
      return { oid: o.oid, size: o.size, authenticated: true, actions: { upload: { href: `${this.url}/lfs-upload/${id}`, expires_in: 3600 } } };
    });
    this.json(res, 200, { transfer: 'basic', objects }, { 'Content-Type': 'application/vnd.git-lfs+json' });
  }

  private async lfsPut(req: http.IncomingMessage, res: http.ServerResponse, id: string): Promise<void> {
    const data = await this.body(req);
    const pending = this.pendingUploads.get(id);
    if (!pending) throw new HttpError(403, 'Upload URL expired or invalid');
    const repo = this.repo(pending.repo);
    if (data.length !== pending.size || sha256Hex(data) !== pending.oid) {
      throw new HttpError(400, `Uploaded content does not match oid ${pending.oid} and size ${pending.size}`);
    }
    this.pendingUploads.delete(id);
    repo.lfs.set(pending.oid, data);
    this.lfsUploads.push(pending.oid);
    this.lfsUploadsByRepo.set(pending.repo, [...(this.lfsUploadsByRepo.get(pending.repo) ?? []), pending.oid]);
    res.writeHead(200, { ETag: `"${createHash('md5').update(data).digest('hex')}"`, 'Content-Length': 0 });
    res.end();
  }

  private async commit(req: http.IncomingMessage, res: http.ServerResponse, url: URL, repoId: string, branch: string, level: AuthLevel): Promise<void> {
    const raw = (await this.body(req)).toString();
    const repo = this.writable(repoId, level);
    const isPr = url.searchParams.get('create_pr') === '1';
    const base = this.commitOf(repo, branch);
    if (!repo.refs.has(branch) && !/^[0-9a-f]{40}$/.test(branch)) throw new HttpError(404, `Invalid rev id: ${branch}`, 'RevisionNotFound');
    let header: { summary?: string; description?: string; parentCommit?: string } | undefined;
    const commitId = this.newCommitId();
    const files = new Map(base.files);
    for (const line of raw.split('\n')) {
      if (!line.trim()) continue;
      let op: { key?: string; value?: Record<string, unknown> };
      try {
        op = JSON.parse(line) as typeof op;
      } catch {
        throw new HttpError(400, 'Invalid NDJSON line');
      }
      const v = op.value ?? {};
      if (op.key === 'header') {
        header = v as typeof header;
        continue;
      }
      if (!validCommitPath(v.path)) throw new HttpError(400, `Invalid path ${JSON.stringify(v.path)}: paths must be relative and cannot contain ".."`);
      const path = v.path;
      if (op.key === 'file') {
        if (v.encoding !== 'base64' || typeof v.content !== 'string') throw new HttpError(400, `file ${path}: content must be base64`);
        const data = Buffer.from(v.content, 'base64');
        files.set(path, { path, size: data.length, oid: gitBlobSha1(data), data, lastCommit: commitId });
      } else if (op.key === 'lfsFile') {
        const oid = String(v.oid);
        const size = Number(v.size);
        const stored = repo.lfs.get(oid);
        if (v.algo !== 'sha256' || !stored || stored.length !== size) {
          throw new HttpError(
            422,
            `Your push was rejected because an LFS pointer pointed to a file that does not exist. Offending file: - ${path}`,
          );
        }
        files.set(path, this.lfsEntry(path, oid, size, commitId));
      } else if (op.key === 'deletedFile') {
        if (!files.delete(path)) throw new HttpError(404, `File not found: ${path}`, 'EntryNotFound');
      } else if (op.key === 'deletedFolder') {
        for (const k of [...files.keys()]) if (k.startsWith(path + '/')) files.delete(k);
      } else {
        throw new HttpError(400, `Unknown operation ${String(op.key)}`);
      }
    }
    if (!header?.summary) throw new HttpError(400, 'A commit summary is required');
    if (header.parentCommit && header.parentCommit !== base.id) {
      throw new HttpError(412, `A commit has happened since. Please refresh and try again. (parent ${header.parentCommit} is not ${base.id})`);
    }
    repo.commits.set(commitId, { id: commitId, parent: base.id, title: header.summary, date: new Date().toISOString(), files });
    let pullRequestUrl: string | undefined;
    if (isPr) {
      const n = ++repo.prCount;
      repo.refs.set(`refs/pr/${n}`, commitId);
      pullRequestUrl = `${this.url}/${repoId}/discussions/${n}`;
    } else {
      repo.refs.set(branch, commitId);
    }
    this.json(res, 200, {
      success: true,
      commitOid: commitId,
      commitUrl: `${this.url}/${repoId}/commit/${commitId}`,
      commitMessage: header.summary,
      hookOutput: '',
      ...(pullRequestUrl ? { pullRequestUrl } : {}),
    });
  }

  private async resolveFile(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    repoId: string,
    kind: 'resolve' | 'raw',
    rev: string,
    filePath: string,
    level: AuthLevel,
    log: LoggedRequest,
  ): Promise<void> {
    const repo = this.readable(repoId, level);
    const c = this.commitOf(repo, rev);
    if (repo.gated && filePath !== 'README.md' && filePath !== '.gitattributes') {
      const token = this.auth(req).token;
      if (!token || !repo.gatedGrants.has(token)) {
        throw new HttpError(level === 'none' ? 401 : 403, `Access to model ${repoId} is restricted. You must have access to it and be authenticated to access it.`, 'GatedRepo');
      }
    }
    const f = c.files.get(filePath);
    if (!f) throw new HttpError(404, 'Entry not found', 'EntryNotFound');
    const common = { 'X-Repo-Commit': c.id };
    if (f.lfs && kind === 'resolve') {
      const linked = { ...common, 'X-Linked-ETag': `"${f.lfs.oid}"`, 'X-Linked-Size': String(f.lfs.size) };
      if (this.opts.lfsRedirect) {
        res.writeHead(302, { ...linked, Location: `${this.cdnUrl}/lfs-cdn/${encodeURIComponent(repoId)}/${f.lfs.oid}`, 'Content-Length': 0 });
        res.end();
        return;
      }
      return this.serveBytes(req, res, repo.lfs.get(f.lfs.oid)!, { ...linked, ETag: `"${f.lfs.oid}"` });
    }
    void log;
    const data = f.lfs ? lfsPointer(f.lfs.oid, f.lfs.size) : f.data!;
    return this.serveBytes(req, res, data, { ...common, ETag: `"${f.oid}"` });
  }

  /** Bytes with Range support (bytes=a-b, a-, -n), and the hang-up / stall faults. */
  private serveBytes(req: http.IncomingMessage, res: http.ServerResponse, data: Buffer, headers: Record<string, string>): void {
    const size = data.length;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = req.headers.range;
    if (range) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (!m || (m[1] === '' && m[2] === '')) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Length': 0 });
        res.end();
        return;
      }
      if (m[1] === '') {
        start = Math.max(0, size - Number(m[2]));
      } else {
        start = Number(m[1]);
        end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
      }
      if (start >= size || start > end) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Length': 0 });
        res.end();
        return;
      }
      status = 206;
    }
    const body = data.subarray(start, end + 1);
    res.writeHead(status, {
      ...headers,
      'Content-Type': 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      'Content-Length': body.length,
      ...(status === 206 ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}),
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const fault = this.takeFault(req, ['hangup', 'stall', 'slow']);
    if (fault?.kind === 'slow') {
      let at = 0;
      const next = (): void => {
        if (res.destroyed) return;
        const piece = body.subarray(at, at + fault.chunkBytes);
        at += piece.length;
        if (at >= body.length) res.end(piece);
        else res.write(piece, () => setTimeout(next, fault.delayMs));
      };
      next();
      return;
    }
    if (fault && (fault.kind === 'hangup' || fault.kind === 'stall')) {
      const n = Math.min(fault.afterBytes, body.length);
      res.write(body.subarray(0, n), () => {
        if (fault.kind === 'hangup') setTimeout(() => res.socket?.destroy(), 5);
        // stall: keep the socket open without sending more; the client must time out.
      });
      return;
    }
    res.end(body);
  }
}
