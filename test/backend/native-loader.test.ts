/**
 * The addon loader refuses a build it cannot use in full — another ABI version, or a function missing
 * — with a one-line reason, and the backend then falls back exactly as when no addon is built. The
 * fake addons are plain CommonJS modules loaded through FOPEIFY_NATIVE_ADDON.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ADDON_ABI, ADDON_FUNCTION_NAMES, _resetNativeCacheForTests, addonProblem, defaultAddonPath, loadNative } from '../../src/backend/native.js';
import { _resetAnnouncementsForTests, setupBackend } from '../../src/backend/select.js';
import { nativeUsable } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'fopeify-addon-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A fake's load() answers ok; useGemm switches to what it is asked. */
const FAKE_FUNCTIONS: Record<string, string> = {
  load: "() => ({ ok: true, library: 'fake', kind: 'custom', gemm: 'system', portable: 'portable-generic', threads: 1 })",
  useGemm: '(engine) => engine',
};

/** A CommonJS module with `abi` as abiVersion and a function for each name (load() answers ok). */
function fakeAddon(name: string, abi: number | undefined, functions: readonly string[]): string {
  const body = functions
    .map((f) => `exports.${f} = ${FAKE_FUNCTIONS[f] ?? '() => 0'};`)
    .join('\n');
  const file = join(dir, `${name}.cjs`);
  writeFileSync(file, `${abi === undefined ? '' : `exports.abiVersion = ${abi};\n`}${body}\n`);
  return file;
}

function withAddon<T>(file: string, fn: () => T): T {
  const saved = process.env.FOPEIFY_NATIVE_ADDON;
  const savedOff = process.env.FOPEIFY_NATIVE;
  delete process.env.FOPEIFY_NATIVE;
  process.env.FOPEIFY_NATIVE_ADDON = file;
  _resetNativeCacheForTests();
  const restore = () => {
    if (saved === undefined) delete process.env.FOPEIFY_NATIVE_ADDON;
    else process.env.FOPEIFY_NATIVE_ADDON = saved;
    if (savedOff !== undefined) process.env.FOPEIFY_NATIVE = savedOff;
    _resetNativeCacheForTests();
  };
  try {
    const r = fn();
    if (r instanceof Promise) return r.finally(restore) as T;
    restore();
    return r;
  } catch (err) {
    restore();
    throw err;
  }
}

afterEach(() => _resetNativeCacheForTests());

describe('addonProblem', () => {
  const all = Object.fromEntries(ADDON_FUNCTION_NAMES.map((f) => [f, () => 0]));
  it('accepts a module with this ABI and every function', () => {
    expect(addonProblem({ ...all, abiVersion: ADDON_ABI })).toBeUndefined();
  });
  it('refuses an older or unversioned build', () => {
    expect(addonProblem({ ...all, abiVersion: 1 })).toBe(`native addon is stale (ABI 1, expected ${ADDON_ABI}); run "npm run build:native"`);
    expect(addonProblem({ ...all })).toMatch(/^native addon is stale \(no ABI version, expected \d+\)/);
  });
  it('names every missing function', () => {
    const { sumSquares: _s, rmsnorm: _r, ...partial } = all;
    expect(addonProblem({ ...partial, abiVersion: ADDON_ABI })).toBe(
      'native addon is incomplete (no rmsnorm, sumSquares); run "npm run build:native"',
    );
    expect(addonProblem({ ...all, swiglu: 1, abiVersion: ADDON_ABI })).toMatch(/incomplete \(no swiglu\)/);
  });
  it('refuses something that is not a module object', () => {
    expect(addonProblem(null)).toMatch(/not a Node-API module/);
  });
});

describe('loadNative with a fake addon', () => {
  it('loads a complete one', () => {
    withAddon(fakeAddon('complete', ADDON_ABI, ADDON_FUNCTION_NAMES), () => {
      const r = loadNative({ threads: 1 });
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.blas.library).toBe('fake');
    });
  });

  it('refuses an older ABI', () => {
    withAddon(fakeAddon('old', ADDON_ABI - 1, ADDON_FUNCTION_NAMES), () => {
      expect(loadNative()).toEqual({ ok: false, reason: expect.stringMatching(/^native addon is stale \(ABI \d+, expected \d+\)/) });
    });
  });

  it('a build without one function: auto falls back to plain tfjs and says why; native is refused', async () => {
    const file = fakeAddon('partial', ADDON_ABI, ADDON_FUNCTION_NAMES.filter((f) => f !== 'adamw'));
    await withAddon(file, async () => {
      _resetAnnouncementsForTests();
      const lines: string[] = [];
      const info = await setupBackend({ log: (l) => lines.push(l) });
      expect(info.accelerated).toBe(false);
      expect(info.name).toBe('wasm');
      expect(info.nativeUnavailableReason).toBe('native addon is incomplete (no adamw); run "npm run build:native"');
      // (a line before it may say why tfjs-node could not start, on machines with a broken install)
      expect(lines.filter((l) => l.startsWith('fopeify: backend'))).toEqual([`fopeify: backend ${info.description}`]);
      expect(info.description).toMatch(/no native BLAS: native addon is incomplete \(no adamw\)/);
      await expect(setupBackend({ backend: 'native', quiet: true })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    });
    _resetAnnouncementsForTests();
    await setupBackend({ backend: 'cpu', quiet: true });
  });
});

describe.skipIf(!nativeUsable)('the built addon', () => {
  it('exports exactly the functions NativeAddon names, at this ABI', () => {
    const m = createRequire(import.meta.url)(defaultAddonPath()) as Record<string, unknown>;
    expect(m.abiVersion).toBe(ADDON_ABI);
    const fns = Object.keys(m).filter((k) => typeof m[k] === 'function');
    expect(fns.sort()).toEqual([...ADDON_FUNCTION_NAMES].sort());
    expect(addonProblem(m)).toBeUndefined();
  });

  // glibc (every Linux this project supports): the malloc thresholds are taken, unless switched off.
  it('keeps freed memory for reuse on glibc; FOPEIFY_KEEP_FREED_MEMORY=0 leaves malloc alone; bad thresholds throw', () => {
    const glibc = Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime);
    const saved = process.env.FOPEIFY_KEEP_FREED_MEMORY;
    try {
      _resetNativeCacheForTests();
      const on = loadNative();
      expect(on.ok && on.blas.keepsFreedMemory).toBe(glibc);
      process.env.FOPEIFY_KEEP_FREED_MEMORY = '0';
      _resetNativeCacheForTests();
      const off = loadNative();
      expect(off.ok && off.blas.keepsFreedMemory).toBe(false);
      if (off.ok) expect(() => off.blas.addon.keepFreedMemory(-1, 0)).toThrow(/keepFreedMemory: expected/);
    } finally {
      if (saved === undefined) delete process.env.FOPEIFY_KEEP_FREED_MEMORY;
      else process.env.FOPEIFY_KEEP_FREED_MEMORY = saved;
      _resetNativeCacheForTests();
    }
  });
});

describe.skipIf(!nativeUsable)('FOPEIFY_GEMM with the built addon', () => {
  const saved = process.env.FOPEIFY_GEMM;
  const load = (mode: string | undefined) => {
    if (mode === undefined) delete process.env.FOPEIFY_GEMM;
    else process.env.FOPEIFY_GEMM = mode;
    _resetNativeCacheForTests();
    return loadNative();
  };
  // Back to the default choice: later tests in this file use whatever engine the addon runs.
  afterAll(() => load(saved));

  it('portable makes every sgemm run the portable SGEMM', () => {
    const r = load('portable');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.blas.gemm.engine).toBe('portable');
    expect(r.blas.gemm.how).toBe(r.blas.kind === 'portable' ? 'no system BLAS' : 'FOPEIFY_GEMM');
    expect(r.blas.addon.info().gemm).toBe('portable');
    expect(r.blas.portable).toMatch(/^portable-(avx512|avx2|generic)$/);
  });

  it('system runs the library, and is refused with a reason where none loaded', () => {
    const hasSystem = (load(undefined) as { ok: true; blas: { kind: string } }).blas.kind !== 'portable';
    const r = load('system');
    if (hasSystem) {
      expect(r.ok && r.blas.gemm).toEqual({ engine: 'system', how: 'FOPEIFY_GEMM' });
      expect(r.ok && r.blas.addon.info().gemm).toBe('system');
    } else {
      expect(r).toEqual({ ok: false, reason: expect.stringMatching(/^FOPEIFY_GEMM=system, but (no system BLAS library loaded|FOPEIFY_NO_SYSTEM_BLAS=1 hides every system BLAS)/) });
    }
  });

  it('anything else is a BAD_ARGUMENT', () => {
    expect(() => load('mkl')).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT', message: expect.stringMatching(/^FOPEIFY_GEMM must be one of auto, system, portable/) }));
  });
});
