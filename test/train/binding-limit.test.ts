/**
 * Training on a GPU adapter: every tensor of a step must fit one storage binding. Default blocks are
 * shrunk to fit, given ones that do not fit and sequences too long for any block size are refused
 * with an error naming the option (SmolLM2-135M's shape: V 49152, H 576, I 1536, 9 heads).
 */
import { describe, expect, it } from 'vitest';
import type { ModelSpec } from '../../src/config/model-spec.js';
import { FopeifyError } from '../../src/errors.js';
import { DEFAULT_KEY_BLOCK, DEFAULT_QUERY_BLOCK } from '../../src/model/attention.js';
import { defaultLossChunk, fitBlocksToBinding, lossChunks } from '../../src/train/binding-limit.js';

const spec = { vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, numHeads: 9, numKvHeads: 3, headDim: 64 } as ModelSpec;
const MIB = 2 ** 20;
const embed = 49152 * 576;

describe('fitBlocksToBinding', () => {
  it('keeps the defaults where they fit (2 GiB binding, 8192 tokens)', () => {
    expect(fitBlocksToBinding(spec, { batch: 1, seqLen: 8192, largestWeight: embed }, {}, 2048 * MIB)).toEqual({
      queryBlock: DEFAULT_QUERY_BLOCK,
      keyBlock: DEFAULT_KEY_BLOCK,
      lossChunk: defaultLossChunk(49152),
    });
  });

  it('shrinks default blocks and loss chunk to a small binding (128 MiB), each tensor then fits', () => {
    const limit = 128 * MIB;
    const b = fitBlocksToBinding(spec, { batch: 8, seqLen: 2048, largestWeight: embed }, {}, limit);
    expect(b.lossChunk * 49152 * 4).toBeLessThanOrEqual(limit);
    expect(8 * 9 * b.queryBlock * b.keyBlock * 4).toBeLessThanOrEqual(limit);
    const tiny = fitBlocksToBinding(spec, { batch: 16, seqLen: 512, largestWeight: 1000 }, {}, 64 * MIB);
    expect(tiny.queryBlock).toBeLessThan(DEFAULT_QUERY_BLOCK);
    expect(16 * 9 * tiny.queryBlock * tiny.keyBlock * 4).toBeLessThanOrEqual(64 * MIB);
  });

  it('refuses given sizes that do not fit, naming the option, and sequences no block size shrinks', () => {
    const fail = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return err as FopeifyError;
      }
      throw new Error('no error');
    };
    const blocks = fail(() => fitBlocksToBinding(spec, { batch: 4, seqLen: 8192, largestWeight: embed }, { queryBlock: 4096, keyBlock: 8192 }, 1024 * MIB));
    expect(blocks).toBeInstanceOf(FopeifyError);
    expect(blocks.message).toMatch(/4608 MiB, more than the GPU adapter binds in one tensor \(1024 MiB\).*`queryBlock`/);
    const chunk = fail(() => fitBlocksToBinding(spec, { batch: 1, seqLen: 8192, largestWeight: embed }, { lossChunk: 4096 }, 128 * MIB));
    expect(chunk.message).toMatch(/`lossChunk` of 4096 rows: give at most 682/);
    const long = fail(() => fitBlocksToBinding(spec, { batch: 16, seqLen: 8192, largestWeight: embed }, {}, 512 * MIB));
    expect(long.message).toMatch(/`settings.seqLen` or `settings.batch`/);
    const weight = fail(() => fitBlocksToBinding(spec, { batch: 1, seqLen: 512, largestWeight: embed }, {}, 64 * MIB));
    expect(weight.message).toMatch(/largest weight/);
  });
});

describe('lossChunks', () => {
  it('cuts the rows into as few chunks as the limit allows, of equal size, covering every row once', () => {
    expect(lossChunks(2048, 1302)).toEqual([[0, 1024], [1024, 1024]]);
    expect(lossChunks(512, 1302)).toEqual([[0, 512]]);
    expect(lossChunks(10, 4)).toEqual([[0, 4], [4, 4], [8, 2]]);
    for (const [N, c] of [[1, 1], [7, 3], [2049, 1302], [100, 7]]) {
      const chunks = lossChunks(N!, c!);
      expect(chunks.length).toBe(Math.ceil(N! / c!));
      expect(chunks.every(([, n]) => n >= 1 && n <= c!)).toBe(true);
      chunks.forEach(([s, n], i) => expect(s).toBe(i === 0 ? 0 : chunks[i - 1]![0] + chunks[i - 1]![1]));
      expect(chunks.at(-1)![0] + chunks.at(-1)![1]).toBe(N);
    }
  });
});
