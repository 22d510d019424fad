/**
 * native/build.mjs on a machine without a C compiler: the install must not fail, and the message must
 * say exactly what to install for the fast CPU path (the addon carries its own SGEMM, so a compiler is
 * all a fresh machine needs). CC names a compiler that does not exist, so nothing is built or replaced.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const BUILD = path.resolve(__dirname, '../../native/build.mjs');

describe('native/build.mjs without a C compiler', () => {
  it('exits 0 and says what to install', () => {
    const r = spawnSync(process.execPath, [BUILD], {
      encoding: 'utf8',
      env: { ...process.env, CC: '/nonexistent/fopeify-test-cc', FOPEIFY_NATIVE_STRICT: '', FOPEIFY_SKIP_NATIVE: '' },
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/not built: no C compiler/);
    expect(r.stdout).toMatch(/apt-get install gcc/);
    expect(r.stdout).toMatch(/npm run build:native/);
  });

  it('FOPEIFY_NATIVE_STRICT=1 makes the same failure exit 1 (CI)', () => {
    const r = spawnSync(process.execPath, [BUILD], {
      encoding: 'utf8',
      env: { ...process.env, CC: '/nonexistent/fopeify-test-cc', FOPEIFY_NATIVE_STRICT: '1', FOPEIFY_SKIP_NATIVE: '' },
    });
    expect(r.status).toBe(1);
  });
});
