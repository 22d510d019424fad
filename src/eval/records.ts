/**
 * results.jsonl: one JSON record per model × length × depth × trial, appended as each finishes, so a run
 * that stops can be resumed by skipping the cells already there.
 */
import { promises as fs } from 'node:fs';
import type { NeedleTask } from './prompts.js';
import type { ScoringMode } from './scoring.js';

export interface NeedleRecord {
  model: string;
  context_length: number;
  depth: number;
  trial: number;
  key: number;
  response: string;
  correct: boolean;
  /** Wall time of scoring this cell. */
  seconds: number;
  task: NeedleTask;
  mode: ScoringMode;
  seed: number;
  /** Prompt tokens for this model's tokenizer (the target is context_length). */
  prompt_tokens: number;
  /** Where the key ended up: fraction of the filler before it. */
  depth_actual: number;
  /** niah: which haystack ('builtin' or a sha256 prefix of the text). */
  haystack?: string;
}

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
 * while writing, is dropped and the file rewritten without it, so appends start on a fresh line.
 */
export async function readRecords(file: string): Promise<NeedleRecord[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return [];
    throw err;
  }
  const out: NeedleRecord[] = [];
  const good: string[] = [];
  let dropped = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const v = JSON.parse(line) as unknown;
      if (isRecord(v)) {
        out.push(v);
        good.push(line);
        continue;
      }
    } catch {
      /* torn or foreign line */
    }
    dropped++;
  }
  if (dropped || (text.length && !text.endsWith('\n'))) await fs.writeFile(file, good.map((l) => l + '\n').join(''));
  return out;
}

export async function appendRecord(file: string, record: NeedleRecord): Promise<void> {
  await fs.appendFile(file, JSON.stringify(record) + '\n');
}
