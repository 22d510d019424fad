/**
 * `--engine torch`: a FoPE folder run by its own Python code (fope_runner.py → the plain PyTorch core the
 * transformers remote code wraps), so users can cross-check fopeify's TensorFlow.js runtime against it.
 */
import path from 'node:path';
import { loadModelSpec } from '../config/load.js';
import { FopeifyError } from '../errors.js';
import { findTorchPython, runPython, type FindPythonOptions, type TorchPython } from './python.js';
import { missingRemoteCode, RUNNER_FILE, staleRemoteCode } from './remote-code.js';

export const ENGINES = ['tfjs', 'torch'] as const;
export type Engine = (typeof ENGINES)[number];

export interface TorchRunOptions extends FindPythonOptions {
  /** A python already found (skips the search). */
  found?: TorchPython;
  timeoutMs?: number;
  /**
   * Run the folder's Python files even when they differ from this fopeify's copies (another fopeify
   * version, edits, or a repository's own code). Default false: only fopeify's own code is executed.
   */
  trustRemoteCode?: boolean;
}

/** Check the folder can be run by its Python code: a supported config and every Python file present. */
export async function checkTorchFolder(dir: string): Promise<void> {
  await loadModelSpec(dir); // the same config errors as every other command
  const missing = await missingRemoteCode(dir);
  if (missing.length) {
    throw new FopeifyError(
      'BAD_CONFIG',
      `${dir} lacks ${missing.join(', ')}, the Python code the torch engine runs; folders written before fopeify wrote remote code (or with \`archName\` keep) have none — reconvert, or run \`fopeify push\`/\`fopeify convert\` to write them`,
      { option: 'archName' },
    );
  }
}

async function runner(dir: string, args: string[], options: TorchRunOptions): Promise<string> {
  await checkTorchFolder(dir);
  const differ = options.trustRemoteCode ? [] : await staleRemoteCode(dir);
  if (differ.length) {
    throw new FopeifyError(
      'BAD_ARGUMENT',
      `${dir}: ${differ.join(', ')} differ from this fopeify's copies (another fopeify version, edited, or not fopeify's code); pass \`trustRemoteCode\` to run the folder's own files anyway, or refresh them with \`fopeify push\``,
      { option: 'trustRemoteCode' },
    );
  }
  const py = options.found ?? (await findTorchPython(options));
  return runPython(py.python, path.join(dir, RUNNER_FILE), args, { env: options.env, timeoutMs: options.timeoutMs });
}

/** Logits `[T][V]` of one sequence, computed by the folder's own Python code (float32). */
export async function torchLogits(dir: string, ids: readonly number[], options: TorchRunOptions = {}): Promise<Float32Array[]> {
  const out = await runner(dir, ['logits', '--ids', ids.join(',')], options);
  let parsed: { logits?: number[][] };
  try {
    parsed = JSON.parse(out) as { logits?: number[][] };
  } catch {
    throw new FopeifyError('INTERNAL', 'the PyTorch engine printed no valid JSON');
  }
  if (!Array.isArray(parsed.logits) || parsed.logits.length !== ids.length) throw new FopeifyError('INTERNAL', `the PyTorch engine returned no logits for ${ids.length} positions`);
  return parsed.logits.map((r) => Float32Array.from(r));
}

/** Greedy continuation (token ids) by the folder's own Python code with its KV cache. */
export async function torchGenerate(dir: string, ids: readonly number[], maxNewTokens: number, options: TorchRunOptions = {}): Promise<number[]> {
  const out = await runner(dir, ['generate', '--ids', ids.join(','), '--max-new-tokens', String(maxNewTokens)], options);
  return (JSON.parse(out) as { ids: number[] }).ids;
}
