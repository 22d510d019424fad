/**
 * Cross-check with Python's huggingface_hub (optional: runs only when FOPEIFY_PY_HF names a folder on
 * PYTHONPATH that holds huggingface_hub, e.g. `pip install --target /tmp/pyhf huggingface_hub`):
 * Python reads the cache fopeify writes, fopeify reads the cache Python writes, and Python's uploader
 * works against the test Hub (which checks the server against a second real client).
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveHubModel } from '../../src/hub/hub-model.js';
import { push } from '../../src/hub/push.js';
import { HubServer } from './hub-server.js';
import { readFolder, tinyModelFiles, tmp, writeFolder } from './fixtures.js';

const PY_HF = process.env.FOPEIFY_PY_HF;
const run = promisify(execFile);

const SCRIPT = `
import json, os, sys
from huggingface_hub import HfApi, hf_hub_download, scan_cache_dir, snapshot_download
mode, repo = sys.argv[1], sys.argv[2]
if mode == 'read-cache':
    snap = snapshot_download(repo)
    hf_hub_download(repo, 'config.json')
    info = scan_cache_dir()
    print(json.dumps({'snapshot': snap, 'warnings': [str(w) for w in info.warnings], 'refs': [sorted(r.refs) for r in info.repos]}))
elif mode == 'download':
    print(json.dumps({'snapshot': snapshot_download(repo, allow_patterns=['*.json', '*.safetensors'])}))
elif mode == 'upload':
    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    print(json.dumps({'commit': api.upload_folder(repo_id=repo, folder_path=sys.argv[3]).oid}))
`;

describe.skipIf(!PY_HF)('interop with Python huggingface_hub', () => {
  let hub: HubServer;
  let root: string;
  let script: string;
  beforeAll(async () => {
    // Python follows redirects to the same host name, so LFS is served directly here.
    hub = await HubServer.start({ treePageSize: 2, lfsRedirect: false });
    root = await tmp();
    script = path.join(root, 'hf.py');
    await fs.writeFile(script, SCRIPT);
  });
  afterAll(async () => {
    await hub.close();
    await fs.rm(root, { recursive: true, force: true });
  });
  const py = async (args: string[], env: Record<string, string>): Promise<Record<string, unknown>> => {
    const { stdout } = await run('python3', [script, ...args], {
      env: { ...process.env, PYTHONPATH: PY_HF, HF_HUB_DISABLE_TELEMETRY: '1', HF_HUB_DISABLE_XET: '1', HF_TOKEN: '', ...env },
      encoding: 'utf8',
    });
    return JSON.parse(stdout) as Record<string, unknown>;
  };
  const files = tinyModelFiles({ sharded: true, fope: true });

  it('Python reads the cache fopeify wrote, offline', async () => {
    hub.seedRepo('org/py', files);
    const cache = path.join(root, 'c1');
    const m = await resolveHubModel('org/py', { endpoint: hub.url, cacheDir: cache });
    const out = await py(['read-cache', 'org/py'], { HF_HUB_OFFLINE: '1', HF_HUB_CACHE: cache });
    expect(out.snapshot).toBe(m.dir);
    expect(out.warnings).toEqual([]);
    expect(out.refs).toEqual([['main']]);
  });

  it('fopeify reads the cache Python wrote, offline', async () => {
    const cache = path.join(root, 'c2');
    await py(['download', 'org/py'], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
    const m = await resolveHubModel('org/py', { cacheDir: cache, offline: true });
    expect(m.kind).toBe('cache');
    const got = await readFolder(m.dir);
    for (const [k, v] of Object.entries(files)) expect(got.get(k), k).toEqual(v);
  });

  it('Python uploads to the test Hub; fopeify downloads it and finds nothing to push', async () => {
    const dir = path.join(root, 'up');
    await writeFolder(dir, files);
    const token = 'hf_write_python_interop_0123456789abcd';
    await py(['upload', 'org/pyup', dir], { HF_ENDPOINT: hub.url, HF_TOKEN: token });
    const m = await resolveHubModel('org/pyup', { endpoint: hub.url, cacheDir: path.join(root, 'c3') });
    const got = await readFolder(m.dir);
    for (const [k, v] of Object.entries(files)) expect(got.get(k), k).toEqual(v);
    const res = await push({ dir, repo: 'org/pyup', endpoint: hub.url, token, card: false });
    expect(res.uploaded).toEqual([]);
    expect(res.skippedLfs).toBe(2);
  });
});
