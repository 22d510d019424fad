/** Options shared by several commands, declared once. */
import type { Argv } from 'yargs';
import type { BackendInfo, BackendName } from '../backend/select.js';
import type { ModelSourceOptions } from '../hub/source.js';
import { FopeifyError } from '../errors.js';
import { createReporter, printJson, type Reporter } from './output.js';

export interface SourceArgs {
  revision?: string;
  endpoint?: string;
  token?: string;
  'cache-dir'?: string;
  offline?: boolean;
  json?: boolean;
}

export interface JsonArgs {
  json?: boolean;
}

/** `--json`: machine-readable output on stdout. */
export function withJsonOption<T>(y: Argv<T>): Argv<T & JsonArgs> {
  return y.option('json', { type: 'boolean', default: false, describe: 'machine-readable output on stdout' }) as Argv<T & JsonArgs>;
}

/** `--endpoint` and `--token`: the Hub to talk to and the credentials. */
export function withHubOptions<T>(y: Argv<T>, tokenUse = 'Hub token'): Argv<T & Pick<SourceArgs, 'endpoint' | 'token'>> {
  return y
    .option('endpoint', { type: 'string', describe: 'Hub endpoint (default HF_ENDPOINT or https://huggingface.co)' })
    .option('token', { type: 'string', describe: `${tokenUse} (default HF_TOKEN or the token file in HF_HOME); never printed` }) as Argv<T & Pick<SourceArgs, 'endpoint' | 'token'>>;
}

export function withSourceOptions<T>(y: Argv<T>): Argv<T & SourceArgs> {
  return withJsonOption(withHubOptions(y.option('revision', { type: 'string', describe: 'Hub branch, tag or commit (Hub ids)' })))
    .option('cache-dir', { type: 'string', describe: 'Hugging Face cache folder (default from HF_HUB_CACHE / HF_HOME)' })
    .option('offline', { type: 'boolean', describe: 'never use the network (default: HF_HUB_OFFLINE=1)' }) as Argv<T & SourceArgs>;
}

/** The `<model>` positional of the commands that read one model. */
export function withModelArgument<T>(y: Argv<T>): Argv<T & { model: string }> {
  return y.positional('model', { type: 'string', demandOption: true, describe: 'model folder or Hub id (org/name)' }) as unknown as Argv<T & { model: string }>;
}

/** The backends `--backend` offers (src/backend's BACKEND_NAMES, listed here so `--help` loads no tfjs). */
export const CLI_BACKENDS = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu', 'native', 'webgpu'] as const satisfies readonly BackendName[];
// Every backend name is offered: this fails to compile when src/backend adds one the list lacks.
const everyBackendOffered: Exclude<BackendName, (typeof CLI_BACKENDS)[number]> extends never ? true : never = true;
void everyBackendOffered;

export interface BackendArgs {
  backend: BackendName;
  threads?: number;
  'allow-software-adapter'?: boolean;
}

/** `--backend` and `--threads`, for every command that computes. */
export function withBackendOptions<T>(y: Argv<T>): Argv<T & BackendArgs> {
  return y
    .option('backend', {
      choices: CLI_BACKENDS,
      default: 'auto' as BackendName,
      describe: 'TensorFlow.js backend (auto: the fastest available here, named at start; tensorflow-gpu: @tensorflow/tfjs-node-gpu, which needs CUDA 11.2 and cuDNN 8.1)',
    })
    .option('threads', { type: 'number', describe: 'threads for BLAS / TensorFlow (default: all cores)' })
    .option('allow-software-adapter', {
      type: 'boolean',
      default: false,
      describe: 'webgpu: use a software adapter (llvmpipe, lavapipe, SwiftShader) too — correct but slower than the CPU backends',
    }) as unknown as Argv<T & BackendArgs>;
}

/**
 * Activate the backend of `--backend` / `--threads`: the command's one start-up of the accelerator (it
 * prints one "backend" line on stderr unless quiet). Library calls then get the BackendInfo.
 */
export async function startBackend(argv: BackendArgs, options: { quiet?: boolean; log?: (line: string) => void } = {}): Promise<BackendInfo> {
  const { useBackend } = await import('../model/model.js');
  return useBackend(argv.backend, { threads: argv.threads, allowSoftwareAdapter: argv['allow-software-adapter'], quiet: options.quiet, log: options.log });
}

export interface RuntimeArgs extends SourceArgs, WeightArgs, BackendArgs {
  model: string;
}

/** What every model-running command takes: `<model>`, the source options, `--allow-non-finite`, `--backend`, `--threads`. */
export function withRuntimeOptions<T>(y: Argv<T>): Argv<T & RuntimeArgs> {
  return withBackendOptions(withModelArgument(withWeightOptions(withSourceOptions(y)))) as unknown as Argv<T & RuntimeArgs>;
}

/** Source options for the library, with download progress wired to the reporter. */
export function sourceOptions(argv: SourceArgs, reporter: Reporter): ModelSourceOptions {
  const started = Date.now();
  return {
    revision: argv.revision,
    endpoint: argv.endpoint,
    token: argv.token,
    cacheDir: argv['cache-dir'],
    offline: argv.offline,
    onProgress: (p) => {
      const secs = Math.max((Date.now() - started) / 1000, 1e-3);
      const mb = p.bytes / 1e6;
      reporter.update(`downloading ${p.file} (${p.filesDone + 1}/${p.filesTotal}) ${mb.toFixed(1)}/${(p.totalBytes / 1e6).toFixed(1)} MB, ${(mb / secs).toFixed(1)} MB/s`);
    },
  };
}

export interface WeightArgs {
  'allow-non-finite'?: boolean;
}

/** `--allow-non-finite`, for every command that loads weights. */
export function withWeightOptions<T>(y: Argv<T>): Argv<T & WeightArgs> {
  return y.option('allow-non-finite', {
    type: 'boolean',
    default: false,
    describe: 'load weights holding NaN, ±Inf or |x| > 1e16 (refused by default); NaN scores and logits are still refused',
  }) as Argv<T & WeightArgs>;
}

export function reporterFor(argv: { json?: boolean }): Reporter {
  return createReporter({ json: argv.json });
}

/** A comma-separated list of numbers (`--lengths 512,1024`), refused with a one-line error when malformed. */
export function numberList(value: string, flag: string, integers: boolean): number[] {
  const parts = String(value).split(',').map((s) => s.trim()).filter(Boolean);
  const nums = parts.map(Number);
  if (!nums.length || nums.some((n) => !Number.isFinite(n) || (integers && !Number.isInteger(n)))) {
    throw new FopeifyError('BAD_ARGUMENT', `--${flag} must be a comma-separated list of ${integers ? 'integers' : 'numbers'} (got ${JSON.stringify(value)})`);
  }
  return nums;
}

/** Run a command's body with a progress reporter that is stopped however the body ends. */
export async function withReporter<T>(argv: { json?: boolean }, body: (reporter: Reporter) => Promise<T>): Promise<T> {
  const reporter = reporterFor(argv);
  try {
    return await body(reporter);
  } finally {
    reporter.stop();
  }
}

/** Long runs' informational lines and progress, through the reporter. */
export function reporterCallbacks(reporter: Reporter): { onLog: (line: string) => void; onProgress: (text: string) => void } {
  return { onLog: (l) => reporter.info(l), onProgress: (t) => reporter.update(t) };
}

/** A command's result on stdout, the reporter stopped first: JSON with --json, else its text view. */
export function printResult<R>(argv: JsonArgs, reporter: Reporter, result: R, text: (r: R) => string): void {
  reporter.stop();
  if (argv.json) printJson(result);
  else process.stdout.write(text(result));
}
