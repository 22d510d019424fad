/**
 * Training data: text or JSONL (`text` field) files or folders, tokenized with the model's tokenizer and
 * packed into chunks of seq-len + 1 tokens (inputs and shifted targets) with EOS between documents; the
 * chunk order is shuffled per epoch by the seed, so a data position (epoch, index) resumes exactly.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FopeifyError } from '../errors.js';
import { SeededRandom } from '../random.js';

export interface Tokenize {
  encode(text: string): number[];
}

const TEXT_EXT = /\.(txt|md|text|jsonl|json)$/i;

/** Documents of a file or folder (sorted, recursive). */
export async function readDocuments(spec: string): Promise<{ docs: string[]; files: string[] }> {
  let st;
  try {
    st = await fs.stat(spec);
  } catch {
    throw new FopeifyError('BAD_ARGUMENT', `\`data\` ${spec}: no such file or folder`, { option: 'data' });
  }
  const files: string[] = [];
  if (st.isDirectory()) {
    const walk = async (d: string) => {
      for (const e of (await fs.readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (TEXT_EXT.test(e.name)) files.push(p);
      }
    };
    await walk(spec);
  } else files.push(spec);
  const docs: string[] = [];
  for (const f of files) {
    const text = await fs.readFile(f, 'utf8');
    if (/\.jsonl$/i.test(f)) {
      text.split('\n').forEach((line, i) => {
        if (!line.trim()) return;
        let rec: unknown;
        try {
          rec = JSON.parse(line);
        } catch {
          throw new FopeifyError('BAD_ARGUMENT', `${f}:${i + 1}: not valid JSON`);
        }
        const t = (rec as { text?: unknown }).text;
        if (typeof t !== 'string') throw new FopeifyError('BAD_ARGUMENT', `${f}:${i + 1}: no "text" string field`);
        docs.push(t);
      });
    } else if (text.trim()) docs.push(text);
  }
  if (!docs.length) throw new FopeifyError('BAD_ARGUMENT', `\`data\` ${spec}: no text found (.txt, .md or .jsonl with a "text" field)`, { option: 'data' });
  return { docs, files };
}

/** Concatenate tokenized documents with EOS separators and cut into chunks of `chunkLen` tokens. */
export function packChunks(tokenDocs: number[][], eosId: number, chunkLen: number): Int32Array[] {
  const stream: number[] = [];
  for (const d of tokenDocs) {
    for (const t of d) stream.push(t);
    stream.push(eosId);
  }
  const chunks: Int32Array[] = [];
  for (let i = 0; i + chunkLen <= stream.length; i += chunkLen) chunks.push(Int32Array.from(stream.slice(i, i + chunkLen)));
  return chunks;
}

export interface DataPosition {
  epoch: number;
  index: number;
}

/** A packed dataset with a deterministic, resumable order. */
export class PackedDataset {
  private orderCache = new Map<number, number[]>();
  constructor(
    readonly chunks: Int32Array[],
    readonly seed: number,
  ) {
    if (!chunks.length) throw new FopeifyError('BAD_ARGUMENT', 'the training data is shorter than one sequence of seq-len + 1 tokens');
  }

  private order(epoch: number): number[] {
    let o = this.orderCache.get(epoch);
    if (!o) {
      const rng = new SeededRandom(this.seed, `data-epoch-${epoch}`);
      o = this.chunks.map((_, i) => i);
      for (let i = o.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [o[i], o[j]] = [o[j]!, o[i]!];
      }
      this.orderCache.set(epoch, o);
    }
    return o;
  }

  /** The next `n` chunks from `pos`, and the position after them. */
  take(pos: DataPosition, n: number): { chunks: Int32Array[]; next: DataPosition } {
    const out: Int32Array[] = [];
    let { epoch, index } = pos;
    while (out.length < n) {
      if (index >= this.chunks.length) {
        epoch++;
        index = 0;
      }
      out.push(this.chunks[this.order(epoch)[index]!]!);
      index++;
    }
    return { chunks: out, next: { epoch, index } };
  }
}

/** Split packed chunks into train and held-out parts (held-out: the last ~5 %, at least one chunk). */
export function splitHeldOut(chunks: Int32Array[], fraction = 0.05): { train: Int32Array[]; heldOut: Int32Array[] } {
  if (chunks.length < 2) return { train: chunks, heldOut: chunks.slice(0, 1) };
  const n = Math.max(1, Math.round(chunks.length * fraction));
  return { train: chunks.slice(0, chunks.length - n), heldOut: chunks.slice(chunks.length - n) };
}
