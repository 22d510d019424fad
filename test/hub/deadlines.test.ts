/**
 * No Hub request waits forever (issue 18: a stalled commit POST hung 301 s, a stalled preupload 1,828 s).
 * The local Hub never answers, or stops reading an upload; with a small timeout the request is retried
 * where that is safe, or fails with a HUB_ERROR naming what timed out. A body that keeps moving is not cut.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { resolveHubModel } from '../../src/hub/hub-model.js';
import { push, type PushOptions } from '../../src/hub/push.js';
import { HubServer } from './hub-server.js';
import { readFolder, recordingSleep, tinyModelFiles, tmp, writeFolder } from './fixtures.js';

const WRITE = 'hf_write_deadline_test_secret_0123456789';
/** Long enough for a loaded machine to answer a normal request, short enough for a test. */
const TIMEOUT_MS = 1500;
/** A hang must end within a few timeouts (retries included); the test fails well before vitest's limit. */
const TEST_MS = 30_000;

let hub: HubServer;
const temps: string[] = [];
async function tempDir(): Promise<string> {
  const d = await tmp();
  temps.push(d);
  return d;
}
beforeAll(async () => {
  hub = await HubServer.start();
  hub.seedRepo('org/model', tinyModelFiles());
});
afterAll(async () => {
  await hub.close();
  await Promise.all(temps.map((d) => fs.rm(d, { recursive: true, force: true })));
});
afterEach(() => {
  hub.clearInjections();
  vi.unstubAllEnvs();
});

async function modelDir(seed: number): Promise<string> {
  const dir = path.join(await tempDir(), 'model');
  await writeFolder(dir, tinyModelFiles({ sharded: true, fope: true, seed }));
  return dir;
}

function pushOpts(dir: string, repo: string, extra: Partial<PushOptions> = {}): PushOptions & { delays: number[] } {
  const { sleep, delays } = recordingSleep();
  vi.stubEnv('HF_TOKEN', '');
  return { dir, repo, endpoint: hub.url, token: WRITE, card: false, sleep, delays, stallTimeoutMs: TIMEOUT_MS, ...extra };
}

async function resolveOpts(): Promise<{ endpoint: string; cacheDir: string; sleep: (ms: number) => Promise<void>; delays: number[] }> {
  vi.stubEnv('HF_TOKEN', '');
  vi.stubEnv('HF_HOME', await tempDir());
  vi.stubEnv('HF_HUB_OFFLINE', '');
  return { endpoint: hub.url, cacheDir: path.join(await tempDir(), 'hub'), ...recordingSleep() };
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

describe('push: every request has a deadline', () => {
  it('a preupload that is never answered is retried, and the push completes', { timeout: TEST_MS }, async () => {
    const dir = await modelDir(21);
    const o = pushOpts(dir, 'org/preupload-hang');
    hub.inject({ method: 'POST', path: '/preupload/', fault: { kind: 'hang' } });
    const res = await push(o);
    expect(res.uploaded.length).toBeGreaterThan(0);
    expect(hub.count('POST', /org\/preupload-hang\/preupload\//)).toBe(2);
    expect(o.delays).toHaveLength(1);
  });

  it('a commit that is never answered fails typed, naming it, and is not sent twice', { timeout: TEST_MS }, async () => {
    const dir = await modelDir(22);
    hub.inject({ method: 'POST', path: '/commit/', fault: { kind: 'hang' } });
    const started = Date.now();
    const err = await expectError(push(pushOpts(dir, 'org/commit-hang')), 'HUB_ERROR');
    expect(Date.now() - started).toBeLessThan(TEST_MS / 2);
    expect(err.message).toMatch(/the commit \(POST \/api\/models\/org\/commit-hang\/commit\/main\) timed out: no progress for 1\.5 s/);
    expect(err.message).toMatch(/may or may not have been applied.*run the same push again/);
    expect(err.message).not.toContain(WRITE);
    expect(hub.count('POST', /org\/commit-hang\/commit\//)).toBe(1); // a commit is not idempotent: never retried after a stall
    // The rerun completes (the LFS objects are stored already).
    const res = await push(pushOpts(dir, 'org/commit-hang'));
    expect(res.lfsUploaded).toBe(0);
  });

  it('an LFS upload the server stops reading is retried', { timeout: TEST_MS }, async () => {
    const dir = await modelDir(23);
    const o = pushOpts(dir, 'org/put-hang');
    hub.inject({ method: 'PUT', path: '/lfs-upload/', fault: { kind: 'hang', readBody: false } });
    const res = await push(o);
    expect(res.lfsUploaded).toBe(2);
    expect(hub.lfsUploadsByRepo.get('org/put-hang')).toHaveLength(2);
  });

  it('a token check never answered beyond the retry budget: HUB_ERROR naming the request', { timeout: TEST_MS }, async () => {
    const dir = await modelDir(24);
    hub.inject({ method: 'GET', path: '/api/whoami-v2', times: 5, fault: { kind: 'hang' } });
    const err = await expectError(push(pushOpts(dir, 'org/whoami-hang', { retries: 1 })), 'HUB_ERROR');
    expect(err.message).toMatch(/GET \/api\/whoami-v2 timed out: no progress for 1\.5 s while waiting for the answer \(2 attempts\)/);
    expect(err.message).not.toContain(WRITE);
  });
});

describe('download: deadlines from FOPEIFY_HUB_TIMEOUT, idle timeouts on bodies', () => {
  it('model info never answered is retried (timeout from FOPEIFY_HUB_TIMEOUT)', { timeout: TEST_MS }, async () => {
    const o = await resolveOpts();
    vi.stubEnv('FOPEIFY_HUB_TIMEOUT', '1.5');
    hub.inject({ method: 'GET', path: '/api/models/org/model/revision/', fault: { kind: 'hang' } });
    const m = await resolveHubModel('org/model', o);
    expect(m.kind).toBe('hub');
    expect(o.delays).toHaveLength(1);
  });

  it('a file whose answer never comes is retried', { timeout: TEST_MS }, async () => {
    const o = await resolveOpts();
    hub.inject({ method: 'GET', path: /lfs-cdn/, fault: { kind: 'hang' } });
    const m = await resolveHubModel('org/model', { ...o, stallTimeoutMs: TIMEOUT_MS });
    expect((await readFolder(m.dir)).get('model.safetensors')).toEqual(tinyModelFiles()['model.safetensors']);
    expect(o.delays).toHaveLength(1);
  });

  it('a slow body that keeps moving is not cut, though it takes longer than the timeout', { timeout: TEST_MS }, async () => {
    const o = await resolveOpts();
    const size = tinyModelFiles()['model.safetensors'].length;
    // ~20 pieces, 150 ms apart: about 3 s in all, against a 1 s idle timeout.
    hub.inject({ method: 'GET', path: /lfs-cdn/, fault: { kind: 'slow', chunkBytes: Math.ceil(size / 20), delayMs: 150 } });
    const started = Date.now();
    const m = await resolveHubModel('org/model', { ...o, stallTimeoutMs: 1000 });
    expect(Date.now() - started).toBeGreaterThan(1000);
    expect(o.delays).toEqual([]); // no retry
    expect((await readFolder(m.dir)).get('model.safetensors')).toEqual(tinyModelFiles()['model.safetensors']);
  });

  it('a bad FOPEIFY_HUB_TIMEOUT is a typed refusal', async () => {
    const o = await resolveOpts();
    vi.stubEnv('FOPEIFY_HUB_TIMEOUT', 'soon');
    const err = await expectError(resolveHubModel('org/model', o), 'BAD_ARGUMENT');
    expect(err.message).toMatch(/FOPEIFY_HUB_TIMEOUT must be a positive number of seconds/);
  });
});
