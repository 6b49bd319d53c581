import assert from "node:assert/strict";
import { writeHeapSnapshot } from "node:v8";
import { growth, summarize } from "./heap_snapshot.ts";

class HeapSnapshotTestLeak {
  constructor(readonly n: number) {}
}

Deno.test("growth names the kind of object a process kept between two snapshots", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const before = summarize(await Deno.readTextFile(writeHeapSnapshot(`${dir}/a.heapsnapshot`)));
    const kept = Array.from({ length: 5000 }, (_, n) => new HeapSnapshotTestLeak(n));
    const after = summarize(await Deno.readTextFile(writeHeapSnapshot(`${dir}/b.heapsnapshot`)));
    assert.equal(kept.length, 5000);
    const leak = growth(before, after).find((g) => g.kind === "object HeapSnapshotTestLeak");
    assert.ok(leak, "the kept class is a kind of the second snapshot");
    assert.equal(leak.count - leak.countBefore, 5000);
    assert.ok(leak.bytes > leak.bytesBefore);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
