/** The README.md model card written next to converted weights (YAML front matter + what was done). */
import { howToLoadMarkdown } from '../bridge/engines.js';
import { bulletList, renderCard, settingsTable } from '../card/markdown.js';
import type { ArchName } from '../config/fope-arch.js';

export interface ConvertCardInput {
  baseModel: string;
  lines: string[];
  k: number;
  headDimHalf: number;
  clipLength: number;
  clippedWavelengths: number[];
  yarn?: { factor: number; originalLength: number; attentionFactor: number };
  initFactor: number;
  sepHead: boolean;
  layout: string;
  sinPad: 0 | 1;
  coefficientNames: string[];
  coefficientShape: number[];
  /** How the output names its architecture (`fope`: remote code; `keep`: stock names). */
  archName: ArchName;
  /** What the load examples name (the output folder; push rewrites the card with the Hub id). */
  loadId: string;
}

export function convertModelCard(c: ConvertCardInput): string {
  const settings: [string, string][] = [
    ['frequencies kept (num_inv_freq)', `${c.k} of ${c.headDimHalf}`],
    ['clip length', `${c.clipLength} tokens`],
    ['clipped wavelengths (tokens)', c.clippedWavelengths.length ? c.clippedWavelengths.map((w) => w.toFixed(0)).join(', ') : 'none'],
    ['fope_init_factor (xavier gain)', String(c.initFactor)],
    ['fope_sep_head', String(c.sepHead)],
    ['layout', c.layout],
    ['sin padding', String(c.sinPad)],
  ];
  if (c.yarn) {
    settings.push(
      ['YaRN factor', `${c.yarn.factor} (original length ${c.yarn.originalLength}, attention factor ${c.yarn.attentionFactor.toFixed(6)})`],
      ['YaRN + FoPE semantics', 'Hugging Face / family B: YaRN frequencies first, clipped against the extended max_position_embeddings, attention factor on cos and sin'],
    );
  }
  const coefficients = `${c.coefficientNames.slice(0, 4).map((n) => `\`${n}\``).join(', ')}${c.coefficientNames.length > 4 ? ', …' : ''}`;
  return renderCard({
    baseModel: c.baseModel,
    tags: ['fope', 'fopeify', 'long-context', ...(c.yarn ? ['yarn'] : [])],
    title: `FoPE conversion of ${c.baseModel}`,
    intro: 'This checkpoint was converted from RoPE to FoPE (Fourier Position Embedding, Hua et al., ICML 2025, arXiv 2412.17739) by fopeify.',
    sections: [
      { heading: 'What was done', lines: bulletList(c.lines) },
      { heading: 'FoPE settings', lines: [...settingsTable(settings), '', `Coefficients (float32, shape [${c.coefficientShape.join(', ')}]): ${coefficients}.`] },
      {
        heading: 'How to load',
        lines: [
          howToLoadMarkdown(c.archName, c.loadId),
          'The converted model has not been fine-tuned by this step: FoPE with a non-zero init factor changes the positional signal, so fine-tune (`fopeify finetune --recipe fope`) before judging quality.',
          '',
          'Provenance (tool version, source files and their hashes, every option) is in `fopeify.json`.',
        ],
      },
    ],
  });
}
