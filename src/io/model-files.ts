/** The non-weight files of a model folder that travel with it (downloads, conversions, fine-tuned output). */
import { FOPEIFY_JSON } from './formats.js';

/** Tokenizer files transformers may read; whichever a model has are fetched and copied. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
  'chat_template.jinja',
];

/** Copied next to rewritten weights so the output is a complete model folder. */
export const SIDECAR_FILES = [...TOKENIZER_FILES, 'generation_config.json'];

/**
 * The Python files of a FoPE remote-code folder (transformers remote code and the PyTorch core it wraps;
 * see src/bridge/remote-code.ts). Fetched with a model when its repository has them.
 */
export const REMOTE_CODE_FILES = [
  'configuration_fope.py',
  'modeling_fope.py',
  'fope_spec.py',
  'fope_rope.py',
  'fope_core.py',
  'fope_safetensors.py',
  'fope_checkpoint.py',
  'fope_runner.py',
] as const;

/**
 * Root files a model folder is made of (weights, index, config, tokenizer and generation files, card,
 * provenance, adapter). A push refuses to go on when one of them is there but unusable (a link out of the
 * folder, a FIFO) instead of silently leaving it out; any other unusable entry is skipped.
 */
export function isModelFileName(name: string): boolean {
  return (
    name === 'config.json' ||
    name === 'README.md' ||
    name === FOPEIFY_JSON ||
    name === 'adapter_config.json' ||
    name.endsWith('.safetensors') ||
    name.endsWith('.safetensors.index.json') ||
    SIDECAR_FILES.includes(name) ||
    (REMOTE_CODE_FILES as readonly string[]).includes(name)
  );
}
