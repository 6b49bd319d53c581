import assert from "node:assert/strict";
import { WorkQueue } from "./work_queue.ts";

Deno.test("a key added many times before it is taken is processed once", async () => {
  const q = new WorkQueue();
  for (let i = 0; i < 5; i++) q.add("default/gw");
  q.add("default/other");
  assert.equal(q.length, 2);
  assert.equal(await q.get(), "default/gw");
  assert.equal(await q.get(), "default/other");
  assert.equal(q.length, 0);
  q.shutdown();
});

Deno.test("a key added while in flight is not handed to a second worker, and comes back once done", async () => {
  const q = new WorkQueue();
  q.add("k");
  const key = await q.get();
  q.add("k");
  q.add("k");
  assert.equal(q.length, 0, "not queued while in flight");
  q.done(key as string);
  assert.equal(q.length, 1);
  assert.equal(await q.get(), "k");
  q.shutdown();
});

Deno.test("a waiting worker gets the next key added", async () => {
  const q = new WorkQueue();
  const next = q.get();
  q.add("k");
  assert.equal(await next, "k");
  q.shutdown();
});

Deno.test("failures back off exponentially per key, up to the cap, and success resets the count", () => {
  const q = new WorkQueue({ baseMs: 10, maxMs: 100 });
  const delays = [1, 2, 3, 4, 5].map(() => q.retry("bad"));
  assert.deepEqual(delays, [10, 20, 40, 80, 100]);
  assert.equal(q.backoffMs("good"), 10, "other keys are unaffected");
  q.forget("bad");
  assert.equal(q.backoffMs("bad"), 10);
  q.shutdown();
});

Deno.test("a retried key comes back after its backoff", async () => {
  const q = new WorkQueue({ baseMs: 5 });
  q.retry("k");
  const started = performance.now();
  assert.equal(await q.get(), "k");
  assert.ok(performance.now() - started >= 4);
  q.shutdown();
});

Deno.test("shutdown releases waiting workers and cancels pending retries", async () => {
  const q = new WorkQueue({ baseMs: 60_000 });
  q.retry("k");
  const waiting = q.get();
  q.shutdown();
  assert.equal(await waiting, undefined);
  q.add("x");
  assert.equal(await q.get(), undefined);
});

Deno.test("a key taken by an idle worker waited 0 ms; a queued one reports how long it waited", async () => {
  const q = new WorkQueue();
  const next = q.get();
  q.add("a");
  assert.equal(await next, "a");
  assert.equal(q.waitedMs("a"), 0);
  q.add("b");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(await q.get(), "b");
  assert.ok(q.waitedMs("b") >= 15, `waited ${q.waitedMs("b")} ms`);
  q.done("b");
  assert.equal(q.waitedMs("b"), 0, "forgotten once done");
  q.shutdown();
});

Deno.test("background keys go to workers only once no other key is waiting", async () => {
  const q = new WorkQueue({ background: (k) => k.startsWith("routes:") });
  q.add("routes:a");
  q.add("routes:b");
  q.add("gw-1");
  q.add("gw-2");
  assert.equal(q.length, 4);
  assert.deepEqual([await q.get(), await q.get(), await q.get(), await q.get()], [
    "gw-1",
    "gw-2",
    "routes:a",
    "routes:b",
  ]);
  q.shutdown();
});

Deno.test("coalesced adds: a lone one is queued at once; a burst within the interval makes one more, at its end", async () => {
  const q = new WorkQueue();
  q.addCoalesced("gw", 50);
  assert.equal(q.length, 1, "the first at once");
  assert.equal(await q.get(), "gw");
  q.done("gw");
  const started = performance.now();
  for (let i = 0; i < 100; i++) q.addCoalesced("gw", 50);
  assert.equal(q.length, 0, "the burst waits for the interval's end");
  q.addCoalesced("other", 50);
  assert.equal(q.length, 1, "other keys have their own interval");
  assert.equal(await q.get(), "other");
  assert.equal(await q.get(), "gw");
  assert.ok(performance.now() - started >= 40, "queued at the interval's end");
  q.done("gw");
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(q.length, 0, "one key for the whole burst");
  q.addCoalesced("gw", 50);
  assert.equal(q.length, 1, "after a quiet interval, at once again");
  q.shutdown();
});

Deno.test("shutdown cancels coalesced adds that wait", () => {
  const q = new WorkQueue();
  q.addCoalesced("gw", 1000);
  q.addCoalesced("gw", 1000);
  q.shutdown();
  assert.equal(q.length, 1);
});

Deno.test("a coalesced add made now drops the waiting one and queues at once", async () => {
  const q = new WorkQueue();
  q.addCoalesced("gw", 1000);
  assert.equal(await q.get(), "gw");
  q.done("gw");
  q.addCoalesced("gw", 1000);
  assert.equal(q.length, 0, "within the interval: waits");
  q.addCoalescedNow("gw", 1000);
  assert.equal(q.length, 1, "now: at once");
  assert.equal(await q.get(), "gw");
  q.done("gw");
  q.addCoalesced("gw", 1000);
  assert.equal(q.length, 0, "the interval starts again from the add made now");
  q.shutdown();
});
