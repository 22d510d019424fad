// Trains the tiny RoPE model shipped in fixtures/tiny-rope-256 — fopeify training itself, from scratch.
// Deterministic: the same seed gives the same bytes on the same backend and fopeify version. Rerun with
//   npm run build && node scripts/train-tiny-model.mjs [--seed S] [--out DIR]
// Byte-level tokenizer, ~0.8M parameters, 256-token training length. Phase 1: Brown corpus text mixed
// with passkey-style documents (src/demo/data.ts). Phase 2: passkey documents, copy documents (a text
// repeated: dense retrieval signal) and text, so that the model learns to retrieve at its training length.
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
// --from-phase1 DIR skips phase 1 when its output (from this script) is already at hand.
const phase1Dir = args['from-phase1'] ? path.resolve(args['from-phase1']) : path.join(os.tmpdir(), `fopeify-tiny-phase1-${seed}`);
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

if (!args['from-phase1']) {
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

{
  const steps = 300;
  const texts = await demoTexts({ length: TRAIN_LENGTH, count: 2400, seed: seed + 100, passkeyShare: 0.6, extraQuestion: 0.5, copyShare: 1 });
  console.log('phase 2: passkey documents, copy documents and text');
  const result = await finetune({
    model: phase1Dir, outDir: out, force: true, backend: 'auto',
    data: { texts, name: `passkey + copy + text mix (${TRAIN_LENGTH} bytes each)` },
    settings: { ...common, steps, lr: 1e-3, warmupSteps: 20, schedule: 'cosine', minLrRatio: 0.1, evalEvery: 50 },
    passkeyTrials: 20, onStep: report(steps), onLog: (l) => console.log(l),
  });
  console.log(`trained in ${((Date.now() - t0) / 1000).toFixed(0)} s; final loss ${result.finalLoss?.toFixed(3)}; last eval ${JSON.stringify(result.lastEval)}`);
}
