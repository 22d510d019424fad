import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { hubCacheDir, hfHome, isOffline, resolveToken } from '../../src/hub/env.js';
import { resolveHubModel } from '../../src/hub/hub-model.js';
import { maskToken, redact } from '../../src/hub/redact.js';
import { resolveModel } from '../../src/hub/resolve.js';
import type { DownloadProgress, ModelSourceOptions } from '../../src/hub/source.js';
import { gitBlobSha1, HubServer, sha256Hex } from './hub-server.js';
import { listTree, readFolder, recordingSleep, tinyModelFiles, tmp, writeFolder } from './fixtures.js';

const READ = 'hf_read_resolve_test_secret_ABCDEFGHIJ';

let hub: HubServer;
const temps: string[] = [];
async function tempDir(): Promise<string> {
  const d = await tmp();
  temps.push(d);
  return d;
}

beforeAll(async () => {
  hub = await HubServer.start({ treePageSize: 3 });
});
afterAll(async () => {
  await hub.close();
  await Promise.all(temps.map((d) => fs.rm(d, { recursive: true, force: true })));
});
afterEach(() => {
  hub.clearInjections();
  vi.unstubAllEnvs();
});

/** Options for a test: local Hub, fresh cache, no waiting between retries, no ambient token. */
async function opts(extra: ModelSourceOptions = {}): Promise<ModelSourceOptions & { cacheDir: string; delays: number[] }> {
  const { sleep, delays } = recordingSleep();
  vi.stubEnv('HF_TOKEN', '');
  vi.stubEnv('HF_HOME', await tempDir()); // no token file
  vi.stubEnv('HF_HUB_OFFLINE', '');
  return { endpoint: hub.url, cacheDir: path.join(await tempDir(), 'hub'), sleep, delays, ...extra };
}

async function expectError(p: Promise<unknown>, code: string): Promise<FopeifyError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(FopeifyError);
    expect((err as FopeifyError).code, (err as Error).message).toBe(code);
    return err as FopeifyError;
  }
  throw new Error(`expected ${code}, got success`);
}

const sharded = tinyModelFiles({ sharded: true });
const single = tinyModelFiles();
let shardedCommit = '';

beforeAll(() => {
  shardedCommit = hub.seedRepo('org/sharded', {
    ...sharded,
    'README.md': '# sharded\n',
    'pytorch_model.bin': Buffer.from('PICKLE, never fetched'),
    'onnx/model.onnx': Buffer.from('not needed'),
    'extra.txt': 'not needed',
  });
  hub.seedRepo('org/single', single);
});

describe('download into the HF cache', () => {
  it('fetches only what is needed, byte-identical, in Python’s layout', async () => {
    const o = await opts();
    const events: DownloadProgress[] = [];
    const m = await resolveHubModel('org/sharded', { ...o, onProgress: (e) => events.push(e) });
    expect(m.kind).toBe('hub');
    expect(m.commit).toBe(shardedCommit);
    const storage = path.join(o.cacheDir, 'models--org--sharded');
    expect(m.dir).toBe(path.join(storage, 'snapshots', shardedCommit));

    const got = await readFolder(m.dir);
    const expected = new Map(Object.entries({ ...sharded, 'README.md': Buffer.from('# sharded\n') }));
    expect([...got.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [k, v] of expected) expect(got.get(k), k).toEqual(v);

    // refs/main → commit; snapshot entries are relative symlinks into blobs/<etag>.
    expect(await fs.readFile(path.join(storage, 'refs', 'main'), 'utf8')).toBe(shardedCommit);
    for (const [name, data] of expected) {
      const link = path.join(m.dir, name);
      expect((await fs.lstat(link)).isSymbolicLink()).toBe(true);
      const etag = name.endsWith('.safetensors') ? sha256Hex(data) : gitBlobSha1(data);
      expect(await fs.readlink(link)).toBe(`../../blobs/${etag}`);
    }
    const blobs = await listTree(path.join(storage, 'blobs'));
    expect(blobs.every((b) => /^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(b))).toBe(true);

    // sha256 known without reading: LFS files only, marked as such.
    const shard = m.files.find((f) => f.path === 'model-00001-of-00002.safetensors');
    expect(shard).toMatchObject({ sha256: sha256Hex(sharded['model-00001-of-00002.safetensors']), storage: 'lfs' });
    const cfg = m.files.find((f) => f.path === 'config.json');
    expect(cfg).toMatchObject({ storage: 'git', gitOid: gitBlobSha1(sharded['config.json']) });
    expect(cfg?.sha256).toBeUndefined();

    // Nothing beyond the plan was requested.
    const fetched = hub.requests.filter((r) => r.path.startsWith('/org/sharded/resolve/')).map((r) => r.path.split('/').pop());
    expect(fetched).not.toContain('pytorch_model.bin');
    expect(fetched).not.toContain('model.onnx');
    expect(fetched).not.toContain('extra.txt');

    // Progress: ends with every file done and all bytes counted.
    const last = events.at(-1)!;
    expect(last.filesDone).toBe(last.filesTotal);
    expect(last.filesTotal).toBe(expected.size);
    expect(last.allBytes).toBe(last.allTotalBytes);
    expect(last.allTotalBytes).toBe([...expected.values()].reduce((s, b) => s + b.length, 0));
  });

  it('a second resolve uses the cache without touching the network, also offline', async () => {
    const o = await opts();
    await resolveHubModel('org/single', o);
    const noNet = (() => Promise.reject(new Error('network used'))) as typeof fetch;
    const again = await resolveHubModel('org/single', { ...o, fetch: noNet });
    expect(again.kind).toBe('cache');
    const offline = await resolveHubModel('org/single', { ...o, fetch: noNet, offline: true });
    expect(offline.kind).toBe('cache');
    vi.stubEnv('HF_HUB_OFFLINE', '1');
    const viaEnv = await resolveModel('org/single', { cacheDir: o.cacheDir, fetch: noNet });
    expect(viaEnv.kind).toBe('cache');
    // a commit sha works directly
    const bySha = await resolveHubModel('org/single', { ...o, fetch: noNet, revision: again.commit });
    expect(bySha.dir).toBe(again.dir);
  });

  it('a link planted in a cached snapshot that leaves the cache is not listed (nor hashed into provenance)', async () => {
    const o = await opts();
    const first = await resolveHubModel('org/single', o);
    const secret = path.join(await tempDir(), 'id_rsa');
    await fs.writeFile(secret, 'private key');
    await fs.symlink(secret, path.join(first.dir, 'notes.txt'));
    const noNet = (() => Promise.reject(new Error('network used'))) as typeof fetch;
    const again = await resolveHubModel('org/single', { ...o, fetch: noNet, offline: true });
    expect(again.files.map((f) => f.path)).not.toContain('notes.txt');
    expect(again.files.map((f) => f.path)).toContain('config.json');
    expect(again.files.find((f) => f.path === 'config.json')?.gitOid).toMatch(/^[0-9a-f]{40}$/);
  });

  it('offline with nothing cached fails with OFFLINE and sends no request', async () => {
    const o = await opts();
    const before = hub.requests.length;
    const err = await expectError(resolveHubModel('org/single', { ...o, offline: true }), 'OFFLINE');
    expect(err.message).toContain('org/single');
    expect(err.message).toContain('offline');
    vi.stubEnv('HF_HUB_OFFLINE', '1');
    await expectError(resolveHubModel('org/single', { cacheDir: o.cacheDir, endpoint: hub.url }), 'OFFLINE');
    expect(hub.requests.length).toBe(before);
  });

  it('an incomplete cache (config only) is completed online and refused offline', async () => {
    const o = await opts();
    const storage = path.join(o.cacheDir, 'models--org--single');
    const commit = hub.head('org/single')!;
    const cfgOid = gitBlobSha1(single['config.json']);
    await writeFolder(path.join(storage, 'blobs'), { [cfgOid]: single['config.json'] });
    await fs.mkdir(path.join(storage, 'snapshots', commit), { recursive: true });
    await fs.symlink(`../../blobs/${cfgOid}`, path.join(storage, 'snapshots', commit, 'config.json'));
    await writeFolder(path.join(storage, 'refs'), { main: commit });
    const err = await expectError(resolveHubModel('org/single', { ...o, offline: true }), 'OFFLINE');
    expect(err.message).toContain('model.safetensors');
    const m = await resolveHubModel('org/single', o);
    expect(m.kind).toBe('hub');
    expect(await fs.readFile(path.join(m.dir, 'model.safetensors'))).toEqual(single['model.safetensors']);
  });

  it('resumes from an .incomplete file with a Range request', async () => {
    const o = await opts();
    const weights = single['model.safetensors'];
    const oid = sha256Hex(weights);
    const blobs = path.join(o.cacheDir, 'models--org--single', 'blobs');
    await writeFolder(blobs, { [`${oid}.incomplete`]: weights.subarray(0, 50) });
    const before = hub.requests.length;
    const m = await resolveHubModel('org/single', o);
    expect(await fs.readFile(path.join(m.dir, 'model.safetensors'))).toEqual(weights);
    const ranges = hub.requests.slice(before).filter((r) => r.path.includes('model.safetensors') || r.path.includes(oid)).map((r) => r.range);
    expect(ranges).toContain('bytes=50-');
    expect(await listTree(blobs)).not.toContain(`${oid}.incomplete`);
  });

  it('a corrupt .incomplete is caught by the sha256 check and deleted', async () => {
    const o = await opts();
    const weights = single['model.safetensors'];
    const oid = sha256Hex(weights);
    const blobs = path.join(o.cacheDir, 'models--org--single', 'blobs');
    await writeFolder(blobs, { [`${oid}.incomplete`]: Buffer.alloc(50, 7) });
    const err = await expectError(resolveHubModel('org/single', o), 'HUB_ERROR');
    expect(err.message).toMatch(/corrupt.*sha256/);
    expect(await listTree(blobs)).not.toContain(`${oid}.incomplete`);
    expect((await resolveHubModel('org/single', o)).kind).toBe('hub'); // and a rerun succeeds
  });

  it('a connection dropped mid-body resumes where it stopped', async () => {
    const o = await opts();
    hub.inject({ path: /lfs-cdn|model\.safetensors/, fault: { kind: 'hangup', afterBytes: 40 } });
    const before = hub.requests.length;
    const m = await resolveHubModel('org/single', o);
    expect(await fs.readFile(path.join(m.dir, 'model.safetensors'))).toEqual(single['model.safetensors']);
    expect(hub.requests.slice(before).some((r) => r.range === 'bytes=40-')).toBe(true);
  });

  it('a stalled body times out and resumes', async () => {
    const o = await opts({ stallTimeoutMs: 300 });
    hub.inject({ path: /lfs-cdn|model\.safetensors/, fault: { kind: 'stall', afterBytes: 30 } });
    const m = await resolveHubModel('org/single', o);
    expect(await fs.readFile(path.join(m.dir, 'model.safetensors'))).toEqual(single['model.safetensors']);
  });
});

describe('Hub failures', () => {
  it('429 with Retry-After is retried after the announced delay', async () => {
    const o = await opts();
    hub.inject({ path: '/api/models/org/single/revision/', fault: { kind: 'status', status: 429, headers: { 'Retry-After': '7' } } });
    const m = await resolveHubModel('org/single', o);
    expect(m.kind).toBe('hub');
    expect(o.delays).toEqual([7000]);
  });

  it('5xx and connection resets are retried with backoff, then succeed', async () => {
    const o = await opts();
    hub.inject({ path: '/tree/', times: 2, fault: { kind: 'status', status: 503 } });
    hub.inject({ path: /config\.json/, method: 'GET', fault: { kind: 'reset' } });
    hub.inject({ path: /lfs-cdn/, fault: { kind: 'status', status: 502 } });
    const m = await resolveHubModel('org/single', o);
    expect(m.kind).toBe('hub');
    expect(o.delays.length).toBe(4);
    expect(o.delays[1]).toBeGreaterThan(o.delays[0] / 2); // exponential: attempt 2 waits ≥ attempt 1's floor
  });

  it('an API answer cut mid-body (listing page, model info) is retried', async () => {
    const o = await opts();
    hub.inject({ path: '/tree/', fault: { kind: 'hangup', afterBytes: 10 } });
    hub.inject({ path: '/revision/', fault: { kind: 'hangup', afterBytes: 5 } });
    const m = await resolveHubModel('org/single', o);
    expect(m.kind).toBe('hub');
    expect(o.delays).toHaveLength(2);
  });

  it('an API read that never completes times out and is retried', async () => {
    const o = await opts({ stallTimeoutMs: 300 });
    hub.inject({ path: '/tree/', fault: { kind: 'stall', afterBytes: 10 } });
    expect((await resolveHubModel('org/single', o)).kind).toBe('hub');
    expect(o.delays.length).toBeGreaterThanOrEqual(1); // more only if a loaded machine is slower than 300 ms
  });

  it('5xx beyond the retry budget is a clear HUB_ERROR', async () => {
    const o = await opts({ retries: 2 });
    hub.inject({ path: '/api/models/org/single/revision/', times: 10, fault: { kind: 'status', status: 500 } });
    const err = await expectError(resolveHubModel('org/single', o), 'HUB_ERROR');
    expect(err.message).toMatch(/answered 500 for org\/single after 3 attempts/);
    expect(o.delays).toHaveLength(2);
  });

  it('resets beyond the retry budget name the connection problem', async () => {
    const o = await opts({ retries: 1 });
    hub.inject({ path: '/api/models/org/single/revision/', times: 5, fault: { kind: 'reset' } });
    const err = await expectError(resolveHubModel('org/single', o), 'HUB_ERROR');
    expect(err.message).toMatch(/could not reach .* connection failed/);
  });

  it('404 repository, revision and file are HUB_NOT_FOUND naming them', async () => {
    const o = await opts();
    const repoErr = await expectError(resolveHubModel('org/missing', { ...o, token: READ }), 'HUB_NOT_FOUND');
    expect(repoErr.message).toContain('org/missing');
    const anon = await expectError(resolveHubModel('org/missing', o), 'HUB_NOT_FOUND');
    expect(anon.message).toContain('org/missing');
    const revErr = await expectError(resolveHubModel('org/single', { ...o, revision: 'nope' }), 'HUB_NOT_FOUND');
    expect(revErr.message).toContain('revision nope');
    hub.inject({ path: /resolve\/[0-9a-f]{40}\/config\.json/, fault: { kind: 'status', status: 404, headers: { 'X-Error-Code': 'EntryNotFound' } } });
    const fileErr = await expectError(resolveHubModel('org/single', o), 'HUB_NOT_FOUND');
    expect(fileErr.message).toContain('config.json');
  });

  it('a repository without config.json is not a model', async () => {
    hub.seedRepo('org/noconfig', { 'model.safetensors': single['model.safetensors'] });
    const err = await expectError(resolveHubModel('org/noconfig', await opts()), 'MODEL_NOT_FOUND');
    expect(err.message).toContain('config.json');
  });

  it('an index naming a missing shard is MISSING_SHARD', async () => {
    const { 'model-00002-of-00002.safetensors': _dropped, ...rest } = sharded;
    hub.seedRepo('org/halfsharded', rest);
    await expectError(resolveHubModel('org/halfsharded', await opts()), 'MISSING_SHARD');
  });

  it('a pickle-only repository is refused before any file is downloaded', async () => {
    hub.seedRepo('org/pickled', { 'config.json': '{}', 'pytorch_model.bin': Buffer.alloc(1000, 1) });
    const before = hub.requests.length;
    const err = await expectError(resolveHubModel('org/pickled', await opts()), 'PICKLE_ONLY');
    expect(err.message).toContain('pytorch_model.bin');
    expect(err.message).toContain('never unpickles');
    expect(err.message).toContain('safetensors');
    expect(hub.requests.slice(before).filter((r) => r.path.includes('/resolve/'))).toHaveLength(0);
  });
});

describe('auth', () => {
  const captured = (): { text: () => string; restore: () => void } => {
    const chunks: string[] = [];
    const spies = [
      vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => (chunks.push(String(c)), true)),
      vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => (chunks.push(String(c)), true)),
      ...(['log', 'info', 'debug', 'warn', 'error'] as const).map((k) =>
        vi.spyOn(console, k).mockImplementation((...a: unknown[]) => void chunks.push(a.map(String).join(' '))),
      ),
    ];
    return { text: () => chunks.join('\n'), restore: () => spies.forEach((s) => s.mockRestore()) };
  };

  it('an invalid token is HUB_AUTH and the token appears nowhere', async () => {
    const bad = 'hf_invalidTokenValue0123456789abcdef';
    const out = captured();
    let err: FopeifyError;
    try {
      err = await expectError(resolveHubModel('org/single', { ...(await opts()), token: bad }), 'HUB_AUTH');
    } finally {
      out.restore();
    }
    expect(err.message).toContain('org/single');
    expect(err.message).toMatch(/invalid|expired/);
    expect(err.message).not.toContain(bad);
    expect(String(err.stack)).not.toContain(bad);
    expect(JSON.stringify(err)).not.toContain(bad);
    expect(out.text()).not.toContain(bad);
    expect(out.text()).not.toContain(bad.slice(3));
  });

  it('a token that is not an hf_ token is HUB_AUTH without echoing it', async () => {
    const err = await expectError(resolveHubModel('org/single', { ...(await opts()), token: 'sk-not-a-hub-token-12345' }), 'HUB_AUTH');
    expect(err.message).not.toContain('sk-not-a-hub-token-12345');
    expect(err.message).toContain('hf_');
  });

  it('a private repository without a token says so; with HF_TOKEN or the token file it downloads', async () => {
    hub.seedRepo('org/private', single, { private: true });
    const o = await opts();
    const err = await expectError(resolveHubModel('org/private', o), 'HUB_NOT_FOUND');
    expect(err.message).toMatch(/private or gated, pass a token/);
    vi.stubEnv('HF_TOKEN', READ);
    expect((await resolveHubModel('org/private', o)).kind).toBe('hub');
    vi.stubEnv('HF_TOKEN', '');
    const home = await tempDir();
    vi.stubEnv('HF_HOME', home);
    await fs.writeFile(path.join(home, 'token'), `${READ}\n`);
    const o2 = { ...o, cacheDir: path.join(await tempDir(), 'hub') };
    const before = hub.requests.length;
    expect((await resolveHubModel('org/private', o2)).kind).toBe('hub');
    const reqs = hub.requests.slice(before);
    expect(reqs.filter((r) => !r.path.startsWith('/lfs-cdn/')).every((r) => r.auth === 'read')).toBe(true);
    // The token goes to the Hub only: the redirect to the CDN (another origin) is followed without it.
    const cdn = reqs.filter((r) => r.path.startsWith('/lfs-cdn/'));
    expect(cdn.length).toBeGreaterThan(0);
    expect(cdn.every((r) => r.auth === 'none')).toBe(true);
  });

  it('a gated repository is HUB_AUTH explaining the gate', async () => {
    hub.seedRepo('org/gated', single, { gated: true });
    const err = await expectError(resolveHubModel('org/gated', { ...(await opts()), token: READ }), 'HUB_AUTH');
    expect(err.message).toMatch(/gated/);
    expect(err.message).not.toContain(READ);
  });

  it('maskToken / redact hide tokens', () => {
    expect(maskToken(READ)).toBe('hf_****');
    expect(maskToken(undefined)).toBe('(no token)');
    const msg = redact(`failed with ${READ} and Bearer abc.def and hf_someOtherLongTokenValue99`, READ);
    expect(msg).not.toContain(READ);
    expect(msg).not.toContain('abc.def');
    expect(msg).not.toContain('someOtherLongTokenValue99');
    expect(redact('HF_HUB_OFFLINE and hf_transfer stay')).toBe('HF_HUB_OFFLINE and hf_transfer stay');
  });
});

describe('hostile server', () => {
  async function expectContained(repo: string, entries: unknown[]): Promise<void> {
    hub.seedRepo(repo, single);
    hub.setTreeOverride(repo, entries);
    // The cache sits deep in a private sandbox, so a `../..` escape would land inside the sandbox and show.
    const sandbox = await tempDir();
    const cacheDir = path.join(sandbox, 'a', 'b', 'c', 'hub');
    const etcX = await fs.stat('/etc/x').then(() => true, () => false);
    await expectError(resolveHubModel(repo, { ...(await opts()), cacheDir }), 'UNSAFE_PATH');
    const written = await listTree(sandbox);
    expect(written.filter((p) => !['a', 'a/b', 'a/b/c'].includes(p) && !p.startsWith('a/b/c/hub'))).toEqual([]);
    expect(written.filter((p) => ['evil', 'pwn', 'x', 'evil.safetensors'].includes(p.split('/').pop()!))).toEqual([]);
    expect(await fs.stat('/etc/x').then(() => true, () => false)).toBe(etcX);
  }
  const good = (p: string, data: Buffer) => ({ type: 'file', path: p, size: data.length, oid: gitBlobSha1(data) });

  it('a listing with ../ or absolute names writes nothing outside the cache', async () => {
    const cfg = single['config.json'];
    await expectContained('org/evil1', [good('config.json', cfg), good('../../evil', cfg), good('model.safetensors', cfg)]);
    await expectContained('org/evil2', [good('config.json', cfg), good('/etc/x', cfg), good('model.safetensors', cfg)]);
    await expectContained('org/evil3', [good('config.json', cfg), good('a\\..\\..\\b', cfg), good('model.safetensors', cfg)]);
    await expectContained('org/evil4', [good('config.json', cfg), good('x\u0000y', cfg), good('model.safetensors', cfg)]);
  });

  it('a hostile oid or shard name is refused', async () => {
    const w = single['model.safetensors'];
    await expectContained('org/evil5', [
      good('config.json', single['config.json']),
      { type: 'file', path: 'model.safetensors', size: w.length, oid: gitBlobSha1(w), lfs: { oid: '../../../../tmp/pwn', size: w.length, pointerSize: 130 } },
    ]);
    const index = Buffer.from(JSON.stringify({ weight_map: { a: '../../evil.safetensors' } }));
    hub.seedRepo('org/evil6', { 'config.json': single['config.json'], 'model.safetensors.index.json': index });
    await expectError(resolveHubModel('org/evil6', await opts()), 'UNSAFE_PATH');
  });
});

describe('environment', () => {
  it('cache dir: HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > HF_HOME/hub > XDG_CACHE_HOME > ~/.cache', () => {
    const env = { HF_HUB_CACHE: '/a', HUGGINGFACE_HUB_CACHE: '/b', HF_HOME: '/c', XDG_CACHE_HOME: '/d' };
    expect(hubCacheDir(undefined, env)).toBe('/a');
    expect(hubCacheDir('/opt', env)).toBe('/opt');
    expect(hubCacheDir(undefined, { ...env, HF_HUB_CACHE: undefined })).toBe('/b');
    expect(hubCacheDir(undefined, { HF_HOME: '/c', XDG_CACHE_HOME: '/d' })).toBe('/c/hub');
    expect(hubCacheDir(undefined, { XDG_CACHE_HOME: '/d' })).toBe('/d/huggingface/hub');
    expect(hfHome({})).toMatch(/\.cache\/huggingface$/);
    expect(isOffline(undefined, { HF_HUB_OFFLINE: 'true' })).toBe(true);
    expect(isOffline(undefined, { HF_HUB_OFFLINE: '0' })).toBe(false);
    expect(isOffline(false, { HF_HUB_OFFLINE: '1' })).toBe(false);
  });

  it('token: option > HF_TOKEN > token file (HF_TOKEN_PATH or HF_HOME/token)', async () => {
    const home = await tempDir();
    await fs.writeFile(path.join(home, 'token'), 'hf_fromfile\n');
    const other = path.join(home, 'other-token');
    await fs.writeFile(other, 'hf_frompath');
    expect(await resolveToken('hf_opt', { HF_TOKEN: 'hf_env', HF_HOME: home })).toEqual({ token: 'hf_opt', source: 'option' });
    expect(await resolveToken(undefined, { HF_TOKEN: 'hf_env', HF_HOME: home })).toEqual({ token: 'hf_env', source: 'HF_TOKEN' });
    expect(await resolveToken(undefined, { HF_HOME: home })).toEqual({ token: 'hf_fromfile', source: 'token file' });
    expect(await resolveToken(undefined, { HF_HOME: home, HF_TOKEN_PATH: other })).toEqual({ token: 'hf_frompath', source: 'token file' });
    expect(await resolveToken(undefined, { HF_HOME: path.join(home, 'none') })).toEqual({});
  });

  it('the sha256 of a cached LFS file is its blob name (no read needed)', async () => {
    const o = await opts();
    const m = await resolveHubModel('org/single', o);
    const f = m.files.find((x) => x.path === 'model.safetensors')!;
    expect(f.sha256).toBe(createHash('sha256').update(await fs.readFile(path.join(m.dir, f.path))).digest('hex'));
  });
});
