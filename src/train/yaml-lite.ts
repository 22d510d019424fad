/**
 * The YAML subset recipes use: nested maps by indentation, scalars (numbers, booleans, null, strings) and
 * inline lists `[a, b]`. Hand-written because a full YAML dependency is heavy for a few recipe files;
 * anything outside this subset is a clear error, never a silent misread.
 */
import { FopeifyError } from '../errors.js';

function scalar(raw: string, where: string): unknown {
  const s = raw.trim();
  if (s === '' || s === '~' || s === 'null') return null;
  if (s === 'true') return true;
  if (s === 'false') return false;
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) return Number(s);
  if (s.startsWith('[')) {
    if (!s.endsWith(']')) throw new FopeifyError('BAD_ARGUMENT', `${where}: unterminated list`);
    const inner = s.slice(1, -1).trim();
    return inner ? inner.split(',').map((p) => scalar(p, where)) : [];
  }
  if ((s.startsWith('"') && s.endsWith('"')) || (s.startsWith("'") && s.endsWith("'"))) return s.slice(1, -1);
  return s;
}

export function parseYamlLite(text: string, source = 'recipe'): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  const stack: { indent: number; obj: Record<string, unknown> }[] = [{ indent: -1, obj: root }];
  text.split('\n').forEach((line, i) => {
    const noComment = line.replace(/\s+#.*$/, '').replace(/^#.*$/, '');
    if (!noComment.trim()) return;
    const indent = noComment.length - noComment.trimStart().length;
    const m = /^([A-Za-z0-9_.-]+):(.*)$/.exec(noComment.trim());
    if (!m) throw new FopeifyError('BAD_ARGUMENT', `${source}:${i + 1}: expected "key: value"`);
    while (stack.length > 1 && indent <= stack[stack.length - 1]!.indent) stack.pop();
    const parent = stack[stack.length - 1]!.obj;
    const [, key, rest] = m as unknown as [string, string, string];
    if (rest.trim() === '') {
      const child: Record<string, unknown> = {};
      parent[key] = child;
      stack.push({ indent, obj: child });
    } else parent[key] = scalar(rest, `${source}:${i + 1}`);
  });
  return root;
}
