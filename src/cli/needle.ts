/**
 * `fopeify needle --models A,B --task passkey|niah --lengths ... --depths ... --trials N --out DIR`:
 * paired passkey / needle-in-a-haystack comparison with results.jsonl, summary.csv/json, heatmaps and
 * report.html in DIR; a coloured table at the end. Rerunning into DIR resumes.
 */
import type { Argv, CommandModule } from 'yargs';
import { FopeifyError } from '../errors.js';
import { colorTable, NEEDLE_DEFAULTS, runNeedle, type NeedleTask, type ScoringMode } from '../eval/index.js';
import { numberList, sourceOptions, startBackend, withBackendOptions, withReporter, withSourceOptions, withWeightOptions } from './common.js';
import type { BackendArgs, SourceArgs, WeightArgs } from './common.js';
import { printJson, rateEta } from './output.js';

interface NeedleArgs extends SourceArgs, WeightArgs, BackendArgs {
  models: string;
  task: NeedleTask;
  lengths: string;
  depths: string;
  trials: number;
  seed: number;
  mode: ScoringMode;
  haystack?: string;
  out: string;
  'max-new-tokens': number;
}

export function parseModels(value: string): string[] {
  const models = String(value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (!models.length) throw new FopeifyError('BAD_ARGUMENT', '--models needs at least one model (comma-separated)');
  return models;
}

export const needleCommand: CommandModule<object, NeedleArgs> = {
  command: 'needle',
  describe: 'paired passkey / needle-in-a-haystack comparison across lengths and depths, with heatmaps and report',
  builder: (y: Argv) =>
    withBackendOptions(withWeightOptions(withSourceOptions(y)))
      .option('models', { type: 'string', demandOption: true, describe: 'models to compare, comma-separated (folders or Hub ids)' })
      .option('task', { choices: ['passkey', 'niah'] as NeedleTask[], default: NEEDLE_DEFAULTS.task, describe: 'passkey (Landmark template) or niah (needle in a haystack)' })
      .option('lengths', { type: 'string', default: NEEDLE_DEFAULTS.lengths.join(','), describe: 'target prompt lengths in tokens' })
      .option('depths', { type: 'string', default: NEEDLE_DEFAULTS.depths.join(','), describe: 'key depths: fraction of the filler before the key' })
      .option('trials', { type: 'number', default: NEEDLE_DEFAULTS.trials, describe: 'trials (keys) per length × depth' })
      .option('seed', { type: 'number', default: NEEDLE_DEFAULTS.seed, describe: 'seed of keys and haystack offsets' })
      .option('mode', {
        choices: ['generate', 'teacher-forced'] as ScoringMode[],
        default: NEEDLE_DEFAULTS.mode,
        describe: 'generate: greedy decoding, first integer; teacher-forced: argmax of every answer token',
      })
      .option('haystack', { type: 'string', describe: 'niah: text file used as the haystack (default: built-in filler)' })
      .option('out', { type: 'string', default: 'needle-report', describe: 'output folder (rerun into it to resume)' })
      .option('max-new-tokens', { type: 'number', default: NEEDLE_DEFAULTS.maxNewTokens, describe: 'generate mode: new tokens per answer' })
      .example('fopeify needle --models ./smollm2,./smollm2-fope --lengths 1024,2048,4096,8192 --trials 10 --out passkey', '')
      .example('fopeify needle --models ./a,./b --task niah --haystack essays.txt --mode teacher-forced', '') as never,
  handler: async (argv) => {
    const models = parseModels(argv.models);
    const lengths = numberList(argv.lengths, 'lengths', true);
    const depths = numberList(argv.depths, 'depths', false);
    await withReporter(argv, async (reporter) => {
      const backend = await startBackend(argv, { quiet: argv.json });
      let started = Date.now();
      let label = '';
      const summary = await runNeedle({
        models,
        out: argv.out,
        task: argv.task,
        lengths,
        depths,
        trials: argv.trials,
        seed: argv.seed,
        mode: argv.mode,
        haystack: argv.haystack,
        maxNewTokens: argv['max-new-tokens'],
        source: sourceOptions(argv, reporter),
        backend,
        allowNonFinite: argv['allow-non-finite'],
        onStart: ({ total, skipped }) => {
          if (skipped) reporter.info(`${argv.out}: ${skipped} finished cell${skipped === 1 ? '' : 's'} found, skipping them; ${total} to go`);
          started = Date.now();
        },
        onModel: ({ model, phase }) => {
          if (phase === 'loading') reporter.update(`loading ${model}`);
          else if (phase === 'loaded') reporter.done(`loaded ${model}`);
          else reporter.info(`${model}: every cell is finished`);
          label = model;
        },
        onWarning: (m) => reporter.info(`warning: ${m}`),
        onProgress: ({ record: r, done, total }) => {
          reporter.update(
            `${label} length ${r.context_length}, depth ${r.depth}, trial ${r.trial + 1}: ${done}/${total} cells, ${rateEta(done, total, started, 'cells')}`,
          );
        },
      });
      reporter.stop();
      if (argv.json) {
        printJson(summary);
        return;
      }
      const color = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
      const title = `${summary.task === 'passkey' ? 'passkey retrieval' : 'needle in a haystack'} accuracy (${summary.mode}, ${summary.trials} trial${summary.trials === 1 ? '' : 's'} × ${summary.depths.length} depths per length)`;
      process.stdout.write(`${title}\n${colorTable(summary, { color, depths: true })}\n\nreport: ${argv.out}/report.html\n`);
    });
  },
};
