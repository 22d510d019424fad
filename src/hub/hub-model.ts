import { FopeifyError } from '../errors.js';
import type { ModelSourceOptions, ResolvedModel } from './source.js';

/** Resolve a Hub id from the local cache or by downloading. (Filled in by the Hub work.) */
export async function resolveHubModel(model: string, _options: ModelSourceOptions): Promise<ResolvedModel> {
  throw new FopeifyError('MODEL_NOT_FOUND', `model not found: ${model} is not a local folder`);
}
