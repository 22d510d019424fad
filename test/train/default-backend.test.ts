/**
 * A library user who calls finetune() without fopeify's backend set-up gets tfjs's default backend, and the
 * run completes (the model card named an undefined backend and crashed before).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { finetune } from '../../src/train/index.js';
import { fixture, tempDir } from '../helpers.js';

it('finetune() works without setupBackend and names the backend in its card', async () => {
  const root = tempDir('fopeify-ft-default-');
  const model = await fixture(root, { seed: 4, shape: { maxPositionEmbeddings: 32 } });
  const text = path.join(root, 'corpus.txt');
  await fs.writeFile(text, 'a small corpus of words that repeat and repeat again '.repeat(200));
  const out = path.join(root, 'out');
  await finetune({ model, outDir: out, recipe: 'none', data: text, settings: { seqLen: 32, steps: 1, batch: 1, evalEvery: 0, saveEvery: 0 } });
  const card = await fs.readFile(path.join(out, 'README.md'), 'utf8');
  expect(card).toMatch(/backend/i);
});
