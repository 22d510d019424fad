/**
 * Non-finite weights (issue 18): a load refuses NaN, ±Inf and FLT_MAX-like values naming the tensor and
 * leaks no tensor doing so; `allowNonFinite` loads them, and then every evaluation refuses to report a
 * number computed from them. A forward that throws leaks nothing either.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { perplexityByWindow } from '../../src/eval/perplexity.js';
import { loadEvalModel } from '../../src/eval/runner.js';
import { firstNonFinite, MAX_ABS_WEIGHT } from '../../src/model/finite.js';
import { loadModel } from '../../src/model/index.js';
import { fixture, tempDir } from '../helpers.js';
import { finetune } from '../../src/train/index.js';
import { runCli, type CliResult } from '../cli/cli-helpers.js';
import { useCpu } from './helpers.js';

const root = tempDir('fopeify-nonfinite-');
beforeAll(useCpu);

/** Overwrite element `index` of an F32 tensor in a single-file fixture, in place. */
async function poison(dir: string, name: string, index: number, value: number): Promise<void> {
  const file = path.join(dir, 'model.safetensors');
  const bytes = await fs.readFile(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const entry = header[name]!;
  expect(entry.dtype).toBe('F32');
  bytes.writeFloatLE(value, 8 + headerLen + entry.data_offsets[0] + 4 * index);
  await fs.writeFile(file, bytes);
}

async function rejection(p: Promise<unknown>): Promise<FopeifyError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(FopeifyError);
    return e as FopeifyError;
  }
  throw new Error('expected a rejection');
}

describe('non-finite weights', () => {
  it('finds NaN, ±Inf and values beyond the limit in one pass', () => {
    expect(firstNonFinite(new Float32Array([1, 2, 3]))).toBe(-1);
    expect(firstNonFinite(new Float32Array([1, NaN, Infinity]))).toBe(1);
    expect(firstNonFinite([0, -Infinity])).toBe(1);
    expect(firstNonFinite([1e17, 0], MAX_ABS_WEIGHT)).toBe(0);
    expect(firstNonFinite([-1e17], MAX_ABS_WEIGHT)).toBe(0);
    expect(firstNonFinite([1e4, -1e4], MAX_ABS_WEIGHT)).toBe(-1);
  });

  const cases: [string, string, number, number, RegExp][] = [
    ['one NaN in model.norm.weight', 'model.norm.weight', 5, NaN, /tensor model\.norm\.weight holds NaN at element \[5\]/],
    ['+Inf in the last tensor loaded (lm_head)', 'lm_head.weight', 3 * 64 + 2, Infinity, /tensor lm_head\.weight holds Infinity at element \[3, 2\]/],
    ['FLT_MAX in the embedding', 'model.embed_tokens.weight', 0, 3.4028234663852886e38, /model\.embed_tokens\.weight holds 3\.403e\+38 \(beyond ±1e\+16\)/],
  ];
  for (const [what, name, index, value, message] of cases) {
    it(`refuses ${what}, naming the tensor, and leaks no tensor`, async () => {
      const dir = await fixture(root, { kind: 'llama', seed: 7 });
      await poison(dir, name, index, value);
      const before = tf.memory().numTensors;
      const err = await rejection(loadModel(dir, { layout: 'inference' }));
      expect(err.code).toBe('BAD_SAFETENSORS');
      expect(err.message).toMatch(message);
      expect(err.message).toMatch(/\(`allowNonFinite` loads it anyway\)$/);
      expect(err.options).toEqual(['allowNonFinite']);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('loads them with allowNonFinite; perplexity and greedy decoding then refuse NaN', async () => {
    const dir = await fixture(root, { kind: 'llama', seed: 8 });
    await poison(dir, 'model.norm.weight', 0, NaN);
    const model = await loadModel(dir, { allowNonFinite: true });
    try {
      const ids = Array.from(Buffer.from('a window of text, twice over'));
      const err = await rejection(perplexityByWindow(model, ids, { windows: [8] }));
      expect(err.code).toBe('NON_FINITE');
      expect(err.message).toMatch(/mean NLL of window size 8 is NaN/);
      const gen = await rejection(model.generate(ids.slice(0, 4), { maxNewTokens: 3 }));
      expect(gen.code).toBe('NON_FINITE');
      expect(gen.message).toMatch(/next-token logits/);
    } finally {
      model.dispose();
    }
    const lm = await loadEvalModel(dir, { allowNonFinite: true });
    try {
      const err = await rejection(lm.argmaxAt([1, 2, 3, 4], [2, 3]));
      expect(err.code).toBe('NON_FINITE');
      expect(err.message).toMatch(/logits at position 2/);
    } finally {
      lm.dispose();
    }
  });
});

describe('a failing forward', () => {
  it('names an id outside the vocabulary and leaks no tensor', async () => {
    const dir = await fixture(root, { kind: 'qwen3', seed: 9 });
    const model = await loadModel(dir);
    try {
      const before = tf.memory().numTensors;
      for (const ids of [[1, 2, 260], [1, -1], [1.5]]) {
        const err = (() => {
          try {
            model.forward(ids);
          } catch (e) {
            return e as FopeifyError;
          }
          throw new Error('no error');
        })();
        expect(err).toBeInstanceOf(FopeifyError);
        expect(err.code).toBe('BAD_ARGUMENT');
        expect(err.message).toMatch(/outside the vocabulary \(0\.\.259\)/);
      }
      expect(() => model.forward([1, 2, 3], { positions: [0, 1] })).toThrow(/2 positions given for 3 tokens/);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      model.dispose();
    }
  });
});

describe('commands', () => {
  it('logits refuses the load, and with --allow-non-finite refuses the NaN logits', async () => {
    const dir = await fixture(root, { kind: 'llama', seed: 10 });
    await poison(dir, 'model.layers.1.mlp.down_proj.weight', 17, NaN);
    // The backend and loading lines come first on stderr; the error is the last line, with no stack.
    const failure = (r: CliResult, pattern: RegExp) => {
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n').at(-1)).toMatch(pattern);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).not.toMatch(/NaN/);
    };
    failure(runCli(['logits', dir, '--ids', '1,2,3', '--backend', 'cpu']), /^fopeify: error: tensor model\.layers\.1\.mlp\.down_proj\.weight holds NaN.*\(--allow-non-finite loads it anyway\)$/);
    failure(runCli(['logits', dir, '--ids', '1,2,3', '--backend', 'cpu', '--allow-non-finite', '--json']), /^fopeify: error: the logits holds NaN/);
  });

  it('finetune stops with a typed error at a NaN loss and writes no NaN metric', async () => {
    const dir = await fixture(root, { kind: 'llama', seed: 11 });
    await poison(dir, 'model.norm.weight', 3, NaN);
    const outDir = path.join(root, 'ft-nan');
    const text = path.join(root, 'ft.txt');
    await fs.writeFile(text, 'The cat sees the ball. A dog likes a red box. '.repeat(40));
    const options = { model: dir, outDir, data: text, recipe: 'none', settings: { seqLen: 16, steps: 2, batch: 1, evalEvery: 0, saveEvery: 0 } };
    const refused = await rejection(finetune(options));
    expect(refused.message).toMatch(/model\.norm\.weight holds NaN/);
    const err = await rejection(finetune({ ...options, force: true, allowNonFinite: true }));
    expect(err.code).toBe('NON_FINITE');
    expect(err.message).toMatch(/training loss is NaN at step 1/);
    const metrics = await fs.readFile(path.join(outDir, 'metrics.jsonl'), 'utf8').catch(() => '');
    expect(metrics).not.toMatch(/NaN|null/);
  });
});
