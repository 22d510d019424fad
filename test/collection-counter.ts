/**
 * A stand-in for src/backend/full-collection.ts that counts the full collections asked for (the real
 * V8 collection still runs). In a test file:
 *   vi.mock('../../src/backend/full-collection.js', async (original) => (await import('../collection-counter.js')).countingFullCollection(original));
 * and read `collections.count`.
 */
import type * as FullCollection from '../src/backend/full-collection.js';

export const collections = { count: 0 };

export async function countingFullCollection(importOriginal: <T>() => Promise<T>): Promise<typeof FullCollection> {
  const real = await importOriginal<typeof FullCollection>();
  return {
    fullCollection: () => {
      const gc = real.fullCollection();
      return gc && (() => (collections.count++, gc()));
    },
  };
}
