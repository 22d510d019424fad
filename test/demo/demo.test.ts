import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { demoPlan, demoVerdict, runDemo } from '../../src/demo/demo.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir();

describe('demo', () => {
  it('plans 1×, 2×, 4×, 8× the training length and fine-tunes at 2×', () => {
    const p = demoPlan(256, true);
    expect(p.lengths).toEqual([256, 512, 1024, 2048]);
    expect(p.fineTuneLength).toBe(512);
  });

  it('states the verdict from the numbers, whichever way they fall', () => {
    const names = { rope: 'r', yarn: 'y', fope: 'f' };
    expect(demoVerdict({ r: { 256: 1, 512: 0 }, y: { 256: 1, 512: 0.5 }, f: { 256: 1, 512: 0.9 } }, 256, names)).toMatch(/FoPE\+YaRN did best/);
    expect(demoVerdict({ r: { 512: 0 }, y: { 512: 0.5 }, f: { 512: 0.25 } }, 256, names)).toMatch(/did not beat the YaRN baseline/);
    expect(demoVerdict({ r: { 512: 0 }, y: { 512: 0 }, f: { 512: 0 } }, 256, names)).toMatch(/FoPE did not beat RoPE here/);
  });

  it('runs every stage end to end on a miniature plan and writes the report', async () => {
    const base = await fixture(root, { kind: 'llama' });
    const out = path.join(root, 'demo');
    const r = await runDemo({
      model: base,
      out,
      quick: true,
      backend: 'auto',
      plan: { steps: 2, batch: 1, lengths: [64, 128], depths: [0, 1], trials: 1, windows: [32, 64], maxWindows: 1 },
    });
    expect(Object.keys(r.table)).toEqual(['rope-original', 'yarn-finetuned', 'fope-yarn-finetuned']);
    for (const row of Object.values(r.table)) expect(Object.keys(row)).toEqual(['64', '128']);
    expect(r.perplexity.filter((p) => p.ppl !== null).length).toBe(6);
    const html = await fs.readFile(r.report, 'utf8');
    expect(html).toContain('Mean passkey accuracy beyond the training length');
    expect(html).toContain('Perplexity vs context length');
    for (const f of ['comparison.png', 'ppl.png', 'heatmap-rope-original.png', 'summary.csv']) await fs.access(path.join(out, 'report', f));
    const cfg = JSON.parse(await fs.readFile(path.join(out, 'fope-yarn-finetuned', 'config.json'), 'utf8'));
    expect(cfg.rope_scaling).toMatchObject({ rope_type: 'yarn', factor: 2, fope_sep_head: true });
    // A rerun resumes: nothing is trained or scored again.
    const again = await runDemo({ model: base, out, quick: true, plan: { steps: 2, batch: 1, lengths: [64, 128], depths: [0, 1], trials: 1, windows: [32, 64], maxWindows: 1 } });
    expect(again.stageSeconds['finetune yarn-finetuned']).toBeUndefined();
    expect(again.table).toEqual(r.table);
  });
});
