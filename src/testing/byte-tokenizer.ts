/**
 * A byte-level BPE tokenizer.json with no merges: every byte is one token (ids 0–255, GPT-2's
 * byte-to-unicode alphabet), then special tokens. Small, lossless for any text, and loadable by
 * @huggingface/tokenizers and Python's `tokenizers` alike.
 */

/** GPT-2's reversible byte → printable unicode map, which ByteLevel pre-tokenizers use. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const out = new Array<string>(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i]!)));
  return out;
}

export const BYTE_TOKENIZER_SPECIALS = ['<|endoftext|>', '<|pad|>', '<|im_start|>', '<|im_end|>'] as const;
export const BYTE_VOCAB_SIZE = 256 + BYTE_TOKENIZER_SPECIALS.length;
export const BYTE_EOS_ID = 256;

export function byteTokenizerJson(): Record<string, unknown> {
  const map = bytesToUnicode();
  const vocab: Record<string, number> = {};
  map.forEach((ch, b) => (vocab[ch] = b));
  BYTE_TOKENIZER_SPECIALS.forEach((s, i) => (vocab[s] = 256 + i));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: BYTE_TOKENIZER_SPECIALS.map((content, i) => ({
      id: 256 + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

export function byteTokenizerConfig(): Record<string, unknown> {
  return {
    add_bos_token: false,
    add_eos_token: false,
    bos_token: '<|endoftext|>',
    eos_token: '<|endoftext|>',
    pad_token: '<|pad|>',
    unk_token: null,
    model_max_length: 1000000,
    clean_up_tokenization_spaces: false,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
}
