/**
 * Tokenizers are model data (issue 18): a pre-tokenizer regex that backtracks catastrophically ends in a
 * typed error within the time limit instead of a command that never returns; decode failures are typed;
 * ids outside the vocabulary are refused before they reach the model.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { withTimeLimit, TimeLimitExceeded } from '../../src/model/time-limit.js';
import { byteTokenizerJson } from '../../src/testing/byte-tokenizer.js';
import { runCli } from '../cli/cli-helpers.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir('fopeify-tok-');

/** A fixture whose tokenizer splits on `(a+)+b`: exponential backtracking on a run of a's without a b. */
async function evilModel(): Promise<string> {
  const dir = await fixture(root, { kind: 'llama', seed: 3 });
  const json = { ...byteTokenizerJson(), pre_tokenizer: { type: 'Split', pattern: { Regex: '(a+)+b' }, behavior: 'Isolated', invert: false } };
  await fs.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  return dir;
}

function thrown(fn: () => unknown): FopeifyError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FopeifyError);
    return e as FopeifyError;
  }
  throw new Error('no error');
}

describe('tokenizer limits', () => {
  it('stops a catastrophically backtracking pre-tokenizer with a typed error', async () => {
    const tok = await loadTokenizer(await evilModel(), { timeLimitMs: 1500 });
    expect(tok.encode('aab', { addSpecialTokens: false })).toEqual([97, 97, 98]);
    const started = Date.now();
    const err = thrown(() => tok.encode('a'.repeat(48)));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(err.code).toBe('BAD_CONFIG');
    expect(err.message).toMatch(/tokenizing 48 characters with .*tokenizer\.json took longer than 1\.5 s and was stopped/);
    // The tokenizer still works afterwards.
    expect(tok.decode(tok.encode('ab', { addSpecialTokens: false }))).toBe('ab');
  });

  it('limits any synchronous function and passes its errors and results through', () => {
    expect(withTimeLimit(() => 42, 1000)).toBe(42);
    expect(() => withTimeLimit(() => { throw new RangeError('inner'); }, 1000)).toThrow(RangeError);
    expect(() => withTimeLimit(() => { for (;;); }, 50)).toThrow(TimeLimitExceeded);
  });

  it('types decode errors and checks ids', async () => {
    const tok = await loadTokenizer(await fixture(root, { kind: 'llama', seed: 4 }));
    expect(tok.decode([72, 105])).toBe('Hi');
    expect(tok.decode([])).toBe('');
    for (const ids of [[1.5], [-1], [NaN], [72, 1e400]]) {
      const err = thrown(() => tok.decode(ids));
      expect(err.code).toBe('BAD_ARGUMENT');
      expect(err.message).toMatch(/cannot decode token id .*non-negative integers/);
    }
  });

  it('generate ends with a typed error instead of never returning', { timeout: 120_000 }, async () => {
    const dir = await evilModel();
    const started = Date.now();
    const r = runCli(['generate', dir, '--prompt', 'a'.repeat(48), '--max-new-tokens', '2', '--backend', 'cpu']);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^fopeify: error: tokenizing 48 characters .* took longer than 10\.0 s and was stopped/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
