import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { splitCard } from '../../src/hub/card-front-matter.js';
import { findEvalReports, parseNeedleSummary, parsePplReport, pickReportModel } from '../../src/hub/card-reports.js';
import { buildModelCard, CARD_BEGIN, CARD_END, hasFopeKeys, refreshModelCard } from '../../src/hub/model-card.js';
import { tmp, writeFolder } from './fixtures.js';

const temps: string[] = [];
afterAll(async () => {
  await Promise.all(temps.map((d) => fs.rm(d, { recursive: true, force: true })));
});

const needle = {
  task: 'passkey' as const,
  lengths: [128, 1024],
  results: [
    { model: 'org/fope', context_length: 128, accuracy: 1, trials: 20 },
    { model: 'org/fope', context_length: 1024, accuracy: 0.85, trials: 20 },
    { model: 'org/base', context_length: 128, accuracy: 1, trials: 20 },
    { model: 'org/base', context_length: 1024, accuracy: 0, trials: 20 },
  ],
};

describe('buildModelCard', () => {
  it('front matter with base_model, tags, library_name and model-index; body with what was done', () => {
    const card = buildModelCard({
      baseModel: 'org/base',
      done: ['Rotary embedding replaced by FoPE.', 'Coefficients frozen.'],
      provenance: { tool: 'fopeify', version: '0.1.0', command: 'convert', source: { id: 'org/base', commit: 'b'.repeat(40) }, options: { init_factor: 0.1, yarn: null } },
      evals: { needle, ppl: { windows: [128], results: [{ model: 'org/fope', window: 128, ppl: 9.87654 }] } },
      fope: true,
      modelName: 'org/fope',
    });
    const { front, body } = splitCard(card);
    expect(front.split('\n').slice(0, 5)).toEqual(['base_model: org/base', 'library_name: transformers', 'tags:', '- fope', '- fopeify']);
    expect(front).toContain('model-index:\n- name: org/fope\n  results:\n  - task:\n      type: text-generation');
    expect(front).toContain('    - type: accuracy\n      name: "accuracy at 1024 tokens (20 trials)"\n      value: 0.85');
    expect(front).toContain('    - type: perplexity\n      name: "perplexity at 128 tokens"\n      value: 9.8765');
    expect(front).not.toContain('org/base\n  results'); // the base model's numbers are not claimed
    expect(body).toContain(CARD_BEGIN);
    expect(body).toContain(CARD_END);
    expect(body).toContain('# FoPE conversion of org/base');
    expect(body).toContain('- Rotary embedding replaced by FoPE.');
    expect(body).toContain('| `org/base` | 100% (20) | 0% (20) |');
    expect(body).toContain('| options | init_factor=0.1 |');
    expect(body).toContain('org/base @ `bbbbbbbbbbbb`');
  });

  it('a local base model is named in the body but not as base_model', () => {
    const card = buildModelCard({ baseModel: '/data/models/llama', done: [] });
    expect(splitCard(card).front).not.toContain('base_model');
    expect(card).toContain('`/data/models/llama`');
  });

  it('rewrites only its own section and keeps the user’s front matter and text', () => {
    const first = buildModelCard({ baseModel: 'org/base', done: ['one'], fope: true });
    const edited = first
      .replace('library_name: transformers', 'library_name: transformers\nlicense: mit\ndatasets:\n- c4')
      .replace('tags:\n', 'tags:\n- custom\n')
      .concat('\n## Notes\n\nHand-written.\n');
    const second = buildModelCard({ baseModel: 'org/base', done: ['two'], fope: true, existing: edited });
    expect(second).toContain('license: mit\ndatasets:\n- c4');
    expect(second).toContain('- custom');
    expect(second).toContain('Hand-written.');
    expect(second).toContain('- two');
    expect(second).not.toContain('- one');
    expect(second.match(/fopeify:begin/g)).toHaveLength(1);
    // idempotent
    expect(buildModelCard({ baseModel: 'org/base', done: ['two'], fope: true, existing: second })).toBe(second);
  });

  it('replaces an unmarked card written by convert, keeping its sections', () => {
    const convertCard = [
      '---',
      'base_model: "org/base"',
      'library_name: transformers',
      'tags:',
      '- fope',
      '- fopeify',
      '- long-context',
      '---',
      '',
      '# FoPE conversion of org/base',
      '',
      'This checkpoint was converted from RoPE to FoPE (Fourier Position Embedding, Hua et al., ICML 2025, arXiv 2412.17739) by fopeify.',
      '',
      '## What was done',
      '',
      '- kept 8 of 16 frequencies',
      '',
      '## FoPE settings',
      '',
      '| setting | value |',
      '|---|---|',
      '| clip length | 64 tokens |',
      '',
    ].join('\n');
    return (async () => {
      const dir = await tmp();
      temps.push(dir);
      await writeFolder(dir, { 'README.md': convertCard, 'config.json': JSON.stringify({ rope_scaling: { fope_init_factor: 0.1 } }) });
      const { content } = await refreshModelCard(dir, { repo: 'org/fope' });
      expect(content.match(/# FoPE conversion of org\/base/g)).toHaveLength(1);
      expect(content).toContain('- kept 8 of 16 frequencies');
      expect(content).toContain('## FoPE settings');
      expect(content).toContain('| clip length | 64 tokens |');
      expect(content).toContain('- long-context');
      expect(content.indexOf('## FoPE settings')).toBeGreaterThan(content.indexOf(CARD_BEGIN));
    })();
  });
});

describe('eval reports', () => {
  it('parses valid reports and ignores malformed ones', () => {
    expect(parseNeedleSummary(needle)?.results).toHaveLength(4);
    expect(parseNeedleSummary({ task: 'other', lengths: [], results: [] })).toBeUndefined();
    expect(parseNeedleSummary({ task: 'niah', lengths: [1], results: [{ model: 'm', context_length: 1 }] })?.results).toEqual([]);
    expect(parsePplReport({ windows: [1], results: [{ model: 'm', window: 1, ppl: 2 }] })?.results).toHaveLength(1);
    expect(parsePplReport(null)).toBeUndefined();
  });

  it('finds summary.json / ppl.json in dir, dir/eval and dir/../report', async () => {
    const root = await tmp();
    temps.push(root);
    const dir = path.join(root, 'model');
    await writeFolder(root, {
      'model/config.json': '{}',
      'model/eval/ppl.json': JSON.stringify({ windows: [1], results: [{ model: 'm', window: 1, ppl: 2 }] }),
      'report/summary.json': JSON.stringify(needle),
    });
    const found = await findEvalReports(dir);
    expect(found.needle?.task).toBe('passkey');
    expect(found.ppl?.windows).toEqual([1]);
    expect(found.files.map((f) => path.relative(root, f)).sort()).toEqual(['model/eval/ppl.json', 'report/summary.json']);
  });

  it('picks this model among the report’s models', () => {
    expect(pickReportModel(['org/base', 'org/fope'], ['org/fope'])).toBe('org/fope');
    expect(pickReportModel(['runs/fope-1', 'org/base'], ['/tmp/x/fope-1'])).toBe('runs/fope-1');
    expect(pickReportModel(['only'], ['nothing'])).toBe('only');
    expect(pickReportModel(['org/base', 'mine'], ['nothing'], 'org/base')).toBe('mine');
    expect(pickReportModel(['a', 'b', 'c'], ['nothing'], 'org/base')).toBeUndefined();
  });

  it('FoPE keys in rope_parameters, rope_scaling or the top level', () => {
    expect(hasFopeKeys({ rope_scaling: { rope_type: 'default', fope_init_factor: 0.5 } })).toBe(true);
    expect(hasFopeKeys({ rope_parameters: { fope_sep_head: true } })).toBe(true);
    expect(hasFopeKeys({ rope_scaling: { rope_type: 'default', num_inv_freq: null } })).toBe(false);
    expect(hasFopeKeys({ rope_theta: 10000 })).toBe(false);
  });
});
