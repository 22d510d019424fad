/**
 * The fopeify command line: a thin yargs layer over the library. Each command lives in its own module
 * and exports a yargs CommandModule; this file only registers them and maps errors to exit codes.
 */
import yargs, { type CommandModule } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { FopeifyError, messageNamingOptions } from '../errors.js';
import { VERSION } from '../version.js';
import { commandsFor } from './commands.js';

function redactTokens(text: string): string {
  return text.replace(/hf_[A-Za-z0-9]{4,}/g, 'hf_***');
}

export async function main(argv: string[] = hideBin(process.argv)): Promise<number> {
  let exitCode = 0;
  const cli = yargs(argv)
    .scriptName('fopeify')
    .version(VERSION)
    .usage('fopeify <command> [options]\n\nTurn RoPE language-model checkpoints into long-context FoPE models, and prove it.')
    .strict()
    // A repeated scalar flag (`--steps 24 ... --steps 48`, typical when a script appends overrides) takes the
    // last value, as in most CLIs, instead of becoming an array that every numeric check then rejects.
    .parserConfiguration({ 'duplicate-arguments-array': false })
    .demandCommand(1, 'name a command (see --help)')
    .recommendCommands()
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      // yargs messages may span lines ("Invalid values:\n  Argument: ..."): errors are one line.
      throw err ?? new FopeifyError('BAD_ARGUMENT', msg.replace(/\s*\n\s*/g, ' '));
    });
  for (const c of await commandsFor(argv)) cli.command(c as CommandModule);
  try {
    await cli.parseAsync();
  } catch (err) {
    exitCode = reportError(err);
  }
  return exitCode || (process.exitCode as number | undefined) || 0;
}

/** Library options whose flag is not `--` + their kebab-case name. */
const FLAG_OF_OPTION: Record<string, string> = { outDir: '--out', activationBudgetBytes: '--activation-memory' };

/**
 * The flag of a library option: `targetLength` → `--target-length`. A nested option (`plan.lengths`,
 * `settings.lr`) has the flag of its last part: the CLI spreads those objects' fields over flat flags.
 */
export function optionFlag(option: string): string {
  const name = option.slice(option.lastIndexOf('.') + 1);
  return FLAG_OF_OPTION[name] ?? `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** One line on stderr, never a stack trace (unless FOPEIFY_DEBUG is set); options named by their flags. */
export function reportError(err: unknown): number {
  if (err instanceof FopeifyError) {
    process.stderr.write(`fopeify: error: ${redactTokens(messageNamingOptions(err, optionFlag))}\n`);
    if (process.env.FOPEIFY_DEBUG) process.stderr.write(`${err.stack}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  const message = e?.message ?? String(err);
  process.stderr.write(`fopeify: unexpected error: ${redactTokens(message)}\n`);
  if (process.env.FOPEIFY_DEBUG) process.stderr.write(`${e?.stack}\n`);
  else process.stderr.write('(set FOPEIFY_DEBUG=1 for details)\n');
  return 1;
}
