/**
 * A long prompt into a KV cache, in steps of a few hundred tokens (like llama.cpp's micro-batches): each
 * step runs every layer over its tokens and attends over the cache, so the activations of one step —
 * the `[T, intermediate]` SwiGLU tensors, the query heads and their rotations — exist for a step's
 * tokens only, never for the whole prompt. Only the cache grows with the prompt. Mathematically the
 * same forward pass: causal attention over the cache's blocks sees exactly the keys one pass would,
 * step boundaries fall on the cache's block boundaries (no partial block is ever copied), and every
 * other op works row by row.
 */
import * as tf from '../backend/tfjs.js';
import { recordingGradient } from '../backend/kernels.js';
import type { ModelSpec } from '../config/model-spec.js';
import type { ForwardOptions, TokenIds } from './llama.js';
import type { WeightMap } from './weights.js';

/** Tokens per prefill step by default: 512 cost ~10 % of the prefill speed, 1024 is within noise of one pass (4096 tokens, SmolLM2-135M shape). */
export const DEFAULT_PREFILL_CHUNK = 1024;

type Forward = (weights: WeightMap, spec: ModelSpec, ids: TokenIds, options: ForwardOptions) => tf.Tensor3D;

/**
 * Which hidden states a stepped prefill returns: every token's, or only its last step's (enough for the
 * logits of the last token: the earlier steps' `[B, step, H]` are freed as soon as the next one is
 * done, instead of being held and concatenated into one `[B, T, H]`).
 */
export type KeepHidden = 'all' | 'last-step';

/**
 * Below this much of one layer's temporaries per step the garbage is left to V8's own collections: a
 * full collection costs a few milliseconds whatever it frees (~43 MiB a layer at 1024 tokens for the
 * SmolLM2-135M shape; a test model's few KiB would pay the cost for nothing).
 */
export const COLLECT_MIN_LAYER_BYTES = 16 * 2 ** 20;

/**
 * About the bytes of the tensors one decoder layer makes for `rows` token rows (float32), counted from
 * decoder.ts's inference layer: normed input, o_proj, mid residual, normed MLP input, down_proj and
 * output residual (6·H); q, rotated q and the attention output (3·Q); k, v, rotated k, their head-major
 * copies for the cache and the cache's blocks (6·K); gate, up and the activation (3·I).
 */
export function layerTemporaryBytes(spec: Pick<ModelSpec, 'hiddenSize' | 'intermediateSize' | 'numHeads' | 'numKvHeads' | 'headDim'>, rows: number): number {
  const Q = spec.numHeads * spec.headDim;
  const K = spec.numKvHeads * spec.headDim;
  return 4 * rows * (6 * spec.hiddenSize + 3 * Q + 6 * K + 3 * spec.intermediateSize);
}

/**
 * Whether a stepped prefill collects garbage after each layer when the caller does not say
 * (ForwardOptions.collectBetweenLayers): on the cpu backend, whose tensor data are ArrayBuffers that
 * only a V8 collection frees, when a layer's temporaries of one step (`layerBytes`) are large enough to
 * matter, unless FOPEIFY_PREFILL_GC=0.
 */
export function collectsByDefault(layerBytes: number, env: NodeJS.ProcessEnv = process.env, backend: string = tf.getBackend()): boolean {
  return backend === 'cpu' && layerBytes >= COLLECT_MIN_LAYER_BYTES && env.FOPEIFY_PREFILL_GC?.trim() !== '0';
}

/** Sequences in `ids`. */
function batchSize(ids: TokenIds): number {
  if (ids instanceof tf.Tensor) return ids.shape[0];
  return ids.length > 0 && typeof (ids as ArrayLike<unknown>)[0] !== 'number' ? ids.length : 1;
}

/** Tokens per sequence of `ids`, or null when they are not one rectangular batch (the caller reports that). */
function sequenceLength(ids: TokenIds): number | null {
  if (ids instanceof tf.Tensor) return ids.rank === 2 ? ids.shape[1] : null;
  if (ids.length > 0 && typeof (ids as ArrayLike<unknown>)[0] !== 'number') {
    const rows = ids as readonly (readonly number[])[];
    const T = rows[0]!.length;
    return rows.every((r) => r.length === T) ? T : null;
  }
  return ids.length;
}

/** Tokens `start .. end−1` of every sequence. */
function sliceIds(ids: TokenIds, start: number, end: number): TokenIds {
  if (ids instanceof tf.Tensor) return tf.slice(ids, [0, start], [ids.shape[0], end - start]);
  if (ids.length > 0 && typeof (ids as ArrayLike<unknown>)[0] !== 'number') {
    return (ids as readonly (readonly number[])[]).map((r) => r.slice(start, end));
  }
  return (ids as readonly number[] | Int32Array).slice(start, end);
}

/** Positions `start .. end−1`, keeping their type (a Float32Array stays float32). */
function slicePositions(p: ArrayLike<number>, start: number, end: number): ArrayLike<number> {
  const sliceable = p as ArrayLike<number> & { slice?: (s: number, e: number) => ArrayLike<number> };
  return typeof sliceable.slice === 'function' ? sliceable.slice(start, end) : Array.from({ length: end - start }, (_, i) => p[start + i]!);
}

/**
 * Final hidden states `[B, T, H]` of a prefill into `options.cache` computed in steps, or null when one
 * pass is the way: no cache, a prompt of at most one step, a gradient being recorded, or ids that the
 * single pass must reject. Step boundaries sit at multiples of the step size in the cache's sequence
 * (itself rounded up to the cache's block size). `keep: 'last-step'` returns the last step's `[B, Tlast, H]` only.
 */
export function prefillInSteps(
  forward: Forward,
  weights: WeightMap,
  spec: ModelSpec,
  ids: TokenIds,
  options: ForwardOptions,
  keep: KeepHidden = 'all',
): tf.Tensor3D | null {
  const cache = options.cache;
  if (!cache || recordingGradient()) return null;
  const T = sequenceLength(ids);
  const requested = options.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
  if (T === null || !(requested >= 1) || !Number.isFinite(requested)) return null;
  const step = Math.ceil(Math.floor(requested) / cache.blockSize) * cache.blockSize;
  if (T <= step || (options.positions && options.positions.length !== T)) return null;
  const collectBetweenLayers = options.collectBetweenLayers ?? collectsByDefault(layerTemporaryBytes(spec, step * batchSize(ids)));
  const parts: tf.Tensor3D[] = [];
  try {
    const first = cache.length;
    for (let s = 0; s < T; ) {
      const e = Math.min(T, (Math.floor((first + s) / step) + 1) * step - first);
      const part = sliceIds(ids, s, e);
      try {
        if (keep === 'last-step') parts.pop()?.dispose();
        parts.push(
          forward(weights, spec, part, {
            ...options,
            positions: options.positions ? slicePositions(options.positions, s, e) : undefined,
            prefillChunk: Infinity,
            collectBetweenLayers,
          }),
        );
      } finally {
        if (part instanceof tf.Tensor && part !== ids) part.dispose();
      }
      s = e;
    }
    if (parts.length === 1) return parts.pop()!;
    return tf.concat(parts, 1);
  } finally {
    for (const p of parts) p.dispose();
  }
}
