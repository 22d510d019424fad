/**
 * Element types of safetensors files and exact conversions between the float ones.
 * Pure functions over typed arrays (little-endian, as safetensors stores them).
 */
import { FopeifyError } from '../errors.js';

export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
} as const;

export type Dtype = keyof typeof DTYPE_SIZES;
/** The float dtypes fopeify decodes to float32 and encodes back. */
export type FloatDtype = 'F32' | 'F16' | 'BF16';

/**
 * The float dtypes by the names users write (`--dtype f32|bf16|f16`), with their safetensors and
 * torch (`config.json` torch_dtype) spellings: the one table every writer of weights and configs reads.
 */
export const FLOAT_DTYPE_NAMES = {
  f32: { safetensors: 'F32', torch: 'float32' },
  bf16: { safetensors: 'BF16', torch: 'bfloat16' },
  f16: { safetensors: 'F16', torch: 'float16' },
} as const satisfies Record<string, { safetensors: FloatDtype; torch: string }>;

/** A float dtype as users write it: `f32`, `bf16`, `f16`. */
export type FloatDtypeName = keyof typeof FLOAT_DTYPE_NAMES;

/** `config.json`'s torch_dtype for a safetensors float dtype: F32 → float32, BF16 → bfloat16, F16 → float16. */
export function torchDtypeOf(dtype: FloatDtype): string {
  return Object.values(FLOAT_DTYPE_NAMES).find((n) => n.safetensors === dtype)!.torch;
}

export function isDtype(s: string): s is Dtype {
  return Object.prototype.hasOwnProperty.call(DTYPE_SIZES, s);
}

export function isFloatDtype(d: string): d is FloatDtype {
  return d === 'F32' || d === 'F16' || d === 'BF16';
}

export function dtypeSize(d: Dtype): number {
  return DTYPE_SIZES[d];
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN. */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return ((bits >>> 16) | 0x0040) & 0xffff;
  const rounding = 0x7fff + ((bits >>> 16) & 1);
  return ((bits + rounding) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

/** float16 bits → float32 value (exact: every f16 is representable). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 → float16 bits, round to nearest even, with subnormals, overflow to infinity. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    mant |= 0x800000;
    const shift = 14 - e; // 14..24
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && (m & 1))) m += 1;
    return sign | m; // m may carry into the exponent field: that is the correct smallest normal
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  let out = sign | (e << 10) | m;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1))) out += 1; // carry may overflow into exponent/infinity: correct
  return out;
}

/** 16-bit elements of `bytes`: a view when aligned (read only here), else an aligned copy. */
function uint16View(bytes: Uint8Array): Uint16Array {
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const copy = new Uint16Array(bytes.byteLength / 2);
  new Uint8Array(copy.buffer).set(bytes);
  return copy;
}

/** Decode raw little-endian bytes of a float dtype to a new float32 array. */
export function decodeToF32(bytes: Uint8Array, dtype: string): Float32Array {
  const n = bytes.byteLength;
  if (dtype === 'F32') {
    const out = new Float32Array(n / 4);
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  if (dtype === 'F64') {
    const copy = new Float64Array(n / 8);
    new Uint8Array(copy.buffer).set(bytes);
    return Float32Array.from(copy);
  }
  if (dtype === 'BF16' || dtype === 'F16') {
    const out = new Float32Array(n / 2);
    widen16Into(bytes, dtype, out, 0);
    return out;
  }
  throw new FopeifyError('BAD_ARGUMENT', `cannot decode dtype ${dtype} as float`);
}

/** Widen raw little-endian bf16/f16 `bytes` to float32 into `out` from element `at` (no buffer of its own). */
export function widen16Into(bytes: Uint8Array, dtype: 'BF16' | 'F16', out: Float32Array, at: number): void {
  const src = uint16View(bytes);
  if (dtype === 'BF16') {
    const ou = new Uint32Array(out.buffer, out.byteOffset + 4 * at, src.length);
    for (let i = 0; i < src.length; i++) ou[i] = src[i]! << 16;
  } else {
    for (let i = 0; i < src.length; i++) out[at + i] = f16BitsToF32(src[i]!);
  }
}

/** Encode float32 values as raw little-endian bytes of a float dtype. */
export function encodeFromF32(values: Float32Array, dtype: FloatDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice();
  const out = new Uint16Array(values.length);
  if (dtype === 'BF16') for (let i = 0; i < values.length; i++) out[i] = f32ToBf16Bits(values[i]!);
  else for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]!);
  return new Uint8Array(out.buffer);
}

/** Convert raw bytes between float dtypes (exact where the target can represent the value). */
export function convertBytes(bytes: Uint8Array, from: string, to: FloatDtype): Uint8Array {
  if (from === to) return bytes;
  return encodeFromF32(decodeToF32(bytes, from), to);
}
