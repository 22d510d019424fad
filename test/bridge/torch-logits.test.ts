/**
 * The PyTorch core, run through each converted folder's own copied .py files (`fopeify logits --engine
 * torch`), against fopeify's TensorFlow.js runtime: every family, both layouts, sep-head on/off, YaRN and
 * llama3, a Mistral sliding window shorter than the input — logits within 1e-4 relative, and greedy
 * generation (KV cache) token for token.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { torchGenerate } from '../../src/bridge/torch-engine.js';
import { convertModel, type ConvertOptions } from '../../src/convert/convert.js';
import { loadModel } from '../../src/model/model.js';
import type { TinyKind } from '../../src/testing/tiny-checkpoint.js';
import { runCli } from '../cli/cli-helpers.js';
import { fixture, tempDir } from '../helpers.js';
import { relativeError, requireTorchWhenExpected, torchPython } from './torch-python.js';

const { py, why } = await torchPython();
const IDS = [3, 17, 200, 45, 9, 88, 120, 7, 66, 1, 250, 31];

interface Variant {
  name: string;
  kind: TinyKind;
  convert?: Partial<ConvertOptions>;
  /** Edit the base config before converting (e.g. a sliding window). */
  edit?: (cfg: Record<string, unknown>) => void;
}

const VARIANTS: Variant[] = [
  { name: 'llama, shared, sep-head', kind: 'llama' },
  { name: 'llama, per-layer', kind: 'llama', convert: { layout: 'per-layer' } },
  { name: 'llama, --no-sep-head', kind: 'llama', convert: { sepHead: false } },
  { name: 'llama, per-layer, --no-sep-head, sin pad 0', kind: 'llama', convert: { layout: 'per-layer', sepHead: false, sinPad: 0 } },
  { name: 'llama + --yarn 4 (attention factor)', kind: 'llama', convert: { yarn: 4 } },
  { name: 'llama with YaRN in its config', kind: 'llama-yarn' },
  { name: 'llama3 rope', kind: 'llama3' },
  { name: 'llama, transformers v5 rope_parameters', kind: 'llama-v5' },
  { name: 'mistral, sliding window 5', kind: 'mistral', edit: (c) => (c.sliding_window = 5) },
  { name: 'qwen2 (q/k/v bias, tied head)', kind: 'qwen2' },
  { name: 'qwen3 (q/k norm, head_dim 32)', kind: 'qwen3' },
  { name: 'qwen3, per-layer, --no-sep-head', kind: 'qwen3', convert: { layout: 'per-layer', sepHead: false } },
];

async function converted(root: string, v: Variant): Promise<{ base: string; out: string }> {
  const base = await fixture(root, { kind: v.kind });
  if (v.edit) {
    const file = path.join(base, 'config.json');
    const cfg = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
    v.edit(cfg);
    await fs.writeFile(file, JSON.stringify(cfg));
  }
  const out = `${base}-fope`;
  await convertModel({ model: base, outDir: out, initFactor: 0.5, ...v.convert });
  return { base, out };
}

async function tfjsLogits(dir: string): Promise<Float32Array[]> {
  const m = await loadModel(dir);
  try {
    const t = m.forward(IDS);
    const data = (await t.data()) as Float32Array;
    t.dispose();
    const V = m.spec.vocabSize;
    return IDS.map((_, i) => data.slice(i * V, (i + 1) * V));
  } finally {
    m.dispose();
  }
}

function torchCliLogits(dir: string): number[][] {
  const r = runCli(['logits', dir, '--ids', IDS.join(','), '--json', '--engine', 'torch', '--python', py!.python]);
  if (r.code !== 0) throw new Error(r.stderr);
  return (JSON.parse(r.stdout) as { logits: number[][] }).logits;
}

describe('--engine torch (the folder\'s own Python code) against the tfjs runtime', () => {
  requireTorchWhenExpected(py, why);
  const root = tempDir('fopeify-bridge-');
  for (const v of VARIANTS) {
    it.runIf(py)(v.name, async () => {
      const { base, out } = await converted(root, v);
      const want = await tfjsLogits(out);
      const got = torchCliLogits(out);
      expect(got).toHaveLength(IDS.length);
      expect(relativeError(got, want)).toBeLessThanOrEqual(1e-4);
      // The comparison can fail: the RoPE model the folder came from is far from its FoPE logits.
      expect(relativeError(await tfjsLogits(base), want)).toBeGreaterThan(1e-2);
    });
  }

  it.runIf(py)('greedy generation with the KV cache gives the same tokens', async () => {
    const { out } = await converted(root, { name: 'gen', kind: 'qwen3', convert: { layout: 'per-layer' } });
    const m = await loadModel(out);
    try {
      const tfjs = await m.generate(IDS.slice(0, 5), { maxNewTokens: 12, eosTokenId: null });
      expect(await torchGenerate(out, IDS.slice(0, 5), 12, { found: py! })).toEqual(tfjs.tokens);
    } finally {
      m.dispose();
    }
  });
});
