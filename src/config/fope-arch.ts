/**
 * The names of fopeify's remote-code FoPE folders (engines.md §2): `model_type` `<base>_fope`,
 * `architectures: ["Fope<Base>ForCausalLM"]`, an `auto_map` into the folder's `configuration_fope.py` /
 * `modeling_fope.py`, and the base family recorded as `fope_base_model_type`. A custom model_type makes a
 * loader that forgets `trust_remote_code=True` fail loudly instead of silently running plain RoPE.
 * Pure: names in, names out; model-spec.ts maps them back to the family, convert and finetune write them.
 */
import { FopeifyError } from '../errors.js';
import type { Family } from './model-spec.js';

export const FOPE_FAMILIES: readonly Family[] = ['llama', 'mistral', 'qwen2', 'qwen3'];

/** How a FoPE folder names its architecture: its own remote-code name (default) or the stock one. */
export type ArchName = 'fope' | 'keep';
export const ARCH_NAMES: readonly ArchName[] = ['fope', 'keep'];

/** The config key that records the base family of a `<base>_fope` folder. */
export const BASE_MODEL_TYPE_KEY = 'fope_base_model_type';
/** The config key that records the coefficient layout (the remote code builds its modules from it). */
export const FOPE_LAYOUT_KEY = 'fope_layout';

const STEMS: Record<Family, string> = { llama: 'Llama', mistral: 'Mistral', qwen2: 'Qwen2', qwen3: 'Qwen3' };

export const fopeModelType = (family: Family): string => `${family}_fope`;
export const fopeArchitecture = (family: Family): string => `Fope${STEMS[family]}ForCausalLM`;
export const stockArchitecture = (family: Family): string => `${STEMS[family]}ForCausalLM`;

/** `auto_map` of a FoPE folder: the classes transformers imports from the folder's files. */
export function fopeAutoMap(family: Family): Record<string, string> {
  const stem = STEMS[family];
  return {
    AutoConfig: `configuration_fope.Fope${stem}Config`,
    AutoModel: `modeling_fope.Fope${stem}Model`,
    AutoModelForCausalLM: `modeling_fope.Fope${stem}ForCausalLM`,
  };
}

function isFamily(x: unknown): x is Family {
  return typeof x === 'string' && (FOPE_FAMILIES as readonly string[]).includes(x);
}

/**
 * The base family of a config written with fopeify's FoPE names, or undefined for any other config.
 * An unknown or contradictory base is an error (the folder says it is FoPE remote code, and fopeify
 * cannot tell which decoder it is).
 */
export function fopeBaseFamily(raw: Record<string, unknown>): Family | undefined {
  const modelType = typeof raw.model_type === 'string' ? raw.model_type : '';
  const archs = Array.isArray(raw.architectures) ? (raw.architectures as unknown[]).map(String) : [];
  const recorded = raw[BASE_MODEL_TYPE_KEY];
  const fromType = modelType.endsWith('_fope') ? modelType.slice(0, -'_fope'.length) : undefined;
  const fromArch = archs.map((a) => FOPE_FAMILIES.find((f) => fopeArchitecture(f) === a)).find((f) => f !== undefined);
  const namesFope = fromType !== undefined || recorded !== undefined || archs.some((a) => /^Fope\w+ForCausalLM$/.test(a));
  if (!namesFope) return undefined;
  const base = recorded ?? fromType ?? fromArch;
  if (!isFamily(base)) {
    throw new FopeifyError(
      'UNSUPPORTED_ARCHITECTURE',
      `unknown FoPE base family ${JSON.stringify(base ?? archs[0] ?? modelType)} (${recorded !== undefined ? BASE_MODEL_TYPE_KEY : modelType ? `model_type ${modelType}` : 'architectures'}); supported: ${FOPE_FAMILIES.join(', ')}`,
    );
  }
  if (fromType !== undefined && fromType !== base) {
    throw new FopeifyError('BAD_CONFIG', `model_type ${modelType} disagrees with ${BASE_MODEL_TYPE_KEY} ${String(recorded)}`);
  }
  return base;
}

/**
 * A FoPE config under the naming `arch`: `fope` sets model_type, architectures, auto_map, the base family
 * and the coefficient layout; `keep` restores the stock names (for lmdeploy's PyTorch engine) and drops
 * those keys. Returns a new object; the rest of the config is kept as is.
 */
export function namedFopeConfig(config: Record<string, unknown>, family: Family, arch: ArchName, layout: 'shared' | 'per-layer'): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config };
  delete out.auto_map;
  delete out[BASE_MODEL_TYPE_KEY];
  if (arch === 'keep') {
    out.model_type = family;
    out.architectures = [stockArchitecture(family)];
    delete out[FOPE_LAYOUT_KEY];
    return out;
  }
  out.model_type = fopeModelType(family);
  out.architectures = [fopeArchitecture(family)];
  out.auto_map = fopeAutoMap(family);
  out[BASE_MODEL_TYPE_KEY] = family;
  out[FOPE_LAYOUT_KEY] = layout;
  return out;
}

/** The config names FoPE the remote-code way (`<base>_fope`). */
export function hasFopeArchName(raw: Record<string, unknown>): boolean {
  return typeof raw.model_type === 'string' && raw.model_type.endsWith('_fope');
}
