import { REMOTE_CODE_FILES } from '../../src/bridge/remote-code.js';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/select.js';
import { convertModel } from '../../src/convert/convert.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { forwardLogits, loadModel } from '../../src/model/index.js';
import { finetune, readMetrics, type FinetuneOptions } from '../../src/train/index.js';
import { fixture, tempDir } from '../helpers.js';

const root = tempDir();
let dataFile: string;

/** Deterministic, learnable text: templated sentences. */
function trainingText(sentences: number): string {
  const subjects = ['The cat', 'A dog', 'The bird', 'My friend', 'The teacher', 'A child'];
  const verbs = ['sees', 'likes', 'finds', 'follows', 'draws', 'calls'];
  const objects = ['the ball.', 'a red box.', 'the old tree.', 'a small boat.', 'the blue door.', 'the garden.'];
  const out: string[] = [];
  for (let i = 0; i < sentences; i++) out.push(`${subjects[i % 6]} ${verbs[(i * 5) % 6]} ${objects[(i * 7) % 6]}`);
  return out.join(' ');
}

async function bytes(file: string): Promise<Buffer> {
  return fs.readFile(file);
}

/** Mean CE of the runtime's forward on one chunk (seq-len + 1 tokens). */
function runtimeLoss(weights: Map<string, tf.Tensor>, spec: Parameters<typeof forwardLogits>[1], chunk: number[]): number {
  return tf.tidy(() => {
    const T = chunk.length - 1;
    const logits = forwardLogits(weights, spec, chunk.slice(0, T)).reshape([T, spec.vocabSize]) as tf.Tensor2D;
    const oneHot = tf.oneHot(tf.tensor1d(chunk.slice(1), 'int32'), spec.vocabSize, 1, 0, 'float32');
    return tf.mean(tf.sub(tf.logSumExp(logits, 1), tf.sum(tf.mul(logits, oneHot), 1))).dataSync()[0]!;
  });
}

const base = (over: Partial<FinetuneOptions> & { model: string; outDir: string }): FinetuneOptions => ({
  data: dataFile,
  recipe: 'none',
  ...over,
  settings: { seqLen: 32, steps: 6, batch: 1, lr: 3e-3, warmupSteps: 1, schedule: 'cosine', evalEvery: 0, saveEvery: 2, ...over.settings },
});

beforeAll(async () => {
  // Native BLAS when this machine has it (CI installs libopenblas0), plain tfjs otherwise.
  await setupBackend({ backend: 'auto', quiet: true });
  dataFile = path.join(root, 'text.txt');
  await fs.writeFile(dataFile, trainingText(400));
});

describe('finetune', () => {
  it('loss falls on a fixture; metrics, loss curve, card, and a model folder the runtime loads with the same loss', async () => {
    const model = await fixture(root, { seed: 1 });
    const outDir = path.join(root, 'falls');
    const steps: number[] = [];
    const r = await finetune(
      base({
        model,
        outDir,
        settings: { steps: 24, batch: 2, lr: 1e-2, warmupSteps: 3, evalEvery: 8, saveEvery: 8 },
        onStep: (s) => steps.push(s.step),
      }),
    );
    expect(r.completed).toBe(true);
    expect(steps).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    const m = await readMetrics(outDir);
    expect(m.map((x) => x.step)).toEqual(steps);
    for (const rec of m) for (const k of ['step', 'loss', 'lr', 'tokens_per_s']) expect(typeof (rec as unknown as Record<string, unknown>)[k]).toBe('number');
    const first = (m[0]!.loss + m[1]!.loss) / 2;
    const last = (m[22]!.loss + m[23]!.loss) / 2;
    expect(last).toBeLessThan(first * 0.6);
    expect(m.filter((x) => x.eval_loss !== undefined).map((x) => x.step)).toEqual([8, 16, 24]);
    expect(m[23]!.eval_ppl).toBeCloseTo(Math.exp(m[23]!.eval_loss!), 5);
    const files = await fs.readdir(outDir);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'README.md', 'loss_curve.svg', 'loss_curve.png', 'metrics.jsonl', 'finetune.json']) {
      expect(files).toContain(f);
    }
    expect(files).not.toContain('checkpoints');
    expect((await fs.readFile(path.join(outDir, 'loss_curve.svg'), 'utf8')).startsWith('<svg')).toBe(true);
    const card = await fs.readFile(path.join(outDir, 'README.md'), 'utf8');
    expect(card).toMatch(/sequence length \| 32 tokens/);
    expect(card).toMatch(/AdamW β \(0\.9, 0\.95\)/);
    const summary = JSON.parse(await fs.readFile(path.join(outDir, 'finetune.json'), 'utf8'));
    expect(summary).toMatchObject({ status: 'completed', steps_done: 24, settings: { seqLen: 32, lr: 1e-2 } });
    // The saved folder, loaded by the runtime, gives the held-out loss the trainer measured at the end.
    const loaded = await loadModel(outDir);
    const ids = (await import('../../src/model/index.js')).loadTokenizer;
    const tok = await ids(outDir);
    const allTokens: number[] = [];
    for (const t of tok.encode(trainingText(400), { addSpecialTokens: false })) allTokens.push(t);
    allTokens.push(256);
    const nChunks = Math.floor(allTokens.length / 33);
    const held = Math.max(1, Math.round(nChunks * 0.05)); // splitHeldOut: the last ~5 %; evaluation uses up to 4
    const evalChunks = Array.from({ length: Math.min(4, held) }, (_, i) => allTokens.slice((nChunks - held + i) * 33, (nChunks - held + i + 1) * 33));
    const mean = evalChunks.reduce((a, c) => a + runtimeLoss(loaded.weights, loaded.spec, c), 0) / evalChunks.length;
    expect(mean).toBeCloseTo(m[m.length - 1]!.eval_loss!, 4);
    loaded.dispose();
  });

  it('the yarn recipe adds YaRN; --stop-after + --resume gives the same bytes as an uninterrupted run', async () => {
    const model = await fixture(root, { seed: 2, shape: { maxPositionEmbeddings: 32 } });
    const opts = (outDir: string, extra: Partial<FinetuneOptions> = {}) =>
      base({ model, outDir, recipe: 'yarn', ...extra, settings: { seqLen: 64, steps: 6, gradAccum: 2, lr: 2e-3, saveEvery: 2, evalEvery: 3 } });
    const a = await finetune(opts(path.join(root, 'a')));
    expect(a.conversion).toMatchObject({ kind: 'yarn', yarn: { factor: 2, originalLength: 32 } });
    const cfg = JSON.parse(await fs.readFile(path.join(root, 'a', 'config.json'), 'utf8'));
    expect(cfg.rope_scaling).toMatchObject({ rope_type: 'yarn', factor: 2, original_max_position_embeddings: 32 });
    expect(cfg.max_position_embeddings).toBe(64);
    const b1 = await finetune(opts(path.join(root, 'b'), { stopAfter: 3 }));
    expect(b1).toMatchObject({ completed: false, step: 3 });
    expect(path.basename(b1.checkpoint!)).toBe('step-00000003');
    await expect(fs.access(path.join(root, 'b', 'model.safetensors'))).rejects.toThrow();
    const b2 = await finetune(opts(path.join(root, 'b'), { resume: true }));
    expect(b2).toMatchObject({ completed: true, step: 6, resumedFrom: 3 });
    expect((await bytes(path.join(root, 'b', 'model.safetensors'))).equals(await bytes(path.join(root, 'a', 'model.safetensors')))).toBe(true);
    const ma = await readMetrics(path.join(root, 'a'));
    const mb = await readMetrics(path.join(root, 'b'));
    expect(mb.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(mb.map((x) => [x.loss, x.eval_loss])).toEqual(ma.map((x) => [x.loss, x.eval_loss]));
  });

  it('LoRA: merged weights equal base + (α/r)·B·A of the PEFT adapter, and the trainer\'s final loss is the merged model\'s', async () => {
    const model = await fixture(root, { seed: 3 });
    const lora = { rank: 4, alpha: 8 };
    const settings = { steps: 4, lr: 1e-2, evalEvery: 4, trainable: 'lora' as const };
    const merged = await finetune(base({ model, outDir: path.join(root, 'lora-merged'), recipe: 'longlora', settings: { ...settings, lora: { ...lora, save: 'merged' } } }));
    const adapter = await finetune(base({ model, outDir: path.join(root, 'lora-adapter'), recipe: 'longlora', settings: { ...settings, lora: { ...lora, save: 'adapter' } } }));
    expect(merged.trainableParameters).toBe(adapter.trainableParameters);
    const cfg = JSON.parse(await fs.readFile(path.join(root, 'lora-adapter', 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], modules_to_save: ['embed_tokens', 'norm'] });
    const ad = await SafetensorsFile.open(path.join(root, 'lora-adapter', 'adapter_model.safetensors'));
    const mergedCk = await Checkpoint.open(path.join(root, 'lora-merged'));
    const baseCk = await Checkpoint.open(path.join(root, 'lora-adapter'));
    const name = 'model.layers.1.self_attn.v_proj';
    const A = await ad.readFloat32(`base_model.model.${name}.lora_A.weight`);
    const B = await ad.readFloat32(`base_model.model.${name}.lora_B.weight`);
    expect(ad.info(`base_model.model.${name}.lora_A.weight`).shape).toEqual([4, 64]);
    expect(ad.tensors.has('base_model.model.model.embed_tokens.weight')).toBe(true);
    const W0 = await baseCk.readFloat32(`${name}.weight`);
    const W1 = await mergedCk.readFloat32(`${name}.weight`);
    const [out, inDim] = mergedCk.info(`${name}.weight`).shape as [number, number];
    let maxErr = 0;
    let moved = 0;
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inDim; i++) {
        let ba = 0;
        for (let r = 0; r < 4; r++) ba += B[o * 4 + r]! * A[r * inDim + i]!;
        maxErr = Math.max(maxErr, Math.abs(W0[o * inDim + i]! + 2 * ba - W1[o * inDim + i]!));
        moved = Math.max(moved, Math.abs(ba));
      }
    }
    expect(moved).toBeGreaterThan(1e-4);
    expect(maxErr).toBeLessThan(1e-6);
    // Directly trained tensors (embeddings) are the same in both folders.
    expect(Buffer.from(await mergedCk.readBytes('model.embed_tokens.weight')).equals(Buffer.from(await baseCk.readBytes('model.embed_tokens.weight')))).toBe(true);
    for (const c of [ad, mergedCk, baseCk]) await c.close();
    expect(merged.lastEval!.eval_loss).toBeCloseTo(adapter.lastEval!.eval_loss!, 6);
  });

  it('fope-yarn converts as `fopeify convert --yarn` does and keeps the coefficients frozen; fope needs a FoPE model', async () => {
    const model = await fixture(root, { seed: 4, shape: { maxPositionEmbeddings: 32 } });
    const r = await finetune(base({ model, outDir: path.join(root, 'fy'), recipe: 'fope-yarn', settings: { seqLen: 64, steps: 2 } }));
    expect(r.conversion).toMatchObject({ kind: 'fope-yarn', yarn: { factor: 2 } });
    const conv = path.join(root, 'fy-convert');
    await convertModel({ model, outDir: conv, yarn: 2, initFactor: 0.1 });
    const trained = await Checkpoint.open(path.join(root, 'fy'));
    const converted = await Checkpoint.open(conv);
    for (const n of ['model.rotary_emb.sin_coef', 'model.rotary_emb.cos_coef']) {
      expect(Buffer.from(await trained.readBytes(n)).equals(Buffer.from(await converted.readBytes(n)))).toBe(true);
    }
    await trained.close();
    await converted.close();
    const cfgT = JSON.parse(await fs.readFile(path.join(root, 'fy', 'config.json'), 'utf8'));
    const cfgC = JSON.parse(await fs.readFile(path.join(conv, 'config.json'), 'utf8'));
    expect({ ...cfgT, torch_dtype: null }).toEqual({ ...cfgC, torch_dtype: null });
    await expect(finetune(base({ model, outDir: path.join(root, 'f-bad'), recipe: 'fope' }))).rejects.toThrow(/fine-tunes a FoPE model/);
    const again = await finetune(base({ model: path.join(root, 'fy'), outDir: path.join(root, 'f-ok'), recipe: 'fope', settings: { seqLen: 64, steps: 1 } }));
    expect(again.conversion.kind).toBe('none');
    // Fine-tuned FoPE models are remote code under their own name, even from a folder with the stock names.
    const keep = path.join(root, 'fy-keep');
    await convertModel({ model, outDir: keep, initFactor: 0.1, archName: 'keep' });
    const fromKeep = path.join(root, 'f-keep');
    await finetune(base({ model: keep, outDir: fromKeep, recipe: 'fope', settings: { seqLen: 32, steps: 1 } }));
    for (const dir of [path.join(root, 'fy'), path.join(root, 'f-ok'), fromKeep]) {
      const cfg = JSON.parse(await fs.readFile(path.join(dir, 'config.json'), 'utf8'));
      expect([cfg.model_type, cfg.architectures, cfg.fope_base_model_type, cfg.auto_map?.AutoModelForCausalLM]).toEqual(['llama_fope', ['FopeLlamaForCausalLM'], 'llama', 'modeling_fope.FopeLlamaForCausalLM']);
      for (const f of REMOTE_CODE_FILES) await fs.access(path.join(dir, f));
      expect(await fs.readFile(path.join(dir, 'README.md'), 'utf8')).toContain('trust_remote_code=True');
    }
  });

  it('synthetic:passkey data and passkey accuracy at the target length', async () => {
    const model = await fixture(root, { seed: 5, shape: { maxPositionEmbeddings: 256 } });
    const r = await finetune(base({ model, outDir: path.join(root, 'pk'), data: 'synthetic:passkey', settings: { seqLen: 256, steps: 2, evalEvery: 2, evalPasskey: true }, passkeyTrials: 2 }));
    expect(r.data).toMatch(/synthetic:passkey/);
    expect(typeof r.lastEval!.passkey_accuracy).toBe('number');
  });

  it('training from scratch is deterministic (same bytes for the same seed), and a bad start is refused clearly', async () => {
    const model = await fixture(root, { seed: 6, initStd: 0.02 });
    const run = (outDir: string) => finetune(base({ model, outDir, settings: { steps: 3, lr: 1e-3, seed: 11, schedule: 'cosine' } }));
    await run(path.join(root, 's1'));
    await run(path.join(root, 's2'));
    expect((await bytes(path.join(root, 's1', 'model.safetensors'))).equals(await bytes(path.join(root, 's2', 'model.safetensors')))).toBe(true);
    await expect(run(path.join(root, 's1'))).rejects.toMatchObject({ message: expect.stringMatching(/is not empty \(`resume` continues .*, `force` starts over\)/), options: ['resume', 'force'] });
    await expect(finetune(base({ model, outDir: path.join(root, 's3'), resume: true }))).rejects.toThrow(/no checkpoint/);
    const stopped = path.join(root, 's4');
    await finetune(base({ model, outDir: stopped, stopAfter: 1 }));
    await expect(finetune(base({ model, outDir: stopped, resume: true, settings: { seqLen: 64 } }))).rejects.toThrow(/seqLen is 32 in the checkpoint/);
  });
});
