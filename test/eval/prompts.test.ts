import { describe, expect, it } from 'vitest';
import {
  BUILTIN_HAYSTACK,
  buildNiahPrompt,
  buildPasskeyPrompt,
  fitFiller,
  niahNeedleFor,
  niahText,
  PASSKEY_GARBAGE,
  PASSKEY_QUESTION,
  PASSKEY_TASK,
  passkeyFor,
  passkeyText,
} from '../../src/eval/index.js';

const bytes = (t: string) => Buffer.byteLength(t, 'utf8');
/** A coarse word-level counter, standing in for a BPE tokenizer. */
const words = (t: string) => t.split(/(?=\s)|\b/).filter((s) => s.trim()).length;

describe('passkey template', () => {
  it('is the Landmark / FoPE-paper template with character-sliced filler', () => {
    const { text } = passkeyText(4242, 0.5, 100);
    const lines = text.split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toBe(PASSKEY_TASK);
    expect(lines[2]).toBe('The pass key is 4242. Remember it. 4242 is the pass key.');
    expect(lines[4]).toBe(PASSKEY_QUESTION);
    expect(lines[1]).toBe((PASSKEY_GARBAGE + ' ').repeat(3).slice(0, 50));
    expect(lines[3]).toBe((PASSKEY_GARBAGE + ' ').repeat(3).slice(0, 50));
  });

  it('depth 0 puts the key right after the task, depth 1 right before the question', () => {
    const d0 = passkeyText(7, 0, 300).text.split('\n');
    expect(d0[1]).toBe('');
    expect(d0[2]).toContain('pass key is 7.');
    expect(d0[3]!.length).toBe(300);
    const d1 = passkeyText(7, 1, 300).text.split('\n');
    expect(d1[1]!.length).toBe(300);
    expect(d1[3]).toBe('');
    expect(() => passkeyText(7, 1.5, 10)).toThrow(/depth/);
  });

  it('hits the target token count exactly with a byte tokenizer and records the length', () => {
    for (const target of [300, 512, 1000]) {
      for (const depth of [0, 0.3, 1]) {
        const p = buildPasskeyPrompt({ key: 12345, depth, targetTokens: target, countTokens: bytes });
        expect(p.tokens).toBe(target);
        expect(bytes(p.text)).toBe(target);
        expect(p.answer).toBe(' 12345');
        expect(p.overLength).toBe(false);
        expect(Math.abs(p.depthActual - depth)).toBeLessThan(0.01);
      }
    }
  });

  it('gets as close as possible with a coarser tokenizer, never over', () => {
    for (const target of [100, 257, 800]) {
      const p = buildPasskeyPrompt({ key: 9, depth: 0.5, targetTokens: target, countTokens: words });
      expect(p.tokens).toBeLessThanOrEqual(target);
      expect(p.tokens).toBeGreaterThanOrEqual(target - 2);
      // One more filler character would exceed the target (or keep it; n is the largest that fits).
      expect(words(passkeyText(9, 0.5, p.fillerChars + 40).text)).toBeGreaterThan(target);
    }
  });

  it('flags a target below the template length', () => {
    const p = buildPasskeyPrompt({ key: 1, depth: 0.5, targetTokens: 64, countTokens: bytes });
    expect(p.overLength).toBe(true);
    expect(p.fillerChars).toBe(0);
    expect(p.tokens).toBeGreaterThan(64);
  });

  it('keys depend only on seed, length, depth and trial', () => {
    const a = passkeyFor(0, 1024, 0.25, 3);
    expect(passkeyFor(0, 1024, 0.25, 3)).toBe(a);
    expect(a).toBeGreaterThanOrEqual(1);
    expect(a).toBeLessThanOrEqual(50000);
    const keys = new Set(Array.from({ length: 20 }, (_, t) => passkeyFor(0, 1024, 0.25, t)));
    expect(keys.size).toBeGreaterThan(15);
    expect(passkeyFor(1, 1024, 0.25, 3)).not.toBe(a);
  });
});

describe('niah prompt', () => {
  const needle = { city: 'Oslo', value: 1234567, startSentence: 0 };

  it('inserts the needle at a sentence boundary at or before the depth', () => {
    for (const depth of [0.1, 0.37, 0.5, 0.9]) {
      const { text, depthActual } = niahText(needle, depth, 2000);
      const body = text.split('\n')[1]!;
      const i = body.indexOf('The special magic Oslo number is: 1234567.');
      expect(i).toBeGreaterThanOrEqual(0);
      if (i > 0) expect(body.slice(0, i)).toMatch(/[.!?] $/);
      expect(depthActual).toBeLessThanOrEqual(depth + 1e-9);
      expect(depthActual).toBeGreaterThan(depth - 0.1);
    }
    const start = niahText(needle, 0, 500).text.split('\n')[1]!;
    expect(start.startsWith('The special magic Oslo number is: 1234567. ')).toBe(true);
    const end = niahText(needle, 1, 500).text.split('\n')[1]!;
    expect(end.endsWith(' The special magic Oslo number is: 1234567.')).toBe(true);
  });

  it('asks the question last and answers with the value', () => {
    const p = buildNiahPrompt({ needle, depth: 0.5, targetTokens: 700, countTokens: bytes });
    expect(p.text.endsWith('Question: What is the special magic Oslo number? Answer: The special magic Oslo number is:')).toBe(true);
    expect(p.answer).toBe(' 1234567');
    expect(p.key).toBe(1234567);
    expect(p.tokens).toBe(700);
  });

  it('uses a given haystack and repeats it as needed', () => {
    const hay = 'Alpha beta gamma. Delta epsilon zeta! Eta theta iota? Kappa lambda mu.';
    const { text } = niahText(needle, 0.5, 400, hay);
    expect(text).toContain('Delta epsilon zeta!');
    expect(text).not.toContain(BUILTIN_HAYSTACK.slice(0, 30));
    expect(() => niahText(needle, 0.5, 10, '   ')).toThrow(/empty/);
  });

  it('draws 7-digit values, cities and start sentences from the cell seed', () => {
    const n = niahNeedleFor(5, 512, 0.5, 1);
    expect(niahNeedleFor(5, 512, 0.5, 1)).toEqual(n);
    expect(n.value).toBeGreaterThanOrEqual(1_000_000);
    expect(n.value).toBeLessThan(10_000_000);
    expect(niahNeedleFor(5, 512, 0.5, 2)).not.toEqual(n);
  });
});

describe('fitFiller', () => {
  it('finds the largest filler under the target from any hint', () => {
    const build = (n: number) => ({ text: 'x'.repeat(10 + n) });
    for (const hint of [undefined, 1, 50, 89, 90, 91, 5000]) {
      expect(fitFiller(build, (t) => t.length, 100, hint).n).toBe(90);
    }
  });
});
