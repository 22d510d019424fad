/**
 * Passkey retrieval for training: `--data synthetic:passkey` documents at the target length, and the
 * passkey accuracy evaluated every --eval-every steps. Both use src/eval's prompt builder (the
 * Landmark-attention template of the FoPE and YaRN papers, evals.md) and its teacher-forced rule
 * (correct iff the argmax at every answer token is the answer token: one forward pass, deterministic).
 */
import * as tf from '../backend/tfjs.js';
import { buildPasskeyPrompt, teacherForcedIds, type EvalTokenizer } from '../eval/index.js';
import { argmax, forwardHidden, lmHead, type TextTokenizer } from '../model/index.js';
import { SeededRandom } from '../random.js';
import type { TrainingModel } from './model.js';

/** Room left for the answer (" 12345." and EOS) after the prompt. */
const ANSWER_ROOM = 10;

export function evalTokenizer(tok: TextTokenizer): EvalTokenizer {
  return { encode: (text, options) => tok.encode(text, options), decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }) };
}

/**
 * `count` passkey chunks of exactly seqLen + 1 tokens: prompt, answer " {key}.", EOS, then padding
 * (−1: ignored by the loss). Keys and depths are drawn from (seed, index), so the data does not depend
 * on how many documents are asked for.
 */
export function passkeyChunks(tok: TextTokenizer, eosId: number, seqLen: number, count: number, seed: number, offset = 0): Int32Array[] {
  const et = evalTokenizer(tok);
  const countTokens = (t: string) => tok.encode(t).length;
  const out: Int32Array[] = [];
  let hint: number | undefined;
  for (let i = 0; i < count; i++) {
    const rng = new SeededRandom(seed, `passkey-data-${offset + i}`);
    const key = 1 + rng.int(50000);
    const depth = rng.next();
    const prompt = buildPasskeyPrompt({ key, depth, targetTokens: Math.max(1, seqLen + 1 - ANSWER_ROOM), countTokens, hint });
    hint = prompt.fillerChars;
    const { ids } = teacherForcedIds(et, prompt.text, `${prompt.answer}.`);
    const chunk = new Int32Array(seqLen + 1).fill(-1);
    const doc = [...ids, eosId].slice(0, seqLen + 1);
    chunk.set(doc);
    out.push(chunk);
  }
  return out;
}

/** One teacher-forced passkey prompt: its token ids (prompt then answer) and where the answer starts. */
export interface PasskeyEvalPrompt {
  ids: number[];
  promptLength: number;
}

/**
 * The `trials` prompts of one passkey evaluation at `length` tokens, keys and depths drawn from `rng`.
 * Both engines score these (the torch engine gets them written into its job folder): one prompt logic.
 */
export function passkeyEvalPrompts(tok: TextTokenizer, length: number, trials: number, rng: SeededRandom): PasskeyEvalPrompt[] {
  const et = evalTokenizer(tok);
  const countTokens = (t: string) => tok.encode(t).length;
  const out: PasskeyEvalPrompt[] = [];
  let hint: number | undefined;
  for (let i = 0; i < trials; i++) {
    const key = 1 + rng.int(50000);
    const depth = rng.next();
    const prompt = buildPasskeyPrompt({ key, depth, targetTokens: Math.max(1, length - ANSWER_ROOM), countTokens, hint });
    hint = prompt.fillerChars;
    out.push(teacherForcedIds(et, prompt.text, prompt.answer));
  }
  return out;
}

/** Teacher-forced passkey accuracy of the model at `length` tokens over `trials` prompts drawn from `rng`. */
export async function passkeyAccuracy(tm: TrainingModel, tok: TextTokenizer, length: number, trials: number, rng: SeededRandom): Promise<number> {
  await tm.ready();
  let correct = 0;
  for (const { ids, promptLength } of passkeyEvalPrompts(tok, length, trials, rng)) {
    const positions = Array.from({ length: ids.length - promptLength }, (_, j) => promptLength - 1 + j);
    const logitsT = tm.withMergedWeights((w) =>
      tf.tidy(() => {
        const h = forwardHidden(w, tm.spec, ids, { kernels: tm.kernels });
        const H = h.shape[2];
        const rows = tf.gather(tf.reshape(h, [ids.length, H]), tf.tensor1d(positions, 'int32')) as tf.Tensor2D;
        return lmHead(w, tm.spec, rows, tm.kernels);
      }),
    );
    let logits: Float32Array;
    try {
      logits = (await logitsT.data()) as Float32Array;
    } finally {
      logitsT.dispose();
    }
    const V = tm.spec.vocabSize;
    const predicted = positions.map((_, j) => argmax(logits.subarray(j * V, (j + 1) * V)));
    if (predicted.every((id, j) => id === ids[positions[j]! + 1])) correct++;
  }
  return trials ? correct / trials : 0;
}
