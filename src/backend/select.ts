/**
 * Which TensorFlow.js backend fopeify computes on, and the native BLAS accelerator.
 *
 * The choice is split in two so every branch can be tested on a machine without a GPU:
 *  - `detectCapabilities()` looks at the machine (installed packages, GPU devices, the addon);
 *  - `planBackends(requested, caps)` is a pure function from that to an ordered list of candidates;
 *  - `setupBackend()` tries the candidates in order (a package that is installed can still fail to
 *    load, e.g. tfjs-node-gpu without CUDA) and reports what is active.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import * as tfjs from './tfjs.js';
import { badOption, FopeifyError, optionName } from '../errors.js';
import { installFastKernels } from './fast-kernels.js';
import { PORTABLE_MARGIN, speedupOverOther, type GemmChoice } from './gemm-choice.js';
import type { Kernels } from './kernels.js';
import { hostKernels, wasmKernels } from './kernels-host.js';
import { nativeKernels } from './kernels-native.js';
import { tfKernels } from './kernels-tf.js';
import { makeBatchMatMulKernel, makeFusedMatMulKernel } from './matmul.js';
import { loadNative, type NativeAddon, type NativeBlas } from './native.js';
import { replaceKernel, replacedKernels, restoreKernels } from './registry.js';
import { installSegmentSum } from './segment-sum.js';
import { activateWebGpu, DAWN_PACKAGE, describeAdapter, gpuDevicePresent, probeWebGpu, TFJS_WEBGPU_PACKAGE, webgpuUnusable, type WebGpuAdapter, type WebGpuProbe } from './webgpu.js';

export type BackendName = 'auto' | 'webgpu' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu' | 'native';

export const BACKEND_NAMES: readonly BackendName[] = ['auto', 'webgpu', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu', 'native'];

export interface BackendInfo {
  requested: BackendName;
  /** The tfjs backend name actually active: 'webgpu', 'tensorflow', 'cpu' or 'wasm'. */
  name: string;
  /** Native BLAS kernels are registered for the active backend. */
  accelerated: boolean;
  /**
   * One line for the user, e.g. "cpu + native BLAS (OpenBLAS libopenblas.so.0 SkylakeX, measured 1.1×
   * portable-avx512 SGEMM at start-up (45 ms), 2 threads)", "cpu + native BLAS (portable-avx512 SGEMM,
   * measured 1.8× OpenBLAS libopenblas.so.0 Haswell at start-up (45 ms), 2 threads)" or, without a system
   * BLAS, "cpu + native BLAS (portable-avx512 SGEMM, 2 threads)".
   */
  description: string;
  /** What fopeify chose, in its own terms ('native' = tfjs cpu + native BLAS + fast JS kernels). */
  chosen: Exclude<BackendName, 'auto'>;
  /** tf.gather has a gradient (false on a wasm backend without UnsortedSegmentSum). */
  gatherGradient: boolean;
  /** Largest total tensor memory the backend can hold, in bytes (wasm: 4 GiB heap), or null. */
  memoryLimitBytes: number | null;
  /** Threads used for math (BLAS / TensorFlow intra-op), or null when the backend is single-threaded. */
  threads: number | null;
  /**
   * The BLAS library when accelerated (kind 'portable' when none loaded), and the GEMM engine that runs:
   * the library's or the portable SGEMM, with how it was chosen.
   */
  blas?: { library: string; kind: string; config?: string; gemm: GemmChoice; portable: string };
  /** Why the native accelerator is not active, when it is not. */
  nativeUnavailableReason?: string;
  /** Kernels fopeify replaced on the active backend. */
  replacedKernels: string[];
  /** Better candidates that were tried first and failed to start ("tensorflow-gpu: <why>"). */
  fallbacks: string[];
  /** The GPU adapter when the webgpu backend is active. */
  adapter?: WebGpuAdapter;
  /** What the model, the trainer and the optimizer compute with on this backend (kernels.ts). */
  kernels: Kernels;
}

/** What the machine offers. Everything setupBackend decides follows from this. */
export interface Capabilities {
  /** @tensorflow/tfjs-node-gpu resolves. */
  tfjsNodeGpu: boolean;
  /** @tensorflow/tfjs-node resolves. */
  tfjsNode: boolean;
  /** An NVIDIA GPU is visible to this process. */
  gpuVisible: boolean;
  /** The native addon loaded and found a BLAS. */
  native: boolean;
  /** Why it did not (the loader's words: not built, an old build, FOPEIFY_GEMM=system without a library, ...). */
  nativeReason?: string;
  /** @tensorflow/tfjs-backend-wasm resolves. */
  wasm: boolean;
  /** webgpu (Dawn) and @tensorflow/tfjs-backend-webgpu resolve. */
  webgpu?: boolean;
  /** The WebGPU adapter found (setupBackend probes it, asynchronously, when the plan may use it). */
  webgpuAdapter?: { adapter: WebGpuAdapter | null; reason?: string };
}

/** What the user allows beyond the machine's capabilities. */
export interface PlanOptions {
  /** Use a software WebGPU adapter (llvmpipe, lavapipe, SwiftShader): explicit 'webgpu' only. */
  allowSoftwareAdapter?: boolean;
}

export interface Candidate {
  chosen: Exclude<BackendName, 'auto'>;
  /** Package to import first (tfjs-node / tfjs-node-gpu), if any. */
  module?: '@tensorflow/tfjs-node' | '@tensorflow/tfjs-node-gpu';
  /** tfjs backend name to activate. */
  tfBackend: 'webgpu' | 'tensorflow' | 'cpu' | 'wasm';
  /** Register native BLAS matmul kernels. */
  accelerate: boolean;
  /** Register fopeify's fast JS kernels (cpu only). */
  fastKernels: boolean;
}

const GPU_PKG = '@tensorflow/tfjs-node-gpu';
/** Why native is missing when the capabilities give no reason of the loader's. */
const NOT_BUILT = 'the native addon is not built (it needs a C compiler: apt-get install gcc (Debian/Ubuntu; libopenblas0 makes it faster still), then run "npm run build:native")';
const NODE_PKG = '@tensorflow/tfjs-node';

/**
 * The backends to try, best first. Pure: tests call it with made-up capabilities.
 * Throws FopeifyError('BACKEND_UNAVAILABLE') when an explicitly requested backend cannot exist here.
 */
export function planBackends(requested: BackendName, caps: Capabilities, opts: PlanOptions = {}): Candidate[] {
  const webgpu: Candidate = { chosen: 'webgpu', tfBackend: 'webgpu', accelerate: false, fastKernels: false };
  const webgpuWhyNot = webgpuUnusable(caps.webgpu, caps.webgpuAdapter, opts.allowSoftwareAdapter === true);
  const gpu: Candidate = { chosen: 'tensorflow-gpu', module: GPU_PKG, tfBackend: 'tensorflow', accelerate: false, fastKernels: false };
  const tfNode: Candidate = { chosen: 'tensorflow', module: NODE_PKG, tfBackend: 'tensorflow', accelerate: false, fastKernels: false };
  // tfjs-node-gpu runs on the CPU when no GPU is usable, so it can stand in for tfjs-node.
  const tfNodeViaGpuPkg: Candidate = { ...tfNode, module: GPU_PKG };
  const native: Candidate = { chosen: 'native', tfBackend: 'cpu', accelerate: true, fastKernels: true };
  // Explicit 'wasm' still gets native matmuls when the addon is there: same results, 10-100x faster.
  const wasm: Candidate = { chosen: 'wasm', tfBackend: 'wasm', accelerate: caps.native, fastKernels: false };
  const cpu: Candidate = { chosen: 'cpu', tfBackend: 'cpu', accelerate: false, fastKernels: false };
  const missing = (what: string, fix: string, option?: string) =>
    new FopeifyError('BACKEND_UNAVAILABLE', `backend "${requested}" is not available: ${what} (${fix})`, { option });

  switch (requested) {
    case 'webgpu':
      if (webgpuWhyNot) throw missing(webgpuWhyNot[0], webgpuWhyNot[1], webgpuWhyNot[2]);
      return [webgpu];
    case 'tensorflow-gpu':
      if (!caps.tfjsNodeGpu) throw missing(`${GPU_PKG} is not installed`, `npm install ${GPU_PKG}; it needs CUDA 11.2 and cuDNN 8.1`);
      if (!caps.gpuVisible) throw missing('no NVIDIA GPU is visible', 'check nvidia-smi and CUDA_VISIBLE_DEVICES');
      return [gpu];
    case 'tensorflow':
      if (caps.tfjsNode) return [tfNode];
      if (caps.tfjsNodeGpu) return [tfNodeViaGpuPkg];
      throw missing(`${NODE_PKG} is not installed`, `npm install ${NODE_PKG}`);
    case 'native':
      // The loader's reason says what to do (build it, rebuild an old build, fix FOPEIFY_GEMM, ...).
      if (!caps.native) throw new FopeifyError('BACKEND_UNAVAILABLE', `backend "native" is not available: ${caps.nativeReason ?? NOT_BUILT}`);
      return [native];
    case 'wasm':
      if (!caps.wasm) throw missing('@tensorflow/tfjs-backend-wasm is not installed', 'npm install @tensorflow/tfjs-backend-wasm');
      return [wasm];
    case 'cpu':
      return [cpu];
    case 'auto': {
      const out: Candidate[] = [];
      // An installed tfjs-node-gpu is a deliberate choice (cuDNN kernels); WebGPU right after it.
      if (caps.tfjsNodeGpu && caps.gpuVisible) out.push(gpu);
      if (!webgpuWhyNot) out.push(webgpu);
      if (caps.tfjsNode) out.push(tfNode);
      else if (caps.tfjsNodeGpu && !caps.gpuVisible) out.push(tfNodeViaGpuPkg);
      if (caps.native) out.push(native);
      // Without BLAS, wasm's SIMD matmul (~28 GFLOP/s in 2-D) beats the cpu backend's JS (~1).
      if (caps.wasm) out.push(wasm);
      // Last resort: tfjs-cpu, with fopeify's bit-identical JS kernels (only an explicit 'cpu' gets
      // tfjs-cpu untouched, as the reference).
      out.push({ ...cpu, fastKernels: true });
      return out;
    }
    default:
      throw new FopeifyError(
        'BAD_ARGUMENT',
        `unknown backend "${String(requested)}" (expected one of ${BACKEND_NAMES.join(', ')})`,
      );
  }
}

/** Is an NVIDIA GPU visible? Cheap checks first; nvidia-smi only when the device files are absent. */
export function detectGpu(env: NodeJS.ProcessEnv = process.env): boolean {
  const cvd = env.CUDA_VISIBLE_DEVICES;
  // An empty or negative CUDA_VISIBLE_DEVICES hides every GPU from CUDA.
  if (cvd !== undefined && (cvd.trim() === '' || cvd.trim().startsWith('-'))) return false;
  if (existsSync('/dev/nvidia0') || existsSync('/dev/dxg')) return true;
  try {
    const r = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 5000 });
    return r.status === 0 && /GPU \d+/.test(r.stdout);
  } catch {
    return false;
  }
}

function resolvable(spec: string): boolean {
  try {
    createRequire(import.meta.url).resolve(spec);
    return true;
  } catch {
    return false;
  }
}

export interface DetectOptions {
  threads?: number;
  /** Skip the addon (it is loaded lazily only when a candidate needs it otherwise). */
  native?: boolean;
}

let nativeState: { blas: NativeBlas | null; reason?: string } | undefined;

function native(threads: number): { blas: NativeBlas | null; reason?: string } {
  const r = loadNative({ threads });
  nativeState = r.ok ? { blas: r.blas } : { blas: null, reason: r.reason };
  return nativeState;
}

/** Look at this machine. Loads the native addon (and its BLAS) when present, nothing else. */
export function detectCapabilities(opts: DetectOptions = {}): Capabilities {
  const threads = opts.threads ?? defaultThreads();
  const tfjsNodeGpu = resolvable(GPU_PKG);
  const nat = opts.native === false ? { blas: null, reason: 'not probed' } : native(threads);
  return {
    tfjsNodeGpu,
    tfjsNode: resolvable(NODE_PKG),
    // Only worth a process spawn when the GPU package is there to use it.
    gpuVisible: tfjsNodeGpu ? detectGpu() : false,
    native: nat.blas !== null,
    nativeReason: nat.reason,
    wasm: resolvable('@tensorflow/tfjs-backend-wasm'),
    webgpu: resolvable(DAWN_PACKAGE) && resolvable(TFJS_WEBGPU_PACKAGE),
  };
}

/**
 * Threads when --threads is not given: a thread count the user already exported for the BLAS
 * (OPENBLAS_NUM_THREADS, then OMP_NUM_THREADS) wins, else one per core.
 */
export function defaultThreads(env: NodeJS.ProcessEnv = process.env): number {
  for (const v of [env.OPENBLAS_NUM_THREADS, env.OMP_NUM_THREADS]) {
    const n = Number(v);
    if (v && Number.isInteger(n) && n >= 1 && n <= 1024) return n;
  }
  return Math.max(1, availableParallelism());
}

// ---------------------------------------------------------------------------------------------

type Tf = typeof tfjs;
let activeTf: Tf = tfjs;
let current: BackendInfo | undefined;
let announced = new Set<string>();

/** The tf namespace to use: tfjs-node's when that backend is active, else @tensorflow/tfjs. */
export function getTf(): Tf {
  return activeTf;
}

/** The BackendInfo of the last successful setupBackend, if any. */
export function currentBackend(): BackendInfo | undefined {
  return current;
}

/**
 * The kernels of the last successful setupBackend; when none ran, those of the backend tfjs picked by
 * itself (without the native addon): for library callers that did not activate a backend themselves.
 */
export function activeKernels(): Kernels {
  if (current) return current.kernels;
  const name = tfjs.getBackend();
  return kernelsFor(name === 'cpu' || name === 'wasm' ? name : 'tensorflow', null);
}

export interface SetupOptions {
  backend?: BackendName;
  /** Threads for BLAS / TensorFlow (default: the number of cores). The CLI's --threads. */
  threads?: number;
  /** Print nothing. */
  quiet?: boolean;
  /** Where the one "backend: ..." line goes (default: stderr). */
  log?: (line: string) => void;
  /** Use a software WebGPU adapter when 'webgpu' is requested (never chosen by 'auto'). */
  allowSoftwareAdapter?: boolean;
}

/**
 * Activate a backend. Safe to call more than once: a later call with other options switches
 * backends (kernels replaced for an earlier choice are put back first); the same choice again is
 * a cheap no-op that does not print again.
 */
export async function setupBackend(opts: SetupOptions = {}): Promise<BackendInfo> {
  return setupBackendWith(opts, {});
}

/** What setupBackend asks of the machine; tests inject fakes (a GPU, tfjs-node) through this. */
export interface SetupEnvironment {
  /** Replaces detectCapabilities (the addon is still loaded for real when a candidate needs it). */
  detect?: (opts: DetectOptions) => Capabilities;
  /** Replaces `import(specifier)` for tfjs-node / tfjs-node-gpu. */
  importModule?: (specifier: string) => Promise<unknown>;
  /** Replaces the WebGPU adapter probe (Dawn); also decides whether `auto` probes at all. */
  probeWebGpu?: () => Promise<WebGpuProbe>;
}

/** setupBackend with the machine probes replaceable; see SetupEnvironment. */
export async function setupBackendWith(opts: SetupOptions, env: SetupEnvironment): Promise<BackendInfo> {
  const requested: BackendName = opts.backend ?? 'auto';
  const threads = opts.threads ?? defaultThreads();
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024) {
    throw badOption('threads', `${optionName('threads')} must be an integer from 1 to 1024, got ${opts.threads}`);
  }
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  // Only probe for the addon when the request can use it (an explicit 'cpu' must not load a BLAS).
  const wantsNative = requested === 'auto' || requested === 'native' || requested === 'wasm';
  const caps = (env.detect ?? detectCapabilities)({ threads, native: wantsNative });
  // Dawn starts only when asked for, or for `auto` where a GPU device (or an injected probe) exists.
  let probe: WebGpuProbe | undefined;
  if (caps.webgpu && (requested === 'webgpu' || (requested === 'auto' && (env.probeWebGpu || gpuDevicePresent())))) {
    probe = await (env.probeWebGpu ?? probeWebGpu)();
    caps.webgpuAdapter = probe.ok ? { adapter: probe.adapter } : { adapter: null, reason: probe.reason };
  }
  const candidates = planBackends(requested, caps, { allowSoftwareAdapter: opts.allowSoftwareAdapter });

  const errors: string[] = [];
  for (const cand of candidates) {
    try {
      const info = await activate(cand, requested, threads, caps.nativeReason, env.importModule ?? ((spec) => import(spec)), opts.threads !== undefined, probe);
      info.fallbacks = errors;
      current = info;
      // Say it once per distinct configuration (not on every call, e.g. once per test or command).
      if (!opts.quiet && !announced.has(info.description)) {
        announced.add(info.description);
        for (const e of errors) log(`fopeify: could not start ${e}`);
        log(`fopeify: backend ${info.description}`);
      }
      return info;
    } catch (err) {
      if (err instanceof FopeifyError) throw err;
      errors.push(`${cand.chosen}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
  }
  throw new FopeifyError('BACKEND_UNAVAILABLE', `backend "${requested}" could not be started: ${errors.join('; ')}`);
}

async function activate(
  cand: Candidate,
  requested: BackendName,
  threads: number,
  nativeReason: string | undefined,
  importModule: (specifier: string) => Promise<unknown>,
  explicitThreads: boolean,
  probe?: WebGpuProbe,
): Promise<BackendInfo> {
  let tf: Tf = tfjs;
  let tfDesc = '';
  if (cand.module) {
    // TensorFlow's own thread pools read these when the library starts. --threads wins over the
    // environment; without it the user's exported values win over our default.
    if (explicitThreads) process.env.TF_NUM_INTRAOP_THREADS = String(threads);
    else process.env.TF_NUM_INTRAOP_THREADS ??= String(threads);
    process.env.TF_NUM_INTEROP_THREADS ??= '1';
    process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
    // A computed specifier keeps TypeScript (and bundlers) from requiring the optional package.
    const spec: string = cand.module;
    const mod = (await importModule(spec)) as Tf & { default?: Tf };
    // A CommonJS package: `default` is its module.exports, which has every re-exported tf function
    // even where Node's static detection of named exports misses some.
    tf = (typeof mod.default?.matMul === 'function' ? mod.default : mod) as Tf;
    tfDesc = cand.module === GPU_PKG ? (cand.chosen === 'tensorflow-gpu' ? 'tfjs-node-gpu, CUDA' : 'tfjs-node-gpu on CPU') : 'tfjs-node';
  } else if (cand.tfBackend === 'wasm') {
    const spec = '@tensorflow/tfjs-backend-wasm';
    await import(spec);
  } else if (cand.tfBackend === 'webgpu') {
    if (!probe?.ok) throw new Error('no WebGPU adapter was probed');
    await activateWebGpu(probe, importModule);
  }

  // Undo replacements of an earlier setupBackend before choosing anew.
  restoreKernels();

  const ok = await tf.setBackend(cand.tfBackend);
  if (!ok) throw new Error(`tf.setBackend('${cand.tfBackend}') failed`);
  await tf.ready();
  if (tf.getBackend() !== cand.tfBackend) throw new Error(`tfjs activated ${tf.getBackend()} instead of ${cand.tfBackend}`);
  activeTf = tf;

  const backend = tf.backend() as { firstUse?: boolean };
  // tfjs-cpu prints a "install tfjs-node" banner on first use; we print our own line instead.
  if (cand.tfBackend === 'cpu' && 'firstUse' in backend) backend.firstUse = false;

  let blas: NativeBlas | null = null;
  if (cand.accelerate) {
    const st = nativeState?.blas ? nativeState : native(threads);
    blas = st.blas;
    if (!blas) {
      if (cand.chosen === 'native') throw new FopeifyError('BACKEND_UNAVAILABLE', `backend "native" is not available: ${st.reason}`);
    } else {
      if (blas.threads !== threads) blas = native(threads).blas ?? blas;
      const be = cand.tfBackend as 'cpu' | 'wasm';
      replaceKernel(makeBatchMatMulKernel(blas.addon, be));
      replaceKernel(makeFusedMatMulKernel(blas.addon, be));
    }
  }
  if (cand.fastKernels && cand.tfBackend === 'cpu') installFastKernels('cpu', blas?.addon);
  // wasm has no UnsortedSegmentSum, so tf.gather (embeddings) has no gradient there; cpu has one
  // that is O(segments x rows) (minutes for a 50k vocabulary). Ours is a plain scatter-add.
  let gatherGradient = cand.tfBackend !== 'wasm';
  if (cand.tfBackend === 'wasm' || cand.fastKernels) gatherGradient = installSegmentSum(cand.tfBackend as 'cpu' | 'wasm') || gatherGradient;

  const replaced = replacedKernels(cand.tfBackend);
  const accelerated = blas !== null && cand.accelerate;
  const blasDesc = blas ? `${gemmName(blas)}, ${blas.threads} thread${blas.threads === 1 ? '' : 's'}` : '';
  let description: string;
  if (cand.tfBackend === 'webgpu' && probe?.ok) description = `webgpu (${describeAdapter(probe.adapter)})`;
  else if (cand.tfBackend === 'tensorflow') description = `tensorflow (${tfDesc}, ${threads} thread${threads === 1 ? '' : 's'})`;
  else if (accelerated) description = `${cand.tfBackend} + native BLAS (${blasDesc})`;
  else if (cand.tfBackend === 'wasm') description = `wasm (plain TensorFlow.js, no native BLAS: ${nativeReason ?? 'not requested'})`;
  else if (cand.fastKernels) description = `cpu (TensorFlow.js with fopeify's JS kernels, no native BLAS: ${nativeReason ?? 'not requested'})`;
  else description = `cpu (plain TensorFlow.js${requested === 'cpu' ? '' : `, no native BLAS: ${nativeReason ?? 'not requested'}`})`;

  return {
    requested,
    name: tf.getBackend(),
    accelerated,
    description,
    chosen: cand.chosen,
    gatherGradient,
    memoryLimitBytes: cand.tfBackend === 'wasm' ? 4 * 1024 ** 3 : null,
    threads: cand.tfBackend === 'tensorflow' ? threads : accelerated ? blas!.threads : null,
    blas: blas && accelerated ? { library: blas.library, kind: blas.kind, config: blas.config, gemm: blas.gemm, portable: blas.portable } : undefined,
    nativeUnavailableReason: accelerated || cand.tfBackend === 'tensorflow' || cand.tfBackend === 'webgpu' ? undefined : nativeReason,
    replacedKernels: replaced,
    fallbacks: [],
    adapter: cand.tfBackend === 'webgpu' && probe?.ok ? probe.adapter : undefined,
    kernels: kernelsFor(cand.tfBackend, accelerated ? blas!.addon : null),
  };
}

/** The kernels of an activated tfjs backend (with the native addon when its BLAS kernels are registered). */
function kernelsFor(tfBackend: Candidate['tfBackend'], addon: NativeAddon | null): Kernels {
  if (tfBackend === 'wasm') return wasmKernels;
  if (tfBackend === 'cpu') return addon ? nativeKernels(addon) : hostKernels;
  return tfKernels;
}

const BLAS_NAMES: Record<string, string> = { openblas: 'OpenBLAS', blis: 'BLIS', mkl: 'MKL', accelerate: 'Accelerate' };

/**
 * Which GEMM runs, for the start-up line: "OpenBLAS libopenblas.so.0 SkylakeX", "BLIS libblis.so.4",
 * "portable-avx512 SGEMM" (the addon's own), or a FOPEIFY_BLAS path; when a system BLAS loaded, also how
 * the engine was chosen: "portable-avx512 SGEMM, measured 1.8× OpenBLAS libopenblas.so.0 Haswell at
 * start-up (5 ms)", or "..., FOPEIFY_GEMM=portable (OpenBLAS libopenblas.so.0 Haswell loaded)".
 */
export function gemmName(blas: Pick<NativeBlas, 'kind' | 'library' | 'config' | 'gemm' | 'portable'>): string {
  const portable = `${blas.portable || blas.library} SGEMM`;
  if (blas.kind === 'portable') return portable;
  const system = systemBlasName(blas);
  const [running, other] = blas.gemm.engine === 'portable' ? [portable, system] : [system, portable];
  if (blas.gemm.how === 'FOPEIFY_GEMM') return `${running}, FOPEIFY_GEMM=${blas.gemm.engine}${blas.gemm.engine === 'portable' ? ` (${system} loaded)` : ''}`;
  const t = blas.gemm.timings;
  if (blas.gemm.how !== 'measured' || !t) return running;
  const x = speedupOverOther(blas.gemm);
  if (!Number.isFinite(x) || x <= 0) return `${running} (timing it against ${other} failed at start-up; kept)`;
  const kept = x < 1 ? `; kept within the ${Math.round((PORTABLE_MARGIN - 1) * 100)} % margin` : '';
  return `${running}, measured ${x.toFixed(x < 1.2 ? 2 : 1)}× ${other} at start-up (${t.costMs.toFixed(0)} ms${kept})`;
}

/** The loaded system BLAS: "OpenBLAS libopenblas.so.0 Haswell", "BLIS libblis.so.4" or a FOPEIFY_BLAS path. */
export function systemBlasName(blas: Pick<NativeBlas, 'kind' | 'library' | 'config'>): string {
  const name = BLAS_NAMES[blas.kind];
  return `${name ? `${name} ` : ''}${blas.library}${coreName(blas.config)}`;
}

/** " SkylakeX" from OpenBLAS's config string, so the user sees which kernels run. */
function coreName(config: string | undefined): string {
  if (!config) return '';
  const m = /\b(SkylakeX|Haswell|Zen|Cooperlake|SapphireRapids|Prescott|Sandybridge|Nehalem|Core2|Penryn|Excavator|Bulldozer|Piledriver|Steamroller|Barcelona|Atom|Neoverse\w*|ARMV8|CortexA\w+|VORTEX|POWER\d+)\b/.exec(config);
  return m ? ` ${m[1]}` : '';
}

/** For tests: forget what was announced, so the next setupBackend logs again. */
export function _resetAnnouncementsForTests(): void {
  announced = new Set();
}
