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
import { SeededRandom } from '../random.js';

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
export function passkeyDocument(rng: SeededRandom, chars: number, brown: string, extraQuestion = false, taskShare = 0.3): string {
  const key = 1 + rng.int(50000);
  // An extra question right after the key gives a second, short-range copy to learn from.
  const info = `The pass key is ${key}. Remember it. ${key} is the pass key.${extraQuestion ? `\n${PASSKEY_QUESTION} ${key}.` : ''}`;
  const tail = `${PASSKEY_QUESTION} ${key}.`;
  const head = rng.next() < taskShare ? PASSKEY_TASK : '';
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

const RANDOM_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** `len` random letters and digits. */
function randomString(rng: SeededRandom, len: number): string {
  let r = '';
  for (let i = 0; i < len; i++) r += RANDOM_CHARS[rng.int(RANDOM_CHARS.length)];
  return r;
}

/**
 * A repeat document of exactly `chars` characters: Brown text with one or two random strings (letters
 * and digits, 8–40 characters each) inserted two or three times each at random places. After its first
 * character a repeated string is predictable only by finding an earlier copy — the induction signal
 * that retrieval is built from — and because the distances vary, no fixed positional shortcut (a
 * constant offset) is learned that would hurt ordinary text.
 */
export function repeatDocument(rng: SeededRandom, chars: number, brown: string): string {
  const inserts: string[] = [];
  const strings = 1 + rng.int(2);
  for (let s = 0; s < strings; s++) {
    const r = randomString(rng, 8 + rng.int(33));
    const times = 2 + rng.int(2);
    for (let t = 0; t < times; t++) inserts.push(` ${r} `);
  }
  const textChars = Math.max(0, chars - inserts.reduce((n, x) => n + x.length, 0));
  const start = rng.int(Math.max(1, brown.length - textChars));
  const text = brown.slice(start, start + textChars).padEnd(textChars, ' ');
  // Insertion points in text order; the strings keep their interleaving (r1 r2 r1 r1 r2 ...).
  for (let i = inserts.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [inserts[i], inserts[j]] = [inserts[j]!, inserts[i]!];
  }
  const cuts = inserts.map(() => rng.int(textChars + 1)).sort((x, y) => x - y);
  let doc = '';
  let prev = 0;
  inserts.forEach((x, i) => {
    doc += text.slice(prev, cuts[i]) + x;
    prev = cuts[i]!;
  });
  doc += text.slice(prev);
  return doc.slice(0, chars).padEnd(chars, ' ');
}

/**
 * A dense copy document of exactly `chars` characters: a random string (letters and digits, 30–100
 * characters) in Brown text, then the same string again after a random gap. A third or more of the
 * characters are predictable only by looking the string up — a dense signal that forms the induction
 * circuit much faster than sparse repeats — and the varying gap leaves no fixed-offset shortcut.
 */
export function denseCopyDocument(rng: SeededRandom, chars: number, brown: string): string {
  const len = Math.min(30 + rng.int(71), Math.floor((chars - 4) / 2));
  const r = randomString(rng, len);
  const textChars = Math.max(0, chars - 2 * len - 4);
  const start = rng.int(Math.max(1, brown.length - textChars));
  const text = brown.slice(start, start + textChars).padEnd(textChars, ' ');
  const a = rng.int(Math.floor(textChars / 2) + 1);
  const b = a + rng.int(textChars - a + 1);
  return `${text.slice(0, a)} ${r} ${text.slice(a, b)} ${r} ${text.slice(b)}`.slice(0, chars).padEnd(chars, ' ');
}

const KEY_NAMES = ['pass', 'red', 'blue', 'green', 'gold', 'door', 'safe', 'box', 'car', 'house', 'secret', 'magic'];

/**
 * An associative-recall document of exactly `chars` characters: two to four facts "The {name} key is
 * {n}." in filler, then questions about them in random order, each in the passkey template's words
 * ("What is the {name} key? The {name} key is {n}."). Several answers per document give a denser
 * retrieval signal than one pass key, and distinct names make the lookup depend on content.
 */
export function recallDocument(rng: SeededRandom, chars: number, brown: string): string {
  const k = 2 + rng.int(3);
  const names: string[] = [];
  while (names.length < k) {
    const n = KEY_NAMES[rng.int(KEY_NAMES.length)]!;
    if (!names.includes(n)) names.push(n);
  }
  const keys = names.map(() => 1 + rng.int(50000));
  const facts = names.map((n, i) => `The ${n} key is ${keys[i]}.`);
  const order = names.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const questions = order.map((i) => `What is the ${names[i]} key? The ${names[i]} key is ${keys[i]}.`).join('\n');
  const fillerChars = Math.max(0, chars - facts.join(' ').length - questions.length - 2 * k - 2);
  const garbage = rng.next() < 0.5 || brown.length < 2000;
  const start = rng.int(Math.max(1, brown.length - fillerChars - 1));
  const filler = garbage ? cyclic(PASSKEY_GARBAGE, fillerChars, rng.int(40)) : brown.slice(start, start + fillerChars).padEnd(fillerChars, ' ');
  // Facts at random cut points of the filler, in order.
  const cuts = facts.map(() => rng.int(fillerChars + 1)).sort((x, y) => x - y);
  let body = '';
  let prev = 0;
  facts.forEach((f, i) => {
    body += `${filler.slice(prev, cuts[i])} ${f} `;
    prev = cuts[i]!;
  });
  body += filler.slice(prev);
  return `${body}\n${questions}`.slice(0, chars).padEnd(chars, ' ');
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
  /** Repeat documents (`repeatDocument`), as a multiple of `count` (default 0). */
  repeatShare?: number;
  /** Associative-recall documents (`recallDocument`), as a multiple of `count` (default 0). */
  recallShare?: number;
  /** Dense copy documents (`denseCopyDocument`), as a multiple of `count` (default 0). */
  denseCopyShare?: number;
  /** Probability that a passkey document starts with the task sentence, as the eval prompt does (default 0.3). */
  taskShare?: number;
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
  for (let i = 0; i < options.count; i++) {
    texts.push(passkeyDocument(rng, options.length, brown, (options.extraQuestion ?? 0) > 0 && rng.next() < options.extraQuestion!, options.taskShare));
  }
  // Drawn after the others so that adding them leaves the documents above unchanged for a seed.
  const repeats = Math.round(options.count * (options.repeatShare ?? 0));
  for (let i = 0; i < repeats; i++) texts.push(repeatDocument(rng, options.length, brown));
  const recalls = Math.round(options.count * (options.recallShare ?? 0));
  for (let i = 0; i < recalls; i++) texts.push(recallDocument(rng, options.length, brown));
  const dense = Math.round(options.count * (options.denseCopyShare ?? 0));
  for (let i = 0; i < dense; i++) texts.push(denseCopyDocument(rng, options.length, brown));
  return texts;
}
