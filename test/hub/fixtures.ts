/** Tiny model folders for Hub tests: a real (valid) safetensors file, a config, tokenizer files. */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A valid safetensors file: 8-byte LE header length, JSON header padded with spaces to 8 bytes, data. */
export function safetensors(tensors: Record<string, number[]>, metadata: Record<string, string> = { format: 'pt' }): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const datas: Buffer[] = [];
  let offset = 0;
  for (const [name, values] of Object.entries(tensors)) {
    const buf = Buffer.from(new Float32Array(values).buffer);
    header[name] = { dtype: 'F32', shape: [values.length], data_offsets: [offset, offset + buf.length] };
    datas.push(buf);
    offset += buf.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), ...datas]);
}

export const TINY_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 8,
  intermediate_size: 16,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  num_hidden_layers: 1,
  max_position_embeddings: 64,
  rope_theta: 10000,
  vocab_size: 4,
};

/** Files of a tiny model; `sharded` splits the weights in two shards with an index. */
export function tinyModelFiles(opts: { sharded?: boolean; fope?: boolean; seed?: number } = {}): Record<string, Buffer> {
  const s = opts.seed ?? 1;
  const config = opts.fope
    ? { ...TINY_CONFIG, rope_scaling: { rope_type: 'default', fope_init_factor: 0.1, fope_sep_head: true, num_inv_freq: null } }
    : TINY_CONFIG;
  const a = Array.from({ length: 32 }, (_, i) => (i + s) / 7);
  const b = Array.from({ length: 24 }, (_, i) => (i * s) / 3);
  const files: Record<string, Buffer> = {
    'config.json': Buffer.from(JSON.stringify(config, null, 2) + '\n'),
    'generation_config.json': Buffer.from('{"bos_token_id": 1, "eos_token_id": 2}\n'),
    'tokenizer.json': Buffer.from(JSON.stringify({ version: '1.0', model: { type: 'BPE', vocab: { a: 0, b: 1 }, merges: [] } })),
    'tokenizer_config.json': Buffer.from('{"model_max_length": 64}\n'),
    'special_tokens_map.json': Buffer.from('{}\n'),
  };
  if (opts.sharded) {
    files['model-00001-of-00002.safetensors'] = safetensors({ 'model.embed_tokens.weight': a });
    files['model-00002-of-00002.safetensors'] = safetensors({ 'lm_head.weight': b });
    files['model.safetensors.index.json'] = Buffer.from(
      JSON.stringify({
        metadata: { total_size: (a.length + b.length) * 4 },
        weight_map: { 'model.embed_tokens.weight': 'model-00001-of-00002.safetensors', 'lm_head.weight': 'model-00002-of-00002.safetensors' },
      }),
    );
  } else {
    files['model.safetensors'] = safetensors({ 'model.embed_tokens.weight': a, 'lm_head.weight': b });
  }
  return files;
}

/** A fresh temp folder (removed by the caller's afterEach via `cleanup`). */
export async function tmp(prefix = 'fopeify-hub-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function writeFolder(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(dir, rel);
    await fs.mkdir(path.dirname(p), { recursive: true });
    await fs.writeFile(p, content);
  }
}

/** path → bytes of every file under `dir` (following symlinks), skipping dot-files. */
export async function readFolder(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  async function walk(rel: string): Promise<void> {
    for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      const st = await fs.stat(path.join(dir, r));
      if (st.isDirectory()) await walk(r);
      else out.set(r, await fs.readFile(path.join(dir, r)));
    }
  }
  await walk('');
  return out;
}

/** Every path under `dir` (no symlink following), for "nothing was written outside" checks. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    let entries;
    try {
      entries = await fs.readdir(path.join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory()) await walk(r);
    }
  }
  await walk('');
  return out.sort();
}

/** A sleep that records delays instead of waiting. */
export function recordingSleep(): { sleep: (ms: number) => Promise<void>; delays: number[] } {
  const delays: number[] = [];
  return { delays, sleep: async (ms: number) => void delays.push(ms) };
}
