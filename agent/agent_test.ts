import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import type { DataplaneNodeStatus, RoutingTable } from "../api/mod.ts";
import type { CounterTotals } from "./bpf/maps.ts";
import { be, FakeMaps, table } from "./_testing.ts";
import { Agent, type AgentMaps, DEFAULT_STATUS_INTERVAL_MS } from "./agent.ts";
import { Registry } from "./metrics.ts";
import type { StatusWriter } from "./node_status_writer.ts";
import type { TableSource } from "./table_source.ts";

/** The in-memory maps with the counters and events the agent reads (none: no traffic). */
class QuietMaps extends FakeMaps {
  allCounters(): Map<number, CounterTotals> {
    return new Map();
  }
  countersInSteps(): Iterator<void, Map<number, CounterTotals>> {
    return { next: () => ({ done: true, value: new Map() }) };
  }
  events() {
    return {} as ReturnType<AgentMaps["events"]>;
  }
}

/** A table source over one table whose generation the test moves. */
class OneTable implements TableSource {
  readonly synced = Promise.resolve();
  generation = 1;
  #onChange: () => void = () => {};
  list(): unknown[] {
    return [this.#table()];
  }
  onChange(fn: () => void): void {
    this.#onChange = fn;
  }
  start(): void {}
  stop(): Promise<void> {
    return Promise.resolve();
  }
  /** A new generation (one backend's weight moved), as a watch event would bring it. */
  change(): void {
    this.generation++;
    this.#onChange();
  }
  #table(): RoutingTable {
    return table("gw", [{ backends: [be("198.18.1.1", 1 + (this.generation % 2))] }], {
      generation: this.generation,
    });
  }
}

/** Records every status write (each answered after `ms`) with when it started. */
class RecordingWriter implements StatusWriter {
  readonly writes: { at: number; status: DataplaneNodeStatus }[] = [];
  constructor(readonly ms = 5) {}
  ensure(): Promise<void> {
    return Promise.resolve();
  }
  async write(status: DataplaneNodeStatus): Promise<void> {
    this.writes.push({ at: performance.now(), status: structuredClone(status) });
    await new Promise((r) => setTimeout(r, this.ms));
  }
  /** The programmed generation of the last write, if any. */
  lastProgrammed(): number | undefined {
    return this.writes.at(-1)?.status.tables?.[0]?.programmedGeneration;
  }
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!ok()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function started(statusIntervalMs?: number) {
  const source = new OneTable();
  const writer = new RecordingWriter();
  const agent = new Agent({
    node: "node-1",
    uplink: "eth0",
    maps: new QuietMaps() as unknown as AgentMaps,
    source,
    status: writer,
    log: () => {},
    metrics: new Registry(),
    ...(statusIntervalMs !== undefined ? { statusIntervalMs } : {}),
  });
  await agent.start();
  await until("the first status", () => writer.lastProgrammed() === 1);
  return { agent, source, writer };
}

Deno.test("the status interval is 1 s by default", () => {
  assert.equal(DEFAULT_STATUS_INTERVAL_MS, 1_000);
});

Deno.test("the agent's first status write carries its first sync (not held back an interval)", async () => {
  const { agent, writer } = await started(60_000);
  try {
    assert.equal(writer.writes.length, 1);
    assert.equal(writer.writes[0]!.status.conditions?.[0]?.reason, "Programmed");
  } finally {
    await agent.stop();
  }
});

Deno.test("a single change after a quiet interval is written at once, not at the interval's end", async () => {
  const { agent, source, writer } = await started(2_000);
  try {
    // quiet: the interval since the first write (2 s) passes
    await new Promise((r) => setTimeout(r, 2_100));
    const before = writer.writes.length;
    const changed = performance.now();
    source.change();
    await until("generation 2 in the status", () => writer.lastProgrammed() === 2);
    assert.equal(writer.writes.length, before + 1);
    // written as soon as the maps were: well before another interval could have passed
    assert.ok(writer.writes.at(-1)!.at - changed < 1_000);
  } finally {
    await agent.stop();
  }
});

Deno.test("a burst of 50 changes is written at most once per interval, and the last status always", async () => {
  const interval = 200;
  const { agent, source, writer } = await started(interval);
  try {
    const before = writer.writes.length;
    const from = performance.now();
    for (let i = 0; i < 50; i++) {
      source.change();
      // the sync runs, as between two watch events
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setTimeout(r, 4));
    }
    const burstMs = performance.now() - from;
    await until("generation 51 in the status", () => writer.lastProgrammed() === 51);
    const writes = writer.writes.slice(before);
    // one at the interval's end after the first write, then one per interval, then the last
    assert.ok(
      writes.length <= Math.ceil(burstMs / interval) + 2,
      `${writes.length} writes over ${burstMs.toFixed(0)} ms`,
    );
    for (let i = 1; i < writes.length; i++) {
      assert.ok(writes[i]!.at - writes[i - 1]!.at >= interval - 1, "writes an interval apart");
    }
    // nothing more once the last status is written
    const count = writer.writes.length;
    await new Promise((r) => setTimeout(r, 2 * interval));
    assert.equal(writer.writes.length, count);
  } finally {
    await agent.stop();
  }
});

Deno.test("with a status interval of 0 every change is written as soon as the last write is answered", async () => {
  const { agent, source, writer } = await started(0);
  try {
    const before = writer.writes.length;
    for (let i = 0; i < 5; i++) {
      source.change();
      await until(`generation ${i + 2}`, () => writer.lastProgrammed() === i + 2);
    }
    assert.equal(writer.writes.length, before + 5);
  } finally {
    await agent.stop();
  }
});
