/**
 * A small seeded generator, so everything fopeify draws (FoPE coefficients, LoRA initial factors, data
 * shuffles, needle prompts, sampling, tiny checkpoints) is a deterministic function of (seed, tag) on every
 * machine and Node version. (Math.random cannot be seeded; tfjs's random ops depend on the backend.)
 */

/** 32-bit FNV-1a of a string, to derive independent streams from one user seed. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** xoshiro128** seeded through splitmix32: fast, well distributed, exactly reproducible. */
export class SeededRandom {
  private s = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed: number, tag = '') {
    let x = (fnv1a(`${seed}:${tag}`) ^ (Math.floor(seed) >>> 0)) >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if (this.s.every((v) => v === 0)) this.s[0] = 1;
  }

  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2] ^= s[0]!;
    s[3] ^= s[1]!;
    s[1] ^= s[2]!;
    s[0] ^= s[3]!;
    s[2] ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 bits. */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Standard normal (Box–Muller, pairs cached). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Snapshot and restore, so training can checkpoint its RNG. */
  state(): number[] {
    return [...this.s, this.spare === null ? NaN : this.spare];
  }
  setState(st: number[]): void {
    for (let i = 0; i < 4; i++) this.s[i] = st[i]! >>> 0;
    this.spare = Number.isNaN(st[4]) || st[4] === undefined ? null : st[4]!;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
