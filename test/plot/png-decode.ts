/** A strict little PNG reader for the tests: checks signature and CRCs, inflates 8-bit RGB, filter 0 only. */
import { inflateSync } from 'node:zlib';
import { crc32 } from '../../src/plot/index.js';

export interface DecodedPng {
  width: number;
  height: number;
  chunks: string[];
  pixel(x: number, y: number): [number, number, number];
}

export function decodePng(buf: Buffer): DecodedPng {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  sig.forEach((b, i) => {
    if (buf[i] !== b) throw new Error('bad PNG signature');
  });
  let pos = 8;
  const chunks: string[] = [];
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos);
    const type = buf.toString('ascii', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    const crc = buf.readUInt32BE(pos + 8 + len);
    if (crc !== crc32(buf.subarray(pos + 4, pos + 8 + len))) throw new Error(`bad CRC in ${type}`);
    chunks.push(type);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8 || data[9] !== 2) throw new Error('expected 8-bit RGB');
    }
    if (type === 'IDAT') idat.push(data);
    pos += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 3 + 1;
  if (raw.length !== stride * height) throw new Error(`IDAT has ${raw.length} bytes, expected ${stride * height}`);
  for (let y = 0; y < height; y++) if (raw[y * stride] !== 0) throw new Error('unexpected filter type');
  return {
    width,
    height,
    chunks,
    pixel: (x, y) => {
      const i = y * stride + 1 + x * 3;
      return [raw[i]!, raw[i + 1]!, raw[i + 2]!];
    },
  };
}
