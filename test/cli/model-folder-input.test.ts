/** The CLI on model folders holding things fopeify must not read: one clear line, never a hang or a leak. */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture, tempDir } from '../helpers.js';
import { expectCleanFailure, runCli } from './cli-helpers.js';

const root = tempDir();

describe.runIf(process.platform !== 'win32')('model folders with special files and links out', () => {
  it('a FIFO config.json: inspect fails at once with one line', async () => {
    const a = await fixture(root);
    await fs.rm(path.join(a, 'config.json'));
    execFileSync('mkfifo', [path.join(a, 'config.json')]);
    expectCleanFailure(runCli(['inspect', a]), /config\.json is a FIFO, not a regular file/);
  });

  it('a tokenizer linked to a key outside the folder: convert refuses and writes nothing', async () => {
    const a = await fixture(root);
    const key = path.join(root, 'id_key');
    await fs.writeFile(key, 'SECRET');
    await fs.rm(path.join(a, 'tokenizer.json'));
    await fs.symlink(key, path.join(a, 'tokenizer.json'));
    const out = path.join(root, 'out-leak');
    expectCleanFailure(runCli(['convert', a, '-o', out]), /tokenizer\.json is a symlink to .*outside the model folder/);
    await expect(fs.stat(out)).rejects.toThrow();
  });

  it('a dangling link and a loop next to the model do not stop inspect', async () => {
    const a = await fixture(root);
    await fs.symlink('missing.txt', path.join(a, 'notes.txt'));
    await fs.symlink('loop', path.join(a, 'loop'));
    const r = runCli(['inspect', a]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});
