/**
 * From per-cell results to the study's numbers: per variant and length the mean passkey accuracy with its
 * 95 % interval across seeds (the RULER-style table), Avg, the effective length, perplexity per window,
 * the short-context row (the training length), and the verdict.
 */
import type { StudyPlan, VariantId } from './plan.js';
import { VARIANTS } from './plan.js';
import { effectiveLength, meanInterval, type Interval } from './stats.js';
import type { StudyCell } from './study.js';
import { studyVerdict, type StudyVerdict, type VariantScores } from './verdict.js';

export interface SeededInterval extends Interval {
  /** The per-seed values, in seed order. */
  values: number[];
}

export interface StudyAggregate {
  /** Accuracy a length must keep for the effective length. */
  threshold: number;
  /** Passkey lengths and perplexity windows beyond the training length. */
  beyondLengths: number[];
  beyondWindows: number[];
  accuracy: ({ variant: VariantId; length: number } & SeededInterval)[];
  /** RULER's Avg: the mean accuracy over every tested length, per seed, then across seeds. */
  avg: ({ variant: VariantId } & SeededInterval)[];
  /** Longest length up to which the mean accuracy stays ≥ threshold (0: not even the shortest); per seed too. */
  effectiveLength: { variant: VariantId; length: number; perSeed: number[] }[];
  perplexity: ({ variant: VariantId; window: number } & SeededInterval)[];
  /** Mean accuracy over depths per length × depth, across seeds (for heatmaps). */
  depthAccuracy: { variant: VariantId; length: number; depth: number; accuracy: number }[];
  /** Passkey and perplexity at the training length. */
  short: { variant: VariantId; accuracy: SeededInterval; ppl: SeededInterval }[];
  /** Means beyond the training length (accuracy over lengths, perplexity over windows). */
  beyond: { variant: VariantId; accuracy: SeededInterval; ppl: SeededInterval }[];
  verdict: StudyVerdict;
}

function seeded(values: number[], bounds?: [number, number]): SeededInterval {
  return { ...meanInterval(values, bounds), values };
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

export function aggregateStudy(cells: readonly StudyCell[], context: { plan: StudyPlan; variants: VariantId[]; seeds: number[] }): StudyAggregate {
  const { plan, variants, seeds } = context;
  const beyondLengths = plan.lengths.filter((l) => l > plan.trainLength);
  const beyondWindows = plan.windows.filter((w) => w > plan.trainLength);
  const cellOf = (v: VariantId, s: number) => cells.find((c) => c.variant === v && c.seed === s);
  const agg: StudyAggregate = {
    threshold: plan.threshold,
    beyondLengths,
    beyondWindows,
    accuracy: [],
    avg: [],
    effectiveLength: [],
    perplexity: [],
    depthAccuracy: [],
    short: [],
    beyond: [],
    verdict: { leader: null, leaderComparisons: [], claims: [], text: '' },
  };
  const scores: VariantScores[] = [];
  for (const v of variants) {
    const run = seeds.map((s) => ({ seed: s, cell: cellOf(v, s) })).filter((x): x is { seed: number; cell: StudyCell } => x.cell !== undefined);
    if (!run.length) continue;
    const accAt = (c: StudyCell, L: number) => c.accuracy.find((a) => a.length === L)?.accuracy;
    const pplAt = (c: StudyCell, w: number) => c.perplexity.find((p) => p.window === w)?.ppl ?? undefined;
    const meanRow = new Map<number, number>();
    for (const L of plan.lengths) {
      const values = run.map((r) => accAt(r.cell, L)).filter((x): x is number => x !== undefined);
      const iv = seeded(values, [0, 1]);
      agg.accuracy.push({ variant: v, length: L, ...iv });
      if (values.length) meanRow.set(L, iv.mean);
      for (const d of plan.depths) {
        const ds = run.map((r) => r.cell.passkeyCells.find((c) => c.length === L && c.depth === d)?.accuracy).filter((x): x is number => x !== undefined);
        if (ds.length) agg.depthAccuracy.push({ variant: v, length: L, depth: d, accuracy: mean(ds) });
      }
    }
    agg.avg.push({ variant: v, ...seeded(run.map((r) => mean(plan.lengths.map((L) => accAt(r.cell, L) ?? 0))), [0, 1]) });
    agg.effectiveLength.push({
      variant: v,
      length: effectiveLength(meanRow, plan.threshold),
      perSeed: run.map((r) => effectiveLength(new Map(r.cell.accuracy.map((a) => [a.length, a.accuracy])), plan.threshold)),
    });
    for (const w of plan.windows) {
      const values = run.map((r) => pplAt(r.cell, w)).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
      agg.perplexity.push({ variant: v, window: w, ...seeded(values, [1, Infinity]) });
    }
    const perSeed = (f: (c: StudyCell) => number | undefined) => {
      const m = new Map<number, number>();
      for (const r of run) {
        const x = f(r.cell);
        if (x !== undefined && Number.isFinite(x)) m.set(r.seed, x);
      }
      return m;
    };
    const score: VariantScores = {
      id: v,
      label: VARIANTS[v].label,
      beyondAccuracy: perSeed((c) => (beyondLengths.length ? mean(beyondLengths.map((L) => accAt(c, L) ?? 0)) : undefined)),
      beyondPpl: perSeed((c) => {
        const ps = beyondWindows.map((w) => pplAt(c, w)).filter((x): x is number => typeof x === 'number');
        return ps.length === beyondWindows.length && ps.length ? mean(ps) : undefined;
      }),
      shortAccuracy: perSeed((c) => accAt(c, plan.trainLength)),
      shortPpl: perSeed((c) => pplAt(c, plan.trainLength)),
    };
    scores.push(score);
    agg.short.push({ variant: v, accuracy: seeded([...score.shortAccuracy.values()], [0, 1]), ppl: seeded([...score.shortPpl.values()], [1, Infinity]) });
    agg.beyond.push({ variant: v, accuracy: seeded([...score.beyondAccuracy.values()], [0, 1]), ppl: seeded([...score.beyondPpl.values()], [1, Infinity]) });
  }
  agg.verdict = studyVerdict(scores, { trainLength: plan.trainLength, beyond: beyondLengths });
  return agg;
}
