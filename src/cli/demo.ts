import type { CommandModule } from 'yargs';
import type { BackendName } from '../backend/select.js';
import { reporterFor } from './common.js';
import { formatTable, printJson } from './output.js';

interface DemoArgs {
  out: string;
  quick: boolean;
  backend: BackendName;
  threads?: number;
  seed: number;
  json: boolean;
}

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe: 'the whole story on the shipped tiny RoPE model: convert, fine-tune, passkey and perplexity report',
  builder: (y) =>
    y
      .option('out', { type: 'string', default: 'fopeify-demo', describe: 'output folder (a rerun resumes finished stages)' })
      .option('quick', { type: 'boolean', default: false, describe: 'the short variant (a few minutes on 2 cores)' })
      .option('backend', { choices: ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu', 'native'] as const, default: 'auto' as const, describe: 'TensorFlow.js backend (auto: the fastest available here)' })
      .option('threads', { type: 'number', describe: 'BLAS / backend threads (default: the machine’s cores)' })
      .option('seed', { type: 'number', default: 0 })
      .option('json', { type: 'boolean', default: false, describe: 'machine-readable result' })
      .example('fopeify demo --quick', '') as never,
  handler: async (argv) => {
    // Heavy modules (tfjs) load only when the command runs, so `--help` stays fast.
    const { runDemo, demoPlan } = await import('../demo/demo.js');
    const reporter = reporterFor(argv);
    const plan = demoPlan(256, argv.quick);
    const banner = () =>
      reporter.info(
        argv.quick
          ? `fopeify demo --quick: ${plan.steps} fine-tuning steps per model, ${plan.depths.length} depths × ${plan.trials} trials; a few minutes on a 2-core machine (under 10).`
          : `fopeify demo (full): ${plan.steps} fine-tuning steps per model, ${plan.depths.length} depths × ${plan.trials} trials; about 15–20 minutes on a 2-core machine with the native backend, much longer without it (use --quick for a few minutes).`,
      );
    try {
      const r = await runDemo({
        out: argv.out,
        quick: argv.quick,
        backend: argv.backend,
        threads: argv.threads,
        seed: argv.seed,
        onStart: banner,
        onLog: (l) => reporter.info(l),
        onProgress: (t) => reporter.update(t),
      });
      reporter.stop();
      if (argv.json) {
        printJson(r);
        return;
      }
      const lengths = r.plan.lengths;
      const rows = Object.entries(r.table).map(([m, row]) => [m, ...lengths.map((l) => `${((row[l] ?? 0) * 100).toFixed(0)}%`)]);
      const ppl = (m: string) => r.plan.windows.map((w) => r.perplexity.find((p) => p.model === m && p.window === w)?.ppl);
      process.stdout.write(
        [
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
        ].join('\n'),
      );
    } finally {
      reporter.stop();
    }
  },
};
