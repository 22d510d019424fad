/**
 * Where FoPE coefficients live in a checkpoint (fope.md §6): the names fopeify writes and every layout it
 * reads. Shared by inspect, convert and the model loader so they never disagree.
 */
export type FopeLayout = 'shared' | 'per-layer';

export const SHARED_COEF_PREFIXES = ['model.rotary_emb', 'model.language_model.rotary_emb'] as const;

export function sharedCoefName(which: 'sin' | 'cos'): string {
  return `model.rotary_emb.${which}_coef`;
}

export function perLayerCoefName(layer: number, which: 'sin' | 'cos'): string {
  return `model.layers.${layer}.self_attn.rotary_emb.${which}_coef`;
}

export type CoefFamily = 'B-shared' | 'B-per-layer' | 'A';

export interface FoundCoefficients {
  family: CoefFamily;
  /** Tensor names per layer (shared: one entry used by every layer). */
  sin: string[];
  cos: string[];
  /** Layer index of each entry (shared: [-1]). */
  layers: number[];
}

const PER_LAYER = /^(?:model\.(?:language_model\.)?)?layers\.(\d+)\.self_attn\.rotary_emb\.(sin|cos)_coef$/;
const FAMILY_A = /(?:^|\.)blocks\.(\d+)\.pos_emb\.(sin|cos)_coef$/;

/** Find FoPE coefficient tensors among a checkpoint's tensor names; null when there are none. */
export function findFopeCoefficients(names: Iterable<string>): FoundCoefficients | null {
  const all = [...names];
  for (const prefix of SHARED_COEF_PREFIXES) {
    if (all.includes(`${prefix}.sin_coef`) && all.includes(`${prefix}.cos_coef`)) {
      return { family: 'B-shared', sin: [`${prefix}.sin_coef`], cos: [`${prefix}.cos_coef`], layers: [-1] };
    }
  }
  for (const [re, family] of [
    [PER_LAYER, 'B-per-layer'],
    [FAMILY_A, 'A'],
  ] as const) {
    const byLayer = new Map<number, { sin?: string; cos?: string }>();
    for (const n of all) {
      const m = re.exec(n);
      if (!m) continue;
      const layer = Number(m[1]);
      const e = byLayer.get(layer) ?? {};
      e[m[2] as 'sin' | 'cos'] = n;
      byLayer.set(layer, e);
    }
    const layers = [...byLayer.keys()].filter((l) => byLayer.get(l)!.sin && byLayer.get(l)!.cos).sort((a, b) => a - b);
    if (layers.length) {
      return { family, layers, sin: layers.map((l) => byLayer.get(l)!.sin!), cos: layers.map((l) => byLayer.get(l)!.cos!) };
    }
  }
  return null;
}
