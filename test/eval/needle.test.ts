import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  colorTable,
  passkeyFor,
  readRecords,
  runNeedle,
  scoreCell,
  summaryCsv,
  type NeedleRecord,
  type NeedleSummary,
} from '../../src/eval/index.js';
import { FopeifyError } from '../../src/errors.js';
import { tempDir } from '../helpers.js';
import { byteTokenizer, oracleLoader, oracleModel } from './fakes.js';

const root = tempDir('fopeify-needle-');
let n = 0;
const outDir = () => path.join(root, `run-${n++}`);
const strip = (r: NeedleRecord) => ({ ...r, seconds: 0 });

describe('runNeedle with fake models', () => {
  it('gives every model the same prompts, and keys from the cell seed', async () => {
    const loader = oracleLoader({ B: 'wrong', C: 'silent' });
    const out = outDir();
    const summary = await runNeedle({ models: ['A', 'B', 'C'], out, lengths: [300, 400], depths: [0, 0.5, 1], trials: 2, seed: 7, loader });
    const [a, b, c] = loader.loaded;
    expect(a!.prompts).toHaveLength(12);
    expect(b!.prompts).toEqual(a!.prompts);
    expect(c!.prompts).toEqual(a!.prompts);
    expect(loader.loaded.every((m) => m.disposed)).toBe(true);
    const records = await readRecords(path.join(out, 'results.jsonl'));
    expect(records).toHaveLength(36);
    for (const r of records) {
      expect(r.key).toBe(passkeyFor(7, r.context_length, r.depth, r.trial));
      expect(r.prompt_tokens).toBe(r.context_length);
      expect(r.correct).toBe(r.model === 'A');
    }
    expect(summary.results.map((r) => [r.model, r.context_length, r.accuracy, r.trials])).toEqual([
      ['A', 300, 1, 6],
      ['A', 400, 1, 6],
      ['B', 300, 0, 6],
      ['B', 400, 0, 6],
      ['C', 300, 0, 6],
      ['C', 400, 0, 6],
    ]);
  });

  it('adding models or lengths keeps the existing keys', async () => {
    const small = outDir();
    await runNeedle({ models: ['A'], out: small, lengths: [300], depths: [0.5], trials: 3, loader: oracleLoader() });
    const big = outDir();
    await runNeedle({ models: ['A', 'B'], out: big, lengths: [300, 350], depths: [0, 0.5], trials: 3, loader: oracleLoader() });
    const keysOf = async (dir: string) =>
      (await readRecords(path.join(dir, 'results.jsonl'))).filter((r) => r.model === 'A' && r.context_length === 300 && r.depth === 0.5).map((r) => r.key);
    expect(await keysOf(big)).toEqual(await keysOf(small));
  });

  it('writes summary.json in the fixed shape and the paper-style CSV', async () => {
    const out = outDir();
    await runNeedle({ models: ['A', 'B'], out, lengths: [300, 320], depths: [0, 1], trials: 2, seed: 3, mode: 'teacher-forced', loader: oracleLoader({ B: 'wrong' }) });
    const summary = JSON.parse(await fs.readFile(path.join(out, 'summary.json'), 'utf8')) as NeedleSummary;
    expect(summary).toMatchObject({ task: 'passkey', lengths: [300, 320], depths: [0, 1], trials: 2, seed: 3, mode: 'teacher-forced' });
    expect(summary.results[0]).toEqual({ model: 'A', context_length: 300, accuracy: 1, trials: 4 });
    expect(summary.cells).toHaveLength(8);
    expect(summary.cells[0]).toEqual({ model: 'A', context_length: 300, depth: 0, accuracy: 1, trials: 2 });
    expect(await fs.readFile(path.join(out, 'summary.csv'), 'utf8')).toBe('model,300,320\nA,1,1\nB,0,0\n');
    expect(summaryCsv({ ...summary, results: summary.results.map((r) => ({ ...r, model: 'a,b' })) })).toContain('"a,b"');
    const table = colorTable(summary, { color: true, depths: true });
    expect(table).toContain('\x1b[48;2;12;215;159m'); // green (#0CD79F) for 100 %
    expect(colorTable(summary)).not.toContain('\x1b[');
    expect(colorTable(summary).split('\n')[1]).toMatch(/^A\s+100%\s+100%/);
  });

  it('resumes: a rerun skips finished cells and scores only the missing ones', async () => {
    const out = outDir();
    const opts = { models: ['A', 'B'], out, lengths: [300], depths: [0, 0.5, 1], trials: 2, seed: 1 };
    const first = oracleLoader();
    await runNeedle({ ...opts, loader: first });
    const file = path.join(out, 'results.jsonl');
    const all = (await fs.readFile(file, 'utf8')).trimEnd().split('\n');
    expect(all).toHaveLength(12);

    const second = oracleLoader();
    const starts: { total: number; skipped: number }[] = [];
    const again = await runNeedle({ ...opts, loader: second, onStart: (e) => starts.push(e) });
    expect(second.loaded).toHaveLength(0); // nothing to do: no model is even loaded
    expect(starts).toEqual([{ total: 0, skipped: 12 }]);
    expect(again.results.every((r) => r.trials === 6)).toBe(true);

    // Drop three of B's records and tear the last line, as a killed run would.
    const kept = all.filter((l, i) => !(i >= 6 && i < 9));
    await fs.writeFile(file, kept.join('\n') + '\n' + kept[0]!.slice(0, 20));
    const third = oracleLoader();
    const progress: number[] = [];
    await runNeedle({ ...opts, loader: third, onProgress: (e) => progress.push(e.done), onStart: (e) => starts.push(e) });
    expect(starts[1]).toEqual({ total: 3, skipped: 9 });
    expect(third.loaded.map((m) => m.name)).toEqual(['B']);
    expect(third.loaded[0]!.calls).toBe(3);
    expect(progress).toEqual([1, 2, 3]);
    const records = await readRecords(file);
    expect(records).toHaveLength(12);
    const byKey = (rs: NeedleRecord[]) => rs.map(strip).sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
    expect(byKey(records)).toEqual(byKey(all.map((l) => JSON.parse(l) as NeedleRecord)));
  });

  it('refuses to mix runs with other settings in one folder', async () => {
    const out = outDir();
    await runNeedle({ models: ['A'], out, lengths: [300], depths: [0], trials: 1, seed: 1, loader: oracleLoader() });
    await expect(runNeedle({ models: ['A'], out, lengths: [300], depths: [0], trials: 1, seed: 2, loader: oracleLoader() })).rejects.toThrow(
      /another run.*seed 1/,
    );
    await expect(runNeedle({ models: ['A'], out, lengths: [300], depths: [0], trials: 1, seed: 1, mode: 'teacher-forced', loader: oracleLoader() })).rejects.toThrow(
      FopeifyError,
    );
  });

  it('niah: same needles for every model, haystack from text, sentence-boundary insertion', async () => {
    const loader = oracleLoader();
    const out = outDir();
    const haystackText = 'One two three. Four five six. Seven eight nine. Ten eleven twelve.';
    const s = await runNeedle({ models: ['A', 'B'], out, task: 'niah', lengths: [400], depths: [0, 0.5, 1], trials: 2, haystackText, loader });
    expect(s.results.every((r) => r.accuracy === 1)).toBe(true);
    expect(loader.loaded[1]!.prompts).toEqual(loader.loaded[0]!.prompts);
    for (const p of loader.loaded[0]!.prompts) {
      expect(p).toContain('Four five six.');
      // After a sentence end, at the start, or (depth 1, as gkamradt's harness) appended at the very end.
      expect(p).toMatch(/(^|[.!?] |\n)The special magic \w+ number is: \d{7}\.|The special magic \w+ number is: \d{7}\.\nQuestion/m);
    }
    const records = await readRecords(path.join(out, 'results.jsonl'));
    expect(records.every((r) => r.key >= 1_000_000 && r.haystack?.startsWith('sha256:'))).toBe(true);
  });

  it('models with another tokenizer get the same text, their own token counts, and a warning', async () => {
    const inner = oracleLoader();
    // "B" tokenizes two bytes per token.
    const pairs = {
      encode: (text: string) => {
        const b = byteTokenizer.encode(text);
        return Array.from({ length: Math.ceil(b.length / 2) }, (_, i) => b[2 * i]! * 256 + (b[2 * i + 1] ?? 0));
      },
    };
    const loader = {
      ...inner,
      load: async (name: string) => {
        const m = await inner.load(name);
        if (name !== 'B') return m;
        return { ...m, encode: pairs.encode, generateGreedy: (ids: number[], k: number) => m.generateGreedy(m.encode(ids.map((x) => String.fromCharCode(x >> 8, x & 255)).join('').replace(/\0$/, '')), k) };
      },
    };
    const warnings: string[] = [];
    const out = outDir();
    await runNeedle({ models: ['A', 'B'], out, lengths: [400], depths: [0.5], trials: 2, loader, onWarning: (w) => warnings.push(w) });
    expect(inner.loaded[1]!.prompts).toEqual(inner.loaded[0]!.prompts);
    const records = await readRecords(path.join(out, 'results.jsonl'));
    expect(records.filter((r) => r.model === 'A').map((r) => r.prompt_tokens)).toEqual([400, 400]);
    expect(records.filter((r) => r.model === 'B').map((r) => r.prompt_tokens)).toEqual([200, 200]);
    expect(warnings.some((w) => /B tokenizes the prompts differently from A \(200 vs 400 tokens/.test(w))).toBe(true);
  });

  it('checks its options', async () => {
    const base = { models: ['A'], out: outDir(), loader: oracleLoader() };
    await expect(runNeedle({ ...base, depths: [50] })).rejects.toThrow(/fractions/);
    await expect(runNeedle({ ...base, lengths: [0] })).rejects.toThrow(/positive/);
    await expect(runNeedle({ ...base, trials: 0 })).rejects.toThrow(/trials/);
    await expect(runNeedle({ ...base, models: ['A', 'A'] })).rejects.toThrow(/twice/);
    await expect(runNeedle({ ...base, haystack: 'x.txt' })).rejects.toThrow(/niah only/);
    await expect(runNeedle({ ...base, task: 'niah', haystack: path.join(root, 'missing.txt') })).rejects.toThrow(/cannot read/);
  });
});

describe('scoring', () => {
  const prompt = { text: 'The pass key is 31337. Remember it.\nWhat is the pass key? The pass key is', answer: ' 31337', key: 31337 };

  it('generate and teacher-forced agree on a case constructed to be right, and on a wrong one', async () => {
    for (const behaviour of ['right', 'wrong', 'silent'] as const) {
      const g = await scoreCell(oracleModel('m', behaviour), prompt, 'generate');
      const t = await scoreCell(oracleModel('m', behaviour), prompt, 'teacher-forced');
      expect(g.correct).toBe(behaviour === 'right');
      expect(t.correct).toBe(g.correct);
    }
    const g = await scoreCell(oracleModel('m'), prompt, 'generate');
    expect(g.response).toBe(' 31337.');
    const t = await scoreCell(oracleModel('m'), prompt, 'teacher-forced');
    expect(t.response).toBe(' 31337');
    expect(t.promptTokens).toBe(byteTokenizer.encode(prompt.text).length);
  });

  it('generate reads the first integer of at most 10 new tokens', async () => {
    const m = oracleModel('m');
    const long = { ...prompt, text: prompt.text.replace(/31337/g, '123456789012'), key: 123456789012 };
    expect((await scoreCell(m, long, 'generate')).correct).toBe(false); // " 123456789" is cut at 10 tokens
    expect((await scoreCell(m, long, 'generate', 14)).correct).toBe(true);
  });
});
