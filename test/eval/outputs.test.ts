/**
 * needle's outputs (issue 18): repairing a torn results.jsonl never loses good records, whatever moment a
 * kill lands; a full disk while writing the report is a typed error and leaves no half-written heatmap;
 * the output folder follows the same rules as every command's.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readRecords, runNeedle, type NeedleRecord } from '../../src/eval/index.js';
import { decodePng } from '../plot/png-decode.js';
import { tempDir } from '../helpers.js';
import { simulateFullDisk, simulateKillWhileRewriting } from '../io/faults.js';
import { oracleLoader } from './fakes.js';

const root = tempDir('fopeify-needle-out-');
let n = 0;
const outDir = () => path.join(root, `run-${n++}`);
let restore: (() => void) | undefined;
afterEach(() => {
  restore?.();
  restore = undefined;
});

function record(i: number): NeedleRecord {
  return {
    model: 'A', context_length: 512, depth: (i % 5) / 4, trial: i, key: 10000 + i, response: ` ${10000 + i}.`, correct: true,
    seconds: 0.01, task: 'passkey', mode: 'generate', seed: 0, prompt_tokens: 512, depth_actual: 0.5,
  };
}

const lines = (count: number) => Array.from({ length: count }, (_, i) => JSON.stringify(record(i)) + '\n').join('');

/** Records a reader finds in the file as it is on disk (no repair). */
async function recordsOnDisk(file: string): Promise<number> {
  const text = await fs.readFile(file, 'utf8');
  return text.split('\n').filter((l) => {
    try {
      return typeof JSON.parse(l).key === 'number';
    } catch {
      return false;
    }
  }).length;
}

describe('results.jsonl repair is crash-safe', () => {
  it('a kill while repairing a torn last line loses no good record', async () => {
    const file = path.join(outDir(), 'results.jsonl');
    await fs.mkdir(path.dirname(file));
    await fs.writeFile(file, lines(3000) + JSON.stringify(record(3000)).slice(0, 40));
    restore = simulateKillWhileRewriting(file);
    await readRecords(file).catch(() => undefined); // the "kill" lands wherever the repair rewrites in place
    restore();
    expect(await recordsOnDisk(file)).toBe(3000);
    // And without a kill: the torn bytes are gone, every record is there, appends start on a fresh line.
    expect(await readRecords(file)).toHaveLength(3000);
    expect((await fs.readFile(file, 'utf8')).endsWith('}\n')).toBe(true);
  });

  it('a kill while dropping a bad line in the middle loses no good record', async () => {
    const file = path.join(outDir(), 'results.jsonl');
    await fs.mkdir(path.dirname(file));
    await fs.writeFile(file, lines(100) + '{"torn\n' + lines(100));
    restore = simulateKillWhileRewriting(file);
    await readRecords(file).catch(() => undefined);
    restore();
    expect(await recordsOnDisk(file)).toBe(200);
    expect(await readRecords(file)).toHaveLength(200);
    expect(await fs.readFile(file, 'utf8')).not.toMatch(/torn/);
    expect((await fs.readdir(path.dirname(file))).filter((x) => x.includes('fopeify-tmp'))).toEqual([]);
  });

  it('a complete last record without its newline is kept', async () => {
    const file = path.join(outDir(), 'results.jsonl');
    await fs.mkdir(path.dirname(file));
    await fs.writeFile(file, lines(2).trimEnd());
    expect(await readRecords(file)).toHaveLength(2);
    expect(await fs.readFile(file, 'utf8')).toBe(lines(2));
  });
});

describe('needle report writing', () => {
  it('a full disk while writing a heatmap: typed error, no half-written PNG, results kept', async () => {
    const out = outDir();
    const opts = { models: ['A', 'B'], out, lengths: [300], depths: [0, 1], trials: 1, seed: 1 };
    await runNeedle({ ...opts, loader: oracleLoader() });
    const before = await fs.readFile(path.join(out, 'heatmap-A.png'));
    await fs.rm(path.join(out, 'results.jsonl'));
    restore = simulateFullDisk((f) => path.basename(f).includes('heatmap-B.png'));
    await expect(runNeedle({ ...opts, seed: 1, loader: oracleLoader() })).rejects.toMatchObject({ code: 'DISK_FULL', message: expect.stringMatching(/no space left/) });
    restore();
    const names = await fs.readdir(out);
    expect(names.filter((x) => x.includes('fopeify-tmp'))).toEqual([]);
    for (const png of names.filter((x) => x.endsWith('.png'))) expect(() => decodePng(require('node:fs').readFileSync(path.join(out, png))), png).not.toThrow();
    expect(Buffer.compare(await fs.readFile(path.join(out, 'heatmap-A.png')), before)).toBe(0);
    expect((await fs.readFile(path.join(out, 'results.jsonl'), 'utf8')).trim().split('\n')).toHaveLength(4);
  });

  it('a full disk while appending a record: typed error, no torn line', async () => {
    const out = outDir();
    restore = simulateFullDisk((f) => f.endsWith('results.jsonl'));
    await expect(runNeedle({ models: ['A'], out, lengths: [300], depths: [0], trials: 1, loader: oracleLoader() })).rejects.toMatchObject({ code: 'DISK_FULL' });
    restore();
    expect(await fs.readFile(path.join(out, 'results.jsonl'), 'utf8')).toBe('');
  });

  it('refuses an --out inside or around a model folder it reads', async () => {
    const dir = outDir();
    const model = path.join(dir, 'model');
    await fs.mkdir(model, { recursive: true });
    const base = { lengths: [300], depths: [0], trials: 1, loader: oracleLoader() };
    await expect(runNeedle({ ...base, models: [model], out: path.join(model, 'report') })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(runNeedle({ ...base, models: [model], out: dir })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    expect(await fs.readdir(model)).toEqual([]);
  });

  it('removes temporaries a killed run left in the folder, not a live one\'s', async () => {
    const out = outDir();
    await fs.mkdir(out);
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    const stale = `.heatmap-A.png.fopeify-tmp-${dead}-1700000000000`;
    const mine = `.summary.json.fopeify-tmp-${process.ppid}-1700000000000`; // a running process
    for (const f of [stale, mine]) await fs.writeFile(path.join(out, f), 'half');
    await runNeedle({ models: ['A'], out, lengths: [300], depths: [0], trials: 1, loader: oracleLoader() });
    expect((await fs.readdir(out)).filter((x) => x.includes('fopeify-tmp'))).toEqual([mine]);
  });
});
