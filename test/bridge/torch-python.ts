/**
 * The python with torch the bridge tests use. Tests needing it are skipped (with the reason) when none is
 * found, except with FOPEIFY_EXPECT_TORCH=1 (CI, which installs python3-torch): then its absence fails.
 */
import { it } from 'vitest';
import { findTorchPython, type TorchPython } from '../../src/bridge/python.js';
import { FopeifyError } from '../../src/errors.js';

export const EXPECT_TORCH = process.env.FOPEIFY_EXPECT_TORCH === '1';

let found: Promise<{ py: TorchPython | null; why: string }> | undefined;

export function torchPython(): Promise<{ py: TorchPython | null; why: string }> {
  found ??= findTorchPython().then(
    (py) => ({ py, why: '' }),
    (err: unknown) => {
      if (err instanceof FopeifyError) return { py: null, why: err.message };
      throw err;
    },
  );
  return found;
}

/** A test that fails when torch was expected (FOPEIFY_EXPECT_TORCH=1) and is missing. */
export function requireTorchWhenExpected(py: TorchPython | null, why: string): void {
  it.runIf(EXPECT_TORCH && !py)('finds a python with torch (FOPEIFY_EXPECT_TORCH=1)', () => {
    throw new Error(`FOPEIFY_EXPECT_TORCH=1 but ${why}`);
  });
  if (!py) it.skip(`torch tests skipped: ${why}`, () => undefined);
}

/** max |a − b| / max |b| over all rows. */
export function relativeError(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let diff = 0;
  let scale = 0;
  b.forEach((row, i) => {
    for (let j = 0; j < row.length; j++) {
      diff = Math.max(diff, Math.abs(a[i]![j]! - row[j]!));
      scale = Math.max(scale, Math.abs(row[j]!));
    }
  });
  return diff / scale;
}
