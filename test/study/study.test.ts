import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseVariants, studyPlan, VARIANT_IDS } from '../../src/study/plan.js';
import { runStudy } from '../../src/study/study.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir();
const tiny = { steps: 1, batch: 1, lengths: [64, 128], depths: [0], trials: 1, windows: [64, 128], maxWindows: 1 };
const readJson = async (...p: string[]) => JSON.parse(await fs.readFile(path.join(...p), 'utf8'));

describe('study plan', () => {
  it('parses --variants in the canonical order and refuses unknown ones', () => {
    expect(parseVariants(undefined)).toEqual([...VARIANT_IDS]);
    expect(parseVariants('all')).toEqual([...VARIANT_IDS]);
    expect(parseVariants('fope, yarn')).toEqual(['yarn', 'fope']);
    expect(() => parseVariants('yarn,alibi')).toThrow(/unknown variant "alibi"/);
  });

  it('keeps the quick plan small and the short-context row in it', () => {
    const q = studyPlan(256, true);
    expect(q.lengths).toEqual([256, 512, 1024]);
    expect(q.windows[0]).toBe(256);
    expect(q.seeds).toBeGreaterThanOrEqual(2);
    expect(studyPlan(256, false).lengths).toEqual([256, 512, 1024, 2048]);
    expect(() => studyPlan(256, false, 200)).toThrow(
      expect.objectContaining({ message: expect.stringMatching(/^`targetLength` must be an integer longer/), options: ['targetLength'] }),
    );
  });
});

describe('runStudy', () => {
  it('builds every variant with the named options, measures each cell and refuses a mixed plan', async () => {
    const base = await fixture(root, { kind: 'llama' }); // trained length 64, head_dim 16
    const out = path.join(root, 'study');
    const r = await runStudy({ model: base, out, seeds: 1, plan: { ...tiny, initFactor: 0.3 } });
    expect(r.cells.map((c) => c.variant)).toEqual([...VARIANT_IDS]);
    expect(r.plan.fineTuneLength).toBe(128);
    const convert = async (v: string) => (await readJson(out, 'cells', v, 'seed-0', 'converted', 'fopeify.json')).options;
    // FoPE + YaRN: the study's gain (here 0.3), clipped, YaRN ×2.
    expect(await convert('fope-yarn')).toMatchObject({ init_factor: 0.3, num_inv_freq: null, yarn: 2, seed: 0 });
    // clip-only: --init-factor 0 (identity coefficients), clipping as usual.
    expect(await convert('clip-yarn')).toMatchObject({ init_factor: 0, num_inv_freq: null, yarn: 2 });
    // Fourier-only: --num-inv-freq head_dim/2 = 8 (nothing clipped), the study's gain.
    expect(await convert('fourier-yarn')).toMatchObject({ init_factor: 0.3, num_inv_freq: 8, yarn: 2 });
    // FoPE without YaRN.
    expect(await convert('fope')).toMatchObject({ init_factor: 0.3, yarn: null });
    for (const v of ['rope', 'yarn']) await expect(fs.access(path.join(out, 'cells', v, 'seed-0', 'converted'))).rejects.toThrow();
    const cfg = async (v: string) => readJson(out, 'cells', v, 'seed-0', 'model', 'config.json');
    expect((await cfg('yarn')).rope_scaling).toMatchObject({ rope_type: 'yarn', factor: 2 });
    expect((await cfg('rope')).rope_scaling ?? null).toBeNull();
    expect((await cfg('fourier-yarn')).rope_scaling).toMatchObject({ rope_type: 'yarn', num_inv_freq: 8, fope_init_factor: 0.3 });
    expect((await cfg('clip-yarn')).rope_scaling.num_inv_freq).toBeLessThan(8);
    expect((await cfg('fope')).rope_scaling).toMatchObject({ rope_type: 'default', fope_init_factor: 0.3 });
    // Every cell has its passkey grid and perplexity, and the aggregate its table rows.
    for (const c of r.cells) {
      expect(c.accuracy.map((a) => a.length)).toEqual([64, 128]);
      expect(c.perplexity.map((p) => p.window)).toEqual([64, 128]);
    }
    expect(r.aggregate.avg).toHaveLength(6);
    expect(r.aggregate.short.map((s) => s.variant)).toEqual([...VARIANT_IDS]);
    const json = await readJson(out, 'study.json');
    expect(json.cells).toHaveLength(6);
    expect(json.intervalMethod).toMatch(/Student-t/);
    expect(json.cells.find((c: { variant: string }) => c.variant === 'fourier-yarn').convertCommand).toMatch(/--init-factor 0\.3 --num-inv-freq 8 --yarn 2 --seed 0$/);
    await fs.access(path.join(out, 'report.html'));
    await fs.access(path.join(out, 'accuracy.png'));
    // A rerun runs only the cell that has no cell.json; its fine-tuned model is reused.
    await fs.rm(path.join(out, 'cells', 'fope', 'seed-0', 'cell.json'));
    const again = await runStudy({ model: base, out, seeds: 1, plan: { ...tiny, initFactor: 0.3 } });
    expect(again.ranCells).toEqual(['fope/seed-0']);
    expect(again.cells.find((c) => c.variant === 'fope')!.finetune).toMatchObject({ steps: 1 });
    expect(again.aggregate.accuracy).toEqual(r.aggregate.accuracy);
    // Another budget into the same folder would mix cells: refused before anything runs.
    await expect(runStudy({ model: base, out, seeds: 1, plan: { ...tiny, initFactor: 0.3, steps: 2 } })).rejects.toThrow(/another model or plan/);
    await expect(runStudy({ model: base, out: path.join(root, 'other'), seeds: 1, plan: { ...tiny, initFactor: 0 } })).rejects.toMatchObject({
      message: expect.stringMatching(/^`plan\.initFactor` must be a number > 0/),
      options: ['plan.initFactor'],
    });
  });
});
