/**
 * The webgpu backend in the plan: adapter classification, the start-up description, and
 * planBackends / setupBackendWith with injected adapters (no GPU needed), plus the real probe's
 * contract on this machine.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { planBackends, setupBackend, setupBackendWith, type Capabilities } from '../../src/backend/select.js';
import {
  dawnBackendsToTry,
  vulkanLoaderPresent,
  describeAdapter,
  gpuDevicePresent,
  softwareRenderer,
  webgpuUnusable,
  type WebGpuAdapter,
  type WebGpuProbe,
} from '../../src/backend/webgpu.js';
import { assertWebGpuWhenExpected, webgpuProbe } from './webgpu-helpers.js';

const hopper: WebGpuAdapter = {
  vendor: 'nvidia',
  architecture: 'hopper',
  device: 'NVIDIA H200',
  description: 'NVIDIA: 580.65',
  dawnBackend: 'vulkan',
  software: null,
  maxStorageBufferBindingSize: 2 ** 31,
  maxBufferSize: 2 ** 34,
};
// As Dawn reports Mesa llvmpipe over OpenGL ES on Debian 12.
const llvmpipe: WebGpuAdapter = {
  vendor: '',
  architecture: '',
  device: 'llvmpipe-llvm-15-0-6-256-bits-',
  description: 'OpenGL version OpenGL ES 3.2 Mesa 22.3.6',
  dawnBackend: 'opengles',
  software: 'llvmpipe',
  maxStorageBufferBindingSize: 2 ** 27,
  maxBufferSize: 2 ** 31,
};

const none: Capabilities = { tfjsNodeGpu: false, tfjsNode: false, gpuVisible: false, native: true, wasm: true };
const withAdapter = (adapter: WebGpuAdapter | null, reason?: string): Capabilities => ({ ...none, webgpu: true, webgpuAdapter: { adapter, reason } });

function unavailable(fn: () => unknown): FopeifyError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FopeifyError);
    expect((err as FopeifyError).code).toBe('BACKEND_UNAVAILABLE');
    return err as FopeifyError;
  }
  throw new Error('expected BACKEND_UNAVAILABLE');
}

describe('adapter classification', () => {
  it('names the software rasterizers, and tells lavapipe (Vulkan) from llvmpipe (GL)', () => {
    expect(softwareRenderer({ device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'OpenGL ES 3.2 Mesa 22.3.6' }, 'opengles')).toBe('llvmpipe');
    expect(softwareRenderer({ vendor: 'mesa', device: 'llvmpipe (LLVM 15.0.6, 256 bits)' }, 'vulkan')).toBe('lavapipe');
    expect(softwareRenderer({ vendor: 'google', architecture: 'swiftshader', device: 'SwiftShader Device (Subzero)' }, 'vulkan')).toBe('SwiftShader');
    expect(softwareRenderer({ vendor: 'nvidia', architecture: 'hopper', device: 'NVIDIA H200' }, 'vulkan')).toBeNull();
    expect(softwareRenderer({ vendor: 'apple', architecture: 'metal-3' }, 'default')).toBeNull();
    expect(softwareRenderer({ vendor: 'unknown' }, 'vulkan', true)).toMatch(/fallback/);
  });
  it('describes the adapter: vendor, architecture, Dawn backend, largest tensor', () => {
    expect(describeAdapter(hopper)).toBe('nvidia hopper (NVIDIA: 580.65), Dawn vulkan, max tensor 2048 MiB');
    expect(describeAdapter(llvmpipe)).toBe('llvmpipe software rasterizer (OpenGL ES 3.2 Mesa 22.3.6), Dawn opengles, max tensor 128 MiB');
  });
  it('asks Vulkan then OpenGL ES on Linux, the platform default elsewhere, or what the environment forces', () => {
    expect(dawnBackendsToTry('linux', {}, () => true)).toEqual(['vulkan', 'opengles']);
    // Without the Vulkan loader Dawn would only print a native warning trace: OpenGL ES alone.
    expect(dawnBackendsToTry('linux', {}, () => false)).toEqual(['opengles']);
    expect(vulkanLoaderPresent({ LD_LIBRARY_PATH: '/opt/vk' }, (p) => p === '/opt/vk/libvulkan.so.1')).toBe(true);
    expect(vulkanLoaderPresent({}, () => false)).toBe(false);
    expect(dawnBackendsToTry('darwin', {})).toEqual(['default']);
    expect(dawnBackendsToTry('linux', { FOPEIFY_DAWN_BACKEND: 'vulkan' })).toEqual(['vulkan']);
    expect(() => dawnBackendsToTry('linux', { FOPEIFY_DAWN_BACKEND: 'cuda' })).toThrow(/FOPEIFY_DAWN_BACKEND must be one of/);
  });
});

describe('planBackends with webgpu', () => {
  it('auto: a hardware adapter comes first (after an installed tfjs-node-gpu with a GPU)', () => {
    expect(planBackends('auto', withAdapter(hopper)).map((c) => c.chosen)).toEqual(['webgpu', 'native', 'wasm', 'cpu']);
    expect(planBackends('auto', withAdapter(hopper))[0]).toEqual({ chosen: 'webgpu', tfBackend: 'webgpu', accelerate: false, fastKernels: false });
    const both = { ...withAdapter(hopper), tfjsNodeGpu: true, gpuVisible: true };
    expect(planBackends('auto', both).map((c) => c.chosen)).toEqual(['tensorflow-gpu', 'webgpu', 'native', 'wasm', 'cpu']);
  });
  it('auto never picks a software adapter, even when allowed (the CPU paths are faster)', () => {
    expect(planBackends('auto', withAdapter(llvmpipe)).map((c) => c.chosen)).toEqual(['native', 'wasm', 'cpu']);
    expect(planBackends('auto', withAdapter(llvmpipe), { allowSoftwareAdapter: true }).map((c) => c.chosen)).toEqual(['webgpu', 'native', 'wasm', 'cpu']);
    expect(planBackends('auto', withAdapter(null, 'no WebGPU adapter')).map((c) => c.chosen)).toEqual(['native', 'wasm', 'cpu']);
  });
  it('explicit webgpu: a hardware adapter, or a software one when allowed', () => {
    expect(planBackends('webgpu', withAdapter(hopper)).map((c) => c.chosen)).toEqual(['webgpu']);
    expect(planBackends('webgpu', withAdapter(llvmpipe), { allowSoftwareAdapter: true }).map((c) => c.chosen)).toEqual(['webgpu']);
  });
  it('explicit webgpu that cannot run is a clear FopeifyError', () => {
    expect(unavailable(() => planBackends('webgpu', none)).message).toMatch(/webgpu and @tensorflow\/tfjs-backend-webgpu are not installed \(npm install -E webgpu@0\.6\.2/);
    expect(unavailable(() => planBackends('webgpu', withAdapter(null, 'no WebGPU adapter (vulkan: no adapter)'))).message).toMatch(/no WebGPU adapter \(vulkan: no adapter\) \(a GPU with a Vulkan driver.*libegl-mesa0/);
    const soft = unavailable(() => planBackends('webgpu', withAdapter(llvmpipe))).message;
    expect(soft).toMatch(/only WebGPU adapter is llvmpipe, a software rasterizer/);
    expect(soft).toMatch(/`allowSoftwareAdapter` uses it anyway/);
    expect(webgpuUnusable(true, { adapter: hopper }, false)).toBeNull();
  });
});

describe('setupBackendWith an injected probe', () => {
  afterAll(async () => {
    await setupBackend({ backend: 'cpu', quiet: true });
  });
  const detect = () => ({ ...none, native: false });

  it('auto with only a software adapter starts a CPU backend', async () => {
    const probe = async (): Promise<WebGpuProbe> => ({ ok: false, reason: 'no WebGPU adapter (vulkan: no adapter; opengles: no adapter)' });
    const info = await setupBackendWith({ quiet: true }, { detect: () => ({ ...detect(), webgpu: true }), probeWebGpu: probe });
    expect(info.chosen).toBe('wasm');
    await expect(setupBackendWith({ backend: 'webgpu', quiet: true }, { detect: () => ({ ...detect(), webgpu: true }), probeWebGpu: probe })).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringMatching(/no WebGPU adapter \(vulkan: no adapter; opengles: no adapter\)/),
    });
  });

  it('auto with a hardware adapter activates webgpu and names the adapter (this machine\'s adapter standing in)', async (ctx) => {
    const real = await webgpuProbe();
    assertWebGpuWhenExpected(real);
    if (!real.ok) return ctx.skip();
    // The real Dawn adapter, relabelled as a GPU: planning sees hardware, activation runs for real.
    const fake: WebGpuProbe = { ...real, adapter: hopper };
    const lines: string[] = [];
    const info = await setupBackendWith({ log: (l) => lines.push(l) }, { detect: () => ({ ...detect(), webgpu: true }), probeWebGpu: async () => fake });
    expect(info).toMatchObject({ requested: 'auto', chosen: 'webgpu', name: 'webgpu', accelerated: false, gatherGradient: true, adapter: hopper });
    expect(info.description).toBe(`webgpu (${describeAdapter(hopper)})`);
    expect(lines).toEqual([`fopeify: backend ${info.description}`]);
  });
});

describe('the real probe on this machine', () => {
  it('finds an adapter (named, with limits) or says why not', async () => {
    const probe = await webgpuProbe();
    assertWebGpuWhenExpected(probe);
    if (!probe.ok) {
      expect(probe.reason).toMatch(/no WebGPU adapter|did not load/);
      return;
    }
    expect(probe.adapter.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(2 ** 27);
    expect(describeAdapter(probe.adapter)).toMatch(/Dawn (vulkan|opengles|default)/);
    // Without a GPU device node, only a software rasterizer can be here.
    if (!gpuDevicePresent()) expect(probe.adapter.software).not.toBeNull();
  });
});
