/**
 * The Python unit tests (python/tests, plain unittest) run with the python that has torch, so `npm test`
 * runs them too; and the transformers-level check (scripts/gpu-check-bridge.py on fopeify's own converted
 * folders, on the CPU) when that python can import transformers — skipped with its reason otherwise, in
 * which case it proves nothing here.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { pythonRoot } from '../../src/bridge/remote-code.js';
import { tempDir } from '../helpers.js';
import { requireTorchWhenExpected, torchPython } from './torch-python.js';

const run = promisify(execFile);
const { py, why } = await torchPython();
const REPO = path.resolve(pythonRoot(), '..');

describe('Python unit tests', () => {
  requireTorchWhenExpected(py, why);
  it.runIf(py)('python -m unittest discover (python/tests)', async () => {
    const r = await run(py!.python, ['-m', 'unittest', 'discover', '-s', 'tests', '-t', '.', '-v'], {
      cwd: pythonRoot(),
      env: { ...process.env, PYTHONPATH: pythonRoot(), PYTHONDONTWRITEBYTECODE: '1' },
      maxBuffer: 64 << 20,
    }).catch((err: { stderr?: string; message: string }) => {
      throw new Error(`python unit tests failed:\n${err.stderr ?? err.message}`);
    });
    expect(r.stderr).toMatch(/\nOK( \(skipped=\d+\))?\n?$/);
    const skipped = r.stderr.split('\n').filter((l) => / \.\.\. skipped /.test(l));
    if (skipped.length) console.log(`python tests skipped with ${py!.python}:\n${skipped.join('\n')}`);
  });
});

describe('transformers loads fopeify\'s converted folders as FoPE', () => {
  const hasTransformers = !!py?.transformersVersion;
  if (!hasTransformers) it.skip(`${py ? `${py.python} (torch ${py.torchVersion}) cannot import transformers` : why}: the transformers glue is unverified here`, () => undefined);
  it.runIf(hasTransformers)('scripts/gpu-check-bridge.py on the CPU: logits ≤ 1e-4, 20 greedy tokens, float32 coefficients, refusal without trust_remote_code', async () => {
    const fixtures = tempDir('fopeify-bridge-fixtures-');
    await run(process.execPath, [path.join(REPO, 'scripts', 'make-bridge-fixtures.mjs'), fixtures], { cwd: REPO, maxBuffer: 64 << 20 });
    const r = await run(py!.python, [path.join(REPO, 'scripts', 'gpu-check-bridge.py'), fixtures, '--device', 'cpu'], {
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
      maxBuffer: 64 << 20,
    }).catch((err: { stdout?: string; message: string }) => {
      throw new Error(`gpu-check-bridge.py failed:\n${err.stdout ?? err.message}`);
    });
    expect(r.stdout).toMatch(/(\d+)\/\1 checks passed/);
  }, 600_000);
});
