/** Options shared by several commands, declared once. */
import type { Argv } from 'yargs';
import type { ModelSourceOptions } from '../hub/source.js';
import { FopeifyError } from '../errors.js';
import { createReporter, type Reporter } from './output.js';

export interface SourceArgs {
  revision?: string;
  endpoint?: string;
  token?: string;
  'cache-dir'?: string;
  offline?: boolean;
  json?: boolean;
}

export function withSourceOptions<T>(y: Argv<T>): Argv<T & SourceArgs> {
  return y
    .option('revision', { type: 'string', describe: 'Hub branch, tag or commit (Hub ids)' })
    .option('endpoint', { type: 'string', describe: 'Hub endpoint (default HF_ENDPOINT or https://huggingface.co)' })
    .option('token', { type: 'string', describe: 'Hub token (default HF_TOKEN or the token file in HF_HOME); never printed' })
    .option('cache-dir', { type: 'string', describe: 'Hugging Face cache folder (default from HF_HUB_CACHE / HF_HOME)' })
    .option('offline', { type: 'boolean', describe: 'never use the network (default: HF_HUB_OFFLINE=1)' })
    .option('json', { type: 'boolean', default: false, describe: 'machine-readable output on stdout' }) as Argv<T & SourceArgs>;
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
