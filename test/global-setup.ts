import { execFileSync } from 'node:child_process';

/** End-to-end CLI tests run bin/fopeify.js, which loads dist/: build it once so it matches src/. */
export default function setup(): void {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
}
