/** Every CLI command, in the order `--help` lists them. One module per command. */
import type { CommandModule } from 'yargs';
import { inspectCommand } from './inspect.js';
import { convertCommand } from './convert.js';
import { logitsCommand } from './logits.js';
import { pplCommand } from './ppl.js';
import { generateCommand } from './generate.js';
import { needleCommand } from './needle.js';
import { pushCommand } from './push.js';
import { demoCommand } from './demo.js';
import { finetuneCommand } from './finetune.js';
import { recipesCommand } from './recipes.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [inspectCommand, convertCommand, logitsCommand, pplCommand, generateCommand, needleCommand, pushCommand, finetuneCommand, recipesCommand, demoCommand];
