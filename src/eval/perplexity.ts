/**
 * Perplexity against context length (the FoPE paper's second headline, evals.md): the token stream of
 * a text is cut into non-overlapping windows of each size; inside a window every token after the first
 * is predicted from the tokens before it; per size, ppl = exp(mean NLL over all predicted tokens).
 * Logits are computed in row chunks, so a long window never materialises [T, vocab] at once.
 */
import * as tf from '../backend/tfjs.js';
import { FopeifyError } from '../errors.js';
import { checkFiniteResult } from '../model/finite.js';
import type { ForwardOptions } from '../model/llama.js';

/** What perplexity needs from a model (LlamaModel has it). */
export interface HiddenStateModel {
  hidden(ids: readonly number[], options?: ForwardOptions): tf.Tensor3D;
  logitsFromHidden(h: tf.Tensor2D): tf.Tensor2D;
}

export interface NllOptions {
  /** Rows per LM-head chunk (default 256). */
  logitsChunk?: number;
  /** Attention query block. */
  queryBlock?: number;
}

/** Summed negative log-likelihood (nats) of ids[1..] given their prefixes, and how many tokens that is. */
export async function sequenceNll(model: HiddenStateModel, ids: readonly number[], options: NllOptions = {}): Promise<{ nll: number; count: number }> {
  if (ids.length < 2) return { nll: 0, count: 0 };
  const chunk = Math.max(1, options.logitsChunk ?? 256);
  const h = model.hidden(ids, { queryBlock: options.queryBlock });
  try {
    const [, T, H] = h.shape;
    let nll = 0;
    for (let r0 = 0; r0 < T - 1; r0 += chunk) {
      const n = Math.min(chunk, T - 1 - r0);
      const targets = Int32Array.from({ length: n }, (_, i) => ids[r0 + i + 1]!);
      const t = tf.tidy(() => {
        const rows = tf.reshape(tf.slice(h, [0, r0, 0], [1, n, H]), [n, H]) as tf.Tensor2D;
        const logits = model.logitsFromHidden(rows);
        const V = logits.shape[1];
        const lse = tf.logSumExp(logits, 1);
        const flatIdx = tf.tensor1d(Int32Array.from(targets, (tg, i) => i * V + tg), 'int32');
        const picked = tf.gather(tf.reshape(logits, [n * V]), flatIdx);
        return tf.sub(lse, picked);
      });
      const values = (await t.data()) as Float32Array;
      t.dispose();
      for (let i = 0; i < n; i++) nll += values[i]!;
    }
    return { nll, count: T - 1 };
  } finally {
    h.dispose();
  }
}

export interface PerplexityOptions extends NllOptions {
  /** Window sizes in tokens, e.g. [128, 256, 512]. */
  windows: readonly number[];
  /** Evaluate at most this many windows per size (default: every full window of the text). */
  maxWindows?: number;
  /** Called after each window. */
  onProgress?: (event: { window: number; index: number; count: number }) => void;
}

export interface WindowPerplexity {
  /** Window size in tokens. */
  window: number;
  /** Windows evaluated (0 when the text is shorter than one window). */
  windows: number;
  /** Tokens predicted (windows × (window − 1)). */
  tokens: number;
  /** Mean negative log-likelihood per predicted token, nats (null without a window). */
  nll: number | null;
  /** exp(nll) (null without a window). */
  ppl: number | null;
}

export interface PerplexityReport {
  /** Tokens of the whole text. */
  tokens: number;
  results: WindowPerplexity[];
}

/** Perplexity per context window over one token stream. */
export async function perplexityByWindow(model: HiddenStateModel, ids: readonly number[], options: PerplexityOptions): Promise<PerplexityReport> {
  if (!options.windows.length) throw new FopeifyError('BAD_ARGUMENT', 'give at least one window size');
  for (const w of options.windows) {
    if (!Number.isInteger(w) || w < 2) throw new FopeifyError('BAD_ARGUMENT', `window sizes must be integers ≥ 2 (got ${w})`);
  }
  if (options.maxWindows !== undefined && !(Number.isInteger(options.maxWindows) && options.maxWindows >= 1)) {
    throw new FopeifyError('BAD_ARGUMENT', `the maximum number of windows must be a positive integer (got ${options.maxWindows})`);
  }
  const results: WindowPerplexity[] = [];
  for (const w of options.windows) {
    const count = Math.min(Math.floor(ids.length / w), options.maxWindows ?? Infinity);
    let nll = 0;
    let tokens = 0;
    for (let i = 0; i < count; i++) {
      const r = await sequenceNll(model, ids.slice(i * w, (i + 1) * w), options);
      nll += r.nll;
      tokens += r.count;
      options.onProgress?.({ window: w, index: i + 1, count });
    }
    const mean = tokens ? checkFiniteResult(nll / tokens, `the mean NLL of window size ${w}`) : null;
    const ppl = mean === null ? null : checkFiniteResult(Math.exp(mean), `the perplexity of window size ${w}`);
    results.push({ window: w, windows: count, tokens, nll: mean, ppl });
  }
  return { tokens: ids.length, results };
}
