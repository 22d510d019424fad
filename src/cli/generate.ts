/**
 * `fopeify generate <model> --prompt TEXT [--max-new-tokens N]`: decode with the KV cache, greedy by
 * default (--temperature > 0 samples, with --top-k / --top-p and --seed). Text streams to stdout as it
 * is produced; --json prints one object at the end.
 */
import type { CommandModule } from 'yargs';
import { FopeifyError } from '../errors.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { withReporter, withRuntimeOptions, type RuntimeArgs } from './common.js';
import { openModel } from './logits.js';
import { printJson } from './output.js';

interface GenerateArgs extends RuntimeArgs {
  prompt: string;
  'max-new-tokens': number;
  temperature: number;
  'top-k'?: number;
  'top-p'?: number;
  seed: number;
  'ignore-eos': boolean;
}

export const generateCommand: CommandModule<object, GenerateArgs> = {
  command: 'generate <model>',
  describe: 'continue a prompt (greedy by default; --temperature to sample)',
  builder: (y) =>
    withRuntimeOptions(y)
      .option('prompt', { type: 'string', demandOption: true, describe: 'text to continue' })
      .option('max-new-tokens', { type: 'number', default: 64, describe: 'tokens to generate at most' })
      .option('temperature', { type: 'number', default: 0, describe: 'sampling temperature (0: greedy)' })
      .option('top-k', { type: 'number', describe: 'sample among the k most likely tokens' })
      .option('top-p', { type: 'number', describe: 'nucleus sampling threshold' })
      .option('seed', { type: 'number', default: 0, describe: 'sampling seed' })
      .option('ignore-eos', { type: 'boolean', default: false, describe: 'do not stop at the end-of-sequence token' })
      .example('fopeify generate ./smollm2-fope --prompt "Once upon a time" --max-new-tokens 40', '') as never,
  handler: async (argv) => {
    const maxNew = argv['max-new-tokens'];
    if (!Number.isInteger(maxNew) || maxNew < 0) throw new FopeifyError('BAD_ARGUMENT', `--max-new-tokens must be a non-negative integer (got ${maxNew})`);
    if (!(argv.temperature >= 0)) throw new FopeifyError('BAD_ARGUMENT', `--temperature must be ≥ 0 (got ${argv.temperature})`);
    const topP = argv['top-p'];
    if (topP !== undefined && !(topP > 0 && topP <= 1)) throw new FopeifyError('BAD_ARGUMENT', `--top-p must be in (0, 1] (got ${topP})`);
    const topK = argv['top-k'];
    if (topK !== undefined && !(Number.isInteger(topK) && topK >= 0)) throw new FopeifyError('BAD_ARGUMENT', `--top-k must be a non-negative integer (got ${topK})`);
    await withReporter(argv, async (reporter) => {
    const { model, resolved } = await openModel(argv, reporter);
    try {
      const tokenizer = await loadTokenizer(resolved.dir);
      const prompt = tokenizer.encode(argv.prompt);
      if (!prompt.length) throw new FopeifyError('BAD_ARGUMENT', 'the prompt encodes to no tokens');
      const eos = argv['ignore-eos'] ? null : (model.spec.eosTokenId ?? tokenizer.eosTokenId);
      const produced: number[] = [];
      let printed = '';
      const stream = !argv.json;
      const res = await model.generate(prompt, {
        maxNewTokens: maxNew,
        temperature: argv.temperature,
        topK,
        topP,
        seed: argv.seed,
        eosTokenId: eos,
        onToken: (id) => {
          produced.push(id);
          if (!stream) return;
          const text = tokenizer.decode(produced, { skipSpecialTokens: true });
          // Hold back an incomplete multi-byte character until its last byte arrives.
          if (!text.endsWith('\uFFFD') && text.startsWith(printed)) {
            process.stdout.write(text.slice(printed.length));
            printed = text;
          }
        },
      });
      const completion = tokenizer.decode(res.tokens, { skipSpecialTokens: true });
      const decodeTokens = Math.max(0, res.tokens.length - 1);
      const tokensPerSecond = res.decodeMs > 0 ? (decodeTokens * 1000) / res.decodeMs : null;
      if (argv.json) {
        printJson({
          model: argv.model,
          prompt: argv.prompt,
          completion,
          prompt_tokens: prompt.length,
          new_tokens: res.tokens,
          stop_reason: res.stopReason,
          prefill_ms: Math.round(res.prefillMs),
          decode_tokens_per_second: tokensPerSecond,
        });
      } else {
        // The streamed text is a prefix of the completion unless a later byte rewrote an earlier
        // undecodable one; then print the final text whole on a fresh line.
        process.stdout.write(completion.startsWith(printed) ? completion.slice(printed.length) : `\n${completion}`);
        process.stdout.write('\n');
        process.stderr.write(
          `${res.tokens.length} tokens (${res.stopReason}); prefill ${prompt.length} tokens in ${(res.prefillMs / 1000).toFixed(2)} s` +
            (tokensPerSecond !== null ? `, decode ${tokensPerSecond.toFixed(1)} tokens/s` : '') +
            '\n',
        );
      }
    } finally {
      model.dispose();
    }
    });
  },
};
