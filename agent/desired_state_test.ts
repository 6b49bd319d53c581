import assert from "node:assert/strict";
import { formatEndpoint } from "../api/mod.ts";
import { be, table } from "./_testing.ts";
import type { RoutingTable } from "../api/mod.ts";
import { compactTable, computeDesiredState, type DesiredStateOptions } from "./desired_state.ts";

const CAP = { serviceIds: 100, serviceKeys: 200, backendIds: 1000, conntrack: 1000 };

function options(extra: Partial<DesiredStateOptions> = {}): DesiredStateOptions {
  return {
    node: "node-1",
    lastProgrammed: new Map(),
    programmedFrontends: new Set(),
    capacity: CAP,
    ...extra,
  };
}

Deno.test("desired state: every entry of a valid table becomes a service; other nodes' backends are remote", () => {
  const t = table("gw", [{
    backends: [be("198.18.1.2", 1, { node: "node-1" }), be("198.18.2.2", 3, { node: "node-2" })],
    rejectWeight: 1,
  }]);
  const d = computeDesiredState([t], options());
  assert.deepEqual([...d.services.keys()], ["198.18.100.1:80/TCP"]);
  const s = d.services.get("198.18.100.1:80/TCP")!;
  assert.deepEqual(s.backends, [
    { addr: "198.18.1.2", port: 8080, weight: 1, remote: false },
    { addr: "198.18.2.2", port: 8080, weight: 3, remote: true },
  ]);
  assert.equal(s.rejectWeight, 1);
  assert.deepEqual(d.tables, [{
    namespace: "default",
    name: "gw",
    generation: 1,
    result: "programmed",
    errors: [],
    entries: 1,
    backends: 2,
  }]);
});

Deno.test("desired state: a local-only table keeps the client address and this node's backends", () => {
  const t = table("gw", [{
    backends: [be("198.18.1.2", 1, { node: "node-1" }), be("198.18.2.2", 1, { node: "node-2" })],
  }], { localBackendsOnly: true });
  const s = computeDesiredState([t], options()).services.get("198.18.100.1:80/TCP")!;
  assert.equal(s.keepClientAddress, true);
  assert.deepEqual(s.backends.map((b) => b.addr), ["198.18.1.2"]);
});

Deno.test("desired state: an invalid table is reported with field paths and keeps its last programming", () => {
  const good = table("gw", [{ backends: [be("198.18.1.2")] }], { generation: 1 });
  const last = computeDesiredState([good], options());
  const bad = table("gw", [{ backends: [be("198.18.1.2", 1, { state: "Serving" })] }], {
    generation: 2,
  });
  const d = computeDesiredState(
    [bad],
    options({
      lastProgrammed: new Map([["default/gw", {
        generation: 1,
        services: [...last.services.values()],
      }]]),
    }),
  );
  assert.equal(d.tables[0]!.result, "invalid");
  assert.match(d.tables[0]!.errors[0]!, /spec\.entries\[0\]\.backends\[0\]\.weight: must be 0/);
  assert.deepEqual(d.services.get("198.18.100.1:80/TCP")!.backends.map((b) => b.addr), [
    "198.18.1.2",
  ]);
});

Deno.test("desired state: after a restart, an invalid table keeps what the maps hold for its addresses", () => {
  const bad = table("gw", [{ port: 0 }]);
  const d = computeDesiredState(
    [bad],
    options({ programmedFrontends: new Set(["198.18.100.1:80/TCP", "198.18.100.9:80/TCP"]) }),
  );
  assert.deepEqual([...d.keep], ["198.18.100.1:80/TCP"]);
  assert.equal(d.services.size, 0);
});

Deno.test("desired state: a frontend claimed by two tables is programmed for neither and reported on both", () => {
  const a = table("a", [{ port: 80, backends: [be("198.18.1.2")] }, {
    port: 81,
    backends: [be("198.18.1.3")],
  }]);
  const b = table("b", [{ port: 80, backends: [be("198.18.1.4")] }]);
  const d = computeDesiredState([b, a], options());
  assert.deepEqual([...d.services.keys()], ["198.18.100.1:81/TCP"]);
  assert.deepEqual(d.tables.map((t) => [t.name, t.result, t.errors]), [
    ["a", "conflict", ["frontend 198.18.100.1:80/TCP is also claimed by default/b"]],
    ["b", "conflict", ["frontend 198.18.100.1:80/TCP is also claimed by default/a"]],
  ]);
});

Deno.test("desired state: a table that does not fit is reported and its last programming stays", () => {
  const small = table("a", [{ backends: [be("198.18.1.2")] }]);
  const last = computeDesiredState([small], options());
  const big = table("a", [{
    backends: Array.from({ length: 20 }, (_, i) => be(`198.18.1.${i + 10}`)),
  }], { generation: 2 });
  const d = computeDesiredState(
    [big],
    options({
      capacity: { ...CAP, backendIds: 10 },
      lastProgrammed: new Map([["default/a", {
        generation: 1,
        services: [...last.services.values()],
      }]]),
    }),
  );
  assert.equal(d.tables[0]!.result, "capacity");
  assert.match(d.tables[0]!.errors[0]!, /does not fit: 1 services, 20 backends/);
  assert.equal(d.services.get("198.18.100.1:80/TCP")!.backends.length, 1);
});

Deno.test("desired state: an entry with backendsFrom is programmed with the referenced entry's backends", () => {
  const backends = [
    be("198.18.1.2", 1, { node: "node-1" }),
    be("198.18.2.2", 3, { node: "node-2" }),
  ];
  const shared = table("gw", [
    { backends, rejectWeight: 1 },
    { port: 81, backendsFrom: "198.18.100.1:80/TCP", rejectWeight: 2 },
  ]);
  const full = table("gw", [
    { backends, rejectWeight: 1 },
    { port: 81, backends, rejectWeight: 2 },
  ]);
  const a = computeDesiredState([shared], options());
  const b = computeDesiredState([full], options());
  assert.deepEqual([...a.services.entries()], [...b.services.entries()]);
  assert.equal(a.services.get("198.18.100.1:81/TCP")!.backends.length, 2);
  assert.equal(a.services.get("198.18.100.1:81/TCP")!.rejectWeight, 2);
  assert.deepEqual(a.tables, b.tables);
});

Deno.test("desired state: an entry with endpoint strings is programmed as with backend objects", () => {
  const backends = [
    be("198.18.1.2", 1, { node: "node-1" }),
    be("198.18.2.2", 3, { node: "node-2" }),
  ];
  const endpoints = backends.map((b) => formatEndpoint(b)!);
  const compact = table("gw", [{ backends: [], endpoints, rejectWeight: 1 }]);
  const full = table("gw", [{ backends, rejectWeight: 1 }]);
  const a = computeDesiredState([compact], options());
  const b = computeDesiredState([full], options());
  assert.deepEqual([...a.services.entries()], [...b.services.entries()]);
  assert.equal(a.services.get("198.18.100.1:80/TCP")!.backends.length, 2);
  assert.deepEqual(a.tables, b.tables);
  const bad = table("gw", [{ backends: [], endpoints: ["198.18.1.2:0 1 Ready"], rejectWeight: 1 }]);
  const c = computeDesiredState([bad], options());
  assert.equal(c.tables[0]!.result, "invalid");
  assert.match(c.tables[0]!.errors.join("\n"), /endpoints\[0\]/);
});

/** A table of four entries with endpoint strings, as the operator writes them. */
function stringsTable(weight = 1, resourceVersion = "1"): RoutingTable {
  const t = table(
    "gw",
    [0, 1, 2, 3].map((e) => ({
      port: 80 + e,
      listener: `l${e}`,
      backends: [],
      endpoints: [
        `198.18.1.${2 + e}:8080 ${e === 0 ? weight : 1} Ready node-1`,
        `198.18.2.2:8080 1 Ready node-2`,
      ],
    })),
  );
  t.metadata.resourceVersion = resourceVersion;
  return t;
}

/** A first version of stringsTable() that changed once: it keeps its entries' texts. */
function changedOnce(): ReturnType<typeof compactTable> {
  const first = compactTable(wire(stringsTable(1, "1")), "node-1");
  return compactTable(wire(stringsTable(1, "2")), "node-1", { previous: first });
}

/** `t` through JSON, as a watch delivers it: no object shared with the version before. */
function wire(t: RoutingTable): RoutingTable {
  return JSON.parse(JSON.stringify(t));
}

Deno.test("desired state: a table's next version parsed from the one before equals one parsed afresh", () => {
  const edits: [string, (t: RoutingTable) => void][] = [
    [
      "one weight changed",
      (t) => t.spec.entries[0]!.endpoints![0] = "198.18.1.2:8080 7 Ready node-1",
    ],
    ["nothing changed", () => {}],
    ["an entry added", (t) => t.spec.entries.push({ ...t.spec.entries[3]!, port: 99 })],
    ["an entry removed", (t) => t.spec.entries.splice(1, 1)],
    ["entries reordered", (t) => t.spec.entries.reverse()],
    ["local backends only", (t) => t.spec.localBackendsOnly = true],
    ["an endpoint that does not parse", (t) => t.spec.entries[2]!.endpoints![1] = "198.18.2.2:0 1"],
    [
      "a weight out of range",
      (t) => t.spec.entries[1]!.endpoints![0] = "198.18.1.3:8080 9999999 Ready",
    ],
    ["a duplicate frontend", (t) => t.spec.entries[3]!.port = 80],
    ["a duplicate of an unchanged entry", (t) => t.spec.entries.push(t.spec.entries[1]!)],
    ["an unchanged entry's address no longer listed", (t) => t.spec.addresses = ["198.18.100.2"]],
    ["an address added", (t) => t.spec.addresses.push("198.18.100.2")],
    ["backendsFrom", (t) => {
      t.spec.entries[1] = {
        ...t.spec.entries[1]!,
        endpoints: [],
        backendsFrom: "198.18.100.1:80/TCP",
      };
      delete t.spec.entries[1]!.endpoints;
    }],
    ["a bad backendsFrom", (t) => {
      t.spec.entries[1] = { ...t.spec.entries[1]!, backendsFrom: "198.18.100.1:1/TCP" };
    }],
    ["an entry that is no object", (t) => (t.spec.entries as unknown[])[2] = "x"],
    ["entries no list", (t) => (t.spec as unknown as { entries: unknown }).entries = {}],
    ["a bad kind", (t) => (t as { kind: string }).kind = "Gateway"],
  ];
  for (const [what, edit] of edits) {
    const before = changedOnce();
    const next = wire(stringsTable(1, "3"));
    edit(next);
    const reused = computeDesiredState(
      [compactTable(wire(next), "node-1", { previous: before })],
      options(),
    );
    const fresh = computeDesiredState([compactTable(wire(next), "node-1")], options());
    assert.deepEqual(reused.tables, fresh.tables, what);
    assert.deepEqual([...reused.services.entries()], [...fresh.services.entries()], what);
  }
});

Deno.test("desired state: an entry changed to something invalid is reported as a full validation does", () => {
  const before = changedOnce();
  const next = wire(stringsTable(1, "3"));
  next.spec.entries[2]!.endpoints![0] = "198.18.1.4:8080 1 Rdy node-1";
  const got = computeDesiredState([compactTable(next, "node-1", { previous: before })], options());
  assert.equal(got.tables[0]!.result, "invalid");
  assert.match(got.tables[0]!.errors.join("\n"), /spec\.entries\[2\]\.endpoints\[0\]\.state/);
});

Deno.test("desired state: a table's unchanged entries are the services of its version before", () => {
  const v1 = changedOnce();
  const v2 = compactTable(wire(stringsTable(2, "3")), "node-1", { previous: v1 });
  const a = computeDesiredState([v1], options());
  const b = computeDesiredState([v2], options());
  const f = (p: number) => `198.18.100.1:${p}/TCP`;
  assert.notEqual(b.services.get(f(80)), a.services.get(f(80)));
  assert.equal(b.services.get(f(80))!.backends.find((x) => x.addr === "198.18.1.2")!.weight, 2);
  for (const p of [81, 82, 83]) assert.equal(b.services.get(f(p)), a.services.get(f(p)));
  // and from that version on: v3 reuses v2's
  const v3 = compactTable(wire(stringsTable(3, "4")), "node-1", { previous: v2 });
  const c = computeDesiredState([v3], options());
  for (const p of [81, 82, 83]) assert.equal(c.services.get(f(p)), a.services.get(f(p)));
});

Deno.test("desired state: a table listed or re-listed unchanged keeps no entry texts", () => {
  const listed = compactTable(wire(stringsTable(1, "1")), "node-1");
  const relisted = compactTable(wire(stringsTable(1, "1")), "node-1", { previous: listed });
  const f = "198.18.100.1:81/TCP";
  // each parsed on its own: no service object of the one before
  const a = computeDesiredState([listed], options()).services.get(f);
  const b = computeDesiredState([relisted], options()).services.get(f);
  assert.notEqual(a, b);
  assert.deepEqual(a, b);
  // a change after it is parsed whole, and from then on the table keeps its texts
  const changed = compactTable(wire(stringsTable(2, "2")), "node-1", { previous: relisted });
  const next = compactTable(wire(stringsTable(3, "3")), "node-1", { previous: changed });
  assert.equal(
    computeDesiredState([next], options()).services.get(f),
    computeDesiredState([changed], options()).services.get(f),
  );
});

Deno.test("desired state: the same endpoint twice is one backend, with the first one's weight", () => {
  const t = table("gw", [{
    backends: [
      be("198.18.1.9", 5),
      be("198.18.1.2", 3),
      be("198.18.1.9", 7),
      be("198.18.1.2", 4),
      be("198.18.1.2", 1, { port: 9090 }),
      be("198.18.1.2", 6),
    ],
  }]);
  const s = computeDesiredState([t], options()).services.get("198.18.100.1:80/TCP")!;
  assert.deepEqual(s.backends.map((b) => `${b.addr}:${b.port} ${b.weight}`), [
    "198.18.1.2:8080 3",
    "198.18.1.2:9090 1",
    "198.18.1.9:8080 5",
  ]);
});
