/**
 * Backoff delays grow, stop at the cap and spread out; sleeps end early and
 * leave no timer when aborted.
 */

import assert from "node:assert/strict";
import { backoffDelay, childController, sleep } from "./backoff.ts";

Deno.test("backoffDelay: doubles from 800 ms up to 30 s, jittered within the upper half", () => {
  const low = () => 0;
  const high = () => 0.999999;
  assert.equal(backoffDelay(1, { random: low }), 400);
  assert.ok(backoffDelay(1, { random: high }) < 800);
  assert.equal(backoffDelay(2, { random: low }), 800);
  assert.equal(backoffDelay(3, { random: low }), 1600);
  assert.equal(backoffDelay(20, { random: low }), 15_000, "capped at 30 s nominal");
  assert.ok(backoffDelay(20, { random: high }) < 30_000);
  assert.equal(backoffDelay(3, { initialMs: 100, maxMs: 250, factor: 3, random: low }), 125);
});

Deno.test("backoffDelay: clients that fail together retry at different times", () => {
  const delays = new Set(Array.from({ length: 20 }, () => Math.round(backoffDelay(5))));
  assert.ok(delays.size > 10, `only ${delays.size} distinct delays`);
});

Deno.test("sleep: an abort ends it at once and leaves no timer", async () => {
  const controller = new AbortController();
  const started = performance.now();
  const slept = sleep(60_000, controller.signal);
  controller.abort();
  await slept;
  assert.ok(performance.now() - started < 100);
  await sleep(1_000, controller.signal); // already aborted: returns at once
});

Deno.test("childController: follows its parent, also one that aborted before", () => {
  const parent = new AbortController();
  const [child, unlink] = childController(parent.signal);
  assert.equal(child.signal.aborted, false);
  parent.abort();
  assert.equal(child.signal.aborted, true);
  unlink();
  const [late] = childController(parent.signal);
  assert.equal(late.signal.aborted, true, "a listener would never have fired");
});
