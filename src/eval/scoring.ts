/**
 * Scoring one prompt on one model, two ways:
 *  - generate: greedy decoding with the KV cache (10 new tokens by default); correct iff the first integer
 *    in the continuation equals the key (the papers' passkey rule; the niah needle's value is an integer
 *    too, so the same rule is the needle match);
 *  - teacher-forced: the answer (" 12345") as tokenized after the prompt is appended; correct iff the argmax
 *    at every answer position equals the answer token (EasyContext's rule: no sampling, one forward pass).
 */
import type { ScoringMode } from '../io/formats.js';
import type { EvalModel, EvalTokenizer } from './runner.js';

/** The first run of digits in `text` as a number, or null. */
export function firstInteger(text: string): number | null {
  const m = /\d+/.exec(text);
  return m ? Number(m[0]) : null;
}

export interface CellOutcome {
  /** The decoded continuation (generate) or the decoded argmax predictions (teacher-forced). */
  response: string;
  correct: boolean;
  /** Tokens of the prompt for this model. */
  promptTokens: number;
}

/**
 * Prompt + answer ids with the answer tokenized as it follows the prompt: the ids of `text + answer` when
 * they start with the ids of `text` (so merges and special tokens are as in real text), else the prompt
 * ids followed by the answer encoded alone.
 */
export function teacherForcedIds(tok: EvalTokenizer, text: string, answer: string): { ids: number[]; promptLength: number } {
  const prompt = tok.encode(text);
  const full = tok.encode(text + answer);
  if (full.length > prompt.length && prompt.every((id, i) => full[i] === id)) return { ids: full, promptLength: prompt.length };
  return { ids: [...prompt, ...tok.encode(answer, { addSpecialTokens: false })], promptLength: prompt.length };
}

export async function scoreGenerate(model: EvalModel, prompt: { text: string; key: number }, maxNewTokens = 10): Promise<CellOutcome> {
  const ids = model.encode(prompt.text);
  const out = await model.generateGreedy(ids, maxNewTokens);
  const response = model.decode(out);
  return { response, correct: firstInteger(response) === prompt.key, promptTokens: ids.length };
}

export async function scoreTeacherForced(model: EvalModel, prompt: { text: string; answer: string }): Promise<CellOutcome> {
  const { ids, promptLength } = teacherForcedIds(model, prompt.text, prompt.answer);
  const positions = Array.from({ length: ids.length - promptLength }, (_, i) => promptLength - 1 + i);
  const predicted = await model.argmaxAt(ids, positions);
  const correct = predicted.length === positions.length && predicted.every((id, i) => id === ids[positions[i]! + 1]);
  return { response: model.decode(predicted), correct, promptTokens: promptLength };
}

export function scoreCell(model: EvalModel, prompt: { text: string; answer: string; key: number }, mode: ScoringMode, maxNewTokens = 10): Promise<CellOutcome> {
  return mode === 'generate' ? scoreGenerate(model, prompt, maxNewTokens) : scoreTeacherForced(model, prompt);
}
