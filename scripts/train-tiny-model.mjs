// Trains the tiny RoPE model shipped in fixtures/tiny-rope-256 — fopeify training itself, from scratch.
// Deterministic: the same seed gives the same bytes on the same backend. Rerun with
//   npm run build && node scripts/train-tiny-model.mjs [--steps N] [--seed S] [--out DIR]
// Byte-level tokenizer, ~0.8M parameters, 256-token training length, Brown corpus text mixed with
// passkey-style documents (src/demo/data.ts) so the model learns to retrieve a pass key at its length.
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
const steps = Number(args.steps ?? 600);
const seed = Number(args.seed ?? 0);
const out = path.resolve(args.out ?? path.join(root, 'fixtures', 'tiny-rope-256'));
const SHAPE = {
  hiddenSize: 128, intermediateSize: 384, numLayers: 4, numHeads: 4, numKvHeads: 2,
  maxPositionEmbeddings: TRAIN_LENGTH, ropeTheta: 10000, tieWordEmbeddings: true,
};

const texts = await demoTexts({ length: TRAIN_LENGTH, count: 6000, seed });
const init = path.join(os.tmpdir(), `fopeify-tiny-init-${process.pid}`);
await fs.rm(init, { recursive: true, force: true });
await writeTinyCheckpoint(init, { kind: 'llama', shape: SHAPE, seed, initStd: 0.02, embedStd: 0.02, normNoise: 0 });
const t0 = Date.now();
const result = await finetune({
  model: init,
  outDir: out,
  force: true,
  backend: 'auto',
  data: { texts, name: `Brown corpus + passkey documents (${TRAIN_LENGTH} bytes each)` },
  settings: {
    seqLen: TRAIN_LENGTH, steps, batch: 16, gradAccum: 1, lr: 3e-3, betas: [0.9, 0.95], weightDecay: 0.01,
    warmupSteps: 50, schedule: 'cosine', minLrRatio: 0.05, maxGradNorm: 1, trainable: 'all', seed,
    evalEvery: Math.max(50, Math.round(steps / 12)), saveEvery: 100, evalPasskey: true,
  },
  passkeyTrials: 10,
  onStep: (s) => {
    if (s.step % 10 === 0 || s.step === steps) {
      const pk = s.eval?.passkeyAccuracy !== undefined ? ` passkey@${TRAIN_LENGTH} ${(s.eval.passkeyAccuracy * 100).toFixed(0)}%` : '';
      console.log(`step ${s.step}/${steps} loss ${s.loss.toFixed(3)} lr ${s.lr.toExponential(2)} ${s.tokensPerSecond.toFixed(0)} tok/s${pk}`);
    }
  },
  onLog: (l) => console.log(l),
});
await fs.rm(init, { recursive: true, force: true });
console.log(`trained in ${((Date.now() - t0) / 1000).toFixed(0)} s; final loss ${result.finalLoss?.toFixed(3)}; last eval ${JSON.stringify(result.lastEval)}`);
