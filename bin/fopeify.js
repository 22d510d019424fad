#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (built by `npm ci` through the prepare script).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('fopeify: not built yet; run `npm run build` in the package folder\n');
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main();
