#!/usr/bin/env node
/**
 * Fixtures for scripts/gpu-check-bridge.py (a machine with Python + torch + transformers and no Node):
 * for every variant the bridge tests cover, a tiny checkpoint converted to FoPE by fopeify, with
 * expected.json = fopeify's logits (`fopeify logits --json`) for fixed ids and 20 greedy tokens from
 * `fopeify generate --ignore-eos --json` for a fixed prompt (and the prompt's token ids).
 *
 *   npm run build && node scripts/make-bridge-fixtures.mjs <out-dir>
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { convertModel, writeTinyCheckpoint, loadTokenizer } from '../dist/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.join(here, '..', 'bin', 'fopeify.js');
const out = path.resolve(process.argv[2] ?? 'bridge-fixtures');
const IDS = [3, 17, 200, 45, 9, 88, 120, 7, 66, 1, 250, 31];
const PROMPT = 'The passkey is 4721. Remember it. The passkey is';

const VARIANTS = [
  ['llama-shared', 'llama', {}],
  ['llama-per-layer', 'llama', { layout: 'per-layer' }],
  ['llama-no-sep-head', 'llama', { sepHead: false }],
  ['llama-yarn4', 'llama', { yarn: 4 }],
  ['llama3', 'llama3', {}],
  ['llama-v5-rope-parameters', 'llama-v5', {}],
  ['mistral-window5', 'mistral', {}, (c) => (c.sliding_window = 5)],
  ['qwen2', 'qwen2', {}],
  ['qwen3', 'qwen3', {}],
  ['qwen3-per-layer-no-sep-head', 'qwen3', { layout: 'per-layer', sepHead: false }],
];

function cli(args) {
  return execFileSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' }, maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'pipe'] });
}

await fs.mkdir(out, { recursive: true });
for (const [name, kind, settings, edit] of VARIANTS) {
  const base = path.join(out, '.base', name);
  await writeTinyCheckpoint(base, { kind });
  if (edit) {
    const file = path.join(base, 'config.json');
    const cfg = JSON.parse(await fs.readFile(file, 'utf8'));
    edit(cfg);
    await fs.writeFile(file, JSON.stringify(cfg, null, 2));
  }
  const dir = path.join(out, name);
  await convertModel({ model: base, outDir: dir, initFactor: 0.5, force: true, ...settings });
  const logits = JSON.parse(cli(['logits', dir, '--ids', IDS.join(','), '--json'])).logits;
  const gen = JSON.parse(cli(['generate', dir, '--prompt', PROMPT, '--max-new-tokens', '20', '--ignore-eos', '--json']));
  const promptIds = (await loadTokenizer(dir)).encode(PROMPT);
  const expected = { variant: name, kind, settings, ids: IDS, logits, prompt: PROMPT, prompt_ids: promptIds, generated: gen.new_tokens };
  await fs.writeFile(path.join(dir, 'expected.json'), JSON.stringify(expected) + '\n');
  process.stdout.write(`${name}: ${dir}\n`);
}
await fs.rm(path.join(out, '.base'), { recursive: true, force: true });
