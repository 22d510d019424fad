/**
 * Prompt builders of the retrieval tests. Both put a key into filler text at a depth (the fraction of the
 * filler before the key: 0 = right after the task text, 1 = right before the question) and grow the
 * filler, character by character, to the largest prompt whose token count is at most the target.
 *
 *  - passkey: the Landmark-attention template used by the FoPE and YaRN papers (evals.md), with
 *    character slices of the repeated garbage sentence before and after the info line;
 *  - niah: a needle sentence "The special magic {city} number is: {7 digits}." (EasyContext / RULER style,
 *    so it can be scored by its digits, greedy or teacher-forced) inside a haystack (a user text or the
 *    built-in filler), inserted at the previous sentence boundary as in gkamradt's harness.
 */
import { SeededRandom } from '../random.js';

export const PASSKEY_TASK =
  'There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.';
export const PASSKEY_GARBAGE = 'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.';
export const PASSKEY_QUESTION = 'What is the pass key? The pass key is';

export const NIAH_TASK = 'Below is a long text with a special magic number hidden in it. Read it carefully and remember the number.';

export const NIAH_CITIES = [
  'Amsterdam', 'Bangkok', 'Barcelona', 'Berlin', 'Cairo', 'Chicago', 'Dublin', 'Helsinki', 'Istanbul', 'Jakarta',
  'Lagos', 'Lima', 'Lisbon', 'Madrid', 'Melbourne', 'Montreal', 'Mumbai', 'Nairobi', 'Oslo', 'Prague',
  'Santiago', 'Seoul', 'Stockholm', 'Sydney', 'Taipei', 'Toronto', 'Vienna', 'Warsaw', 'Zurich', 'Kyoto',
];

/** The built-in haystack: plain, unremarkable prose (original text), repeated as needed. */
export const BUILTIN_HAYSTACK = [
  'The morning train left the station a few minutes late, as it often did in the autumn.',
  'Most of the passengers read newspapers or looked out at the fields, which were brown after the harvest.',
  'A small river runs beside the tracks for several miles before it turns toward the hills.',
  'In the old town the streets are narrow, and the shops open their shutters slowly after breakfast.',
  'The baker on the corner sells bread, small cakes, and a kind of biscuit flavoured with honey.',
  'Teachers at the local school say that the children learn best when lessons include time outdoors.',
  'The library was rebuilt twenty years ago, and its reading room now has tall windows facing the square.',
  'Every Saturday a market fills the square with stalls of vegetables, cheese, flowers, and second-hand books.',
  'Farmers in the valley grow apples and pears, and some of them keep bees at the edge of the orchards.',
  'When it rains, the cafe by the bridge becomes crowded with people waiting for the weather to change.',
  'The museum has a modest collection of maps, tools, and photographs from the early days of the railway.',
  'A path along the lake is popular with walkers, although it becomes muddy in the spring.',
  'The town council meets once a month to discuss roads, parks, lighting, and the budget for repairs.',
  'Some visitors come for the quiet, and others come for the festival of music held each summer.',
  'At night the lights of the villages across the valley look like small groups of stars.',
  'The newspaper publishes a short column about local history every week, written by a retired teacher.',
  'Repairs to the church roof took most of a year because the old tiles had to be made by hand.',
  'People who move here often say that the pace of life took some getting used to.',
].join(' ');

/** A prompt for one cell: the same text is given to every model. */
export interface NeedlePrompt {
  /** The full prompt text (ends with the question, no trailing space). */
  text: string;
  /** The expected continuation, e.g. " 12345". */
  answer: string;
  /** The key (pass key, or the needle's number). */
  key: number;
  /** Requested token count. */
  targetTokens: number;
  /** Token count of `text` under the tokenizer it was built with. */
  tokens: number;
  /** Filler characters in the prompt. */
  fillerChars: number;
  /** Fraction of the filler before the key after snapping (niah moves it to a sentence boundary). */
  depthActual: number;
  /** The target is shorter than the template without filler; `text` has no filler and is longer. */
  overLength: boolean;
}

export type CountTokens = (text: string) => number;

/** The random draws of one cell, a function of (seed, length, depth, trial) only. */
export function cellRandom(seed: number, length: number, depth: number, trial: number): SeededRandom {
  return new SeededRandom(seed, `${length}:${depth}:${trial}`);
}

/** The passkey of a cell: uniform in 1..50000. */
export function passkeyFor(seed: number, length: number, depth: number, trial: number): number {
  return 1 + cellRandom(seed, length, depth, trial).int(50000);
}

export interface NiahNeedle {
  city: string;
  /** 7-digit value. */
  value: number;
  /** Which sentence of the haystack the filler starts at (varies trials). */
  startSentence: number;
}

/** The needle of a niah cell. */
export function niahNeedleFor(seed: number, length: number, depth: number, trial: number): NiahNeedle {
  const rng = cellRandom(seed, length, depth, trial);
  const value = 1_000_000 + rng.int(9_000_000);
  const city = NIAH_CITIES[rng.int(NIAH_CITIES.length)]!;
  return { city, value, startSentence: rng.nextUint32() };
}

function checkDepth(depth: number): void {
  if (!(depth >= 0 && depth <= 1)) throw new RangeError(`depth must be within [0, 1], got ${depth}`);
}

/** `n` characters of `(unit + " ")` repeated, starting at `start`. */
export function cyclicSlice(unit: string, start: number, n: number): string {
  const period = unit + ' ';
  const from = ((start % period.length) + period.length) % period.length;
  const reps = Math.ceil((from + n) / period.length) + 1;
  return period.repeat(reps).slice(from, from + n);
}

/** The passkey prompt with `fillerChars` characters of garbage split at `depth`. */
export function passkeyText(key: number, depth: number, fillerChars: number): { text: string; depthActual: number } {
  checkDepth(depth);
  const nPrefix = Math.round(fillerChars * depth);
  const nSuffix = fillerChars - nPrefix;
  const info = `The pass key is ${key}. Remember it. ${key} is the pass key.`;
  const text = [PASSKEY_TASK, cyclicSlice(PASSKEY_GARBAGE, 0, nPrefix), info, cyclicSlice(PASSKEY_GARBAGE, 0, nSuffix), PASSKEY_QUESTION].join('\n');
  return { text, depthActual: fillerChars ? nPrefix / fillerChars : depth };
}

/** Start offsets of the sentences of a text (after '.', '!' or '?' and whitespace). */
export function sentenceStarts(text: string): number[] {
  const out = [0];
  const re = /[.!?]["')\]]?\s+/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const i = m.index + m[0].length;
    if (i < text.length) out.push(i);
  }
  return out;
}

/** Largest sentence boundary ≤ `pos` in `text` (0 when there is none). */
export function previousSentenceBoundary(text: string, pos: number): number {
  let best = 0;
  const re = /[.!?]["')\]]?\s+/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const i = m.index + m[0].length;
    if (i > pos) break;
    best = i;
  }
  return best;
}

function niahQuestion(city: string): string {
  return `Question: What is the special magic ${city} number? Answer: The special magic ${city} number is:`;
}

export function niahNeedleSentence(needle: Pick<NiahNeedle, 'city' | 'value'>): string {
  return `The special magic ${needle.city} number is: ${needle.value}.`;
}

/** The niah prompt with `fillerChars` haystack characters and the needle at `depth`. */
export function niahText(
  needle: NiahNeedle,
  depth: number,
  fillerChars: number,
  haystack: string = BUILTIN_HAYSTACK,
): { text: string; depthActual: number } {
  checkDepth(depth);
  const source = haystack.replace(/\s+/g, ' ').trim();
  if (!source) throw new RangeError('the haystack is empty');
  const starts = sentenceStarts(source);
  const start = starts[needle.startSentence % starts.length]!;
  const hay = cyclicSlice(source, start, fillerChars);
  const sentence = niahNeedleSentence(needle);
  let at: number;
  let body: string;
  if (depth >= 1) {
    at = hay.length;
    body = hay ? `${hay.trimEnd()} ${sentence}` : sentence;
  } else {
    at = previousSentenceBoundary(hay, Math.floor(depth * hay.length));
    const before = hay.slice(0, at);
    const after = hay.slice(at);
    body = `${before}${sentence}${after ? ' ' + after : ''}`;
  }
  const text = [NIAH_TASK, body, niahQuestion(needle.city)].join('\n');
  return { text, depthActual: hay.length ? at / hay.length : depth };
}

/**
 * The largest n (filler characters) whose prompt has at most `target` tokens. Galloping from `hint` (the
 * answer of a neighbouring cell), then bisection; assumes token counts grow with n, as they do for text.
 */
export function fitFiller<T extends { text: string }>(
  build: (n: number) => T,
  count: CountTokens,
  target: number,
  hint?: number,
): { n: number; value: T; tokens: number; overLength: boolean } {
  const at = (n: number) => {
    const value = build(n);
    return { n, value, tokens: count(value.text) };
  };
  const base = at(0);
  if (base.tokens >= target) return { ...base, overLength: base.tokens > target };
  const cap = Math.max(64, target * 64);
  let good = base;
  let badN = Infinity;
  let guess = hint && hint > 0 ? hint : Math.max(1, Math.round(((target - base.tokens) * base.value.text.length) / Math.max(base.tokens, 1)));
  guess = Math.min(guess, cap);
  const first = at(guess);
  if (first.tokens <= target) {
    good = first;
    let step = 1;
    for (;;) {
      const n = Math.min(good.n + step, cap);
      if (n === good.n) break;
      const r = at(n);
      if (r.tokens <= target) good = r;
      else {
        badN = n;
        break;
      }
      step *= 2;
    }
  } else {
    badN = guess;
    let step = 1;
    for (;;) {
      const n = Math.max(badN - step, 0);
      const r = n === 0 ? base : at(n);
      if (r.tokens <= target) {
        good = r;
        break;
      }
      badN = n;
      step *= 2;
    }
  }
  while (Number.isFinite(badN) && badN - good.n > 1) {
    const mid = Math.floor((good.n + badN) / 2);
    const r = at(mid);
    if (r.tokens <= target) good = r;
    else badN = mid;
  }
  return { ...good, overLength: false };
}

export interface BuildOptions {
  /** Target prompt length in tokens. */
  targetTokens: number;
  /** Key depth in [0, 1]. */
  depth: number;
  /** Token counter of the tokenizer the prompt is sized for. */
  countTokens: CountTokens;
  /** Filler size of a neighbouring cell, to start the search from. */
  hint?: number;
}

export function buildPasskeyPrompt(options: BuildOptions & { key: number }): NeedlePrompt {
  const fit = fitFiller((n) => passkeyText(options.key, options.depth, n), options.countTokens, options.targetTokens, options.hint);
  return {
    text: fit.value.text,
    answer: ` ${options.key}`,
    key: options.key,
    targetTokens: options.targetTokens,
    tokens: fit.tokens,
    fillerChars: fit.n,
    depthActual: fit.value.depthActual,
    overLength: fit.overLength,
  };
}

export function buildNiahPrompt(options: BuildOptions & { needle: NiahNeedle; haystack?: string }): NeedlePrompt {
  const fit = fitFiller((n) => niahText(options.needle, options.depth, n, options.haystack), options.countTokens, options.targetTokens, options.hint);
  return {
    text: fit.value.text,
    answer: ` ${options.needle.value}`,
    key: options.needle.value,
    targetTokens: options.targetTokens,
    tokens: fit.tokens,
    fillerChars: fit.n,
    depthActual: fit.value.depthActual,
    overLength: fit.overLength,
  };
}
