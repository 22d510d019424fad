/**
 * `fopeify ppl <model> --text FILE --windows 128,256,...`: perplexity per context window
 * (non-overlapping windows of each size over the file), as a table or --json.
 * `--models a,b [--out DIR]` scores several models and writes ppl.json, a perplexity-vs-length chart
 * and report.html into DIR (the folder `fopeify needle` reports into, so one report shows both).
 */
import { promises as fs } from 'node:fs';
import type { CommandModule } from 'yargs';
import { FopeifyError } from '../errors.js';
import { perplexityByWindow, type WindowPerplexity } from '../eval/perplexity.js';
import { writePerplexityReport } from '../eval/report.js';
import { checkOutputFolder, localFolders } from '../io/output-folder.js';
import { parseModels } from './needle.js';
import { loadTokenizer } from '../model/tokenizer.js';
import type { BackendInfo } from '../backend/select.js';
import { openModel, parseIntList } from './logits.js';
import { reporterFor, withRuntimeOptions, type RuntimeArgs } from './common.js';
import { formatTable, printJson, rateEta } from './output.js';

interface PplArgs extends Omit<RuntimeArgs, 'model'> {
  model?: string;
  text: string;
  windows: string;
  'max-windows'?: number;
  models?: string;
  out?: string;
}

export function formatPerplexity(results: WindowPerplexity[]): string {
  return formatTable(
    ['window', 'windows', 'tokens', 'nll', 'ppl'],
    results.map((r) => [r.window, r.windows, r.tokens, r.nll === null ? '-' : r.nll.toFixed(4), r.ppl === null ? '-' : r.ppl.toFixed(3)]),
  );
}

export const pplCommand: CommandModule<object, PplArgs> = {
  command: 'ppl [model]',
  describe: 'perplexity of a text file per context window (non-overlapping windows of each size)',
  builder: (y) =>
    withRuntimeOptions(y)
      .option('text', { type: 'string', demandOption: true, describe: 'UTF-8 text file to score' })
      .option('windows', { type: 'string', default: '128,256,512,1024', describe: 'window sizes in tokens, comma-separated' })
      .option('max-windows', { type: 'number', describe: 'score at most this many windows per size (default: all)' })
      .positional('model', { type: 'string', demandOption: false, describe: 'model folder or Hub id (org/name); or --models' })
      .option('models', { type: 'string', describe: 'several models, comma-separated: writes a comparison report (see --out)' })
      .option('out', { type: 'string', describe: 'report folder: ppl.json, ppl.svg/png, report.html (default with --models: ppl-report)' })
      .example('fopeify ppl --models ./smollm2,./smollm2-fope --text book.txt --windows 512,1024,2048,4096 --out report', '')
      .example('fopeify ppl ./smollm2-fope --text book.txt --windows 512,1024,2048,4096 --json', '') as never,
  handler: async (argv) => {
    const windows = parseIntList(argv.windows, 'windows', 2);
    const maxWindows = argv['max-windows'];
    if (maxWindows !== undefined && !(Number.isInteger(maxWindows) && maxWindows >= 1)) {
      throw new FopeifyError('BAD_ARGUMENT', `--max-windows must be a positive integer (got ${maxWindows})`);
    }
    let text: string;
    try {
      text = await fs.readFile(argv.text, 'utf8');
    } catch {
      throw new FopeifyError('BAD_ARGUMENT', `cannot read --text ${argv.text}`);
    }
    if (argv.model !== undefined && argv.models !== undefined) throw new FopeifyError('BAD_ARGUMENT', 'give either <model> or --models, not both');
    if (argv.model === undefined && argv.models === undefined) throw new FopeifyError('BAD_ARGUMENT', 'name a model (or several with --models a,b)');
    const models = argv.models !== undefined ? parseModels(argv.models) : [argv.model!];
    const out = argv.out ?? (argv.models !== undefined ? 'ppl-report' : undefined);
    // Refused before any scoring: an empty --out, or one that is, holds or lies inside a model folder.
    if (out !== undefined) await checkOutputFolder(out, { sources: await localFolders(models) });
    const reporter = reporterFor(argv);
    const all: { model: string; tokens: number; results: WindowPerplexity[] }[] = [];
    let backend: BackendInfo | undefined;
    for (const name of models) {
      const opened = await openModel({ ...argv, model: name }, reporter, backend);
      const { model, resolved } = opened;
      backend = opened.backend;
      try {
        const tokenizer = await loadTokenizer(resolved.dir);
        const ids = tokenizer.encode(text, { addSpecialTokens: false });
        if (ids.length < 2) throw new FopeifyError('BAD_ARGUMENT', `${argv.text} has fewer than 2 tokens`);
        const started = Date.now();
        const total = windows.reduce((s, w) => s + Math.min(Math.floor(ids.length / w), maxWindows ?? Infinity) * w, 0);
        let done = 0;
        const report = await perplexityByWindow(model, ids, {
          windows,
          maxWindows,
          onProgress: (e) => {
            done += e.window;
            reporter.update(`${models.length > 1 ? `${name}: ` : ''}window ${e.window}: ${e.index}/${e.count}, ${rateEta(done, total, started, 'tokens')}`);
          },
        });
        reporter.stop();
        all.push({ model: name, tokens: report.tokens, results: report.results });
      } finally {
        reporter.stop();
        model.dispose();
      }
    }
    if (out !== undefined) {
      await writePerplexityReport(out, {
        windows,
        results: all.flatMap((m) => m.results.map((r) => ({ model: m.model, window: r.window, ppl: r.ppl }))),
        settings: { text: argv.text, tokens: Object.fromEntries(all.map((m) => [m.model, m.tokens])), max_windows: maxWindows },
      });
    }
    if (argv.json) {
      if (models.length === 1 && argv.models === undefined) {
        printJson({ model: argv.model, text: argv.text, tokens: all[0]!.tokens, results: all[0]!.results, ...(out !== undefined ? { out } : {}) });
      } else printJson({ text: argv.text, models: all, ...(out !== undefined ? { out } : {}) });
      return;
    }
    for (const m of all) {
      process.stdout.write(`${models.length > 1 ? `${m.model}: ` : ''}${argv.text}: ${m.tokens} tokens\n${formatPerplexity(m.results)}\n`);
      const skipped = m.results.filter((r) => r.windows === 0).map((r) => r.window);
      if (skipped.length) process.stderr.write(`note: the text is shorter than window(s) ${skipped.join(', ')}\n`);
    }
    if (out !== undefined) process.stdout.write(`report: ${out}/report.html\n`);
  },
};
