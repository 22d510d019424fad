import { describe, expect, it } from 'vitest';
import { renderCard, settingsTable, yamlScalar } from '../../src/card/markdown.js';
import { convertModelCard } from '../../src/convert/model-card.js';

describe('the model-card builder', () => {
  it('renders front matter, title, intro, sections and footer in order', () => {
    const card = renderCard({
      baseModel: 'org/base',
      tags: ['fope', 'long-context'],
      title: 'T',
      intro: 'Intro.',
      sections: [{ heading: 'A', lines: ['- one'] }, { heading: 'B', lines: settingsTable([['k', 'a | b']]) }],
      footer: ['end'],
    });
    expect(card).toBe(
      '---\nbase_model: org/base\nlibrary_name: transformers\ntags:\n- fope\n- long-context\n---\n\n# T\n\nIntro.\n\n## A\n\n- one\n\n## B\n\n| setting | value |\n|---|---|\n| k | a \\| b |\n\nend\n',
    );
  });

  it('names a local base model only in the text, never as base_model', () => {
    for (const local of ['./model', '../runs/base', '/data/models/llama', 'model']) {
      const card = renderCard({ baseModel: local, tags: [], title: `of ${local}`, intro: '', sections: [] });
      expect(card).not.toContain('base_model');
      expect(card).toContain(`# of ${local}`);
    }
  });

  it('quotes YAML scalars only where a plain one would be read otherwise', () => {
    expect(yamlScalar('Qwen/Qwen2.5-0.5B')).toBe('Qwen/Qwen2.5-0.5B');
    expect(yamlScalar('yes')).toBe('"yes"');
    expect(yamlScalar('1.5')).toBe('"1.5"');
    expect(yamlScalar('a b')).toBe('"a b"');
  });

  it("convert's card is a card of the builder: the Hub card format reads it back", () => {
    const card = convertModelCard({
      baseModel: 'org/base', lines: ['did it'], k: 12, headDimHalf: 16, clipLength: 4096, clippedWavelengths: [5000.4], initFactor: 0.1, sepHead: true,
      layout: 'per-layer', sinPad: 0, coefficientNames: ['a', 'b', 'c', 'd', 'e'], coefficientShape: [2, 12, 24], archName: 'fope', loadId: './out',
    });
    expect(card.startsWith('---\nbase_model: org/base\nlibrary_name: transformers\ntags:\n- fope\n- fopeify\n- long-context\n---\n\n# FoPE conversion of org/base\n')).toBe(true);
    expect(card).toContain('## What was done\n\n- did it\n\n## FoPE settings\n\n| setting | value |\n|---|---|\n| frequencies kept (num_inv_freq) | 12 of 16 |');
    expect(card).toContain('Coefficients (float32, shape [2, 12, 24]): `a`, `b`, `c`, `d`, ….');
    expect(card.endsWith('Provenance (tool version, source files and their hashes, every option) is in `fopeify.json`.\n')).toBe(true);
  });
});
