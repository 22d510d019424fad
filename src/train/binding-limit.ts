/**
 * One tensor must fit in one storage binding of a GPU adapter (maxStorageBufferBindingSize, ≈ 128 MiB
 * to 4 GiB). Before training on such an adapter, the largest tensors a step creates are sized from the
 * model and the settings: the attention score block, the LM-head chunk's logits, the full-sequence
 * activations and the largest weight. Block sizes left to their defaults are chosen to fit; sizes the
 * caller gave that do not fit, and tensors no block size shrinks, are refused with a clear error
 * instead of failing inside the GPU driver.
 */
import type { ModelSpec } from '../config/model-spec.js';
import { badOption, FopeifyError } from '../errors.js';
import { DEFAULT_KEY_BLOCK, DEFAULT_QUERY_BLOCK } from '../model/attention.js';

export interface TrainingBlocks {
  queryBlock?: number;
  keyBlock?: number;
  lossChunk?: number;
}

const F32 = 4;
const MIB = 2 ** 20;
const mib = (bytes: number) => `${(bytes / MIB).toFixed(0)} MiB`;

/**
 * LM-head rows per loss chunk when not given: about 64M logits (256 MB), within [16, 2048]. Each chunk
 * reads the whole head weight twice and updates its whole gradient once (at SmolLM2's 49152 × 576, 113 MB
 * each), so fewer, larger chunks make the head's GEMMs faster: two chunks of 1024 rows instead of four of
 * ≤ 651 took 10–20 % less time on a 2-core Xeon (prof/head-gemm-chunks.mjs).
 */
export function defaultLossChunk(vocabSize: number): number {
  return Math.max(16, Math.min(2048, Math.floor(64_000_000 / vocabSize)));
}

/** `[start, rows]` of the loss chunks of N rows: as few as `lossChunk` rows each allows, of equal size (2048 rows at 1302: 2 × 1024, not 1302 + 746). */
export function lossChunks(N: number, lossChunk: number): [number, number][] {
  const size = Math.ceil(N / Math.ceil(N / lossChunk));
  const chunks: [number, number][] = [];
  for (let s = 0; s < N; s += size) chunks.push([s, Math.min(size, N - s)]);
  return chunks;
}

/**
 * The blocks to train with under a binding limit of `limit` bytes: the given ones when they fit, the
 * defaults shrunk until they fit when not given. Throws when a given size, or the sequence itself, is
 * too large for the adapter.
 */
export function fitBlocksToBinding(
  spec: ModelSpec,
  shape: { batch: number; seqLen: number; largestWeight: number },
  blocks: TrainingBlocks,
  limit: number,
): Required<TrainingBlocks> {
  const { batch: B, seqLen: T } = shape;
  if (shape.largestWeight * F32 > limit) {
    throw new FopeifyError('BAD_ARGUMENT', `${refuseText(shape.largestWeight * F32, limit)}: the model's largest weight; it cannot be trained on this adapter`);
  }
  const rows = B * T;
  const widest = Math.max(spec.intermediateSize, spec.numHeads * spec.headDim, spec.hiddenSize);
  if (rows * widest * F32 > limit) {
    throw badOption(['settings.seqLen', 'settings.batch'], `${refuseText(rows * widest * F32, limit)}: lower \`settings.seqLen\` or \`settings.batch\``);
  }
  // LM-head chunk: logits, softmax and dlogits are [chunk, V].
  const V = spec.vocabSize;
  const maxChunk = Math.floor(limit / (V * F32));
  let lossChunk = blocks.lossChunk ?? Math.min(defaultLossChunk(V), maxChunk);
  if (Math.min(lossChunk, rows) > maxChunk) throw badOption('lossChunk', `${refuseText(lossChunk * V * F32, limit)} for a \`lossChunk\` of ${lossChunk} rows: give at most ${maxChunk}`);
  lossChunk = Math.max(1, lossChunk);
  // Attention: scores of one block pair are [B·nKv, R·queryBlock, keyBlock].
  const heads = B * spec.numHeads;
  const scoreBytes = (qb: number, kb: number) => heads * Math.min(qb, T) * Math.min(kb, T) * F32;
  let queryBlock = blocks.queryBlock ?? DEFAULT_QUERY_BLOCK;
  let keyBlock = blocks.keyBlock ?? DEFAULT_KEY_BLOCK;
  if (scoreBytes(queryBlock, keyBlock) > limit) {
    if (blocks.queryBlock !== undefined || blocks.keyBlock !== undefined) {
      throw badOption(['queryBlock', 'keyBlock'], `${refuseText(scoreBytes(queryBlock, keyBlock), limit)} for attention blocks of ${queryBlock} × ${keyBlock}: give smaller \`queryBlock\` / \`keyBlock\``);
    }
    while (scoreBytes(queryBlock, keyBlock) > limit && queryBlock > 1) queryBlock = Math.ceil(queryBlock / 2);
    while (scoreBytes(queryBlock, keyBlock) > limit && keyBlock > 1) keyBlock = Math.ceil(keyBlock / 2);
  }
  return { queryBlock, keyBlock, lossChunk };
}

function refuseText(bytes: number, limit: number): string {
  return `one tensor of a training step would be ${mib(bytes)}, more than the GPU adapter binds in one tensor (${mib(limit)})`;
}
