/**
 * Writes a fuzz case (./fuzz-cases.ts) to disk: copy its base checkpoint, then apply each mutation.
 * Deterministic: the bytes depend only on the case. A mutation that finds its target already broken by an
 * earlier one of the same case leaves the file as it is.
 *
 * Layout of a case folder: `model/` (the mutated checkpoint), `outside/secret.json` (a file outside the
 * model that symlinks point to, holding a marker that must never show up in an output), `out` (where
 * convert writes; absent until then).
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { convertModel } from '../convert/convert.js';
import { dtypeSize, isFloatDtype } from '../io/dtype.js';
import { SeededRandom } from '../random.js';
import { BYTE_VOCAB_SIZE } from './byte-tokenizer.js';
import type { FuzzBase, FuzzCase, Mutation, TensorRef, WeightValue } from './fuzz-cases.js';
import { writeTinyCheckpoint } from './tiny-checkpoint.js';

/** The marker in `outside/secret.json`: finding it in a convert output means a file outside the model leaked. */
export const SECRET_MARKER = 'FOPEIFY-FUZZ-SECRET-7f3a9c';
const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';
const COEFFICIENT_SHARD = 'fope_coefficients.safetensors';

export interface CasePaths {
  root: string;
  model: string;
  out: string;
  outside: string;
}

export function casePaths(root: string): CasePaths {
  return { root, model: path.join(root, 'model'), out: path.join(root, 'out'), outside: path.join(root, 'outside') };
}

function baseKey(base: FuzzBase): string {
  return `${base.kind}-${base.fope ? 'fope' : 'rope'}-${base.sharded ? 'sharded' : 'single'}-${base.dtype}`;
}

/**
 * The folder of a base checkpoint under `basesDir`, generated on first use. Several processes may share
 * `basesDir`: each writes into its own temporary folder and renames it into place; a lost race keeps the
 * winner's (identical) copy.
 */
export async function ensureBase(basesDir: string, base: FuzzBase): Promise<string> {
  const dir = path.join(basesDir, baseKey(base));
  try {
    await fs.access(path.join(dir, 'config.json'));
    return dir;
  } catch {
    // not generated yet
  }
  const tmp = path.join(basesDir, `.tmp-${baseKey(base)}-${process.pid}-${Date.now()}`);
  const options = { kind: base.kind, dtype: base.dtype, seed: 7, maxShardBytes: base.sharded ? 160_000 : undefined };
  if (base.fope) {
    await writeTinyCheckpoint(`${tmp}-rope`, options);
    await convertModel({ model: `${tmp}-rope`, outDir: tmp, offline: true });
    await fs.rm(`${tmp}-rope`, { recursive: true, force: true });
  } else {
    await writeTinyCheckpoint(tmp, options);
  }
  try {
    await fs.rename(tmp, dir);
  } catch {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** Which shard holds each tensor of a pristine base. */
interface BaseLayout {
  shardOf: Map<string, string>;
  shards: string[];
  /** First FoPE coefficient tensor, for `@fope` references. */
  fopeTensor: string | null;
}

async function baseLayout(dir: string): Promise<BaseLayout> {
  const shardOf = new Map<string, string>();
  let shards: string[];
  try {
    const index = JSON.parse(await fs.readFile(path.join(dir, INDEX_FILE), 'utf8')) as { weight_map: Record<string, string> };
    for (const [name, file] of Object.entries(index.weight_map)) shardOf.set(name, file);
    shards = [...new Set(shardOf.values())].sort();
  } catch {
    shards = [SINGLE_FILE];
    for (const name of Object.keys((await readSafetensors(path.join(dir, SINGLE_FILE)))!.header)) {
      if (name !== '__metadata__') shardOf.set(name, SINGLE_FILE);
    }
  }
  const fopeTensor = [...shardOf].find(([, f]) => f === COEFFICIENT_SHARD)?.[0] ?? null;
  return { shardOf, shards, fopeTensor };
}

interface RawSafetensors {
  header: Record<string, unknown>;
  data: Buffer;
}

/** Header and data of a safetensors file, or null when an earlier mutation already broke it. */
async function readSafetensors(file: string): Promise<RawSafetensors | null> {
  try {
    const bytes = await fs.readFile(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
    if (!header || typeof header !== 'object' || Array.isArray(header)) return null;
    return { header, data: bytes.subarray(8 + n) };
  } catch {
    return null;
  }
}

function encodeSafetensors(headerJson: string | Buffer, data: Buffer): Buffer {
  let body = typeof headerJson === 'string' ? Buffer.from(headerJson, 'utf8') : headerJson;
  if (typeof headerJson === 'string') body = Buffer.concat([body, Buffer.alloc((8 - (body.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([len, body, data]);
}

async function rewriteHeader(file: string, change: (header: Record<string, unknown>, data: Buffer) => void): Promise<void> {
  const st = await readSafetensors(file);
  if (!st) return;
  change(st.header, st.data);
  await fs.writeFile(file, encodeSafetensors(JSON.stringify(st.header), st.data));
}

async function readJson(file: string): Promise<Record<string, unknown> | null> {
  try {
    const v = JSON.parse(await fs.readFile(file, 'utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

async function writeJson(file: string, value: unknown): Promise<void> {
  await fs.writeFile(file, JSON.stringify(value, null, 2) + '\n');
}

function deepNesting(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    const next = cur[k];
    if (!next || typeof next !== 'object' || Array.isArray(next)) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

function deletePath(obj: Record<string, unknown>, dotted: string): void {
  const keys = dotted.split('.');
  let cur: unknown = obj;
  for (const k of keys.slice(0, -1)) cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[k] : undefined;
  if (cur && typeof cur === 'object') delete (cur as Record<string, unknown>)[keys[keys.length - 1]!];
}

/** Bytes of one element holding `value` in `dtype`. */
function encodeValue(value: WeightValue, dtype: string): Buffer | null {
  const f = { NaN: NaN, Inf: Infinity, '-Inf': -Infinity, FLT_MAX: 3.4028234663852886e38, '-FLT_MAX': -3.4028234663852886e38 }[value];
  if (dtype === 'F32') {
    const b = Buffer.alloc(4);
    b.writeFloatLE(f);
    return b;
  }
  const bits: Record<string, Record<WeightValue, number>> = {
    BF16: { NaN: 0x7fc0, Inf: 0x7f80, '-Inf': 0xff80, FLT_MAX: 0x7f7f, '-FLT_MAX': 0xff7f },
    F16: { NaN: 0x7e00, Inf: 0x7c00, '-Inf': 0xfc00, FLT_MAX: 0x7bff, '-FLT_MAX': 0xfbff },
  };
  if (!bits[dtype]) return null;
  const b = Buffer.alloc(2);
  b.writeUInt16LE(bits[dtype][value]);
  return b;
}

/** A symlink at `at` pointing to `target` (relative targets are relative to the link's folder). */
async function replaceWithSymlink(at: string, target: string): Promise<void> {
  await fs.rm(at, { recursive: true, force: true });
  await fs.symlink(target, at);
}

class CaseWriter {
  constructor(
    private readonly c: FuzzCase,
    private readonly paths: CasePaths,
    private readonly layout: BaseLayout,
  ) {}

  private tensorName(ref: TensorRef): string {
    return ref === '@fope' ? (this.layout.fopeTensor ?? 'model.norm.weight') : ref;
  }

  private shardFile(ref: TensorRef): string {
    return path.join(this.paths.model, this.layout.shardOf.get(this.tensorName(ref)) ?? this.layout.shards[0]!);
  }

  private file(name: string): string {
    const resolved = name === '@shard' ? (this.layout.shardOf.get('model.embed_tokens.weight') ?? SINGLE_FILE) : name;
    return path.join(this.paths.model, resolved);
  }

  async apply(m: Mutation, position: number): Promise<void> {
    const rng = new SeededRandom(this.c.seed, `fuzz-apply:${this.c.index}:${position}`);
    switch (m.kind) {
      case 'clean':
        return;
      case 'config.set':
      case 'config.delete': {
        const file = path.join(this.paths.model, 'config.json');
        const cfg = await readJson(file);
        if (!cfg) return;
        if (m.kind === 'config.set') for (const p of m.paths) setPath(cfg, p, m.value);
        else deletePath(cfg, m.path);
        return writeJson(file, cfg);
      }
      case 'config.file':
        return this.replaceConfig(m.content);
      case 'safetensors.header-length': {
        const file = this.shardFile(m.tensor);
        const bytes = await fs.readFile(file);
        if (bytes.length < 8) return;
        const n = bytes.readBigUInt64LE(0) + BigInt(m.delta);
        bytes.writeBigUInt64LE(n < 0n ? 0n : n, 0);
        return fs.writeFile(file, bytes);
      }
      case 'safetensors.truncate': {
        const file = this.shardFile(m.tensor);
        const bytes = await fs.readFile(file);
        if (bytes.length < 8) return;
        const headerLen = Number(bytes.readBigUInt64LE(0));
        const dataLen = Math.max(0, bytes.length - 8 - headerLen);
        const at =
          m.part === 'length-field'
            ? Math.floor(m.fraction * 8)
            : m.part === 'header'
              ? 8 + Math.floor(m.fraction * headerLen)
              : 8 + headerLen + Math.floor(m.fraction * dataLen);
        return fs.truncate(file, Math.min(at, bytes.length - 1));
      }
      case 'safetensors.header-body':
        return this.replaceHeaderBody(this.shardFile(m.tensor), m.body, rng);
      case 'safetensors.entry':
        return this.changeEntry(m.tensor, m.change, m.other);
      case 'safetensors.append':
        return fs.appendFile(this.shardFile(m.tensor), Buffer.alloc(m.bytes, 0x41));
      case 'weights.value': {
        const name = this.tensorName(m.tensor);
        const file = this.shardFile(m.tensor);
        const st = await readSafetensors(file);
        const entry = st?.header[name] as { dtype: string; data_offsets: [number, number] } | undefined;
        if (!st || !entry) return;
        const size = isFloatDtype(entry.dtype) ? dtypeSize(entry.dtype) : undefined;
        const bytes = encodeValue(m.value, entry.dtype);
        if (!size || !bytes) return;
        const count = (entry.data_offsets[1] - entry.data_offsets[0]) / size;
        const at = entry.data_offsets[0] + Math.floor(m.element * count) * size;
        bytes.copy(st.data, at);
        return fs.writeFile(file, encodeSafetensors(JSON.stringify(st.header), st.data));
      }
      case 'index':
        return this.changeIndex(m.change, m.tensor);
      case 'tokenizer':
        return this.changeTokenizer(m.change);
      case 'fs':
        return this.changeFs(m.change, m.target);
    }
  }

  private async replaceConfig(content: Extract<Mutation, { kind: 'config.file' }>['content']): Promise<void> {
    const file = path.join(this.paths.model, 'config.json');
    if (content === 'missing') return fs.rm(file, { force: true });
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch {
      return;
    }
    const replacement: Record<typeof content, string> = {
      'not-json': '{"hidden_size": 64,, "model_type": llama}',
      truncated: text.slice(0, Math.floor(text.length / 2)),
      empty: '',
      array: '[]',
      null: 'null',
      number: '42',
      'deep-nesting': deepNesting(200_000),
      bom: '\uFEFF' + text,
    };
    return fs.writeFile(file, replacement[content]);
  }

  private async replaceHeaderBody(file: string, body: Extract<Mutation, { kind: 'safetensors.header-body' }>['body'], rng: SeededRandom): Promise<void> {
    const st = await readSafetensors(file);
    if (!st) return;
    const original = JSON.stringify(st.header);
    let header: string | Buffer;
    switch (body) {
      case 'garbage':
        header = Buffer.from(Array.from({ length: original.length }, () => rng.int(256)));
        break;
      case 'deep-nesting':
        header = `{"a":${deepNesting(400_000)}}`;
        break;
      case 'array':
        header = '[]';
        break;
      case 'null':
        header = 'null';
        break;
      case 'invalid-utf8': {
        // Bytes 0xff 0xfe inside the first tensor name.
        const bytes = Buffer.from(original, 'utf8');
        const quote = bytes.indexOf('"model');
        const cut = quote >= 0 ? quote + 2 : 1;
        header = Buffer.concat([bytes.subarray(0, cut), Buffer.from([0xff, 0xfe]), bytes.subarray(cut)]);
        header = Buffer.concat([header, Buffer.alloc((8 - (header.length % 8)) % 8, 0x20)]);
        break;
      }
      case 'empty':
        header = Buffer.alloc(0);
        break;
      case 'metadata-not-string':
        header = JSON.stringify({ ...st.header, __metadata__: { format: 1, nested: { a: 'b' } } });
        break;
    }
    return fs.writeFile(file, encodeSafetensors(header, st.data));
  }

  private async changeEntry(ref: TensorRef, change: Extract<Mutation, { kind: 'safetensors.entry' }>['change'], otherRef: TensorRef): Promise<void> {
    const name = this.tensorName(ref);
    return rewriteHeader(this.shardFile(ref), (header, data) => {
      const entry = header[name] as { dtype: unknown; shape: unknown[]; data_offsets: unknown[] } | undefined;
      if (!entry || typeof entry !== 'object') return;
      const [begin, end] = entry.data_offsets as [number, number];
      const size = end - begin;
      const names = Object.keys(header).filter((k) => k !== '__metadata__' && k !== name);
      const otherName = header[this.tensorName(otherRef)] && this.tensorName(otherRef) !== name ? this.tensorName(otherRef) : names[0];
      const shape = entry.shape as number[];
      switch (change) {
        case 'overlap': {
          const other = otherName ? (header[otherName] as { data_offsets: [number, number] }) : undefined;
          const ob = other ? other.data_offsets[0] : begin + 1;
          entry.data_offsets = [ob, ob + size];
          break;
        }
        case 'out-of-range':
          entry.data_offsets = [data.length, data.length + size];
          break;
        case 'reversed':
          entry.data_offsets = [end, begin];
          break;
        case 'negative':
          entry.data_offsets = [-8, size - 8];
          break;
        case 'fractional':
          entry.data_offsets = [begin + 0.5, end + 0.5];
          break;
        case 'huge':
          entry.data_offsets = [2 ** 53, 2 ** 53 + size];
          break;
        case 'dtype-F64':
          entry.dtype = 'F64';
          break;
        case 'dtype-I32':
          entry.dtype = entry.dtype === 'F32' ? 'I32' : 'I16';
          break;
        case 'dtype-unknown':
          entry.dtype = 'Q4_K';
          break;
        case 'dtype-number':
          entry.dtype = 7;
          break;
        case 'shape-swap':
          entry.shape = shape.length > 1 ? [...shape].reverse() : [1, ...shape];
          break;
        case 'shape-extra-dim':
          entry.shape = [...shape, 1];
          break;
        case 'shape-negative':
          entry.shape = [-(shape[0] ?? 1), ...shape.slice(1)];
          break;
        case 'shape-huge':
          entry.shape = [2 ** 31, 2 ** 31];
          break;
        case 'shape-string':
          entry.shape = [String(shape[0]), ...shape.slice(1)];
          break;
        case 'remove':
          delete header[name];
          break;
        case 'rename':
          delete header[name];
          header[`${name}.renamed`] = entry;
          break;
        case 'alias':
          header[`${name}.alias`] = { ...entry };
          break;
      }
    });
  }

  private async changeIndex(change: Extract<Mutation, { kind: 'index' }>['change'], ref: TensorRef): Promise<void> {
    const file = path.join(this.paths.model, INDEX_FILE);
    let index = await readJson(file);
    if (!index) {
      // A single-file base gets an index first, as if it had been saved sharded.
      index = { metadata: { total_size: 0 }, weight_map: Object.fromEntries(this.layout.shardOf) };
    }
    const map = index.weight_map as Record<string, unknown>;
    const name = this.tensorName(ref);
    const shard = this.layout.shardOf.get(name) ?? this.layout.shards[0]!;
    switch (change) {
      case 'not-json':
        return fs.writeFile(file, '{"weight_map": {"model.norm.weight": ');
      case 'no-weight-map':
        delete index.weight_map;
        break;
      case 'weight-map-array':
        index.weight_map = Object.values(map);
        break;
      case 'traversal':
        map[name] = '../outside/secret.json';
        break;
      case 'absolute':
        map[name] = '/dev/zero';
        break;
      case 'missing-shard':
        await fs.rm(path.join(this.paths.model, shard), { force: true });
        break;
      case 'wrong-shard':
        map[name] = this.layout.shards.find((s) => s !== shard) ?? 'model-00099-of-00099.safetensors';
        break;
      case 'non-string':
        map[name] = 42;
        break;
      case 'drop-tensor':
        delete map[name];
        break;
      case 'extra-tensor':
        map['model.layers.99.ghost.weight'] = shard;
        break;
      case 'empty-map':
        index.weight_map = {};
        break;
      case 'deep-nesting':
        return fs.writeFile(file, `{"weight_map":${deepNesting(200_000)}}`);
    }
    return writeJson(file, index);
  }

  private async changeTokenizer(change: Extract<Mutation, { kind: 'tokenizer' }>['change']): Promise<void> {
    const file = path.join(this.paths.model, 'tokenizer.json');
    const tok = await readJson(file);
    if (change === 'config-not-json') return fs.writeFile(path.join(this.paths.model, 'tokenizer_config.json'), '{"eos_token": ');
    if (change === 'config-eos-number') {
      const cfg = (await readJson(path.join(this.paths.model, 'tokenizer_config.json'))) ?? {};
      return writeJson(path.join(this.paths.model, 'tokenizer_config.json'), { ...cfg, eos_token: 12345, bos_token: { content: 7 } });
    }
    if (change === 'missing') return fs.rm(file, { force: true });
    if (change === 'empty') return fs.writeFile(file, '');
    if (change === 'deep-nesting') return fs.writeFile(file, deepNesting(200_000));
    if (change === 'not-json') return fs.writeFile(file, '{"model": {"type": "BPE", ');
    if (!tok) return;
    if (change === 'truncated') return fs.writeFile(file, JSON.stringify(tok).slice(0, 5000));
    const model = tok.model as Record<string, unknown>;
    switch (change) {
      case 'no-model':
        delete tok.model;
        break;
      case 'model-unknown-type':
        model.type = 'Frobnicate';
        break;
      case 'vocab-not-object':
        model.vocab = 42;
        break;
      case 'catastrophic-regex':
        // Exponential backtracking on a run of "a" not followed by the end of input.
        tok.pre_tokenizer = {
          type: 'Sequence',
          pretokenizers: [
            { type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false },
            tok.pre_tokenizer,
          ],
        };
        break;
      case 'added-token-huge-id':
        (tok.added_tokens as { id: number }[])[0]!.id = 2 ** 31 + BYTE_VOCAB_SIZE;
        break;
    }
    return writeJson(file, tok);
  }

  private async changeFs(change: Extract<Mutation, { kind: 'fs' }>['change'], target: string): Promise<void> {
    const at = this.file(target);
    const name = path.basename(at);
    switch (change) {
      case 'dangling-symlink':
        return replaceWithSymlink(at, `missing-${name}`);
      case 'symlink-loop':
        await replaceWithSymlink(at, `loop-partner-${name}`);
        return replaceWithSymlink(path.join(this.paths.model, `loop-partner-${name}`), name);
      case 'directory':
        await fs.rm(at, { recursive: true, force: true });
        await fs.mkdir(at);
        return fs.writeFile(path.join(at, 'inner.txt'), 'a folder where a file should be\n');
      case 'fifo':
        await fs.rm(at, { recursive: true, force: true });
        execFileSync('mkfifo', [at]);
        return;
      case 'dev-urandom':
        return replaceWithSymlink(at, '/dev/urandom');
      case 'dev-zero':
        return replaceWithSymlink(at, '/dev/zero');
      case 'outside-symlink':
        return replaceWithSymlink(at, path.relative(this.paths.model, path.join(this.paths.outside, 'secret.json')));
      case 'empty-file':
        await fs.rm(at, { recursive: true, force: true });
        return fs.writeFile(at, '');
      case 'coefficient-shard-name': {
        // A shard named like convert's new coefficient shard (issue 18: convert wrote through the hard link).
        const old = path.basename(at);
        await fs.rename(at, path.join(this.paths.model, COEFFICIENT_SHARD));
        const index = await readJson(path.join(this.paths.model, INDEX_FILE));
        if (index && index.weight_map && typeof index.weight_map === 'object') {
          const map = index.weight_map as Record<string, string>;
          for (const k of Object.keys(map)) if (map[k] === old) map[k] = COEFFICIENT_SHARD;
          await writeJson(path.join(this.paths.model, INDEX_FILE), index);
        }
        return;
      }
      case 'unrelated-file':
        return fs.writeFile(at, 'notes that are not part of the model\n');
      case 'unrelated-directory':
        await fs.mkdir(at, { recursive: true });
        return fs.writeFile(path.join(at, 'state.txt'), 'unrelated\n');
      case 'inside-symlink': {
        // The file moves into a subfolder and a relative symlink takes its place (links that stay inside are fine).
        await fs.mkdir(path.join(this.paths.model, 'blobs'), { recursive: true });
        await fs.rename(at, path.join(this.paths.model, 'blobs', name));
        return fs.symlink(path.join('blobs', name), at);
      }
    }
  }
}

/** Write case `c` into the empty folder `root` (see casePaths), starting from its base under `basesDir`. */
export async function writeFuzzCase(c: FuzzCase, root: string, basesDir: string): Promise<CasePaths> {
  const paths = casePaths(root);
  const baseDir = await ensureBase(basesDir, c.base);
  await fs.mkdir(root, { recursive: true });
  // A full copy (never links): mutations edit files in place.
  await fs.cp(baseDir, paths.model, { recursive: true });
  await fs.mkdir(paths.outside);
  await writeJson(path.join(paths.outside, 'secret.json'), { api_token: SECRET_MARKER });
  const writer = new CaseWriter(c, paths, await baseLayout(baseDir));
  // File-system mutations last: they may rename or replace a file that a content mutation (a NaN weight, a
  // header change) addresses by its original name.
  const ordered = [...c.mutations.entries()].sort(([, a], [, b]) => Number(a.kind === 'fs') - Number(b.kind === 'fs'));
  for (const [i, m] of ordered) await writer.apply(m, i);
  return paths;
}
