/**
 * Decoding with the KV cache: one prefill over the prompt, then one token per step. Greedy by default
 * (temperature 0); sampling with temperature, top-k and top-p draws from a seeded generator, so a run is
 * reproducible. The steps after the prefill run as decode-step.ts's fused step on preallocated buffers
 * when the kernels offer it (native), else as tensor forward passes, each inside tf.tidy; either way
 * tf.memory().numTensors stays flat over a decode loop.
 */
import * as tf from '../backend/tfjs.js';
import type { ModelSpec } from '../config/model-spec.js';
import { FopeifyError } from '../errors.js';
import type { Kernels } from '../backend/kernels.js';
import { SeededRandom } from '../random.js';
import { KvCache } from './cache.js';
import { TokenDecoder } from './decode-step.js';
import { checkFiniteValues } from './finite.js';
import { forwardLogits, type ForwardOptions } from './llama.js';
import type { WeightMap } from './weights.js';

export interface SamplingOptions {
  /** 0 (default) = greedy argmax. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 or undefined: all). */
  topK?: number;
  /** Nucleus sampling: the smallest set whose probability reaches p (1 or undefined: all). */
  topP?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** New tokens to produce at most (default 32). */
  maxNewTokens?: number;
  /** Seed of the sampler (default 0). */
  seed?: number;
  /** Stop after producing any of these ids (default: the config's eos_token_id; null: never). */
  eosTokenId?: number | readonly number[] | null;
  /** Called with each new token; return false to stop. */
  onToken?: (id: number, index: number) => void | boolean;
  /** Key block size of the cache (default 512). */
  cacheBlockSize?: number;
  /** Attention query block for the prefill. */
  queryBlock?: number;
  /** The backend's kernels (BackendInfo.kernels; default: plain tf ops). */
  kernels?: Kernels;
}

export interface GenerateResult {
  /** The new tokens (prompt excluded). */
  tokens: number[];
  stopReason: 'eos' | 'length' | 'callback';
  /** Wall time of the prompt prefill and of the decode steps, ms. */
  prefillMs: number;
  decodeMs: number;
}

/** Index of the largest value (the first one on ties, as torch.argmax). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Pick the next token from one row of logits. */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, rng: SeededRandom): number {
  const temperature = options.temperature ?? 0;
  if (!(temperature > 0)) return argmax(logits);
  const V = logits.length;
  let idx = Array.from({ length: V }, (_, i) => i);
  idx.sort((a, b) => logits[b]! - logits[a]!);
  const topK = options.topK && options.topK > 0 ? Math.min(options.topK, V) : V;
  idx = idx.slice(0, topK);
  const max = logits[idx[0]!]!;
  let probs = idx.map((i) => Math.exp((logits[i]! - max) / temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  const topP = options.topP ?? 1;
  if (topP < 1) {
    let cum = 0;
    let keep = 0;
    while (keep < probs.length) {
      cum += probs[keep]! / total;
      keep++;
      if (cum >= topP) break;
    }
    idx = idx.slice(0, keep);
    probs = probs.slice(0, keep);
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = rng.next() * total;
  for (let i = 0; i < probs.length; i++) {
    r -= probs[i]!;
    if (r < 0) return idx[i]!;
  }
  return idx[idx.length - 1]!;
}

function eosSet(eos: number | readonly number[] | null | undefined): Set<number> {
  if (eos === null || eos === undefined) return new Set();
  return new Set(typeof eos === 'number' ? [eos] : eos);
}

/** Logits of the last position as plain numbers, disposing the tensor. */
async function lastLogits(weights: WeightMap, spec: ModelSpec, ids: number[], options: ForwardOptions): Promise<Float32Array> {
  const t = tf.tidy(() => forwardLogits(weights, spec, ids, { ...options, logits: 'last' }));
  try {
    const data = (await t.data()) as Float32Array;
    // argmax over NaN picks token 0 and sampling picks garbage: a NaN must not become a token.
    checkFiniteValues(data, 'the next-token logits');
    return data;
  } finally {
    t.dispose();
  }
}

/** Generate from a prompt with a fresh KV cache (freed at the end). */
export async function generate(weights: WeightMap, spec: ModelSpec, prompt: readonly number[], options: GenerateOptions = {}): Promise<GenerateResult> {
  if (prompt.length === 0) throw new FopeifyError('BAD_ARGUMENT', 'the prompt has no tokens');
  const maxNew = options.maxNewTokens ?? 32;
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new FopeifyError('BAD_ARGUMENT', `maxNewTokens must be a non-negative integer, got ${maxNew}`);
  const eos = eosSet(options.eosTokenId === undefined ? spec.eosTokenId : options.eosTokenId);
  const rng = new SeededRandom(options.seed ?? 0, 'generate');
  const cache = new KvCache(spec.numLayers, { blockSize: options.cacheBlockSize });
  const tokens: number[] = [];
  let stopReason: GenerateResult['stopReason'] = 'length';
  let prefillMs = 0;
  const t0 = performance.now();
  try {
    if (maxNew === 0) return { tokens, stopReason, prefillMs, decodeMs: 0 };
    let logits = await lastLogits(weights, spec, [...prompt], { cache, queryBlock: options.queryBlock, kernels: options.kernels });
    // The fused step continues from the prefill's cache in buffers of its own, sized for the whole run.
    const decode = options.kernels?.decode;
    const fused = decode && maxNew > 1 ? TokenDecoder.fromCache(weights, spec, decode, cache, prompt.length + maxNew) : null;
    if (fused) cache.dispose();
    prefillMs = performance.now() - t0;
    for (;;) {
      const next = sampleToken(logits, options, rng);
      tokens.push(next);
      if (options.onToken?.(next, tokens.length - 1) === false) {
        stopReason = 'callback';
        break;
      }
      if (eos.has(next)) {
        stopReason = 'eos';
        break;
      }
      if (tokens.length >= maxNew) break;
      if (fused) {
        logits = fused.step(next);
        checkFiniteValues(logits, 'the next-token logits');
      } else {
        logits = await lastLogits(weights, spec, [next], { cache, kernels: options.kernels });
      }
    }
    return { tokens, stopReason, prefillMs, decodeMs: performance.now() - t0 - prefillMs };
  } finally {
    cache.dispose();
  }
}
