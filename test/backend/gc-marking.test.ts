/**
 * Where V8 marks while the native backend computes (gc-marking.ts): the decision, the flag applied
 * by setupBackend, and the user's way back to V8's default.
 */
import { availableParallelism } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { applyMarkingPlace, currentMarkingPlace, markingPlace } from '../../src/backend/gc-marking.js';
import { restoreKernels } from '../../src/backend/registry.js';
import { setupBackend } from '../../src/backend/select.js';
import { loadNative } from '../../src/backend/native.js';

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

  it('applies the flag and back, and V8 keeps collecting', () => {
    applyMarkingPlace('main thread');
    expect(currentMarkingPlace()).toBe('main thread');
    // Allocation that makes V8 collect (external memory pressure) with the flag flipped.
    let keep = 0;
    for (let i = 0; i < 200; i++) keep += new Float32Array(1 << 20).length;
    applyMarkingPlace('concurrent');
    expect(currentMarkingPlace()).toBe('concurrent');
    for (let i = 0; i < 200; i++) keep += new Float32Array(1 << 20).length;
    expect(keep).toBe(400 * (1 << 20));
  });
});

describe('setupBackend', () => {
  afterAll(() => {
    restoreKernels();
    applyMarkingPlace('concurrent');
  });
  const native = loadNative({ threads: 1 }).blas !== null;

  it.skipIf(!native)('native on every core marks on the main thread; fewer threads or plain cpu keep concurrent marking', async () => {
    const cores = availableParallelism();
    const all = await setupBackend({ backend: 'native', threads: cores, quiet: true });
    expect(all.gcMarking).toBe('main thread');
    expect(currentMarkingPlace()).toBe('main thread');
    if (cores > 1) {
      const fewer = await setupBackend({ backend: 'native', threads: cores - 1, quiet: true });
      expect(fewer.gcMarking).toBe('concurrent');
      expect(currentMarkingPlace()).toBe('concurrent');
    }
    const plain = await setupBackend({ backend: 'cpu', quiet: true });
    expect(plain.gcMarking).toBe('concurrent');
  });
});
