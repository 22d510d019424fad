import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/select.js';
import { loadModel } from '../../src/model/index.js';
import { expectCleanFailure, runCli } from '../cli/cli-helpers.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir();
let model: string;
let text: string;

beforeAll(async () => {
  await setupBackend({ backend: 'auto', quiet: true });
  model = await fixture(root, { seed: 9, shape: { maxPositionEmbeddings: 32 } });
  text = path.join(root, 'corpus.txt');
  const words = 'the cat sees a dog and the dog sees a bird while the child draws the old tree by the blue door'.split(' ');
  await fs.writeFile(text, Array.from({ length: 3000 }, (_, i) => words[(i * 7) % words.length]).join(' '));
});

describe('fopeify finetune / recipes (CLI)', () => {
  it('recipes lists the shipped recipes', () => {
    const r = runCli(['recipes', '--json']);
    expect(r.code).toBe(0);
    const names = (JSON.parse(r.stdout) as { name: string }[]).map((x) => x.name);
    expect(names).toEqual(expect.arrayContaining(['yarn', 'fope', 'fope-yarn', 'longlora', 'none']));
    expect(runCli(['recipes']).stdout).toMatch(/yarn\s+YaRN seq-len\/original/);
  });

  it('--stop-after, --resume, and the saved folder round-trips through `logits`', async () => {
    const out = path.join(root, 'ft');
    const args = ['finetune', model, '--recipe', 'yarn', '--data', text, '--seq-len', '64', '--steps', '4', '--lr', '1e-3', '--save-every', '2', '--out', out];
    const first = runCli([...args, '--stop-after', '3']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/stopped after step 3\/4 .*--resume --out/);
    expect(first.stderr).toMatch(/settings:\n\s+seqLen: 64/);
    const second = runCli(['finetune', model, '--resume', '--out', out, '--json']);
    expect(second.code, second.stderr).toBe(0);
    const res = JSON.parse(second.stdout);
    expect(res).toMatchObject({ completed: true, step: 4, resumedFrom: 3, recipe: 'yarn', settings: { seqLen: 64, lr: 1e-3 }, conversion: { kind: 'yarn' } });
    const metrics = (await fs.readFile(path.join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.map((m: { step: number }) => m.step)).toEqual([1, 2, 3, 4]);

    const logits = runCli(['logits', out, '--ids', '5,6,7', '--json']);
    expect(logits.code, logits.stderr).toBe(0);
    const rows = JSON.parse(logits.stdout).logits as number[][];
    const m = await loadModel(out);
    const t = m.forward([5, 6, 7]);
    const want = t.dataSync();
    t.dispose();
    m.dispose();
    expect(rows.length).toBe(3);
    rows.flat().forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThan(1e-4));
    const inspect = runCli(['inspect', out]);
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toMatch(/rope\s+yarn/);
  });

  it('--recompute and --activation-memory: the decision in the log and in --json; bad values are one clear line', () => {
    const base = ['finetune', model, '--recipe', 'none', '--data', text, '--seq-len', '16', '--steps', '1', '--save-every', '0'];
    const auto = runCli([...base, '--activation-memory', '0', '--out', path.join(root, 'act-auto')]);
    expect(auto.code, auto.stderr).toBe(0);
    expect(auto.stderr).toMatch(/activations: 0 of 2 layers kept \(0\.00 GiB est\. at 16 tokens\), 2 recomputed \(--recompute auto, budget 0\.00 GiB\)/);
    const never = runCli([...base, '--recompute', 'never', '--json', '--out', path.join(root, 'act-never')]);
    expect(never.code, never.stderr).toBe(0);
    expect(JSON.parse(never.stdout).activations).toMatchObject({ policy: 'never', tokens: 16, kept: 2, recomputed: 0 });
    // The model folder's finetune.json records the decision too.
    const summary = JSON.parse(readFileSync(path.join(root, 'act-never', 'finetune.json'), 'utf8'));
    expect(summary.activations).toMatchObject({ policy: 'never', kept: 2, recomputed: 0 });
    expectCleanFailure(runCli([...base, '--recompute', 'sometimes', '--out', path.join(root, 'act-x')]), /recompute.*Choices: "auto", "always", "never"/);
    expectCleanFailure(runCli([...base, '--activation-memory', '-1', '--out', path.join(root, 'act-y')]), /--activation-memory must be a number of GiB ≥ 0 \(got -1\)/);
    expectCleanFailure(runCli([...base, '--activation-memory', 'lots', '--out', path.join(root, 'act-y')]), /--activation-memory must be a number of GiB ≥ 0 \(got lots\)/);
    // The torch engine checkpoints on its own terms: a setting it would ignore is refused before any work.
    const torchOut = path.join(root, 'act-torch');
    expectCleanFailure(runCli([...base, '--engine', 'torch', '--recompute', 'never', '--out', torchOut]), /--recompute and --activation-memory apply to the tfjs engine/);
    expectCleanFailure(runCli([...base, '--engine', 'torch', '--activation-memory', '2', '--out', torchOut]), /--recompute and --activation-memory apply to the tfjs engine/);
  });

  it('bad input is one clear line', () => {
    expectCleanFailure(runCli(['finetune', model, '--data', text, '--out', path.join(root, 'x')]), /--recipe is required/);
    expectCleanFailure(runCli(['finetune', model, '--recipe', 'nope', '--out', path.join(root, 'y')]), /unknown recipe "nope" \(available: fope/);
    expectCleanFailure(runCli(['finetune', model, '--recipe', 'fope', '--data', text, '--out', path.join(root, 'z')]), /fine-tunes a FoPE model/);
    expectCleanFailure(runCli(['finetune', model, '--resume', '--out', path.join(root, 'none')]), /no checkpoint/);
  });
});
