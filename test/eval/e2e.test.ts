/**
 * The needle harness on real fixture checkpoints through fopeify's tfjs runtime (tiny: hidden 64, two
 * layers, byte-level tokenizer), plus one hand-built "bigram" checkpoint constructed to answer a pass key.
 */
import { existsSync, promises as fs, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  loadEvalModel,
  passkeyText,
  readRecords,
  runNeedle,
  runtimeLoader,
  scoreCell,
  type EvalModelLoader,
  type NeedleRecord,
  type NeedleSummary,
} from '../../src/eval/index.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { writeTinyCheckpoint } from '../../src/testing/tiny-checkpoint.js';
import { runCli } from '../cli/cli-helpers.js';
import { tempDir } from '../helpers.js';
import { decodePng } from '../plot/png-decode.js';

const root = tempDir('fopeify-needle-e2e-');
const A = path.join(root, 'A');
const B = path.join(root, 'B');
const strip = (r: NeedleRecord) => ({ ...r, seconds: 0 });

/** A loader that remembers the prompt ids each model was given. */
function recordingLoader(): EvalModelLoader & { prompts: Map<string, number[][]>; loads: number } {
  const inner = runtimeLoader();
  const prompts = new Map<string, number[][]>();
  const self = {
    prompts,
    loads: 0,
    tokenizer: inner.tokenizer,
    load: async (name: string) => {
      self.loads++;
      const m = await inner.load(name);
      const seen: number[][] = [];
      prompts.set(name, seen);
      return {
        ...m,
        generateGreedy: (ids: number[], k: number) => {
          seen.push([...ids]);
          return m.generateGreedy(ids, k);
        },
      };
    },
  };
  return self;
}

beforeAll(async () => {
  await writeTinyCheckpoint(A, { seed: 1 });
  await writeTinyCheckpoint(B, { seed: 2, kind: 'qwen2' });
});

describe('needle on fixture models', () => {
  const grid = { lengths: [256, 288], depths: [0, 1], trials: 1, seed: 3 };
  let first: NeedleSummary;
  let out1: string;

  it('is deterministic: two runs give identical records; prompts are identical across models', async () => {
    out1 = path.join(root, 'run1');
    const out2 = path.join(root, 'run2');
    const loader = recordingLoader();
    first = await runNeedle({ models: [A, B], out: out1, ...grid, loader });
    await runNeedle({ models: [A, B], out: out2, ...grid });
    const r1 = await readRecords(path.join(out1, 'results.jsonl'));
    const r2 = await readRecords(path.join(out2, 'results.jsonl'));
    expect(r1).toHaveLength(8);
    expect(r1.map(strip)).toEqual(r2.map(strip));
    expect(r1.every((r) => r.seconds > 0 && typeof r.response === 'string')).toBe(true);
    expect(new Set(r1.map((r) => r.prompt_tokens))).toEqual(new Set([256, 288]));
    // Paired: both models got exactly the same prompt ids, in the same order.
    expect(loader.prompts.get(A)).toHaveLength(4);
    expect(loader.prompts.get(B)).toEqual(loader.prompts.get(A));
    for (const r of r1.filter((x) => x.model === B)) {
      const twin = r1.find((x) => x.model === A && x.context_length === r.context_length && x.depth === r.depth && x.trial === r.trial)!;
      expect(twin.key).toBe(r.key);
      expect(twin.prompt_tokens).toBe(r.prompt_tokens);
    }
  });

  it('writes the heatmaps, comparison, summaries and report', async () => {
    const files = await fs.readdir(out1);
    for (const f of ['results.jsonl', 'summary.csv', 'summary.json', 'comparison.svg', 'comparison.png', 'report.html']) expect(files).toContain(f);
    const maps = files.filter((f) => f.startsWith('heatmap-'));
    expect(maps.filter((f) => f.endsWith('.svg'))).toHaveLength(2);
    expect(maps.filter((f) => f.endsWith('.png'))).toHaveLength(2);
    const svgA = await fs.readFile(path.join(out1, maps.find((f) => f.endsWith('_A.svg'))!), 'utf8');
    expect([...svgA.matchAll(/class="x-label">([^<]*)</g)].map((m) => m[1])).toEqual(['256', '288']);
    expect([...svgA.matchAll(/class="y-label">([^<]*)</g)].map((m) => m[1])).toEqual(['0%', '100%']);
    expect(svgA).toContain('>Context length (tokens)<');
    expect(svgA).toContain('>Depth (%)<');
    const png = decodePng(await fs.readFile(path.join(out1, 'comparison.png')));
    expect(png.width).toBeGreaterThan(300);
    const summary = JSON.parse(await fs.readFile(path.join(out1, 'summary.json'), 'utf8')) as NeedleSummary;
    expect(summary).toEqual(first);
    expect(Object.keys(summary).slice(0, 8)).toEqual(['task', 'lengths', 'depths', 'trials', 'seed', 'mode', 'results', 'cells']);
    const html = await fs.readFile(path.join(out1, 'report.html'), 'utf8');
    expect(html).toContain('Passkey retrieval');
    expect(html).toContain('<svg');
    expect(html).toContain(A);
  });

  it('resumes: rerunning into the folder loads no model', async () => {
    const loader = recordingLoader();
    const again = await runNeedle({ models: [A, B], out: out1, ...grid, loader });
    expect(loader.loads).toBe(0);
    expect(again).toEqual(first);
  });

  it('teacher forcing reproduces greedy decoding on the runtime', async () => {
    const m = await loadEvalModel(A);
    try {
      const ids = m.encode(passkeyText(4321, 0.5, 40).text);
      const gen = await m.generateGreedy(ids, 6);
      const positions = gen.map((_, i) => ids.length - 1 + i);
      expect(await m.argmaxAt([...ids, ...gen], positions)).toEqual(gen);
    } finally {
      m.dispose();
    }
  });
});

/**
 * A checkpoint that answers " 12345": attention and MLP outputs are zeroed, so the logits depend on the
 * current token only, and the LM head maps "s" → " " → "1" → "2" → "3" → "4" → "5" → ".".
 */
async function writeBigramCheckpoint(dir: string): Promise<void> {
  await writeTinyCheckpoint(dir, { seed: 5 });
  const ckpt = await Checkpoint.open(dir);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name] of ckpt.tensors) tensors.set(name, { shape: [...ckpt.info(name).shape], data: await ckpt.readFloat32(name) });
  await ckpt.close();
  for (const [name, t] of tensors) if (/o_proj\.weight|down_proj\.weight/.test(name)) t.data.fill(0);
  const embed = tensors.get('model.embed_tokens.weight')!;
  const norm = tensors.get('model.norm.weight')!.data;
  const head = tensors.get('lm_head.weight')!;
  const H = norm.length;
  head.data.fill(0);
  const hidden = (tok: number) => {
    const e = embed.data.subarray(tok * H, (tok + 1) * H);
    const rms = Math.sqrt(e.reduce((s, v) => s + v * v, 0) / H + 1e-5);
    const h = Array.from(e, (v, i) => (v / rms) * norm[i]!);
    const len = Math.hypot(...h);
    return h.map((v) => v / len);
  };
  const chain = 's 12345.';
  for (let i = 0; i + 1 < chain.length; i++) {
    const h = hidden(chain.charCodeAt(i));
    const next = chain.charCodeAt(i + 1);
    for (let j = 0; j < H; j++) head.data[next * H + j]! += 20 * h[j]!;
  }
  for (const f of await fs.readdir(dir)) if (f.endsWith('.safetensors') || f.endsWith('.index.json')) await fs.rm(path.join(dir, f));
  await writeSafetensors(
    path.join(dir, 'model.safetensors'),
    [...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) })),
    { format: 'pt' },
  );
}

describe('a case constructed to be right, on the runtime', () => {
  it('generate and teacher-forced both score it right, and both score a wrong key wrong', async () => {
    const dir = path.join(root, 'bigram');
    await writeBigramCheckpoint(dir);
    const m = await loadEvalModel(dir);
    try {
      const right = { text: passkeyText(12345, 0.5, 60).text, answer: ' 12345', key: 12345 };
      const wrong = { text: passkeyText(54321, 0.5, 60).text, answer: ' 54321', key: 54321 };
      const g = await scoreCell(m, right, 'generate');
      expect(g.response.startsWith(' 12345.')).toBe(true);
      expect(g.correct).toBe(true);
      const t = await scoreCell(m, right, 'teacher-forced');
      expect(t).toMatchObject({ response: ' 12345', correct: true });
      expect((await scoreCell(m, wrong, 'generate')).correct).toBe(false);
      expect((await scoreCell(m, wrong, 'teacher-forced')).correct).toBe(false);
    } finally {
      m.dispose();
    }
  });
});

describe('fopeify needle (CLI)', () => {
  it('runs end to end, prints the table, resumes, and shares its report with ppl --models', () => {
    const out = path.join(root, 'cli');
    const args = ['needle', '--models', `${A},${B}`, '--lengths', '64,128', '--depths', '0,1', '--trials', '1', '--out', out];
    const r = runCli(args);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/passkey retrieval accuracy/);
    expect(r.stdout).toContain(`report: ${out}/report.html`);
    expect(r.stderr).toMatch(/shorter than the passkey template/);
    expect(existsSync(path.join(out, 'comparison.png'))).toBe(true);
    const again = runCli([...args, '--json']);
    expect(again.code).toBe(0);
    const summary = JSON.parse(again.stdout) as NeedleSummary;
    expect(summary.results.map((x) => x.trials)).toEqual([2, 2, 2, 2]);
    // fopeify ppl --models writes its chart into the same report.
    const textFile = path.join(root, 'text.txt');
    writeFileSync(textFile, 'The grass is green. The sky is blue. '.repeat(20));
    const ppl = runCli(['ppl', '--models', `${A},${B}`, '--text', textFile, '--windows', '32,64', '--max-windows', '2', '--out', out, '--json']);
    expect(ppl.code).toBe(0);
    const pplJson = JSON.parse(readFileSync(path.join(out, 'ppl.json'), 'utf8')) as { windows: number[]; results: { model: string }[] };
    expect(pplJson.windows).toEqual([32, 64]);
    expect(pplJson.results.map((x) => x.model)).toEqual([A, A, B, B]);
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toContain('Passkey retrieval');
    expect(html).toContain('Perplexity vs context length');
    const bad = runCli(['needle', '--models', A, '--depths', '0,50', '--out', out]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--depths must be fractions/);
  });
});
