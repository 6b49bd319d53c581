import assert from "node:assert/strict";
import { median, percentile } from "./stats.ts";

/** 1..n in a shuffled order (a fixed one): the sample of rank r is r. */
function ranks(n: number): number[] {
  const xs = Array.from({ length: n }, (_, i) => i + 1);
  let seed = 12345;
  for (let i = n - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const j = seed % (i + 1);
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

Deno.test("percentile is the sample of rank ceil(p·n/100)", () => {
  assert.equal(percentile([5, 1, 4, 2, 3], 50), 3);
  assert.equal(percentile([4, 1, 3, 2], 50), 2, "an even count: the lower middle sample");
  assert.equal(percentile(ranks(10), 90), 9);
  assert.equal(percentile(ranks(20), 99), 20);
  assert.equal(percentile(ranks(200), 99), 198);
  assert.equal(percentile(ranks(7), 0), 1, "p0 is the least sample");
  assert.equal(percentile(ranks(7), 100), 7);
});

Deno.test("a p99 is the maximum below 100 samples and the second largest at 100", () => {
  for (let n = 1; n < 100; n++) assert.equal(percentile(ranks(n), 99), n, `n=${n}`);
  assert.equal(percentile(ranks(100), 99), 99);
});

Deno.test("percentile gives the rank the benchmarks' ceil((p / 100) * n) gave for whole p", () => {
  // bench/peer.ts, bench/tools/table_parse.ts and table_write.ts computed it so: same figures
  for (const p of [50, 90, 99]) {
    for (let n = 1; n <= 1000; n++) {
      const old = Math.min(n - 1, Math.ceil((p / 100) * n) - 1) + 1;
      assert.equal(percentile(ranks(n), p), old, `p${p} of ${n}`);
    }
  }
});

Deno.test("percentile of no samples is NaN; a p outside 0..100 is an error", () => {
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.throws(() => percentile([1], 101), RangeError);
  assert.throws(() => percentile([1], -1), RangeError);
  assert.throws(() => percentile([1], NaN), RangeError);
});

Deno.test("median is the middle sample, or the mean of the middle two", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.ok(Number.isNaN(median([])));
  for (let n = 1; n < 50; n += 2) assert.equal(median(ranks(n)), percentile(ranks(n), 50));
});

Deno.test("percentile and median leave their input in its order", () => {
  const xs = [3, 1, 2];
  percentile(xs, 50);
  median(xs);
  assert.deepEqual(xs, [3, 1, 2]);
});
