/**
 * `fopeify ppl <model> --text FILE --windows 128,256,...`: perplexity per context window
 * (non-overlapping windows of each size over the file), as a table or --json.
 */
import { promises as fs } from 'node:fs';
import type { CommandModule } from 'yargs';
import { FopeifyError } from '../errors.js';
import { perplexityByWindow, type WindowPerplexity } from '../eval/perplexity.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { openModel, parseIntList, withRuntimeOptions, type RuntimeArgs } from './logits.js';
import { reporterFor } from './common.js';
import { formatTable, printJson, rateEta } from './output.js';

interface PplArgs extends RuntimeArgs {
  text: string;
  windows: string;
  'max-windows'?: number;
}

export function formatPerplexity(results: WindowPerplexity[]): string {
  return formatTable(
    ['window', 'windows', 'tokens', 'nll', 'ppl'],
    results.map((r) => [r.window, r.windows, r.tokens, r.nll === null ? '-' : r.nll.toFixed(4), r.ppl === null ? '-' : r.ppl.toFixed(3)]),
  );
}

export const pplCommand: CommandModule<object, PplArgs> = {
  command: 'ppl <model>',
  describe: 'perplexity of a text file per context window (non-overlapping windows of each size)',
  builder: (y) =>
    withRuntimeOptions(y)
      .option('text', { type: 'string', demandOption: true, describe: 'UTF-8 text file to score' })
      .option('windows', { type: 'string', default: '128,256,512,1024', describe: 'window sizes in tokens, comma-separated' })
      .option('max-windows', { type: 'number', describe: 'score at most this many windows per size (default: all)' })
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
    const reporter = reporterFor(argv);
    const { model, resolved } = await openModel(argv, reporter);
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
          reporter.update(`window ${e.window}: ${e.index}/${e.count}, ${rateEta(done, total, started, 'tokens')}`);
        },
      });
      reporter.stop();
      if (argv.json) {
        printJson({ model: argv.model, text: argv.text, tokens: report.tokens, results: report.results });
      } else {
        process.stdout.write(`${argv.text}: ${report.tokens} tokens\n${formatPerplexity(report.results)}\n`);
        const skipped = report.results.filter((r) => r.windows === 0).map((r) => r.window);
        if (skipped.length) process.stderr.write(`note: the text is shorter than window(s) ${skipped.join(', ')}\n`);
      }
    } finally {
      reporter.stop();
      model.dispose();
    }
  },
};
