import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { expectCleanFailure, runCli } from './cli-helpers.js';

const root = tempDir();
// The shipped tiny model (trained at 256 tokens) with a budget of seconds: one step, one trial.
const tiny = ['--variants', 'yarn,fope-yarn', '--seeds', '2', '--steps', '1', '--batch', '1', '--lengths', '256,512', '--depths', '0', '--trials', '1', '--windows', '256,512', '--max-windows', '1'];
const readJson = async (...p: string[]) => JSON.parse(await fs.readFile(path.join(...p), 'utf8'));

describe('fopeify study (CLI)', () => {
  it('runs a miniature study on the shipped model, writes study.json + report.html, and resumes', { timeout: 300_000 }, async () => {
    const out = path.join(root, 'study');
    const first = runCli(['study', ...tiny, '--out', out]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/passkey accuracy, mean over 2 seeds \[95 % t-interval\]/);
    expect(first.stdout).toMatch(/variant\s+256\*\s+512\s+Avg\s+eff\. length \(≥80%\)/);
    expect(first.stdout).toMatch(/^YaRN\s/m);
    expect(first.stdout).toMatch(/^FoPE\+YaRN\s/m);
    expect(first.stdout).toMatch(/Mean passkey accuracy beyond the training length \(256 tokens; at 512\), mean of 2 seeds/);
    expect(first.stdout).toMatch(/4 of 4 cells run now, the others found finished; the cells took [\d.]+ min in all/);
    const json = await readJson(out, 'study.json');
    expect(json.commands).toHaveLength(1);
    expect(json.commands[0]).toMatch(/^fopeify study --variants yarn,fope-yarn --seeds 2 /);
    expect(json.cells).toHaveLength(4);
    expect(json.aggregate.accuracy.filter((a: { n: number }) => a.n === 2)).toHaveLength(4);
    expect(json.verdict).toBe(json.aggregate.verdict.text);
    const html = await fs.readFile(path.join(out, 'report.html'), 'utf8');
    expect(html).toContain('Passkey accuracy (RULER-style)');
    expect(html).toContain('Student-t');
    // The seed changes the coefficient init.
    const optionsOf = async (s: number) => (await readJson(out, 'cells', 'fope-yarn', `seed-${s}`, 'converted', 'fopeify.json')).options;
    expect([(await optionsOf(0)).seed, (await optionsOf(1)).seed]).toEqual([0, 1]);
    expect(await optionsOf(0)).toMatchObject({ init_factor: 0.1, yarn: 2 }); // the default gain

    // A rerun skips the finished cells and records its command too.
    const again = runCli(['study', ...tiny, '--out', out, '--json']);
    expect(again.code, again.stderr).toBe(0);
    const r = JSON.parse(again.stdout);
    expect(r.ranCells).toEqual([]);
    expect(r.cellSeconds).toBeGreaterThan(0);
    expect(r.cells).toHaveLength(4);
    expect(r.aggregate.accuracy).toEqual(json.aggregate.accuracy);
    expect((await readJson(out, 'study.json')).commands).toHaveLength(2);
  });

  it('refuses bad arguments with one line', () => {
    expectCleanFailure(runCli(['study', '--variants', 'alibi', '--out', path.join(root, 'x')]), /unknown variant "alibi"/);
    expectCleanFailure(runCli(['study', '--lengths', '256,abc', '--out', path.join(root, 'y')]), /--lengths must be a comma-separated list of integers/);
    // The output rules: never inside the model being read.
    expectCleanFailure(runCli(['study', '--out', path.resolve(__dirname, '../../fixtures/tiny-rope-256/study')]), /inside the model folder being read/);
  });
});
