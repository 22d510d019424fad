/**
 * `finetune(options)`: the training run behind `fopeify finetune`, and the library entry point for
 * training from scratch (a random-init checkpoint, no recipe). In three parts: the run plan (run-plan.ts:
 * everything decided before training, refused before any work), the trainer (trainer.ts: one optimizer
 * step of `gradAccum` micro-batches of `batch` packed chunks, mean causal-LM cross-entropy, AdamW with
 * warmup and constant / cosine / linear decay and global-norm clipping; the held-out evaluation), and this
 * file: the loop around them with metrics.jsonl, checkpoints, finetune.json and the model folder.
 *
 * Exact resume: a checkpoint holds every trainable tensor, the AdamW moments and step, the data
 * position and the RNG state; everything else is a deterministic function of (model, recipe,
 * settings). A run stopped with `stopAfter` and resumed produces the same bytes as an uninterrupted
 * run on the same backend.
 */
import path from 'node:path';
import type { BackendInfo, BackendName } from '../backend/select.js';
import { badOption, FopeifyError, optionName } from '../errors.js';
import { writeFileAtomically } from '../io/atomic.js';
import { loadTokenizer, type TextTokenizer } from '../model/index.js';
import { useBackend } from '../model/model.js';
import { pruneCheckpoints, saveCheckpoint, type CheckpointState } from './checkpoint.js';
import { appendMetrics, truncateMetrics } from './output.js';
import { METRICS_FILE, SUMMARY_FILE, type MetricsRecord } from '../io/formats.js';
import { prepareModel, type ConversionInfo, type PreparedModel } from './prepare.js';
import type { TrainSettings } from './recipe.js';
import { describeActivations, type ActivationPlan } from './activations.js';
import { checkpointsAt, evaluatesAt, prepareRun, stopsAt, type RunOptions, type RunPlan } from './run-plan.js';
import { buildData, completeModelFolder, createRunOutput, eosOf, sameJson, type SummaryBase } from './run-common.js';
import { Trainer } from './trainer.js';
import { finetuneTorch, type TorchEngineOptions } from './torch-finetune.js';
import { ENGINES, type Engine } from '../bridge/torch-engine.js';

export { SYNTHETIC_DOCUMENTS, SYNTHETIC_PASSKEY } from './run-common.js';

export interface StepInfo {
  /** Optimizer steps done (1-based after the first step). */
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSecond: number;
  /** Seconds for the remaining steps at this run's mean step time. */
  etaSeconds: number;
  /** Evaluation results when this step evaluated. */
  eval?: { loss: number; ppl: number; passkeyAccuracy?: number };
}

/** What a planned run reports while it trains, and how it loads. */
export interface TrainCallbacks {
  onStep?: (info: StepInfo) => void;
  /** Informational lines (settings, conversion notes, checkpoints). */
  onLog?: (line: string) => void;
  /** Loading progress. */
  onLoad?: (text: string) => void;
  /** Load weights holding NaN / Inf anyway (a non-finite loss still stops the run). */
  allowNonFinite?: boolean;
}

export interface FinetuneOptions extends RunOptions, TrainCallbacks {
  /**
   * The activated backend (setupBackend's BackendInfo) to train on; a backend name activates that one
   * first. Default: the active one (tfjs's default when none was set up).
   */
  backend?: BackendInfo | BackendName;
  /** Threads of a backend activated here. */
  threads?: number;
  /** Do not print the backend line. */
  quietBackend?: boolean;
  /** Who trains: fopeify's TensorFlow.js trainer (default) or PyTorch under torchrun. */
  engine?: Engine;
  /** Settings of the torch engine. */
  torch?: TorchEngineOptions;
}

export interface FinetuneResult {
  outDir: string;
  /** True when every step is done and the model folder is written; false when stopped by stopAfter. */
  completed: boolean;
  step: number;
  steps: number;
  resumedFrom: number | null;
  recipe: string | null;
  settings: TrainSettings;
  /** Which layers kept their activations and which were recomputed (tfjs engine). */
  activations?: ActivationPlan;
  conversion: ConversionInfo;
  data: string;
  finalLoss: number | null;
  lastEval: MetricsRecord | null;
  trainableParameters: number;
  parameters: number;
  tokens: number;
  /** Mean training throughput of this run. */
  tokensPerSecond: number;
  seconds: number;
  /** The newest checkpoint folder (null when none is left). */
  checkpoint: string | null;
  /** Files of the model folder (completed runs). */
  files: string[];
  backend: string;
  /** GPU memory held at the peak of this run, in bytes (webgpu backend). */
  peakGpuBytes?: number;
  /** The torch engine's job folder and each node's command (--no-launch). */
  job?: { dir: string; commands: string[] };
}

/** The engine named in the options, checked (default tfjs). */
export function checkEngine(engine: Engine | undefined): Engine {
  const e = engine ?? 'tfjs';
  if (!(ENGINES as readonly string[]).includes(e)) throw badOption('engine', `\`engine\` must be ${ENGINES.join(' or ')} (got ${String(e)})`);
  return e;
}

/** Plan the run, activate the backend when asked, train. */
export async function finetune(options: FinetuneOptions): Promise<FinetuneResult> {
  if (checkEngine(options.engine) === 'torch') {
    // The torch engine decides checkpointing itself (every decoder layer on CUDA, none on the CPU:
    // python/fopeify_train/parallel.py); a setting it would ignore is refused, not dropped.
    if ((options.recompute !== undefined && options.recompute !== 'auto') || options.activationBudgetBytes !== undefined) {
      throw badOption(['recompute', 'activationBudgetBytes'], `${optionName('recompute')} and ${optionName('activationBudgetBytes')} apply to the tfjs engine; the torch engine recomputes every decoder layer on CUDA and none on the CPU`);
    }
    return finetuneTorch(options);
  }
  const startedAt = Date.now();
  const plan = await prepareRun(options);
  const backend = await useBackend(options.backend, { threads: options.threads, quiet: options.quietBackend });
  return trainPlanned(plan, { ...options, backend, startedAt });
}

export interface TrainPlannedOptions extends TrainCallbacks {
  /** The activated backend the run computes on. */
  backend: BackendInfo;
  /** When the run started (elapsed seconds count from it; default now). */
  startedAt?: number;
}

/** A run in progress: the plan, the loaded model and data, the trainer, and the bookkeeping around it. */
interface ActiveRun {
  plan: RunPlan;
  prepared: PreparedModel;
  trainer: Trainer;
  data: { description: string };
  parameters: number;
  summaryBase: SummaryBase;
  startedAt: number;
  secondsBefore: number;
  lastCheckpoint: string | null;
  log: (line: string) => void;
}

/** Train a planned run on an activated backend: the output folder is created, the model loaded, the loop run. */
export async function trainPlanned(plan: RunPlan, options: TrainPlannedOptions): Promise<FinetuneResult> {
  const startedAt = options.startedAt ?? Date.now();
  for (const n of plan.notes) options.onLog?.(n);
  await createRunOutput(plan.output.given, plan.output.dir, plan.model.dir, plan.output.removeFirst);
  options.onLoad?.(`loading ${plan.model.given}`);
  const prepared = await prepareModel(plan.model.dir, plan.recipe, plan.settings.seqLen, {
    checked: { spec: plan.model.spec, ...plan.conversion },
    allowNonFinite: options.allowNonFinite,
    onProgress: (d, t) => options.onLoad?.(`loading ${plan.model.given}: ${d}/${t} tensors`),
  });
  let run: ActiveRun | undefined;
  try {
    run = await startRun(plan, prepared, options, startedAt);
    const loop = await trainLoop(run, options.onStep);
    return await finishRun(run, loop);
  } finally {
    run?.trainer.dispose();
    for (const v of prepared.weights.values()) v.dispose();
  }
}

/** Tokenizer, data and trainer for a loaded model; resumed state restored; the run's opening lines and files. */
async function startRun(plan: RunPlan, prepared: PreparedModel, options: TrainPlannedOptions, startedAt: number): Promise<ActiveRun> {
  const log = options.onLog ?? (() => undefined);
  const { settings, resume } = plan;
  const outDir = plan.output.dir;
  if (resume) {
    if (!sameJson(resume.state.config, prepared.config)) {
      throw badOption('resume', `\`resume\`: ${plan.model.given} with recipe ${plan.recipeName ?? 'none'} does not give the model the checkpoint was trained on (config.json differs)`);
    }
    if (resume.state.model !== plan.model.given) log(`note: resuming a run started from ${resume.state.model} with ${plan.model.given}`);
  }
  const tok = await loadTokenizer(plan.model.dir);
  const data = await loadRunData(plan, prepared, tok, log);
  const trainer = Trainer.create(prepared, settings, data, { backend: options.backend, ...plan.blocks, ...plan.activations, passkey: { tokenizer: tok, trials: plan.data.passkeyTrials } });
  let parameters = 0;
  for (const v of prepared.weights.values()) parameters += v.size;
  if (resume) {
    await trainer.restore(resume.dir, resume.state);
    await truncateMetrics(outDir, trainer.stepsDone);
    log(`resumed from ${path.relative(process.cwd(), resume.dir) || resume.dir} (step ${trainer.stepsDone} of ${settings.steps})`);
  } else {
    await writeFileAtomically(path.join(outDir, METRICS_FILE), '');
  }
  logRunStart(plan, prepared, trainer, parameters, log);
  const summaryBase: SummaryBase = {
    fopeify_finetune: 1,
    model: plan.model.name,
    recipe: plan.recipeName,
    settings,
    conversion: prepared.conversion,
    data: data.description,
    backend: options.backend.description,
    activations: trainer.activationPlan,
  };
  await writeFileAtomically(path.join(outDir, SUMMARY_FILE), JSON.stringify({ ...summaryBase, status: 'training' }, null, 2) + '\n');
  const secondsBefore = resume?.state.seconds ?? 0;
  return { plan, prepared, trainer, data, parameters, summaryBase, startedAt, secondsBefore, lastCheckpoint: resume?.dir ?? null, log };
}

/** The run's training and held-out data, checked against the checkpoint and the vocabulary. */
async function loadRunData(plan: RunPlan, prepared: PreparedModel, tok: TextTokenizer, log: (line: string) => void) {
  const eos = eosOf(tok, prepared.config);
  const vocab = prepared.spec.vocabSize;
  if (vocab <= eos) throw new FopeifyError('BAD_CONFIG', `the EOS id ${eos} is outside the vocabulary (${vocab})`);
  const data = await buildData(plan.data.arg, tok, eos, plan.settings, plan.data.evalBatches, log);
  const state = plan.resume?.state;
  if (state && state.data !== data.description) {
    throw badOption(['resume', 'data'], `\`resume\`: the data differs from the checkpoint's (${state.data}); give the same \`data\``);
  }
  if (data.train.chunks.find((c) => c.some((t) => t >= vocab))) throw new FopeifyError('BAD_ARGUMENT', `the tokenized data has ids outside the model's vocabulary (${vocab})`);
  return data;
}

function logRunStart(plan: RunPlan, prepared: PreparedModel, trainer: Trainer, parameters: number, log: (line: string) => void): void {
  const { conversion } = prepared;
  log(`recipe ${plan.recipeName ?? 'none'}${plan.recipe.description ? `: ${plan.recipe.description}` : ''}`);
  for (const n of conversion.notes) log(`note: ${n}`);
  if (conversion.yarn) log(`YaRN: factor ${conversion.yarn.factor} over ${conversion.yarn.originalLength} tokens`);
  if (conversion.fope) log(`FoPE: K=${conversion.fope.k}, coefficients [${conversion.fope.coefficientShape.join(', ')}] (frozen)`);
  log(`settings: ${JSON.stringify(plan.settings)}`);
  log(describeActivations(trainer.activationPlan));
  log(`trainable parameters: ${trainer.model.trainableCount.toLocaleString('en-US')} of ${parameters.toLocaleString('en-US')} (${plan.settings.trainable})`);
}

/** The checkpoint of a run as it stands. */
function checkpointState(run: ActiveRun): CheckpointState {
  const { plan, trainer } = run;
  return {
    format: 'fopeify-finetune-checkpoint',
    version: 1,
    step: trainer.stepsDone,
    dataPosition: trainer.position,
    rngState: trainer.rng.state(),
    tokens: trainer.tokens,
    seconds: run.secondsBefore + (Date.now() - run.startedAt) / 1000,
    settings: plan.settings,
    recipe: plan.recipeName,
    model: plan.model.name,
    config: run.prepared.config,
    conversion: run.prepared.conversion,
    data: run.data.description,
    dataArg: plan.data.checkpointArg,
  };
}

async function writeCheckpoint(run: ActiveRun): Promise<void> {
  const outDir = run.plan.output.dir;
  run.lastCheckpoint = await saveCheckpoint(outDir, checkpointState(run), run.trainer.model.params, run.trainer.optimizer);
  await pruneCheckpoints(outDir, Math.max(1, run.plan.output.keepCheckpoints));
  run.log(`checkpoint ${path.basename(run.lastCheckpoint)}`);
}

/** What the loop did in this run. */
interface LoopResult {
  firstStep: number;
  stepsThisRun: number;
  trainSeconds: number;
  /** Wall time of the loop. */
  seconds: number;
  finalLoss: number | null;
  lastEval: MetricsRecord | null;
  stopped: boolean;
}

/** Steps until the planned total (or --stop-after): metrics, evaluations and checkpoints as planned. */
async function trainLoop(run: ActiveRun, onStep: TrainCallbacks['onStep']): Promise<LoopResult> {
  const { plan, trainer } = run;
  const steps = plan.settings.steps;
  const loopStart = Date.now();
  const out: LoopResult = { firstStep: trainer.stepsDone, stepsThisRun: 0, trainSeconds: 0, seconds: 0, finalLoss: null, lastEval: null, stopped: false };
  while (trainer.stepsDone < steps) {
    const r = await trainer.step();
    out.stepsThisRun++;
    out.trainSeconds += r.seconds;
    out.finalLoss = r.loss;
    const record: MetricsRecord = {
      step: r.step,
      loss: r.loss,
      lr: r.lr,
      tokens_per_s: plan.tokensPerStep / Math.max(r.seconds, 1e-6),
      grad_norm: r.gradNorm,
      tokens: trainer.tokens,
      elapsed_s: run.secondsBefore + (Date.now() - run.startedAt) / 1000,
    };
    let ev: StepInfo['eval'];
    if (evaluatesAt(plan, r.step)) {
      ev = await trainer.evaluate();
      record.eval_loss = ev.loss;
      record.eval_ppl = ev.ppl;
      if (ev.passkeyAccuracy !== undefined) record.passkey_accuracy = ev.passkeyAccuracy;
      out.lastEval = record;
    }
    if (trainer.peakGpuBytes !== null) record.peak_gpu_bytes = trainer.peakGpuBytes; // after the evaluation: the peak so far
    await appendMetrics(plan.output.dir, record);
    const mean = out.trainSeconds / out.stepsThisRun;
    onStep?.({ step: r.step, steps, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokensPerSecond: record.tokens_per_s, etaSeconds: mean * (steps - r.step), eval: ev });
    if (checkpointsAt(plan, r.step, out.stepsThisRun)) await writeCheckpoint(run);
    if (stopsAt(plan, r.step, out.stepsThisRun)) {
      out.stopped = true;
      break;
    }
  }
  out.seconds = (Date.now() - loopStart) / 1000;
  return out;
}

/** The result; a stopped run's finetune.json, or a completed run's model folder. */
async function finishRun(run: ActiveRun, loop: LoopResult): Promise<FinetuneResult> {
  const { plan, trainer, prepared } = run;
  const outDir = plan.output.dir;
  const result: FinetuneResult = {
    outDir,
    completed: !loop.stopped,
    step: trainer.stepsDone,
    steps: plan.settings.steps,
    resumedFrom: plan.resume ? loop.firstStep : null,
    recipe: plan.recipeName,
    settings: plan.settings,
    activations: trainer.activationPlan,
    conversion: prepared.conversion,
    data: run.data.description,
    finalLoss: loop.finalLoss,
    lastEval: loop.lastEval,
    trainableParameters: trainer.model.trainableCount,
    parameters: run.parameters,
    tokens: trainer.tokens,
    tokensPerSecond: loop.trainSeconds > 0 ? (loop.stepsThisRun * plan.tokensPerStep) / loop.trainSeconds : 0,
    seconds: loop.seconds,
    checkpoint: run.lastCheckpoint,
    files: [],
    backend: run.summaryBase.backend,
  };
  if (trainer.peakGpuBytes !== null) result.peakGpuBytes = trainer.peakGpuBytes;
  if (loop.stopped) {
    const checkpoint = run.lastCheckpoint && path.relative(outDir, run.lastCheckpoint);
    await writeFileAtomically(path.join(outDir, SUMMARY_FILE), JSON.stringify({ ...run.summaryBase, status: 'stopped', step: trainer.stepsDone, checkpoint }, null, 2) + '\n');
    run.log(`stopped after step ${trainer.stepsDone}; continue with --resume`);
    return result;
  }
  const done = await completeModelFolder({
    outDir,
    sourceDir: plan.model.dir,
    recipe: plan.recipe,
    summaryBase: run.summaryBase,
    model: trainer.model,
    config: prepared.config,
    dtype: plan.output.dtype,
    stepsDone: trainer.stepsDone,
    tokens: trainer.tokens,
    parameters: run.parameters,
    seconds: run.secondsBefore + (Date.now() - run.startedAt) / 1000,
    finalLoss: loop.finalLoss,
  });
  Object.assign(result, { files: done.files, finalLoss: done.finalLoss, lastEval: done.lastEval });
  if (!plan.output.keepCheckpointsAtEnd) {
    await pruneCheckpoints(outDir, 0);
    result.checkpoint = null;
  }
  return result;
}
