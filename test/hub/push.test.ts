import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { resolveHubModel } from '../../src/hub/hub-model.js';
import { push, type PushOptions, type PushProgress } from '../../src/hub/push.js';
import { HubServer, sha256Hex } from './hub-server.js';
import { readFolder, recordingSleep, tinyModelFiles, tmp, writeFolder } from './fixtures.js';

const WRITE = 'hf_write_push_test_secret_0123456789AB';
const READ = 'hf_read_push_test_secret_0123456789ABC';

let hub: HubServer;
const temps: string[] = [];
async function tempDir(): Promise<string> {
  const d = await tmp();
  temps.push(d);
  return d;
}
beforeAll(async () => {
  hub = await HubServer.start({ treePageSize: 4 });
});
afterAll(async () => {
  await hub.close();
  await Promise.all(temps.map((d) => fs.rm(d, { recursive: true, force: true })));
});
afterEach(() => {
  hub.clearInjections();
  vi.unstubAllEnvs();
});

async function modelDir(opts: { sharded?: boolean; seed?: number } = {}): Promise<string> {
  const root = await tempDir();
  const dir = path.join(root, 'model');
  await writeFolder(dir, {
    ...tinyModelFiles({ sharded: opts.sharded ?? true, fope: true, seed: opts.seed }),
    'fopeify.json': JSON.stringify({ tool: 'fopeify', version: '0.1.0', command: 'convert', source: { id: 'org/base', commit: 'a'.repeat(40) } }),
  });
  return dir;
}

function pushOpts(dir: string, repo: string, extra: Partial<PushOptions> = {}): PushOptions & { delays: number[] } {
  const { sleep, delays } = recordingSleep();
  vi.stubEnv('HF_TOKEN', '');
  return { dir, repo, endpoint: hub.url, token: WRITE, sleep, delays, ...extra };
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

describe('push', () => {
  it('push → download into a fresh cache → byte-identical folder', async () => {
    const dir = await modelDir();
    const events: PushProgress[] = [];
    const res = await push({ ...pushOpts(dir, 'org/roundtrip', { private: true }), onProgress: (e) => events.push(e) });
    expect(res.created).toBe(true);
    expect(res.commitOid).toMatch(/^[0-9a-f]{40}$/);
    expect(res.commitUrl).toBe(`${hub.url}/org/roundtrip/commit/${res.commitOid}`);
    expect(res.lfsUploaded).toBe(2);
    expect(res.skippedLfs).toBe(0);
    expect(res.cardWritten).toBe(true);
    expect(hub.repos.get('org/roundtrip')?.private).toBe(true);

    const local = await readFolder(dir);
    expect(res.uploaded.sort()).toEqual([...local.keys()].sort());
    // The Hub has exactly the folder (plus the repo's .gitattributes)...
    const onHub = hub.snapshot('org/roundtrip');
    onHub.delete('.gitattributes');
    expect([...onHub.keys()].sort()).toEqual([...local.keys()].sort());
    for (const [k, v] of local) expect(onHub.get(k), k).toEqual(v);
    // ...the safetensors went through LFS, the small files inline.
    const repo = hub.repos.get('org/roundtrip')!;
    const files = repo.commits.get(res.commitOid)!.files;
    expect(files.get('model-00001-of-00002.safetensors')?.lfs).toBeDefined();
    expect(files.get('config.json')?.lfs).toBeUndefined();

    // ...and a download gives the same bytes back.
    const m = await resolveHubModel('org/roundtrip', { endpoint: hub.url, token: READ, cacheDir: path.join(await tempDir(), 'hub') });
    expect(m.commit).toBe(res.commitOid);
    const back = await readFolder(m.dir);
    expect([...back.keys()].sort()).toEqual([...local.keys()].sort());
    for (const [k, v] of back) expect(v, k).toEqual(local.get(k));

    // Progress: every uploaded file reached 1, and the push ended with `done`.
    for (const f of res.uploaded) expect(events.some((e) => e.phase === 'uploading' && e.file === f && e.progress === 1), f).toBe(true);
    expect(events.at(-1)).toMatchObject({ phase: 'done', filesDone: res.uploaded.length, filesTotal: res.uploaded.length });
  });

  it('pushing the same folder again uploads no LFS object and makes no commit', async () => {
    const dir = await modelDir();
    const first = await push(pushOpts(dir, 'org/again'));
    const puts = hub.count('PUT', /^\/lfs-upload\//);
    const commits = hub.count('POST', /\/commit\//);
    const second = await push(pushOpts(dir, 'org/again'));
    expect(second.created).toBe(false); // 409 on create, handled
    expect(second.uploaded).toEqual([]);
    expect(second.lfsUploaded).toBe(0);
    expect(second.skippedLfs).toBe(2);
    expect(second.commitOid).toBe(first.commitOid);
    expect(hub.count('PUT', /^\/lfs-upload\//)).toBe(puts);
    expect(hub.count('POST', /\/commit\//)).toBe(commits);

    // One small change: only that file is committed, no LFS upload.
    await fs.writeFile(path.join(dir, 'generation_config.json'), '{"bos_token_id": 1, "eos_token_id": 3}\n');
    const third = await push(pushOpts(dir, 'org/again'));
    expect(third.uploaded).toEqual(['generation_config.json']);
    expect(third.lfsUploaded).toBe(0);
    expect(hub.count('PUT', /^\/lfs-upload\//)).toBe(puts);
    expect(hub.snapshot('org/again').get('generation_config.json')?.toString()).toContain('"eos_token_id": 3');
  });

  it('a push interrupted at the commit completes on rerun without uploading LFS objects twice', async () => {
    const dir = await modelDir({ seed: 5 });
    hub.inject({ method: 'POST', path: '/api/models/org/interrupted/commit/', fault: { kind: 'status', status: 500 } });
    const err = await expectError(push(pushOpts(dir, 'org/interrupted')), 'HUB_ERROR');
    expect(err.message).toMatch(/500/);
    expect(err.message).toMatch(/run the same push again/);
    const shardOids = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'].map((f) => sha256Hex(tinyModelFiles({ sharded: true, seed: 5 })[f]));
    expect(hub.lfsUploads.filter((o) => shardOids.includes(o)).sort()).toEqual([...shardOids].sort());

    const before = hub.lfsUploads.length;
    const res = await push(pushOpts(dir, 'org/interrupted'));
    expect(hub.lfsUploads.length).toBe(before); // nothing sent twice
    expect(res.lfsUploaded).toBe(0);
    expect(res.skippedLfs).toBe(2);
    expect(hub.snapshot('org/interrupted').get('model-00002-of-00002.safetensors')).toEqual(await fs.readFile(path.join(dir, 'model-00002-of-00002.safetensors')));
  });

  it('a push interrupted during the LFS uploads resumes with only the missing objects', async () => {
    const dir = await modelDir({ seed: 9 });
    hub.inject({ method: 'PUT', path: '/lfs-upload/', times: 1, fault: { kind: 'reset' } });
    await expectError(push(pushOpts(dir, 'org/interrupted2', { retries: 0 })), 'HUB_ERROR');
    const res = await push(pushOpts(dir, 'org/interrupted2'));
    const oids = hub.lfsUploadsByRepo.get('org/interrupted2') ?? [];
    expect(oids).toHaveLength(2); // each object exactly once, over both runs
    expect(res.lfsUploaded + res.skippedLfs).toBe(2);
    expect(hub.snapshot('org/interrupted2').has('model-00001-of-00002.safetensors')).toBe(true);
  });

  it('429 with Retry-After, 5xx and connection resets are retried', async () => {
    const dir = await modelDir({ seed: 11 });
    const o = pushOpts(dir, 'org/flaky');
    hub.inject({ path: '/preupload/', fault: { kind: 'status', status: 429, headers: { 'Retry-After': '2' } } });
    hub.inject({ path: '.git/info/lfs/objects/batch', fault: { kind: 'status', status: 503 } });
    hub.inject({ method: 'PUT', path: '/lfs-upload/', fault: { kind: 'reset' } });
    hub.inject({ method: 'POST', path: '/commit/', fault: { kind: 'status', status: 429, headers: { 'Retry-After': '1' } } });
    hub.inject({ method: 'POST', path: '.git/info/lfs/objects/batch', fault: { kind: 'hangup', afterBytes: 20 } });
    const res = await push(o);
    expect(res.uploaded.length).toBeGreaterThan(0);
    expect(o.delays).toContain(2000);
    expect(o.delays).toContain(1000);
    expect(o.delays.length).toBe(5);
    expect(hub.lfsUploadsByRepo.get('org/flaky')).toHaveLength(2);
  });

  it('a branch and a pull request', async () => {
    const dir = await modelDir({ seed: 13 });
    await push(pushOpts(dir, 'org/branched'));
    await fs.writeFile(path.join(dir, 'tokenizer_config.json'), '{"model_max_length": 128}\n');
    const onBranch = await push(pushOpts(dir, 'org/branched', { revision: 'dev', message: 'longer context' }));
    expect(onBranch.uploaded).toEqual(['tokenizer_config.json']);
    expect(hub.snapshot('org/branched', 'dev').get('tokenizer_config.json')?.toString()).toContain('128');
    expect(hub.snapshot('org/branched', 'main').get('tokenizer_config.json')?.toString()).toContain('64');
    expect(hub.repos.get('org/branched')!.commits.get(onBranch.commitOid)!.title).toBe('longer context');
    const pr = await push(pushOpts(dir, 'org/branched', { createPr: true }));
    expect(pr.pullRequestUrl).toBe(`${hub.url}/org/branched/discussions/1`);
    expect(hub.snapshot('org/branched', 'main').get('tokenizer_config.json')?.toString()).toContain('64');
  });

  it('refuses a folder that is not a model folder unless forced', async () => {
    const dir = await tempDir();
    await writeFolder(dir, { 'notes.txt': 'hello' });
    const before = hub.requests.length;
    const err = await expectError(push(pushOpts(dir, 'org/notes')), 'BAD_ARGUMENT');
    expect(err.message).toMatch(/not a model folder.*config\.json.*`force`/);
    expect(err.options).toEqual(['force']);
    expect(hub.requests.length).toBe(before);
    const pickle = await tempDir();
    await writeFolder(pickle, { 'config.json': '{}', 'pytorch_model.bin': 'x' });
    expect((await expectError(push(pushOpts(pickle, 'org/notes')), 'BAD_ARGUMENT')).message).toMatch(/pickle/);
    const forced = await push(pushOpts(dir, 'org/notes', { force: true, card: false }));
    expect(forced.uploaded).toEqual(['notes.txt']);
    await expectError(push(pushOpts(dir, 'not-a-repo-id', { force: true })), 'BAD_ARGUMENT');
  });

  it('read-only, invalid and missing tokens are HUB_AUTH; the token never shows', async () => {
    const dir = await modelDir({ seed: 17 });
    const chunks: string[] = [];
    const spies = [
      vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => (chunks.push(String(c)), true)),
      vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => (chunks.push(String(c)), true)),
      ...(['log', 'info', 'debug', 'warn', 'error'] as const).map((k) => vi.spyOn(console, k).mockImplementation((...a: unknown[]) => void chunks.push(a.join(' ')))),
    ];
    try {
      const ro = await expectError(push(pushOpts(dir, 'org/authz', { token: READ })), 'HUB_AUTH');
      expect(ro.message).toMatch(/read-only/);
      expect(ro.message).toContain('org/authz');
      expect(ro.message).not.toContain(READ);
      const bad = 'hf_thisTokenIsWrong_0123456789abcdefgh';
      const inv = await expectError(push(pushOpts(dir, 'org/authz', { token: bad })), 'HUB_AUTH');
      expect(inv.message).toMatch(/invalid|expired/);
      expect(inv.message).not.toContain(bad);
      const none = await expectError(push(pushOpts(dir, 'org/authz', { token: undefined })), 'HUB_AUTH');
      expect(none.message).toMatch(/needs a write token/);
      expect(chunks.join('\n')).not.toContain(READ);
      expect(chunks.join('\n')).not.toContain(bad);
    } finally {
      spies.forEach((s) => s.mockRestore());
    }
    expect(hub.repos.has('org/authz')).toBe(false);
  });

  it('writes a model card from fopeify.json, the config and eval reports, keeping the user’s text', async () => {
    const dir = await modelDir({ seed: 19 });
    await writeFolder(dir, {
      'README.md': '---\nlicense: apache-2.0\ntags:\n- mine\n---\n\n# My model\n\nMy own notes.\n',
      'eval/ppl.json': JSON.stringify({ windows: [128, 256], results: [{ model: 'org/carded', window: 128, ppl: 12.5 }, { model: 'org/carded', window: 256, ppl: 13.25 }, { model: 'org/base', window: 256, ppl: 40 }] }),
    });
    await writeFolder(path.join(dir, '..', 'report'), {
      'summary.json': JSON.stringify({ task: 'passkey', lengths: [128, 256], results: [{ model: 'model', context_length: 128, accuracy: 1, trials: 20 }, { model: 'org/base', context_length: 128, accuracy: 0.5, trials: 20 }] }),
    });
    const res = await push(pushOpts(dir, 'org/carded'));
    expect(res.uploaded).toContain('README.md');
    const card = (await fs.readFile(path.join(dir, 'README.md'), 'utf8'));
    expect(hub.snapshot('org/carded').get('README.md')?.toString()).toBe(card);
    expect(card).toMatch(/^---\nbase_model: org\/base\nlibrary_name: transformers\ntags:\n- fope\n- fopeify\n- mine\n/);
    expect(card).toContain('license: apache-2.0');
    expect(card).toContain('My own notes.');
    expect(card).toContain('# My model');
    expect(card).not.toContain('# FoPE conversion');
    expect(card.indexOf('My own notes.')).toBeLessThan(card.indexOf('<!-- fopeify:begin'));
    expect(card).toMatch(/model-index:\n- name: org\/carded\n/);
    expect(card).toMatch(/type: passkey[\s\S]*name: "accuracy at 128 tokens \(20 trials\)"\n\s+value: 1\n/);
    expect(card).toMatch(/type: perplexity\n\s+name: "?perplexity at 256 tokens"?\n\s+value: 13.25/);
    // a second push leaves the card (and so the repo) unchanged
    const again = await push(pushOpts(dir, 'org/carded'));
    expect(again.cardWritten).toBe(false);
    expect(again.uploaded).toEqual([]);
  });
});

describe.runIf(process.platform !== 'win32')('push uploads only the model’s own files', () => {
  async function secret(): Promise<string> {
    const file = path.join(await tempDir(), 'id_key');
    await fs.writeFile(file, 'SECRET-KEY-MATERIAL-0987654321\n');
    return file;
  }
  function hubHolds(repo: string, text: string): boolean {
    return [...hub.snapshot(repo).values()].some((b) => b.toString('latin1').includes(text));
  }

  it('skips an unrelated link out of the folder, a dangling link, a loop, a FIFO and a linked folder', { timeout: 30_000 }, async () => {
    const dir = await modelDir({ seed: 23 });
    const key = await secret();
    await fs.symlink(key, path.join(dir, 'notes.txt'));
    await fs.symlink(path.dirname(key), path.join(dir, 'keys'));
    await fs.symlink('nowhere', path.join(dir, 'dangling.txt'));
    await fs.symlink('loop', path.join(dir, 'loop'));
    execFileSync('mkfifo', [path.join(dir, 'foo')]);
    const res = await push(pushOpts(dir, 'org/no-leak'));
    for (const n of ['notes.txt', 'keys/id_key', 'dangling.txt', 'loop', 'foo']) expect(res.uploaded).not.toContain(n);
    expect(res.uploaded).toContain('config.json');
    expect(hubHolds('org/no-leak', 'SECRET-KEY-MATERIAL')).toBe(false);
  });

  it('refuses a model file linked out of the folder, before anything reaches the Hub', async () => {
    const dir = await modelDir({ seed: 29 });
    const key = await secret();
    await fs.rm(path.join(dir, 'tokenizer_config.json'), { force: true });
    await fs.symlink(key, path.join(dir, 'tokenizer_config.json'));
    const before = hub.requests.length;
    const err = await expectError(push(pushOpts(dir, 'org/refused')), 'UNSAFE_PATH');
    expect(err.message).toMatch(/tokenizer_config\.json: it is a symlink to .*outside the model folder/);
    expect(hub.requests.length).toBe(before);
    expect(hub.repos.has('org/refused')).toBe(false);
  });

  it('refuses a README.md linked out of the folder instead of reading it into the card', async () => {
    const dir = await modelDir({ seed: 31 });
    const key = await secret();
    await fs.symlink(key, path.join(dir, 'README.md'));
    await expectError(push(pushOpts(dir, 'org/card-leak')), 'UNSAFE_PATH');
    expect(await fs.readFile(key, 'utf8')).toBe('SECRET-KEY-MATERIAL-0987654321\n'); // untouched
    expect(hub.repos.has('org/card-leak')).toBe(false);
  });
});
