/** The fine-tuned model's README.md: what changed in the model, the training settings, how to load it. */
import { howToLoadMarkdown } from '../bridge/engines.js';
import { bulletList, renderCard, settingsTable } from '../card/markdown.js';
import type { MetricsRecord } from '../io/formats.js';
import { VERSION } from '../version.js';
import type { ConversionInfo } from './prepare.js';
import type { TrainSettings } from './recipe.js';

export interface FinetuneCardInput {
  baseModel: string;
  recipe: string | null;
  recipeDescription: string;
  settings: TrainSettings;
  conversion: ConversionInfo;
  data: string;
  stepsDone: number;
  tokens: number;
  finalLoss: number | null;
  lastEval: MetricsRecord | null;
  trainable: number;
  parameters: number;
  adapter: boolean;
  backend: string;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(4)));
}

/** The "Model changes" list: the recipe's conversion before training. */
function conversionLines(c: FinetuneCardInput): string[] {
  const conv: string[] = [];
  if (c.conversion.yarn) {
    conv.push(
      `YaRN added: factor ${fmt(c.conversion.yarn.factor)} over the original ${c.conversion.yarn.originalLength} tokens (attention factor ${c.conversion.yarn.attentionFactor.toFixed(6)})`,
    );
  }
  if (c.conversion.fope) {
    conv.push(
      `converted to FoPE (family B, as \`fopeify convert\`): K = ${c.conversion.fope.k} frequencies, coefficients [${c.conversion.fope.coefficientShape.join(', ')}], init factor ${c.conversion.fope.initFactor}, seed ${c.conversion.fope.seed}; the coefficients were frozen during training`,
    );
  }
  if (c.conversion.maxPositionEmbeddings) conv.push(`max_position_embeddings raised from ${c.conversion.maxPositionEmbeddings.from} to ${c.conversion.maxPositionEmbeddings.to}`);
  conv.push(...c.conversion.notes);
  return conv;
}

function trainingRows(c: FinetuneCardInput): [string, string][] {
  const s = c.settings;
  const rows: [string, string][] = [
    ['recipe', c.recipe ? `${c.recipe}${c.recipeDescription ? ` — ${c.recipeDescription}` : ''}` : 'none'],
    ['training data', c.data],
    ['sequence length', `${s.seqLen} tokens`],
    ['steps', `${c.stepsDone} of ${s.steps}`],
    ['batch × grad accumulation', `${s.batch} × ${s.gradAccum} (${s.batch * s.gradAccum * s.seqLen} tokens per step)`],
    ['tokens trained on', String(c.tokens)],
    ['optimizer', `AdamW β (${s.betas.join(', ')}), weight decay ${s.weightDecay}, gradient clipping at norm ${s.maxGradNorm || 'off'}`],
    ['learning rate', `${fmt(s.lr)}, ${s.warmupSteps} warmup steps, ${s.schedule} schedule${s.schedule === 'constant' ? '' : ` to ${fmt(s.lr * s.minLrRatio)}`}`],
    ['trainable', s.trainable === 'lora' ? `LoRA r=${s.lora.rank} α=${s.lora.alpha} on ${s.lora.targets.join(', ')}${s.lora.trainEmbeddings ? ' + embeddings' : ''}${s.lora.trainNorms ? ' + norms' : ''} (${c.adapter ? 'saved as a PEFT adapter' : 'merged into the weights'})` : s.trainable],
    ['trainable parameters', `${c.trainable.toLocaleString('en-US')} of ${c.parameters.toLocaleString('en-US')}`],
    ['seed', String(s.seed)],
    ['backend', c.backend],
  ];
  if (c.finalLoss !== null) rows.push(['final training loss', c.finalLoss.toFixed(4)]);
  if (c.lastEval?.eval_loss !== undefined) rows.push([`held-out loss (step ${c.lastEval.step})`, `${c.lastEval.eval_loss.toFixed(4)} (perplexity ${c.lastEval.eval_ppl!.toFixed(3)})`]);
  if (c.lastEval?.passkey_accuracy !== undefined) rows.push([`passkey accuracy at ${s.seqLen} tokens`, `${(100 * c.lastEval.passkey_accuracy).toFixed(0)} %`]);
  return rows;
}

/** README.md: YAML front matter for the Hub and the training settings. No timestamps (same run, same bytes). */
export function finetuneModelCard(c: FinetuneCardInput): string {
  const s = c.settings;
  const tags = ['fopeify', 'long-context', 'fine-tuned'];
  const fope = c.conversion.kind === 'fope' || c.conversion.kind === 'fope-yarn' || c.recipe === 'fope';
  if (fope) tags.push('fope');
  if (c.conversion.yarn) tags.push('yarn');
  if (s.trainable === 'lora') tags.push('lora');
  const conv = conversionLines(c);
  const adapterNote = [
    '',
    'The LoRA is saved as a PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`); the safetensors next to it hold',
    'the base weights (with any directly trained embeddings and norms). Load the adapter on top to get the fine-tuned model.',
  ];
  return renderCard({
    baseModel: c.baseModel,
    tags,
    title: `Long-context fine-tune of ${c.baseModel}`,
    intro: `Fine-tuned at ${s.seqLen} tokens by fopeify ${VERSION} (\`fopeify finetune\`).`,
    sections: [
      { heading: 'Model changes', lines: conv.length ? bulletList(conv) : ['- none: the rotary embedding is the base model\'s'] },
      { heading: 'Training settings', lines: [...settingsTable(trainingRows(c)), ...(c.adapter ? adapterNote : [])] },
      ...(fope ? [{ heading: 'How to load', lines: [howToLoadMarkdown('fope', 'path/to/this-folder')] }] : []),
    ],
    footer: ['![loss curve](loss_curve.png)', '', 'Per-step metrics are in `metrics.jsonl`; the resolved settings and results in `finetune.json`.'],
  });
}
