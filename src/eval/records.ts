/**
 * results.jsonl: one JSON record per model × length × depth × trial, appended as each finishes, so a run
 * that stops can be resumed by skipping the cells already there.
 */
import { promises as fs } from 'node:fs';
import { appendToFile, truncateFile, writeFileAtomically } from '../io/atomic.js';
import type { NeedleRecord } from '../io/formats.js';

export function recordKey(r: Pick<NeedleRecord, 'model' | 'context_length' | 'depth' | 'trial'>): string {
  return JSON.stringify([r.model, r.context_length, r.depth, r.trial]);
}

function isRecord(v: unknown): v is NeedleRecord {
  if (!v || typeof v !== 'object') return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.model === 'string' &&
    typeof r.context_length === 'number' &&
    typeof r.depth === 'number' &&
    typeof r.trial === 'number' &&
    typeof r.key === 'number' &&
    typeof r.correct === 'boolean'
  );
}

/**
 * The records of a results file (none when it does not exist). A torn last line, left by a run killed
 * while appending, is dropped so appends start on a fresh line; the repair never puts a good record at
 * risk: a torn tail is cut off in one truncate(2) after the last newline, and a file with bad lines in
 * the middle is rewritten through a temporary file renamed over it. A kill at any moment leaves either
 * the old file or the repaired one.
 */
export async function readRecords(file: string): Promise<NeedleRecord[]> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return [];
    throw err;
  }
  const text = bytes.toString('utf8');
  const lines = text.split('\n');
  const tail = lines.pop()!; // after the last newline: '' when the file ends with one
  const out: NeedleRecord[] = [];
  const good: string[] = [];
  let droppedInside = 0;
  const parse = (line: string): NeedleRecord | null => {
    try {
      const v = JSON.parse(line) as unknown;
      return isRecord(v) ? v : null;
    } catch {
      return null; // torn or foreign line
    }
  };
  for (const line of lines) {
    if (!line.trim()) continue;
    const r = parse(line);
    if (r) {
      out.push(r);
      good.push(line);
    } else droppedInside++;
  }
  const tailRecord = tail.trim() ? parse(tail) : null;
  if (tailRecord) {
    out.push(tailRecord);
    good.push(tail);
  }
  if (droppedInside) {
    await writeFileAtomically(file, good.map((l) => l + '\n').join(''));
  } else if (tailRecord) {
    await appendToFile(file, '\n'); // a complete record that only lacks its newline
  } else if (tail.length) {
    await truncateFile(file, bytes.lastIndexOf(0x0a) + 1); // drop the torn bytes after the last newline
  }
  return out;
}

/** Append one record as a line; a failed append (full disk) leaves the file as it was. */
export async function appendRecord(file: string, record: NeedleRecord): Promise<void> {
  await appendToFile(file, JSON.stringify(record) + '\n');
}
