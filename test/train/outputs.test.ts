/**
 * finetune's outputs (issue 18): the output folder may not be, hold, or lie inside the model it reads
 * (--force would delete it); a full disk during the last copies is a typed error with a non-zero exit,
 * and nothing half-written is left in the folder.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/select.js';
import { finetune } from '../../src/train/index.js';
import { fixture, tempDir } from '../helpers.js';
import { simulateFullDisk } from '../io/faults.js';

const root = tempDir('fopeify-ft-out-');
const BIN = path.resolve(__dirname, '../../bin/fopeify.js');
const PRELOAD = pathToFileURL(path.resolve(__dirname, '../io/enospc-preload.mjs')).href;
let model: string;
let text: string;
let restore: (() => void) | undefined;
afterEach(() => {
  restore?.();
  restore = undefined;
});

beforeAll(async () => {
  await setupBackend({ backend: 'auto', quiet: true });
  model = await fixture(root, { seed: 3, shape: { maxPositionEmbeddings: 32 } });
  text = path.join(root, 'corpus.txt');
  const words = 'the cat sees a dog and the dog sees a bird while the child draws the old tree'.split(' ');
  await fs.writeFile(text, Array.from({ length: 2000 }, (_, i) => words[(i * 7) % words.length]).join(' '));
});

const tiny = { seqLen: 32, steps: 2, batch: 1, lr: 1e-3, warmupSteps: 0, evalEvery: 0, saveEvery: 0 };

describe('finetune output folder', () => {
  it('refuses --out that is the model, contains it, or is empty — even with --force — and deletes nothing', async () => {
    const parent = path.dirname(model);
    const before = (await fs.readdir(model)).sort();
    for (const out of [model, parent]) {
      await expect(finetune({ model, outDir: out, recipe: 'none', data: text, force: true, settings: tiny }), out).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    }
    // (Without --force here: on a build without the rule, '' would be the current folder, and --force would empty it.)
    await expect(finetune({ model, outDir: '', recipe: 'none', data: text, settings: tiny })).rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringMatching(/^`outDir` is empty/), options: ['outDir'] });
    expect((await fs.readdir(model)).sort()).toEqual(before);
  });

  it('a full disk while copying the tokenizer: DISK_FULL, and no partial tokenizer.json or temporary', async () => {
    const out = path.join(root, 'full');
    restore = simulateFullDisk((f) => path.basename(f).includes('tokenizer.json'));
    await expect(finetune({ model, outDir: out, recipe: 'none', data: text, settings: tiny })).rejects.toMatchObject({ code: 'DISK_FULL' });
    restore();
    const names = await fs.readdir(out);
    expect(names).not.toContain('tokenizer.json');
    expect(names).not.toContain('config.json'); // the model files appear together or not at all
    expect(names.filter((n) => n.includes('fopeify-tmp') || n.startsWith('.fopeify-final'))).toEqual([]);
  });

  it('CLI: a full disk during the last copies exits 5 with one typed line', async () => {
    const out = path.join(root, 'full-cli');
    const r = spawnSync(
      process.execPath,
      ['--import', PRELOAD, BIN, 'finetune', model, '--recipe', 'none', '--data', text, '--seq-len', '32', '--steps', '2', '--save-every', '0', '--out', out],
      { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1', FOPEIFY_DEBUG: '', FOPEIFY_TEST_ENOSPC: 'tokenizer_config.json' }, timeout: 120_000 },
    );
    expect(r.status, r.stderr).toBe(5);
    expect(r.stderr.trim().split('\n').pop()).toMatch(/^fopeify: error: no space left on the device while writing .*tokenizer_config\.json/);
    const names = await fs.readdir(out);
    expect(names).not.toContain('tokenizer_config.json');
    expect(names.filter((n) => n.includes('fopeify-tmp') || n.startsWith('.fopeify-final'))).toEqual([]);
  });

  it('a tokenizer file linked from outside the model folder is refused, never copied into the output', async () => {
    const leaky = path.join(root, 'leaky');
    await fs.cp(model, leaky, { recursive: true });
    const secret = path.join(root, 'secret-key.txt');
    await fs.writeFile(secret, 'not part of any model');
    await fs.rm(path.join(leaky, 'tokenizer_config.json'), { force: true });
    await fs.symlink(secret, path.join(leaky, 'tokenizer_config.json'));
    const out = path.join(root, 'leak-out');
    await expect(finetune({ model: leaky, outDir: out, recipe: 'none', data: text, settings: tiny })).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    const names = await fs.readdir(out).catch(() => []);
    expect(names).not.toContain('tokenizer_config.json');
  });
});
