import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFolderAtomically } from '../../src/io/atomic.js';
import { fixture, tempDir } from '../helpers.js';
import { expectCleanFailure, runCli } from './cli-helpers.js';

const root = tempDir();

async function leftovers(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).filter((n) => n.includes('fopeify-tmp'));
}

describe('bad input: one clear line, non-zero exit, nothing half-written', () => {
  it('demo with --out inside its model: the refusal is the only line, before any banner', () => {
    const r = runCli(['demo', '--quick', '--out', path.resolve(__dirname, '../../fixtures/tiny-rope-256/out')]);
    expectCleanFailure(r, /inside the model folder being read/);
    expect(r.stdout).toBe('');
  });
  it('nonexistent model', () => {
    expectCleanFailure(runCli(['inspect', path.join(root, 'nope')]), /model not found/);
    expectCleanFailure(runCli(['convert', './no/such/dir', '-o', path.join(root, 'o1')]), /model not found/);
  });

  it('missing and broken config', async () => {
    const a = await fixture(root);
    await fs.rm(path.join(a, 'config.json'));
    expectCleanFailure(runCli(['inspect', a]), /has no config\.json/);
    const b = await fixture(root);
    await fs.writeFile(path.join(b, 'config.json'), '{"hidden_size": 64,');
    expectCleanFailure(runCli(['convert', b, '-o', path.join(root, 'o2')]), /config\.json is not valid JSON/);
  });

  it('unsupported architecture names what is missing', async () => {
    const a = await fixture(root);
    const cfg = JSON.parse(await fs.readFile(path.join(a, 'config.json'), 'utf8'));
    await fs.writeFile(path.join(a, 'config.json'), JSON.stringify({ ...cfg, architectures: ['Phi3ForCausalLM'], model_type: 'phi3' }));
    expectCleanFailure(runCli(['convert', a, '-o', path.join(root, 'o3')]), /unsupported architecture Phi3ForCausalLM.*fused qkv_proj/);
  });

  it('truncated safetensors', async () => {
    const a = await fixture(root);
    const f = path.join(a, 'model.safetensors');
    const bytes = await fs.readFile(f);
    await fs.writeFile(f, bytes.subarray(0, bytes.length - 100));
    const out = path.join(root, 'o4');
    expectCleanFailure(runCli(['convert', a, '-o', out]), /not a valid safetensors file.*truncated/);
    await expect(fs.stat(out)).rejects.toThrow();
    expect(await leftovers(root)).toEqual([]);
  });

  it('corrupt header and lying offsets', async () => {
    const a = await fixture(root);
    const f = path.join(a, 'model.safetensors');
    const bytes = await fs.readFile(f);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    header['model.norm.weight'].data_offsets = [0, 256]; // overlaps the first tensor and lies about its size
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (json.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    await fs.writeFile(f, Buffer.concat([len, Buffer.from(json), bytes.subarray(8 + n)]));
    expectCleanFailure(runCli(['inspect', a]), /not a valid safetensors file/);
    const b = await fixture(root);
    await fs.writeFile(path.join(b, 'model.safetensors'), Buffer.from('garbage that is not safetensors at all'));
    expectCleanFailure(runCli(['inspect', b]), /not a valid safetensors file/);
  });

  it('index naming a missing shard', async () => {
    const a = await fixture(root, { maxShardBytes: 20000 });
    const shard = (await fs.readdir(a)).filter((n) => /^model-00002-of-\d+\.safetensors$/.test(n))[0]!;
    await fs.rm(path.join(a, shard));
    expectCleanFailure(runCli(['convert', a, '-o', path.join(root, 'o5')]), new RegExp(`names shard ${shard.replace(/\./g, '\\.')}, which is missing`));
  });

  it('pickle-only checkpoints are refused, never unpickled', async () => {
    const a = path.join(root, 'pickle');
    await fs.mkdir(a);
    const src = await fixture(root);
    await fs.copyFile(path.join(src, 'config.json'), path.join(a, 'config.json'));
    await fs.writeFile(path.join(a, 'pytorch_model.bin'), Buffer.from([0x80, 0x02, 0x63]));
    expectCleanFailure(runCli(['inspect', a]), /only pickle weights \(pytorch_model\.bin\); fopeify never unpickles/);
  });

  it('unwritable output', async () => {
    const a = await fixture(root);
    const ro = path.join(root, 'readonly');
    await fs.mkdir(ro);
    await fs.writeFile(path.join(ro, 'file'), 'x');
    // A path under a regular file can never be created, even as root.
    expectCleanFailure(runCli(['convert', a, '-o', path.join(ro, 'file', 'out')]), /cannot write/);
  });

  it('bad flag values', async () => {
    const a = await fixture(root);
    expectCleanFailure(runCli(['convert', a, '-o', path.join(root, 'o6'), '--num-inv-freq', '99']), /--num-inv-freq must be an integer between 1 and 8/);
    expectCleanFailure(runCli(['convert', a, '-o', path.join(root, 'o7'), '--yarn', '0.5']), /--yarn factor must be greater than 1/);
    expectCleanFailure(runCli(['convert', a]), /Missing required argument: out/);
    expectCleanFailure(runCli(['frobnicate']), /Unknown argument|Unknown command|frobnicate/);
  });

  it('a full disk leaves nothing half-written', async () => {
    const a = await fixture(root, { shape: { hiddenSize: 128, intermediateSize: 256 } });
    const mnt = path.join(root, 'small-fs');
    await fs.mkdir(mnt);
    let mounted = false;
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mnt], { stdio: 'ignore' });
      mounted = true;
    } catch {
      mounted = false;
    }
    try {
      if (mounted) {
        // A real full file system: --dtype f16 forces real writes (hard links cannot cross file systems anyway).
        const r = runCli(['convert', a, '-o', path.join(mnt, 'out'), '--dtype', 'f16']);
        expectCleanFailure(r, /no space left on the device/);
        expect(await fs.readdir(mnt)).toEqual([]);
      }
      // Always: an ENOSPC from any write inside the atomic folder becomes DISK_FULL and the temp folder goes.
      const out = path.join(root, 'enospc');
      await expect(
        writeFolderAtomically(out, {}, async (tmp) => {
          await fs.writeFile(path.join(tmp, 'partial'), 'x');
          throw Object.assign(new Error('write failed'), { code: 'ENOSPC' });
        }),
      ).rejects.toMatchObject({ code: 'DISK_FULL' });
      await expect(fs.stat(out)).rejects.toThrow();
      expect(await leftovers(root)).toEqual([]);
    } finally {
      if (mounted) execFileSync('umount', [mnt], { stdio: 'ignore' });
    }
  });

  it('successful CLI run prints a summary and --json gives machine output', async () => {
    const a = await fixture(root);
    const r = runCli(['convert', a, '-o', path.join(root, 'ok'), '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.k).toBe(3);
    const i = runCli(['inspect', path.join(root, 'ok'), '--json']);
    expect(JSON.parse(i.stdout).fope.k).toBe(3);
    const h = runCli(['inspect', a]);
    expect(h.stdout).toMatch(/frequencies at L=64: 3 complete a period/);
  });
});
