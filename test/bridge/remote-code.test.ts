/**
 * What a FoPE folder carries (names, auto_map, base family, .py files) and the errors around it, in
 * fopeify and in the folder's Python code: a coefficient shape that disagrees with num_inv_freq, a missing
 * .py file, an unknown base family, no python with torch.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pythonPackageDir, refreshRemoteCode, REMOTE_CODE_FILES } from '../../src/bridge/remote-code.js';
import { torchLogits } from '../../src/bridge/torch-engine.js';
import { loadModelSpec } from '../../src/config/load.js';
import { parseModelConfig } from '../../src/config/model-spec.js';
import { convertModel } from '../../src/convert/convert.js';
import { FopeifyError } from '../../src/errors.js';
import { inspectModel } from '../../src/inspect/inspect.js';
import { expectCleanFailure, runCli } from '../cli/cli-helpers.js';
import { fixture, tempDir } from '../helpers.js';
import { requireTorchWhenExpected, torchPython } from './torch-python.js';

const { py, why } = await torchPython();

/** One clear error line (the tfjs runtime first names its backend on stderr). */
function expectError(r: ReturnType<typeof runCli>, pattern: RegExp): void {
  expectCleanFailure({ ...r, stderr: r.stderr.split('\n').filter((l) => !/^fopeify: backend /.test(l)).join('\n') }, pattern);
}
const root = tempDir('fopeify-remote-code-');

async function convertedFolder(kind: 'llama' | 'qwen2' = 'llama', extra: Record<string, unknown> = {}): Promise<string> {
  const base = await fixture(root, { kind });
  const out = `${base}-fope`;
  await convertModel({ model: base, outDir: out, initFactor: 0.3, ...extra });
  return out;
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
}

async function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): Promise<void> {
  const cfg = await readJson(path.join(dir, 'config.json'));
  edit(cfg);
  await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
}

describe('a converted FoPE folder is remote code under its own name', () => {
  it('has <base>_fope names, auto_map, the recorded base family and byte-identical .py files', async () => {
    const out = await convertedFolder('qwen2', { layout: 'per-layer' });
    const cfg = await readJson(path.join(out, 'config.json'));
    expect(cfg.model_type).toBe('qwen2_fope');
    expect(cfg.architectures).toEqual(['FopeQwen2ForCausalLM']);
    expect(cfg.auto_map).toEqual({
      AutoConfig: 'configuration_fope.FopeQwen2Config',
      AutoModel: 'modeling_fope.FopeQwen2Model',
      AutoModelForCausalLM: 'modeling_fope.FopeQwen2ForCausalLM',
    });
    expect(cfg.fope_base_model_type).toBe('qwen2');
    expect(cfg.fope_layout).toBe('per-layer');
    // transformers reads a model.safetensors alone (never the index): the source's single file is renamed.
    expect(await fs.readdir(out)).not.toContain('model.safetensors');
    expect(await fs.readdir(out)).toContain('model-00001-of-00001.safetensors');
    const prov = await readJson(path.join(out, 'fopeify.json'));
    expect(prov.base_model_type).toBe('qwen2');
    expect((prov.options as Record<string, unknown>).arch_name).toBe('fope');
    for (const f of REMOTE_CODE_FILES) {
      expect(await fs.readFile(path.join(out, f))).toEqual(await fs.readFile(path.join(pythonPackageDir(), f)));
    }
    // fopeify reads it back as its family.
    const spec = await loadModelSpec(out);
    expect([spec.family, spec.modelType, spec.fope?.numInvFreq]).toEqual(['qwen2', 'qwen2_fope', 3]);
    expect(await fs.readFile(path.join(out, 'README.md'), 'utf8')).toContain(`AutoModelForCausalLM.from_pretrained("./${path.basename(out)}", trust_remote_code=True)`);
  });

  it('lists the same files as the Python runner', () => {
    const runner = readFileSync(path.join(pythonPackageDir(), 'fope_runner.py'), 'utf8');
    const listed = /REMOTE_CODE_FILES = \(([^)]*)\)/.exec(runner)![1]!.match(/"([^"]+)"/g)!.map((s) => s.slice(1, -1));
    expect(listed).toEqual([...REMOTE_CODE_FILES]);
  });

  it('--arch-name keep writes the stock names and no .py files; inspect warns and names the engines', async () => {
    const out = await convertedFolder('llama', { archName: 'keep' });
    const cfg = await readJson(path.join(out, 'config.json'));
    expect([cfg.model_type, cfg.architectures, cfg.auto_map, cfg.fope_base_model_type]).toEqual(['llama', ['LlamaForCausalLM'], undefined, undefined]);
    for (const f of REMOTE_CODE_FILES) await expect(fs.access(path.join(out, f))).rejects.toThrow();
    const report = await inspectModel({ model: out });
    expect(report.loading?.archName).toBe('keep');
    expect(report.warnings.join('\n')).toMatch(/stock model_type llama: transformers, SGLang and lmdeploy's default backend will silently run plain RoPE/);
    expect(report.loading?.engines.find((e) => e.engine === 'lmdeploy')?.how).toContain('--backend pytorch');
    expect(await fs.readFile(path.join(out, 'README.md'), 'utf8')).toContain('--backend pytorch');
    const fope = await inspectModel({ model: await convertedFolder() });
    expect(fope.warnings).toEqual([]);
    expect(fope.loading?.engines.find((e) => e.engine.startsWith('transformers'))?.verdict).toBe('runs FoPE');
  });

  it('fopeify still reads folders written the old way (FoPE keys under the stock names)', async () => {
    const out = await convertedFolder('llama', { archName: 'keep' });
    const r = runCli(['logits', out, '--ids', '1,2,3', '--json']);
    expect(r.code, r.stderr).toBe(0);
  });

  it('push refreshes missing or older .py files of a remote-code folder, and leaves other folders alone', async () => {
    const out = await convertedFolder();
    await fs.rm(path.join(out, 'fope_core.py'));
    await fs.writeFile(path.join(out, 'modeling_fope.py'), '# old\n');
    expect((await refreshRemoteCode(out)).sort()).toEqual(['fope_core.py', 'modeling_fope.py']);
    expect(await refreshRemoteCode(out)).toEqual([]);
    expect(await refreshRemoteCode(await convertedFolder('llama', { archName: 'keep' }))).toEqual([]);
  });

  it('an unknown or contradictory base family is one clear error', async () => {
    const out = await convertedFolder();
    const raw = await readJson(path.join(out, 'config.json'));
    expect(() => parseModelConfig({ ...raw, fope_base_model_type: 'gemma' })).toThrow(/unknown FoPE base family "gemma" \(fope_base_model_type\); supported: llama, mistral, qwen2, qwen3/);
    expect(() => parseModelConfig({ ...raw, model_type: 'gemma_fope', fope_base_model_type: undefined })).toThrow(/unknown FoPE base family "gemma" \(model_type gemma_fope\)/);
    expect(() => parseModelConfig({ ...raw, model_type: 'qwen2_fope' })).toThrow(/model_type qwen2_fope disagrees with fope_base_model_type llama/);
    await editConfig(out, (c) => (c.fope_base_model_type = 'gemma'));
    expectError(runCli(['logits', out, '--ids', '1,2']), /unknown FoPE base family "gemma"/);
  });

  it('the .py files compile', () => {
    const python = py?.python ?? 'python3';
    for (const f of REMOTE_CODE_FILES) {
      execFileSync(python, ['-c', 'import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)', path.join(pythonPackageDir(), f), path.join(root, `${f}c`)]);
    }
  });
});

describe('bad input is one clear error in fopeify and in the Python code', () => {
  requireTorchWhenExpected(py, why);

  it('a coefficient shape that disagrees with num_inv_freq', async () => {
    const out = await convertedFolder();
    await editConfig(out, (c) => {
      for (const k of ['rope_scaling', 'rope_parameters']) (c[k] as Record<string, unknown>).num_inv_freq = 2;
    });
    const message = /FoPE coefficient model\.rotary_emb\.sin_coef has shape \[2, 3, 3\]: K = 3, but config\.json says num_inv_freq = 2/;
    expectError(runCli(['logits', out, '--ids', '1,2']), message);
    if (!py) return;
    expectError(runCli(['logits', out, '--ids', '1,2', '--engine', 'torch', '--python', py.python]), message);
    await expect(torchLogits(out, [1, 2], { found: py })).rejects.toMatchObject({ code: 'BAD_SAFETENSORS' });
  });

  it('num_inv_freq beyond head_dim / 2', async () => {
    const out = await convertedFolder();
    await editConfig(out, (c) => {
      for (const k of ['rope_scaling', 'rope_parameters']) (c[k] as Record<string, unknown>).num_inv_freq = 9;
    });
    const message = /num_inv_freq 9 exceeds the 8 rotary frequencies/;
    expectError(runCli(['logits', out, '--ids', '1,2']), message);
    if (!py) return;
    expectError(runCli(['logits', out, '--ids', '1,2', '--engine', 'torch', '--python', py.python]), message);
    // The folder's own Python code says so too.
    const r = (() => {
      try {
        execFileSync(py.python, [path.join(out, 'fope_runner.py'), 'logits', '--ids', '1,2'], { encoding: 'utf8', stdio: 'pipe' });
        return { status: 0, stderr: '' };
      } catch (err) {
        return err as { status: number; stderr: string };
      }
    })();
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/^error\[BAD_SAFETENSORS\]: FoPE coefficient model\.rotary_emb\.sin_coef has shape \[2, 3, 3\]: K = 3, but config\.json says num_inv_freq = 9/);
  });

  it('a missing .py file', async () => {
    const out = await convertedFolder();
    await fs.rm(path.join(out, 'fope_rope.py'));
    expectError(runCli(['logits', out, '--ids', '1,2', '--engine', 'torch', '--python', py?.python ?? 'python3']), /lacks fope_rope\.py, the Python code the torch engine runs/);
    if (!py) return;
    const r = (() => {
      try {
        execFileSync(py.python, [path.join(out, 'fope_runner.py'), 'logits', '--ids', '1,2'], { encoding: 'utf8', stdio: 'pipe' });
        return { status: 0, stderr: '' };
      } catch (err) {
        return err as { status: number; stderr: string };
      }
    })();
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/^error\[BAD_CONFIG\]: .* lacks fope_rope\.py/);
  });

  it('runs only fopeify\'s own Python code unless --trust-remote-code', async () => {
    const out = await convertedFolder();
    await fs.appendFile(path.join(out, 'fope_rope.py'), '\n# edited\n');
    expectError(runCli(['logits', out, '--ids', '1,2', '--engine', 'torch', '--python', py?.python ?? 'python3']), /fope_rope\.py differ from this fopeify's copies .* pass --trust-remote-code/);
    if (!py) return;
    const r = runCli(['logits', out, '--ids', '1,2', '--json', '--engine', 'torch', '--python', py.python, '--trust-remote-code']);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { logits: number[][] }).logits).toHaveLength(2);
  });

  it('no python with torch names what to install', async () => {
    const out = await convertedFolder();
    const r = runCli(['logits', out, '--ids', '1,2', '--engine', 'torch', '--python', path.join(root, 'no-such-python')]);
    expectError(r, /the torch engine needs a python with PyTorch \(--python: .*no-such-python: not found\); install PyTorch for it \(Debian\/Ubuntu: `apt-get install python3-torch`/);
    await expect(torchLogits(out, [1], { python: path.join(root, 'nope') })).rejects.toBeInstanceOf(FopeifyError);
  });
});
