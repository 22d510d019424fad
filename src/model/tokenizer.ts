/**
 * Text ↔ token ids through @huggingface/tokenizers. Its type files use extensionless relative imports,
 * which `moduleResolution: NodeNext` cannot follow, so under skipLibCheck its `Tokenizer` silently
 * becomes `any`. The interfaces below are the typed declaration of the part fopeify uses; the one cast
 * from the untyped module happens here and nowhere else.
 */
import * as tokenizersModule from '@huggingface/tokenizers';
import { FopeifyError } from '../errors.js';
import { MAX_TOKENIZER_BYTES, ModelFolder } from '../io/model-folder.js';
import { TimeLimitExceeded, withTimeLimit } from './time-limit.js';

export interface HfEncoding {
  ids: number[];
  tokens: string[];
  attention_mask: number[];
  token_type_ids?: number[];
}

/** The subset of @huggingface/tokenizers' `Tokenizer` that fopeify calls. */
export interface HfTokenizer {
  encode(text: string, options?: { text_pair?: string | null; add_special_tokens?: boolean }): HfEncoding;
  decode(ids: number[], options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean | null }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
}

export interface HfTokenizerConstructor {
  new (tokenizerJson: object, tokenizerConfig: object): HfTokenizer;
}

/** The typed `Tokenizer` class of @huggingface/tokenizers. */
export const HfTokenizerClass: HfTokenizerConstructor = (tokenizersModule as unknown as { Tokenizer: HfTokenizerConstructor })
  .Tokenizer;

/** A loaded tokenizer with the ids fopeify needs for decoding. */
export interface TextTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], options?: { skipSpecialTokens?: boolean }): string;
  /** End-of-sequence id from tokenizer_config.json (when named there), else null. */
  eosTokenId: number | null;
  bosTokenId: number | null;
  raw: HfTokenizer;
}

function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

export interface TokenizerLimits {
  /**
   * Time limit of one encode or decode: this many ms plus TOKENIZE_MS_PER_CHAR per character of the
   * text (default 10 000). A pre-tokenizer regex that backtracks catastrophically ends in a BAD_CONFIG
   * error instead of a command that never returns.
   */
  timeLimitMs?: number;
}

export const DEFAULT_TOKENIZE_LIMIT_MS = 10_000;
/** 0.1 ms per character: ~10× what the slowest tokenizer measured here needs (~5 µs per character). */
export const TOKENIZE_MS_PER_CHAR = 0.1;

/**
 * The fopeify view of a loaded tokenizer: time-limited encode and decode whose failures are typed
 * (a tokenizer is model data, possibly untrusted), and ids checked before decoding.
 */
export function textTokenizer(tok: HfTokenizer, config: Record<string, unknown>, file: string, limits: TokenizerLimits = {}): TextTokenizer {
  const base = limits.timeLimitMs ?? DEFAULT_TOKENIZE_LIMIT_MS;
  const guarded = <T>(what: string, chars: number, fn: () => T): T => {
    const limitMs = base + TOKENIZE_MS_PER_CHAR * chars;
    try {
      return withTimeLimit(fn, limitMs);
    } catch (err) {
      if (err instanceof FopeifyError) throw err;
      if (err instanceof TimeLimitExceeded) {
        throw new FopeifyError(
          'BAD_CONFIG',
          `${what} with ${file} took longer than ${(limitMs / 1000).toFixed(1)} s and was stopped (a pre-tokenizer or decoder regex that backtracks without end?)`,
        );
      }
      throw new FopeifyError('BAD_CONFIG', `${what} with ${file} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  };
  const idOf = (key: string): number | null => {
    const content = tokenContent(config[key]);
    if (content === null) return null;
    return tok.token_to_id(content) ?? null;
  };
  return {
    encode: (text, options) => {
      if (typeof text !== 'string') throw new FopeifyError('BAD_ARGUMENT', `only text can be tokenized (got ${typeof text})`);
      return guarded(`tokenizing ${text.length} characters`, text.length, () => tok.encode(text, { add_special_tokens: options?.addSpecialTokens ?? true }).ids);
    },
    decode: (ids, options) => {
      const bad = ids.find((id) => !Number.isInteger(id) || id < 0);
      if (bad !== undefined) throw new FopeifyError('BAD_ARGUMENT', `cannot decode token id ${bad}: ids are non-negative integers`);
      // @huggingface/tokenizers refuses an empty list; no ids are no text.
      if (!ids.length) return '';
      // Ids the tokenizer does not know (a model's padded vocabulary) decode to nothing, as in HF tokenizers.
      return guarded(`decoding ${ids.length} tokens`, ids.length, () => tok.decode(ids, { skip_special_tokens: options?.skipSpecialTokens ?? false }));
    },
    eosTokenId: idOf('eos_token'),
    bosTokenId: idOf('bos_token'),
    raw: tok,
  };
}

/** Load `<dir>/tokenizer.json` (+ tokenizer_config.json when present). */
export async function loadTokenizer(dir: string, limits: TokenizerLimits = {}): Promise<TextTokenizer> {
  const folder = ModelFolder.at(dir);
  const file = folder.pathOf('tokenizer.json');
  // Read through the folder's checks: a FIFO, a device or a link out of the folder is refused, not read.
  const json = (await folder.readJson('tokenizer.json', { maxBytes: MAX_TOKENIZER_BYTES, code: 'MODEL_NOT_FOUND' })) as object | undefined;
  if (json === undefined) throw new FopeifyError('MODEL_NOT_FOUND', `${dir} has no tokenizer.json (fopeify reads fast-tokenizer files only)`);
  let config: Record<string, unknown> = {};
  try {
    const c = await folder.readJson('tokenizer_config.json', { maxBytes: MAX_TOKENIZER_BYTES, code: 'BAD_CONFIG' });
    if (c && typeof c === 'object' && !Array.isArray(c)) config = c as Record<string, unknown>;
  } catch (err) {
    // Optional and read leniently, as before; but a file fopeify must not read is still refused.
    if ((err as FopeifyError).code === 'UNSAFE_PATH') throw err;
  }
  let tok: HfTokenizer;
  try {
    tok = new HfTokenizerClass(json, config);
  } catch (err) {
    throw new FopeifyError('BAD_CONFIG', `cannot load ${file}: ${(err as Error).message}`);
  }
  return textTokenizer(tok, config, file, limits);
}
