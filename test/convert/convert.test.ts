import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModelSpec } from '../../src/config/load.js';
import { convertModel } from '../../src/convert/convert.js';
import { inspectModel } from '../../src/inspect/inspect.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { fopeCosSin, fopeKeptCount, ropeCosSin } from '../../src/rope/fope.js';
import { ropeFrequencies } from '../../src/rope/inv-freq.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir();

async function files(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).sort();
}

describe('convert', () => {
  it('keeps every original tensor byte-identical (hard-linked) and adds coefficients', async () => {
    const src = await fixture(root, { kind: 'qwen2', dtype: 'BF16', maxShardBytes: 20000 });
    const out = path.join(root, 'qwen2-fope');
    const r = await convertModel({ model: src, outDir: out });
    const before = await Checkpoint.open(src);
    const after = await Checkpoint.open(out);
    for (const name of before.tensors.keys()) {
      expect(Buffer.compare(Buffer.from(await before.readBytes(name)), Buffer.from(await after.readBytes(name)))).toBe(0);
      expect(after.info(name).file).toBe(before.info(name).file);
    }
    for (const f of new Set([...before.tensors.values()].map((t) => t.file))) {
      const a = await fs.stat(path.join(src, f));
      const b = await fs.stat(path.join(out, f));
      expect(b.ino).toBe(a.ino); // hard link
    }
    expect(r.shards.filter((s) => s.action === 'linked').length).toBe(before.shards.size);
    const coef = after.info('model.rotary_emb.sin_coef');
    expect(coef.dtype).toBe('F32');
    expect(coef.shape).toEqual([2, r.k, r.k]);
    expect(await files(out)).toEqual(expect.arrayContaining(['README.md', 'fopeify.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'config.json', 'model.safetensors.index.json', 'fope_coefficients.safetensors']));
    const index = JSON.parse(await fs.readFile(path.join(out, 'model.safetensors.index.json'), 'utf8'));
    expect(index.weight_map['model.rotary_emb.cos_coef']).toBe('fope_coefficients.safetensors');
    expect(index.metadata.total_size).toBe([...after.tensors.values()].reduce((a, t) => a + t.end - t.begin, 0));
    await before.close();
    await after.close();
  });

  it('writes consistent FoPE keys into rope_scaling and rope_parameters, a card and provenance', async () => {
    const src = await fixture(root, { kind: 'llama' });
    const out = path.join(root, 'llama-fope-yarn');
    const r = await convertModel({ model: src, outDir: out, yarn: 4, initFactor: 0.3, seed: 5, sinPad: 0 });
    const cfg = JSON.parse(await fs.readFile(path.join(out, 'config.json'), 'utf8'));
    expect(cfg.max_position_embeddings).toBe(256);
    expect(cfg.rope_theta).toBe(10000);
    const expected = { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64, beta_fast: 32, beta_slow: 1, fope_init_factor: 0.3, fope_sep_head: true, num_inv_freq: r.k, fope_sin_pad: 0 };
    expect(cfg.rope_scaling).toEqual(expected);
    expect(cfg.rope_parameters).toEqual({ ...expected, rope_theta: 10000 });
    // K agrees with a family-B loader clipping the YaRN frequencies against the extended length.
    const spec = await loadModelSpec(out);
    expect(spec.fope).toEqual({ initFactor: 0.3, sepHead: true, numInvFreq: r.k, sinPad: 0 });
    expect(fopeKeptCount(ropeFrequencies(spec.rope).invFreq, 256)).toBe(r.k);
    const card = await fs.readFile(path.join(out, 'README.md'), 'utf8');
    expect(card).toMatch(/^---\nlibrary_name: transformers\ntags:\n- fope/);
    expect(card).toMatch(/YaRN factor \| 4/);
    const prov = JSON.parse(await fs.readFile(path.join(out, 'fopeify.json'), 'utf8'));
    expect(prov.options).toMatchObject({ init_factor: 0.3, seed: 5, yarn: 4, sin_pad: 0 });
    expect(prov.fope.num_inv_freq).toBe(r.k);
    expect(prov.fope.clipped.length).toBe(8 - r.k);
    expect(prov.source_files.find((f: { path: string }) => f.path === 'config.json').size).toBeGreaterThan(0);
    expect(prov.fope.yarn_semantics).toMatch(/^hf/);
  });

  it('--hash records sha256 of every source file', async () => {
    const src = await fixture(root, { kind: 'llama' });
    const out = path.join(root, 'hashed');
    await convertModel({ model: src, outDir: out, hash: true });
    const prov = JSON.parse(await fs.readFile(path.join(out, 'fopeify.json'), 'utf8'));
    for (const f of prov.source_files) expect(f.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('coefficients are a deterministic function of seed and shapes; per-layer and no-sep-head layouts', async () => {
    const src = await fixture(root, { kind: 'llama' });
    const a = await convertModel({ model: src, outDir: path.join(root, 'det-a'), layout: 'per-layer', sepHead: false });
    await convertModel({ model: src, outDir: path.join(root, 'det-b'), layout: 'per-layer', sepHead: false });
    const bytes = (d: string) => fs.readFile(path.join(root, d, 'fope_coefficients.safetensors'));
    expect(Buffer.compare(await bytes('det-a'), await bytes('det-b'))).toBe(0);
    await convertModel({ model: src, outDir: path.join(root, 'det-c'), layout: 'per-layer', sepHead: false, seed: 1 });
    expect(Buffer.compare(await bytes('det-a'), await bytes('det-c'))).not.toBe(0);
    expect(a.coefficientNames).toEqual([
      'model.layers.0.self_attn.rotary_emb.sin_coef',
      'model.layers.0.self_attn.rotary_emb.cos_coef',
      'model.layers.1.self_attn.rotary_emb.sin_coef',
      'model.layers.1.self_attn.rotary_emb.cos_coef',
    ]);
    expect(a.coefficientShape).toEqual([a.k, a.k]);
    const ck = await Checkpoint.open(path.join(root, 'det-a'));
    const l0 = await ck.readFloat32('model.layers.0.self_attn.rotary_emb.sin_coef');
    const l1 = await ck.readFloat32('model.layers.1.self_attn.rotary_emb.sin_coef');
    expect(l0).not.toEqual(l1);
    await ck.close();
    const report = await inspectModel({ model: path.join(root, 'det-a') });
    expect(report.fope).toMatchObject({ family: 'B-per-layer', k: a.k, sepHead: false, perLayer: true });
  });

  it('identity coefficients with nothing clipped make the written FoPE tables equal RoPE', async () => {
    const src = await fixture(root, { kind: 'llama' });
    const out = path.join(root, 'identity');
    const r = await convertModel({ model: src, outDir: out, initFactor: 0, numInvFreq: 8 });
    expect(r.k).toBe(8);
    expect(r.clipped).toEqual([]);
    const ck = await Checkpoint.open(out);
    const spec = await loadModelSpec(out);
    const { invFreq } = ropeFrequencies(spec.rope);
    const positions = Array.from({ length: 100 }, (_, i) => i * 3);
    const fope = fopeCosSin({
      invFreq,
      coefShape: ck.info('model.rotary_emb.sin_coef').shape,
      sinCoef: await ck.readFloat32('model.rotary_emb.sin_coef'),
      cosCoef: await ck.readFloat32('model.rotary_emb.cos_coef'),
      positions,
    });
    const rope = ropeCosSin(invFreq, positions);
    expect(fope.cos.subarray(0, rope.cos.length)).toEqual(rope.cos);
    expect(fope.sin.subarray(rope.sin.length)).toEqual(rope.sin);
    await ck.close();
  });

  it('--dtype re-encodes float tensors; keep leaves bytes alone', async () => {
    const src = await fixture(root, { kind: 'qwen3', dtype: 'F32' });
    const out = path.join(root, 'qwen3-bf16');
    const r = await convertModel({ model: src, outDir: out, dtype: 'bf16' });
    expect(r.shards[0]!.action).toBe('reencoded');
    const a = await Checkpoint.open(src);
    const b = await Checkpoint.open(out);
    const name = 'model.layers.0.self_attn.q_norm.weight';
    expect(b.info(name).dtype).toBe('BF16');
    const x = await a.readFloat32(name);
    const y = await b.readFloat32(name);
    for (let i = 0; i < x.length; i++) expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -8);
    expect(b.info('model.rotary_emb.sin_coef').dtype).toBe('F32');
    expect(JSON.parse(await fs.readFile(path.join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    await a.close();
    await b.close();
  });

  it('refuses a non-empty output without --force, and --force replaces it atomically', async () => {
    const src = await fixture(root, { kind: 'llama' });
    const out = path.join(root, 'existing');
    await fs.mkdir(out);
    await fs.writeFile(path.join(out, 'keep.txt'), 'mine');
    await expect(convertModel({ model: src, outDir: out })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS' });
    expect(await fs.readFile(path.join(out, 'keep.txt'), 'utf8')).toBe('mine');
    await convertModel({ model: src, outDir: out, force: true });
    expect(await files(out)).not.toContain('keep.txt');
    // no temporary siblings left behind
    expect((await fs.readdir(root)).filter((n) => n.includes('fopeify-tmp'))).toEqual([]);
  });

  it('refuses to convert a FoPE model again and --yarn on a scaled model', async () => {
    const src = await fixture(root, { kind: 'llama3' });
    await expect(convertModel({ model: src, outDir: path.join(root, 'x1'), yarn: 2 })).rejects.toThrow(/already uses rope_type llama3/);
    const out = path.join(root, 'once');
    await convertModel({ model: src, outDir: out });
    await expect(convertModel({ model: out, outDir: path.join(root, 'twice') })).rejects.toThrow(/already a FoPE model/);
  });
});

describe('inspect', () => {
  it('reports shapes, rope and the frequency table at a length', async () => {
    const src = await fixture(root, { kind: 'qwen3', dtype: 'BF16' });
    const r = await inspectModel({ model: src, length: 32 });
    expect(r).toMatchObject({ family: 'qwen3', layers: 2, heads: 4, kvHeads: 2, headDim: 32, qkNorm: true, fope: null, length: 32 });
    expect(r.dtypes).toEqual({ BF16: r.parameters });
    expect(r.frequencies!.length).toBe(16);
    const kept = r.frequencies!.filter((f) => f.kept);
    expect(kept.every((f) => f.wavelength < 32)).toBe(true);
    expect(r.frequencies!.filter((f) => !f.kept).every((f) => f.wavelength >= 32)).toBe(true);
  });
});
