/**
 * `finetune(options)`: the training loop behind `fopeify finetune`, and the library entry point for
 * training from scratch (a random-init checkpoint, no recipe). One optimizer step is `gradAccum`
 * micro-batches of `batch` packed chunks; the loss is the mean causal-LM cross-entropy; AdamW with
 * warmup and constant / cosine / linear decay and global-norm clipping.
 *
 * Exact resume: a checkpoint holds every trainable tensor, the AdamW moments and step, the data
 * position and the RNG state; everything else is a deterministic function of (model, recipe,
 * settings). A run stopped with `stopAfter` and resumed produces the same bytes as an uninterrupted
 * run on the same backend.
 */
import path from 'node:path';
import { activeKernels, setupBackend, currentBackend, type BackendInfo, type BackendName } from '../backend/select.js';
import { FopeifyError } from '../errors.js';
import type { ModelSourceOptions } from '../hub/source.js';
import { isEmptyOrMissing, writeFileAtomically } from '../io/atomic.js';
import { requireOutputPath } from '../io/output-folder.js';
import { loadTokenizer } from '../model/index.js';
import { SeededRandom } from '../rope/random.js';
import * as tf from '@tensorflow/tfjs';
import { latestCheckpoint, pruneCheckpoints, readCheckpointState, restoreCheckpoint, saveCheckpoint, type CheckpointState } from './checkpoint.js';
import type { DataPosition } from './data.js';
import { TrainingModel } from './model.js';
import { AdamW } from './optimizer.js';
import {
  appendMetrics,
  SUMMARY_FILE,
  truncateMetrics,
  type MetricsRecord,
  type OutputDtype,
} from './output.js';
import { passkeyAccuracy } from './passkey.js';
import { prepareModel, type ConversionInfo } from './prepare.js';
import { checkFiniteResult } from '../model/finite.js';
import { resolveTrainSettings, type TrainOverrides, type TrainSettings } from './recipe.js';
import { buildData, completeModelFolder, eosOf, prepareRunFolders, recipeFor, resumedSettings, sameJson, SYNTHETIC_PASSKEY, type SummaryBase } from './run-common.js';
import { learningRate } from './schedule.js';
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

export interface FinetuneOptions extends ModelSourceOptions {
  /** Model folder or Hub id. */
  model: string;
  /** Output folder: the model folder at the end, checkpoints and metrics.jsonl meanwhile. */
  outDir: string;
  /** Recipe name (recipes/) or file; omitted, null or "none": no conversion, library defaults. */
  recipe?: string | null;
  /** Training text: a .txt/.md/.jsonl file or folder, "synthetic:passkey", or texts in memory. */
  data?: string | { texts: string[]; name?: string };
  /** Settings over the recipe's (undefined values are ignored). */
  settings?: TrainOverrides;
  /** End cleanly after this many steps of this run, leaving a resumable checkpoint. */
  stopAfter?: number;
  /** Continue from the newest checkpoint in outDir. */
  resume?: boolean;
  /** Start over in a non-empty outDir (its content is removed). */
  force?: boolean;
  /** Activate this backend first (default: whatever tfjs has active). */
  backend?: BackendName;
  threads?: number;
  /** Do not print the backend line. */
  quietBackend?: boolean;
  /** Weights dtype of the saved model (default f32; FoPE coefficients are always f32). */
  dtype?: OutputDtype;
  /** Checkpoints kept while training (default 2) and after completion (default 0: removed). */
  keepCheckpoints?: number;
  keepCheckpointsAtEnd?: boolean;
  /** Held-out chunks per evaluation (default 4). */
  evalBatches?: number;
  /** Passkey prompts per evaluation (default 5). */
  passkeyTrials?: number;
  /** Attention blocks and LM-head chunk rows (memory / speed trade-offs). */
  queryBlock?: number;
  keyBlock?: number;
  lossChunk?: number;
  onStep?: (info: StepInfo) => void;
  /** Informational lines (settings, conversion notes, checkpoints). */
  onLog?: (line: string) => void;
  /** Loading progress. */
  onLoad?: (text: string) => void;
  /** Load weights holding NaN / Inf anyway (a non-finite loss still stops the run). */
  allowNonFinite?: boolean;
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
  /** The torch engine's job folder and each node's command (--no-launch). */
  job?: { dir: string; commands: string[] };
}

export async function finetune(options: FinetuneOptions): Promise<FinetuneResult> {
  const engine = options.engine ?? 'tfjs';
  if (!(ENGINES as readonly string[]).includes(engine)) throw new FopeifyError('BAD_ARGUMENT', `--engine must be ${ENGINES.join(' or ')} (got ${String(engine)})`);
  if (engine === 'torch') return finetuneTorch(options);
  const started = Date.now();
  const log = options.onLog ?? (() => undefined);
  if (options.stopAfter !== undefined && !(Number.isInteger(options.stopAfter) && options.stopAfter > 0)) {
    throw new FopeifyError('BAD_ARGUMENT', `--stop-after must be a positive integer (got ${options.stopAfter})`);
  }
  const dtype = options.dtype ?? 'f32';
  if (!['f32', 'bf16', 'f16'].includes(dtype)) throw new FopeifyError('BAD_ARGUMENT', `--dtype must be f32, bf16 or f16 (got ${String(dtype)})`);
  const outDir = path.resolve(requireOutputPath(options.outDir, '--out'));

  // Fresh run or resume.
  let resumeState: CheckpointState | null = null;
  let resumeDir: string | null = null;
  if (options.resume) {
    resumeDir = await latestCheckpoint(outDir);
    if (!resumeDir) throw new FopeifyError('BAD_ARGUMENT', `--resume: no checkpoint in ${path.join(outDir, 'checkpoints')}`);
    resumeState = await readCheckpointState(resumeDir);
  } else if (!(await isEmptyOrMissing(outDir)) && !options.force) {
    throw new FopeifyError('OUTPUT_EXISTS', `output folder ${options.outDir} is not empty (--resume continues its newest checkpoint, --force starts over)`);
  }

  // Recipe and settings.
  const recipeName = resumeState ? resumeState.recipe : options.recipe === undefined || options.recipe === null ? null : options.recipe;
  const recipe = await recipeFor(recipeName);
  let settings: TrainSettings;
  if (resumeState) {
    settings = resumedSettings(resumeState.settings, options.settings);
    if (options.recipe && options.recipe !== recipeName) log(`note: --recipe ${options.recipe} ignored: the checkpoint was trained with ${recipeName ?? 'none'}`);
  } else settings = resolveTrainSettings(recipe, options.settings ?? {});

  // Everything that can be refused from the config alone is refused before any work starts.
  const resolved = await prepareRunFolders(options, outDir, recipe, settings.seqLen, resumeState !== null);

  let backend: BackendInfo | undefined;
  if (options.backend !== undefined || options.threads !== undefined) {
    backend = await setupBackend({ backend: options.backend ?? 'auto', threads: options.threads, quiet: options.quietBackend });
  } else backend = currentBackend();

  // Model, conversion, tokenizer.
  options.onLoad?.(`loading ${options.model}`);
  const prepared = await prepareModel(resolved.dir, recipe, settings.seqLen, {
    allowNonFinite: options.allowNonFinite,
    onProgress: (d, t) => options.onLoad?.(`loading ${options.model}: ${d}/${t} tensors`),
  });
  // After the load: tfjs picks its default backend at the first op when fopeify did not set one up.
  const backendDesc = backend?.description ?? tf.getBackend() ?? 'tfjs';
  let tm: TrainingModel | undefined;
  let optimizer: AdamW | undefined;
  try {
    if (resumeState) {
      if (!sameJson(resumeState.config, prepared.config)) {
        throw new FopeifyError('BAD_ARGUMENT', `--resume: ${options.model} with recipe ${recipeName ?? 'none'} does not give the model the checkpoint was trained on (config.json differs)`);
      }
      if (resumeState.model !== options.model) log(`note: resuming a run started from ${resumeState.model} with ${options.model}`);
    }
    const tok = await loadTokenizer(resolved.dir);
    const eos = eosOf(tok, prepared.config);
    if (prepared.spec.vocabSize <= eos) throw new FopeifyError('BAD_CONFIG', `the EOS id ${eos} is outside the vocabulary (${prepared.spec.vocabSize})`);

    tm = new TrainingModel(prepared.spec, prepared.weights, prepared.fopeLayout, {
      kernels: backend?.kernels ?? activeKernels(),
      trainable: settings.trainable,
      lora: settings.lora,
      seed: settings.seed,
      queryBlock: options.queryBlock,
      keyBlock: options.keyBlock,
      lossChunk: options.lossChunk,
    });
    optimizer = new AdamW(tm.params, { betas: settings.betas, eps: 1e-8, weightDecay: settings.weightDecay }, tm.kernels);
    let parameters = 0;
    for (const v of prepared.weights.values()) parameters += v.size;

    const evalBatches = Math.max(1, options.evalBatches ?? 4);
    const dataArg = options.data ?? (resumeState?.dataArg ?? undefined);
    const data = await buildData(dataArg, tok, eos, settings, evalBatches, log);
    if (resumeState && resumeState.data !== data.description) {
      throw new FopeifyError('BAD_ARGUMENT', `--resume: the data differs from the checkpoint's (${resumeState.data}); give the same --data`);
    }
    const vocabBad = data.train.chunks.find((c) => c.some((t) => t >= prepared.spec.vocabSize));
    if (vocabBad) throw new FopeifyError('BAD_ARGUMENT', `the tokenized data has ids outside the model's vocabulary (${prepared.spec.vocabSize})`);

    // State.
    let step = 0;
    let pos: DataPosition = { epoch: 0, index: 0 };
    const rng = new SeededRandom(settings.seed, 'train');
    let tokensDone = 0;
    let secondsBefore = 0;
    if (resumeState && resumeDir) {
      await restoreCheckpoint(resumeDir, tm.params, optimizer);
      step = resumeState.step;
      pos = resumeState.dataPosition;
      rng.setState(resumeState.rngState);
      tokensDone = resumeState.tokens;
      secondsBefore = resumeState.seconds;
      await truncateMetrics(outDir, step);
      log(`resumed from ${path.relative(process.cwd(), resumeDir) || resumeDir} (step ${step} of ${settings.steps})`);
    } else {
      await writeFileAtomically(path.join(outDir, 'metrics.jsonl'), '');
    }
    const recipeLabel = recipeName ?? 'none';
    log(`recipe ${recipeLabel}${recipe.description ? `: ${recipe.description}` : ''}`);
    for (const n of prepared.conversion.notes) log(`note: ${n}`);
    if (prepared.conversion.yarn) log(`YaRN: factor ${prepared.conversion.yarn.factor} over ${prepared.conversion.yarn.originalLength} tokens`);
    if (prepared.conversion.fope) log(`FoPE: K=${prepared.conversion.fope.k}, coefficients [${prepared.conversion.fope.coefficientShape.join(', ')}] (frozen)`);
    log(`settings: ${JSON.stringify(settings)}`);
    log(`trainable parameters: ${tm.trainableCount.toLocaleString('en-US')} of ${parameters.toLocaleString('en-US')} (${settings.trainable})`);

    const summaryBase: SummaryBase = {
      fopeify_finetune: 1,
      model: resumeState?.model ?? options.model,
      recipe: recipeName,
      settings,
      conversion: prepared.conversion,
      data: data.description,
      backend: backendDesc,
    };
    await writeFileAtomically(path.join(outDir, SUMMARY_FILE), JSON.stringify({ ...summaryBase, status: 'training' }, null, 2) + '\n');

    const checkpointState = (): CheckpointState => ({
      format: 'fopeify-finetune-checkpoint',
      version: 1,
      step,
      dataPosition: pos,
      rngState: rng.state(),
      tokens: tokensDone,
      seconds: secondsBefore + (Date.now() - started) / 1000,
      settings,
      recipe: recipeName,
      model: resumeState?.model ?? options.model,
      config: prepared.config,
      conversion: prepared.conversion,
      data: data.description,
      dataArg: typeof dataArg === 'string' ? dataArg : dataArg === undefined ? SYNTHETIC_PASSKEY : null,
    });
    const keep = options.keepCheckpoints ?? 2;
    let lastCheckpoint: string | null = resumeDir;
    const checkpoint = async () => {
      lastCheckpoint = await saveCheckpoint(outDir, checkpointState(), tm!.params, optimizer!);
      await pruneCheckpoints(outDir, Math.max(1, keep));
      log(`checkpoint ${path.basename(lastCheckpoint)}`);
    };

    const evaluate = (): { loss: number; ppl: number; passkeyAccuracy?: number } => {
      let sum = 0;
      for (const c of data.heldOut) sum += tm!.loss([c]);
      const loss = data.heldOut.length ? checkFiniteResult(sum / data.heldOut.length, `the held-out loss at step ${step}`) : NaN;
      const out: { loss: number; ppl: number; passkeyAccuracy?: number } = { loss, ppl: Math.exp(loss) };
      if (settings.evalPasskey) out.passkeyAccuracy = passkeyAccuracy(tm!, tok, settings.seqLen, options.passkeyTrials ?? 5, rng);
      return out;
    };

    const tokensPerStep = settings.batch * settings.gradAccum * settings.seqLen;
    const runStart = Date.now();
    const firstStep = step;
    let trainSeconds = 0;
    let stepsThisRun = 0;
    let finalLoss: number | null = null;
    let lastEval: MetricsRecord | null = null;
    let stopped = false;
    while (step < settings.steps) {
      const t0 = Date.now();
      const lr = learningRate(settings, step);
      let lossSum = 0;
      let grads: Map<string, tf.Tensor> | null = null;
      for (let micro = 0; micro < settings.gradAccum; micro++) {
        const take = data.train.take(pos, settings.batch);
        pos = take.next;
        const r = tm.lossAndGrads(take.chunks);
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
      if (settings.gradAccum > 1) {
        for (const [name, g] of grads!) {
          grads!.set(name, tf.div(g, settings.gradAccum));
          g.dispose();
        }
      }
      const loss = lossSum / settings.gradAccum;
      // Before the optimizer and the metrics: a NaN step must neither corrupt the weights nor reach metrics.jsonl.
      if (!Number.isFinite(loss)) {
        tf.dispose([...grads!.values()]);
        throw new FopeifyError('NON_FINITE', `the training loss is ${loss} at step ${step + 1} (lower --lr, or check the weights)`);
      }
      const gradNorm = optimizer.apply(grads!, lr, settings.maxGradNorm);
      tf.dispose([...grads!.values()]);
      step++;
      stepsThisRun++;
      tokensDone += tokensPerStep;
      const secs = (Date.now() - t0) / 1000;
      trainSeconds += secs;
      finalLoss = loss;
      const record: MetricsRecord = {
        step,
        loss,
        lr,
        tokens_per_s: tokensPerStep / Math.max(secs, 1e-6),
        grad_norm: gradNorm,
        tokens: tokensDone,
        elapsed_s: secondsBefore + (Date.now() - started) / 1000,
      };
      let ev: StepInfo['eval'];
      if (settings.evalEvery > 0 && (step % settings.evalEvery === 0 || step === settings.steps)) {
        ev = evaluate();
        record.eval_loss = ev.loss;
        record.eval_ppl = ev.ppl;
        if (ev.passkeyAccuracy !== undefined) record.passkey_accuracy = ev.passkeyAccuracy;
        lastEval = record;
      }
      await appendMetrics(outDir, record);
      const mean = trainSeconds / stepsThisRun;
      options.onStep?.({
        step,
        steps: settings.steps,
        loss,
        lr,
        gradNorm,
        tokensPerSecond: record.tokens_per_s,
        etaSeconds: mean * (settings.steps - step),
        eval: ev,
      });
      const stopNow = options.stopAfter !== undefined && stepsThisRun >= options.stopAfter && step < settings.steps;
      if (stopNow || (settings.saveEvery > 0 && step % settings.saveEvery === 0 && step < settings.steps)) await checkpoint();
      if (stopNow) {
        stopped = true;
        break;
      }
    }

    const seconds = (Date.now() - runStart) / 1000;
    const result: FinetuneResult = {
      outDir,
      completed: !stopped,
      step,
      steps: settings.steps,
      resumedFrom: resumeState ? firstStep : null,
      recipe: recipeName,
      settings,
      conversion: prepared.conversion,
      data: data.description,
      finalLoss,
      lastEval,
      trainableParameters: tm.trainableCount,
      parameters,
      tokens: tokensDone,
      tokensPerSecond: trainSeconds > 0 ? (stepsThisRun * tokensPerStep) / trainSeconds : 0,
      seconds,
      checkpoint: lastCheckpoint,
      files: [],
      backend: backendDesc,
    };
    if (stopped) {
      await writeFileAtomically(
        path.join(outDir, SUMMARY_FILE),
        JSON.stringify({ ...summaryBase, status: 'stopped', step, checkpoint: lastCheckpoint && path.relative(outDir, lastCheckpoint) }, null, 2) + '\n',
      );
      log(`stopped after step ${step}; continue with --resume`);
      return result;
    }

    // Completed: the model folder.
    const done = await completeModelFolder({
      outDir,
      sourceDir: resolved.dir,
      recipe,
      summaryBase,
      model: tm,
      config: prepared.config,
      dtype,
      stepsDone: step,
      tokens: tokensDone,
      parameters,
      seconds: secondsBefore + (Date.now() - started) / 1000,
      finalLoss,
    });
    result.files = done.files;
    finalLoss = done.finalLoss;
    lastEval = done.lastEval;
    result.finalLoss = finalLoss;
    result.lastEval = lastEval;
    if (!options.keepCheckpointsAtEnd) {
      await pruneCheckpoints(outDir, 0);
      result.checkpoint = null;
    }
    return result;
  } finally {
    optimizer?.dispose();
    tm?.dispose();
    for (const v of prepared.weights.values()) v.dispose();
  }
}

