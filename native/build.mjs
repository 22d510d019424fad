#!/usr/bin/env node
// Builds native/build/fopeify_native.node by calling the C compiler directly.
//
// Why not node-gyp: node-gyp downloads Node's headers (and needs python) on most machines; the addon
// uses only Node-API, whose headers ship in the `node-api-headers` npm package, and no BLAS headers
// (it dlopen()s the BLAS at run time). So a few `cc` commands are enough: the portable SGEMM's kernel
// once per CPU variant (sgemm-kernel.c), then the addon itself (ADDON_SOURCES, one file per concern).
//
// This script never fails the install: the addon is an accelerator, fopeify runs without it. It
// always exits 0 and prints why when it could not build. Set FOPEIFY_NATIVE_STRICT=1 to make a
// failure exit 1 (useful in CI to catch a broken build early).
// Env: CC (compiler, default cc/gcc/clang), FOPEIFY_SKIP_NATIVE=1 (skip), FOPEIFY_NATIVE_CFLAGS.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const outDir = join(here, 'build');
const out = join(outDir, 'fopeify_native.node');
// The addon's C files, linked with the SGEMM kernel objects into one .node (see addon.c's header).
const ADDON_SOURCES = ['addon.c', 'addon-passes.c', 'napi-util.c', 'blas.c', 'sgemm.c', 'elementwise.c', 'parallel.c', 'softmax.c', 'norm-optim.c', 'decode.c', 'addon-decode.c', 'attention.c', 'addon-attention.c', 'movement.c', 'rotary.c'];
const strict = process.env.FOPEIFY_NATIVE_STRICT === '1';

function done(ok, msg) {
  console.log(`fopeify native: ${msg}`);
  process.exit(ok || !strict ? 0 : 1);
}

if (process.env.FOPEIFY_SKIP_NATIVE === '1') done(true, 'skipped (FOPEIFY_SKIP_NATIVE=1)');
if (process.platform === 'win32') {
  done(false, 'not built: Windows is not supported by the native GEMM addon; fopeify will run on plain TensorFlow.js');
}

function findHeaders() {
  // Resolve through Node so it works from a nested node_modules layout too.
  try {
    const req = createRequire(join(root, 'package.json'));
    const pkg = req.resolve('node-api-headers/package.json');
    const inc = join(dirname(pkg), 'include');
    if (existsSync(join(inc, 'node_api.h'))) return inc;
  } catch {
    /* fall through */
  }
  // Node's own headers, when installed (e.g. Debian's nodejs-dev or a tarball install).
  for (const dir of [join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node']) {
    if (existsSync(join(dir, 'node_api.h'))) return dir;
  }
  return null;
}

function findCompiler() {
  const cands = process.env.CC ? [process.env.CC] : ['cc', 'gcc', 'clang'];
  for (const cc of cands) {
    const r = spawnSync(cc, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return cc;
  }
  return null;
}

const inc = findHeaders();
if (!inc) done(false, 'not built: Node-API headers not found (npm install node-api-headers); fopeify will run on plain TensorFlow.js');
const cc = findCompiler();
if (!cc) {
  done(
    false,
    'not built: no C compiler (cc/gcc/clang) found. For the fast CPU path install one, then run "npm run build:native": ' +
      'Debian/Ubuntu: apt-get install gcc (and libopenblas0 for OpenBLAS); Fedora: dnf install gcc; macOS: xcode-select --install. ' +
      'Until then fopeify runs on plain TensorFlow.js (WebAssembly), many times slower for training',
  );
}

mkdirSync(outDir, { recursive: true });
const tmp = `${out}.tmp-${process.pid}`;
const userFlags = process.env.FOPEIFY_NATIVE_CFLAGS ? process.env.FOPEIFY_NATIVE_CFLAGS.split(/\s+/).filter(Boolean) : [];

// The portable SGEMM's single-thread driver (sgemm-kernel.c), once per ISA variant, each in its own
// object with its own -m flags; sgemm.c picks one at load time by CPU features, so the addon still
// runs on any CPU of its architecture. -ffp-contract=fast lets the compiler fuse the kernel's
// multiply-adds into FMAs (the elementwise code below is built with contraction off). A variant the
// compiler cannot build (too old for AVX-512) is left out; the generic one is required.
const isX86 = process.arch === 'x64';
const variants = [
  { name: 'generic', vbytes: 16, mr: 6, flags: [] },
  ...(isX86
    ? [
        { name: 'avx2', vbytes: 32, mr: 6, flags: ['-mavx2', '-mfma'], define: '-DSG_HAVE_AVX2' },
        { name: 'avx512', vbytes: 64, mr: 12, flags: ['-mavx512f', '-mavx2', '-mfma'], define: '-DSG_HAVE_AVX512' },
      ]
    : []),
];
const objects = [];
const defines = [];
for (const v of variants) {
  const obj = join(outDir, `sgemm-${v.name}.o.tmp-${process.pid}`);
  const r = spawnSync(
    cc,
    [
      '-O3',
      '-ffp-contract=fast',
      '-std=c11',
      '-D_GNU_SOURCE',
      '-fPIC',
      '-Wall',
      '-Wno-psabi',
      `-DSG_NAME=fopeify_sgemm_serial_${v.name}`,
      `-DSG_VBYTES=${v.vbytes}`,
      `-DSG_MR=${v.mr}`,
      ...v.flags,
      ...userFlags,
      '-c',
      join(here, 'sgemm-kernel.c'),
      '-o',
      obj,
    ],
    { encoding: 'utf8' },
  );
  if (r.status === 0) {
    objects.push(obj);
    if (v.define) defines.push(v.define);
  } else if (v.name === 'generic') {
    const why = (r.stderr || r.stdout || String(r.error ?? '')).trim().split('\n').slice(0, 20).join('\n');
    done(false, `not built: ${cc} failed on the portable SGEMM:\n${why}\nfopeify will run on plain TensorFlow.js`);
  }
}
const removeObjects = () => objects.forEach((o) => rmSync(o, { force: true }));

const args = [
  '-O2',
  // Vectorise the elementwise loops; never fuse a*b+c into an FMA (results must match JS bit for bit).
  '-ftree-vectorize',
  '-ffp-contract=off',
  '-fno-fast-math',
  '-fno-math-errno', // sqrt: no errno branch, so the loop vectorises; results are unchanged
  '-std=c11',
  '-D_GNU_SOURCE',
  '-fPIC',
  '-shared',
  '-fvisibility=hidden',
  '-Wall',
  '-Wno-psabi', // the note that 32-byte vector arguments changed ABI in GCC 4.6: internal functions only
  '-DNODE_GYP_MODULE_NAME=fopeify_native',
  ...defines,
  `-I${inc}`,
  ...ADDON_SOURCES.map((f) => join(here, f)),
  ...objects,
  '-o',
  tmp,
];
if (process.platform === 'darwin') {
  // Node-API symbols are resolved against the node binary when the addon is loaded.
  args.push('-undefined', 'dynamic_lookup');
} else {
  // On Linux a shared library may have unresolved symbols; node provides napi_* at dlopen time.
  // libdl is part of libc on glibc >= 2.34 but older systems need it named.
  args.push('-ldl', '-lm', '-pthread');
}
args.push(...userFlags);

const r = spawnSync(cc, args, { encoding: 'utf8' });
removeObjects();
if (r.status !== 0) {
  rmSync(tmp, { force: true });
  const why = (r.stderr || r.stdout || String(r.error ?? '')).trim().split('\n').slice(0, 20).join('\n');
  done(false, `not built: ${cc} failed:\n${why}\nfopeify will run on plain TensorFlow.js`);
}
// Rename into place so a process that has the old addon loaded is not disturbed mid-build.
renameSync(tmp, out);

// Smoke test in a child process (a crash there must not take down the install).
const check = spawnSync(
  process.execPath,
  [
    '-e',
    `const m=require(${JSON.stringify(out)});const r=m.load({threads:1,systemBlas:process.env.FOPEIFY_NO_SYSTEM_BLAS!=='1'});` +
      `console.log(!r.ok?('built, but '+r.error):r.kind==='portable'?('GEMM: '+r.library+' (built-in SGEMM, no BLAS library loaded; ' +` +
      `'OpenBLAS is a little faster: apt-get install libopenblas0)'):('BLAS: '+r.library+(r.config?' ('+r.config+')':'')));`,
  ],
  { encoding: 'utf8' },
);
const note = check.status === 0 ? check.stdout.trim() : `built, but loading it failed: ${(check.stderr || '').trim().split('\n')[0]}`;
done(true, `built ${out}\n  ${note}`);
