import { FopeifyError } from '../errors.js';
import { MAX_CONFIG_BYTES, ModelFolder } from '../io/model-folder.js';
import { parseModelConfig, type ModelSpec } from './model-spec.js';

/** Read and parse `<dir>/config.json` (a regular file of the folder, at most MAX_CONFIG_BYTES). */
export async function loadModelSpec(dir: string): Promise<ModelSpec> {
  const folder = ModelFolder.at(dir);
  const raw = await folder.readJson('config.json', { maxBytes: MAX_CONFIG_BYTES, code: 'BAD_CONFIG' });
  if (raw === undefined) throw new FopeifyError('BAD_CONFIG', `${dir} has no config.json`);
  return parseModelConfig(raw, folder.pathOf('config.json'));
}
