/**
 * Every CLI command, in the order `--help` lists them. One module per command, loaded only when that
 * command runs: the runtime's modules pull in TensorFlow.js (over a second to load), which `inspect`,
 * `convert`, `push` and `--help` should not pay for.
 */
import type { CommandModule } from 'yargs';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyCommand = CommandModule<any, any>;

export interface CommandEntry {
  name: string;
  /** Usage and one-line summary for the top-level help, without loading the module. */
  usage: string;
  summary: string;
  load: () => Promise<AnyCommand>;
}

export const commandTable: CommandEntry[] = [
  { name: 'inspect', usage: 'inspect <model>', summary: 'what a checkpoint is: family, shapes, RoPE and its frequencies, FoPE settings', load: async () => (await import('./inspect.js')).inspectCommand },
  { name: 'convert', usage: 'convert <model>', summary: 'rewrite the rotary embedding into FoPE (optionally with YaRN) and write safetensors', load: async () => (await import('./convert.js')).convertCommand },
  { name: 'logits', usage: 'logits <model>', summary: 'print the logits of a token sequence (--json for all of them)', load: async () => (await import('./logits.js')).logitsCommand },
  { name: 'ppl', usage: 'ppl [model]', summary: 'perplexity per context window (--models a,b for a report)', load: async () => (await import('./ppl.js')).pplCommand },
  { name: 'generate', usage: 'generate <model>', summary: 'continue a prompt (greedy by default; --temperature to sample)', load: async () => (await import('./generate.js')).generateCommand },
  { name: 'needle', usage: 'needle', summary: 'paired passkey / needle-in-a-haystack comparison with heatmaps and report', load: async () => (await import('./needle.js')).needleCommand },
  { name: 'finetune', usage: 'finetune <model>', summary: 'fine-tune at a longer context with a recipe (see `fopeify recipes`)', load: async () => (await import('./finetune.js')).finetuneCommand },
  { name: 'recipes', usage: 'recipes', summary: 'list the fine-tuning recipes', load: async () => (await import('./recipes.js')).recipesCommand },
  { name: 'push', usage: 'push <dir> <repo>', summary: 'upload a model folder to the Hub in one commit, with a model card', load: async () => (await import('./push.js')).pushCommand },
  { name: 'demo', usage: 'demo', summary: 'the whole story on the shipped tiny model: convert, fine-tune, passkey, perplexity, report', load: async () => (await import('./demo.js')).demoCommand },
  { name: 'study', usage: 'study [model]', summary: 'RoPE vs YaRN vs FoPE+YaRN and the ablations across seeds: table, 95 % intervals, verdict, report', load: async () => (await import('./study.js')).studyCommand },
];

/**
 * The command modules to register for this argv: only the invoked one when it is known, else lightweight
 * entries (usage + summary) so the top-level help and "unknown command" work without loading anything.
 */
export async function commandsFor(argv: string[]): Promise<AnyCommand[]> {
  const first = argv.find((a) => !a.startsWith('-'));
  const entry = commandTable.find((c) => c.name === first);
  if (entry) return [await entry.load()];
  return commandTable.map((c) => ({ command: c.usage, describe: c.summary, handler: () => undefined }));
}

/** All command modules (tests check that the table and the modules agree). */
export async function allCommands(): Promise<AnyCommand[]> {
  return Promise.all(commandTable.map((c) => c.load()));
}
