/**
 * Cache locks: the flock mechanism against Python's fcntl.flock used exactly as py-filelock's
 * UnixFileLock uses it (the lock huggingface_hub takes), and the exclusive-file fallback.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { acquireCacheLock, blobLockPath, type LockMechanism } from '../../src/hub/cache-lock.js';
import { resolveHubModel } from '../../src/hub/hub-model.js';
import { HubServer, sha256Hex } from './hub-server.js';
import { tinyModelFiles, tmp } from './fixtures.js';

const HAVE_PYTHON = spawnSync('python3', ['-c', 'import fcntl'], { stdio: 'ignore' }).status === 0;

// py-filelock's UnixFileLock: open(O_RDWR|O_CREAT|O_TRUNC), flock(LOCK_EX|LOCK_NB); huggingface_hub holds
// it while it writes blobs/<etag>.incomplete and renames it into place.
const PY = `
import fcntl, os, sys, time
mode, lock = sys.argv[1], sys.argv[2]
os.makedirs(os.path.dirname(lock), exist_ok=True)
fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
if mode == 'probe':
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print('free', flush=True)
    except BlockingIOError:
        print('busy', flush=True)
    sys.exit(0)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print('locked', flush=True)
blob, source, seconds = sys.argv[3], sys.argv[4], float(sys.argv[5])
time.sleep(seconds)
os.makedirs(os.path.dirname(blob), exist_ok=True)
with open(source, 'rb') as f, open(blob + '.incomplete', 'wb') as g:
    g.write(f.read())
os.replace(blob + '.incomplete', blob)
fcntl.flock(fd, fcntl.LOCK_UN)
os.close(fd)
`;

let root: string;
let script: string;
beforeAll(async () => {
  root = await tmp();
  script = path.join(root, 'lock.py');
  await fs.writeFile(script, PY);
});
afterAll(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

function firstLine(child: ChildProcessWithoutNullStreams): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    child.on('close', (code) => reject(new Error(`python exited ${code}: ${err}`)));
  });
}

async function probe(lock: string): Promise<string> {
  const child = spawn('python3', [script, 'probe', lock]);
  return firstLine(child);
}

describe.skipIf(!HAVE_PYTHON)('flock locks interoperate with Python (filelock’s flock on the same path)', () => {
  it('a blob Python is downloading is waited for, not fetched a second time', async () => {
    const hub = await HubServer.start();
    try {
      const files = tinyModelFiles();
      hub.seedRepo('org/shared', files);
      const cache = path.join(root, 'cache-py');
      const oid = sha256Hex(files['model.safetensors']);
      const source = path.join(root, 'weights.bin');
      await fs.writeFile(source, files['model.safetensors']);
      const storage = path.join(cache, 'models--org--shared');
      const py = spawn('python3', [script, 'hold', blobLockPath(cache, 'org/shared', oid), path.join(storage, 'blobs', oid), source, '1.0']);
      expect(await firstLine(py)).toBe('locked');
      vi.stubEnv('HF_TOKEN', '');
      vi.stubEnv('HF_HOME', root);
      vi.stubEnv('HF_HUB_OFFLINE', '');
      const m = await resolveHubModel('org/shared', { endpoint: hub.url, cacheDir: cache, lockStallMs: 20_000 });
      vi.unstubAllEnvs();
      expect(await fs.readFile(path.join(m.dir, 'model.safetensors'))).toEqual(files['model.safetensors']);
      // The weights came from Python's download: fopeify fetched the other files only.
      expect(hub.requests.filter((r) => r.path.endsWith(`/${oid}`) || r.path.endsWith('/model.safetensors'))).toEqual([]);
      expect(hub.requests.some((r) => r.path.endsWith('/config.json'))).toBe(true);
    } finally {
      await hub.close();
    }
  });

  it('Python cannot take a lock fopeify holds, and can once it is released', async () => {
    const lock = path.join(root, '.locks', 'models--org--x', `${'a'.repeat(64)}.lock`);
    const held = await acquireCacheLock(lock, { mechanism: 'flock' });
    expect(held.mechanism).toBe('flock');
    expect(await probe(lock)).toBe('busy');
    await held.release();
    expect(await probe(lock)).toBe('free');
    // The lock file stays (as filelock leaves it): deleting it would let two owners lock two inodes.
    expect((await fs.stat(lock)).isFile()).toBe(true);
  });
});

describe.each(['flock', 'file'] as LockMechanism[])('%s locks', (mechanism) => {
  const lockIn = (name: string): string => path.join(root, '.locks', `models--org--${mechanism}`, `${name}.lock`);

  it('exclude each other; the waiter gets the lock when the holder releases it', async () => {
    const lock = lockIn('order');
    const first = await acquireCacheLock(lock, { mechanism });
    const events: string[] = [];
    const second = acquireCacheLock(lock, { mechanism }).then((l) => (events.push('second'), l));
    await new Promise((r) => setTimeout(r, 400));
    events.push('release');
    await first.release();
    await (await second).release();
    expect(events).toEqual(['release', 'second']);
  });

  it('a waiter gives up, typed, when the holder makes no progress; not while it does', async () => {
    const lock = lockIn('stall');
    const progressFile = path.join(root, `${mechanism}-progress.incomplete`);
    const held = await acquireCacheLock(lock, { mechanism });
    const stalled = await acquireCacheLock(lock, { mechanism, noProgressMs: 300, progressFile, what: 'model.safetensors' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(stalled).toBeInstanceOf(FopeifyError);
    expect((stalled as FopeifyError).code).toBe('HUB_ERROR');
    expect((stalled as Error).message).toMatch(/holds the cache lock .*model\.safetensors.* no progress for 0.3 s/);

    // A holder whose .incomplete keeps growing is waited for past noProgressMs.
    const writer = setInterval(() => void fs.appendFile(progressFile, 'x'), 50);
    const waiter = acquireCacheLock(lock, { mechanism, noProgressMs: 600, progressFile });
    await new Promise((r) => setTimeout(r, 1500));
    clearInterval(writer);
    await held.release();
    await (await waiter).release();
  });
});

describe('file locks (the fallback where flock is missing)', () => {
  it('a lock left by a dead process is taken over', async () => {
    const lock = path.join(root, '.locks', 'models--org--dead', 'b.lock');
    await fs.mkdir(path.dirname(lock), { recursive: true });
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    await fs.writeFile(`${lock}.fopeify`, `${dead.stdout} ${os.hostname()}\n`);
    const l = await acquireCacheLock(lock, { mechanism: 'file', noProgressMs: 5_000 });
    expect(await fs.readFile(`${lock}.fopeify`, 'utf8')).toBe(`${process.pid} ${os.hostname()}\n`);
    await l.release();
    await expect(fs.stat(`${lock}.fopeify`)).rejects.toThrow();
  });
});
