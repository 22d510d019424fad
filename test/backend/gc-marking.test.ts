/**
 * Where V8 marks while the native backend computes (gc-marking.ts): the decision, the flag set by a
 * training step and put back after it, and the user's way back to V8's default.
 */
import { availableParallelism } from 'node:os';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { applyMarkingPlace, currentMarkingPlace, markingPlace } from '../../src/backend/gc-marking.js';
import { loadNative } from '../../src/backend/native.js';
import { restoreKernels } from '../../src/backend/registry.js';
import { setupBackend } from '../../src/backend/select.js';
import type { DataPosition } from '../../src/train/data.js';
import { prepareModel } from '../../src/train/prepare.js';
import { resolveTrainSettings } from '../../src/train/recipe.js';
import { NONE_RECIPE } from '../../src/train/run-common.js';
import { Trainer } from '../../src/train/trainer.js';
import { collections } from '../collection-counter.js';
import { fixture, tempDir } from '../helpers.js';

vi.mock('../../src/backend/full-collection.js', async (original) => (await import('../collection-counter.js')).countingFullCollection(original));

describe('markingPlace', () => {
  it('marks on the main thread only when native threads occupy every core', () => {
    expect(markingPlace({ accelerated: true, threads: 2, cores: 2, env: {} })).toBe('main thread');
    expect(markingPlace({ accelerated: true, threads: 16, cores: 8, env: {} })).toBe('main thread');
    expect(markingPlace({ accelerated: true, threads: 1, cores: 2, env: {} })).toBe('concurrent');
    expect(markingPlace({ accelerated: false, threads: 2, cores: 2, env: {} })).toBe('concurrent');
  });

  it('FOPEIFY_CONCURRENT_MARKING=1 keeps V8 default', () => {
    expect(markingPlace({ accelerated: true, threads: 2, cores: 2, env: { FOPEIFY_CONCURRENT_MARKING: '1' } })).toBe('concurrent');
    expect(markingPlace({ accelerated: true, threads: 2, cores: 2, env: { FOPEIFY_CONCURRENT_MARKING: 'true' } })).toBe('concurrent');
    expect(markingPlace({ accelerated: true, threads: 2, cores: 2, env: { FOPEIFY_CONCURRENT_MARKING: '0' } })).toBe('main thread');
  });

  it('applies the flag and back, each change right after a full collection, and V8 keeps collecting', () => {
    collections.count = 0;
    applyMarkingPlace('main thread');
    expect(currentMarkingPlace()).toBe('main thread');
    // A marking cycle under way when the flag flips crashed V8: a full collection finishes it first.
    expect(collections.count).toBe(1);
    applyMarkingPlace('main thread');
    expect(collections.count).toBe(1); // no change, no collection
    // Allocation that makes V8 collect (external memory pressure) with the flag flipped.
    let keep = 0;
    for (let i = 0; i < 200; i++) keep += new Float32Array(1 << 20).length;
    applyMarkingPlace('concurrent');
    expect(currentMarkingPlace()).toBe('concurrent');
    expect(collections.count).toBe(2);
    for (let i = 0; i < 200; i++) keep += new Float32Array(1 << 20).length;
    expect(keep).toBe(400 * (1 << 20));
  });
});

describe('Trainer.step', () => {
  afterAll(() => restoreKernels());
  const native = loadNative({ threads: 1 }).blas !== null;

  it.skipIf(!native)('marks on the main thread during a native step on every core, and puts the setting back', async () => {
    const root = tempDir('fopeify-gc-marking-');
    const dir = await fixture(root, { seed: 3 });
    const settings = resolveTrainSettings(NONE_RECIPE, { seqLen: 16, steps: 3 });
    const prepared = await prepareModel(dir, NONE_RECIPE, settings.seqLen);
    const chunk = Int32Array.from({ length: 17 }, (_, i) => (i * 5) % 64);
    const seen: string[] = [];
    // The trainer draws its micro-batch inside the step: what V8's setting is there is what the step runs with.
    const data = { train: { take: (pos: DataPosition) => (seen.push(currentMarkingPlace()), { chunks: [chunk], next: pos }) }, heldOut: [chunk] };
    for (const threads of [availableParallelism(), ...(availableParallelism() > 1 ? [1] : [])]) {
      const backend = await setupBackend({ backend: 'native', threads, quiet: true });
      const trainer = Trainer.create(prepared, settings, data, { backend });
      expect(currentMarkingPlace()).toBe('concurrent');
      await trainer.step();
      expect(currentMarkingPlace()).toBe('concurrent');
      expect(seen.pop()).toBe(threads === availableParallelism() ? 'main thread' : 'concurrent');
      trainer.dispose();
    }
    for (const v of prepared.weights.values()) v.dispose();
  });
});
