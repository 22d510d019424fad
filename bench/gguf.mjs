// A Llama-family checkpoint folder (safetensors + config.json) as a GGUF file of F32 tensors, so that
// llama.cpp (node-llama-cpp, llama-bench) runs the very model fopeify benchmarks. Benchmark tooling,
// not a product feature: plain RoPE Llama layouts only (no rope_scaling, no FoPE), and a placeholder
// vocabulary since the benchmarks feed token ids directly: SentencePiece type, <unk> <s> </s>, the 256
// byte pieces llama.cpp looks up ("<0x0A>"), then "<t123>" pieces.
// Usage from code: await writeGgufF32(checkpointDir, outFile).
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => pathToFileURL(path.join(ROOT, 'dist', p)).href;

const ALIGN = 32;
// GGUF value types (ggml/include/gguf.h).
const T = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10 };
const GGML_F32 = 0;

/** Little-endian byte sink for the header. */
class Bytes {
  parts = [];
  size = 0;
  push(buf) {
    this.parts.push(buf);
    this.size += buf.length;
  }
  u32(v) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v) {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  /** One metadata entry: key, type, value (arrays: [elementType, values]). */
  kv(key, type, value) {
    this.str(key);
    this.u32(type);
    if (type === T.array) {
      const [et, values] = value;
      this.u32(et);
      this.u64(values.length);
      for (const v of values) this.scalar(et, v);
    } else this.scalar(type, value);
  }
  scalar(type, v) {
    if (type === T.u32) this.u32(v);
    else if (type === T.i32) this.i32(v);
    else if (type === T.f32) this.f32(v);
    else if (type === T.bool) this.push(Buffer.from([v ? 1 : 0]));
    else if (type === T.string) this.str(v);
    else if (type === T.u64) this.u64(v);
    else throw new Error(`gguf: no writer for type ${type}`);
  }
}

/** HF Llama q/k rows (rotate-half pairs) to llama.cpp's interleaved pairs, as convert_hf_to_gguf.py's permute. */
function permuteRotary(w, heads, rowsPerHead, cols) {
  const out = new Float32Array(w.length);
  const half = rowsPerHead / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = (h * rowsPerHead + j * half + i) * cols;
        const to = (h * rowsPerHead + i * 2 + j) * cols;
        out.set(w.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

const SPECIALS = ['<unk>', '<s>', '</s>'];
const placeholderPiece = (i) =>
  i < SPECIALS.length ? SPECIALS[i] : i < SPECIALS.length + 256 ? `<0x${(i - SPECIALS.length).toString(16).toUpperCase().padStart(2, '0')}>` : `<t${i}>`;
// llama.cpp's token types: 1 normal, 2 unknown, 3 control, 6 byte.
const placeholderType = (i) => (i === 0 ? 2 : i < SPECIALS.length ? 3 : i < SPECIALS.length + 256 ? 6 : 1);

/** [gguf name, HF name, permute heads (q/k) or 0]. */
function tensorMap(cfg) {
  const rows = [['token_embd.weight', 'model.embed_tokens.weight', 0]];
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    rows.push(
      [`blk.${l}.attn_norm.weight`, `${p}input_layernorm.weight`, 0],
      [`blk.${l}.attn_q.weight`, `${p}self_attn.q_proj.weight`, cfg.num_attention_heads],
      [`blk.${l}.attn_k.weight`, `${p}self_attn.k_proj.weight`, cfg.num_key_value_heads],
      [`blk.${l}.attn_v.weight`, `${p}self_attn.v_proj.weight`, 0],
      [`blk.${l}.attn_output.weight`, `${p}self_attn.o_proj.weight`, 0],
      [`blk.${l}.ffn_norm.weight`, `${p}post_attention_layernorm.weight`, 0],
      [`blk.${l}.ffn_gate.weight`, `${p}mlp.gate_proj.weight`, 0],
      [`blk.${l}.ffn_up.weight`, `${p}mlp.up_proj.weight`, 0],
      [`blk.${l}.ffn_down.weight`, `${p}mlp.down_proj.weight`, 0],
    );
  }
  rows.push(['output_norm.weight', 'model.norm.weight', 0]);
  if (!cfg.tie_word_embeddings) rows.push(['output.weight', 'lm_head.weight', 0]);
  return rows;
}

/**
 * Write `checkpointDir` (a plain Llama checkpoint) to `outFile` as GGUF with F32 tensors; returns
 * the file's size in bytes. Written to a temporary name and renamed, so a cut-off run leaves no
 * half file under the final name.
 */
export async function writeGgufF32(checkpointDir, outFile) {
  const cfg = JSON.parse(readFileSync(path.join(checkpointDir, 'config.json'), 'utf8'));
  if (cfg.model_type !== 'llama') throw new Error(`gguf: only llama checkpoints (got model_type ${cfg.model_type})`);
  if (cfg.rope_scaling) throw new Error('gguf: rope_scaling is not written by this benchmark converter');
  if (!(cfg.vocab_size >= SPECIALS.length + 256)) throw new Error(`gguf: the placeholder vocabulary needs ≥ 259 tokens (got ${cfg.vocab_size})`);
  const headDim = cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
  const { Checkpoint } = await import(dist('io/checkpoint.js'));
  const ckpt = await Checkpoint.open(checkpointDir);
  const tmp = `${outFile}.tmp-${process.pid}`;
  let fd = openSync(tmp, 'w');
  try {
    const map = tensorMap(cfg);
    const vocab = cfg.vocab_size;
    const h = new Bytes();
    h.push(Buffer.from('GGUF', 'ascii'));
    h.u32(3);
    h.u64(map.length);
    const meta = [
      ['general.architecture', T.string, 'llama'],
      ['general.name', T.string, path.basename(checkpointDir)],
      ['general.alignment', T.u32, ALIGN],
      ['general.file_type', T.u32, 0], // all F32
      ['llama.context_length', T.u32, cfg.max_position_embeddings],
      ['llama.embedding_length', T.u32, cfg.hidden_size],
      ['llama.block_count', T.u32, cfg.num_hidden_layers],
      ['llama.feed_forward_length', T.u32, cfg.intermediate_size],
      ['llama.attention.head_count', T.u32, cfg.num_attention_heads],
      ['llama.attention.head_count_kv', T.u32, cfg.num_key_value_heads ?? cfg.num_attention_heads],
      ['llama.attention.key_length', T.u32, headDim],
      ['llama.attention.value_length', T.u32, headDim],
      ['llama.rope.dimension_count', T.u32, headDim],
      ['llama.rope.freq_base', T.f32, cfg.rope_theta ?? 10000],
      ['llama.attention.layer_norm_rms_epsilon', T.f32, cfg.rms_norm_eps ?? 1e-5],
      ['llama.vocab_size', T.u32, vocab],
      ['tokenizer.ggml.model', T.string, 'llama'],
      ['tokenizer.ggml.tokens', T.array, [T.string, Array.from({ length: vocab }, (_, i) => placeholderPiece(i))]],
      ['tokenizer.ggml.scores', T.array, [T.f32, new Array(vocab).fill(0)]],
      ['tokenizer.ggml.token_type', T.array, [T.i32, Array.from({ length: vocab }, (_, i) => placeholderType(i))]],
      ['tokenizer.ggml.unknown_token_id', T.u32, 0],
      ['tokenizer.ggml.bos_token_id', T.u32, 1],
      ['tokenizer.ggml.eos_token_id', T.u32, 2],
      ['tokenizer.ggml.add_bos_token', T.bool, false],
    ];
    h.u64(meta.length);
    for (const [k, t, v] of meta) h.kv(k, t, v);
    let offset = 0;
    const sizes = [];
    for (const [name, hf] of map) {
      const info = ckpt.info(hf);
      const dims = [...info.shape].reverse(); // ggml's ne[0] is the fastest-varying (column) dimension
      h.str(name);
      h.u32(dims.length);
      for (const d of dims) h.u64(d);
      h.u32(GGML_F32);
      h.u64(offset);
      const bytes = info.shape.reduce((a, b) => a * b, 1) * 4;
      sizes.push(bytes);
      offset += Math.ceil(bytes / ALIGN) * ALIGN;
    }
    h.push(Buffer.alloc((ALIGN - (h.size % ALIGN)) % ALIGN));
    let pos = 0;
    for (const part of h.parts) pos += writeSync(fd, part);
    for (let i = 0; i < map.length; i++) {
      const [, hf, heads] = map[i];
      let w = await ckpt.readFloat32(hf);
      if (heads) {
        const [rows, cols] = ckpt.info(hf).shape;
        w = permuteRotary(w, heads, rows / heads, cols);
      }
      pos += writeSync(fd, new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
      const pad = Math.ceil(sizes[i] / ALIGN) * ALIGN - sizes[i];
      if (pad) pos += writeSync(fd, Buffer.alloc(pad));
    }
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, outFile);
    return pos;
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  } finally {
    await ckpt.close();
  }
}
