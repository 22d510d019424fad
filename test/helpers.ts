import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { writeTinyCheckpoint, type TinyCheckpointOptions } from '../src/testing/tiny-checkpoint.js';

/** A temporary folder removed after the file's tests. */
export function tempDir(prefix = 'fopeify-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let counter = 0;
/** Generate a tiny fixture checkpoint under `root` and return its folder. */
export async function fixture(root: string, options: TinyCheckpointOptions = {}): Promise<string> {
  const dir = path.join(root, `${options.kind ?? 'llama'}-${options.dtype ?? 'F32'}-${counter++}`);
  await writeTinyCheckpoint(dir, options);
  return dir;
}
