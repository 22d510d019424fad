/**
 * `fopeify finetune <model> --recipe <name|file> [--data FILE|DIR|synthetic:passkey] [--seq-len N] ...`:
 * long-context fine-tuning with a recipe (recipes/), checkpoints every --save-every steps, exact
 * --resume, metrics.jsonl and a loss curve; the output folder is a complete model folder.
 */
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { PYTHON_ENV } from '../bridge/python.js';
import { ENGINES, type Engine } from '../bridge/torch-engine.js';
import { FopeifyError } from '../errors.js';
import { DEFAULT_MASTER_PORT } from '../train/torch-finetune.js';
import type { ParallelStrategy } from '../train/torch-job.js';
import { RECOMPUTE_POLICIES, type RecomputePolicy } from '../train/activations.js';
import { finetune, prepareRun, SYNTHETIC_PASSKEY, trainPlanned, type FinetuneOptions, type FinetuneResult, type TrainOverrides } from '../train/index.js';
import { printResult, sourceOptions, startBackend, withBackendOptions, withModelArgument, withReporter, withSourceOptions, withWeightOptions } from './common.js';
import type { BackendArgs, SourceArgs, WeightArgs } from './common.js';
import type { Reporter } from './output.js';

interface FinetuneArgs extends SourceArgs, WeightArgs, BackendArgs {
  model: string;
  recipe?: string;
  data?: string;
  'seq-len'?: number;
  steps?: number;
  batch?: number;
  'grad-accum'?: number;
  lr?: number;
  seed?: number;
  'eval-every'?: number;
  'save-every'?: number;
  'stop-after'?: number;
  resume: boolean;
  out?: string;
  trainable?: 'all' | 'attention' | 'lora';
  'lora-rank'?: number;
  'lora-alpha'?: number;
  'lora-save'?: 'merged' | 'adapter';
  schedule?: 'constant' | 'cosine' | 'linear';
  'warmup-steps'?: number;
  'weight-decay'?: number;
  'max-grad-norm'?: number;
  'eval-passkey'?: boolean;
  'passkey-trials'?: number;
  dtype: 'f32' | 'bf16' | 'f16';
  force: boolean;
  'keep-checkpoints': boolean;
  engine: Engine;
  python?: string;
  'nproc-per-node'?: number;
  nnodes?: number;
  'node-rank'?: number;
  'master-addr'?: string;
  'master-port'?: number;
  parallel: ParallelStrategy;
  launch: boolean;
  recompute: RecomputePolicy;
  'activation-memory'?: string;
}

/** Default output folder: `<model name>-<recipe>` in the current folder. */
export function defaultOutDir(model: string, recipe: string | undefined): string {
  const name = path.basename(model.replace(/[\\/]+$/, '')) || 'model';
  const r = recipe ? path.basename(recipe).replace(/\.(json|ya?ml)$/, '') : 'finetune';
  return path.resolve(`${name}-${r}`);
}

function fmtNum(x: number): string {
  return Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? x.toPrecision(4) : x.toExponential(2);
}

export const finetuneCommand: CommandModule<object, FinetuneArgs> = {
  command: 'finetune <model>',
  describe: 'fine-tune a model at a longer context with a recipe (yarn, fope, fope-yarn, ...; see `fopeify recipes`)',
  builder: (y) =>
    withBackendOptions(withModelArgument(withWeightOptions(withSourceOptions(y))))
      .option('recipe', { type: 'string', describe: 'recipe name (fopeify recipes) or a .json/.yaml file; required unless --resume' })
      .option('data', { type: 'string', describe: `training text: a .txt/.md/.jsonl ("text" field) file or folder, or ${SYNTHETIC_PASSKEY} (default)` })
      .option('seq-len', { type: 'number', describe: 'training sequence length in tokens (recipe default)' })
      .option('steps', { type: 'number', describe: 'optimizer steps' })
      .option('batch', { type: 'number', describe: 'sequences per micro-batch' })
      .option('grad-accum', { type: 'number', describe: 'micro-batches per optimizer step' })
      .option('lr', { type: 'number', describe: 'peak learning rate' })
      .option('seed', { type: 'number', describe: 'seed of the data order, LoRA init and evaluation draws' })
      .option('eval-every', { type: 'number', describe: 'held-out perplexity every N steps (0: never)' })
      .option('save-every', { type: 'number', describe: 'checkpoint every N steps (0: only at --stop-after)' })
      .option('stop-after', { type: 'number', describe: 'end cleanly after N steps of this run, leaving a resumable checkpoint' })
      .option('resume', { type: 'boolean', default: false, describe: 'continue from the newest checkpoint in --out' })
      .option('out', { alias: 'o', type: 'string', describe: 'output folder (default ./<model>-<recipe>)' })
      .option('trainable', { choices: ['all', 'attention', 'lora'] as const, describe: 'what trains (recipe default)' })
      .option('lora-rank', { type: 'number', describe: 'LoRA rank r' })
      .option('lora-alpha', { type: 'number', describe: 'LoRA alpha (scale alpha/r)' })
      .option('lora-save', { choices: ['merged', 'adapter'] as const, describe: 'merge LoRA into the weights, or save a PEFT adapter' })
      .option('schedule', { choices: ['constant', 'cosine', 'linear'] as const, describe: 'learning-rate decay after warmup' })
      .option('warmup-steps', { type: 'number', describe: 'linear warmup steps' })
      .option('weight-decay', { type: 'number', describe: 'AdamW decoupled weight decay' })
      .option('max-grad-norm', { type: 'number', describe: 'clip gradients to this global norm (0: off)' })
      .option('eval-passkey', { type: 'boolean', describe: 'also measure passkey accuracy at --seq-len at each evaluation' })
      .option('passkey-trials', { type: 'number', default: 5, describe: 'passkey prompts per evaluation' })
      .option('dtype', { choices: ['f32', 'bf16', 'f16'] as const, default: 'f32' as const, describe: 'weights dtype of the saved model' })
      .option('force', { type: 'boolean', default: false, describe: 'start over in a non-empty --out folder (its content is removed)' })
      .option('keep-checkpoints', { type: 'boolean', default: false, describe: 'keep checkpoints/ after the last step (to extend training later)' })
      .option('recompute', {
        choices: RECOMPUTE_POLICIES as unknown as RecomputePolicy[],
        default: 'auto' as RecomputePolicy,
        describe: 'tfjs engine: recompute decoder layers in the backward pass: always (least memory), never (fastest), auto (keep as many layers as fit --activation-memory)',
      })
      // A string, parsed here: the refusal of a bad value quotes what was typed (yargs would give NaN).
      .option('activation-memory', { type: 'string', describe: 'GiB that --recompute auto may spend on kept activations (default: a quarter of the memory, at most 8)' })
      .option('engine', {
        choices: ENGINES as unknown as Engine[],
        default: 'tfjs' as Engine,
        describe: "tfjs: fopeify's own trainer; torch: PyTorch under torchrun (DDP, FSDP2 on GPUs) with the same recipe, data and output",
      })
      .option('python', { type: 'string', describe: `--engine torch: python with PyTorch (default ${PYTHON_ENV}, else python3, then /usr/bin/python3)` })
      .option('nproc-per-node', { type: 'number', describe: '--engine torch: processes on this node (one per GPU; default 1)' })
      .option('nnodes', { type: 'number', describe: '--engine torch: machines taking part (default 1)' })
      .option('node-rank', { type: 'number', describe: '--engine torch: this machine\'s index, 0 to nnodes-1 (default 0)' })
      .option('master-addr', { type: 'string', describe: '--engine torch: host of node 0 (needed with --nnodes > 1)' })
      .option('master-port', { type: 'number', describe: `--engine torch: rendezvous port on node 0 (default ${DEFAULT_MASTER_PORT})` })
      .option('parallel', { choices: ['auto', 'ddp', 'fsdp'] as const, default: 'auto' as const, describe: '--engine torch: DDP, or FSDP2 (torch >= 2.4 with CUDA); auto picks FSDP2 on several GPUs' })
      .option('launch', { type: 'boolean', default: true, describe: '--engine torch: --no-launch writes the job folder and prints each node\'s torchrun command' })
      .example('fopeify finetune HuggingFaceTB/SmolLM2-135M --recipe yarn --data corpus/ --seq-len 16384 --out smollm2-yarn', '')
      .example('fopeify finetune ./smollm2-fope --recipe fope --steps 200 --stop-after 50 --out ft', 'then: ... --resume --out ft') as never,
  handler: async (argv) => {
    if (!argv.recipe && !argv.resume) {
      throw new FopeifyError('BAD_ARGUMENT', '--recipe is required (see `fopeify recipes`; "none" trains without a conversion)');
    }
    await withReporter(argv, async (reporter) => {
      const options = finetuneOptions(argv, reporter);
      let r: FinetuneResult;
      if (argv.engine === 'torch') r = await finetune(options);
      else {
        // The plan refuses bad input before the backend starts (and prints its line).
        const plan = await prepareRun(options);
        r = await trainPlanned(plan, { ...options, backend: await startBackend(argv, { quiet: argv.json }) });
      }
      printResult(argv, reporter, r, (r) => finetuneReport(argv, r) + '\n');
    });
  },
};

/** The library options of a command line (callbacks report through `reporter`). */
function finetuneOptions(argv: FinetuneArgs, reporter: Reporter): FinetuneOptions {
  const lora: TrainOverrides['lora'] = {};
  if (argv['lora-rank'] !== undefined) lora.rank = argv['lora-rank'];
  if (argv['lora-alpha'] !== undefined) lora.alpha = argv['lora-alpha'];
  if (argv['lora-save'] !== undefined) lora.save = argv['lora-save'];
  const settings: TrainOverrides = {
    seqLen: argv['seq-len'],
    steps: argv.steps,
    batch: argv.batch,
    gradAccum: argv['grad-accum'],
    lr: argv.lr,
    seed: argv.seed,
    evalEvery: argv['eval-every'],
    saveEvery: argv['save-every'],
    trainable: argv.trainable,
    schedule: argv.schedule,
    warmupSteps: argv['warmup-steps'],
    weightDecay: argv['weight-decay'],
    maxGradNorm: argv['max-grad-norm'],
    evalPasskey: argv['eval-passkey'],
    lora: Object.keys(lora).length ? lora : undefined,
  };
  return {
    model: argv.model,
    outDir: argv.out ?? defaultOutDir(argv.model, argv.recipe),
    recipe: argv.resume ? argv.recipe ?? null : argv.recipe,
    data: argv.data,
    settings,
    stopAfter: argv['stop-after'],
    resume: argv.resume,
    force: argv.force,
    dtype: argv.dtype,
    keepCheckpointsAtEnd: argv['keep-checkpoints'],
    recompute: argv.recompute,
    activationBudgetBytes: activationBudgetBytes(argv['activation-memory']),
    passkeyTrials: argv['passkey-trials'],
    allowNonFinite: argv['allow-non-finite'],
    engine: argv.engine,
    torch: {
      python: argv.python,
      nprocPerNode: argv['nproc-per-node'],
      nnodes: argv.nnodes,
      nodeRank: argv['node-rank'],
      masterAddr: argv['master-addr'],
      masterPort: argv['master-port'],
      parallel: argv.parallel,
      launch: argv.launch,
    },
    ...sourceOptions(argv, reporter),
    onLoad: (text) => reporter.update(text),
    onLog: (line) => {
      if (line.startsWith('settings: ')) {
        const s = JSON.parse(line.slice('settings: '.length)) as Record<string, unknown>;
        reporter.info('settings:');
        for (const [k, v] of Object.entries(s)) reporter.info(`  ${k}: ${JSON.stringify(v)}`);
      } else reporter.info(line);
    },
    onStep: (s) => {
      reporter.update(
        `step ${s.step}/${s.steps}  loss ${s.loss.toFixed(4)}  lr ${fmtNum(s.lr)}  ${s.tokensPerSecond.toFixed(s.tokensPerSecond < 100 ? 1 : 0)} tok/s  ETA ${fmtEta(s.etaSeconds)}`,
      );
      if (s.eval) {
        const pk = s.eval.passkeyAccuracy !== undefined ? `, passkey accuracy ${(100 * s.eval.passkeyAccuracy).toFixed(0)} %` : '';
        reporter.info(`step ${s.step}: held-out loss ${s.eval.loss.toFixed(4)}, perplexity ${s.eval.ppl.toFixed(3)}${pk}`);
      }
    },
  };
}

/** --activation-memory in GiB as bytes (a bad value is refused with the flag's name and what was typed). */
function activationBudgetBytes(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const gib = text.trim() === '' ? NaN : Number(text);
  if (!Number.isFinite(gib) || gib < 0) throw new FopeifyError('BAD_ARGUMENT', `--activation-memory must be a number of GiB ≥ 0 (got ${text})`);
  return Math.floor(gib * 2 ** 30);
}

/** What a run says on stdout: the torch job's commands, how to continue a stopped run, or what was written. */
function finetuneReport(argv: FinetuneArgs, r: FinetuneResult): string {
  const relOf = (p: string) => {
    const rel = path.relative(process.cwd(), p);
    return !rel ? '.' : rel.startsWith('..') ? p : rel;
  };
  const rel = relOf(r.outDir);
  if (r.job) {
    const lines = [`job folder ${relOf(r.job.dir)}: start it on ${r.job.commands.length === 1 ? 'this machine' : 'every node'} with`];
    r.job.commands.forEach((c, i) => lines.push(`${r.job!.commands.length > 1 ? `  node ${i}: ` : '  '}${c}`));
    lines.push(`then write the model folder with: fopeify finetune ${argv.model} --engine torch --resume --out ${rel}`);
    return lines.join('\n');
  }
  if (!r.completed) {
    return `stopped after step ${r.step}/${r.steps} (checkpoint ${relOf(r.checkpoint ?? '')}); continue with: fopeify finetune ${argv.model}${argv.engine === 'torch' ? ' --engine torch' : ''} --resume --out ${rel}`;
  }
  const lines = [`wrote ${rel}: ${r.step} steps at ${r.settings.seqLen} tokens, final loss ${r.finalLoss?.toFixed(4) ?? '?'}, ${r.tokensPerSecond.toFixed(0)} tok/s`];
  if (r.lastEval?.eval_loss !== undefined) lines.push(`  held-out perplexity ${r.lastEval.eval_ppl!.toFixed(3)} (step ${r.lastEval.step})`);
  if (r.lastEval?.passkey_accuracy !== undefined) lines.push(`  passkey accuracy ${(100 * r.lastEval.passkey_accuracy).toFixed(0)} % at ${r.settings.seqLen} tokens`);
  if (r.peakGpuBytes !== undefined) lines.push(`  peak GPU memory ${(r.peakGpuBytes / 2 ** 20).toFixed(0)} MiB`);
  lines.push(`  files: ${r.files.join(', ')}`);
  return lines.join('\n');
}

function fmtEta(s: number): string {
  return s < 90 ? `${s.toFixed(0)}s` : s < 5400 ? `${(s / 60).toFixed(1)}min` : `${(s / 3600).toFixed(1)}h`;
}
