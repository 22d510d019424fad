/**
 * Typed, bounded reads of config.json numbers. Every count that sizes an allocation or a loop is read
 * here, so an absurd or mistyped value (`hidden_size: 2**31`, `num_hidden_layers: -1`, `"64"`) is a
 * BAD_CONFIG naming the key before anything is allocated. A key that is absent or null takes its
 * default (HF writes `null` for unset optional fields such as `head_dim` or `sliding_window`).
 */
import { FopeifyError } from '../errors.js';

/**
 * Upper bounds for counts. Generous for real checkpoints (Llama 3.1 405B: hidden 16384, intermediate
 * 53248, 126 layers, 128 heads, vocab 128256; Llama 4 Scout: 10M context) and small enough that one
 * layer's tensors, a loop over layers or a rope table built from them cannot exhaust memory by itself.
 */
export const CONFIG_LIMITS = {
  hidden_size: 131_072,
  intermediate_size: 1_048_576,
  num_hidden_layers: 1_024,
  num_attention_heads: 4_096,
  head_dim: 4_096,
  vocab_size: 16_777_216,
  /** 2^24: positions stay exact in float32 (the rotary positions are float32, as in torch). */
  max_position_embeddings: 16_777_216,
  /** Parameters implied by the dimensions: ~2.5× Llama 3.1 405B. */
  parameters: 1e12,
} as const;

export interface IntBounds {
  min: number;
  max: number;
}

export interface FloatBounds {
  /** Inclusive lower bound, or exclusive when `minExclusive`. */
  min?: number;
  minExclusive?: boolean;
  max?: number;
}

/** Reads keys of one JSON object (config.json or its rope dict) and names the source in errors. */
export class ConfigFields {
  constructor(
    readonly raw: Record<string, unknown>,
    /** How errors name the object, e.g. `config.json` or `config.json rope_scaling`. */
    readonly source: string,
  ) {}

  /** True when the key is present and not null. */
  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  private bad(key: string, what: string): FopeifyError {
    return new FopeifyError('BAD_CONFIG', `${this.source}: ${key} must be ${what} (got ${describe(this.raw[key])})`);
  }

  /** An integer in [min, max]; `fallback` when absent (a required key has none). */
  int(key: string, bounds: IntBounds, fallback?: number): number {
    if (!this.has(key)) {
      if (fallback === undefined) throw new FopeifyError('BAD_CONFIG', `${this.source} is missing ${key}`);
      return fallback;
    }
    const v = this.raw[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < bounds.min || v > bounds.max) {
      throw this.bad(key, `an integer in ${bounds.min}..${bounds.max}`);
    }
    return v;
  }

  /** A finite number within the bounds; `fallback` when absent. */
  float(key: string, bounds: FloatBounds, fallback: number): number;
  float(key: string, bounds: FloatBounds): number | undefined;
  float(key: string, bounds: FloatBounds, fallback?: number): number | undefined {
    if (!this.has(key)) return fallback;
    const v = this.raw[key];
    const { min, max, minExclusive } = bounds;
    const ok =
      typeof v === 'number' &&
      Number.isFinite(v) &&
      (min === undefined || (minExclusive ? v > min : v >= min)) &&
      (max === undefined || v <= max);
    if (!ok) throw this.bad(key, floatRange(bounds));
    return v as number;
  }
}

function floatRange({ min, max, minExclusive }: FloatBounds): string {
  if (min !== undefined && max !== undefined) return `a finite number in ${minExclusive ? '(' : '['}${min}, ${max}]`;
  if (min !== undefined) return `a finite number ${minExclusive ? '>' : '≥'} ${min}`;
  if (max !== undefined) return `a finite number ≤ ${max}`;
  return 'a finite number';
}

/** A short rendering of a bad value for an error message (never a whole nested object). */
export function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (v && typeof v === 'object') return 'an object';
  return String(v);
}
