/**
 * Fuzz mutations of safetensors files (./fuzz-apply.ts applies them): raw reads and writes that bypass
 * every check of src/io/safetensors.ts, so a mutation can write exactly the broken bytes it means to.
 * A mutation that finds the file already broken by an earlier one leaves it as it is.
 */
import { promises as fs } from 'node:fs';
import { dtypeSize, isFloatDtype } from '../io/dtype.js';
import type { SeededRandom } from '../random.js';
import type { Mutation, WeightValue } from './fuzz-cases.js';
import { deepNesting } from './fuzz-files.js';

interface RawSafetensors {
  header: Record<string, unknown>;
  data: Buffer;
}

/** Header and data of a safetensors file, or null when an earlier mutation already broke it. */
export async function readSafetensors(file: string): Promise<RawSafetensors | null> {
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

export function encodeSafetensors(headerJson: string | Buffer, data: Buffer): Buffer {
  let body = typeof headerJson === 'string' ? Buffer.from(headerJson, 'utf8') : headerJson;
  if (typeof headerJson === 'string') body = Buffer.concat([body, Buffer.alloc((8 - (body.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([len, body, data]);
}

export async function rewriteHeader(file: string, change: (header: Record<string, unknown>, data: Buffer) => void): Promise<void> {
  const st = await readSafetensors(file);
  if (!st) return;
  change(st.header, st.data);
  await fs.writeFile(file, encodeSafetensors(JSON.stringify(st.header), st.data));
}

/** Bytes of one element holding `value` in `dtype`. */
export function encodeValue(value: WeightValue, dtype: string): Buffer | null {
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

/** Replace the header's JSON with something that is not a valid header. */
export async function replaceHeaderBody(file: string, body: Extract<Mutation, { kind: 'safetensors.header-body' }>['body'], rng: SeededRandom): Promise<void> {
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

/** Break one tensor's header entry (offsets, dtype, shape, name); `other` is the tensor an overlap points at. */
export async function changeEntry(file: string, name: string, change: Extract<Mutation, { kind: 'safetensors.entry' }>['change'], other: string): Promise<void> {
return rewriteHeader(file, (header, data) => {
    const entry = header[name] as { dtype: unknown; shape: unknown[]; data_offsets: unknown[] } | undefined;
    if (!entry || typeof entry !== 'object') return;
    const [begin, end] = entry.data_offsets as [number, number];
    const size = end - begin;
    const names = Object.keys(header).filter((k) => k !== '__metadata__' && k !== name);
    const otherName = header[other] && other !== name ? other : names[0];
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

/** Add `delta` to the header length field. */
export async function shiftHeaderLength(file: string, delta: number): Promise<void> {
  const bytes = await fs.readFile(file);
  if (bytes.length < 8) return;
  const n = bytes.readBigUInt64LE(0) + BigInt(delta);
  bytes.writeBigUInt64LE(n < 0n ? 0n : n, 0);
  return fs.writeFile(file, bytes);
}

/** Cut the file inside its length field, header or data, at `fraction` of that part. */
export async function truncateShard(file: string, part: Extract<Mutation, { kind: 'safetensors.truncate' }>['part'], fraction: number): Promise<void> {
  const bytes = await fs.readFile(file);
  if (bytes.length < 8) return;
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const dataLen = Math.max(0, bytes.length - 8 - headerLen);
  const at = part === 'length-field' ? Math.floor(fraction * 8) : part === 'header' ? 8 + Math.floor(fraction * headerLen) : 8 + headerLen + Math.floor(fraction * dataLen);
  return fs.truncate(file, Math.min(at, bytes.length - 1));
}

/** Write `value` (NaN, ±Inf, ±FLT_MAX) into one element of a float tensor, at `element` (a fraction) of it. */
export async function setWeightValue(file: string, name: string, value: WeightValue, element: number): Promise<void> {
  const st = await readSafetensors(file);
  const entry = st?.header[name] as { dtype: string; data_offsets: [number, number] } | undefined;
  if (!st || !entry) return;
  const size = isFloatDtype(entry.dtype) ? dtypeSize(entry.dtype) : undefined;
  const bytes = encodeValue(value, entry.dtype);
  if (!size || !bytes) return;
  const count = (entry.data_offsets[1] - entry.data_offsets[0]) / size;
  const at = entry.data_offsets[0] + Math.floor(element * count) * size;
  bytes.copy(st.data, at);
  return fs.writeFile(file, encodeSafetensors(JSON.stringify(st.header), st.data));
}
