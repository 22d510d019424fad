/**
 * The demo's training data: Brown corpus text mixed with passkey-style documents, every document exactly
 * `length` bytes (= tokens for the byte-level tokenizer), so with its EOS each fills one chunk of
 * length + 1 and packing never separates a pass key from its question. Used by the script that trains
 * the shipped tiny model and by `fopeify demo` for fine-tuning at longer lengths.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PASSKEY_GARBAGE, PASSKEY_QUESTION, PASSKEY_TASK } from '../eval/prompts.js';
import { SeededRandom } from '../rope/random.js';

/** fixtures/ of the installed package (two levels up from dist/demo or src/demo). */
export function fixturesDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures');
}

function cyclic(text: string, n: number, offset = 0): string {
  let s = '';
  while (s.length < offset + n) s += text + ' ';
  return s.slice(offset, offset + n);
}

/** ASCII-only text, so bytes = characters = tokens for the byte-level tokenizer. */
export function asciiOnly(text: string): string {
  return text.replace(/[^\x20-\x7e\n]/g, ' ');
}

/**
 * A passkey document of exactly `chars` characters with the answer: [task?] filler, info, filler,
 * question, key. The key sits at a random depth, so key-to-question distances cover the whole length.
 */
export function passkeyDocument(rng: SeededRandom, chars: number, brown: string, extraQuestion = false): string {
  const key = 1 + rng.int(50000);
  // An extra question right after the key gives a second, short-range copy to learn from.
  const info = `The pass key is ${key}. Remember it. ${key} is the pass key.${extraQuestion ? `\n${PASSKEY_QUESTION} ${key}.` : ''}`;
  const tail = `${PASSKEY_QUESTION} ${key}.`;
  const head = rng.next() < 0.3 ? PASSKEY_TASK : '';
  const fixed = head.length + info.length + tail.length + 4; // four newlines
  const filler = Math.max(0, chars - fixed);
  const nPrefix = Math.round(filler * rng.next());
  const start = rng.int(Math.max(1, brown.length - 2000));
  const src = rng.next() < 0.7 || brown.length < 2000 ? PASSKEY_GARBAGE : brown.slice(start, start + 1000);
  const off = rng.int(40);
  const doc = [head, cyclic(src, nPrefix, off), info, cyclic(src, filler - nPrefix, off + nPrefix), tail].join('\n');
  return doc.slice(0, chars).padEnd(chars, ' ');
}

/**
 * A copy document of exactly `chars` characters: a random mix of numbers and words, then the same text
 * again. Every character of the second half is predictable only by looking back — a dense signal that
 * teaches the model to retrieve (induction), which passkey retrieval needs.
 */
export function copyDocument(rng: SeededRandom, chars: number, words: readonly string[]): string {
  const half = Math.floor((chars - 1) / 2);
  let x = '';
  while (x.length < half) x += rng.next() < 0.5 ? `${1 + rng.int(99999)} ` : `${words[rng.int(words.length)] ?? 'word'} `;
  x = x.slice(0, half);
  return `${x}\n${x}`.padEnd(chars, ' ').slice(0, chars);
}

/** `count` text documents and `count` passkey documents, each exactly `length` characters. */
export async function demoTexts(options: {
  length: number;
  /** Passkey documents; text documents are count × (1 − passkeyShare) / passkeyShare of them. */
  count: number;
  seed: number;
  brownFile?: string;
  /** Share of passkey documents (default 0.5). */
  passkeyShare?: number;
  /** Probability of an extra question right after the key (default 0). */
  extraQuestion?: number;
  /** Copy documents, as a multiple of `count` (default 0). */
  copyShare?: number;
}): Promise<string[]> {
  const brown = asciiOnly(await fs.readFile(options.brownFile ?? path.join(fixturesDir(), 'text', 'brown-train.txt'), 'utf8'));
  const rng = new SeededRandom(options.seed, `demo-data-${options.length}`);
  const texts: string[] = [];
  // Text documents start at random offsets so runs at different lengths see different slices.
  const share = options.passkeyShare ?? 0.5;
  const textCount = Math.round((options.count * (1 - share)) / share);
  for (let i = 0; i < textCount; i++) {
    const start = rng.int(Math.max(1, brown.length - options.length));
    texts.push(brown.slice(start, start + options.length).padEnd(options.length, ' '));
  }
  const copies = Math.round(options.count * (options.copyShare ?? 0));
  const words = copies ? brown.split(/\s+/).filter(Boolean) : [];
  for (let i = 0; i < copies; i++) texts.push(copyDocument(rng, options.length, words));
  for (let i = 0; i < options.count; i++) texts.push(passkeyDocument(rng, options.length, brown, (options.extraQuestion ?? 0) > 0 && rng.next() < options.extraQuestion!));
  return texts;
}
