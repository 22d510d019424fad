/** End-to-end: the logits, ppl and generate commands as users run them (bin/fopeify.js on dist/). */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertModel } from '../../src/convert/convert.js';
import { loadModel } from '../../src/model/index.js';
import { expectCleanFailure, runCli } from '../cli/cli-helpers.js';
import { nativeUsable } from '../backend/helpers.js';
import { fixture, tempDir } from '../helpers.js';
import { rows, useCpu } from './helpers.js';
import { relMaxError } from './reference.js';

const root = tempDir('fopeify-model-cli-');
let dir: string;
let textFile: string;

beforeAll(async () => {
  await useCpu();
  const src = await fixture(root, { kind: 'llama', seed: 41 });
  dir = path.join(root, 'fope');
  await convertModel({ model: src, outDir: dir, initFactor: 0.3, yarn: 2 });
  textFile = path.join(root, 'text.txt');
  await fs.writeFile(textFile, 'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n'.repeat(3));
});

describe('fopeify logits / ppl / generate', () => {
  it('logits --json prints one row of vocab floats per position, equal to the library', async () => {
    const r = runCli(['logits', dir, '--ids', '1,2,3', '--json', '--backend', 'cpu']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { logits: number[][] };
    expect(out.logits).toHaveLength(3);
    const model = await loadModel(dir, { layout: 'inference' });
    expect(out.logits[0]).toHaveLength(model.spec.vocabSize);
    expect(relMaxError(out.logits, rows(model.forward([1, 2, 3])))).toBeLessThan(1e-6);
    model.dispose();
    expect(r.stderr).toContain('backend cpu');
  });

  it('logits: auto names its backend; text output lists the top logits', () => {
    const r = runCli(['logits', dir, '--ids', '5,6', '--top', '2']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/fopeify: backend /);
    expect(r.stdout.trim().split('\n')).toHaveLength(2);
    expect(r.stdout).toMatch(/argmax/);
  });

  // FOPEIFY_NO_SYSTEM_BLAS=1 is a machine without OpenBLAS: the addon's portable SGEMM runs, the start-up
  // line names it, and the logits are those of the reference cpu backend.
  it.runIf(nativeUsable)('logits --backend native with the system BLAS hidden runs on the portable SGEMM', async () => {
    const r = runCli(['logits', dir, '--ids', '1,2,3', '--json', '--backend', 'native'], { FOPEIFY_NO_SYSTEM_BLAS: '1', FOPEIFY_GEMM: '' });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/fopeify: backend cpu \+ native BLAS \(portable-(avx512|avx2|generic) SGEMM, \d+ threads?\)/);
    const out = JSON.parse(r.stdout) as { logits: number[][] };
    const model = await loadModel(dir, { layout: 'inference' });
    expect(relMaxError(out.logits, rows(model.forward([1, 2, 3])))).toBeLessThan(1e-4);
    model.dispose();
  });

  // FOPEIFY_GEMM picks the GEMM engine; one that cannot run here (the system BLAS, hidden) refuses
  // --backend native with the loader's reason, and a value outside auto|system|portable is one clear line.
  it.runIf(nativeUsable)('FOPEIFY_GEMM: an engine that is not there, or a bad value, is one line naming it', () => {
    const hidden = runCli(['logits', dir, '--ids', '1,2,3', '--backend', 'native'], { FOPEIFY_NO_SYSTEM_BLAS: '1', FOPEIFY_GEMM: 'system' });
    expect(hidden.code).not.toBe(0);
    expect(hidden.stderr.trim()).toBe(
      'fopeify: error: backend "native" is not available: FOPEIFY_GEMM=system, but FOPEIFY_NO_SYSTEM_BLAS=1 hides every system BLAS (unset FOPEIFY_GEMM to use the portable SGEMM)',
    );
    const bad = runCli(['logits', dir, '--ids', '1,2,3'], { FOPEIFY_GEMM: 'openblas' });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim()).toBe('fopeify: error: FOPEIFY_GEMM must be one of auto, system, portable, got "openblas"');
  });

  it('ppl --json gives one result per window; the table names them', () => {
    const r = runCli(['ppl', dir, '--text', textFile, '--windows', '16,64,1000', '--json', '--backend', 'cpu']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { tokens: number; results: { window: number; windows: number; ppl: number | null }[] };
    expect(out.tokens).toBe(270);
    expect(out.results.map((x) => [x.window, x.windows])).toEqual([[16, 16], [64, 4], [1000, 0]]);
    expect(out.results[0]!.ppl).toBeGreaterThan(1);
    expect(out.results[2]!.ppl).toBeNull();
    const t = runCli(['ppl', dir, '--text', textFile, '--windows', '16,64', '--max-windows', '1', '--backend', 'cpu']);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/window\s+windows\s+tokens\s+nll\s+ppl/);
  });

  it('generate is greedy and deterministic; --json reports the new tokens', async () => {
    const r = runCli(['generate', dir, '--prompt', 'The sky', '--max-new-tokens', '6', '--json', '--ignore-eos', '--backend', 'cpu']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { new_tokens: number[]; completion: string; stop_reason: string; prompt_tokens: number };
    expect(out.new_tokens).toHaveLength(6);
    expect(out.prompt_tokens).toBe(7);
    expect(out.stop_reason).toBe('length');
    const model = await loadModel(dir);
    const res = await model.generate(Array.from(Buffer.from('The sky')), { maxNewTokens: 6, eosTokenId: null });
    expect(out.new_tokens).toEqual(res.tokens);
    model.dispose();
    const s = runCli(['generate', dir, '--prompt', 'The sky', '--max-new-tokens', '3', '--temperature', '0.8', '--seed', '2', '--backend', 'cpu']);
    expect(s.code).toBe(0);
    expect(s.stderr).toMatch(/3 tokens \(length|tokens \(eos/);
  });

  it('bad input fails with one clear line', () => {
    expectCleanFailure(runCli(['logits', dir, '--ids', '1,x']), /--ids must be a comma-separated list/);
    expectCleanFailure(runCli(['ppl', dir, '--text', path.join(root, 'nope.txt')]), /cannot read --text/);
    expectCleanFailure(runCli(['logits', path.join(root, 'missing'), '--ids', '1']), /not found|neither/);
    expectCleanFailure(runCli(['generate', dir, '--prompt', 'x', '--max-new-tokens', '-1']), /--max-new-tokens/);
  });
});
