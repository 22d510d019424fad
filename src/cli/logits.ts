/**
 * `fopeify logits <model> --ids 1,2,3 [--json]`: the model's logits for a token sequence, one row of
 * vocab-size floats per position. Tests and external cross-checks (transformers) compare against it.
 * Also home of openModel, which every model-running command uses.
 */
import type { CommandModule } from 'yargs';
import type { BackendInfo } from '../backend/select.js';
import { FopeifyError } from '../errors.js';
import { resolveModel } from '../hub/resolve.js';
import type { ResolvedModel } from '../hub/source.js';
import { checkFiniteValues } from '../model/finite.js';
import { argmax, loadModel, type LlamaModel } from '../model/index.js';
import { sourceOptions, startBackend, withReporter, withRuntimeOptions, type RuntimeArgs } from './common.js';
import type { Reporter } from './output.js';
import { PYTHON_ENV } from '../bridge/python.js';
import { ENGINES, torchLogits, type Engine } from '../bridge/torch-engine.js';

/**
 * Resolve the model, start the backend (once per command: pass the BackendInfo of an earlier call; the
 * start prints one "backend" line on stderr), load the weights.
 */
export async function openModel(
  argv: RuntimeArgs,
  reporter: Reporter,
  started?: BackendInfo,
): Promise<{ model: LlamaModel; resolved: ResolvedModel; backend: BackendInfo }> {
  const resolved = await resolveModel(argv.model, sourceOptions(argv, reporter));
  reporter.stop();
  const backend = started ?? (await startBackend(argv));
  const loadStart = Date.now();
  const model = await loadModel(resolved, {
    backend,
    layout: 'inference',
    allowNonFinite: argv['allow-non-finite'],
    onProgress: (done, total) => reporter.update(`loading ${argv.model}: ${done}/${total} tensors`),
  });
  reporter.done(`loaded ${argv.model} (${(model.parameterCount / 1e6).toFixed(1)}M parameters) in ${((Date.now() - loadStart) / 1000).toFixed(1)} s`);
  return { model, resolved, backend };
}

/** Parse a comma-separated integer list flag, with a user-facing error. */
export function parseIntList(value: unknown, flag: string, min = 0): number[] {
  const parts = String(value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const nums = parts.map(Number);
  if (!nums.length || nums.some((n) => !Number.isInteger(n) || n < min)) {
    throw new FopeifyError('BAD_ARGUMENT', `--${flag} must be a comma-separated list of integers ≥ ${min} (got ${JSON.stringify(String(value ?? ''))})`);
  }
  return nums;
}

interface LogitsArgs extends RuntimeArgs {
  ids: string;
  top: number;
  engine: Engine;
  python?: string;
  'trust-remote-code': boolean;
}

/** Print logits rows as `fopeify logits` does: compact JSON (`{"logits": [...]}`) or the top entries per position. */
function printLogits(rowsOf: ArrayLike<number>[], ids: readonly number[], json: boolean, top: number): void {
  if (json) {
    // Compact: one row of V floats per position would be V lines each when indented.
    process.stdout.write(`{"logits": [${rowsOf.map((r) => `[${Array.from(r).join(', ')}]`).join(',\n')}]}\n`);
    return;
  }
  const V = rowsOf[0]?.length ?? 0;
  const k = Math.max(1, Math.min(top, V));
  for (let i = 0; i < ids.length; i++) {
    const r = rowsOf[i]!;
    const order = Array.from({ length: V }, (_, j) => j).sort((a, b) => r[b]! - r[a]!).slice(0, k);
    const shown = order.map((id) => `${id}:${r[id]!.toFixed(4)}`).join('  ');
    process.stdout.write(`${String(i).padStart(4)}  id ${String(ids[i]).padStart(6)}  argmax ${String(argmax(r)).padStart(6)}  top ${shown}\n`);
  }
}

export const logitsCommand: CommandModule<object, LogitsArgs> = {
  command: 'logits <model>',
  describe: 'print the logits of a token sequence (one row per position; --json for all of them)',
  builder: (y) =>
    withRuntimeOptions(y)
      .option('ids', { type: 'string', demandOption: true, describe: 'token ids, comma-separated (e.g. 1,2,3)' })
      .option('top', { type: 'number', default: 5, describe: 'highest logits shown per position (text output)' })
      .option('engine', {
        choices: ENGINES as unknown as Engine[],
        default: 'tfjs' as Engine,
        describe: "tfjs: fopeify's runtime; torch: the FoPE folder's own Python code (its .py files) with a python that has PyTorch",
      })
      .option('python', { type: 'string', describe: `python with PyTorch for --engine torch (default ${PYTHON_ENV}, else python3, then /usr/bin/python3)` })
      .option('trust-remote-code', {
        type: 'boolean',
        default: false,
        describe: "--engine torch: run the folder's .py files even when they differ from this fopeify's copies",
      })
      .example('fopeify logits ./smollm2-fope --ids 1,2,3 --json', '')
      .example('fopeify logits ./smollm2-fope --ids 1,2,3 --json --engine torch', 'the same logits from the folder\'s PyTorch code') as never,
  handler: async (argv) => {
    const ids = parseIntList(argv.ids, 'ids');
    await withReporter(argv, async (reporter) => {
    if (argv.engine === 'torch') {
        const resolved = await resolveModel(argv.model, sourceOptions(argv, reporter));
        const rows = await torchLogits(resolved.dir, ids, { python: argv.python, trustRemoteCode: argv['trust-remote-code'] });
        reporter.stop();
        printLogits(rows, ids, argv.json ?? false, argv.top);
      return;
    }
    const { model } = await openModel(argv, reporter);
    try {
      const bad = ids.find((id) => id >= model.spec.vocabSize);
      if (bad !== undefined) throw new FopeifyError('BAD_ARGUMENT', `token id ${bad} is outside the vocabulary (size ${model.spec.vocabSize})`);
      const t = model.forward(ids);
      const data = (await t.data()) as Float32Array;
      t.dispose();
      checkFiniteValues(data, 'the logits');
      const V = model.spec.vocabSize;
      const rowsOf = Array.from({ length: ids.length }, (_, i) => data.subarray(i * V, (i + 1) * V));
      printLogits(rowsOf, ids, argv.json ?? false, argv.top);
    } finally {
      model.dispose();
    }
    });
  },
};
