import assert from "node:assert/strict";
import type { DataplaneNode, RoutingTable } from "../api/mod.ts";
import { reconcile } from "./gateway.ts";
import { summarizeDataplaneNode } from "./resources.ts";
import { createSnapshot, type SnapshotObject } from "./snapshot.ts";
import {
  agentLease,
  blixtClass,
  dataplaneNode,
  gateway,
  listener,
  node,
  NOW,
} from "./_test_objects.ts";

/** `dataplaneNode(name, tables)` with what an agent also reports: counters, map usage, features, conditions. */
function reportedNode(
  name: string,
  tables: Parameters<typeof dataplaneNode>[1],
  features: string[] = [],
): DataplaneNode {
  const dn = dataplaneNode(name, tables);
  return {
    ...dn,
    status: {
      ...dn.status,
      conditions: [{
        type: "Ready",
        status: "True",
        reason: "Programmed",
        message: "",
        lastTransitionTime: NOW,
      }],
      lastSyncTime: NOW,
      features,
      maps: [{ name: "backends", entries: 2, capacity: 65536 }],
      counters: {
        collectedAt: NOW,
        services: [{
          address: "198.18.0.10",
          port: 5000,
          protocol: "TCP",
          packets: 10,
          bytes: 1000,
          newFlows: 2,
          rejectedFlows: 0,
          backends: [{ ip: "198.19.0.2", port: 80, packets: 10, bytes: 1000, newFlows: 2 }],
        }],
      },
    },
  };
}

Deno.test("the operator's DataplaneNode keeps tables, features and conditions, without counters, map usage or sync time", () => {
  const full = reportedNode("n1", [{ namespace: "default", name: "gw", programmedGeneration: 3 }], [
    "endpoints",
  ]);
  const kept = summarizeDataplaneNode(full);
  assert.deepEqual(kept.status, {
    tables: full.status!.tables,
    conditions: full.status!.conditions,
    features: ["endpoints"],
  });
  assert.deepEqual(kept.metadata, full.metadata);
  assert.deepEqual(kept.spec, full.spec);
  assert.deepEqual(summarizeDataplaneNode(kept), kept, "idempotent");
});

Deno.test("Programmed reads the same from kept DataplaneNodes as from whole ones", () => {
  const base: SnapshotObject[] = [
    ...blixtClass(),
    gateway("gw", [listener("tcp", 5000, "TCP")], { addresses: [{ value: "198.18.0.10" }] }),
  ];
  const built = reconcile("default/gw", createSnapshot(base), { now: NOW }).table;
  assert.equal(built.action, "apply");
  const table: RoutingTable = {
    ...(built as { table: RoutingTable }).table,
    metadata: { name: "gw", namespace: "default", generation: 3 },
  };
  const t = (programmedGeneration: number, errors?: string[]) => ({
    namespace: "default",
    name: "gw",
    programmedGeneration,
    ...(errors ? { errors } : {}),
  });
  const cases: [string, DataplaneNode[], string][] = [
    ["every node current", [reportedNode("n1", [t(3)]), reportedNode("n2", [t(3)])], "True"],
    ["a node behind", [reportedNode("n1", [t(3)]), reportedNode("n2", [t(2)])], "False"],
    [
      "a node's error",
      [reportedNode("n1", [t(3)]), reportedNode("n2", [t(2, ["map full"])])],
      "False/Pending.*n2: generation 2 of 3 \\(map full\\)",
    ],
  ];
  for (const [what, nodes, programmed] of cases) {
    const world = (dns: DataplaneNode[]) =>
      createSnapshot([
        ...base,
        table,
        ...dns.flatMap((dn) => [node(dn.metadata.name!), dn, agentLease(dn.metadata.name!)]),
      ]);
    const whole = reconcile("default/gw", world(nodes), { now: NOW });
    const kept = reconcile("default/gw", world(nodes.map(summarizeDataplaneNode)), { now: NOW });
    assert.deepEqual(kept, whole, what);
    const condition = kept.status?.conditions.find((c) => c.type === "Programmed");
    assert.match(
      `Programmed=${condition?.status}/${condition?.reason} ${condition?.message}`,
      new RegExp(`^Programmed=${programmed}`),
      what,
    );
  }
});
