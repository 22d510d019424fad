/**
 * Whether the webgpu backend can run in this process, found once per test file. Without an adapter
 * the device tests skip with the reason, unless FOPEIFY_EXPECT_WEBGPU=1 (CI, where the Mesa packages
 * are installed) makes that a failure.
 */
import { expect } from 'vitest';
import { probeWebGpu, type WebGpuProbe } from '../../src/backend/webgpu.js';
import { maxRelErr } from './helpers.js';

export const expectWebGpu = process.env.FOPEIFY_EXPECT_WEBGPU === '1';

export async function webgpuProbe(): Promise<WebGpuProbe> {
  const probe = await probeWebGpu();
  if (!probe.ok && !expectWebGpu) {
    console.warn(`webgpu tests skipped: ${probe.reason} (CI installs Mesa's libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri)`);
  }
  return probe;
}

/** Fails (rather than skips) when CI expects WebGPU and there is none. */
export function assertWebGpuWhenExpected(probe: WebGpuProbe): void {
  if (expectWebGpu) expect(probe.ok ? 'adapter found' : probe.reason).toBe('adapter found');
}

/** maxRelErr of values read asynchronously (dataSync throws on webgpu under Node), lengths checked. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  return maxRelErr(a, b);
}
