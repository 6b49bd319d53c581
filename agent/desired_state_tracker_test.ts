import assert from "node:assert/strict";
import type { RoutingTable, RoutingTableEntry } from "../api/mod.ts";
import { be, randomTable, rng, table } from "./_testing.ts";
import {
  compactTable,
  computeDesiredState,
  type DesiredService,
  type DesiredState,
  type LastProgrammed,
} from "./desired_state.ts";
import { DesiredStateTracker } from "./desired_state_tracker.ts";

const CAP = { serviceIds: 100, serviceKeys: 200, backendIds: 1000, conntrack: 1000 };

/**
 * Drives a tracker as the agent does (compact tables, last programming kept
 * from each state) and checks every state against the full computation.
 */
class Harness {
  tracker = new DesiredStateTracker();
  tables = new Map<string, unknown>();
  last = new Map<string, LastProgrammed>();
  programmed = new Set<string>();
  capacity = CAP;
  /** States that came with a change list. */
  incremental = 0;
  /** Every table result seen. */
  results = new Set<string>();
  #previous = new Map<string, DesiredService>();

  set(t: RoutingTable): void {
    this.tables.set(t.metadata.name!, compactTable(t, "node-1"));
  }

  delete(name: string): void {
    this.tables.delete(name);
  }

  sync(label = ""): DesiredState {
    const list = [...this.tables.values()];
    const options = {
      node: "node-1",
      lastProgrammed: this.last,
      programmedFrontends: this.programmed,
      capacity: this.capacity,
    };
    const full = computeDesiredState(list, options);
    const got = this.tracker.compute(list, options);
    assert.deepEqual(
      normal(got),
      normal(full),
      `tracker differs from the full computation ${label}`,
    );
    if (got.changes) {
      this.incremental++;
      for (const f of new Set([...this.#previous.keys(), ...got.services.keys()])) {
        if (this.#previous.get(f) === got.services.get(f)) continue;
        assert.ok(got.changes.frontends.has(f), `${f} changed but is not in the change list`);
      }
    }
    this.#previous = new Map(got.services);
    this.programmed = new Set([...got.services.keys(), ...got.keep]);
    const names = new Set<string>();
    for (const t of got.tables) {
      this.results.add(t.result);
      const name = `${t.namespace}/${t.name}`;
      names.add(name);
      if (t.result === "programmed" || t.result === "conflict") {
        this.last.set(name, { generation: t.generation, services: got.byTable.get(name) ?? [] });
      }
    }
    for (const name of [...this.last.keys()]) if (!names.has(name)) this.last.delete(name);
    return got;
  }
}

/** A state as plain sorted data. */
function normal(d: DesiredState) {
  const sort = <T>(m: Iterable<[string, T]>) =>
    [...m].sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  return {
    services: sort(d.services),
    keep: [...d.keep].sort(),
    tables: d.tables,
    byTable: sort(d.byTable),
  };
}

function entry(port: number, ips: string[], extra: Partial<RoutingTableEntry> = {}) {
  return { port, backends: ips.map((ip) => be(ip)), ...extra };
}

Deno.test("desired state tracker: a backend change in one table lists only the changed frontend, and keeps the others' objects", () => {
  const h = new Harness();
  h.set(table("a", [entry(80, ["198.18.1.2"]), entry(81, ["198.18.1.3"])]));
  h.set(table("b", [entry(82, ["198.18.1.4"])]));
  const before = h.sync().services.get("198.18.100.1:80/TCP");
  h.set(table("a", [entry(80, ["198.18.1.2"]), entry(81, ["198.18.1.5"])], { generation: 2 }));
  const d = h.sync();
  assert.deepEqual([...d.changes!.frontends].sort(), ["198.18.100.1:81/TCP"]);
  assert.equal(d.services.get("198.18.100.1:80/TCP"), before);
  assert.equal(d.tables[0]!.generation, 2);
});

Deno.test("desired state tracker: a state's change list goes once the next is computed, so states do not chain", () => {
  const h = new Harness();
  h.set(table("a", [entry(80, ["198.18.1.2"])]));
  h.sync();
  h.set(table("a", [entry(80, ["198.18.1.3"])], { generation: 2 }));
  const second = h.sync();
  assert.ok(second.changes);
  h.set(table("a", [entry(80, ["198.18.1.4"])], { generation: 3 }));
  const third = h.sync();
  assert.equal(third.changes?.since, second);
  assert.equal(second.changes, undefined);
});

Deno.test("desired state tracker: a change that adds a conflict with another table matches the full computation", () => {
  const h = new Harness();
  h.set(table("a", [entry(80, ["198.18.1.2"]), entry(81, ["198.18.1.3"])]));
  h.set(table("b", [entry(82, ["198.18.1.4"])]));
  h.sync();
  h.set(table("b", [entry(81, ["198.18.1.4"])], { generation: 2 }));
  const d = h.sync();
  assert.deepEqual(d.tables.map((t) => t.result), ["conflict", "conflict"]);
  h.set(table("b", [entry(82, ["198.18.1.4"])], { generation: 3 }));
  assert.deepEqual(h.sync().tables.map((t) => t.result), ["programmed", "programmed"]);
});

Deno.test("desired state tracker: a table going invalid keeps its last programming", () => {
  const h = new Harness();
  h.set(table("a", [entry(80, ["198.18.1.2"])]));
  h.set(table("b", [entry(82, ["198.18.1.4"])]));
  h.sync();
  h.set(table("a", [entry(80, ["198.18.1.2"], { port: 0 })], { generation: 2 }));
  const d = h.sync();
  assert.equal(d.tables[0]!.result, "invalid");
  assert.ok(d.changes, "computed from the last state");
  assert.deepEqual(d.services.get("198.18.100.1:80/TCP")?.backends.map((b) => b.addr), [
    "198.18.1.2",
  ]);
});

Deno.test("desired state tracker: a table over capacity matches the full computation, and the next fitting change too", () => {
  const h = new Harness();
  h.capacity = { ...CAP, backendIds: 12 };
  h.set(table("a", [entry(80, ["198.18.1.2"])]));
  h.set(table("b", [entry(82, ["198.18.1.4"])]));
  h.sync();
  const many = Array.from({ length: 20 }, (_, i) => `198.18.2.${i + 1}`);
  h.set(table("a", [entry(80, many)], { generation: 2 }));
  assert.equal(h.sync().tables[0]!.result, "capacity");
  h.set(table("b", [entry(82, ["198.18.1.5"])], { generation: 2 }));
  h.sync();
  h.set(table("a", [entry(80, ["198.18.1.7"])], { generation: 3 }));
  assert.equal(h.sync().tables[0]!.result, "programmed");
});

Deno.test("desired state tracker: a removed table's frontends leave", () => {
  const h = new Harness();
  h.set(table("a", [entry(80, ["198.18.1.2"])]));
  h.set(table("b", [entry(82, ["198.18.1.4"])]));
  h.sync();
  h.delete("a");
  const d = h.sync();
  assert.deepEqual([...d.services.keys()], ["198.18.100.1:82/TCP"]);
  assert.deepEqual([...d.changes!.frontends], ["198.18.100.1:80/TCP"]);
});

Deno.test("desired state tracker: a frontend moving between tables in one sync is no conflict", () => {
  const h = new Harness();
  h.set(table("a", [entry(80, ["198.18.1.2"]), entry(81, ["198.18.1.3"])]));
  h.set(table("b", [entry(82, ["198.18.1.4"])]));
  h.sync();
  h.set(table("a", [entry(80, ["198.18.1.2"])], { generation: 2 }));
  h.set(table("b", [entry(81, ["198.18.1.3"]), entry(82, ["198.18.1.4"])], { generation: 2 }));
  const d = h.sync();
  assert.ok(d.changes, "computed from the last state");
  assert.equal(d.services.get("198.18.100.1:81/TCP")!.table, "default/b");
});

Deno.test("desired state tracker: random table edits give the full computation's state at every step", () => {
  const results = new Set<string>();
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const r = rng(seed);
    const h = new Harness();
    h.capacity = { ...CAP, serviceIds: 8, serviceKeys: 12, backendIds: 20 };
    const names = ["a", "b", "c", "d", "e", "f"];
    const generations = new Map<string, number>();
    for (let step = 0; step < 300; step++) {
      const edits = r() < 0.8 ? 1 : 2;
      for (let i = 0; i < edits; i++) {
        const name = names[Math.floor(r() * names.length)]!;
        if (r() < 0.15) {
          h.delete(name);
          continue;
        }
        const g = (generations.get(name) ?? 0) + 1;
        generations.set(name, g);
        h.set(randomTable(r, name, g));
      }
      if (r() < 0.1) h.capacity = { ...CAP, serviceIds: 100, serviceKeys: 200, backendIds: 1000 };
      h.sync(`(seed ${seed}, step ${step})`);
      // now and then a sync without a change, as after a resync
      if (r() < 0.1) h.sync(`(seed ${seed}, step ${step}, again)`);
    }
    assert.ok(h.incremental > 50, `seed ${seed}: only ${h.incremental} incremental states`);
    for (const result of h.results) results.add(result);
  }
  assert.deepEqual([...results].sort(), ["capacity", "conflict", "invalid", "programmed"]);
});
