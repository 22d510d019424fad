/**
 * The `webgpu` backend: TensorFlow.js's WebGPU backend running under Node on Dawn's Node bindings
 * (the `webgpu` package), so a GPU is used through Vulkan / Metal / D3D12 — or, for tests, through a
 * software rasterizer (Mesa llvmpipe over OpenGL ES, lavapipe over Vulkan).
 *
 * Both packages are optional dependencies, imported with computed specifiers so that TypeScript and a
 * machine without them never load them. Two steps, like the rest of backend selection:
 *  - `probeWebGpu()` creates Dawn's GPU object and asks each Dawn backend in turn for an adapter (async,
 *    hence done by setupBackend before planning, never by the synchronous capability detection);
 *  - `activateWebGpu()` makes tfjs-backend-webgpu use that adapter: it registers itself at import only
 *    when `navigator.gpu` exists, which Node lacks, so we provide one that hands out the probed adapter.
 */
import { existsSync, readdirSync } from 'node:fs';
import { FopeifyError, optionName } from '../errors.js';
import { tmpdir } from 'node:os';
import * as tf from './tfjs.js';

/** The native API Dawn drives. `default`: Dawn's own choice for the platform (Metal, D3D12). */
export type DawnBackend = 'vulkan' | 'opengles' | 'default';

const DAWN_BACKENDS: readonly DawnBackend[] = ['vulkan', 'opengles', 'default'];
export const DAWN_PACKAGE = 'webgpu';
export const TFJS_WEBGPU_PACKAGE = '@tensorflow/tfjs-backend-webgpu';
/** What to install when the packages are missing (the versions package.json pins). */
export const WEBGPU_INSTALL = `npm install -E ${DAWN_PACKAGE}@0.6.2 ${TFJS_WEBGPU_PACKAGE}@4.22.0`;

/** The adapter fopeify computes on, as the start-up line and BackendInfo show it. */
export interface WebGpuAdapter {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  dawnBackend: DawnBackend;
  /** The software rasterizer behind it ('llvmpipe', 'lavapipe', 'SwiftShader'), or null for a real GPU. */
  software: string | null;
  /** The largest tensor one shader can bind, in bytes (one tensor must fit in it). */
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

// The few members of Dawn's objects we use (the webgpu package's own types pull in @webgpu/types).
interface GpuAdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
  isFallbackAdapter?: boolean;
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number };
}
interface GpuLike {
  requestAdapter(options?: Record<string, unknown>): Promise<GpuAdapterLike | null>;
  wgslLanguageFeatures?: unknown;
}
export interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

/** What probeWebGpu found: an adapter (and the objects activateWebGpu needs), or why there is none. */
export type WebGpuProbe =
  | { ok: true; adapter: WebGpuAdapter; gpu: GpuLike; rawAdapter: GpuAdapterLike; dawn: DawnModule }
  | { ok: false; reason: string };

/**
 * Could a hardware GPU be here? Cheap device-file checks, so that `auto` on a plain CPU server does not
 * start Dawn (≈0.4 s and driver warnings on stderr) to find only a software rasterizer it would not use.
 */
export function gpuDevicePresent(platform: NodeJS.Platform = process.platform): boolean {
  if (platform === 'darwin' || platform === 'win32') return true;
  if (existsSync('/dev/nvidia0') || existsSync('/dev/dxg')) return true;
  try {
    return readdirSync('/dev/dri').some((f) => f.startsWith('renderD'));
  } catch {
    return false;
  }
}

/** Folders the dynamic loader searches for libvulkan.so.1 (LD_LIBRARY_PATH first, then the usual ones). */
function libraryFolders(env: NodeJS.ProcessEnv): string[] {
  const fromEnv = (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  return [...fromEnv, '/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib/aarch64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/lib64', '/usr/lib', '/lib', '/usr/local/lib'];
}

/** Is the Vulkan loader installed? Without it Dawn's Vulkan backend only prints a native warning trace. */
export function vulkanLoaderPresent(env: NodeJS.ProcessEnv = process.env, exists: (p: string) => boolean = existsSync): boolean {
  return libraryFolders(env).some((dir) => exists(`${dir}/libvulkan.so.1`));
}

/**
 * Dawn backends to ask, in order. FOPEIFY_DAWN_BACKEND (vulkan, opengles, default) forces one, e.g.
 * vulkan for lavapipe. Linux: Vulkan (every GPU vendor, and lavapipe) when its loader is installed, then
 * OpenGL ES (Mesa llvmpipe); elsewhere Dawn's platform default (Metal, D3D12).
 */
export function dawnBackendsToTry(
  platform: NodeJS.Platform = process.platform,
  env: NodeJS.ProcessEnv = process.env,
  hasVulkan: () => boolean = () => vulkanLoaderPresent(env),
): DawnBackend[] {
  const forced = env.FOPEIFY_DAWN_BACKEND?.trim();
  if (forced) {
    if (!(DAWN_BACKENDS as readonly string[]).includes(forced)) {
      throw new FopeifyError('BAD_ARGUMENT', `FOPEIFY_DAWN_BACKEND must be one of ${DAWN_BACKENDS.join(', ')}, got "${forced}"`);
    }
    return [forced as DawnBackend];
  }
  if (platform !== 'linux') return ['default'];
  return hasVulkan() ? ['vulkan', 'opengles'] : ['opengles'];
}

const SOFTWARE_RENDERERS: readonly [RegExp, string][] = [
  [/lavapipe/i, 'lavapipe'],
  [/llvmpipe/i, 'llvmpipe'],
  [/swiftshader/i, 'SwiftShader'],
  [/softpipe/i, 'softpipe'],
];

/**
 * The software rasterizer behind an adapter, or null for a hardware GPU. Mesa's Vulkan lavapipe
 * calls its device "llvmpipe (LLVM …)" with vendor "mesa" and driver lavapipe, so the Dawn backend
 * tells the two apart.
 */
export function softwareRenderer(
  info: { vendor?: string; architecture?: string; device?: string; description?: string },
  dawnBackend: DawnBackend,
  isFallbackAdapter = false,
): string | null {
  const text = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  for (const [re, name] of SOFTWARE_RENDERERS) {
    if (re.test(text)) return name === 'llvmpipe' && dawnBackend === 'vulkan' ? 'lavapipe' : name;
  }
  return isFallbackAdapter ? 'a fallback (CPU) adapter' : null;
}

/** "NVIDIA hopper, Dawn vulkan" / "llvmpipe software rasterizer (OpenGL ES 3.2 Mesa 22.3.6), Dawn opengles". */
export function describeAdapter(a: WebGpuAdapter): string {
  const name = [a.vendor, a.architecture].filter(Boolean).join(' ') || a.device || 'unnamed adapter';
  const what = a.software
    ? `${a.software} software rasterizer (${a.description.replace(/^OpenGL version /, '') || name})`
    : `${name}${a.description && a.description !== name ? ` (${a.description})` : ''}`;
  const mib = Math.floor(a.maxStorageBufferBindingSize / 2 ** 20);
  return `${what}, Dawn ${a.dawnBackend}, max tensor ${mib} MiB`;
}

async function importOptional(spec: string): Promise<unknown> {
  return import(spec);
}

let probed: Promise<WebGpuProbe> | undefined;

/**
 * Create Dawn's GPU and find an adapter, trying each Dawn backend of dawnBackendsToTry. Cached: one
 * Dawn instance per process, and the adapter is the one activateWebGpu hands to tfjs.
 */
export function probeWebGpu(importModule: (spec: string) => Promise<unknown> = importOptional): Promise<WebGpuProbe> {
  probed ??= probeOnce(importModule);
  return probed;
}

async function probeOnce(importModule: (spec: string) => Promise<unknown>): Promise<WebGpuProbe> {
  let dawn: DawnModule;
  try {
    dawn = (await importModule(DAWN_PACKAGE)) as DawnModule;
  } catch (err) {
    return { ok: false, reason: `Dawn's Node bindings did not load: ${firstLine(err)}` };
  }
  // Mesa's EGL without a display server, and a runtime dir for its warning-free start.
  process.env.EGL_PLATFORM ??= 'surfaceless';
  process.env.XDG_RUNTIME_DIR ??= tmpdir();
  let backends: DawnBackend[];
  try {
    backends = dawnBackendsToTry();
  } catch (err) {
    return { ok: false, reason: firstLine(err) };
  }
  const tried: string[] = [];
  for (const dawnBackend of backends) {
    try {
      const gpu = dawn.create(dawnBackend === 'default' ? [] : [`backend=${dawnBackend}`]);
      // OpenGL ES reaches only WebGPU's compatibility level (no per-view texture formats etc.), which
      // is all tfjs uses.
      const rawAdapter = await gpu.requestAdapter(dawnBackend === 'opengles' ? { featureLevel: 'compatibility' } : {});
      if (!rawAdapter) {
        tried.push(`${dawnBackend}: no adapter`);
        continue;
      }
      const info = rawAdapter.info ?? {};
      const adapter: WebGpuAdapter = {
        vendor: info.vendor ?? '',
        architecture: info.architecture ?? '',
        device: info.device ?? '',
        description: info.description ?? '',
        dawnBackend,
        software: softwareRenderer(info, dawnBackend, Boolean(info.isFallbackAdapter ?? rawAdapter.isFallbackAdapter)),
        maxStorageBufferBindingSize: rawAdapter.limits.maxStorageBufferBindingSize,
        maxBufferSize: rawAdapter.limits.maxBufferSize,
      };
      return { ok: true, adapter, gpu, rawAdapter, dawn };
    } catch (err) {
      tried.push(`${dawnBackend}: ${firstLine(err)}`);
    }
  }
  return { ok: false, reason: `no WebGPU adapter (${tried.join('; ')})` };
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

/** Why the webgpu backend cannot be used here, as [what, fix, option the fix names?] for BACKEND_UNAVAILABLE; null when it can. */
export function webgpuUnusable(
  installed: boolean | undefined,
  probe: { adapter: WebGpuAdapter | null; reason?: string } | undefined,
  allowSoftwareAdapter: boolean,
): [string, string] | [string, string, string] | null {
  if (!installed) return [`${DAWN_PACKAGE} and ${TFJS_WEBGPU_PACKAGE} are not installed`, WEBGPU_INSTALL];
  if (!probe?.adapter) {
    return [
      probe?.reason ?? 'no WebGPU adapter was looked for',
      'a GPU with a Vulkan driver (Linux), Metal or D3D12; for a software adapter on Debian/Ubuntu: apt-get install libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri',
    ];
  }
  if (probe.adapter.software && !allowSoftwareAdapter) {
    return [`the only WebGPU adapter is ${probe.adapter.software}, a software rasterizer slower than the CPU backends`, `${optionName('allowSoftwareAdapter')} uses it anyway`, 'allowSoftwareAdapter'];
  }
  return null;
}

/**
 * Make tfjs's 'webgpu' backend run on the probed adapter. Dawn's globals (GPUBufferUsage, GPUMapMode …)
 * go onto globalThis, and `navigator.gpu` is one whose requestAdapter returns that adapter, so
 * tfjs-backend-webgpu's own factory (device limits, features) creates the device.
 */
export async function activateWebGpu(
  probe: Extract<WebGpuProbe, { ok: true }>,
  importModule: (spec: string) => Promise<unknown> = importOptional,
): Promise<void> {
  for (const [name, value] of Object.entries(probe.dawn.globals)) {
    if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  }
  const gpu = {
    requestAdapter: async () => probe.rawAdapter,
    getPreferredCanvasFormat: () => 'bgra8unorm',
    wgslLanguageFeatures: probe.gpu.wgslLanguageFeatures,
  };
  // Node ≥ 21 has a `navigator` getter: define over it, keeping the plain values it offered (its
  // getters check their receiver, so the object itself cannot be a prototype).
  const existing = (globalThis as { navigator?: Record<string, unknown> }).navigator;
  const kept = Object.fromEntries(['userAgent', 'language', 'platform', 'hardwareConcurrency'].map((k) => [k, existing?.[k]]));
  Object.defineProperty(globalThis, 'navigator', { value: { ...kept, gpu }, configurable: true, writable: true });
  await importModule(TFJS_WEBGPU_PACKAGE);
}

/** For tests: probe again on the next call. */
export function _resetWebGpuProbeForTests(): void {
  probed = undefined;
}

/**
 * GPU memory the active backend holds, in bytes, where it reports it (tfjs-webgpu's buffer pool:
 * buffers freed by tensors stay in the pool for reuse, so this is the high-water mark of what was
 * needed at once), else null (tensors in JS or TensorFlow memory).
 */
export function gpuMemoryBytes(): number | null {
  const m = tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number; numBytesInGPU?: number };
  return m.numBytesAllocatedInGPU ?? m.numBytesInGPU ?? null;
}
