/**
 * The study's verdict in words, computed from the numbers: which variant retrieves best beyond the
 * training length, whether its lead exceeds the 95 % intervals (paired by seed), what that says about
 * the paper's claims, and whether anything regressed at the original length. "No difference" is said
 * when that is what came out; nothing here knows which variant is supposed to win.
 */
import { meanInterval, pairedDifference, type Comparison, type Interval, type PairedDifference } from './stats.js';

/** Per-seed numbers of one variant (seed → value). */
export interface VariantScores {
  id: string;
  label: string;
  /** Mean passkey accuracy over the lengths beyond the training length. */
  beyondAccuracy: Map<number, number>;
  /** Mean perplexity over the windows beyond the training length (lower is better). */
  beyondPpl: Map<number, number>;
  /** Passkey accuracy at the training length. */
  shortAccuracy: Map<number, number>;
  /** Perplexity at the training length. */
  shortPpl: Map<number, number>;
}

export interface ClaimCheck {
  claim: string;
  a: string;
  b: string;
  metric: 'beyond accuracy' | 'beyond perplexity' | 'short perplexity';
  difference: PairedDifference;
  /** ahead / behind from a's side, with "better" meaning lower perplexity. */
  outcome: Comparison;
  sentence: string;
}

export interface StudyVerdict {
  /** The variant with the best mean accuracy beyond the training length (null when nothing is measured). */
  leader: string | null;
  /** leader − each other variant, beyond the training length. */
  leaderComparisons: { against: string; difference: PairedDifference }[];
  claims: ClaimCheck[];
  text: string;
}

const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
const pts = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(0)} points`;
const num = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2));
const signed = (x: number) => `${x >= 0 ? '+' : '−'}${num(Math.abs(x))}`;

function intervalText(iv: Interval, fmt: (x: number) => string): string {
  return iv.lo === null || iv.hi === null ? '' : ` [${fmt(iv.lo)}, ${fmt(iv.hi)}]`;
}

/** "+12 points (95 % CI −3 … +27)". */
function differenceText(d: PairedDifference, kind: 'accuracy' | 'ppl'): string {
  const f = kind === 'accuracy' ? pts : signed;
  if (d.lo === null || d.hi === null) return `${f(d.mean)} (one seed: no interval)`;
  const bound = kind === 'accuracy' ? (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(0)}` : signed;
  return `${f(d.mean)} (95 % CI ${bound(d.lo)} … ${bound(d.hi)})`;
}

/** Flip a perplexity comparison so that "ahead" means better (lower). */
function better(outcome: Comparison, lowerIsBetter: boolean): Comparison {
  if (!lowerIsBetter) return outcome;
  return outcome === 'ahead' ? 'behind' : outcome === 'behind' ? 'ahead' : outcome;
}

function outcomeWords(outcome: Comparison): string {
  switch (outcome) {
    case 'ahead':
      return 'ahead, beyond the interval';
    case 'behind':
      return 'behind, beyond the interval';
    case 'tie':
      return 'no difference beyond the interval (it holds 0)';
    default:
      return 'not testable with one seed';
  }
}

const CLAIMS: { claim: string; a: string; b: string; metric: ClaimCheck['metric'] }[] = [
  { claim: 'FoPE helps YaRN beyond the training length', a: 'fope-yarn', b: 'yarn', metric: 'beyond accuracy' },
  { claim: 'the Fourier series matters (FoPE+YaRN vs clip-only+YaRN)', a: 'fope-yarn', b: 'clip-yarn', metric: 'beyond accuracy' },
  { claim: 'clipping matters (FoPE+YaRN vs Fourier-only+YaRN)', a: 'fope-yarn', b: 'fourier-yarn', metric: 'beyond accuracy' },
  { claim: 'the Fourier series matters more for length generalisation (Fourier-only vs clip-only)', a: 'fourier-yarn', b: 'clip-yarn', metric: 'beyond accuracy' },
  { claim: 'clipping matters more within the training length (clip-only vs Fourier-only, perplexity)', a: 'clip-yarn', b: 'fourier-yarn', metric: 'short perplexity' },
  { claim: 'FoPE without YaRN beats plain RoPE fine-tuning beyond the training length', a: 'fope', b: 'rope', metric: 'beyond accuracy' },
];

function metricOf(v: VariantScores, metric: ClaimCheck['metric']): Map<number, number> {
  return metric === 'beyond accuracy' ? v.beyondAccuracy : metric === 'beyond perplexity' ? v.beyondPpl : v.shortPpl;
}

interface Ranking {
  order: { s: VariantScores; iv: Interval }[];
  /** The best − each other variant, per seed; outcome from the best's side ("ahead" = better). */
  comparisons: { against: string; difference: PairedDifference }[];
}

/** Variants best first by the mean of `metric`, and the best one's paired difference from each other. */
function rank(variants: readonly VariantScores[], metric: (v: VariantScores) => Map<number, number>, lowerIsBetter: boolean): Ranking {
  const order = variants
    .map((s) => ({ s, iv: meanInterval([...metric(s).values()], lowerIsBetter ? undefined : [0, 1]) }))
    .sort((x, y) => (lowerIsBetter ? x.iv.mean - y.iv.mean : y.iv.mean - x.iv.mean));
  const best = order[0]!.s;
  const comparisons = order.slice(1).map(({ s }) => {
    const d = pairedDifference(metric(best), metric(s), lowerIsBetter ? undefined : [-1, 1]);
    return { against: s.id, difference: { ...d, outcome: better(d.outcome, lowerIsBetter) } };
  });
  return { order, comparisons };
}

/** Whether the best variant's lead exceeds the intervals: against all, some, none ("no difference"). */
function leadSentence(r: Ranking, best: string, fmt: (x: number) => string, where: string): string {
  const top = r.order[0]!;
  if (r.order.length === 1) return `Only ${top.s.label} was measured; there is nothing to compare.`;
  if (r.order.every(({ iv }) => iv.mean === top.iv.mean)) return `No difference: every variant scored the same (${fmt(top.iv.mean)}).`;
  const label = (id: string) => r.order.find((o) => o.s.id === id)!.s.label;
  const ahead = r.comparisons.filter((c) => c.difference.outcome === 'ahead').map((c) => label(c.against));
  const rest = r.comparisons.filter((c) => c.difference.outcome !== 'ahead').map((c) => label(c.against));
  if (r.comparisons.every((c) => c.difference.outcome === 'no interval')) {
    return `${top.s.label} has ${best}; with one seed no interval can be stated, so whether the lead is real is not tested.`;
  }
  if (!rest.length) return `${top.s.label} is ahead of every other variant ${where}, and each lead exceeds its 95 % interval (paired by seed).`;
  if (!ahead.length) return `${top.s.label} has ${best}, but no lead exceeds its 95 % interval: no difference between the variants ${where} at this budget.`;
  return `${top.s.label} has ${best}; its lead exceeds the 95 % interval against ${ahead.join(', ')}, but not against ${rest.join(', ')} (no difference there).`;
}

/** The verdict from per-seed scores; `trainLength` and `beyond` (the lengths beyond it) only name things. */
export function studyVerdict(scores: readonly VariantScores[], context: { trainLength: number; beyond: number[] }): StudyVerdict {
  const measured = scores.filter((s) => s.beyondAccuracy.size > 0);
  if (!measured.length || !context.beyond.length) {
    const why = !context.beyond.length ? 'no passkey length beyond the training length was measured' : 'no variant has results yet';
    return { leader: null, leaderComparisons: [], claims: [], text: `No verdict: ${why}.` };
  }
  const byId = new Map(measured.map((s) => [s.id, s]));
  const seeds = Math.max(...measured.map((s) => s.beyondAccuracy.size));
  const parts: string[] = [];
  const accRank = rank(measured, (s) => s.beyondAccuracy, false);
  const accHead =
    `Mean passkey accuracy beyond the training length (${context.trainLength} tokens; at ${context.beyond.join(', ')}), ${seeds === 1 ? 'one seed' : `mean of ${seeds} seeds with 95 % t-intervals`}: ` +
    accRank.order.map(({ s, iv }) => `${s.label} ${pct(iv.mean)}${intervalText(iv, pct)}`).join(', ') +
    '.';
  parts.push(`${accHead} ${leadSentence(accRank, 'the highest mean', pct, 'beyond the training length')}`);
  const withPpl = measured.filter((s) => s.beyondPpl.size);
  if (withPpl.length > 1) {
    const pplRank = rank(withPpl, (s) => s.beyondPpl, true);
    parts.push(
      `Mean perplexity over the windows beyond the training length: ${pplRank.order.map(({ s, iv }) => `${s.label} ${num(iv.mean)}${intervalText(iv, num)}`).join(', ')}. ` +
        leadSentence(pplRank, 'the lowest perplexity', num, 'in perplexity beyond the training length'),
    );
  }
  const leader = accRank.order[0]!.s;
  const leaderComparisons = accRank.comparisons;
  const claims: ClaimCheck[] = [];
  for (const c of CLAIMS) {
    const a = byId.get(c.a);
    const b = byId.get(c.b);
    if (!a || !b) continue;
    const d = pairedDifference(metricOf(a, c.metric), metricOf(b, c.metric), c.metric === 'beyond accuracy' ? [-1, 1] : undefined);
    if (!d.n) continue;
    const outcome = better(d.outcome, c.metric !== 'beyond accuracy');
    const what = c.metric === 'beyond accuracy' ? 'accuracy beyond the training length' : `perplexity at ${context.trainLength} tokens`;
    const sentence = `${c.claim[0]!.toUpperCase()}${c.claim.slice(1)}: ${a.label} − ${b.label} ${what} ${differenceText(d, c.metric === 'beyond accuracy' ? 'accuracy' : 'ppl')} → ${a.label} ${outcomeWords(outcome)}.`;
    claims.push({ ...c, difference: d, outcome, sentence });
  }
  if (claims.length) parts.push(`The paper's claims at this scale (a − b per seed, 95 % t-interval):\n${claims.map((c) => `- ${c.sentence}`).join('\n')}`);
  // The short-context row: does any variant lose what the base model could do at its training length?
  const base = byId.get('rope');
  if (base && base.shortPpl.size) {
    const regress: string[] = [];
    for (const s of measured) {
      if (s === base || !s.shortPpl.size) continue;
      const d = pairedDifference(s.shortPpl, base.shortPpl);
      if (d.outcome === 'ahead') regress.push(`${s.label} (${differenceText(d, 'ppl')})`);
    }
    parts.push(
      regress.length
        ? `At the original training length, perplexity is higher than RoPE fine-tuned's beyond the interval for ${regress.join(', ')}: a short-context regression.`
        : `At the original training length no variant's perplexity is above RoPE fine-tuned's beyond the interval: no short-context regression found.`,
    );
  }
  // Paragraphs: accuracy ranking and lead, perplexity, the claims (one per line), the short-context row.
  return { leader: leader.id, leaderComparisons, claims, text: parts.join('\n') };
}
