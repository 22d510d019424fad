/** The backend layer: which TensorFlow.js backend runs, and the native BLAS accelerator. */
export {
  BACKEND_NAMES,
  currentBackend,
  defaultThreads,
  detectCapabilities,
  detectGpu,
  getTf,
  planBackends,
  setupBackend,
  type BackendInfo,
  type BackendName,
  type Candidate,
  type Capabilities,
  type SetupOptions,
} from './select.js';
export { loadNative, type NativeAddon, type NativeBlas } from './native.js';
export { formatProfile, profileKernels, type KernelProfile, type KernelTime } from './profile.js';
export { makeWorkload, STEP_576, type Workload, type WorkloadConfig } from './workload.js';
export { describeAdapter, type WebGpuAdapter } from './webgpu.js';
