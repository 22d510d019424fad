/**
 * A loaded model: spec + named weight variables + the forward pass, cache and decoding bound to them.
 * `loadModel(dir | ResolvedModel | Hub id)` is the entry point of every command that runs a model.
 */
import * as tf from '../backend/tfjs.js';
import { loadModelSpec } from '../config/load.js';
import type { ModelSpec } from '../config/model-spec.js';
import type { Kernels } from '../backend/kernels.js';
import type { BackendInfo, BackendName } from '../backend/select.js';
import { resolveModel } from '../hub/resolve.js';
import type { ModelSourceOptions, ResolvedModel } from '../hub/source.js';
import { KvCache, type KvCacheOptions } from './cache.js';
import { generate, type GenerateOptions, type GenerateResult } from './generate.js';
import { forwardHidden, forwardLogits, lmHead, type ForwardOptions, type TokenIds } from './llama.js';
import { loadWeights, TRANSPOSED_SUFFIX, type FopeLayout, type LoadWeightsOptions } from './weights.js';

export interface LoadModelOptions extends LoadWeightsOptions {
  /**
   * The activated backend (setupBackend's BackendInfo) the model computes on; a backend name activates
   * that one first (the convenience of `loadModel('org/name', { backend: 'native' })`). Default: the
   * active one (tfjs's default when none was set up).
   */
  backend?: BackendInfo | BackendName;
  /** Threads for a backend activated here. */
  threads?: number;
  /** Do not print the "backend: ..." line. */
  quiet?: boolean;
  /** Hub resolution options when `source` is a Hub id. */
  source?: ModelSourceOptions;
}

export class LlamaModel {
  constructor(
    readonly spec: ModelSpec,
    /** Every weight by its Hugging Face name (FoPE coefficients included, never trainable). */
    readonly weights: Map<string, tf.Variable>,
    /** Where the FoPE coefficients were found, or null for a RoPE model. */
    readonly fopeLayout: FopeLayout | null,
    /** The model folder. */
    readonly dir: string,
    readonly backend?: BackendInfo,
    /** What the forward pass computes with (default: the backend's kernels, else plain tf ops). */
    readonly kernels: Kernels | undefined = backend?.kernels,
  ) {}

  /** Logits `[B, T, V]` (`[B, 1, V]` with `logits: 'last'`). The caller disposes the result. */
  forward(ids: TokenIds, options: ForwardOptions = {}): tf.Tensor3D {
    return forwardLogits(this.weights, this.spec, ids, { kernels: this.kernels, ...options });
  }

  /** Final hidden states `[B, T, H]` (after the last norm), for losses computed in chunks. */
  hidden(ids: TokenIds, options: ForwardOptions = {}): tf.Tensor3D {
    return forwardHidden(this.weights, this.spec, ids, { kernels: this.kernels, ...options });
  }

  /** LM head on `[N, H]` hidden states → `[N, V]`. */
  logitsFromHidden(h: tf.Tensor2D): tf.Tensor2D {
    return lmHead(this.weights, this.spec, h, this.kernels);
  }

  /** An empty KV cache for this model. Dispose it when done. */
  createCache(options: KvCacheOptions = {}): KvCache {
    return new KvCache(this.spec.numLayers, options);
  }

  /** Decode from prompt ids with a fresh cache. */
  generate(ids: readonly number[], options: GenerateOptions = {}): Promise<GenerateResult> {
    return generate(this.weights, this.spec, ids, { kernels: this.kernels, ...options });
  }

  /** 'inference' when linear weights are held transposed (`<name>^T`), else 'hf'. */
  get layout(): 'hf' | 'inference' {
    for (const k of this.weights.keys()) if (k.endsWith(TRANSPOSED_SUFFIX)) return 'inference';
    return 'hf';
  }

  /** The variables whose trainable flag is set. */
  trainableVariables(): tf.Variable[] {
    return [...this.weights.values()].filter((v) => v.trainable);
  }

  /** Parameters of the model (FoPE coefficients included, tied embeddings counted once). */
  get parameterCount(): number {
    let n = 0;
    for (const v of this.weights.values()) n += v.size;
    return n;
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
    this.weights.clear();
  }
}

/**
 * The backend a library call computes on: `backend` itself when it is an activated BackendInfo; the named
 * backend (or 'auto' when only `threads` is given), activated here; else the active one, and when none was
 * set up, tfjs's default (plain cpu), activated quietly. The library's one place that activates a backend;
 * the CLI activates through it once per command.
 */
export async function useBackend(
  backend: BackendInfo | BackendName | undefined,
  options: { threads?: number; allowSoftwareAdapter?: boolean; quiet?: boolean; log?: (line: string) => void } = {},
): Promise<BackendInfo> {
  if (typeof backend === 'object') return backend;
  const { setupBackend, currentBackend } = await import('../backend/select.js');
  if (backend !== undefined || options.threads !== undefined) {
    return setupBackend({ backend: backend ?? 'auto', threads: options.threads, allowSoftwareAdapter: options.allowSoftwareAdapter, quiet: options.quiet, log: options.log });
  }
  return currentBackend() ?? setupBackend({ backend: 'cpu', quiet: true });
}

/**
 * Load a model folder (or a resolved / Hub model) into tfjs float32 variables. Throws FopeifyError for
 * unsupported architectures, missing tensors and mismatched shapes. A Hub id is resolved here and a named
 * backend activated here (see useBackend): the convenience on top of the CLI's start-up.
 */
export async function loadModel(source: string | ResolvedModel, options: LoadModelOptions = {}): Promise<LlamaModel> {
  const backend = await useBackend(options.backend, { threads: options.threads, quiet: options.quiet });
  const resolved = typeof source === 'string' ? await resolveModel(source, options.source) : source;
  const spec = await loadModelSpec(resolved.dir);
  const { weights, fopeLayout } = await loadWeights(resolved.dir, spec, options);
  return new LlamaModel(spec, weights, fopeLayout, resolved.dir, backend);
}
