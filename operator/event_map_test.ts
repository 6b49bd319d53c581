import assert from "node:assert/strict";
import { gatewaysForEvent } from "./event_map.ts";
import { createSnapshot, type SnapshotObject } from "./snapshot.ts";
import {
  blixtClass,
  dataplaneNode,
  endpointSlice,
  gateway,
  listener,
  namespace,
  node,
  referenceGrant,
  route,
  service,
} from "./_test_objects.ts";

const world: SnapshotObject[] = [
  ...blixtClass(),
  gateway("a", [listener("tcp", 5000)]),
  gateway("b", [
    listener("tcp", 5000, "TCP", {
      namespaces: { from: "Selector", selector: { matchLabels: { x: "y" } } },
    }),
  ]),
  route("TCPRoute", "to-a", [{ name: "a" }], [{ name: "web", port: 80 }]),
  route("TCPRoute", "to-b", [{ name: "b", namespace: "default" }], [{
    name: "far",
    namespace: "other",
    port: 80,
  }], { namespace: "team" }),
  service("web", [{ port: 80 }]),
];
const snapshot = createSnapshot(world);

Deno.test("each kind of event wakes exactly the Gateways it can affect", () => {
  const t = (name: string, programmedGeneration: number) => ({
    namespace: "default",
    name,
    programmedGeneration,
  });
  const moved = route("TCPRoute", "to-a", [{ name: "b" }], [{
    name: "web",
    port: 80,
  }]);
  const cases: [
    string,
    { old?: SnapshotObject; new?: SnapshotObject },
    string[],
  ][] = [
    ["a new Gateway: every Gateway (it may take an address)", {
      new: gateway("c", [listener("tcp", 5000)]),
    }, ["default/a", "default/b", "default/c"]],
    ["a Gateway's conditions only: that Gateway", {
      old: world[2] as SnapshotObject,
      new: gateway("a", [listener("tcp", 5000)], {
        status: { conditions: [], listeners: [] },
      }),
    }, ["default/a"]],
    ["a Gateway's assigned address: every Gateway", {
      old: world[2] as SnapshotObject,
      new: gateway("a", [listener("tcp", 5000)], {
        status: { addresses: [{ type: "IPAddress", value: "198.18.0.1" }] },
      }),
    }, ["default/a", "default/b"]],
    ["a route: its parents", { new: world[4] as SnapshotObject }, [
      "default/a",
    ]],
    ["a route moving between Gateways: both", {
      old: world[4] as SnapshotObject,
      new: moved,
    }, ["default/a", "default/b"]],
    ["a Service: Gateways of routes using it", {
      new: service("web", [{ port: 81 }]),
    }, ["default/a"]],
    [
      "an unrelated Service: none",
      { new: service("db", [{ port: 5432 }]) },
      [],
    ],
    ["an EndpointSlice: through its Service", {
      new: endpointSlice("web", [{ port: 80 }], []),
    }, ["default/a"]],
    ["a ReferenceGrant: Gateways of routes referring into its namespace", {
      new: referenceGrant("other", "TCPRoute", "team"),
    }, ["default/b"]],
    ["a Namespace: selector listeners and routes in it", {
      new: namespace("team", { x: "y" }),
    }, ["default/b"]],
    ["a Node turning ready: every Gateway", {
      old: node("n1", false),
      new: node("n1", true),
    }, ["default/a", "default/b"]],
    ["a Node update without readiness change: none", {
      old: node("n1"),
      new: node("n1"),
    }, []],
    ["a DataplaneNode programming a table: that Gateway", {
      old: dataplaneNode("n1", [t("a", 1), t("b", 1)]),
      new: dataplaneNode("n1", [t("a", 2), t("b", 1)]),
    }, ["default/a"]],
    ["a DataplaneNode reporting an error for a table: that Gateway", {
      old: dataplaneNode("n1", [t("a", 1), t("b", 1)]),
      new: dataplaneNode("n1", [{ ...t("a", 1), errors: ["map full"] }, t("b", 1)]),
    }, ["default/a"]],
    ["a DataplaneNode counters update: none", {
      old: dataplaneNode("n1", [t("a", 1)]),
      new: dataplaneNode("n1", [t("a", 1)]),
    }, []],
    ["a DataplaneNode whose features change (an agent up- or downgraded): every Gateway", {
      old: dataplaneNode("n1", [t("a", 1)]),
      new: withFeatures(dataplaneNode("n1", [t("a", 1)]), ["backendsFrom"]),
    }, ["default/a", "default/b"]],
    ["a new DataplaneNode: every Gateway", { new: dataplaneNode("n2", []) }, [
      "default/a",
      "default/b",
    ]],
    ["the GatewayClass: its Gateways", { new: world[0] as SnapshotObject }, [
      "default/a",
      "default/b",
    ]],
    ["the class config: Gateways of classes using it", {
      new: world[1] as SnapshotObject,
    }, ["default/a", "default/b"]],
  ];
  for (const [what, event, want] of cases) {
    assert.deepEqual(gatewaysForEvent(event, snapshot), want, what);
  }
});

function withFeatures(o: SnapshotObject, features: string[]): SnapshotObject {
  const n = o as { status?: Record<string, unknown> };
  return { ...o, status: { ...n.status, features } } as SnapshotObject;
}

Deno.test("a DataplaneNode of thousands of tables wakes exactly the tables whose generation, errors or presence changed", () => {
  const tables = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      namespace: "ns",
      name: `gw-${String(i).padStart(5, "0")}`,
      programmedGeneration: 1,
    }));
  const old = tables(5000);
  const changed = tables(5000).slice(1); // gw-00000 gone
  changed[10] = { ...changed[10]!, programmedGeneration: 2 }; // gw-00011 programmed anew
  changed[20] = { ...changed[20]!, programmedGeneration: 1 }; // same: wakes nobody
  const withError = { ...changed[30]!, errors: ["map full"] }; // gw-00031 failing
  changed[30] = withError;
  changed.push({ namespace: "ns", name: "gw-new", programmedGeneration: 1 }); // a new table
  assert.deepEqual(
    gatewaysForEvent(
      { old: dataplaneNode("n1", old), new: dataplaneNode("n1", changed) },
      snapshot,
    ),
    ["ns/gw-00000", "ns/gw-00011", "ns/gw-00031", "ns/gw-new"],
  );
});
