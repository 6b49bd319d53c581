/**
 * The order statistics the benchmarks print, one definition each.
 *
 * A percentile is the nearest-rank one: the `p`th percentile of `n` samples
 * is the sample of rank ⌈p·n/100⌉ in ascending order (the smallest sample
 * that at least p % of the samples are at or below). It is always a value
 * that was measured, never one between two samples that no run saw, and its
 * rank is easy to say beside a figure: a p99 of fewer than 100 samples is
 * their maximum, a p99 of 100 the second largest, a p50 of an even count the
 * lower of the middle two.
 *
 * The median is the usual one: the middle sample of an odd count, the mean
 * of the middle two of an even count. For an odd count it is the p50; the
 * benchmarks take it for the middle of a few runs (5 traffic runs, 9
 * samples), where the mean of the middle two leans neither way.
 *
 * @example
 * ```ts
 * import { median, percentile } from "./stats.ts";
 *
 * percentile([5, 1, 4, 2, 3], 50); // 3
 * percentile([5, 1, 4, 2, 3], 99); // 5: fewer than 100 samples, the maximum
 * median([4, 1, 3, 2]); // 2.5
 * ```
 *
 * @module
 */

/**
 * The nearest-rank `p`th percentile of `xs` (`p` from 0 to 100; 0 is the
 * least sample): NaN when `xs` is empty, so a JSON line still prints (as
 * null) beside the others.
 */
export function percentile(xs: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile ${p}: not from 0 to 100`);
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  // p * n first: exact for whole p, where (p / 100) * n can land just above a whole rank
  const rank = Math.max(1, Math.ceil((p * sorted.length) / 100));
  return sorted[rank - 1]!;
}

/** The median of `xs` (the mean of the middle two for an even count); NaN when `xs` is empty. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const m = sorted.length >> 1;
  return sorted.length % 2 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
}
