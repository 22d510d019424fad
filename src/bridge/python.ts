/**
 * Finding a Python that has PyTorch, and running a model folder's own Python code with it.
 * Order: `--python` / FOPEIFY_PYTHON (must have torch), else `python3` on PATH, then /usr/bin/python3
 * (the first python3 on PATH is often a virtualenv or pyenv shim without torch while the system one has
 * Debian's python3-torch).
 */
import { execFile } from 'node:child_process';
import { FopeifyError, optionName, type ErrorCode } from '../errors.js';

export const PYTHON_ENV = 'FOPEIFY_PYTHON';
export const DEFAULT_PYTHONS = ['python3', '/usr/bin/python3'] as const;

export interface TorchPython {
  /** The interpreter (as given or found). */
  python: string;
  torchVersion: string;
  /** transformers' version when importable by this interpreter, else null. */
  transformersVersion: string | null;
}

export interface FindPythonOptions {
  /** An explicit interpreter (`--python`); default FOPEIFY_PYTHON. */
  python?: string;
  env?: NodeJS.ProcessEnv;
  /** Interpreters tried when none is given (default python3 on PATH, then /usr/bin/python3). */
  candidates?: readonly string[];
}

interface Probe {
  ok: boolean;
  /** What was wrong: not found, no torch, ... */
  problem?: string;
  torch?: string;
  transformers?: string | null;
}

const PROBE = [
  'import json, sys',
  'try:',
  '    import torch',
  'except Exception as e:',
  '    print(json.dumps({"torch": None, "error": type(e).__name__ + ": " + str(e)})); sys.exit(0)',
  'try:',
  '    import transformers; tv = transformers.__version__',
  'except Exception:',
  '    tv = None',
  'print(json.dumps({"torch": torch.__version__, "transformers": tv}))',
].join('\n');

function run(file: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string; spawnError?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { env: options.env, cwd: options.cwd, timeout: options.timeoutMs ?? 0, maxBuffer: 1024 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: unknown }) | null;
        if (e && typeof e.code === 'string') resolve({ code: null, stdout, stderr, spawnError: e });
        else resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

async function probe(python: string, env: NodeJS.ProcessEnv): Promise<Probe> {
  const r = await run(python, ['-c', PROBE], { env, timeoutMs: 120_000 });
  if (r.spawnError) return { ok: false, problem: r.spawnError.code === 'ENOENT' ? 'not found' : `cannot run (${r.spawnError.code})` };
  if (r.code !== 0) return { ok: false, problem: `exits with status ${r.code}` };
  try {
    const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { torch: string | null; transformers?: string | null; error?: string };
    if (!j.torch) return { ok: false, problem: `no torch (${j.error ?? 'import failed'})` };
    return { ok: true, torch: j.torch, transformers: j.transformers ?? null };
  } catch {
    return { ok: false, problem: 'unexpected output' };
  }
}

export const INSTALL_HINT =
  'install PyTorch for it (Debian/Ubuntu: `apt-get install python3-torch`; elsewhere `pip install torch`), or name a python that has it with `python` or FOPEIFY_PYTHON';

/** The first Python with torch, or a BACKEND_UNAVAILABLE error naming what was tried and what to install. */
export async function findTorchPython(options: FindPythonOptions = {}): Promise<TorchPython> {
  const env = options.env ?? process.env;
  const explicit = options.python ?? (env[PYTHON_ENV] || undefined);
  const tried: string[] = [];
  for (const python of explicit ? [explicit] : (options.candidates ?? DEFAULT_PYTHONS)) {
    const p = await probe(python, env);
    if (p.ok) return { python, torchVersion: p.torch!, transformersVersion: p.transformers ?? null };
    tried.push(`${python}: ${p.problem}`);
  }
  const source = explicit ? (options.python ? optionName('python') : PYTHON_ENV) : 'PATH';
  throw new FopeifyError('BACKEND_UNAVAILABLE', `the torch engine needs a python with PyTorch (${source}: ${tried.join('; ')}); ${INSTALL_HINT}`, { option: 'python' });
}

const KNOWN_CODES: readonly ErrorCode[] = ['BAD_CONFIG', 'BAD_SAFETENSORS', 'UNSUPPORTED_ARCHITECTURE', 'BAD_ARGUMENT', 'MISSING_SHARD'];

/**
 * Run a Python file with arguments; return stdout. The folder code's own errors (`error[CODE]: message`
 * on stderr, status 3) become the same FopeifyError; anything else names the failure with stderr's last line.
 */
export async function runPython(python: string, script: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  const env = { ...(options.env ?? process.env), PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1' };
  const r = await run(python, [script, ...args], { env, timeoutMs: options.timeoutMs });
  if (r.spawnError) throw new FopeifyError('BACKEND_UNAVAILABLE', `cannot run ${python}: ${r.spawnError.code}; ${INSTALL_HINT}`, { option: 'python' });
  if (r.code === 0) return r.stdout;
  const lines = r.stderr.trim().split('\n').filter(Boolean);
  const tagged = lines.map((l) => /^error\[([A-Z_]+)\]: (.*)$/.exec(l)).find((m) => m !== null);
  if (tagged) {
    const code = (KNOWN_CODES as readonly string[]).includes(tagged[1]!) ? (tagged[1] as ErrorCode) : 'BAD_CONFIG';
    throw new FopeifyError(code, tagged[2]!);
  }
  throw new FopeifyError('INTERNAL', `the PyTorch engine failed (${python} ${script}, status ${r.code}): ${lines.pop() ?? 'no output'}`);
}
