/**
 * `Trainer`: the training loop's one step and one evaluation, on a model that is already loaded and a
 * backend that is already active. One optimizer step is `gradAccum` micro-batches of `batch` chunks from
 * the training source, their gradients averaged, the loss checked finite, then AdamW at the schedule's
 * learning rate with global-norm clipping. Nothing is read back synchronously: the micro-batch losses
 * and (on a device backend) the gradients' global norm come back in one asynchronous read per step,
 * everything else stays where the backend keeps it. `finetune` drives it (with checkpoints, metrics and the model
 * folder around it); bench/train.mjs drives the same steps on random tokens.
 */
import { availableParallelism } from 'node:os';
import * as tf from '../backend/tfjs.js';
import { releaseReusableBuffers, withBufferReuse } from '../backend/buffer-reuse.js';
import { markingPlace, withMarkingPlace } from '../backend/gc-marking.js';
import { activeKernels, currentBackend, type BackendInfo } from '../backend/select.js';
import { gpuMemoryBytes } from '../backend/webgpu.js';
import type { ModelSpec } from '../config/model-spec.js';
import { FopeifyError, optionName } from '../errors.js';
import { checkFiniteResult } from '../model/finite.js';
import type { TextTokenizer } from '../model/index.js';
import type { FopeLayout } from '../model/weights.js';
import { SeededRandom } from '../random.js';
import { checkActivationBudget, checkRecompute, defaultActivationBudget, type ActivationPlan, type RecomputePolicy } from './activations.js';
import { fitBlocksToBinding } from './binding-limit.js';
import { restoreCheckpoint, type CheckpointState } from './checkpoint.js';
import type { DataPosition } from './data.js';
import { TrainingModel } from './model.js';
import { AdamW } from './optimizer.js';
import { passkeyAccuracy } from './passkey.js';
import type { TrainSettings } from './recipe.js';
import { learningRate } from './schedule.js';
import { timed } from './timing.js';

/** Where training chunks come from: a deterministic, resumable sequence (PackedDataset is one). */
export interface BatchSource {
  take(pos: DataPosition, count: number): { chunks: Int32Array[]; next: DataPosition };
}

/** The data a trainer uses: the training chunks and the held-out ones `evaluate()` scores. */
export interface TrainerData {
  train: BatchSource;
  heldOut: Int32Array[];
}

export interface TrainerOptions {
  /** The active backend the model and optimizer compute on (default: whatever is active). */
  backend?: BackendInfo;
  /** Attention blocks and LM-head chunk rows (memory / speed trade-offs). */
  queryBlock?: number;
  keyBlock?: number;
  lossChunk?: number;
  /** Which layers recompute their activations in the backward pass (activations.ts; default 'auto'). */
  recompute?: RecomputePolicy;
  /**
   * What 'auto' may spend on kept activations, in bytes. Default: defaultActivationBudget() of the memory
   * tensors live in (the machine's; wasm's 4 GiB heap); 0 on a device backend (webgpu), whose memory
   * os.totalmem() does not measure.
   */
  activationBudgetBytes?: number;
  /** Passkey accuracy at seq-len in `evaluate()` (with settings.evalPasskey). */
  passkey?: { tokenizer: TextTokenizer; trials: number };
}

/** What one `step()` did. */
export interface TrainStepResult {
  /** Optimizer steps done after this one (1-based). */
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Wall time of the step. */
  seconds: number;
  /** GPU memory the backend held at its peak so far (webgpu's buffer pool), in bytes; absent elsewhere. */
  peakGpuBytes?: number;
}

export interface EvalResult {
  loss: number;
  ppl: number;
  passkeyAccuracy?: number;
}

/** The weights a trainer trains: a loaded or prepared model's (PreparedModel and LlamaModel have them). */
export interface TrainerWeights {
  spec: ModelSpec;
  weights: Map<string, tf.Variable>;
  fopeLayout: FopeLayout | null;
}

export class Trainer {
  /** Optimizer steps done. */
  stepsDone = 0;
  /** Where the next micro-batch starts in the training source. */
  position: DataPosition = { epoch: 0, index: 0 };
  /** Tokens trained on (all runs). */
  tokens = 0;
  /** The stream the passkey evaluation draws from (saved in checkpoints). */
  readonly rng: SeededRandom;
  /** The high-water mark of GPU memory (bytes) on a GPU backend that reports it, else null. */
  peakGpuBytes: number | null = null;

  constructor(
    readonly model: TrainingModel,
    readonly optimizer: AdamW,
    readonly settings: TrainSettings,
    readonly data: TrainerData,
    readonly options: TrainerOptions = {},
  ) {
    this.rng = new SeededRandom(settings.seed, 'train');
  }

  /** The training model and AdamW over `source`'s weights, as the settings ask. */
  static create(source: TrainerWeights, settings: TrainSettings, data: TrainerData, options: TrainerOptions = {}): Trainer {
    // On a GPU adapter every tensor of a step must fit one storage binding: blocks sized to fit, or a clear error.
    const adapter = options.backend?.adapter;
    const largestWeight = () => Math.max(...[...source.weights.values()].map((w) => w.size));
    const blocks = adapter
      ? fitBlocksToBinding(source.spec, { batch: settings.batch, seqLen: settings.seqLen, largestWeight: largestWeight() }, options, Math.min(adapter.maxStorageBufferBindingSize, adapter.maxBufferSize))
      : options;
    const kernels = options.backend?.kernels ?? activeKernels();
    const recompute = checkRecompute(options.recompute);
    const budget = checkActivationBudget(options.activationBudgetBytes) ?? (kernels.host ? defaultActivationBudget(options.backend?.memoryLimitBytes ?? undefined) : 0);
    const model = new TrainingModel(source.spec, source.weights, source.fopeLayout, {
      kernels,
      trainable: settings.trainable,
      lora: settings.lora,
      seed: settings.seed,
      queryBlock: blocks.queryBlock,
      keyBlock: blocks.keyBlock,
      lossChunk: blocks.lossChunk,
      recompute,
      activationBudgetBytes: budget,
    });
    try {
      const optimizer = new AdamW(model.params, { betas: settings.betas, eps: 1e-8, weightDecay: settings.weightDecay }, model.kernels);
      return new Trainer(model, optimizer, settings, data, options);
    } catch (err) {
      model.dispose();
      throw err;
    }
  }

  /** Tokens one optimizer step trains on. */
  get tokensPerStep(): number {
    return this.settings.batch * this.settings.gradAccum * this.settings.seqLen;
  }

  /** Which layers keep their activations in a step (one micro-batch of batch × seqLen tokens). */
  get activationPlan(): ActivationPlan {
    return this.model.activationPlan(this.settings.batch * this.settings.seqLen);
  }

  /** Continue from a checkpoint: the trainable tensors, AdamW's moments and step, the data position, the RNG. */
  async restore(dir: string, state: CheckpointState): Promise<void> {
    await restoreCheckpoint(dir, this.model.params, this.optimizer);
    this.stepsDone = state.step;
    this.position = state.dataPosition;
    this.rng.setState(state.rngState);
    this.tokens = state.tokens;
  }

  /**
   * One optimizer step. A non-finite loss throws before the weights change. V8 marks on the main
   * thread during it when the native kernels use every core (gc-marking.ts).
   */
  async step(): Promise<TrainStepResult> {
    const backend = this.options.backend ?? currentBackend();
    const place = markingPlace({ accelerated: backend?.accelerated ?? false, threads: backend?.threads ?? 1, cores: availableParallelism(), env: process.env });
    // Tensor buffers the previous step freed are handed out again (buffer-reuse.ts), on tfjs 'cpu';
    // FOPEIFY_BUFFER_REUSE=0 turns it off.
    const reuse = tf.getBackend() === 'cpu' && process.env.FOPEIFY_BUFFER_REUSE?.trim() !== '0' ? tf.backend() : null;
    return withMarkingPlace(place, () => withBufferReuse(reuse, () => this.optimizerStep()));
  }

  private async optimizerStep(): Promise<TrainStepResult> {
    const s = this.settings;
    const t0 = Date.now();
    const lr = learningRate(s, this.stepsDone);
    await this.model.ready();
    const { losses, grads } = this.accumulatedGrads();
    const normOrSquares = AdamW.globalNorm(grads, this.model.kernels);
    // The step's one read: the micro-batch losses, and the gradients' sum of squares when it is on the device.
    const values = await readScalars(typeof normOrSquares === 'number' ? losses : [...losses, normOrSquares]);
    let lossSum = 0;
    for (let i = 0; i < losses.length; i++) lossSum += values[i]!;
    const loss = lossSum / s.gradAccum;
    const gradNorm = typeof normOrSquares === 'number' ? normOrSquares : Math.sqrt(values[losses.length]!);
    // Before the optimizer and the metrics: a NaN step must neither corrupt the weights nor reach metrics.jsonl.
    if (!Number.isFinite(loss)) {
      tf.dispose([...grads.values()]);
      throw new FopeifyError('NON_FINITE', `the training loss is ${loss} at step ${this.stepsDone + 1} (lower ${optionName('settings.lr')}, or check the weights)`, {
        option: 'settings.lr',
      });
    }
    timed('optimizer', () => this.optimizer.update(grads, lr, s.maxGradNorm, gradNorm));
    tf.dispose([...grads.values()]);
    this.stepsDone++;
    this.tokens += this.tokensPerStep;
    this.sampleGpuMemory();
    const result: TrainStepResult = { step: this.stepsDone, loss, lr, gradNorm, seconds: (Date.now() - t0) / 1000 };
    if (this.peakGpuBytes !== null) result.peakGpuBytes = this.peakGpuBytes;
    return result;
  }

  /** The losses (unread, on the backend) and the mean gradients of the step's `gradAccum` micro-batches. */
  private accumulatedGrads(): { losses: tf.Scalar[]; grads: Map<string, tf.Tensor> } {
    const s = this.settings;
    const losses: tf.Scalar[] = [];
    let grads: Map<string, tf.Tensor> | null = null;
    for (let micro = 0; micro < s.gradAccum; micro++) {
      const take = this.data.train.take(this.position, s.batch);
      this.position = take.next;
      const r = this.model.lossAndGradTensors(take.chunks);
      losses.push(r.loss);
      if (!grads) grads = r.grads;
      else {
        for (const [name, g] of r.grads) {
          const prev = grads.get(name)!;
          grads.set(name, tf.add(prev, g));
          prev.dispose();
          g.dispose();
        }
      }
    }
    if (s.gradAccum > 1) {
      for (const [name, g] of grads!) {
        grads!.set(name, tf.div(g, s.gradAccum));
        g.dispose();
      }
    }
    return { losses, grads: grads! };
  }

  /** Held-out loss and perplexity (and passkey accuracy when the settings ask for it); one read for the losses. */
  async evaluate(): Promise<EvalResult> {
    releaseReusableBuffers(); // evaluation allocates other sizes: let V8 free the steps' pool
    await this.model.ready();
    const heldOut = this.data.heldOut;
    const values = await readScalars(heldOut.map((c) => this.model.lossTensor([c])));
    let sum = 0;
    for (const v of values) sum += v;
    const loss = heldOut.length ? checkFiniteResult(sum / heldOut.length, `the held-out loss at step ${this.stepsDone}`) : NaN;
    const out: EvalResult = { loss, ppl: Math.exp(loss) };
    const pk = this.options.passkey;
    if (this.settings.evalPasskey && pk) out.passkeyAccuracy = await passkeyAccuracy(this.model, pk.tokenizer, this.settings.seqLen, pk.trials, this.rng);
    this.sampleGpuMemory();
    return out;
  }

  private sampleGpuMemory(): void {
    const bytes = gpuMemoryBytes();
    if (bytes !== null) this.peakGpuBytes = Math.max(this.peakGpuBytes ?? 0, bytes);
  }

  /** Free the optimizer state and the training model's own tensors (not the source weights). */
  dispose(): void {
    releaseReusableBuffers();
    this.optimizer.dispose();
    this.model.dispose();
  }
}

/** The values of scalar tensors, in one asynchronous read (the tensors are disposed). */
async function readScalars(scalars: tf.Scalar[]): Promise<Float32Array> {
  if (!scalars.length) return new Float32Array(0);
  const all = tf.stack(scalars);
  tf.dispose(scalars);
  try {
    return (await all.data()) as Float32Array;
  } finally {
    all.dispose();
  }
}
