import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { modelSlugs, runNeedle, writePerplexityReport, type PerplexitySummary } from '../../src/eval/index.js';
import { tempDir } from '../helpers.js';
import { oracleLoader } from './fakes.js';
import { decodePng } from '../plot/png-decode.js';

const root = tempDir('fopeify-report-');

describe('perplexity report', () => {
  it('writes ppl.json in the fixed shape, the chart and report.html', async () => {
    const dir = path.join(root, 'ppl');
    const summary = await writePerplexityReport(dir, {
      windows: [128, 256, 512],
      results: [
        { model: 'rope', window: 128, ppl: 12.5 },
        { model: 'rope', window: 256, ppl: 30 },
        { model: 'rope', window: 512, ppl: null },
        { model: 'fope', window: 128, ppl: 12.7 },
        { model: 'fope', window: 256, ppl: 12.9 },
        { model: 'fope', window: 512, ppl: 13.1 },
      ],
    });
    const json = JSON.parse(await fs.readFile(path.join(dir, 'ppl.json'), 'utf8')) as PerplexitySummary;
    expect(json).toEqual(summary);
    expect(Object.keys(json)).toEqual(['windows', 'results']);
    expect(json.windows).toEqual([128, 256, 512]);
    expect(json.results).toHaveLength(5); // the window without a result is left out
    expect(json.results[0]).toEqual({ model: 'rope', window: 128, ppl: 12.5 });
    const svg = await fs.readFile(path.join(dir, 'ppl.svg'), 'utf8');
    expect(svg).toContain('>Perplexity vs context length<');
    expect(decodePng(await fs.readFile(path.join(dir, 'ppl.png'))).width).toBeGreaterThan(500);
    const html = await fs.readFile(path.join(dir, 'report.html'), 'utf8');
    expect(html).toContain('Perplexity vs context length');
    expect(html).not.toContain('Passkey retrieval');
  });

  it('one report shows both measures when a needle run shares the folder', async () => {
    const dir = path.join(root, 'both');
    await runNeedle({ models: ['rope', 'fope'], out: dir, lengths: [300], depths: [0, 1], trials: 1, loader: oracleLoader({ rope: 'wrong' }) });
    let html = await fs.readFile(path.join(dir, 'report.html'), 'utf8');
    expect(html).toContain('Passkey retrieval');
    expect(html).not.toContain('Perplexity vs context length');
    await writePerplexityReport(dir, { windows: [128], results: [{ model: 'rope', window: 128, ppl: 10 }, { model: 'fope', window: 128, ppl: 10 }] });
    html = await fs.readFile(path.join(dir, 'report.html'), 'utf8');
    expect(html).toContain('Passkey retrieval');
    expect(html).toContain('Perplexity vs context length');
    expect(html.match(/<svg /g)).toHaveLength(2);
    expect(html).toContain('>0%</td>'); // rope answers wrong
    expect(html).toContain('>100%</td>');
  });
});

describe('file names', () => {
  it('are safe and distinct per model', () => {
    expect(modelSlugs(['/runs/a/model', '/runs/b/model', 'org/Model-1.5B', 'org/model-1.5b'])).toEqual([
      'runs_a_model',
      'runs_b_model',
      'org_Model-1.5B',
      'org_model-1.5b-2',
    ]);
  });
});
