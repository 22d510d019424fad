/**
 * `finetune({ engine: 'torch' })`: the same run as the tfjs trainer — recipe, settings, conversion, packed
 * data, metrics.jsonl, checkpoints, the completed model folder — with the training steps done by PyTorch
 * under torchrun (python/fopeify_train on the bridge's model core). fopeify writes the job folder
 * (torch-job.ts), launches this node's part and follows its metrics (torch-launch.ts), then assembles
 * the model folder from the trained weights exactly as the tfjs trainer does.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '../backend/tfjs.js';
import { findTorchPython, type TorchPython } from '../bridge/python.js';
import { FopeifyError } from '../errors.js';
import { isEmptyOrMissing, writeFileAtomically } from '../io/atomic.js';
import { requireOutputPath } from '../io/output-folder.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { loadTokenizer } from '../model/index.js';
import { SeededRandom } from '../random.js';
import { latestCheckpoint, pruneCheckpoints } from './checkpoint.js';
import type { FinetuneOptions, FinetuneResult } from './finetune.js';
import { activeKernels } from '../backend/select.js';
import { TrainingModel } from './model.js';
import { passkeyEvalPrompts, type PasskeyEvalPrompt } from './passkey.js';
import { METRICS_FILE, SUMMARY_FILE, type MetricsRecord } from '../io/formats.js';
import { readMetrics, truncateMetrics } from './output.js';
import { prepareModel } from './prepare.js';
import { resolveTrainSettings, type TrainSettings } from './recipe.js';
import { buildData, completeModelFolder, eosOf, prepareRunFolders, recipeFor, resumedSettings, sameJson, shownPath, SYNTHETIC_PASSKEY, type SummaryBase } from './run-common.js';
import { launchJob } from './torch-launch.js';
import {
  checkTopology,
  JOB_DIR,
  nodeCommand,
  readJobRecord,
  RESULT_DIR,
  writeJobFolder,
  type JobRecord,
  type ParallelStrategy,
  type TorchTopology,
} from './torch-job.js';

export const DEFAULT_MASTER_PORT = 29500;

/** How `--engine torch` runs (torchrun's flags and the python to use). */
export interface TorchEngineOptions {
  /** The python with torch (default: FOPEIFY_PYTHON, python3, /usr/bin/python3). */
  python?: string;
  nprocPerNode?: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  /** false: write the job folder and return the command of every node (`--no-launch`). */
  launch?: boolean;
  /** DDP or FSDP2 (default auto: FSDP2 on several GPUs with torch >= 2.4, else DDP). */
  parallel?: ParallelStrategy;
  /** Environment of the launched processes (default process.env). */
  env?: NodeJS.ProcessEnv;
}

interface TorchResultFile {
  steps_done: number;
  tokens: number;
  final_loss: number | null;
  seconds: number;
  torch: string;
  strategy: string;
  world_size: number;
  device: string;
}

async function readResult(outDir: string): Promise<TorchResultFile | null> {
  try {
    return JSON.parse(await fs.readFile(path.join(outDir, RESULT_DIR, 'result.json'), 'utf8')) as TorchResultFile;
  } catch {
    return null;
  }
}

/** Is `name` an executable on PATH? */
async function onPath(name: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    try {
      await fs.access(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** The launcher written into launch.sh and printed: `torchrun` when on PATH, else `python -m torch.distributed.run`. */
async function printedLauncher(python: string | undefined, env: NodeJS.ProcessEnv): Promise<string[]> {
  if (!python && (await onPath('torchrun', env))) return ['torchrun'];
  return [python ?? 'python3', '-m', 'torch.distributed.run'];
}

function topologyOf(t: TorchEngineOptions): TorchTopology {
  const topology: TorchTopology = {
    nprocPerNode: t.nprocPerNode ?? 1,
    nnodes: t.nnodes ?? 1,
    nodeRank: t.nodeRank ?? 0,
    masterAddr: t.masterAddr,
    masterPort: t.masterPort ?? DEFAULT_MASTER_PORT,
  };
  checkTopology(topology);
  return topology;
}

/** Put the trained weights of the result file into the model's variables (shapes checked). */
async function loadTrained(outDir: string, tm: TrainingModel): Promise<void> {
  const file = await SafetensorsFile.open(path.join(outDir, RESULT_DIR, 'weights.safetensors'));
  try {
    const targets = new Map<string, tf.Variable>([...tm.weights, ...tm.params]);
    for (const [name, v] of targets) {
      if (!file.tensors.has(name)) throw new FopeifyError('BAD_SAFETENSORS', `the torch job's result lacks ${name}`);
      const shape = file.info(name).shape;
      if (JSON.stringify(shape) !== JSON.stringify(v.shape)) throw new FopeifyError('BAD_SAFETENSORS', `the torch job's result has ${name} shaped [${shape.join(', ')}], expected [${v.shape.join(', ')}]`);
      const t = tf.tensor(await file.readFloat32(name), v.shape, 'float32');
      v.assign(t);
      t.dispose();
    }
  } finally {
    await file.close();
  }
}

/**
 * The prompts of every passkey evaluation the run can still make, in the order the tfjs trainer draws them
 * (its 'train' stream of the seed, which only the passkey evaluation consumes). The trainer counts its
 * passkey evaluations (kept in checkpoints) and scores the n-th with evals[n]. On --resume the evaluations
 * already in metrics.jsonl come first (the count is an upper bound: the trainer truncates to its checkpoint).
 */
async function passkeyPrompts(outDir: string, s: TrainSettings, tok: Awaited<ReturnType<typeof loadTokenizer>>, trials: number, resumed: boolean): Promise<PasskeyEvalPrompt[][]> {
  if (!(Number.isInteger(trials) && trials > 0)) throw new FopeifyError('BAD_ARGUMENT', `the passkey trials must be a positive integer (got ${trials})`);
  const before = resumed ? (await readMetrics(outDir)).filter((r) => r.passkey_accuracy !== undefined).length : 0;
  const ahead = s.evalEvery > 0 ? Math.floor(s.steps / s.evalEvery) + (s.steps % s.evalEvery ? 1 : 0) : 0;
  const rng = new SeededRandom(s.seed, 'train');
  return Array.from({ length: before + ahead }, () => passkeyEvalPrompts(tok, s.seqLen, trials, rng));
}

export async function finetuneTorch(options: FinetuneOptions): Promise<FinetuneResult> {
  const started = Date.now();
  const log = options.onLog ?? (() => undefined);
  const t = options.torch ?? {};
  const env = t.env ?? process.env;
  if (options.stopAfter !== undefined && !(Number.isInteger(options.stopAfter) && options.stopAfter > 0)) {
    throw new FopeifyError('BAD_ARGUMENT', `\`stopAfter\` must be a positive integer (got ${options.stopAfter})`, { option: 'stopAfter' });
  }
  const dtype = options.dtype ?? 'f32';
  if (!['f32', 'bf16', 'f16'].includes(dtype)) throw new FopeifyError('BAD_ARGUMENT', `\`dtype\` must be f32, bf16 or f16 (got ${String(dtype)})`, { option: 'dtype' });
  const topology = topologyOf(t);
  const parallel = t.parallel ?? 'auto';
  if (!['auto', 'ddp', 'fsdp'].includes(parallel)) throw new FopeifyError('BAD_ARGUMENT', `\`parallel\` must be auto, ddp or fsdp (got ${String(parallel)})`, { option: 'parallel' });
  const outDir = path.resolve(requireOutputPath(options.outDir, 'outDir'));
  const launch = t.launch ?? true;

  // Fresh run or resume.
  let saved: JobRecord | null = null;
  if (options.resume) {
    saved = await readJobRecord(outDir);
    if (!saved) throw new FopeifyError('BAD_ARGUMENT', `\`resume\`: no torch job in ${path.join(outDir, JOB_DIR)} (a run of the tfjs engine resumes with \`engine\` tfjs)`, { option: ['resume', 'engine'] });
  } else if (!(await isEmptyOrMissing(outDir)) && !options.force) {
    throw new FopeifyError('OUTPUT_EXISTS', `output folder ${options.outDir} is not empty (\`resume\` continues its newest checkpoint, \`force\` starts over)`, { option: ['resume', 'force'] });
  }
  const recipeName = saved ? saved.recipe : (options.recipe ?? null);
  const recipe = await recipeFor(recipeName);
  const settings: TrainSettings = saved ? resumedSettings(saved.settings, options.settings) : resolveTrainSettings(recipe, options.settings ?? {});

  // A python with torch before any heavy work (launching needs it; --no-launch prints commands anyway).
  let py: TorchPython | null = null;
  try {
    py = await findTorchPython({ python: t.python, env });
  } catch (err) {
    if (launch) throw err;
  }

  topology.legacyStdFlags = py ? /^1\./.test(py.torchVersion) : false;
  const checked = await prepareRunFolders(options, outDir, recipe, settings.seqLen, saved !== null);
  const resolved = checked.resolved;

  options.onLoad?.(`loading ${options.model}`);
  const prepared = await prepareModel(resolved.dir, recipe, settings.seqLen, {
    checked,
    allowNonFinite: options.allowNonFinite,
    onProgress: (d, n) => options.onLoad?.(`loading ${options.model}: ${d}/${n} tensors`),
  });
  let tm: TrainingModel | undefined;
  try {
    if (saved && !sameJson(saved.config, prepared.config)) {
      throw new FopeifyError('BAD_ARGUMENT', `\`resume\`: ${options.model} with recipe ${recipeName ?? 'none'} does not give the model the job was trained on (config.json differs)`, { option: 'resume' });
    }
    const tok = await loadTokenizer(resolved.dir);
    const eos = eosOf(tok, prepared.config);
    if (prepared.spec.vocabSize <= eos) throw new FopeifyError('BAD_CONFIG', `the EOS id ${eos} is outside the vocabulary (${prepared.spec.vocabSize})`);
    tm = new TrainingModel(prepared.spec, prepared.weights, prepared.fopeLayout, { kernels: activeKernels(), trainable: settings.trainable, lora: settings.lora, seed: settings.seed });
    let parameters = 0;
    for (const v of prepared.weights.values()) parameters += v.size;
    const dataArg = options.data ?? saved?.data_arg ?? undefined;
    const data = await buildData(dataArg, tok, eos, settings, Math.max(1, options.evalBatches ?? 4), log);
    if (saved && saved.data_description !== data.description) {
      throw new FopeifyError('BAD_ARGUMENT', `\`resume\`: the data differs from the job's (${saved.data_description}); give the same \`data\``, { option: ['resume', 'data'] });
    }
    if (data.train.chunks.some((c) => c.some((x) => x >= prepared.spec.vocabSize))) {
      throw new FopeifyError('BAD_ARGUMENT', `the tokenized data has ids outside the model's vocabulary (${prepared.spec.vocabSize})`);
    }

    const record: JobRecord = {
      format: 'fopeify-torch-job',
      version: 1,
      settings,
      recipe: recipeName,
      model: saved?.model ?? options.model,
      config: prepared.config,
      data_description: data.description,
      data_arg: typeof dataArg === 'string' ? dataArg : dataArg === undefined ? SYNTHETIC_PASSKEY : null,
    };
    log(`recipe ${recipeName ?? 'none'}${recipe.description ? `: ${recipe.description}` : ''}`);
    for (const n of prepared.conversion.notes) log(`note: ${n}`);
    if (prepared.conversion.fope) log(`FoPE: K=${prepared.conversion.fope.k}, coefficients [${prepared.conversion.fope.coefficientShape.join(', ')}] (frozen)`);
    log(`settings: ${JSON.stringify(settings)}`);
    log(`trainable parameters: ${tm.trainableCount.toLocaleString('en-US')} of ${parameters.toLocaleString('en-US')} (${settings.trainable})`);

    const passkey = settings.evalPasskey ? await passkeyPrompts(outDir, settings, tok, options.passkeyTrials ?? 5, saved !== null) : undefined;
    const launcher = await printedLauncher(t.python ?? (env.FOPEIFY_PYTHON || undefined), env);
    options.onLoad?.('writing the torch job');
    const jobDir = await writeJobFolder({ outDir, record, model: tm, train: data.train, heldOut: data.heldOut, topology, launcher, parallel, keepCheckpoints: options.keepCheckpoints ?? 2, passkey });
    const backend = `torch ${py?.torchVersion ?? '?'} (torchrun: ${topology.nnodes} node${topology.nnodes > 1 ? 's' : ''} × ${topology.nprocPerNode} process${topology.nprocPerNode > 1 ? 'es' : ''})`;
    const summaryBase: SummaryBase = { fopeify_finetune: 1, model: record.model, recipe: recipeName, settings, conversion: prepared.conversion, data: data.description, backend };

    // Where the run stands.
    let done = await readResult(outDir);
    if (done && done.steps_done !== settings.steps) done = null; // --resume with more --steps: train on
    const checkpoint = await latestCheckpoint(outDir);
    const trainerArgs: string[] = [];
    if (!done) {
      if (saved && checkpoint) trainerArgs.push('--resume');
      else await truncateMetrics(outDir, 0);
      if (options.stopAfter !== undefined) trainerArgs.push('--stop-after', String(options.stopAfter));
      await fs.rm(path.join(outDir, RESULT_DIR), { recursive: true, force: true });
      await writeFileAtomically(path.join(outDir, SUMMARY_FILE), JSON.stringify({ ...summaryBase, engine: 'torch', status: 'training' }, null, 2) + '\n');
    }
    const base: FinetuneResult = {
      outDir,
      completed: false,
      step: 0,
      steps: settings.steps,
      resumedFrom: null,
      recipe: recipeName,
      settings,
      conversion: prepared.conversion,
      data: data.description,
      finalLoss: null,
      lastEval: null,
      trainableParameters: tm.trainableCount,
      parameters,
      tokens: 0,
      tokensPerSecond: 0,
      seconds: 0,
      checkpoint,
      files: [],
      backend,
    };
    const stepOf = async () => {
      const records = await readMetrics(outDir);
      return records.length ? records[records.length - 1]! : null;
    };
    const before = await stepOf();
    base.resumedFrom = saved && before ? before.step : null;

    if (!done && !launch) {
      const commands = Array.from({ length: topology.nnodes }, (_, r) => nodeCommand(jobDir, launcher, topology, r, trainerArgs));
      log(`job folder ${shownPath(jobDir)} written; run on each node:`);
      return { ...base, step: before?.step ?? 0, job: { dir: jobDir, commands } };
    }

    const runRecords: MetricsRecord[] = [];
    if (!done) {
      if (!py) throw new FopeifyError('INTERNAL', 'no python with torch');
      const runStart = Date.now();
      await launchJob({
        jobDir,
        metricsFile: path.join(outDir, METRICS_FILE),
        launcher: [py.python, '-m', 'torch.distributed.run'],
        topology,
        trainerArgs,
        env,
        onRecord: (r) => {
          runRecords.push(r);
          const mean = (Date.now() - runStart) / 1000 / runRecords.length;
          options.onStep?.({
            step: r.step,
            steps: settings.steps,
            loss: r.loss,
            lr: r.lr,
            gradNorm: r.grad_norm,
            tokensPerSecond: r.tokens_per_s,
            etaSeconds: mean * (settings.steps - r.step),
            eval: r.eval_loss !== undefined ? { loss: r.eval_loss, ppl: r.eval_ppl!, ...(r.passkey_accuracy !== undefined ? { passkeyAccuracy: r.passkey_accuracy } : {}) } : undefined,
          });
        },
      });
      done = await readResult(outDir);
    }
    const last = await stepOf();
    const tokensPerStep = settings.batch * settings.gradAccum * settings.seqLen;
    const trainSeconds = runRecords.reduce((a, r) => a + tokensPerStep / r.tokens_per_s, 0);
    Object.assign(base, {
      step: last?.step ?? 0,
      finalLoss: last?.loss ?? null,
      tokens: last?.tokens ?? 0,
      tokensPerSecond: trainSeconds > 0 ? (runRecords.length * tokensPerStep) / trainSeconds : 0,
      seconds: (Date.now() - started) / 1000,
      checkpoint: await latestCheckpoint(outDir),
    });
    if (!done) {
      if (topology.nodeRank !== 0) {
        log(`node ${topology.nodeRank} finished its part; node 0 writes the results`);
        return base;
      }
      await writeFileAtomically(
        path.join(outDir, SUMMARY_FILE),
        JSON.stringify({ ...summaryBase, engine: 'torch', status: 'stopped', step: base.step, checkpoint: base.checkpoint && path.relative(outDir, base.checkpoint) }, null, 2) + '\n',
      );
      log(`stopped after step ${base.step}; continue with --resume`);
      return base;
    }

    // Completed: the model folder, as the tfjs engine writes it.
    await loadTrained(outDir, tm);
    const folder = await completeModelFolder({
      outDir,
      sourceDir: resolved.dir,
      recipe,
      summaryBase,
      model: tm,
      config: prepared.config,
      dtype,
      stepsDone: done.steps_done,
      tokens: done.tokens,
      parameters,
      seconds: done.seconds,
      finalLoss: done.final_loss,
      extra: { engine: 'torch', torch: { version: done.torch, strategy: done.strategy, world_size: done.world_size, device: done.device } },
    });
    await fs.rm(path.join(outDir, RESULT_DIR), { recursive: true, force: true });
    if (!options.keepCheckpointsAtEnd) {
      await pruneCheckpoints(outDir, 0);
      await fs.rm(jobDir, { recursive: true, force: true });
    }
    return {
      ...base,
      completed: true,
      step: done.steps_done,
      tokens: done.tokens,
      finalLoss: folder.finalLoss,
      lastEval: folder.lastEval,
      files: folder.files,
      checkpoint: options.keepCheckpointsAtEnd ? base.checkpoint : null,
    };
  } finally {
    tm?.dispose();
    for (const v of prepared.weights.values()) v.dispose();
  }
}
