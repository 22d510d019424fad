/**
 * Outputs never touch what they did not create (issue 18, items 1, 4, 7): the output-folder rules, temp +
 * rename for every file, folders renamed into place only when free (or with --force), typed write errors,
 * and the removal of temporaries that killed runs left.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { convertModel } from '../../src/convert/convert.js';
import { appendToFile, writeFileAtomically, writeFolderAtomically } from '../../src/io/atomic.js';
import { Checkpoint, INDEX_FILE } from '../../src/io/checkpoint.js';
import { fixture, tempDir } from '../helpers.js';
import { simulateFullDisk } from './faults.js';

const root = tempDir('fopeify-outputs-');
const BIN = path.resolve(__dirname, '../../bin/fopeify.js');
let restore: (() => void) | undefined;
afterEach(() => {
  restore?.();
  restore = undefined;
});

async function sha256s(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of (await fs.readdir(dir)).sort()) out[n] = createHash('sha256').update(await fs.readFile(path.join(dir, n))).digest('hex');
  return out;
}

const temps = async (dir: string) => (await fs.readdir(dir)).filter((n) => n.includes('fopeify-tmp'));

/** A pid that is certainly not running: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

let sub = 0;
const freshDir = async () => {
  const d = path.join(root, `case-${sub++}`);
  await fs.mkdir(d);
  return d;
};

describe('convert never writes through a source file', () => {
  it('a source shard named fope_coefficients.safetensors stays intact, and its tensors stay in the output', async () => {
    const dir = await freshDir();
    const src = await fixture(dir, { kind: 'llama', maxShardBytes: 20000 });
    // Rename the first shard to the coefficient shard's name (as a fuzzed or hand-made model may have it).
    const index = JSON.parse(await fs.readFile(path.join(src, INDEX_FILE), 'utf8'));
    const first = [...new Set(Object.values(index.weight_map) as string[])].sort()[0]!;
    await fs.rename(path.join(src, first), path.join(src, 'fope_coefficients.safetensors'));
    for (const k of Object.keys(index.weight_map)) if (index.weight_map[k] === first) index.weight_map[k] = 'fope_coefficients.safetensors';
    await fs.writeFile(path.join(src, INDEX_FILE), JSON.stringify(index));
    const before = await sha256s(src);

    const out = path.join(dir, 'out');
    const r = await convertModel({ model: src, outDir: out });
    expect(await sha256s(src)).toEqual(before); // the source is untouched
    const coefShard = r.shards.find((s) => s.action === 'written')!.file;
    expect(coefShard).not.toBe('fope_coefficients.safetensors');
    const a = await Checkpoint.open(src);
    const b = await Checkpoint.open(out);
    try {
      for (const name of a.tensors.keys()) {
        expect(Buffer.compare(Buffer.from(await a.readBytes(name)), Buffer.from(await b.readBytes(name))), name).toBe(0);
      }
      expect(b.info('model.rotary_emb.sin_coef').file).toBe(coefShard);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('writeFileAtomically replaces a hard link by a new file, leaving the linked file alone', async () => {
    const dir = await freshDir();
    await fs.writeFile(path.join(dir, 'source'), 'original');
    await fs.link(path.join(dir, 'source'), path.join(dir, 'linked'));
    await writeFileAtomically(path.join(dir, 'linked'), 'new');
    expect(await fs.readFile(path.join(dir, 'source'), 'utf8')).toBe('original');
    expect(await fs.readFile(path.join(dir, 'linked'), 'utf8')).toBe('new');
    expect(await temps(dir)).toEqual([]);
  });
});

describe('output folder rules', () => {
  it('-o "" is refused and the current folder keeps its files (CLI)', async () => {
    const dir = await freshDir();
    const src = await fixture(dir);
    const cwd = path.join(dir, 'work');
    await fs.mkdir(cwd);
    await fs.writeFile(path.join(cwd, 'thesis.tex'), 'years of work');
    const r = spawnSync(process.execPath, [BIN, 'convert', src, '-o', '', '--force'], { cwd, encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' } });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^fopeify: error: --out is empty/m);
    expect(await fs.readdir(cwd)).toEqual(['thesis.tex']);
  });

  it('refuses an output that is the source, inside it, or contains it (even with --force)', async () => {
    const dir = await freshDir();
    const parent = path.join(dir, 'parent');
    await fs.mkdir(parent);
    const src = await fixture(parent);
    await fs.writeFile(path.join(parent, 'other.txt'), 'keep');
    await fs.symlink(parent, path.join(dir, 'alias'));
    const before = await sha256s(src);
    for (const [out, why] of [
      [parent, /contains the model folder/],
      [path.join(dir, 'alias'), /contains the model folder/],
      [src, /is the model folder/],
      [path.join(src, 'sub'), /inside the model folder/],
      [path.join(dir, 'alias', path.basename(src), 'x', '..'), /is the model folder/],
    ] as const) {
      await expect(convertModel({ model: src, outDir: out, force: true }), out).rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringMatching(why) });
    }
    expect(await sha256s(src)).toEqual(before);
    expect(await fs.readFile(path.join(parent, 'other.txt'), 'utf8')).toBe('keep');
  });
});

describe('an output folder is only ever replaced by renaming a complete new one into place', () => {
  it('a file that appears in the empty output folder while convert runs is kept, and convert refuses', async () => {
    const dir = await freshDir();
    const src = await fixture(dir);
    const out = path.join(dir, 'out');
    await fs.mkdir(out);
    let dropped = false;
    const run = convertModel({
      model: src,
      outDir: out,
      onStep: (t) => {
        if (!dropped && t.startsWith('shard')) {
          dropped = true;
          require('node:fs').writeFileSync(path.join(out, 'notes.txt'), 'written meanwhile');
        }
      },
    });
    await expect(run).rejects.toMatchObject({ code: 'OUTPUT_EXISTS', message: expect.stringMatching(/written to by something else/) });
    expect(await fs.readdir(out)).toEqual(['notes.txt']);
    expect(await temps(dir)).toEqual([]);
  });

  it('of two converts into one new folder, one wins and the other refuses instead of replacing it', async () => {
    const dir = await freshDir();
    const src = await fixture(dir);
    const out = path.join(dir, 'out');
    const results = await Promise.allSettled([convertModel({ model: src, outDir: out, seed: 1 }), convertModel({ model: src, outDir: out, seed: 2 })]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toMatchObject({ code: 'OUTPUT_EXISTS' });
    const winner = results.findIndex((r) => r.status === 'fulfilled');
    const prov = JSON.parse(await fs.readFile(path.join(out, 'fopeify.json'), 'utf8'));
    expect(prov.options.seed).toBe(winner + 1); // the folder is the winner's, complete
    expect(await temps(dir)).toEqual([]);
  });
});

describe('write errors are typed and leave nothing half-written', () => {
  for (const [code, typed] of [['ENOSPC', 'DISK_FULL'], ['EDQUOT', 'DISK_FULL'], ['EACCES', 'OUTPUT_UNWRITABLE'], ['EROFS', 'OUTPUT_UNWRITABLE']] as const) {
    it(`${code} while writing a file → ${typed}, old content kept, no temporary`, async () => {
      const dir = await freshDir();
      const file = path.join(dir, 'report.html');
      await fs.writeFile(file, 'old report');
      restore = simulateFullDisk((f) => f.startsWith(dir), code);
      await expect(writeFileAtomically(file, 'x'.repeat(10000))).rejects.toMatchObject({ code: typed });
      await expect(appendToFile(file, 'more')).rejects.toMatchObject({ code: typed });
      restore();
      expect(await fs.readFile(file, 'utf8')).toBe('old report');
      expect(await temps(dir)).toEqual([]);
    });
  }

  it('ENOSPC during convert: typed, and no output or temporary folder remains', async () => {
    const dir = await freshDir();
    const src = await fixture(dir);
    const out = path.join(dir, 'out');
    restore = simulateFullDisk((f) => f.includes(`${path.sep}.out.fopeify-tmp-`) && path.basename(f).includes('README.md'));
    await expect(convertModel({ model: src, outDir: out })).rejects.toMatchObject({ code: 'DISK_FULL' });
    restore();
    await expect(fs.stat(out)).rejects.toThrow();
    expect(await temps(dir)).toEqual([]);
  });
});

describe('temporaries of killed runs', () => {
  it('the next write next to them removes those of dead processes, never a live one\'s', async () => {
    const dir = await freshDir();
    const src = await fixture(dir);
    const dead = deadPid();
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      const stale = [`.out.fopeify-tmp-${dead}-1700000000000`, `.other.fopeify-tmp-${dead}-1700000000000-old`];
      const alive = `.out.fopeify-tmp-${live.pid}-1700000000000`;
      for (const n of [...stale, alive]) {
        await fs.mkdir(path.join(dir, n));
        await fs.writeFile(path.join(dir, n, 'model.safetensors'), 'partial');
      }
      await convertModel({ model: src, outDir: path.join(dir, 'out') });
      expect(await temps(dir)).toEqual([alive]);
    } finally {
      live.kill();
    }
  });

  it('writeFolderAtomically (checkpoints) cleans its parent too', async () => {
    const dir = await freshDir();
    const stale = `.step-00000002.fopeify-tmp-${deadPid()}-1700000000000`;
    await fs.mkdir(path.join(dir, stale));
    await writeFolderAtomically(path.join(dir, 'step-00000004'), {}, async (tmp) => fs.writeFile(path.join(tmp, 'state.json'), '{}'));
    expect((await fs.readdir(dir)).sort()).toEqual(['step-00000004']);
  });
});
