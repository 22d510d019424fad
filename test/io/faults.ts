/**
 * Simulated write faults for tests, injected through vi.spyOn on node:fs's promises object (the one
 * every module imports): a "full disk" that writes part of the data to matching paths and then fails with
 * ENOSPC, and a "kill" that leaves a file as an interrupted in-place rewrite would (truncated) and throws.
 * Both patch every way fopeify writes: writeFile, appendFile, copyFile, and writes through open handles.
 */
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { vi } from 'vitest';

const real = {
  open: fs.open.bind(fs),
  writeFile: fs.writeFile.bind(fs),
  appendFile: fs.appendFile.bind(fs),
  copyFile: fs.copyFile.bind(fs),
  truncate: fs.truncate.bind(fs),
};

export function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

type PathLike = Parameters<typeof fs.open>[0];
const str = (p: unknown) => (typeof p === 'string' ? p : p instanceof URL ? p.pathname : Buffer.isBuffer(p) ? p.toString() : String(p));

function half(data: unknown): Uint8Array {
  const b = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data as Uint8Array);
  return b.subarray(0, Math.floor(b.length / 2));
}

/** Writes to files whose path matches get half their bytes, then ENOSPC (or `code`). Returns the restore function. */
export function simulateFullDisk(matches: (file: string) => boolean, code = 'ENOSPC'): () => void {
  const spies = [
    vi.spyOn(fs, 'writeFile').mockImplementation(async (file, data, opts) => {
      if (!matches(str(file))) return real.writeFile(file as PathLike, data as string, opts as never);
      await real.writeFile(file as PathLike, half(data));
      throw errno(code);
    }),
    vi.spyOn(fs, 'appendFile').mockImplementation(async (file, data, opts) => {
      if (!matches(str(file))) return real.appendFile(file as PathLike, data as string, opts as never);
      await real.appendFile(file as PathLike, half(data));
      throw errno(code);
    }),
    vi.spyOn(fs, 'copyFile').mockImplementation(async (src, dst, mode) => {
      if (!matches(str(dst))) return real.copyFile(src, dst, mode);
      await real.writeFile(dst, half(await fs.readFile(src)));
      throw errno(code);
    }),
    vi.spyOn(fs, 'open').mockImplementation(async (file, flags, mode) => {
      const handle = await real.open(file, flags as never, mode as never);
      if (!matches(str(file)) || !/[wa+]/.test(String(flags ?? 'r'))) return handle;
      return faultyHandle(handle, code);
    }),
  ];
  return () => spies.forEach((s) => s.mockRestore());
}

function faultyHandle(handle: FileHandle, code: string): FileHandle {
  const fail = async (data: unknown, write: (b: Uint8Array) => Promise<unknown>) => {
    await write(half(data));
    throw errno(code);
  };
  return new Proxy(handle, {
    get(target, prop, receiver) {
      if (prop === 'write') return (data: Uint8Array, offset = 0, length?: number, position?: number) =>
        fail(Buffer.from(data).subarray(offset, offset + (length ?? data.byteLength - offset)), (b) => target.write(b, 0, b.length, position));
      if (prop === 'writeFile' || prop === 'appendFile') return (data: unknown) => fail(data, (b) => target.writeFile(b));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/**
 * A process killed in the middle of rewriting `file` in place: opening it for writing (writeFile, open
 * with w) truncates it, and the "kill" comes before any byte is written. Renames and writes to other
 * paths go through. Returns the restore function.
 */
export function simulateKillWhileRewriting(file: string): () => void {
  const killed = () => Object.assign(new Error('killed (simulated)'), { code: 'SIMULATED_KILL' });
  const spies = [
    vi.spyOn(fs, 'writeFile').mockImplementation(async (f, data, opts) => {
      if (str(f) !== file) return real.writeFile(f as PathLike, data as string, opts as never);
      await real.truncate(file, 0);
      throw killed();
    }),
    vi.spyOn(fs, 'open').mockImplementation(async (f, flags, mode) => {
      if (str(f) === file && /w/.test(String(flags ?? 'r'))) {
        await real.truncate(file, 0);
        throw killed();
      }
      return real.open(f, flags as never, mode as never);
    }),
  ];
  return () => spies.forEach((s) => s.mockRestore());
}
