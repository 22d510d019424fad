import type { CommandModule } from 'yargs';
import { startBackend, withBackendOptions, withJsonOption, printResult, reporterCallbacks, withReporter, type BackendArgs } from './common.js';
import { formatTable } from './output.js';

interface DemoArgs extends BackendArgs {
  out: string;
  quick: boolean;
  seed: number;
  json: boolean;
}

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe: 'the whole story on the shipped tiny RoPE model: convert, fine-tune, passkey and perplexity report',
  builder: (y) =>
    withJsonOption(withBackendOptions(y))
      .option('out', { type: 'string', default: 'fopeify-demo', describe: 'output folder (a rerun resumes finished stages)' })
      .option('quick', { type: 'boolean', default: false, describe: 'the short variant (a few minutes on 2 cores)' })
      .option('seed', { type: 'number', default: 0 })
      .example('fopeify demo --quick', '') as never,
  handler: async (argv) => {
    // Heavy modules (tfjs) load only when the command runs, so `--help` stays fast.
    const { planDemo, runPlannedDemo, demoPlan } = await import('../demo/demo.js');
    const plan = demoPlan(256, argv.quick);
    await withReporter(argv, async (reporter) => {
      // The inputs are refused before the banner and before the backend starts.
      const setup = await planDemo({ out: argv.out });
      reporter.info(
        argv.quick
          ? `fopeify demo --quick: ${plan.steps} fine-tuning steps per model, ${plan.depths.length} depths × ${plan.trials} trials; a few minutes on a 2-core machine (under 10).`
          : `fopeify demo (full): ${plan.steps} fine-tuning steps per model, ${plan.depths.length} depths × ${plan.trials} trials; about 15–20 minutes on a 2-core machine with the native backend, much longer without it (use --quick for a few minutes).`,
      );
      const backend = await startBackend(argv, { log: (l) => reporter.info(l) });
      const r = await runPlannedDemo(setup, backend, {
        quick: argv.quick,
        seed: argv.seed,
        ...reporterCallbacks(reporter),
      });
      printResult(argv, reporter, r, (r) => {
      const lengths = r.plan.lengths;
      const rows = Object.entries(r.table).map(([m, row]) => [m, ...lengths.map((l) => `${((row[l] ?? 0) * 100).toFixed(0)}%`)]);
      const ppl = (m: string) => r.plan.windows.map((w) => r.perplexity.find((p) => p.model === m && p.window === w)?.ppl);
      return [
          '',
          `passkey accuracy (${r.plan.depths.length} depths × ${r.plan.trials} trials per length; trained at ${r.plan.trainLength}, fine-tuned at ${r.plan.fineTuneLength})`,
          formatTable(['model', ...lengths.map(String)], rows),
          '',
          'perplexity on held-out Brown text by context window',
          formatTable(['model', ...r.plan.windows.map(String)], Object.keys(r.table).map((m) => [m, ...ppl(m).map((p) => (p === null || p === undefined ? '–' : p.toFixed(2)))])),
          '',
          r.verdict,
          `report: ${r.report}  (${(r.seconds / 60).toFixed(1)} min)`,
          '',
        ].join('\n');
      });
    });
  },
};
