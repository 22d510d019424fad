/**
 * Three real processes download the same model into one HF cache at once (issue 18 (e): two did, and left
 * blobs of the wrong size and sha256). The server sends bodies slowly so the downloads overlap. Every
 * process must succeed or fail with a typed one-line error, and afterwards every blob in the cache must
 * hash to its name and every snapshot file must read back as the Hub's bytes.
 *
 * The children run the library from dist/ (built by test/global-setup.ts), as the CLI does.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitBlobSha1, HubServer, sha256Hex } from './hub-server.js';
import { listTree, tinyModelFiles, tmp } from './fixtures.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const SCRIPT = `
import { resolveHubModel } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/hub/hub-model.js')).href)};
const [endpoint, cacheDir, repo] = process.argv.slice(2);
try {
  const m = await resolveHubModel(repo, { endpoint, cacheDir, retries: 2 });
  process.stdout.write(JSON.stringify({ dir: m.dir }));
} catch (err) {
  const typed = err && err.name === 'FopeifyError';
  process.stderr.write(typed ? err.code + ': ' + err.message : 'UNTYPED ' + (err && err.stack ? err.stack : String(err)));
  process.exit(typed ? 1 : 99);
}
`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runChild(script: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Deterministic bytes that do not compress or repeat (so a misplaced chunk changes the hash). */
function noise(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let block = Buffer.alloc(0);
  for (let i = 0, k = 0; i < n; i++) {
    if (i % 32 === 0) block = createHash('sha256').update(`${seed}:${k++}`).digest();
    out[i] = block[i % 32];
  }
  return out;
}

/** Every blob hashes to its name; nothing half-written is left. */
async function verifyBlobs(blobsDir: string): Promise<string[]> {
  const names = await fs.readdir(blobsDir);
  for (const name of names) {
    const data = await fs.readFile(path.join(blobsDir, name));
    if (/^[0-9a-f]{64}$/.test(name)) expect(sha256Hex(data), `blob ${name}`).toBe(name);
    else if (/^[0-9a-f]{40}$/.test(name)) expect(gitBlobSha1(data), `blob ${name}`).toBe(name);
    else throw new Error(`unexpected file in blobs/: ${name}`);
  }
  return names;
}

describe('three processes download one model into one cache at once', () => {
  let hub: HubServer;
  let root: string;
  let script: string;
  const files = {
    ...tinyModelFiles(),
    // Big enough that, sent slowly, three downloads overlap; an LFS file (sha256) and a regular one (git sha1).
    'model.safetensors': noise(1_200_000, 1),
    'tokenizer.json': noise(300_000, 2).toString('base64'),
  };
  beforeAll(async () => {
    hub = await HubServer.start({ treePageSize: 3 });
    root = await tmp();
    script = path.join(root, 'download.mjs');
    await fs.writeFile(script, SCRIPT);
  });
  afterAll(async () => {
    await hub.close();
    await fs.rm(root, { recursive: true, force: true });
  });

  for (const mechanism of ['flock', 'file'] as const) {
    it(`all succeed and the cache verifies afterwards (${mechanism} locks)`, async () => {
      const repo = `org/big-${mechanism}`;
      const commit = hub.seedRepo(repo, files);
      hub.inject({ path: /lfs-cdn|\/resolve\//, times: 1000, fault: { kind: 'slow', chunkBytes: 32 * 1024, delayMs: 25 } });
      const cache = path.join(root, `cache-${mechanism}`);
      const env = { HF_TOKEN: '', HF_HOME: path.join(root, 'home'), HF_HUB_OFFLINE: '', FOPEIFY_HUB_LOCK: mechanism };
      const runs = await Promise.all([0, 1, 2].map(() => runChild(script, [hub.url, cache, repo], env)));
      hub.clearInjections();

      for (const r of runs) {
        // Clean failure would be a typed one-line message; here every process must in fact succeed.
        expect(r.stderr, 'no untyped error').not.toMatch(/UNTYPED/);
        expect(r.code, r.stderr).toBe(0);
      }
      const storage = path.join(cache, `models--${repo.replace('/', '--')}`);
      const dirs = runs.map((r) => (JSON.parse(r.stdout) as { dir: string }).dir);
      expect(new Set(dirs)).toEqual(new Set([path.join(storage, 'snapshots', commit)]));

      const blobs = await verifyBlobs(path.join(storage, 'blobs'));
      expect(blobs).toContain(sha256Hex(files['model.safetensors']));
      // Each snapshot file resolves to the Hub's bytes.
      for (const [name, data] of Object.entries(files)) {
        const got = await fs.readFile(path.join(dirs[0], name));
        expect(got.equals(Buffer.isBuffer(data) ? data : Buffer.from(data)), name).toBe(true);
      }
      // Nothing but links in the snapshot (no temp names left behind).
      expect((await listTree(dirs[0])).sort()).toEqual(Object.keys(files).sort());
      // Each big file was fetched once: the other processes waited on its lock, then found the blob.
      const bigFetches = hub.requests.filter((q) => q.path.includes(`/${repo}/`) && q.path.endsWith(`/${sha256Hex(files['model.safetensors'])}`) && q.method === 'GET');
      expect(bigFetches).toHaveLength(1);
      if (mechanism === 'flock') {
        // huggingface_hub's lock files, where Python looks for them.
        const locks = await fs.readdir(path.join(cache, '.locks', `models--${repo.replace('/', '--')}`));
        expect(locks).toContain(`${sha256Hex(files['model.safetensors'])}.lock`);
      }
    });
  }
});
