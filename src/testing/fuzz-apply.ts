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
import { SeededRandom } from '../random.js';
import { BYTE_VOCAB_SIZE } from './byte-tokenizer.js';
import type { FuzzBase, FuzzCase, Mutation, TensorRef } from './fuzz-cases.js';
import { deepNesting, deletePath, readJson, replaceWithSymlink, setPath, writeJson } from './fuzz-files.js';
import { changeEntry, readSafetensors, replaceHeaderBody, setWeightValue, shiftHeaderLength, truncateShard } from './fuzz-safetensors.js';
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
      case 'safetensors.header-length':
        return shiftHeaderLength(this.shardFile(m.tensor), m.delta);
      case 'safetensors.truncate':
        return truncateShard(this.shardFile(m.tensor), m.part, m.fraction);
      case 'safetensors.header-body':
        return replaceHeaderBody(this.shardFile(m.tensor), m.body, rng);
      case 'safetensors.entry':
        return changeEntry(this.shardFile(m.tensor), this.tensorName(m.tensor), m.change, this.tensorName(m.other));
      case 'safetensors.append':
        return fs.appendFile(this.shardFile(m.tensor), Buffer.alloc(m.bytes, 0x41));
      case 'weights.value':
        return setWeightValue(this.shardFile(m.tensor), this.tensorName(m.tensor), m.value, m.element);
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
