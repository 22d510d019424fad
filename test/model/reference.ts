/**
 * An independent float64 reference of the Llama-family forward pass, written as plain loops over
 * Float64Array, one token at a time, sharing no code with src/model (and none with src/rope's FoPE
 * tables or rotation: only the inv_freq table of each rope variant comes from src/rope). The tests
 * compare the tfjs runtime against it.
 */
import type { ModelSpec } from '../../src/config/model-spec.js';
import { loadModelSpec } from '../../src/config/load.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { ropeFrequencies } from '../../src/rope/inv-freq.js';

export interface RefModel {
  spec: ModelSpec;
  w: Map<string, Float64Array>;
  shapes: Map<string, number[]>;
}

/** Every tensor of a checkpoint as float64, names with `model.language_model.` read as `model.`. */
export async function loadReference(dir: string): Promise<RefModel> {
  const spec = await loadModelSpec(dir);
  const ckpt = await Checkpoint.open(dir);
  const w = new Map<string, Float64Array>();
  const shapes = new Map<string, number[]>();
  for (const [name, info] of ckpt.tensors) {
    const n = name.replace(/^model\.language_model\./, 'model.');
    w.set(n, Float64Array.from(await ckpt.readFloat32(name)));
    shapes.set(n, info.shape);
  }
  await ckpt.close();
  return { spec, w, shapes };
}

function get(m: RefModel, name: string): Float64Array {
  const v = m.w.get(name);
  if (!v) throw new Error(`reference: no tensor ${name}`);
  return v;
}

/** y = W x (+ b), W row-major [out, in]. */
function matvec(W: Float64Array, x: Float64Array, out: number, b?: Float64Array): Float64Array {
  const inn = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0;
    const row = o * inn;
    for (let i = 0; i < inn; i++) s += W[row + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rms(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! * x[i]!;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i]! * r * w[i]!;
  return y;
}

/**
 * cos/sin of length `dim` for position p and coefficient group g (fope.md §3–4, written out again):
 * RoPE: cos(p ω_j)·af; FoPE: Σ_j cos(p ω_j)·cos_coef[g, j, d] (padded with 1; sin padded with sinPad)·af.
 */
function cosSin(
  m: RefModel,
  freq: { invFreq: Float32Array; attentionFactor: number },
  layer: number,
  p: number,
  g: number,
): { cos: Float64Array; sin: Float64Array } {
  const { spec } = m;
  const dim = spec.rope.dim;
  const half = dim / 2;
  const { invFreq, attentionFactor } = freq;
  const cos = new Float64Array(dim);
  const sin = new Float64Array(dim);
  const layerCoef = `model.layers.${layer}.self_attn.rotary_emb`;
  const prefix = m.w.has(`${layerCoef}.sin_coef`) ? layerCoef : m.w.has('model.rotary_emb.sin_coef') ? 'model.rotary_emb' : null;
  if (!prefix) {
    for (let j = 0; j < half; j++) {
      const phi = p * invFreq[j]!;
      cos[j] = cos[j + half] = Math.cos(phi) * attentionFactor;
      sin[j] = sin[j + half] = Math.sin(phi) * attentionFactor;
    }
    return { cos, sin };
  }
  const sc = get(m, `${prefix}.sin_coef`);
  const cc = get(m, `${prefix}.cos_coef`);
  const shape = m.shapes.get(`${prefix}.sin_coef`)!;
  const G = shape.length === 3 ? shape[0]! : 1;
  const K = shape[shape.length - 2]!;
  const out = shape[shape.length - 1]!;
  const gg = G === 1 ? 0 : g;
  const sinPad = spec.fope?.sinPad ?? 1;
  for (let d = 0; d < half; d++) {
    let c = 1;
    let s = sinPad;
    if (d < out) {
      c = 0;
      s = 0;
      for (let j = 0; j < K; j++) {
        const phi = p * invFreq[j]!;
        c += Math.cos(phi) * cc[gg * K * out + j * out + d]!;
        s += Math.sin(phi) * sc[gg * K * out + j * out + d]!;
      }
    }
    cos[d] = cos[d + half] = c * attentionFactor;
    sin[d] = sin[d + half] = s * attentionFactor;
  }
  return { cos, sin };
}

/** x' = x·cos + rotate_half(x)·sin on the first `dim` entries of one head vector (in place on a copy). */
function rotate(x: Float64Array, cos: Float64Array, sin: Float64Array): Float64Array {
  const dim = cos.length;
  const half = dim / 2;
  const y = Float64Array.from(x);
  for (let i = 0; i < dim; i++) {
    const r = i < half ? -x[i + half]! : x[i - half]!;
    y[i] = x[i]! * cos[i]! + r * sin[i]!;
  }
  return y;
}

/** Logits [T][V] of one sequence, positions 0..T−1 (or the given ones). */
export function referenceLogits(m: RefModel, ids: readonly number[], positions?: readonly number[]): Float64Array[] {
  const { spec } = m;
  const H = spec.hiddenSize;
  const nH = spec.numHeads;
  const nKv = spec.numKvHeads;
  const D = spec.headDim;
  const R = nH / nKv;
  const T = ids.length;
  const pos = positions ?? ids.map((_, i) => i);
  // Dynamic NTK and longrope depend on the sequence length: HF uses max(position) + 1.
  const freq = ropeFrequencies(spec.rope, Math.floor(Math.max(...pos)) + 1);
  const E = get(m, 'model.embed_tokens.weight');
  let xs: Float64Array[] = ids.map((id) => E.slice(id * H, (id + 1) * H));
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `model.layers.${l}`;
    const a = `${p}.self_attn`;
    const Q: Float64Array[][] = [];
    const Kc: Float64Array[][] = [];
    const Vc: Float64Array[][] = [];
    for (let t = 0; t < T; t++) {
      const xn = rms(xs[t]!, get(m, `${p}.input_layernorm.weight`), spec.rmsNormEps);
      const q = matvec(get(m, `${a}.q_proj.weight`), xn, nH * D, m.w.get(`${a}.q_proj.bias`));
      const k = matvec(get(m, `${a}.k_proj.weight`), xn, nKv * D, m.w.get(`${a}.k_proj.bias`));
      const v = matvec(get(m, `${a}.v_proj.weight`), xn, nKv * D, m.w.get(`${a}.v_proj.bias`));
      const qh: Float64Array[] = [];
      const kh: Float64Array[] = [];
      const vh: Float64Array[] = [];
      for (let h = 0; h < nH; h++) {
        let x = q.slice(h * D, (h + 1) * D);
        if (spec.qkNorm) x = rms(x, get(m, `${a}.q_norm.weight`), spec.rmsNormEps);
        const g = Math.floor(h / R);
        const { cos, sin } = cosSin(m, freq, l, pos[t]!, g);
        qh.push(rotate(x, cos, sin));
      }
      for (let g = 0; g < nKv; g++) {
        let x = k.slice(g * D, (g + 1) * D);
        if (spec.qkNorm) x = rms(x, get(m, `${a}.k_norm.weight`), spec.rmsNormEps);
        const { cos, sin } = cosSin(m, freq, l, pos[t]!, g);
        kh.push(rotate(x, cos, sin));
        vh.push(v.slice(g * D, (g + 1) * D));
      }
      Q.push(qh);
      Kc.push(kh);
      Vc.push(vh);
    }
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const attn = new Float64Array(nH * D);
      for (let h = 0; h < nH; h++) {
        const g = Math.floor(h / R);
        const win = spec.slidingWindow;
        const first = win ? Math.max(0, t - win + 1) : 0;
        const scores: number[] = [];
        for (let j = first; j <= t; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += Q[t]![h]![d]! * Kc[j]![g]![d]!;
          scores.push(s / Math.sqrt(D));
        }
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const z = e.reduce((x, y) => x + y, 0);
        for (let j = first; j <= t; j++) {
          const pj = e[j - first]! / z;
          for (let d = 0; d < D; d++) attn[h * D + d] += pj * Vc[j]![g]![d]!;
        }
      }
      const o = matvec(get(m, `${a}.o_proj.weight`), attn, H, m.w.get(`${a}.o_proj.bias`));
      const h1 = xs[t]!.map((v, i) => v + o[i]!);
      const y = rms(h1, get(m, `${p}.post_attention_layernorm.weight`), spec.rmsNormEps);
      const I = spec.intermediateSize;
      const gate = matvec(get(m, `${p}.mlp.gate_proj.weight`), y, I, m.w.get(`${p}.mlp.gate_proj.bias`));
      const up = matvec(get(m, `${p}.mlp.up_proj.weight`), y, I, m.w.get(`${p}.mlp.up_proj.bias`));
      const act = gate.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[i]!);
      const down = matvec(get(m, `${p}.mlp.down_proj.weight`), act, H, m.w.get(`${p}.mlp.down_proj.bias`));
      next.push(h1.map((v, i) => v + down[i]!));
    }
    xs = next;
  }
  const head = m.w.get('lm_head.weight') ?? E;
  return xs.map((x) => matvec(head, rms(x, get(m, 'model.norm.weight'), spec.rmsNormEps), spec.vocabSize));
}

/** max |a − b| / max |b| over all entries. */
export function relMaxError(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let num = 0;
  let den = 0;
  for (let t = 0; t < b.length; t++) {
    for (let i = 0; i < b[t]!.length; i++) {
      num = Math.max(num, Math.abs(a[t]![i]! - b[t]![i]!));
      den = Math.max(den, Math.abs(b[t]![i]!));
    }
  }
  return num / den;
}
