import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { bf16BitsToF32, decodeToF32, encodeFromF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../src/io/dtype.js';
import { encodeHeader, parseHeader, SafetensorsFile, WIDEN_PIECE_BYTES, writeSafetensors, writeShardedSafetensors } from '../../src/io/safetensors.js';
import { tempDir } from '../helpers.js';

const root = tempDir();

describe('dtype conversions', () => {
  it('bf16 rounds to nearest even', () => {
    // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even (1).
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8))).toBe(1);
    // 1 + 3·2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): ties to even.
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6);
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20))).toBe(1 + 2 ** -7);
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN)))).toBe(true);
    expect(bf16BitsToF32(f32ToBf16Bits(-Infinity))).toBe(-Infinity);
  });
  it('f16 is exact on every representable value and rounds ties to even', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = f16BitsToF32(h);
      if (Number.isNaN(v)) continue;
      expect(f32ToF16Bits(v)).toBe(h);
    }
    expect(f16BitsToF32(f32ToF16Bits(1 + 2 ** -11))).toBe(1); // tie → even
    expect(f16BitsToF32(f32ToF16Bits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(f16BitsToF32(f32ToF16Bits(70000))).toBe(Infinity);
    expect(f16BitsToF32(f32ToF16Bits(2 ** -25))).toBe(0); // tie with zero → even (0)
    expect(f16BitsToF32(f32ToF16Bits(3 * 2 ** -26))).toBe(2 ** -24);
  });
  it('encode/decode round trip', () => {
    const v = new Float32Array([0, -1.5, 3.140625, 65504, -(2 ** -24)]);
    expect(decodeToF32(encodeFromF32(v, 'F16'), 'F16')).toEqual(v);
    expect(decodeToF32(encodeFromF32(v, 'F32'), 'F32')).toEqual(v);
    expect(decodeToF32(encodeFromF32(new Float32Array([1.5, -256]), 'BF16'), 'BF16')).toEqual(new Float32Array([1.5, -256]));
  });
});

describe('safetensors writer and reader', () => {
  it('round-trips tensors, metadata and pass-through dtypes; bytes are deterministic', async () => {
    const tensors = [
      { name: 'b.weight', dtype: 'F32' as const, shape: [2, 3], data: encodeFromF32(new Float32Array([1, 2, 3, 4, 5, 6]), 'F32') },
      { name: 'a.int', dtype: 'I64' as const, shape: [2], data: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]) },
      { name: 'c.half', dtype: 'BF16' as const, shape: [1], data: async () => encodeFromF32(new Float32Array([0.5]), 'BF16') },
      { name: 'd.empty', dtype: 'F16' as const, shape: [0, 4], data: new Uint8Array(0) },
    ];
    const f1 = path.join(root, 'a.safetensors');
    const f2 = path.join(root, 'b.safetensors');
    await writeSafetensors(f1, tensors, { format: 'pt' });
    await writeSafetensors(f2, [...tensors].reverse(), { format: 'pt' });
    expect(Buffer.compare(await fs.readFile(f1), await fs.readFile(f2))).toBe(0);
    const bytes = await fs.readFile(f1);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const st = await SafetensorsFile.open(f1);
    expect(st.metadata).toEqual({ format: 'pt' });
    expect([...st.tensors.keys()].sort()).toEqual(['a.int', 'b.weight', 'c.half', 'd.empty']);
    expect(await st.readFloat32('b.weight')).toEqual(new Float32Array([1, 2, 3, 4, 5, 6]));
    expect(await st.readFloat32('c.half')).toEqual(new Float32Array([0.5]));
    expect(Array.from(await st.readBytes('a.int'))).toEqual(Array.from(tensors[1]!.data as Uint8Array));
    await st.close();
  });

  it('reads a matrix transposed, in every float dtype, with the values of a plain read', async () => {
    const [rows, cols] = [70, 67]; // past one 64-wide block of the transposition in both directions
    const values = Float32Array.from({ length: rows * cols }, (_, i) => (i % 97) / 8 - 6 + (i % 5) * 2 ** -9);
    const dtypes = ['F32', 'BF16', 'F16'] as const;
    const f = path.join(root, 'matrices.safetensors');
    const vector = { name: 'b', dtype: 'F32' as const, shape: [2], data: encodeFromF32(new Float32Array([1, 2]), 'F32') };
    await writeSafetensors(f, [vector, ...dtypes.map((d) => ({ name: d, dtype: d, shape: [rows, cols], data: encodeFromF32(values, d) }))]);
    const st = await SafetensorsFile.open(f);
    for (const d of dtypes) {
      const plain = await st.readFloat32(d);
      const t = await st.readFloat32(d, { transposed: true });
      expect(t.length).toBe(rows * cols);
      let mismatches = 0;
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if (!Object.is(t[c * rows + r], plain[r * cols + c])) mismatches++;
      expect(mismatches).toBe(0);
      expect(Array.from(t.slice(0, 3))).toEqual([plain[0], plain[cols], plain[2 * cols]]);
    }
    await expect(st.readFloat32('b', { transposed: true })).rejects.toThrow(/not a matrix/);
    await st.close();
  });

  it('widens a 16-bit matrix larger than one read piece, plainly and transposed, to the values of the whole bytes', async () => {
    const cols = 1000;
    const rows = Math.floor(WIDEN_PIECE_BYTES / (2 * cols)) + 103; // a whole piece, then a partial one
    const values = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.001) * 3 + (i % 7) * 2 ** -12);
    const f = path.join(root, 'pieces.safetensors');
    const dtypes = ['BF16', 'F16'] as const;
    await writeSafetensors(f, dtypes.map((d) => ({ name: d, dtype: d, shape: [rows, cols], data: encodeFromF32(values, d) })));
    const st = await SafetensorsFile.open(f);
    for (const d of dtypes) {
      const whole = decodeToF32(await st.readBytes(d), d);
      expect(await st.readFloat32(d)).toEqual(whole);
      const t = await st.readFloat32(d, { transposed: true });
      let mismatches = 0;
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if (!Object.is(t[c * rows + r], whole[r * cols + c])) mismatches++;
      expect(mismatches).toBe(0);
    }
    await st.close();
  });

  it('writes shards with an index that Checkpoint reads back', async () => {
    const dir = path.join(root, 'sharded');
    await fs.mkdir(dir);
    const mk = (name: string, n: number) => ({ name, dtype: 'F32' as const, shape: [n], data: encodeFromF32(new Float32Array(n).fill(n), 'F32') });
    const r = await writeShardedSafetensors(dir, [mk('x', 100), mk('y', 100), mk('z', 10)], { maxShardBytes: 500 });
    expect(r.files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    const ck = await Checkpoint.open(dir);
    expect(ck.indexed).toBe(true);
    expect(ck.info('z').file).toBe('model-00002-of-00002.safetensors');
    expect((await ck.readFloat32('y'))[99]).toBe(100);
    expect(ck.parameterCount).toBe(210);
    await ck.close();
  });
});

describe('header validation', () => {
  const valid = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, ...extra });
  it('accepts a valid header', () => {
    expect(parseHeader(valid(), 8, 'x').tensors.get('t')!.shape).toEqual([2]);
  });
  const cases: [string, string, number, RegExp][] = [
    ['not JSON', '{', 8, /not JSON/],
    ['offsets past the end', valid(), 4, /outside the file/],
    ['dtype × shape ≠ bytes', JSON.stringify({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }), 16, /needs 12 bytes/],
    ['overlap', JSON.stringify({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }), 16, /overlap/],
    ['unknown dtype', JSON.stringify({ t: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }), 8, /unknown dtype/],
    ['negative shape', JSON.stringify({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }), 8, /invalid shape/],
    ['offsets reversed', JSON.stringify({ t: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }), 8, /out of order/],
    ['metadata not strings', valid({ __metadata__: { a: 1 } }), 8, /not a string/],
  ];
  for (const [name, json, size, re] of cases) {
    it(`refuses ${name}`, () => {
      expect(() => parseHeader(json, size, 'x')).toThrow(re);
    });
  }

  it('refuses truncated files, oversized header lengths and short files', async () => {
    const good = path.join(root, 'good.safetensors');
    await writeSafetensors(good, [{ name: 't', dtype: 'F32', shape: [4], data: new Uint8Array(16) }]);
    const bytes = await fs.readFile(good);
    const truncated = path.join(root, 'trunc.safetensors');
    await fs.writeFile(truncated, bytes.subarray(0, bytes.length - 3));
    await expect(SafetensorsFile.open(truncated)).rejects.toThrow(/truncated/);
    const huge = Buffer.from(bytes);
    huge.writeBigUInt64LE(10n ** 12n, 0);
    const hugeFile = path.join(root, 'huge.safetensors');
    await fs.writeFile(hugeFile, huge);
    await expect(SafetensorsFile.open(hugeFile)).rejects.toThrow(/exceeds/);
    const short = path.join(root, 'short.safetensors');
    await fs.writeFile(short, Buffer.from([1, 2, 3]));
    await expect(SafetensorsFile.open(short)).rejects.toThrow(/shorter than/);
    const { header } = encodeHeader([{ name: 't', dtype: 'F32', shape: [1000] }]);
    const lying = path.join(root, 'lying.safetensors');
    await fs.writeFile(lying, Buffer.concat([header, Buffer.alloc(16)]));
    await expect(SafetensorsFile.open(lying)).rejects.toThrow(/outside the file/);
  });
});

describe('header validation as the reference does it', () => {
  /** A file whose header JSON is padded with 7 spaces, so a length cut up to 7 bytes short still parses. */
  async function paddedFile(name: string): Promise<{ file: string; bytes: Buffer }> {
    const json = JSON.stringify({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }) + ' '.repeat(7);
    const head = Buffer.alloc(8);
    head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
    const data = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
    const bytes = Buffer.concat([head, Buffer.from(json), data]);
    const file = path.join(root, name);
    await fs.writeFile(file, bytes);
    return { file, bytes };
  }

  it('accepts the padded file as written', async () => {
    const { file } = await paddedFile('padded.safetensors');
    const st = await SafetensorsFile.open(file);
    expect(await st.readFloat32('b')).toEqual(new Float32Array([3, 4]));
    await st.close();
  });

  for (let short = 1; short <= 7; short++) {
    it(`refuses a header length ${short} byte(s) short (inside the padding) instead of reading shifted tensors`, async () => {
      const { bytes } = await paddedFile(`short-${short}.safetensors`);
      const cut = Buffer.from(bytes);
      cut.writeBigUInt64LE(cut.readBigUInt64LE(0) - BigInt(short), 0);
      const file = path.join(root, `short-${short}-cut.safetensors`);
      await fs.writeFile(file, cut);
      await expect(SafetensorsFile.open(file)).rejects.toThrow(/header length is wrong/);
    });
  }

  const entry = (dtype: unknown, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  const cases: [string, string, number, RegExp][] = [
    ['trailing bytes after the last tensor', JSON.stringify({ t: entry('F32', [2], [0, 8]) }), 12, /header length is wrong or bytes were appended/],
    ['a gap between tensors', JSON.stringify({ a: entry('F32', [1], [0, 4]), b: entry('F32', [1], [8, 12]) }), 12, /belong to no tensor/],
    ['data not starting at 0', JSON.stringify({ a: entry('F32', [1], [4, 8]) }), 8, /bytes 0\.\.4 .* belong to no tensor/],
    ['an empty header with data', JSON.stringify({}), 4, /cover 0 bytes but the data section has 4/],
    ['a shape product that overflows', JSON.stringify({ t: entry('F32', [2 ** 52, 2 ** 52, 0], [0, 0]) }), 0, /overflows/],
    ['a fractional dim', JSON.stringify({ t: entry('F32', [1.5], [0, 6]) }), 6, /invalid shape/],
    ['a dim given as a string', JSON.stringify({ t: entry('F32', ['2'], [0, 8]) }), 8, /invalid shape/],
    ['a tensor entry that is an array', JSON.stringify({ t: [] }), 0, /entry "t" is not an object/],
    ['an unknown dtype', JSON.stringify({ t: entry('F4', [2], [0, 1]) }), 1, /unknown dtype "F4"/],
    ['a dtype nested a million levels deep', `{"t":{"dtype":${'['.repeat(1e6)}${']'.repeat(1e6)},"shape":[1],"data_offsets":[0,4]}}`, 4, /deeper than 3 levels/],
    ['metadata nested deeper than a header can be', JSON.stringify({ __metadata__: { a: [[1]] } }), 0, /deeper than 3 levels/],
  ];
  for (const [name, json, size, re] of cases) {
    it(`refuses ${name} with BAD_SAFETENSORS`, () => {
      let caught: unknown;
      try {
        parseHeader(json, size, 'x');
      } catch (err) {
        caught = err;
      }
      expect(caught, 'expected a refusal').toBeInstanceOf(FopeifyError);
      expect((caught as FopeifyError).code).toBe('BAD_SAFETENSORS');
      expect((caught as Error).message).toMatch(re);
    });
  }

  it('accepts zero-sized tensors anywhere in the contiguous layout', () => {
    const json = JSON.stringify({ a: entry('F32', [1], [0, 4]), e: entry('F16', [0, 3], [4, 4]), b: entry('U8', [2], [4, 6]) });
    expect([...parseHeader(json, 6, 'x').tensors.keys()].sort()).toEqual(['a', 'b', 'e']);
  });

  it('refuses a header that is not UTF-8', async () => {
    const json = Buffer.concat([Buffer.from('{"'), Buffer.from([0xff]), Buffer.from('":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}')]);
    const head = Buffer.alloc(8);
    head.writeBigUInt64LE(BigInt(json.length), 0);
    const file = path.join(root, 'latin1.safetensors');
    await fs.writeFile(file, Buffer.concat([head, json]));
    await expect(SafetensorsFile.open(file)).rejects.toThrow(/not UTF-8/);
  });

  it.runIf(process.platform !== 'win32')('refuses a FIFO given by path without blocking', { timeout: 10_000 }, async () => {
    const fifo = path.join(root, 'fifo.safetensors');
    execFileSync('mkfifo', [fifo]);
    await expect(SafetensorsFile.open(fifo)).rejects.toThrow(/is a FIFO, not a regular file/);
  });
});
