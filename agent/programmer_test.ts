import assert from "node:assert/strict";
import { be, FakeMaps, randomTable, rng, table } from "./_testing.ts";
import {
  compactTable,
  computeDesiredState,
  type DesiredState,
  type LastProgrammed,
} from "./desired_state.ts";
import { DesiredStateTracker } from "./desired_state_tracker.ts";
import type { RoutingTable } from "../api/mod.ts";
import { Programmer } from "./programmer.ts";

const F = "198.18.100.1:80/TCP";

function desired(maps: FakeMaps, ...tables: RoutingTable[]) {
  return computeDesiredState(tables, {
    node: "node-1",
    lastProgrammed: new Map(),
    programmedFrontends: new Set(),
    capacity: maps.capacity(),
  });
}

function setup(...tables: RoutingTable[]): { maps: FakeMaps; p: Programmer } {
  const maps = new FakeMaps();
  const p = new Programmer(maps);
  p.adopt();
  p.apply(desired(maps, ...tables));
  maps.ops = [];
  return { maps, p };
}

Deno.test("programmer: a new service appears only after its backends and Maglev table", () => {
  const maps = new FakeMaps();
  const p = new Programmer(maps);
  p.adopt();
  p.apply(desired(maps, table("gw", [{ backends: [be("198.18.1.2"), be("198.18.1.3")] }])));
  assert.deepEqual(maps.ops, [
    "resetServiceCounters 1",
    "resetBackendCounters 1,2",
    "writeBackends 1=198.18.1.2,2=198.18.1.3",
    "writeMaglevs 1",
    `putService ${F}`,
    "putVipMarker 198.18.100.1",
  ]);
  assert.deepEqual(maps.tableTargets(F), ["198.18.1.2", "198.18.1.3"]);
});

Deno.test("programmer: applying the same tables again writes nothing", () => {
  const t = table("gw", [{ backends: [be("198.18.1.2")] }]);
  const { maps, p } = setup(t);
  const stats = p.apply(desired(maps, t));
  assert.deepEqual(maps.ops, []);
  assert.equal(stats.operations, 0);
});

Deno.test("programmer: a removed backend leaves the table before its slot is cleared", () => {
  const { maps, p } = setup(table("gw", [{ backends: [be("198.18.1.2"), be("198.18.1.3")] }]));
  p.apply(desired(maps, table("gw", [{ backends: [be("198.18.1.2")] }])));
  // a backend leaves: the table (same size) is written in place, and its slot is cleared only
  // after a grace period, once no program can hold an old slot naming it
  assert.deepEqual(maps.ops, [
    "writeMaglevs 1 in place",
    `putService ${F}`,
    "waitForReaders",
    "clearBackends 2",
  ]);
  assert.deepEqual(maps.tableTargets(F), ["198.18.1.2"]);
});

Deno.test("programmer: a weight change rewrites only that table, in place; weight 0 keeps the slot", () => {
  const { maps, p } = setup(table("gw", [{ backends: [be("198.18.1.2"), be("198.18.1.3")] }]));
  p.apply(desired(maps, table("gw", [{ backends: [be("198.18.1.2"), be("198.18.1.3", 0)] }])));
  // same size, every backend still there: written over the old table, no swap
  assert.deepEqual(maps.ops, ["writeMaglevs 1 in place", `putService ${F}`]);
  assert.deepEqual(maps.tableTargets(F), ["198.18.1.2"]);
  assert.equal(maps.backends.size, 2, "the drained backend keeps its slot for tracked flows");
});

Deno.test("programmer: a shrinking table lowers table_size before the smaller table goes in", () => {
  const many = Array.from({ length: 12 }, (_, i) => be(`198.18.1.${i + 10}`));
  const { maps, p } = setup(table("gw", [{ backends: many }]));
  assert.equal(maps.services.get(F)!.entry.tableSize, 4093);
  p.apply(desired(maps, table("gw", [{ backends: many.slice(0, 2) }])));
  assert.deepEqual(maps.ops.slice(0, 2), [`putService ${F}`, "writeMaglevs 1"]);
  assert.equal(maps.services.get(F)!.entry.tableSize, 1021);
});

Deno.test("programmer: a removed service stops matching before its table and backends go", () => {
  const { maps, p } = setup(table("gw", [{ backends: [be("198.18.1.2")] }]));
  p.apply(desired(maps));
  assert.deepEqual(maps.ops, [
    `deleteServiceEntry ${F}`,
    "deleteMaglevs 1",
    "clearBackends 1",
    "deleteVipMarker 198.18.100.1",
  ]);
});

Deno.test("programmer: a restarted agent adopts the maps and rewrites nothing that is unchanged", () => {
  const t = table("gw", [{ backends: [be("198.18.1.2"), be("198.18.1.3", 0)] }]);
  const { maps } = setup(t);
  const again = new Programmer(maps);
  assert.deepEqual(again.adopt(), { services: 1, backends: 2, orphans: 0 });
  again.apply(desired(maps, t));
  assert.deepEqual(maps.ops, []);
});

Deno.test("programmer: after a failed map write the state is re-read and the next apply converges", () => {
  const t1 = table("gw", [{ backends: [be("198.18.1.2")] }]);
  const { maps, p } = setup(t1);
  const t2 = table("gw", [{ backends: [be("198.18.1.2"), be("198.18.1.3")] }]);
  maps.failOn = "writeMaglevs";
  assert.throws(() => p.apply(desired(maps, t2)), /injected failure/);
  p.apply(desired(maps, t2));
  assert.deepEqual(maps.tableTargets(F), ["198.18.1.2", "198.18.1.3"]);
  assert.equal(maps.backends.size, 2);
});

Deno.test("programmer: a backend id freed by one service is not handed to another in the same change", () => {
  // Service :80 loses 198.18.1.3 while :81 gains 198.18.1.9 in one apply. Were the freed id
  // reused for :81's new backend, its slot would be overwritten while :80's table still names
  // it, and then cleared under :81.
  const a = { port: 80, backends: [be("198.18.1.2"), be("198.18.1.3")] };
  const b = { port: 81, backends: [be("198.18.1.8")] };
  const { maps, p } = setup(table("gw", [a, b]));
  p.apply(desired(
    maps,
    table("gw", [{ ...a, backends: [be("198.18.1.2")] }, {
      ...b,
      backends: [be("198.18.1.8"), be("198.18.1.9")],
    }]),
  ));
  assert.deepEqual(maps.tableTargets(F), ["198.18.1.2"]);
  assert.deepEqual(maps.tableTargets("198.18.100.1:81/TCP"), ["198.18.1.8", "198.18.1.9"]);
  const ids = [...maps.backends.values()].map((s) => `${s.id}=${s.addr}`).sort();
  assert.equal(ids.length, 3, `backend slots: ${ids.join(" ")}`);
});

/** What the maps hold, without ids: per frontend its flags and where its table sends flows. */
function mapsView(maps: FakeMaps) {
  const services = [...maps.services.keys()].sort().map((f) => {
    const { entry } = maps.services.get(f)!;
    const owned = [...maps.backends.values()].filter((b) => b.serviceId === entry.id);
    return {
      f,
      keep: entry.keepClientAddress,
      size: entry.tableSize,
      fingerprintless: maps.tableTargets(f),
      slots: owned.map((b) => `${b.addr}:${b.port}${b.remote ? " remote" : ""}`).sort(),
    };
  });
  return { services, vips: [...maps.vips].sort(), backends: maps.backends.size };
}

/** `t` with one backend's weight (or an entry's reject weight) changed, as generation `generation`. */
function oneBackendEdited(r: () => number, t: RoutingTable, generation: number): RoutingTable {
  const next = structuredClone(t);
  next.metadata.generation = generation;
  const e = next.spec.entries[Math.floor(r() * next.spec.entries.length)];
  const b = e?.backends[Math.floor(r() * e.backends.length)];
  if (b) b.weight = (b.weight + 1) % 3;
  else if (e) e.rejectWeight = 1 - e.rejectWeight;
  return next;
}

Deno.test("programmer: a state that lists its changes is planned over them and writes the maps as a full diff does", () => {
  for (const seed of [11, 12, 13, 14]) {
    const r = rng(seed);
    const cap = { serviceIds: 16, serviceKeys: 32, backendIds: 64, conntrack: 1000 };
    const incr = new FakeMaps();
    const full = new FakeMaps();
    incr.cap = full.cap = cap;
    const pi = new Programmer(incr);
    const pf = new Programmer(full);
    pi.adopt();
    pf.adopt();
    const tracker = new DesiredStateTracker();
    const tables = new Map<string, unknown>();
    const raws = new Map<string, RoutingTable>();
    const last = new Map<string, LastProgrammed>();
    let partial = 0;
    let reused = 0;
    let prev: DesiredState | undefined;
    for (let step = 0; step < 200; step++) {
      const name = "abcde"[Math.floor(r() * 5)]!;
      const before = raws.get(name);
      if (r() < 0.15) {
        tables.delete(name);
        raws.delete(name);
      } else {
        // Half the edits change one backend of one entry: the others keep their service objects.
        const raw = before && r() < 0.5
          ? oneBackendEdited(r, before, step + 1)
          : randomTable(r, name, step + 1);
        raws.set(name, raw);
        tables.set(name, compactTable(raw, "node-1"));
      }
      const list = [...tables.values()];
      const options = (programmed: Programmer) => ({
        node: "node-1",
        lastProgrammed: last,
        programmedFrontends: new Set(programmed.services.keys()),
        capacity: cap,
      });
      const kept = new Set(prev?.byTable.get(`default/${name}`) ?? []);
      let d = tracker.compute(list, options(pi));
      if (pi.plan(d).partial) partial++;
      if (d.byTable.get(`default/${name}`)?.some((s) => kept.has(s))) reused++;
      const failing = r() < 0.05;
      if (failing) {
        incr.failOn = r() < 0.5 ? "writeMaglevs" : "writeBackends";
        try {
          pi.apply(d);
        } catch {
          d = tracker.compute(list, options(pi)); // as the agent's retry: from the maps re-read
        }
        incr.failOn = undefined;
      }
      const si = pi.apply(d);
      const sf = pf.apply(computeDesiredState(list, options(pf)));
      const where = `(seed ${seed}, step ${step})`;
      assert.deepEqual(mapsView(incr), mapsView(full), `maps differ ${where}`);
      // (a failed apply did part of the work: its retry does less)
      if (!failing) assert.deepEqual(si, sf, `stats differ ${where}`);
      assert.deepEqual([...pi.services.keys()].sort(), [...pf.services.keys()].sort());
      const names = new Set<string>();
      for (const t of d.tables) {
        const key = `${t.namespace}/${t.name}`;
        names.add(key);
        if (t.result === "programmed" || t.result === "conflict") {
          last.set(key, { generation: t.generation, services: d.byTable.get(key) ?? [] });
        }
      }
      for (const key of [...last.keys()]) if (!names.has(key)) last.delete(key);
      prev = d;
    }
    assert.ok(partial > 30, `seed ${seed}: only ${partial} plans over a change list`);
    assert.ok(reused > 10, `seed ${seed}: only ${reused} edits kept service objects`);
  }
});
