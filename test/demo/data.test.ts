/**
 * The demo's training documents: exact lengths (one document = one training chunk), the retrieval
 * structure each kind promises, and determinism for a seed (the shipped model's script relies on it).
 */
import { describe, expect, it } from 'vitest';
import { demoTexts, denseCopyDocument, recallDocument, repeatDocument } from '../../src/demo/data.js';
import { SeededRandom } from '../../src/random.js';

const BROWN = 'The jury said it did find that many of the voters were unhappy with the new rules of the county. '.repeat(40);
const random = /[a-z0-9]{8,}/g;

describe('demo training documents', () => {
  it('dense copy documents hold one random string twice, at exactly the requested length', () => {
    const rng = new SeededRandom(1, 'test');
    for (const chars of [128, 256]) {
      for (let i = 0; i < 20; i++) {
        const d = denseCopyDocument(rng, chars, BROWN);
        expect(d).toHaveLength(chars);
        const words = d.split(' ').filter((w) => w.length >= 30 && /^[a-z0-9]+$/.test(w) && !BROWN.includes(w));
        expect(words).toHaveLength(2);
        expect(words[0]).toBe(words[1]);
      }
    }
  });

  it('repeat documents repeat each random string two or three times', () => {
    const rng = new SeededRandom(2, 'test');
    for (let i = 0; i < 20; i++) {
      const d = repeatDocument(rng, 256, BROWN);
      expect(d).toHaveLength(256);
      const counts = new Map<string, number>();
      for (const w of d.match(random) ?? []) if (!BROWN.includes(w)) counts.set(w, (counts.get(w) ?? 0) + 1);
      // Strings cut off by the length limit can appear fewer times; the rest appear 2 or 3 times.
      expect([...counts.values()].some((c) => c >= 2)).toBe(true);
      for (const c of counts.values()) expect(c).toBeLessThanOrEqual(3);
    }
  });

  it('recall documents answer every question with the value of its fact', () => {
    const rng = new SeededRandom(3, 'test');
    for (let i = 0; i < 20; i++) {
      const d = recallDocument(rng, 256, BROWN);
      expect(d).toHaveLength(256);
      const facts = new Map([...d.matchAll(/ The (\w+) key is (\d+)\. /g)].map((m) => [m[1]!, m[2]!]));
      const answers = [...d.matchAll(/What is the (\w+) key\? The \1 key is (\d+)\./g)];
      expect(answers.length).toBeGreaterThanOrEqual(2);
      for (const a of answers) expect(facts.get(a[1]!)).toBe(a[2]);
    }
  });

  it('demoTexts mixes the kinds in the asked proportions, deterministically for a seed', async () => {
    const opts = { length: 256, count: 10, seed: 7, passkeyShare: 0.5, repeatShare: 1, recallShare: 1, denseCopyShare: 2 };
    const a = await demoTexts(opts);
    expect(a).toHaveLength(10 + 10 + 10 + 10 + 20);
    expect(a.every((t) => t.length === 256)).toBe(true);
    expect(await demoTexts(opts)).toEqual(a);
    expect(a.filter((t) => t.includes('What is the pass key? The pass key is')).length).toBeGreaterThanOrEqual(10);
  });
});
