// Trains the tiny RoPE model shipped in fixtures/tiny-rope-256 — fopeify training itself, from scratch.
// Deterministic: the same seed gives the same bytes on the same backend and fopeify version (the
// native passes are bit-identical to the JavaScript/WebAssembly ones, tested). Rerun with
//   npm run build && node scripts/train-tiny-model.mjs [--seed S] [--out DIR] [--from-phase1|2|3a DIR]
// Byte-level tokenizer, ~0.8M parameters, 256-token training length; data from src/demo/data.ts:
//   1.   Brown corpus text mixed with passkey documents (600 steps × 16 × 256 tokens);
//   2.   passkey documents, copy documents (a text repeated) and text (300 steps);
//   3a.  induction: dense copy documents (a random string, a varying gap, the string again) and some
//        text, 128 bytes, 32 per step (700 steps, then 800 more on fresh documents);
//   3b.  retrieval in the template's words: passkey, associative-recall ("The {name} key is {n}.")
//        and repeat documents with text, 256 bytes (300 steps).
// About an hour on 2 CPU cores. --from-phaseN DIR starts after phase N from that phase's output.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { writeTinyCheckpoint } = await import(path.join(root, 'dist/testing/tiny-checkpoint.js'));
const { finetune } = await import(path.join(root, 'dist/train/index.js'));
const { demoTexts } = await import(path.join(root, 'dist/demo/data.js'));

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const TRAIN_LENGTH = 256;
const seed = Number(args.seed ?? 0);
const out = path.resolve(args.out ?? path.join(root, 'fixtures', 'tiny-rope-256'));
const phase1Dir = args['from-phase1'] ? path.resolve(args['from-phase1']) : path.join(os.tmpdir(), `fopeify-tiny-phase1-${seed}`);
const phase2Dir = args['from-phase2'] ? path.resolve(args['from-phase2']) : path.join(os.tmpdir(), `fopeify-tiny-phase2-${seed}`);
const phase3aSteps = Number(args['phase3a-steps'] ?? 700);
const phase3a2Steps = Number(args['phase3a2-steps'] ?? 800);
const phase3Steps = Number(args['phase3b-steps'] ?? 300);
const SHAPE = {
  hiddenSize: 128, intermediateSize: 384, numLayers: 4, numHeads: 4, numKvHeads: 2,
  maxPositionEmbeddings: TRAIN_LENGTH, ropeTheta: 10000, tieWordEmbeddings: true,
};
const common = { seqLen: TRAIN_LENGTH, batch: 16, gradAccum: 1, betas: [0.9, 0.95], weightDecay: 0.01, maxGradNorm: 1, trainable: 'all', seed, saveEvery: 100, evalPasskey: true };
const report = (steps) => (s) => {
  if (s.step % 10 === 0 || s.step === steps) {
    const pk = s.eval?.passkeyAccuracy !== undefined ? ` passkey@${TRAIN_LENGTH} ${(s.eval.passkeyAccuracy * 100).toFixed(0)}%` : '';
    console.log(`step ${s.step}/${steps} loss ${s.loss.toFixed(3)} lr ${s.lr.toExponential(2)} ${s.tokensPerSecond.toFixed(0)} tok/s${pk}`);
  }
};
const t0 = Date.now();

if (!args['from-phase1'] && !args['from-phase2'] && !args['from-phase3a']) {
  const steps = 600;
  const init = path.join(os.tmpdir(), `fopeify-tiny-init-${process.pid}`);
  await fs.rm(init, { recursive: true, force: true });
  await writeTinyCheckpoint(init, { kind: 'llama', shape: SHAPE, seed, initStd: 0.02, embedStd: 0.02, normNoise: 0 });
  const texts = await demoTexts({ length: TRAIN_LENGTH, count: 6000, seed });
  console.log('phase 1: language + passkey documents');
  await finetune({
    model: init, outDir: phase1Dir, force: true, backend: 'auto',
    data: { texts, name: `Brown corpus + passkey documents (${TRAIN_LENGTH} bytes each)` },
    settings: { ...common, steps, lr: 3e-3, warmupSteps: 50, schedule: 'cosine', minLrRatio: 0.05, evalEvery: 50 },
    passkeyTrials: 10, onStep: report(steps), onLog: (l) => console.log(l),
  });
  await fs.rm(init, { recursive: true, force: true });
}

if (!args['from-phase2'] && !args['from-phase3a']) {
  const steps = 300;
  const texts = await demoTexts({ length: TRAIN_LENGTH, count: 2400, seed: seed + 100, passkeyShare: 0.6, extraQuestion: 0.5, copyShare: 1 });
  console.log('phase 2: passkey documents, copy documents and text');
  await finetune({
    model: phase1Dir, outDir: phase2Dir, force: true, backend: 'auto',
    data: { texts, name: `passkey + copy + text mix (${TRAIN_LENGTH} bytes each)` },
    settings: { ...common, steps, lr: 1e-3, warmupSteps: 20, schedule: 'cosine', minLrRatio: 0.1, evalEvery: 50 },
    passkeyTrials: 20, onStep: report(steps), onLog: (l) => console.log(l),
  });
}

// Phase 3a: induction first. Short (128-byte) documents, mostly dense copy documents (a random string
// and, after a varying gap, the same string again) plus some text, 32 per step: the content-based copy
// circuit forms after many thousands of such documents, far sooner than with copies as a minority.
// It runs as 700 steps, then 800 more on fresh documents (the circuit formed ~300 steps into the second).
async function denseCopyPhase(model, outDir, steps, dataSeed, label) {
  const count = Math.ceil(steps * 32 * 0.2) + 16;
  const texts = await demoTexts({ length: 128, count, seed: dataSeed, passkeyShare: 0.5, copyShare: 0, denseCopyShare: 8 });
  console.log(`${label}: dense copy documents and text, 128 bytes`);
  await finetune({
    model, outDir, force: true, backend: 'auto',
    data: { texts, name: 'dense copy documents + text + passkey documents (128 bytes each)' },
    settings: { ...common, seqLen: 128, batch: 32, steps, lr: 2e-3, warmupSteps: 20, schedule: 'constant', minLrRatio: 1, evalEvery: 100, evalPasskey: false },
    onStep: report(steps), onLog: (l) => console.log(l),
  });
}
const phase3aDir = args['from-phase3a'] ? path.resolve(args['from-phase3a']) : path.join(os.tmpdir(), `fopeify-tiny-phase3a-${seed}`);
if (!args['from-phase3a']) await denseCopyPhase(phase2Dir, phase3aDir, phase3aSteps, seed + 300, 'phase 3a');
const phase3a2Dir = path.join(os.tmpdir(), `fopeify-tiny-phase3a2-${seed}`);
await denseCopyPhase(phase3aDir, phase3a2Dir, phase3a2Steps, seed + 400, 'phase 3a (continued)');

// Phase 3b: retrieval in the passkey template's words, and text again.
let result;
{
  const steps = phase3Steps;
  // Per passkey document: 1.25 text, 1 repeat, 1 recall, 0.5 dense copy documents.
  const count = Math.ceil((steps * 16) / 4.75) + 16;
  const texts = await demoTexts({ length: TRAIN_LENGTH, count, seed: seed + 200, passkeyShare: 1 / 2.25, repeatShare: 1, recallShare: 1, denseCopyShare: 0.5, taskShare: 0.6 });
  console.log('phase 3b: passkey, recall, repeat and copy documents, and text');
  result = await finetune({
    model: phase3a2Dir, outDir: out, force: true, backend: 'auto',
    data: { texts, name: `text + passkey, recall, repeat and copy documents (${TRAIN_LENGTH} bytes each)` },
    settings: { ...common, steps, lr: 1e-3, warmupSteps: 20, schedule: 'cosine', minLrRatio: 0.1, evalEvery: 100 },
    passkeyTrials: 20, onStep: report(steps), onLog: (l) => console.log(l),
  });
}
{
  // The earlier phases' per-step metrics travel with the model (metrics.jsonl is phase 3b's).
  // Taken from the folders this run made or was given, never from stale temp folders of other runs.
  const copyIfThere = (from, to) => fs.copyFile(from, path.join(out, to)).catch(() => undefined);
  const fromP2 = Boolean(args['from-phase2']);
  if (!args['from-phase3a']) {
    if (fromP2) await copyIfThere(path.join(phase2Dir, 'metrics-phase1.jsonl'), 'metrics-phase1.jsonl');
    else await copyIfThere(path.join(phase1Dir, 'metrics.jsonl'), 'metrics-phase1.jsonl');
    await copyIfThere(path.join(phase2Dir, 'metrics.jsonl'), 'metrics-phase2.jsonl');
    await copyIfThere(path.join(phase3aDir, 'metrics.jsonl'), 'metrics-phase3a.jsonl');
  }
  await copyIfThere(path.join(phase3a2Dir, 'metrics.jsonl'), 'metrics-phase3a2.jsonl');
  console.log(`trained in ${((Date.now() - t0) / 1000).toFixed(0)} s; final loss ${result.finalLoss?.toFixed(3)}; last eval ${JSON.stringify(result.lastEval)}`);
}
