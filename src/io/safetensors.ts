/**
 * Streaming safetensors I/O, written by hand: the npm `safetensors` package is a read-only browser toy that
 * loads whole files; fopeify must read one tensor at a time from multi-GB shards and write byte-exact files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON (padded with spaces to a multiple of 8),
 * then raw little-endian tensor data; offsets in the header are relative to the end of the header.
 */
import type { FileHandle } from 'node:fs/promises';
import { FopeifyError, systemErrorCode } from '../errors.js';
import { writeFileAtomically, writeFileWith } from './atomic.js';
import { JsonShapeError, parseBoundedJson } from './bounded-json.js';
import { decodeToF32, dtypeSize, isDtype, widen16Into, type Dtype } from './dtype.js';
import { openRegularFile } from './model-folder.js';
import { transpose2d, transposeRowsInto, type MatrixData } from './transpose.js';

/**
 * Bytes of a 16-bit tensor read at a time when it is widened to float32: the result is the only large
 * buffer (a whole bf16 file copy beside it raised the loading peak by half the largest tensor, and the
 * freed copies stayed in the process's heap; issue 19, prefill memory).
 */
export const WIDEN_PIECE_BYTES = 4 * 2 ** 20;

/** Headers larger than this are refused (the reference implementation uses 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;
/** A header is an object of tensor entries (objects holding a shape array) and `__metadata__`: depth 3. */
export const MAX_HEADER_DEPTH = 3;

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Byte offsets relative to the start of the data section. */
  begin: number;
  end: number;
}

function bad(path: string, why: string): FopeifyError {
  return new FopeifyError('BAD_SAFETENSORS', `${path}: not a valid safetensors file: ${why}`);
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A value from an untrusted header, shown short in a message. */
function show(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function showShape(shape: readonly number[]): string {
  return shape.length > 8 ? `[${shape.slice(0, 8).join(', ')}, ... (${shape.length} dims)]` : `[${shape.join(', ')}]`;
}

/** Bytes of a dtype × shape, or undefined when the element count passes 2^53 (the reference fails on overflow too). */
function tensorBytes(shape: readonly number[], dtype: Dtype): number | undefined {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return undefined;
  }
  const bytes = n * dtypeSize(dtype);
  return bytes > Number.MAX_SAFE_INTEGER ? undefined : bytes;
}

/**
 * Parse and validate a header against the size of the data section, as the reference implementation does:
 * JSON of depth ≤ 3, known dtypes, non-negative integer dims whose product does not overflow, and tensor
 * data that covers the data section exactly — contiguous from 0, no gap, no overlap, ending at its last
 * byte. (A header length a few bytes short still parses when the cut falls in the padding; only the last
 * rule catches it, before every tensor is read shifted.) Pure: tested directly with crafted bytes.
 */
export function parseHeader(
  headerJson: string,
  dataBytes: number,
  path: string,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let raw: unknown;
  try {
    raw = parseBoundedJson(headerJson, MAX_HEADER_DEPTH);
  } catch (err) {
    if (!(err instanceof JsonShapeError)) throw err;
    throw bad(path, err.message.startsWith('nests') ? `header ${err.message}` : 'header is not JSON');
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw bad(path, 'header is not a JSON object');
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!value || typeof value !== 'object' || Array.isArray(value)) throw bad(path, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(path, `__metadata__.${show(k)} is not a string`);
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const label = show(name);
    const e = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!e || typeof e !== 'object' || Array.isArray(e)) throw bad(path, `entry ${label} is not an object`);
    if (typeof e.dtype !== 'string' || !isDtype(e.dtype)) throw bad(path, `tensor ${label} has unknown dtype ${show(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(path, `tensor ${label} has an invalid shape (dims must be non-negative integers)`);
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(path, `tensor ${label} has invalid data_offsets`);
    }
    const [begin, end] = off as [number, number];
    if (begin > end) throw bad(path, `tensor ${label} has data_offsets out of order`);
    if (end > dataBytes) {
      throw bad(path, `tensor ${label} lies outside the file (ends at ${end}, data section has ${dataBytes} bytes; truncated?)`);
    }
    const shape = e.shape as number[];
    const expected = tensorBytes(shape, e.dtype);
    if (expected === undefined) throw bad(path, `tensor ${label}: ${e.dtype} × ${showShape(shape)} overflows`);
    if (expected !== end - begin) {
      throw bad(path, `tensor ${label}: ${e.dtype} × ${showShape(shape)} needs ${expected} bytes, offsets give ${end - begin}`);
    }
    tensors.set(name, { name, dtype: e.dtype, shape, begin, end });
  }
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  for (const t of sorted) {
    if (t.begin < covered) throw bad(path, `tensors overlap at byte ${t.begin} (${show(t.name)})`);
    if (t.begin > covered) throw bad(path, `bytes ${covered}..${t.begin} of the data section belong to no tensor (before ${show(t.name)})`);
    covered = t.end;
  }
  if (covered !== dataBytes) {
    throw bad(
      path,
      `the tensors cover ${covered} bytes but the data section has ${dataBytes}: the header length is wrong or bytes were appended`,
    );
  }
  return { tensors, metadata };
}

export interface ReadFloat32Options {
  /** Return a 2-D `[rows, cols]` tensor transposed, as `[cols, rows]` (the runtime's inference layout). */
  transposed?: boolean;
}

/** One open safetensors file: header in memory, data read on demand. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    readonly fileSize: number,
    readonly dataOffset: number,
    readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
    private handle: FileHandle | undefined,
  ) {}

  /** readWidened's buffers: a piece's bytes and (transposed) its widened rows. */
  private pieceBytes = new Uint8Array(0);
  private pieceWidened = new Float32Array(0);

  /** Open a safetensors file by path (a regular file only: a FIFO or device is refused, never waited on). */
  static async open(path: string): Promise<SafetensorsFile> {
    let opened;
    try {
      opened = await openRegularFile(path);
    } catch (err) {
      if (err instanceof FopeifyError) throw err;
      throw new FopeifyError('MISSING_SHARD', `cannot open ${path}: ${systemErrorCode(err) ?? String(err)}`);
    }
    return SafetensorsFile.fromHandle(path, opened.handle);
  }

  /** Read the header from an open handle (which this takes over: closed on failure and by close()). */
  static async fromHandle(path: string, handle: FileHandle): Promise<SafetensorsFile> {
    try {
      const { size } = await handle.stat();
      if (size < 8) throw bad(path, `file has ${size} bytes, shorter than the 8-byte header length`);
      const lenBuf = Buffer.alloc(8);
      await handle.read(lenBuf, 0, 8, 0);
      const n = lenBuf.readBigUInt64LE(0);
      if (n > BigInt(MAX_HEADER_BYTES)) throw bad(path, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
      const headerLen = Number(n);
      if (8 + headerLen > size) throw bad(path, `header length ${headerLen} runs past the end of the file (${size} bytes; truncated?)`);
      const headerBuf = Buffer.alloc(headerLen);
      let done = 0;
      while (done < headerLen) {
        const { bytesRead } = await handle.read(headerBuf, done, headerLen - done, 8 + done);
        if (bytesRead === 0) throw bad(path, 'file shrank while its header was read');
        done += bytesRead;
      }
      let headerJson: string;
      try {
        headerJson = new TextDecoder('utf-8', { fatal: true }).decode(headerBuf);
      } catch {
        throw bad(path, 'header is not UTF-8');
      }
      const { tensors, metadata } = parseHeader(headerJson, size - 8 - headerLen, path);
      return new SafetensorsFile(path, size, 8 + headerLen, tensors, metadata, handle);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new FopeifyError('BAD_SAFETENSORS', `${this.path} has no tensor ${name}`);
    return t;
  }

  /** Raw bytes of one tensor (a fresh buffer). */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    if (!this.handle) throw new FopeifyError('INTERNAL', `${this.path} is closed`);
    const len = t.end - t.begin;
    const buf = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const { bytesRead } = await this.handle.read(buf, done, len - done, this.dataOffset + t.begin + done);
      if (bytesRead === 0) throw bad(this.path, `unexpected end of file reading ${name}`);
      done += bytesRead;
    }
    return buf;
  }

  /**
   * One float tensor decoded to float32; `transposed`: a 2-D `[rows, cols]` tensor as `[cols, rows]`.
   * No second whole copy: f32 data is read in place, 16-bit data is read a few rows at a time and
   * widened (and transposed) into the result.
   */
  async readFloat32(name: string, options: ReadFloat32Options = {}): Promise<Float32Array> {
    const t = this.info(name);
    const { dtype, shape } = t;
    if (options.transposed && shape.length !== 2) {
      throw new FopeifyError('INTERNAL', `${this.path}: ${name} has shape [${shape.join(', ')}], not a matrix to transpose`);
    }
    if (dtype === 'BF16' || dtype === 'F16') return this.readWidened(t, dtype, options.transposed === true);
    const bytes = await this.readBytes(name); // fresh and at offset 0: aligned for any element type
    const transpose = <T extends MatrixData>(a: T): T => (options.transposed ? transpose2d(a, shape[0]!, shape[1]!) : a);
    if (dtype === 'F32') return transpose(new Float32Array(bytes.buffer, 0, bytes.byteLength / 4));
    return transpose(decodeToF32(bytes, dtype));
  }

  /**
   * A 16-bit float tensor widened into a new Float32Array, WIDEN_PIECE_BYTES of whole rows at a time, through
   * two piece-sized buffers (the bytes, and the widened rows of a transposed tensor) reused for every piece
   * and every tensor of the file.
   */
  private async readWidened(t: TensorInfo, dtype: 'BF16' | 'F16', transposed: boolean): Promise<Float32Array> {
    if (!this.handle) throw new FopeifyError('INTERNAL', `${this.path} is closed`);
    const out = new Float32Array(numel(t.shape));
    // Rows of the last dimension (a scalar or vector is one row); transposed tensors are [rows, cols].
    const cols = t.shape.length ? Math.max(1, t.shape[t.shape.length - 1]!) : 1;
    const rows = out.length / cols;
    const rowsPerPiece = Math.max(1, Math.floor(WIDEN_PIECE_BYTES / (2 * cols)));
    const pieceElems = Math.min(rows, rowsPerPiece) * cols;
    // Reused by every tensor of the file: fresh pieces per tensor were garbage between the weights in the heap.
    if (this.pieceBytes.length < 2 * pieceElems) this.pieceBytes = new Uint8Array(2 * pieceElems);
    if (transposed && this.pieceWidened.length < pieceElems) this.pieceWidened = new Float32Array(pieceElems);
    const bytes = this.pieceBytes;
    const widened = transposed ? this.pieceWidened : null;
    for (let r0 = 0; r0 < rows; r0 += rowsPerPiece) {
      const n = Math.min(rowsPerPiece, rows - r0);
      const len = n * cols * 2;
      const at = this.dataOffset + t.begin + r0 * cols * 2;
      let done = 0;
      while (done < len) {
        const { bytesRead } = await this.handle.read(bytes, done, len - done, at + done);
        if (bytesRead === 0) throw bad(this.path, `unexpected end of file reading ${t.name}`);
        done += bytesRead;
      }
      if (widened) {
        widen16Into(bytes.subarray(0, len), dtype, widened, 0);
        transposeRowsInto(widened, n, cols, out, rows, r0);
      } else {
        widen16Into(bytes.subarray(0, len), dtype, out, r0 * cols);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    this.pieceBytes = new Uint8Array(0);
    this.pieceWidened = new Float32Array(0);
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }
}

/** A tensor to write: its bytes are produced on demand so a writer never holds a whole shard. */
export interface TensorToWrite {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Raw little-endian bytes, or a function producing them when the writer reaches this tensor. */
  data: Uint8Array | (() => Promise<Uint8Array>);
}

/**
 * Header bytes for a list of tensors, in the given order, data laid out back to back.
 * Deterministic: keys in a fixed order, `__metadata__` first, padded with spaces to a multiple of 8.
 */
export function encodeHeader(
  tensors: readonly Pick<TensorToWrite, 'name' | 'dtype' | 'shape'>[],
  metadata?: Record<string, string>,
): { header: Buffer; dataBytes: number } {
  const obj: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    obj.__metadata__ = Object.fromEntries(Object.keys(metadata).sort().map((k) => [k, metadata[k]]));
  }
  let offset = 0;
  for (const t of tensors) {
    const len = numel(t.shape) * dtypeSize(t.dtype);
    obj[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + len] };
    offset += len;
  }
  let json = JSON.stringify(obj);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += ' '.repeat(pad);
  const body = Buffer.from(json, 'utf8');
  const header = Buffer.alloc(8 + body.length);
  header.writeBigUInt64LE(BigInt(body.length), 0);
  body.copy(header, 8);
  return { header, dataBytes: offset };
}

/**
 * Write one safetensors file, tensors sorted by name (deterministic bytes), streaming each tensor's
 * data as it is produced, into a temporary sibling renamed onto `path` when complete.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<{ bytes: number }> {
  const ordered = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const { header, dataBytes } = encodeHeader(ordered, metadata);
  // A new file renamed into place: never written through an existing name (which may be a hard link).
  return writeFileWith(path, async (handle) => {
    await handle.write(header, 0, header.length, 0);
    let pos = header.length;
    for (const t of ordered) {
      const bytes = typeof t.data === 'function' ? await t.data() : t.data;
      const expected = numel(t.shape) * dtypeSize(t.dtype);
      if (bytes.byteLength !== expected) {
        throw new FopeifyError('INTERNAL', `tensor ${t.name}: ${bytes.byteLength} bytes given, ${expected} expected`);
      }
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, pos + done);
        done += bytesWritten;
      }
      pos += bytes.byteLength;
    }
    return { bytes: header.length + dataBytes };
  });
}

/** Shard file name as transformers writes it. */
export function shardName(index: number, count: number, prefix = 'model'): string {
  const w = (n: number) => String(n).padStart(5, '0');
  return count === 1 ? `${prefix}.safetensors` : `${prefix}-${w(index + 1)}-of-${w(count)}.safetensors`;
}

export interface ShardedWriteResult {
  files: string[];
  weightMap: Record<string, string>;
  totalSize: number;
}

/**
 * Write tensors into shards of at most `maxShardBytes` of data (a tensor larger than that gets a shard
 * of its own), named like transformers' shards, plus model.safetensors.index.json when there is more
 * than one shard.
 */
export async function writeShardedSafetensors(
  dir: string,
  tensors: readonly TensorToWrite[],
  options: { maxShardBytes?: number; metadata?: Record<string, string>; prefix?: string } = {},
): Promise<ShardedWriteResult> {
  const maxBytes = options.maxShardBytes ?? 5 * 1024 ** 3;
  const ordered = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const groups: TensorToWrite[][] = [];
  let cur: TensorToWrite[] = [];
  let curBytes = 0;
  for (const t of ordered) {
    const len = numel(t.shape) * dtypeSize(t.dtype);
    if (cur.length && curBytes + len > maxBytes) {
      groups.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(t);
    curBytes += len;
  }
  if (cur.length || !groups.length) groups.push(cur);
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (let i = 0; i < groups.length; i++) {
    const name = shardName(i, groups.length, options.prefix);
    await writeSafetensors(`${dir}/${name}`, groups[i]!, options.metadata);
    files.push(name);
    for (const t of groups[i]!) {
      weightMap[t.name] = name;
      totalSize += numel(t.shape) * dtypeSize(t.dtype);
    }
  }
  if (groups.length > 1) {
    await writeIndex(`${dir}/${options.prefix ?? 'model'}.safetensors.index.json`, weightMap, totalSize);
  }
  return { files, weightMap, totalSize };
}

export async function writeIndex(path: string, weightMap: Record<string, string>, totalSize: number): Promise<void> {
  const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
  const text = JSON.stringify({ metadata: { total_size: totalSize }, weight_map: sorted }, null, 2) + '\n';
  await writeFileAtomically(path, text);
}
