import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/select.js';
import { finetune, readMetrics } from '../../src/train/index.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir();

describe('finetune on the wasm backend', () => {
  it('trains the embeddings although tf.gather has no gradient there (custom scatter-add gradient)', async () => {
    const info = await setupBackend({ backend: 'wasm', quiet: true });
    expect(info.name).toBe('wasm');
    const model = await fixture(root, { seed: 12 });
    const data = path.join(root, 't.txt');
    await fs.writeFile(data, 'the quick brown fox jumps over the lazy dog. '.repeat(80));
    const r = await finetune({
      model,
      outDir: path.join(root, 'out'),
      data,
      settings: { seqLen: 32, steps: 3, lr: 1e-2, warmupSteps: 0, trainable: 'all' },
    });
    expect(r.completed).toBe(true);
    expect(r.backend).toMatch(/wasm/);
    const m = await readMetrics(path.join(root, 'out'));
    expect(m.every((x) => Number.isFinite(x.loss))).toBe(true);
    expect(m[2]!.loss).toBeLessThan(m[0]!.loss);
  });
});
