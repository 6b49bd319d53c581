import assert from "node:assert/strict";
import { be, FakeMaps, table } from "./_testing.ts";
import { computeDesiredState } from "./desired_state.ts";
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
