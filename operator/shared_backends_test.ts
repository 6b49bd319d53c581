import assert from "node:assert/strict";
import {
  type DataplaneNode,
  type RoutingTable,
  type RoutingTableEntry,
  validateRoutingTable,
} from "../api/mod.ts";
import {
  agentsShareBackends,
  backendsAsStrings,
  compactEntries,
  shareBackends,
  specToWrite,
  type WrittenSpec,
} from "./shared_backends.ts";

const web = { namespace: "shop", name: "web", port: 80 };
const five = [1, 2, 3, 4, 5].map((i) => ({
  ip: `198.19.0.${i}`,
  port: 8080,
  weight: 200000,
  state: "Ready" as const,
}));

function entry(port: number, extra: Partial<RoutingTableEntry> = {}): RoutingTableEntry {
  return {
    address: "198.18.0.1",
    port,
    protocol: "TCP",
    listener: `l${port}`,
    route: { kind: "TCPRoute", namespace: "shop", name: `r${port}` },
    service: web,
    backends: five.map((b) => ({ ...b })),
    rejectWeight: 0,
    ...extra,
  };
}

function spec(entries: RoutingTableEntry[]) {
  return { addresses: ["198.18.0.1"], entries };
}

function node(name: string, features?: string[]): DataplaneNode {
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "DataplaneNode",
    metadata: { name },
    spec: { nodeName: name },
    status: features ? { features } : {},
  };
}

Deno.test("entries repeating an earlier entry's Service and backends refer to the first one", () => {
  const s = spec([entry(80), entry(81, { rejectWeight: 7 }), entry(82)]);
  const shared = shareBackends(s);
  assert.deepEqual(shared.entries.map((e) => [e.backendsFrom, e.backends.length, e.service]), [
    [undefined, 5, web],
    ["198.18.0.1:80/TCP", 0, undefined],
    ["198.18.0.1:80/TCP", 0, undefined],
  ]);
  assert.equal(shared.entries[1]!.rejectWeight, 7);
  assert.deepEqual(shared.entries[1]!.route, s.entries[1]!.route);
  assert.equal(s.entries[1]!.backends.length, 5, "the input is not changed");
});

Deno.test("sharing is deterministic and what the validator expands back to the built table", () => {
  const s = spec([entry(80), entry(81), entry(82, { service: { ...web, port: 81 } }), entry(83)]);
  assert.deepEqual(shareBackends(s), shareBackends(structuredClone(s)));
  const table: RoutingTable = {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: { name: "gw", namespace: "shop" },
    spec: shareBackends(s),
  };
  const v = validateRoutingTable(table);
  assert.ok(v.ok, JSON.stringify(v));
  const expanded = v.value.spec.entries.map(({ backendsFrom: _, ...e }) => e);
  assert.deepEqual(expanded, s.entries);
  // another Service (port) is not shared; the fourth refers to the first
  assert.deepEqual(shareBackends(s).entries.map((e) => e.backendsFrom), [
    undefined,
    "198.18.0.1:80/TCP",
    undefined,
    "198.18.0.1:80/TCP",
  ]);
});

Deno.test("entries without backends or with different ones stay as they are", () => {
  const other = five.map((b, i) => ({ ...b, weight: i === 0 ? 0 : b.weight }));
  const s = spec([
    entry(80, { backends: [] }),
    entry(81, { backends: [] }),
    entry(82, {
      backends: other,
    }),
    entry(83),
  ]);
  assert.equal(shareBackends(s), s);
});

Deno.test("backends are shared only when every DataplaneNode lists backendsFrom, and one exists", () => {
  const s = spec([entry(80), entry(81)]);
  const nodes = (...n: DataplaneNode[]) => new Map(n.map((x) => [x.metadata.name, x]));
  assert.equal(agentsShareBackends(nodes()), false, "no agent yet");
  assert.equal(agentsShareBackends(nodes(node("a", ["backendsFrom"]), node("b"))), false);
  assert.equal(agentsShareBackends(nodes(node("a", ["backendsFrom"]), node("b", []))), false);
  assert.equal(
    agentsShareBackends(nodes(node("a", ["backendsFrom"]), node("b", ["x", "backendsFrom"]))),
    true,
  );
  assert.equal(specToWrite(s, nodes(node("a"))), s);
  assert.equal(
    specToWrite(s, nodes(node("a", ["backendsFrom"]))).entries[1]!.backendsFrom,
    "198.18.0.1:80/TCP",
  );
});

Deno.test("backends are written as strings when every DataplaneNode lists endpoints", () => {
  const s = spec([entry(80), entry(81), entry(82, { backends: [] })]);
  const nodes = (...n: DataplaneNode[]) => new Map(n.map((x) => [x.metadata.name, x]));
  assert.equal(specToWrite(s, nodes(node("a", ["endpoints"]), node("b", ["backendsFrom"]))), s);
  assert.equal(specToWrite(s, nodes()), s, "no agent yet");
  const both = specToWrite(s, nodes(node("a", ["backendsFrom", "endpoints"])));
  assert.deepEqual(both.entries.map((e) => [e.backendsFrom, e.endpoints?.length, e.backends]), [
    [undefined, 5, []],
    ["198.18.0.1:80/TCP", undefined, []],
    [undefined, undefined, []],
  ]);
  assert.equal(both.entries[0]!.endpoints![0], "198.19.0.1:8080 200000 Ready");
  const only = specToWrite(s, nodes(node("a", ["endpoints"])));
  assert.deepEqual(only.entries.map((e) => e.endpoints?.length), [5, 5, undefined]);
  // what the agents read is the complete table again
  const table = (sp: WrittenSpec) => ({
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: { name: "gw", namespace: "shop" },
    spec: sp,
  });
  for (const written of [both, only]) {
    const v = validateRoutingTable(table(written));
    assert.ok(v.ok, JSON.stringify(v));
    // backendsFrom is kept in the expanded entry, as the agents read it
    const expanded = v.value.spec.entries.map(({ backendsFrom: _, ...rest }) => rest);
    assert.deepEqual(expanded, s.entries);
  }
});

Deno.test("an entry with a backend of another Service stays complete", () => {
  const mixed = entry(80, {
    backends: [...five.slice(0, 4), {
      ...five[4]!,
      service: { namespace: "shop", name: "other", port: 81 },
    }],
  });
  const s = spec([mixed, entry(81)]);
  const written = backendsAsStrings(s);
  assert.equal(written.entries[0], mixed);
  assert.equal(written.entries[1]!.endpoints?.length, 5);
  assert.equal(backendsAsStrings(written), written, "already written as strings");
});

Deno.test("entries are written compact when every DataplaneNode lists compactEntries", () => {
  const s = spec([entry(80), entry(81), entry(82, { backends: [] }), entry(83)]);
  delete s.entries[3]!.route;
  const nodes = (...n: DataplaneNode[]) => new Map(n.map((x) => [x.metadata.name, x]));
  const all = ["backendsFrom", "endpoints", "compactEntries"];
  const older = specToWrite(s, nodes(node("a", all), node("b", ["backendsFrom", "endpoints"])));
  assert.ok(older.entries.every((e) => e.routeRef === undefined && e.serviceRef === undefined));
  assert.ok(
    older.entries.every((e) => Array.isArray(e.backends)),
    "objects while one node lacks it",
  );
  const written = specToWrite(s, nodes(node("a", all), node("b", ["x", ...all])));
  assert.deepEqual(
    written.entries.map((e) => [e.routeRef, e.serviceRef, e.backendsFrom, e.backends]),
    [
      ["TCPRoute shop/r80", "shop/web:80", undefined, undefined],
      ["TCPRoute shop/r81", undefined, "198.18.0.1:80/TCP", []],
      ["TCPRoute shop/r82", "shop/web:80", undefined, []],
      [undefined, undefined, "198.18.0.1:80/TCP", []],
    ],
  );
  assert.ok(written.entries.every((e) => e.route === undefined && e.service === undefined));
  assert.equal(written.entries[0]!.endpoints?.length, 5);
  // each feature on its own: compact entries with backend objects
  const alone = specToWrite(s, nodes(node("a", ["compactEntries"])));
  assert.deepEqual(alone.entries[0]!.backends, s.entries[0]!.backends);
  assert.equal(alone.entries[0]!.routeRef, "TCPRoute shop/r80");
  // what the agents read is the complete table again
  for (const w of [written, alone]) {
    const v = validateRoutingTable(table(w));
    assert.ok(v.ok, JSON.stringify(v));
    const expanded = v.value.spec.entries.map(({ backendsFrom: _, ...rest }) => rest);
    assert.deepEqual(expanded, s.entries);
  }
  assert.equal(compactEntries(written), written, "already compact");
});

Deno.test("a route or Service with no string form stays an object", () => {
  const odd = entry(80, {
    route: { kind: "TCPRoute", namespace: "shop", name: "Web" },
    service: { namespace: "shop", name: "web.v2", port: 80 },
  });
  const written = compactEntries(spec([odd]));
  assert.equal(written.entries[0]!.route, odd.route);
  assert.equal(written.entries[0]!.service, odd.service);
  assert.equal(written.entries[0]!.routeRef, undefined);
  assert.equal(written.entries[0]!.serviceRef, undefined);
  assert.equal(written.entries[0]!.backends, odd.backends, "backends objects are kept");
});

function table(sp: WrittenSpec) {
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: { name: "gw", namespace: "shop" },
    spec: sp,
  };
}
