import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PackedDataset, packChunks, readDocuments, splitHeldOut } from '../../src/train/data.js';
import { listRecipeNames, loadRecipe, resolveTrainSettings } from '../../src/train/recipe.js';
import { learningRate } from '../../src/train/schedule.js';
import { parseYamlLite } from '../../src/train/yaml-lite.js';
import { tempDir } from '../helpers.js';

const root = tempDir();

describe('recipes', () => {
  it('ships yarn, fope, fope-yarn and a YAML LongLoRA recipe', async () => {
    expect(listRecipeNames()).toEqual(expect.arrayContaining(['fope', 'fope-yarn', 'longlora', 'yarn']));
    const yarn = await loadRecipe('yarn');
    expect(yarn.convert).toMatchObject({ yarn: 'auto' });
    expect(yarn.train).toMatchObject({ lr: 2e-5, betas: [0.9, 0.95], weightDecay: 0, warmupSteps: 20 });
    const ll = await loadRecipe('longlora');
    expect(ll.train.trainable).toBe('lora');
    expect(ll.train.lora).toMatchObject({ rank: 8, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], trainEmbeddings: true });
  });
  it('flags override recipe defaults; invalid settings are refused', async () => {
    const yarn = await loadRecipe('yarn');
    const s = resolveTrainSettings(yarn, { lr: 1e-3, steps: 5, seqLen: undefined });
    expect([s.lr, s.steps, s.seqLen, s.betas[1]]).toEqual([1e-3, 5, 2048, 0.95]);
    expect(() => resolveTrainSettings(yarn, { steps: 0 })).toThrow(/steps must be a positive integer/);
    await expect(loadRecipe('nope')).rejects.toThrow(/unknown recipe "nope" \(available: fope/);
  });
  it('a recipe from a file path, with unknown keys refused', async () => {
    const f = path.join(root, 'r.json');
    await fs.writeFile(f, JSON.stringify({ name: 'mine', train: { lr: 0.1, lora_rank: 3 } }));
    await expect(loadRecipe(f)).rejects.toThrow(/unknown train setting "lora_rank"/);
  });
  it('YAML subset', () => {
    expect(parseYamlLite('a: 1\nb:\n  c: [1, x]\n  d: true # c\ne: "s"\n')).toEqual({ a: 1, b: { c: [1, 'x'], d: true }, e: 's' });
    expect(() => parseYamlLite('- item')).toThrow(/expected "key: value"/);
  });
});

describe('schedule', () => {
  const base = { lr: 1, warmupSteps: 4, steps: 14, minLrRatio: 0 };
  it('warmup then constant / linear / cosine', () => {
    expect([0, 1, 3, 4, 10].map((s) => learningRate({ ...base, schedule: 'constant' }, s))).toEqual([0.25, 0.5, 1, 1, 1]);
    expect(learningRate({ ...base, schedule: 'linear' }, 9)).toBeCloseTo(0.5);
    expect(learningRate({ ...base, schedule: 'cosine' }, 9)).toBeCloseTo(0.5);
    expect(learningRate({ ...base, schedule: 'cosine' }, 14)).toBeCloseTo(0);
  });
});

describe('data', () => {
  it('reads text and JSONL folders, packs with EOS, shuffles deterministically and resumes', async () => {
    const d = path.join(root, 'data');
    await fs.mkdir(path.join(d, 'sub'), { recursive: true });
    await fs.writeFile(path.join(d, 'a.txt'), 'hello');
    await fs.writeFile(path.join(d, 'sub', 'b.jsonl'), '{"text":"xy"}\n\n{"text":"z"}\n');
    await fs.writeFile(path.join(d, 'ignored.bin'), 'nope');
    const { docs } = await readDocuments(d);
    expect(docs).toEqual(['hello', 'xy', 'z']);
    const toks = docs.map((t) => [...t].map((c) => c.charCodeAt(0)));
    const chunks = packChunks(toks, 0, 3);
    expect(chunks.map((c) => Array.from(c))).toEqual([[104, 101, 108], [108, 111, 0], [120, 121, 0]]);
    const ds = new PackedDataset(chunks, 7);
    const all = ds.take({ epoch: 0, index: 0 }, 5);
    const first = ds.take({ epoch: 0, index: 0 }, 2);
    const rest = ds.take(first.next, 3);
    expect([...first.chunks, ...rest.chunks]).toEqual(all.chunks);
    expect(all.next).toEqual({ epoch: 1, index: 2 });
    expect(new Set(all.chunks.slice(0, 3))).toEqual(new Set(chunks));
    expect(splitHeldOut(chunks).heldOut.length).toBe(1);
  });
  it('bad data is a clear error', async () => {
    await expect(readDocuments(path.join(root, 'missing'))).rejects.toThrow(/no such file/);
    const f = path.join(root, 'bad.jsonl');
    await fs.writeFile(f, '{"txt": 1}\n');
    await expect(readDocuments(f)).rejects.toThrow(/no "text" string field/);
  });
});
