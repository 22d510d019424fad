import { afterEach, describe, expect, it, vi } from 'vitest';
import { optionFlag, reportError } from '../src/cli/main.js';
import { convertModel } from '../src/convert/convert.js';
import { FopeifyError, messageNamingOptions } from '../src/errors.js';
import { needleSettings } from '../src/eval/needle.js';
import { requireOutputPath } from '../src/io/output-folder.js';
import { checkTopology } from '../src/train/torch-job.js';

/** What the CLI prints for an error (stderr), and its exit code. */
function printed(err: unknown): { text: string; code: number } {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    const code = reportError(err);
    return { text: lines.join(''), code };
  } finally {
    spy.mockRestore();
  }
}

function thrown(f: () => unknown): FopeifyError {
  try {
    f();
  } catch (err) {
    if (err instanceof FopeifyError) return err;
    throw err;
  }
  throw new Error('did not throw');
}

afterEach(() => vi.restoreAllMocks());

describe('library errors name options, the CLI shows flags', () => {
  it('maps option names to flags', () => {
    expect(optionFlag('targetLength')).toBe('--target-length');
    expect(optionFlag('nprocPerNode')).toBe('--nproc-per-node');
    expect(optionFlag('seed')).toBe('--seed');
    expect(optionFlag('outDir')).toBe('--out');
  });

  it('a convert option: the library names `layout`, the CLI prints --layout as before', async () => {
    const err = await convertModel({ model: 'unused', outDir: 'x', layout: 'diagonal' as 'shared' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FopeifyError);
    const e = err as FopeifyError;
    expect(e.message).toBe('`layout` must be shared or per-layer (got diagonal)');
    expect(e.options).toEqual(['layout']);
    expect(printed(e)).toEqual({ text: 'fopeify: error: --layout must be shared or per-layer (got diagonal)\n', code: 2 });
  });

  it('a message about two options shows both flags', () => {
    const e = thrown(() => needleSettings({ models: ['m'], out: 'o', haystack: 'x.txt' }));
    expect(e.message).toBe('`haystack` applies to `task` niah only (the passkey filler is fixed by its template)');
    expect(messageNamingOptions(e, optionFlag)).toBe('--haystack applies to --task niah only (the passkey filler is fixed by its template)');
  });

  it('camel-case options become kebab-case flags; the output folder option is --out', () => {
    const e = thrown(() => checkTopology({ nprocPerNode: 0, nnodes: 1, nodeRank: 0, masterPort: 29500 }));
    expect(e.message).toBe('`nprocPerNode` must be a positive integer (got 0)');
    expect(printed(e).text).toBe('fopeify: error: --nproc-per-node must be a positive integer (got 0)\n');
    const out = thrown(() => requireOutputPath('', 'outDir'));
    expect(out.message).toMatch(/^`outDir` is empty/);
    expect(printed(out).text).toMatch(/^fopeify: error: --out is empty: name an output folder/);
  });

  it('a message that names no option is printed as it is', () => {
    const e = new FopeifyError('BAD_CONFIG', 'config.json: `vocab_size` is missing');
    expect(e.options).toEqual([]);
    expect(printed(e).text).toBe('fopeify: error: config.json: `vocab_size` is missing\n');
  });
});
