/**
 * `Trainer`: the training loop's one step and one evaluation, on a model that is already loaded and a
 * backend that is already active. One optimizer step is `gradAccum` micro-batches of `batch` chunks from
 * the training source, their gradients averaged, the loss checked finite, then AdamW at the schedule's
 * learning rate with global-norm clipping. `finetune` drives it (with checkpoints, metrics and the model
 * folder around it); bench/train.mjs drives the same steps on random tokens.
 */
import * as tf from '@tensorflow/tfjs';
import { activeKernels, type BackendInfo } from '../backend/select.js';
import type { ModelSpec } from '../config/model-spec.js';
import { FopeifyError, optionName } from '../errors.js';
import { checkFiniteResult } from '../model/finite.js';
import type { TextTokenizer } from '../model/index.js';
import type { FopeLayout } from '../model/weights.js';
import { SeededRandom } from '../random.js';
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
    const model = new TrainingModel(source.spec, source.weights, source.fopeLayout, {
      kernels: options.backend?.kernels ?? activeKernels(),
      trainable: settings.trainable,
      lora: settings.lora,
      seed: settings.seed,
      queryBlock: options.queryBlock,
      keyBlock: options.keyBlock,
      lossChunk: options.lossChunk,
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

  /** Continue from a checkpoint: the trainable tensors, AdamW's moments and step, the data position, the RNG. */
  async restore(dir: string, state: CheckpointState): Promise<void> {
    await restoreCheckpoint(dir, this.model.params, this.optimizer);
    this.stepsDone = state.step;
    this.position = state.dataPosition;
    this.rng.setState(state.rngState);
    this.tokens = state.tokens;
  }

  /** One optimizer step. A non-finite loss throws before the weights change. */
  step(): TrainStepResult {
    const s = this.settings;
    const t0 = Date.now();
    const lr = learningRate(s, this.stepsDone);
    const { loss, grads } = this.accumulatedGrads();
    // Before the optimizer and the metrics: a NaN step must neither corrupt the weights nor reach metrics.jsonl.
    if (!Number.isFinite(loss)) {
      tf.dispose([...grads.values()]);
      throw new FopeifyError('NON_FINITE', `the training loss is ${loss} at step ${this.stepsDone + 1} (lower ${optionName('settings.lr')}, or check the weights)`, {
        option: 'settings.lr',
      });
    }
    const gradNorm = timed('optimizer', () => this.optimizer.apply(grads, lr, s.maxGradNorm));
    tf.dispose([...grads.values()]);
    this.stepsDone++;
    this.tokens += this.tokensPerStep;
    return { step: this.stepsDone, loss, lr, gradNorm, seconds: (Date.now() - t0) / 1000 };
  }

  /** The mean loss and mean gradients of the step's `gradAccum` micro-batches. */
  private accumulatedGrads(): { loss: number; grads: Map<string, tf.Tensor> } {
    const s = this.settings;
    let lossSum = 0;
    let grads: Map<string, tf.Tensor> | null = null;
    for (let micro = 0; micro < s.gradAccum; micro++) {
      const take = this.data.train.take(this.position, s.batch);
      this.position = take.next;
      const r = this.model.lossAndGrads(take.chunks);
      lossSum += r.loss;
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
    return { loss: lossSum / s.gradAccum, grads: grads! };
  }

  /** Held-out loss and perplexity (and passkey accuracy when the settings ask for it). */
  evaluate(): EvalResult {
    const heldOut = this.data.heldOut;
    let sum = 0;
    for (const c of heldOut) sum += this.model.loss([c]);
    const loss = heldOut.length ? checkFiniteResult(sum / heldOut.length, `the held-out loss at step ${this.stepsDone}`) : NaN;
    const out: EvalResult = { loss, ppl: Math.exp(loss) };
    const pk = this.options.passkey;
    if (this.settings.evalPasskey && pk) out.passkeyAccuracy = passkeyAccuracy(this.model, pk.tokenizer, this.settings.seqLen, pk.trials, this.rng);
    return out;
  }

  /** Free the optimizer state and the training model's own tensors (not the source weights). */
  dispose(): void {
    this.optimizer.dispose();
    this.model.dispose();
  }
}
