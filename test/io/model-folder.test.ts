/**
 * Reading a model folder: links that leave it, special files in a file's place, loops and dangling links
 * are refused when the model needs the file and ignored otherwise; HF cache snapshots may link to their
 * own blobs only. Every fixture is a real folder built here (symlinks, FIFOs via mkfifo).
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModelSpec } from '../../src/config/load.js';
import { convertModel } from '../../src/convert/convert.js';
import { FopeifyError } from '../../src/errors.js';
import { resolveModel } from '../../src/hub/resolve.js';
import { jsonDepth } from '../../src/io/bounded-json.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { MAX_CONFIG_BYTES, ModelFolder } from '../../src/io/model-folder.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir('fopeify-folder-');
const posix = process.platform !== 'win32';
/** A hang on main must fail the test, not the suite. */
const QUICK = 10_000;

async function expectCode(p: Promise<unknown>, code: string): Promise<FopeifyError> {
  try {
    await p;
  } catch (err) {
    expect(err, String(err)).toBeInstanceOf(FopeifyError);
    expect((err as FopeifyError).code, (err as Error).message).toBe(code);
    return err as FopeifyError;
  }
  throw new Error(`expected ${code}, got success`);
}

/** A secret next to the model folder, as a key file would be. */
async function secretFile(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(root, 'outside-'));
  const file = path.join(dir, 'id_key');
  await fs.writeFile(file, 'SECRET-KEY-MATERIAL-1234567890\n');
  return file;
}

async function replaceWithLink(dir: string, name: string, target: string): Promise<void> {
  await fs.rm(path.join(dir, name), { recursive: true, force: true });
  await fs.symlink(target, path.join(dir, name));
}

async function replaceWithFifo(dir: string, name: string): Promise<void> {
  await fs.rm(path.join(dir, name), { force: true });
  execFileSync('mkfifo', [path.join(dir, name)]);
}

async function readAll(dir: string): Promise<string> {
  let out = '';
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out += await fs.readFile(path.join(e.parentPath, e.name), 'utf8');
  }
  return out;
}

describe.runIf(posix)('links out of the model folder', () => {
  it('convert refuses a sidecar linked to a file outside the folder and writes no output', async () => {
    const src = await fixture(root);
    const secret = await secretFile();
    await replaceWithLink(src, 'tokenizer_config.json', secret);
    const out = path.join(root, 'leak-out');
    const err = await expectCode(convertModel({ model: src, outDir: out }), 'UNSAFE_PATH');
    expect(err.message).toContain('tokenizer_config.json');
    expect(err.message).toMatch(/outside the model folder.*needs this file/);
    await expect(fs.stat(out)).rejects.toThrow(); // no output folder
  });

  it('convert ignores an unrelated outside link: not listed, not hashed, not copied', async () => {
    const src = await fixture(root);
    const secret = await secretFile();
    await fs.symlink(secret, path.join(src, 'notes.txt'));
    const out = path.join(root, 'ignore-out');
    await convertModel({ model: src, outDir: out, hash: true });
    const prov = JSON.parse(await fs.readFile(path.join(out, 'fopeify.json'), 'utf8')) as { source_files: { path: string }[] };
    expect(prov.source_files.map((f) => f.path)).not.toContain('notes.txt');
    expect(prov.source_files.map((f) => f.path)).toContain('config.json');
    expect(await readAll(out)).not.toContain('SECRET-KEY-MATERIAL');
  });

  it('config.json, a shard and tokenizer.json linked out of the folder are refused, naming the file', async () => {
    const secret = await secretFile();
    const a = await fixture(root);
    await replaceWithLink(a, 'config.json', secret);
    expect((await expectCode(loadModelSpec(a), 'UNSAFE_PATH')).message).toMatch(/config\.json is a symlink to .*id_key, outside the model folder/);
    const b = await fixture(root);
    const elsewhere = path.join(path.dirname(secret), 'model.safetensors');
    await fs.rename(path.join(b, 'model.safetensors'), elsewhere);
    await fs.symlink(elsewhere, path.join(b, 'model.safetensors'));
    expect((await expectCode(Checkpoint.open(b), 'UNSAFE_PATH')).message).toContain('model.safetensors');
    const c = await fixture(root);
    await replaceWithLink(c, 'tokenizer.json', secret);
    await expectCode(loadTokenizer(c), 'UNSAFE_PATH');
  });

  it('config.json linked to /dev/urandom is refused at once', { timeout: QUICK }, async () => {
    const dir = await fixture(root);
    await replaceWithLink(dir, 'config.json', '/dev/urandom');
    await expectCode(loadModelSpec(dir), 'UNSAFE_PATH');
    await replaceWithLink(dir, 'tokenizer.json', '/dev/zero');
    await expectCode(loadTokenizer(dir), 'UNSAFE_PATH');
  });

  it('links that stay inside the folder are followed', async () => {
    const dir = await fixture(root);
    await fs.mkdir(path.join(dir, 'real'));
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) {
      await fs.rename(path.join(dir, f), path.join(dir, 'real', f));
      await fs.symlink(path.join('real', f), path.join(dir, f));
    }
    expect((await loadModelSpec(dir)).architecture).toBeTruthy();
    const ck = await Checkpoint.open(dir);
    expect(ck.tensors.size).toBeGreaterThan(0);
    await ck.close();
    await loadTokenizer(dir);
  });
});

describe.runIf(posix)('special files in a file’s place', () => {
  it('a FIFO config.json or tokenizer.json is refused without blocking', { timeout: QUICK }, async () => {
    const dir = await fixture(root);
    await replaceWithFifo(dir, 'config.json');
    expect((await expectCode(loadModelSpec(dir), 'UNSAFE_PATH')).message).toMatch(/config\.json is a FIFO, not a regular file/);
    await replaceWithFifo(dir, 'tokenizer.json');
    await expectCode(loadTokenizer(dir), 'UNSAFE_PATH');
  });

  it('a FIFO shard or index is refused without blocking', { timeout: QUICK }, async () => {
    const dir = await fixture(root);
    await replaceWithFifo(dir, 'model.safetensors');
    await expectCode(Checkpoint.open(dir), 'UNSAFE_PATH');
    const sharded = await fixture(root, { maxShardBytes: 20000 });
    await replaceWithFifo(sharded, 'model.safetensors.index.json');
    await expectCode(Checkpoint.open(sharded), 'UNSAFE_PATH');
  });

  it('a shard that is a folder is refused with a typed error', async () => {
    const dir = await fixture(root);
    await fs.rm(path.join(dir, 'model.safetensors'));
    await fs.mkdir(path.join(dir, 'model.safetensors'));
    const err = await expectCode(Checkpoint.open(dir), 'UNSAFE_PATH');
    expect(err.message).toMatch(/model\.safetensors is a folder, not a file/);
  });

  it('a symlink-loop config.json is refused; a dangling shard link is a missing shard', async () => {
    const dir = await fixture(root);
    await replaceWithLink(dir, 'config.json', 'config.json');
    expect((await expectCode(loadModelSpec(dir), 'UNSAFE_PATH')).message).toMatch(/symlink loop/);
    const other = await fixture(root);
    await replaceWithLink(other, 'model.safetensors', 'gone.safetensors');
    await expectCode(Checkpoint.open(other), 'MISSING_SHARD');
  });

  it('an oversized config.json is refused before it is read', async () => {
    const dir = await fixture(root);
    const fh = await fs.open(path.join(dir, 'config.json'), 'r+');
    await fh.truncate(MAX_CONFIG_BYTES + 1); // sparse: no real bytes written
    await fh.close();
    expect((await expectCode(loadModelSpec(dir), 'BAD_CONFIG')).message).toMatch(/over the \d+-byte limit/);
  });
});

describe.runIf(posix)('unrelated entries are ignored', () => {
  it('a dangling link, a symlink loop, a FIFO, a link to a folder and a subfolder do not stop resolve or convert', { timeout: 60_000 }, async () => {
    const src = await fixture(root);
    await fs.symlink('nowhere.txt', path.join(src, 'notes.txt'));
    await fs.symlink('loop', path.join(src, 'loop'));
    execFileSync('mkfifo', [path.join(src, 'foo')]);
    await fs.symlink(root, path.join(src, 'up'));
    await fs.mkdir(path.join(src, 'extra'));
    await fs.writeFile(path.join(src, 'extra', 'readme.txt'), 'hi');
    const resolved = await resolveModel(src);
    const names = resolved.files.map((f) => f.path);
    expect(names).toContain('config.json');
    expect(names).toContain('extra/readme.txt');
    for (const n of ['notes.txt', 'loop', 'foo', 'up']) expect(names).not.toContain(n);
    const { ignored } = await ModelFolder.at(src).list();
    expect(Object.fromEntries(ignored.map((e) => [e.name, e.reason]))).toEqual({
      foo: 'is a FIFO',
      loop: 'is a symlink loop',
      'notes.txt': 'is a dangling symlink',
      up: expect.stringMatching(/outside the model folder/),
    });
    await convertModel({ model: src, outDir: path.join(root, 'ignored-out') });
  });
});

describe.runIf(posix)('Hugging Face cache snapshots', () => {
  /** <cache>/models--org--name/{blobs,snapshots/<sha>} with every file of a fixture moved to a blob. */
  async function cacheSnapshot(name: string): Promise<{ storage: string; snapshot: string }> {
    const src = await fixture(root);
    const storage = path.join(root, `cache-${name}`, 'models--org--tiny');
    const snapshot = path.join(storage, 'snapshots', 'a'.repeat(40));
    await fs.mkdir(path.join(storage, 'blobs'), { recursive: true });
    await fs.mkdir(snapshot, { recursive: true });
    let i = 0;
    for (const f of await fs.readdir(src)) {
      const blob = (i++).toString(16).padStart(64, '0');
      await fs.rename(path.join(src, f), path.join(storage, 'blobs', blob));
      await fs.symlink(path.join('..', '..', 'blobs', blob), path.join(snapshot, f));
    }
    return { storage, snapshot };
  }

  it('snapshot links into the same storage’s blobs are followed', async () => {
    const { snapshot } = await cacheSnapshot('ok');
    expect((await loadModelSpec(snapshot)).architecture).toBeTruthy();
    const ck = await Checkpoint.open(snapshot);
    expect(ck.tensors.size).toBeGreaterThan(0);
    await ck.close();
    expect((await ModelFolder.at(snapshot).list()).ignored).toEqual([]);
  });

  it('a snapshot link into another repository’s blobs, or past blobs/, is refused', async () => {
    const { snapshot } = await cacheSnapshot('mine');
    const other = await cacheSnapshot('theirs');
    const foreign = path.join(other.storage, 'blobs', (0).toString(16).padStart(64, '0'));
    await replaceWithLink(snapshot, 'config.json', foreign);
    await expectCode(loadModelSpec(snapshot), 'UNSAFE_PATH');
    const secret = await secretFile();
    await replaceWithLink(snapshot, 'tokenizer.json', path.relative(snapshot, secret));
    await expectCode(loadTokenizer(snapshot), 'UNSAFE_PATH');
  });
});

describe('bounded JSON', () => {
  it('measures nesting outside strings only', () => {
    expect(jsonDepth('1')).toBe(0);
    expect(jsonDepth('{"a":[1,{"b":[]}]}')).toBe(4);
    expect(jsonDepth('{"a":"[[[[{{{{\\"[["}')).toBe(1);
    expect(jsonDepth('['.repeat(100) + ']'.repeat(100), 64)).toBe(-1);
  });
  it('a config.json nested 200,000 levels deep is a clean BAD_CONFIG, not a stack overflow in convert', async () => {
    const dir = await fixture(root);
    const config = (await fs.readFile(path.join(dir, 'config.json'), 'utf8')).trimEnd();
    const deep = '{"x":'.repeat(200_000) + '1' + '}'.repeat(200_000);
    await fs.writeFile(path.join(dir, 'config.json'), `${config.slice(0, -1)}, "notes": ${deep}}`);
    const err = await expectCode(convertModel({ model: dir, outDir: path.join(root, 'deep-out') }), 'BAD_CONFIG');
    expect(err.message).toMatch(/deeper than 64 levels/);
  });
});
