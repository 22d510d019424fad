/** The backend layer: which TensorFlow.js backend runs, the native BLAS accelerator, and the kernels seam. */
export {
  activeKernels,
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
export {
  recordingGradient,
  type AttentionGeometry,
  type AttentionOutput,
  type HeadLossInput,
  type HeadLossOutput,
  type HostPasses,
  type Kernels,
  type KvBlock,
} from './kernels.js';
export { tfKernels } from './kernels-tf.js';
export { hostKernels, wasmKernels } from './kernels-host.js';
export { nativeKernels } from './kernels-native.js';
export { describeAdapter, type WebGpuAdapter } from './webgpu.js';
