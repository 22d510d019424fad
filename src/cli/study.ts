/**
 * `fopeify study [model] --variants … --seeds N --target-length L --steps N --out DIR [--quick]`: the FoPE
 * paper's comparison and ablation on one RoPE model, across seeds, with intervals, a verdict, study.json
 * and report.html. A thin view of runStudy (src/study/).
 */
import type { CommandModule } from 'yargs';
import { numberList, sourceOptions, printResult, reporterCallbacks, withBackendOptions, withReporter, withSourceOptions, type BackendArgs, type SourceArgs } from './common.js';
import { formatTable } from './output.js';

interface StudyArgs extends SourceArgs, BackendArgs {
  model?: string;
  variants?: string;
  seeds?: number;
  'target-length'?: number;
  steps?: number;
  batch?: number;
  lengths?: string;
  depths?: string;
  trials?: number;
  windows?: string;
  'max-windows'?: number;
  threshold?: number;
  'init-factor'?: number;
  out: string;
  quick: boolean;
}

/** The command line as typed (for study.json), tokens redacted. */
function commandLine(): string {
  const args = process.argv.slice(2).map((a, i, all) => (all[i - 1] === '--token' || a.startsWith('--token=') ? (a.startsWith('--token=') ? '--token=***' : '***') : a));
  return ['fopeify', ...args.map((a) => (/^[\w./:,=@+-]+$/.test(a) ? a : JSON.stringify(a)))].join(' ');
}

export const studyCommand: CommandModule<object, StudyArgs> = {
  command: 'study [model]',
  describe: 'compare RoPE, YaRN, FoPE+YaRN and the ablations across seeds, with 95 % intervals and a verdict',
  builder: (y) =>
    withBackendOptions(withSourceOptions(
      y
        .positional('model', { type: 'string', describe: 'RoPE model folder or Hub id (default: the shipped tiny model)' })
        .option('variants', { type: 'string', describe: 'comma-separated: rope, yarn, fope-yarn, clip-yarn, fourier-yarn, fope (default: all)' })
        .option('seeds', { type: 'number', describe: 'seeds 0…N−1 per variant (default 3; --quick 2)' })
        .option('target-length', { type: 'number', describe: 'fine-tuning length in tokens (default 2 × the training length)' })
        .option('steps', { type: 'number', describe: 'fine-tuning steps per variant and seed (default 300; --quick 30)' })
        .option('batch', { type: 'number', describe: 'fine-tuning batch (default 8; --quick 4)' })
        .option('lengths', { type: 'string', describe: 'passkey lengths, comma-separated (default 1×, 2×, 4×, 8× the training length; --quick to 4×)' })
        .option('depths', { type: 'string', describe: 'passkey depths in [0, 1], comma-separated' })
        .option('trials', { type: 'number', describe: 'passkey trials per length × depth (default 8; --quick 2)' })
        .option('windows', { type: 'string', describe: 'perplexity windows, comma-separated (default: the passkey multiples)' })
        .option('max-windows', { type: 'number', describe: 'perplexity windows scored per size' })
        .option('init-factor', { type: 'number', describe: 'Fourier gain of the FoPE variants (default 0.1; the paper used 0.3–0.6)' })
        .option('threshold', { type: 'number', describe: 'accuracy kept for the effective length (default 0.8)' })
        .option('out', { type: 'string', default: 'fopeify-study', describe: 'output folder (a rerun skips finished variant × seed cells)' })
        .option('quick', { type: 'boolean', default: false, describe: 'the short study: under 15 minutes on 2 cores with the shipped tiny model' })
        .example('fopeify study --quick', 'the short study on the shipped tiny model')
        .example('fopeify study --variants yarn,fope-yarn --seeds 5', 'two variants, five seeds'),
    )) as never,
  handler: async (argv) => {
    // Heavy modules (tfjs) load only when the command runs, so `--help` stays fast.
    const { runStudy } = await import('../study/study.js');
    const { parseVariants } = await import('../study/plan.js');
    const { studyTables } = await import('../study/report.js');
    await withReporter(argv, async (reporter) => {
    const variants = parseVariants(argv.variants);
    const plan: Record<string, unknown> = {};
    if (argv.batch !== undefined) plan.batch = argv.batch;
    if (argv.lengths !== undefined) plan.lengths = numberList(argv.lengths, 'lengths', true);
    if (argv.depths !== undefined) plan.depths = numberList(argv.depths, 'depths', false);
    if (argv.trials !== undefined) plan.trials = argv.trials;
    if (argv.windows !== undefined) plan.windows = numberList(argv.windows, 'windows', true);
    if (argv['max-windows'] !== undefined) plan.maxWindows = argv['max-windows'];
    if (argv.threshold !== undefined) plan.threshold = argv.threshold;
    if (argv['init-factor'] !== undefined) plan.initFactor = argv['init-factor'];
      const r = await runStudy({
        model: argv.model,
        out: argv.out,
        variants,
        seeds: argv.seeds,
        targetLength: argv['target-length'],
        steps: argv.steps,
        quick: argv.quick,
        plan,
        backend: argv.backend,
        threads: argv.threads,
        allowSoftwareAdapter: argv['allow-software-adapter'],
        source: sourceOptions(argv, reporter),
        command: commandLine(),
        // Said once the inputs are checked, before any cell runs: what this will cost.
        onStart: ({ plan: p, variants: vs, seeds, quick }) =>
          reporter.info(
            quick
              ? `fopeify study --quick: ${vs.length} variants × ${seeds.length} seeds, ${p.steps} fine-tuning steps each, passkey ${p.depths.length} depths × ${p.trials} trials at ${p.lengths.join(', ')} tokens; meant to take under 15 minutes on a 2-core machine with the shipped tiny model.`
              : `fopeify study: ${vs.length} variants × ${seeds.length} seeds, ${p.steps} fine-tuning steps each, passkey ${p.depths.length} depths × ${p.trials} trials at ${p.lengths.join(', ')} tokens; with the default budget this takes hours on a 2-core machine (--quick: under 15 minutes). A rerun resumes.`,
          ),
        ...reporterCallbacks(reporter),
      });
      printResult(argv, reporter, r, (r) => {
      const t = studyTables(r.aggregate, r.plan, r.variants);
      return [
          '',
          `passkey accuracy, mean over ${r.seeds.length} seed${r.seeds.length === 1 ? '' : 's'} [95 % t-interval]; * = training length ${r.plan.trainLength}, fine-tuned at ${r.plan.fineTuneLength}`,
          formatTable(t.accuracy.head, t.accuracy.rows),
          '',
          'perplexity on held-out Brown text by window, mean [95 % t-interval]',
          formatTable(t.perplexity.head, t.perplexity.rows),
          '',
          r.verdict,
          '',
          `report: ${r.report}  (${(r.seconds / 60).toFixed(1)} min; ${r.ranCells.length} of ${r.cells.length} cells run now, the others found finished; the cells took ${(r.cellSeconds / 60).toFixed(1)} min in all)`,
          '',
        ].join('\n');
      });
    });
  },
};
