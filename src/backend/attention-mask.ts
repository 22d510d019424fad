/**
 * Which keys a query may attend to, written once for every attention implementation: causal (key
 * j ≤ query i) and, with Mistral's sliding window, HF's rule i − window < j ≤ i. Positions are sequence
 * indices; a key block is `n` keys starting at `kStart`.
 */

/** Added to hidden scores by the tf-op attention. Finite, so a row fully hidden inside one block stays NaN-free. */
export const MASKED = -1e30;

/** The keys `[lo, hi)` (block-relative, 0 ≤ lo ≤ hi ≤ n) of a block that query `qi` sees. */
export function visibleKeys(qi: number, kStart: number, n: number, window: number | null): [number, number] {
  const lo = window === null ? 0 : Math.min(n, Math.max(0, qi - window + 1 - kStart));
  return [lo, Math.max(lo, Math.min(n, qi - kStart + 1))];
}

/** Does some query of `qFirst..qLast` see some key of the block? */
export function blockVisible(kStart: number, n: number, qFirst: number, qLast: number, window: number | null): boolean {
  if (kStart > qLast) return false; // every key lies in the future of every query
  if (window !== null && kStart + n - 1 <= qFirst - window) return false; // all too old
  return true;
}

/** The keys `[first, end)` (sequence indices) of a block that at least one query of `qFirst..qLast` sees. */
export function visibleSpan(kStart: number, n: number, qFirst: number, qLast: number, window: number | null): [number, number] {
  const first = Math.max(kStart, window === null ? kStart : qFirst - window + 1);
  return [first, Math.min(kStart + n, qLast + 1)];
}

/** Additive mask `[tq, n]` (MASKED where hidden) for queries `qFirst..` against a key block, or null if nothing is hidden. */
export function additiveMask(qFirst: number, tq: number, kStart: number, n: number, window: number | null): Float32Array | null {
  const needCausal = kStart + n - 1 > qFirst;
  const needWindow = window !== null && kStart <= qFirst + tq - 1 - window;
  if (!needCausal && !needWindow) return null;
  const m = new Float32Array(tq * n);
  for (let i = 0; i < tq; i++) {
    const [lo, hi] = visibleKeys(qFirst + i, kStart, n, window);
    m.fill(MASKED, i * n, i * n + lo);
    m.fill(MASKED, i * n + hi, (i + 1) * n);
  }
  return m;
}
