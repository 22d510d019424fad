/**
 * The KV cache: per layer, the keys (after q/k norm and the rotary embedding, as HF caches them) and
 * values of every token seen so far, kept as a list of blocks of at most `blockSize` tokens — exactly
 * the key blocks blockwise attention consumes. Appending a token copies only the last partial block,
 * never the whole history.
 */
import * as tf from '../backend/tfjs.js';
import { FopeifyError } from '../errors.js';
import { DEFAULT_KEY_BLOCK, type KvBlock } from './attention.js';

export interface KvCacheOptions {
  /** Tokens per key block (default 512). */
  blockSize?: number;
}

export class KvCache {
  /** Sequence positions stored (the next token gets index `length`). */
  length = 0;
  readonly blockSize: number;
  private readonly layers: KvBlock[][];

  constructor(readonly numLayers: number, options: KvCacheOptions = {}) {
    this.blockSize = Math.max(1, Math.floor(options.blockSize ?? DEFAULT_KEY_BLOCK));
    this.layers = Array.from({ length: numLayers }, () => []);
  }

  /** The blocks of one layer (do not dispose them). */
  blocks(layer: number): readonly KvBlock[] {
    return this.layers[layer]!;
  }

  /**
   * Add the keys/values `[B·nKv, T, D]` of tokens `length .. length+T−1` to one layer and return that
   * layer's blocks, new tokens included. The cache keeps its own tensors (safe inside tf.tidy); call
   * `advance(T)` once every layer has appended.
   */
  append(layer: number, k: tf.Tensor3D, v: tf.Tensor3D): readonly KvBlock[] {
    const blocks = this.layers[layer];
    if (!blocks) throw new FopeifyError('INTERNAL', `KV cache has no layer ${layer}`);
    const stored = blocks.reduce((s, b) => s + b.k.shape[1], 0);
    if (stored !== this.length) throw new FopeifyError('INTERNAL', `KV cache layer ${layer} holds ${stored} tokens, expected ${this.length}`);
    const [BK, T, D] = k.shape;
    let off = 0;
    const last = blocks[blocks.length - 1];
    if (last && last.k.shape[1] < this.blockSize && T > 0) {
      const take = Math.min(this.blockSize - last.k.shape[1], T);
      const nk = tf.keep(tf.concat([last.k, take === T ? k : tf.slice(k, [0, 0, 0], [BK, take, D])], 1) as tf.Tensor3D);
      const nv = tf.keep(tf.concat([last.v, take === T ? v : tf.slice(v, [0, 0, 0], [BK, take, D])], 1) as tf.Tensor3D);
      last.k.dispose();
      last.v.dispose();
      blocks[blocks.length - 1] = { k: nk, v: nv, start: last.start };
      off = take;
    }
    while (off < T) {
      const n = Math.min(this.blockSize, T - off);
      const whole = off === 0 && n === T;
      // A fresh tensor of our own (clone), so the caller may dispose its k/v.
      const nk = tf.keep(whole ? tf.clone(k) : tf.slice(k, [0, off, 0], [BK, n, D]));
      const nv = tf.keep(whole ? tf.clone(v) : tf.slice(v, [0, off, 0], [BK, n, D]));
      blocks.push({ k: nk, v: nv, start: this.length + off });
      off += n;
    }
    return blocks;
  }

  /** Count `T` appended tokens (after every layer appended them). */
  advance(T: number): void {
    this.length += T;
  }

  /** Drop everything after the first `length` tokens (e.g. to reuse a prompt prefix). */
  truncate(length: number): void {
    if (length >= this.length) return;
    for (const blocks of this.layers) {
      while (blocks.length && blocks[blocks.length - 1]!.start >= length) {
        const b = blocks.pop()!;
        b.k.dispose();
        b.v.dispose();
      }
      const last = blocks[blocks.length - 1];
      if (last && last.start + last.k.shape[1] > length) {
        const n = length - last.start;
        const [BK, , D] = last.k.shape;
        const nk = tf.keep(tf.slice(last.k, [0, 0, 0], [BK, n, D]));
        const nv = tf.keep(tf.slice(last.v, [0, 0, 0], [BK, n, D]));
        last.k.dispose();
        last.v.dispose();
        blocks[blocks.length - 1] = { k: nk, v: nv, start: last.start };
      }
    }
    this.length = length;
  }

  /** Bytes held (float32). */
  get bytes(): number {
    let n = 0;
    for (const blocks of this.layers) for (const b of blocks) n += (b.k.size + b.v.size) * 4;
    return n;
  }

  dispose(): void {
    for (const blocks of this.layers) {
      for (const b of blocks) {
        b.k.dispose();
        b.v.dispose();
      }
      blocks.length = 0;
    }
    this.length = 0;
  }
}
