/**
 * The test Hub must satisfy the real @huggingface/hub client: every endpoint is driven here through the
 * library itself, not through hand-written requests, except where the library cannot send what the
 * server must refuse (a `..` path, an un-uploaded LFS oid).
 */
import {
  commit,
  createBranch,
  createRepo,
  downloadFile,
  fileDownloadInfo,
  fileExists,
  HubApiError,
  listFiles,
  modelInfo,
  pathsInfo,
  snapshotDownload,
  uploadFiles,
  whoAmI,
} from '@huggingface/hub';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HubServer, sha256Hex } from './hub-server.js';
import { listTree, safetensors, tmp } from './fixtures.js';

const WRITE = 'hf_write_server_test_token_0123456789';
const READ = 'hf_read_server_test_token_0123456789';

let hub: HubServer;
beforeAll(async () => {
  hub = await HubServer.start({ treePageSize: 2 });
});
afterAll(async () => {
  await hub.close();
});

async function status(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err instanceof HubApiError ? err.statusCode : -1;
  }
}

describe('test Hub against @huggingface/hub', () => {
  const repo = 'org/proto';
  const weights = safetensors({ w: [1, 2, 3, 4] });

  it('whoAmI: role per token, 401 for others', async () => {
    const me = await whoAmI({ hubUrl: hub.url, accessToken: WRITE });
    expect(me.name).toBe('tester');
    expect(me.auth.accessToken?.role).toBe('write');
    expect((await whoAmI({ hubUrl: hub.url, accessToken: READ })).auth.accessToken?.role).toBe('read');
    expect(await status(whoAmI({ hubUrl: hub.url, accessToken: 'hf_bogus' }))).toBe(401);
  });

  it('createRepo: creates, then 409; read token 403', async () => {
    const r = await createRepo({ repo, hubUrl: hub.url, accessToken: WRITE });
    expect(r.repoUrl).toBe(`${hub.url}/${repo}`);
    expect(await status(createRepo({ repo, hubUrl: hub.url, accessToken: WRITE }))).toBe(409);
    expect(await status(createRepo({ repo: 'org/other', hubUrl: hub.url, accessToken: READ }))).toBe(403);
  });

  it('uploadFiles: LFS for safetensors, inline for json; commit oid and url', async () => {
    const res = await uploadFiles({
      repo,
      hubUrl: hub.url,
      accessToken: WRITE,
      useXet: false,
      files: [
        { path: 'config.json', content: new Blob(['{"a":1}']) },
        { path: 'model.safetensors', content: new Blob([weights]) },
        { path: 'sub/dir/notes.txt', content: new Blob(['hello']) },
      ],
    });
    expect(res?.commit.oid).toMatch(/^[0-9a-f]{40}$/);
    expect(res?.commit.url).toBe(`${hub.url}/${repo}/commit/${res?.commit.oid}`);
    expect(hub.lfsUploads).toEqual([sha256Hex(weights)]);
    expect(hub.snapshot(repo).get('model.safetensors')).toEqual(weights);
  });

  it('the same LFS object is not uploaded twice (batch answers without actions)', async () => {
    await uploadFiles({ repo, hubUrl: hub.url, accessToken: WRITE, useXet: false, files: [{ path: 'copy.safetensors', content: new Blob([weights]) }] });
    expect(hub.lfsUploads).toHaveLength(1);
  });

  it('modelInfo gives the head sha; listFiles paginates through Link headers', async () => {
    const info = await modelInfo({ name: repo, hubUrl: hub.url, additionalFields: ['sha'] });
    expect(info.sha).toBe(hub.head(repo));
    const before = hub.count('GET', /\/tree\//);
    const entries = [];
    for await (const e of listFiles({ repo, hubUrl: hub.url, recursive: true })) entries.push(e);
    expect(hub.count('GET', /\/tree\//) - before).toBeGreaterThan(2); // page size 2
    const files = entries.filter((e) => e.type === 'file').map((e) => e.path);
    expect(files.sort()).toEqual(['.gitattributes', 'config.json', 'copy.safetensors', 'model.safetensors', 'sub/dir/notes.txt']);
    const st = entries.find((e) => e.path === 'model.safetensors');
    expect(st?.lfs).toEqual({ oid: sha256Hex(weights), size: weights.length, pointerSize: expect.any(Number) });
    expect(entries.some((e) => e.type === 'directory' && e.path === 'sub/dir')).toBe(true);
  });

  it('pathsInfo with lastCommit; fileExists via HEAD raw', async () => {
    const [info] = await pathsInfo({ repo, hubUrl: hub.url, paths: ['config.json'], expand: true });
    expect(info.lastCommit?.id).toMatch(/^[0-9a-f]{40}$/);
    expect(await fileExists({ repo, hubUrl: hub.url, path: 'config.json' })).toBe(true);
    expect(await fileExists({ repo, hubUrl: hub.url, path: 'nope.json' })).toBe(false);
  });

  it('fileDownloadInfo / downloadFile: size, etag, ranges, EntryNotFound', async () => {
    const info = await fileDownloadInfo({ repo, hubUrl: hub.url, path: 'model.safetensors' });
    expect(info?.size).toBe(weights.length);
    const small = await fileDownloadInfo({ repo, hubUrl: hub.url, path: 'config.json' });
    expect(small?.etag).toMatch(/^"[0-9a-f]{40}"$/);
    expect(await fileDownloadInfo({ repo, hubUrl: hub.url, path: 'missing.bin' })).toBeNull();
    const blob = await downloadFile({ repo, hubUrl: hub.url, path: 'model.safetensors' });
    expect(Buffer.from(await blob!.arrayBuffer())).toEqual(weights);
    expect(Buffer.from(await blob!.slice(8, 16).arrayBuffer())).toEqual(weights.subarray(8, 16));
  });

  it('snapshotDownload writes the Python cache layout', async () => {
    const cacheDir = await tmp();
    const debug = vi.spyOn(console, 'debug').mockImplementation(() => undefined);
    const snap = await snapshotDownload({ repo, hubUrl: hub.url, cacheDir });
    debug.mockRestore();
    expect(snap).toBe(path.join(cacheDir, 'models--org--proto', 'snapshots', hub.head(repo)!));
    expect(await fs.readFile(path.join(snap, 'model.safetensors'))).toEqual(weights);
    expect(await fs.readFile(path.join(cacheDir, 'models--org--proto', 'refs', 'main'), 'utf8')).toBe(hub.head(repo));
    expect(await listTree(path.join(cacheDir, 'models--org--proto', 'blobs'))).toContain(sha256Hex(weights));
  });

  it('createBranch, commit to a branch, pull requests', async () => {
    await createBranch({ repo, hubUrl: hub.url, accessToken: WRITE, branch: 'dev' });
    expect(await status(createBranch({ repo, hubUrl: hub.url, accessToken: WRITE, branch: 'dev' }))).toBe(409);
    await uploadFiles({ repo, hubUrl: hub.url, accessToken: WRITE, useXet: false, branch: 'dev', files: [{ path: 'dev.txt', content: new Blob(['d']) }] });
    expect(hub.snapshot(repo, 'dev').has('dev.txt')).toBe(true);
    expect(hub.snapshot(repo).has('dev.txt')).toBe(false);
    const pr = await commit({
      repo,
      hubUrl: hub.url,
      accessToken: WRITE,
      useXet: false,
      isPullRequest: true,
      title: 'pr',
      operations: [{ operation: 'addOrUpdate', path: 'pr.txt', content: new Blob(['p']) }],
    });
    expect(pr?.pullRequestUrl).toBe(`${hub.url}/${repo}/discussions/1`);
    expect(hub.snapshot(repo, 'refs/pr/1').has('pr.txt')).toBe(true);
  });

  it('refuses writes with a read token (403) and without one (401)', async () => {
    const files = [{ path: 'x.txt', content: new Blob(['x']) }];
    expect(await status(uploadFiles({ repo, hubUrl: hub.url, accessToken: READ, useXet: false, files }))).toBe(403);
    expect(await status(uploadFiles({ repo, hubUrl: hub.url, useXet: false, files }))).toBe(401);
  });

  it('commit refuses an lfsFile whose object was never uploaded, and `..` paths', async () => {
    const post = (lines: unknown[]): Promise<Response> =>
      fetch(`${hub.url}/api/models/${repo}/commit/main`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${WRITE}`, 'Content-Type': 'application/x-ndjson' },
        body: lines.map((l) => JSON.stringify(l)).join('\n'),
      });
    const header = { key: 'header', value: { summary: 's' } };
    const ghost = await post([header, { key: 'lfsFile', value: { path: 'g.safetensors', algo: 'sha256', oid: 'a'.repeat(64), size: 3 } }]);
    expect(ghost.status).toBe(422);
    const evil = await post([header, { key: 'file', value: { path: '../evil.txt', content: 'eA==', encoding: 'base64' } }]);
    expect(evil.status).toBe(400);
    const wrongSize = await post([header, { key: 'lfsFile', value: { path: 'w.safetensors', algo: 'sha256', oid: sha256Hex(weights), size: 1 } }]);
    expect(wrongSize.status).toBe(422);
  });

  it('LFS PUT verifies sha256 and size', async () => {
    const res = await fetch(`${hub.url}/${repo}.git/info/lfs/objects/batch`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${WRITE}`, 'Content-Type': 'application/vnd.git-lfs+json' },
      body: JSON.stringify({ operation: 'upload', transfers: ['basic'], hash_algo: 'sha_256', objects: [{ oid: sha256Hex(Buffer.from('abc')), size: 3 }] }),
    });
    const json = (await res.json()) as { objects: { actions?: { upload: { href: string } } }[] };
    const href = json.objects[0].actions!.upload.href;
    expect((await fetch(href, { method: 'PUT', body: 'abd' })).status).toBe(400);
    expect((await fetch(href, { method: 'PUT', body: 'abc' })).status).toBe(200);
  });

  it('private repos: 401 RepoNotFound anonymously, readable with a token', async () => {
    hub.seedRepo('org/secret', { 'config.json': '{}' }, { private: true });
    const anon = await fetch(`${hub.url}/api/models/org/secret/revision/main`);
    expect(anon.status).toBe(401);
    expect(anon.headers.get('X-Error-Code')).toBe('RepoNotFound');
    const info = await modelInfo({ name: 'org/secret', hubUrl: hub.url, accessToken: READ, additionalFields: ['sha'] });
    expect(info.sha).toBe(hub.head('org/secret'));
  });

  it('failure injection: status, reset, hang-up mid-body', async () => {
    hub.inject({ path: '/api/whoami-v2', fault: { kind: 'status', status: 429, headers: { 'Retry-After': '3' } } });
    const r1 = await fetch(`${hub.url}/api/whoami-v2`, { headers: { Authorization: `Bearer ${READ}` } });
    expect(r1.status).toBe(429);
    expect(r1.headers.get('Retry-After')).toBe('3');
    hub.inject({ path: '/api/whoami-v2', fault: { kind: 'reset' } });
    await expect(fetch(`${hub.url}/api/whoami-v2`)).rejects.toThrow();
    hub.inject({ path: /\/resolve\/main\/config\.json/, fault: { kind: 'hangup', afterBytes: 3 } });
    const r3 = await fetch(`${hub.url}/${repo}/resolve/main/config.json`);
    await expect(r3.arrayBuffer()).rejects.toThrow();
    const ok = await fetch(`${hub.url}/${repo}/resolve/main/config.json`);
    expect(await ok.text()).toBe('{"a":1}');
  });
});
