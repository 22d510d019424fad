/**
 * Malformed checkpoints for the fuzz harness, described as plain data. `fuzzCase(seed, index)` is pure:
 * the same pair always gives the same base checkpoint and the same mutations, on every machine, so one
 * failing case is reproduced from its seed and index alone (./fuzz-apply.ts writes it to disk).
 *
 * The mix is weighted towards inputs that should be refused (absurd config numbers, broken headers,
 * non-finite weights, hostile file-system entries), with a few clean and harmless cases that must succeed.
 */
import { SeededRandom } from '../random.js';
import { tensorShapes, tinyConfig, TINY_SHAPE, type TinyKind } from './tiny-checkpoint.js';

/** The checkpoint a case starts from (written by writeTinyCheckpoint, then converted to FoPE when `fope`). */
export interface FuzzBase {
  kind: TinyKind;
  fope: boolean;
  /** Several shards and an index instead of one model.safetensors. */
  sharded: boolean;
  dtype: 'F32' | 'BF16';
}

/**
 * What a case may end in, checked by the runner on top of "success or typed refusal":
 * - `any`: nothing more.
 * - `refuse-load`: loading the weights must be refused (inspect and convert read headers only).
 * - `refuse-all`: inspect, convert and load must all be refused (the input is invalid where all of them read it).
 * - `succeed`: inspect, convert, load + forward and tokenization must all succeed.
 */
export type Expectation = 'any' | 'refuse-load' | 'refuse-all' | 'succeed';

/** A tensor of the base: its Hugging Face name, or `@fope` for the first FoPE coefficient of a FoPE base. */
export type TensorRef = string;

export type WeightValue = 'NaN' | 'Inf' | '-Inf' | 'FLT_MAX' | '-FLT_MAX';

export type Mutation = { label: string; expect: Expectation } & (
  | { kind: 'clean' }
  /** Set a config.json value; `path` is dotted (`rope_scaling.factor`); every listed path is set. */
  | { kind: 'config.set'; paths: string[]; value: unknown }
  | { kind: 'config.delete'; path: string }
  | { kind: 'config.file'; content: 'not-json' | 'truncated' | 'empty' | 'array' | 'null' | 'number' | 'deep-nesting' | 'bom' | 'missing' }
  /** Add `delta` to the 8-byte header length of the shard holding `tensor`. */
  | { kind: 'safetensors.header-length'; tensor: TensorRef; delta: number }
  /** Cut the shard holding `tensor` inside its length field, header or data (`fraction` of that part). */
  | { kind: 'safetensors.truncate'; tensor: TensorRef; part: 'length-field' | 'header' | 'data'; fraction: number }
  | { kind: 'safetensors.header-body'; tensor: TensorRef; body: 'garbage' | 'deep-nesting' | 'array' | 'null' | 'invalid-utf8' | 'empty' | 'metadata-not-string' }
  | { kind: 'safetensors.entry'; tensor: TensorRef; change: EntryChange; other: TensorRef }
  | { kind: 'safetensors.append'; tensor: TensorRef; bytes: number }
  | { kind: 'weights.value'; tensor: TensorRef; element: number; value: WeightValue }
  | { kind: 'index'; change: IndexChange; tensor: TensorRef }
  | { kind: 'tokenizer'; change: TokenizerChange }
  | { kind: 'fs'; change: FsChange; target: string }
);

export type EntryChange =
  | 'overlap'
  | 'out-of-range'
  | 'reversed'
  | 'negative'
  | 'fractional'
  | 'huge'
  | 'dtype-F64'
  | 'dtype-I32'
  | 'dtype-unknown'
  | 'dtype-number'
  | 'shape-swap'
  | 'shape-extra-dim'
  | 'shape-negative'
  | 'shape-huge'
  | 'shape-string'
  | 'remove'
  | 'rename'
  | 'alias';
export type IndexChange =
  | 'not-json'
  | 'no-weight-map'
  | 'weight-map-array'
  | 'traversal'
  | 'absolute'
  | 'missing-shard'
  | 'wrong-shard'
  | 'non-string'
  | 'drop-tensor'
  | 'extra-tensor'
  | 'empty-map'
  | 'deep-nesting';
export type TokenizerChange =
  | 'not-json'
  | 'empty'
  | 'truncated'
  | 'missing'
  | 'no-model'
  | 'model-unknown-type'
  | 'vocab-not-object'
  | 'catastrophic-regex'
  | 'added-token-huge-id'
  | 'config-not-json'
  | 'config-eos-number'
  | 'deep-nesting';
export type FsChange =
  | 'dangling-symlink'
  | 'symlink-loop'
  | 'directory'
  | 'fifo'
  | 'dev-urandom'
  | 'dev-zero'
  | 'outside-symlink'
  | 'empty-file'
  | 'coefficient-shard-name'
  /** Harmless: must not change the outcome. */
  | 'unrelated-file'
  | 'unrelated-directory'
  | 'inside-symlink';

export interface FuzzCase {
  seed: number;
  index: number;
  base: FuzzBase;
  mutations: Mutation[];
  expect: Expectation;
  /** One line: base and mutations. */
  label: string;
}

const KINDS: readonly TinyKind[] = ['llama', 'mistral', 'qwen2', 'qwen3', 'llama-yarn', 'llama3', 'llama-v5'];

/** Config numbers no loader should take at face value (the list first). */
const ABSURD_NUMBERS: readonly unknown[] = [
  0, -1, -64, 0.5, 1.5, 3, 2 ** 31, 2 ** 53, 1e30, 1e6, 1e308, -1e308, 1e-30, 'NaN', 'Infinity', '-Infinity', '64', '', null, true, [], {}, [64],
];

const NUMERIC_FIELDS = [
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'head_dim',
  'vocab_size',
  'max_position_embeddings',
  'rms_norm_eps',
  'partial_rotary_factor',
  'sliding_window',
  'bos_token_id',
  'eos_token_id',
  'tie_word_embeddings',
  'attention_bias',
] as const;

const REQUIRED_KEYS = [
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'vocab_size',
  'model_type',
  'architectures',
  'rope_theta',
  'max_position_embeddings',
  'rms_norm_eps',
  'rope_scaling',
];

const ENTRY_CHANGES: readonly EntryChange[] = [
  'overlap', 'out-of-range', 'reversed', 'negative', 'fractional', 'huge', 'dtype-F64', 'dtype-I32', 'dtype-unknown', 'dtype-number',
  'shape-swap', 'shape-extra-dim', 'shape-negative', 'shape-huge', 'shape-string', 'remove', 'rename', 'alias',
];
/** Entry changes that make a header invalid by the safetensors format itself (the reference library refuses them). */
const INVALID_ENTRY_CHANGES: ReadonlySet<EntryChange> = new Set(['overlap', 'out-of-range', 'reversed', 'negative', 'fractional', 'huge', 'alias']);
const INDEX_CHANGES: readonly IndexChange[] = [
  'not-json', 'no-weight-map', 'weight-map-array', 'traversal', 'absolute', 'missing-shard', 'wrong-shard', 'non-string', 'drop-tensor',
  'extra-tensor', 'empty-map', 'deep-nesting',
];
const TOKENIZER_CHANGES: readonly TokenizerChange[] = [
  'not-json', 'empty', 'truncated', 'missing', 'no-model', 'model-unknown-type', 'vocab-not-object', 'catastrophic-regex',
  'added-token-huge-id', 'config-not-json', 'config-eos-number', 'deep-nesting',
];
const HOSTILE_FS: readonly FsChange[] = [
  'dangling-symlink', 'symlink-loop', 'directory', 'fifo', 'dev-urandom', 'dev-zero', 'outside-symlink', 'empty-file', 'coefficient-shard-name',
];
const HARMLESS_FS: readonly FsChange[] = ['unrelated-file', 'unrelated-directory', 'inside-symlink'];

/** `@shard` in an fs target means "the shard holding the first tensor", resolved when the case is written. */
const FS_TARGETS: Record<FsChange, readonly string[]> = {
  'dangling-symlink': ['config.json', 'tokenizer.json', 'generation_config.json', '@shard', 'notes.txt', 'special_tokens_map.json'],
  'symlink-loop': ['config.json', 'tokenizer.json', '@shard', 'notes.txt', 'tokenizer_config.json'],
  directory: ['config.json', 'tokenizer.json', '@shard', 'model.safetensors.index.json', 'tokenizer_config.json', 'generation_config.json'],
  fifo: ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', '@shard', 'model.safetensors.index.json', 'special_tokens_map.json'],
  'dev-urandom': ['config.json', 'tokenizer.json', '@shard', 'generation_config.json', 'extra.safetensors', 'tokenizer_config.json'],
  'dev-zero': ['config.json', 'tokenizer.json', '@shard', 'extra.safetensors'],
  'outside-symlink': ['tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja', 'generation_config.json', 'notes.txt', 'extra.safetensors', 'merges.txt'],
  'empty-file': ['config.json', 'tokenizer.json', '@shard', 'model.safetensors.index.json', 'generation_config.json'],
  'coefficient-shard-name': ['@shard'],
  'unrelated-file': ['notes.txt', 'training_args.json', 'optimizer.pt.txt'],
  'unrelated-directory': ['checkpoints', '.cache', 'logs'],
  'inside-symlink': ['@shard', 'generation_config.json', 'tokenizer.json'],
};

function pick<T>(rng: SeededRandom, items: readonly T[]): T {
  return items[rng.int(items.length)]!;
}

/** The base's config as written (and as convert rewrites it: FoPE keeps rope_theta in both places). */
export function baseConfig(base: FuzzBase): Record<string, unknown> {
  return tinyConfig(base.kind, TINY_SHAPE, base.dtype);
}

/** Names of the base's original tensors, in writing order. */
export function baseTensorNames(base: FuzzBase): string[] {
  return tensorShapes(baseConfig(base)).map((t) => t.name);
}

/** Where the base keeps its rope parameters: every path a rope setting must be changed at to take effect. */
function ropeContainers(base: FuzzBase): string[] {
  if (base.kind === 'llama-v5') return ['rope_parameters'];
  return base.fope ? ['rope_scaling', 'rope_parameters'] : ['rope_scaling'];
}
function ropeThetaPaths(base: FuzzBase): string[] {
  if (base.kind === 'llama-v5') return ['rope_parameters.rope_theta'];
  return base.fope ? ['rope_theta', 'rope_parameters.rope_theta'] : ['rope_theta'];
}

function show(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) && Math.abs(v) >= 2 ** 20 ? `2^${Math.log2(Math.abs(v)).toFixed(0)}${v < 0 ? '(neg)' : ''}` : String(v);
  return JSON.stringify(v) ?? String(v);
}

function tensorRef(rng: SeededRandom, base: FuzzBase): TensorRef {
  if (base.fope && rng.next() < 0.15) return '@fope';
  return pick(rng, baseTensorNames(base));
}

function configMutation(rng: SeededRandom, base: FuzzBase): Mutation {
  const r = rng.next();
  if (r < 0.45) {
    const field = pick(rng, NUMERIC_FIELDS);
    const value = pick(rng, ABSURD_NUMBERS);
    // Values the issue found silently accepted: they must be refused wherever config.json is read.
    const silentlyWrong =
      (field === 'num_hidden_layers' && typeof value === 'number' && value <= 0) ||
      (field === 'rms_norm_eps' && typeof value === 'number' && value < 0) ||
      (field === 'num_key_value_heads' && typeof value === 'number' && value < 0);
    return { kind: 'config.set', paths: [field], value, label: `config ${field}=${show(value)}`, expect: silentlyWrong ? 'refuse-all' : 'any' };
  }
  if (r < 0.55) {
    const value = pick(rng, [0, -1, -10000, 'NaN', '1e4', null, 1e308, 1e-300, [], 'Infinity']);
    const wrong = typeof value === 'number' && value <= 0;
    return { kind: 'config.set', paths: ropeThetaPaths(base), value, label: `config rope_theta=${show(value)}`, expect: wrong ? 'refuse-all' : 'any' };
  }
  if (r < 0.67) {
    // rope_scaling / rope_parameters replaced by a string or a list: a YaRN model must not silently run as plain RoPE.
    const value = pick(rng, ['yarn', ['yarn', 4], 'linear', [], 42, true]);
    const paths = ropeContainers(base);
    return { kind: 'config.set', paths, value, label: `config ${paths[0]}=${show(value)}`, expect: 'refuse-all' };
  }
  if (r < 0.8) {
    const key = pick(rng, ['factor', 'original_max_position_embeddings', 'rope_type', 'beta_fast', 'attention_factor', 'fope_init_factor', 'num_inv_freq', 'low_freq_factor']);
    const value = pick(rng, [0, -1, 1e308, 'NaN', 0.5, 2 ** 31, 'unknown-type', null, {}, 1e-30]);
    const container = ropeContainers(base);
    const paths = container.map((c) => `${c}.${key}`);
    // A rope object is needed for the key to land somewhere: plain bases get one of the right kind.
    return { kind: 'config.set', paths, value, label: `config ${container[0]}.${key}=${show(value)}`, expect: 'any' };
  }
  if (r < 0.9) {
    const key = pick(rng, REQUIRED_KEYS);
    return { kind: 'config.delete', path: key, label: `config delete ${key}`, expect: 'any' };
  }
  const content = pick(rng, ['not-json', 'truncated', 'empty', 'array', 'null', 'number', 'deep-nesting', 'bom', 'missing'] as const);
  return { kind: 'config.file', content, label: `config.json ${content}`, expect: content === 'bom' ? 'any' : 'refuse-all' };
}

function safetensorsMutation(rng: SeededRandom, base: FuzzBase): Mutation {
  const tensor = tensorRef(rng, base);
  const r = rng.next();
  if (r < 0.3) {
    // ±1..8: a length short by 1–7 bytes lands inside the padding and shifts every tensor (must be refused).
    const delta = (1 + rng.int(8)) * (rng.next() < 0.6 ? -1 : 1);
    return { kind: 'safetensors.header-length', tensor, delta, label: `safetensors header length ${delta > 0 ? '+' : ''}${delta} (${tensor})`, expect: 'refuse-all' };
  }
  if (r < 0.45) {
    const part = pick(rng, ['length-field', 'header', 'data'] as const);
    const fraction = rng.next();
    return { kind: 'safetensors.truncate', tensor, part, fraction, label: `safetensors truncated in ${part} (${tensor})`, expect: 'refuse-all' };
  }
  if (r < 0.6) {
    const body = pick(rng, ['garbage', 'deep-nesting', 'array', 'null', 'invalid-utf8', 'empty', 'metadata-not-string'] as const);
    // Invalid UTF-8 decodes to replacement characters, which may still be JSON: only a strict reader refuses it.
    const expect: Expectation = body === 'invalid-utf8' ? 'any' : 'refuse-all';
    return { kind: 'safetensors.header-body', tensor, body, label: `safetensors header ${body} (${tensor})`, expect };
  }
  if (r < 0.93) {
    const change = pick(rng, ENTRY_CHANGES);
    const other = tensorRef(rng, base);
    return {
      kind: 'safetensors.entry',
      tensor,
      change,
      other,
      label: `safetensors entry ${change} (${tensor})`,
      expect: INVALID_ENTRY_CHANGES.has(change) ? 'refuse-all' : 'any',
    };
  }
  const bytes = pick(rng, [1, 7, 8, 4096]);
  return { kind: 'safetensors.append', tensor, bytes, label: `safetensors ${bytes} trailing bytes (${tensor})`, expect: 'any' };
}

function weightMutation(rng: SeededRandom, base: FuzzBase): Mutation {
  const tensor = tensorRef(rng, base);
  const value = pick(rng, ['NaN', 'NaN', 'Inf', '-Inf', 'FLT_MAX', '-FLT_MAX'] as const);
  const element = rng.next();
  // Non-finite weights must be refused by load; FLT_MAX is finite, and only its logits are judged.
  const expect: Expectation = value === 'FLT_MAX' || value === '-FLT_MAX' ? 'any' : 'refuse-load';
  return { kind: 'weights.value', tensor, element, value, label: `weight ${value} in ${tensor}`, expect };
}

function indexMutation(rng: SeededRandom, base: FuzzBase): Mutation {
  const change = pick(rng, INDEX_CHANGES);
  const tensor = tensorRef(rng, base);
  return { kind: 'index', change, tensor, label: `index ${change}${base.sharded ? '' : ' (added)'}`, expect: 'any' };
}

function tokenizerMutation(rng: SeededRandom): Mutation {
  const change = pick(rng, TOKENIZER_CHANGES);
  return { kind: 'tokenizer', change, label: `tokenizer ${change}`, expect: 'any' };
}

function fsMutation(rng: SeededRandom, base: FuzzBase, harmless: boolean): Mutation {
  let change = pick(rng, harmless ? HARMLESS_FS : HOSTILE_FS);
  if (change === 'coefficient-shard-name' && base.fope) change = 'symlink-loop';
  const target = pick(rng, FS_TARGETS[change]);
  // A hostile entry in place of config.json or a shard leaves every command without a model to read.
  const essential = (target === 'config.json' || target === '@shard') && change !== 'coefficient-shard-name' && change !== 'outside-symlink';
  const expect: Expectation = harmless ? 'succeed' : essential ? 'refuse-all' : 'any';
  return { kind: 'fs', change, target, label: `fs ${change} at ${target}`, expect };
}

/** Family weights (out of 100) of a case's first mutation. */
const FAMILY_WEIGHTS: readonly [string, number][] = [
  ['clean', 4],
  ['harmless', 3],
  ['config', 36],
  ['safetensors', 20],
  ['weights', 9],
  ['index', 7],
  ['tokenizer', 8],
  ['fs', 13],
];

function mutation(rng: SeededRandom, base: FuzzBase, family: string): Mutation {
  switch (family) {
    case 'config':
      return configMutation(rng, base);
    case 'safetensors':
      return safetensorsMutation(rng, base);
    case 'weights':
      return weightMutation(rng, base);
    case 'index':
      return indexMutation(rng, base);
    case 'tokenizer':
      return tokenizerMutation(rng);
    case 'fs':
      return fsMutation(rng, base, false);
    case 'harmless':
      return fsMutation(rng, base, true);
    default:
      return { kind: 'clean', label: 'clean', expect: 'succeed' };
  }
}

function weightedFamily(rng: SeededRandom, skipBenign: boolean): string {
  const table = skipBenign ? FAMILY_WEIGHTS.filter(([f]) => f !== 'clean' && f !== 'harmless') : FAMILY_WEIGHTS;
  const total = table.reduce((a, [, w]) => a + w, 0);
  let x = rng.next() * total;
  for (const [family, w] of table) {
    x -= w;
    if (x < 0) return family;
  }
  return table[table.length - 1]![0];
}

/** The strictest expectation of a list: any refusal wins over success; `succeed` only when all say so. */
export function combineExpectations(list: readonly Expectation[]): Expectation {
  if (list.includes('refuse-all')) return 'refuse-all';
  if (list.includes('refuse-load')) return 'refuse-load';
  if (list.length && list.every((e) => e === 'succeed')) return 'succeed';
  return 'any';
}

/** The kind of file a content mutation rewrites, for pairing rules. */
function fileGroup(m: Mutation): 'safetensors' | 'index' | 'tokenizer' | undefined {
  if (m.kind.startsWith('safetensors.') || m.kind === 'weights.value') return 'safetensors';
  if (m.kind === 'index' || m.kind === 'tokenizer') return m.kind;
  return undefined;
}

/** The top-level config.json keys a mutation edits ('*' for the whole file). */
function configRoots(m: Mutation): string[] {
  if (m.kind === 'config.set') return m.paths.map((p) => p.split('.')[0]!);
  if (m.kind === 'config.delete') return [m.path.split('.')[0]!];
  if (m.kind === 'config.file') return ['*'];
  return [];
}

/** Case `index` of the run seeded `seed`. Pure and deterministic. */
export function fuzzCase(seed: number, index: number): FuzzCase {
  const rng = new SeededRandom(seed, `fuzz-case:${index}`);
  const base: FuzzBase = {
    kind: pick(rng, KINDS),
    fope: rng.next() < 0.35,
    sharded: rng.next() < 0.35,
    dtype: rng.next() < 0.25 ? 'BF16' : 'F32',
  };
  const first = weightedFamily(rng, false);
  const mutations = [mutation(rng, base, first)];
  if (first !== 'clean' && first !== 'harmless' && rng.next() < 0.2) {
    const second = mutation(rng, base, weightedFamily(rng, true));
    // A second edit of the same config key (rope_scaling=true, then rope_scaling.factor=0 makes it an object
    // again) would undo the first and its expectation with it: such pairs stay single mutations.
    const a = configRoots(mutations[0]!);
    const b = configRoots(second);
    const sameConfigKey = (a.length > 0 && b.length > 0 && (a.includes('*') || b.includes('*'))) || b.some((k) => a.includes(k));
    // Likewise two edits of one file kind (a header made unparsable, then a tensor entry rewritten in it;
    // the index removed, then an entry dropped from it): the second cannot apply to what the first left.
    const overlap = sameConfigKey || (fileGroup(second) !== undefined && fileGroup(second) === fileGroup(mutations[0]!));
    if (!overlap) mutations.push(second);
  }
  const baseLabel = `${base.kind}${base.fope ? '+fope' : ''}${base.sharded ? ' sharded' : ''} ${base.dtype}`;
  return {
    seed,
    index,
    base,
    mutations,
    expect: combineExpectations(mutations.map((m) => m.expect)),
    label: `[${baseLabel}] ${mutations.map((m) => m.label).join(' + ')}`,
  };
}

/** A mutation's class for breakdowns: what was changed, without the exact value or tensor. */
export function mutationKey(m: Mutation): string {
  switch (m.kind) {
    case 'clean':
      return 'clean';
    case 'config.set':
      return `config ${m.paths[0]}`;
    case 'config.delete':
      return `config delete ${m.path}`;
    case 'config.file':
      return `config.json ${m.content}`;
    case 'safetensors.header-length':
      return `safetensors header length ${m.delta < 0 ? 'short' : 'long'}`;
    case 'safetensors.truncate':
      return `safetensors truncated in ${m.part}`;
    case 'safetensors.header-body':
      return `safetensors header ${m.body}`;
    case 'safetensors.entry':
      return `safetensors entry ${m.change}`;
    case 'safetensors.append':
      return 'safetensors trailing bytes';
    case 'weights.value':
      return `weight ${m.value}`;
    case 'index':
      return `index ${m.change}`;
    case 'tokenizer':
      return `tokenizer ${m.change}`;
    case 'fs':
      return `fs ${m.change} at ${m.target}`;
  }
}
