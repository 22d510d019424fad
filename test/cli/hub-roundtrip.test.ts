import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubServer } from '../hub/hub-server.js';
import { fixture, tempDir } from '../helpers.js';
import { expectCleanFailure, runCli, runCliAsync } from './cli-helpers.js';

const root = tempDir();
const WRITE = 'hf_write_cli_roundtrip_secret_0123456789';
let hub: HubServer;

beforeAll(async () => {
  hub = await HubServer.start();
});
afterAll(async () => {
  await hub.close();
});

describe('CLI: convert → push → convert from the Hub id', () => {
  it('round-trips through a Hub-protocol server and the HF cache', async () => {
    const src = await fixture(root, { kind: 'qwen2', dtype: 'BF16' });
    const fope = path.join(root, 'fope');
    expect(runCli(['convert', src, '-o', fope]).code).toBe(0);
    const env = { HF_HUB_OFFLINE: '', HF_ENDPOINT: hub.url, HF_TOKEN: WRITE, HF_HUB_CACHE: path.join(root, 'cache') };
    const pushed = await runCliAsync(['push', fope, 'tester/tiny-fope', '--json'], env);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(JSON.parse(pushed.stdout).commitUrl).toMatch(/tester\/tiny-fope/);
    expect(pushed.stdout + pushed.stderr).not.toContain(WRITE);

    // inspect downloads into the cache; a second inspect works offline from it.
    const online = await runCliAsync(['inspect', 'tester/tiny-fope', '--json'], env);
    expect(online.code, online.stderr).toBe(0);
    expect(JSON.parse(online.stdout).fope.k).toBeGreaterThan(0);
    const offline = await runCliAsync(['inspect', 'tester/tiny-fope', '--json'], { ...env, HF_HUB_OFFLINE: '1', HF_ENDPOINT: 'http://127.0.0.1:9' });
    expect(offline.code, offline.stderr).toBe(0);
    const snapshots = path.join(root, 'cache', 'models--tester--tiny-fope', 'snapshots');
    const [commit] = await fs.readdir(snapshots);
    const cached = path.join(snapshots, commit!);
    for (const f of ['config.json', 'model-00001-of-00001.safetensors', 'fope_coefficients.safetensors', 'modeling_fope.py']) {
      expect(Buffer.compare(await fs.readFile(path.join(cached, f)), await fs.readFile(path.join(fope, f)))).toBe(0);
    }
  });

  it('a wrong token fails cleanly and is never echoed', async () => {
    const src = await fixture(root, { kind: 'llama' });
    const bad = 'hf_totallywrongtoken_abcdef123456';
    const r = await runCliAsync(['push', src, 'tester/other', '--token', bad], { HF_HUB_OFFLINE: '', HF_ENDPOINT: hub.url });
    expectCleanFailure(r, /tester\/other/);
    expect(r.stdout + r.stderr).not.toContain(bad);
  });
});
