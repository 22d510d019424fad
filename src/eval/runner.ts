/**
 * What the retrieval tests need from a model, as a small interface: tokenize, greedy decode with the KV
 * cache, and the argmax of next-token logits at chosen positions (teacher forcing). `runtimeLoader`
 * implements it with fopeify's tfjs runtime (src/model); tests can pass fakes for the pure parts.
 */
import * as tf from '../backend/tfjs.js';
import type { BackendInfo } from '../backend/select.js';
import type { ModelSourceOptions, ResolvedModel } from '../hub/source.js';
import { resolveModel } from '../hub/resolve.js';
import { FopeifyError } from '../errors.js';
import { loadModel, loadTokenizer, type TextTokenizer } from '../model/index.js';

export interface EvalTokenizer {
  /** Token ids of `text` (special tokens such as BOS added unless `addSpecialTokens` is false). */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Text of ids (special tokens skipped). */
  decode(ids: number[]): string;
}

export interface EvalModel extends EvalTokenizer {
  /** The model argument as given. */
  name: string;
  /** Greedy continuation of `ids` with the KV cache: up to `maxNewTokens` new ids (stops at EOS). */
  generateGreedy(ids: number[], maxNewTokens: number): Promise<number[]>;
  /** argmax of the next-token logits at each of `positions` of `ids` (one forward pass, teacher forcing). */
  argmaxAt(ids: number[], positions: number[]): Promise<number[]>;
  dispose(): void;
}

/** How the tests get models: a tokenizer alone (cheap, for sizing prompts) and a whole model. */
export interface EvalModelLoader {
  tokenizer(model: string): Promise<EvalTokenizer>;
  load(model: string): Promise<EvalModel>;
}

export interface RuntimeLoaderOptions {
  /** The activated backend the models compute on (default: the active one). */
  backend?: BackendInfo;
  /** Hub resolution options (revision, cache, token, offline...). */
  source?: ModelSourceOptions;
  /** Load weights holding NaN / Inf anyway (LoadWeightsOptions.allowNonFinite). */
  allowNonFinite?: boolean;
  /** Called while weights load. */
  onLoadProgress?: (model: string, done: number, total: number) => void;
  /** Rows of the attention query block in the prefill (runtime default when unset). */
  queryBlock?: number;
}

function wrapTokenizer(tok: TextTokenizer): EvalTokenizer {
  return {
    encode: (text, options) => tok.encode(text, { addSpecialTokens: options?.addSpecialTokens ?? true }),
    decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }),
  };
}

/**
 * Load a model (folder or Hub id, or one already resolved) with fopeify's runtime, as an EvalModel named
 * `model` (the argument as given).
 */
export async function loadEvalModel(model: string, options: RuntimeLoaderOptions = {}, source?: ResolvedModel): Promise<EvalModel> {
  const resolved = source ?? (await resolveModel(model, options.source));
  const tokenizer = await loadTokenizer(resolved.dir);
  const lm = await loadModel(resolved, {
    backend: options.backend,
    allowNonFinite: options.allowNonFinite,
    onProgress: (done, total) => options.onLoadProgress?.(model, done, total),
  });
  const eos = lm.spec.eosTokenId ?? tokenizer.eosTokenId;
  const tok = wrapTokenizer(tokenizer);
  return {
    name: model,
    ...tok,
    async generateGreedy(ids, maxNewTokens) {
      const r = await lm.generate(ids, { maxNewTokens, temperature: 0, eosTokenId: eos, queryBlock: options.queryBlock });
      return r.tokens;
    },
    async argmaxAt(ids, positions) {
      if (!positions.length) return [];
      for (const p of positions) {
        if (!Number.isInteger(p) || p < 0 || p >= ids.length) throw new RangeError(`position ${p} is outside 0..${ids.length - 1}`);
      }
      const h = lm.hidden(ids, { queryBlock: options.queryBlock });
      try {
        const t = tf.tidy(() => {
          const [, T, H] = h.shape;
          const rows = tf.gather(tf.reshape(h, [T, H]), tf.tensor1d(positions, 'int32')) as tf.Tensor2D;
          const logits = lm.logitsFromHidden(rows);
          // argMax of a NaN row is an arbitrary id: count the non-finite logits alongside.
          return tf.stack([tf.cast(tf.argMax(logits, 1), 'float32'), tf.cast(tf.any(tf.logicalNot(tf.isFinite(logits)), 1), 'float32')]);
        });
        const both = (await t.data()) as Float32Array;
        t.dispose();
        const n = positions.length;
        const bad = both.subarray(n).findIndex((v) => v !== 0);
        if (bad >= 0) throw new FopeifyError('NON_FINITE', `the logits at position ${positions[bad]} hold NaN or Inf: the model computes non-finite values`);
        return Array.from(both.subarray(0, n));
      } finally {
        h.dispose();
      }
    },
    dispose: () => lm.dispose(),
  };
}

/** The default loader: fopeify's tfjs runtime. Each model is resolved once, for its tokenizer and its weights. */
export function runtimeLoader(options: RuntimeLoaderOptions = {}): EvalModelLoader {
  const resolutions = new Map<string, Promise<ResolvedModel>>();
  const resolved = (model: string) => {
    let r = resolutions.get(model);
    if (!r) resolutions.set(model, (r = resolveModel(model, options.source)));
    return r;
  };
  return {
    async tokenizer(model) {
      return wrapTokenizer(await loadTokenizer((await resolved(model)).dir));
    },
    load: async (model) => loadEvalModel(model, options, await resolved(model)),
  };
}
