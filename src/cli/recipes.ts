/** `fopeify recipes [--json]`: the fine-tuning recipes shipped in recipes/ (JSON or YAML data files). */
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { listRecipes, type Recipe } from '../train/index.js';
import { withJsonOption } from './common.js';
import { formatTable, printJson } from './output.js';

interface RecipesArgs {
  json: boolean;
}

function convertText(r: Recipe): string {
  const parts: string[] = [];
  if (r.convert?.fope) parts.push(`FoPE${r.convert.initFactor !== undefined ? ` (init ${r.convert.initFactor})` : ''}`);
  if (r.convert?.yarn !== undefined && r.convert?.yarn !== null) parts.push(`YaRN ${r.convert.yarn === 'auto' ? 'seq-len/original' : `×${r.convert.yarn}`}`);
  if (r.requiresFope) parts.push('needs a FoPE model');
  return parts.join(' + ') || '-';
}

export const recipesCommand: CommandModule<object, RecipesArgs> = {
  command: 'recipes',
  describe: 'list the fine-tuning recipes (fopeify finetune --recipe NAME)',
  builder: (y) => withJsonOption(y) as never,
  handler: async (argv) => {
    const recipes = await listRecipes();
    if (argv.json) {
      printJson(recipes.map((r) => ({ ...r, file: path.basename(r.file) })));
      return;
    }
    const rows = recipes.map((r) => {
      const t = r.train;
      const train = [
        t.seqLen !== undefined ? `seq ${t.seqLen}` : '',
        t.steps !== undefined ? `${t.steps} steps` : '',
        t.lr !== undefined ? `lr ${t.lr < 1e-3 ? t.lr.toExponential() : t.lr}` : '',
        t.trainable ? (t.trainable === 'lora' ? `LoRA r=${t.lora?.rank ?? 8}` : t.trainable) : '',
      ]
        .filter(Boolean)
        .join(', ');
      return [r.name, convertText(r), train || 'defaults', path.basename(r.file)];
    });
    const lines = [formatTable(['recipe', 'conversion', 'training', 'file'], rows), ''];
    for (const r of recipes) lines.push(`${r.name}: ${r.description}`);
    process.stdout.write(lines.join('\n') + '\n');
  },
};
