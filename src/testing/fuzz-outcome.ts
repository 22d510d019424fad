/**
 * How a fuzz case ended, and the rules that judge it. Shared by the worker that runs cases
 * (./fuzz-worker.ts) and the runner that schedules them (./fuzz-runner.ts).
 */
import type { Expectation } from './fuzz-cases.js';

/** The library calls a case goes through, in order. */
export const FUZZ_STAGES = ['inspect', 'convert', 'load', 'tokenize', 'decode'] as const;
export type FuzzStage = (typeof FUZZ_STAGES)[number];

export type StageOutcome =
  | { stage: FuzzStage; outcome: 'success' }
  | { stage: FuzzStage; outcome: 'refused'; code: string; message: string }
  /** Anything that is neither: a raw Error, a bad FopeifyError, NaN logits, a leaked tensor... */
  | { stage: FuzzStage; outcome: 'failure'; reason: FailureReason; detail: string };

export type FailureReason =
  | 'raw-error'
  | 'internal-error'
  | 'multiline-message'
  | 'non-finite-logits'
  | 'tensor-leak'
  | 'accepted-invalid'
  | 'refused-valid'
  | 'source-modified'
  | 'wrote-outside'
  | 'leaked-outside-file'
  | 'partial-output'
  | 'hang'
  | 'memory'
  | 'crash';

/** Failures of the case as a whole (not tied to one library call). */
export interface CaseFailure {
  reason: FailureReason;
  /** The stage running when it happened, when known. */
  stage?: FuzzStage;
  detail: string;
}

export interface CaseResult {
  seed: number;
  index: number;
  stages: StageOutcome[];
  failures: CaseFailure[];
  /** Peak RSS of the worker process so far, bytes. */
  maxRssBytes?: number;
  ms: number;
}

export type CaseVerdict = 'success' | 'refusal' | 'failure';

/** success: every stage succeeded; refusal: at least one typed refusal and nothing else; failure: anything else. */
export function caseVerdict(result: Pick<CaseResult, 'stages' | 'failures'>): CaseVerdict {
  if (result.failures.length) return 'failure';
  if (result.stages.some((s) => s.outcome === 'failure')) return 'failure';
  return result.stages.some((s) => s.outcome === 'refused') ? 'refusal' : 'success';
}

/** The stages an expectation constrains, and what they must end in. */
export function expectationFailures(expect: Expectation, stages: readonly StageOutcome[], options: { convertable: boolean }): CaseFailure[] {
  const out: CaseFailure[] = [];
  const must = (names: readonly FuzzStage[], outcome: 'success' | 'refused') => {
    for (const s of stages) {
      if (!names.includes(s.stage) || s.outcome === 'failure' || s.outcome === outcome) continue;
      out.push(
        outcome === 'refused'
          ? { reason: 'accepted-invalid', stage: s.stage, detail: `${s.stage} succeeded on an input it must refuse` }
          : { reason: 'refused-valid', stage: s.stage, detail: `${s.stage} refused a valid input: ${s.outcome === 'refused' ? `${s.code}: ${s.message}` : ''}` },
      );
    }
  };
  if (expect === 'refuse-all') must(['inspect', 'convert', 'load'], 'refused');
  if (expect === 'refuse-load') must(['load'], 'refused');
  // A FoPE checkpoint is refused by convert (it already has coefficients), whatever else holds.
  if (expect === 'succeed') must(options.convertable ? ['inspect', 'convert', 'load', 'tokenize'] : ['inspect', 'load', 'tokenize'], 'success');
  return out;
}

/** One line naming what went wrong, for reports. */
export function describeFailures(result: CaseResult): string {
  const parts: string[] = [];
  for (const s of result.stages) if (s.outcome === 'failure') parts.push(`${s.stage}: ${s.reason}: ${s.detail}`);
  for (const f of result.failures) parts.push(`${f.stage ? `${f.stage}: ` : ''}${f.reason}: ${f.detail}`);
  return parts.join(' | ');
}
