import assert from "node:assert/strict";
import {
  type Backend,
  backendService,
  expandRoutingTable,
  formatEndpoint,
  formatRouteRef,
  formatServiceRef,
  parseEndpoint,
  parseRouteRef,
  parseServiceRef,
  type RoutingTable,
  validateRoutingTable,
} from "./routing_table.ts";

const web = { namespace: "default", name: "web", port: 80 };
const other = { namespace: "default", name: "other", port: 8080 };

function table(entry: Record<string, unknown>): RoutingTable {
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: { name: "gw", namespace: "default" },
    spec: {
      addresses: ["198.18.0.10"],
      entries: [{
        address: "198.18.0.10",
        port: 80,
        protocol: "TCP",
        listener: "tcp",
        rejectWeight: 0,
        backends: [
          { ip: "198.19.0.1", port: 8080, weight: 500000, state: "Ready" },
          { ip: "198.19.0.2", port: 8080, weight: 500000, state: "Ready", service: other },
        ],
        ...entry,
      }],
    },
  };
}

Deno.test("a backend's Service is its own, else the entry's, else unknown", () => {
  const entry = table({ service: web }).spec.entries[0]!;
  assert.deepEqual(entry.backends.map((b) => backendService(entry, b)), [web, other]);
  const bare = table({}).spec.entries[0]!;
  assert.deepEqual(bare.backends.map((b) => backendService(bare, b)), [undefined, other]);
});

Deno.test("an entry's Service is validated like a backend's", () => {
  assert.equal(validateRoutingTable(table({ service: web })).ok, true);
  const bad = validateRoutingTable(table({ service: { namespace: "default", port: 0 } }));
  assert.equal(bad.ok, false);
  if (!bad.ok) {
    assert.deepEqual(bad.errors.map((e) => e.path).sort(), [
      "spec.entries[0].service.name",
      "spec.entries[0].service.port",
    ]);
  }
});

function shared(second: Record<string, unknown>, first: Record<string, unknown> = {}): unknown {
  const t = table({ service: web, ...first });
  const e0 = t.spec.entries[0]!;
  return {
    ...t,
    spec: {
      addresses: ["198.18.0.10", "2001:db8::10"],
      entries: [e0, {
        address: "198.18.0.10",
        port: 81,
        protocol: "TCP",
        listener: "tcp-81",
        rejectWeight: 250000,
        backends: [],
        backendsFrom: "198.18.0.10:80/TCP",
        ...second,
      }],
    },
  };
}

Deno.test("an entry with backendsFrom is returned with the referenced entry's backends and Service", () => {
  const result = validateRoutingTable(shared({}));
  assert.equal(result.ok, true);
  if (!result.ok) return;
  const [first, second] = result.value.spec.entries;
  // the same array, not a copy: a shared table costs a reader no memory
  assert.equal(second!.backends, first!.backends);
  assert.deepEqual(second!.service, web);
  assert.equal(second!.backendsFrom, "198.18.0.10:80/TCP");
  assert.equal(second!.rejectWeight, 250000, "rejectWeight stays the entry's own");
  assert.equal(first!.backendsFrom, undefined);
});

Deno.test("expandRoutingTable fills references and returns a table without any as it is", () => {
  const raw = shared({}) as RoutingTable;
  const expanded = expandRoutingTable(raw);
  assert.equal(expanded.spec.entries[1]!.backends, raw.spec.entries[0]!.backends);
  assert.deepEqual(raw.spec.entries[1]!.backends, [], "the input is not changed");
  const plain = table({});
  assert.equal(expandRoutingTable(plain), plain);
});

Deno.test("backendsFrom must name an entry of the table with backends of its own and its family", () => {
  const errors = (second: Record<string, unknown>, first: Record<string, unknown> = {}) => {
    const result = validateRoutingTable(shared(second, first));
    return result.ok ? [] : result.errors.map((e) => `${e.path}: ${e.message}`);
  };
  assert.deepEqual(errors({ backendsFrom: "198.18.0.10:82/TCP" }), [
    "spec.entries[1].backendsFrom: no entry 198.18.0.10:82/TCP in this table",
  ]);
  assert.deepEqual(errors({ backendsFrom: "198.18.0.10:81/TCP" }), [
    "spec.entries[1].backendsFrom: must name another entry",
  ]);
  assert.deepEqual(
    errors({}, { backendsFrom: "198.18.0.10:81/TCP", backends: [], service: undefined }),
    [
      "spec.entries[0].backendsFrom: spec.entries[1] has backendsFrom itself (no chains)",
      "spec.entries[1].backendsFrom: spec.entries[0] has backendsFrom itself (no chains)",
    ],
  );
  assert.deepEqual(errors({ address: "2001:db8::10" }), [
    "spec.entries[1].backendsFrom: spec.entries[0] is of another address family",
  ]);
  assert.deepEqual(
    errors({ backends: [{ ip: "198.19.0.9", port: 80, weight: 0, state: "Ready" }] }),
    [
      "spec.entries[1].backends: must be empty with backendsFrom (the referenced entry's are used)",
    ],
  );
  assert.deepEqual(errors({ service: web }), [
    "spec.entries[1].service: must be absent with backendsFrom (the referenced entry's is used)",
  ]);
  assert.deepEqual(errors({ backendsFrom: "" }), [
    "spec.entries[1].backendsFrom: must have at least 1 characters",
    "spec.entries[1].backendsFrom: no entry  in this table",
  ]);
});

/** A table whose entry lists `endpoints` (and `backends` as given, by default none). */
function compact(endpoints: unknown, extra: Record<string, unknown> = {}): unknown {
  const t = table({ service: web, backends: [], endpoints, ...extra });
  return { ...t, spec: { ...t.spec, addresses: ["198.18.0.10", "2001:db8::10"] } };
}

Deno.test("endpoint strings are parsed into backends, and formatting them round-trips", () => {
  const backends: Backend[] = [
    { ip: "198.19.0.1", port: 8080, weight: 500000, state: "Ready", node: "node-1" },
    { ip: "198.19.0.2", port: 1, weight: 0, state: "Serving" },
    { ip: "198.19.0.3", port: 65535, weight: 0, state: "Terminating", node: "n.example" },
    { ip: "198.19.0.4", port: 80, weight: 1_000_000, state: "Ready" },
  ];
  const strings = backends.map((b) => formatEndpoint(b)!);
  assert.deepEqual(strings, [
    "198.19.0.1:8080 500000 Ready node-1",
    "198.19.0.2:1 0 Serving",
    "198.19.0.3:65535 0 Terminating n.example",
    "198.19.0.4:80 1000000 Ready",
  ]);
  assert.deepEqual(strings.map(parseEndpoint), backends);
  const v = validateRoutingTable(compact(strings));
  assert.ok(v.ok, JSON.stringify(v));
  const entry = v.value.spec.entries[0]!;
  assert.deepEqual(entry.backends, backends);
  assert.equal(entry.endpoints, undefined, "the validated entry is the complete form");
  assert.deepEqual(
    expandRoutingTable(compact(strings) as RoutingTable).spec.entries[0]!.backends,
    backends,
  );
});

Deno.test("an IPv6 endpoint is written in brackets", () => {
  const b: Backend = { ip: "2001:db8::5", port: 443, weight: 7, state: "Ready", node: "n1" };
  assert.equal(formatEndpoint(b), "[2001:db8::5]:443 7 Ready n1");
  assert.deepEqual(parseEndpoint("[2001:db8::5]:443 7 Ready n1"), b);
  const t = compact(["[2001:db8::5]:443 7 Ready n1"]) as RoutingTable;
  t.spec.entries[0]!.address = "2001:db8::10";
  assert.ok(validateRoutingTable(t).ok);
});

Deno.test("a backend that does not fit a string is not formatted", () => {
  const b: Backend = { ip: "198.19.0.1", port: 80, weight: 1, state: "Ready" };
  assert.equal(formatEndpoint({ ...b, service: other }), undefined, "a Service of its own");
  assert.equal(formatEndpoint({ ...b, node: "Node 1" }), undefined, "not a DNS subdomain");
});

Deno.test("bad endpoint strings are refused, each with its path", () => {
  const bad: [string, unknown][] = [
    ["port 0", "198.19.0.1:0 1 Ready"],
    ["port 65536", "198.19.0.1:65536 1 Ready"],
    ["weight 1000001", "198.19.0.1:80 1000001 Ready"],
    ["weight on a Serving backend", "198.19.0.1:80 5 Serving"],
    ["unknown state", "198.19.0.1:80 5 Up"],
    ["not an IP", "198.19.0:80 5 Ready"],
    ["an IPv4 octet over 255", "198.19.0.256:80 5 Ready"],
    ["leading zeros", "198.19.0.1:080 5 Ready"],
    ["IPv6 without brackets", "2001:db8::5:80 5 Ready"],
    ["IPv4 in brackets", "[198.19.0.1]:80 5 Ready"],
    ["IPv6 in an IPv4 entry", "[2001:db8::5]:80 5 Ready"],
    ["bad IPv6", "[2001:db8:::5]:80 5 Ready"],
    ["node not a DNS subdomain", "198.19.0.1:80 5 Ready Node_1"],
    ["a fifth field", "198.19.0.1:80 5 Ready n1 extra"],
    ["not a string", 7],
    ["empty", ""],
  ];
  for (const [what, s] of bad) {
    const v = validateRoutingTable(compact(["198.19.0.9:80 1 Ready", s]));
    assert.equal(v.ok, false, what);
    if (!v.ok) {
      assert.ok(
        v.errors.every((e) => e.path.startsWith("spec.entries[0].endpoints[1]")),
        `${what}: ${JSON.stringify(v.errors)}`,
      );
    }
  }
});

Deno.test("endpoints go with empty backends and without backendsFrom", () => {
  const one = { ip: "198.19.0.1", port: 8080, weight: 1, state: "Ready" };
  const both = validateRoutingTable(compact(["198.19.0.2:80 1 Ready"], { backends: [one] }));
  assert.equal(both.ok, false);
  if (!both.ok) assert.deepEqual(both.errors.map((e) => e.path), ["spec.entries[0].backends"]);
  assert.equal(validateRoutingTable(compact("198.19.0.2:80 1 Ready")).ok, false, "not a list");
});

/** A compact entry: route and Service one string each, endpoints, no `backends`. */
function compactEntry(extra: Record<string, unknown> = {}): unknown {
  const t = table({});
  const { backends: _, ...rest } = t.spec.entries[0]!;
  return {
    ...t,
    spec: {
      ...t.spec,
      entries: [{
        ...rest,
        routeRef: "TCPRoute default/web",
        serviceRef: "default/web:80",
        endpoints: ["198.19.0.1:8080 500000 Ready n1", "198.19.0.2:8080 0 Serving"],
        ...extra,
      }],
    },
  };
}

Deno.test("a compact entry is read as the complete one: route, Service and backends objects", () => {
  const v = validateRoutingTable(compactEntry());
  assert.ok(v.ok, JSON.stringify(v));
  const complete = {
    address: "198.18.0.10",
    port: 80,
    protocol: "TCP",
    listener: "tcp",
    rejectWeight: 0,
    route: { kind: "TCPRoute", namespace: "default", name: "web" },
    service: web,
    backends: [
      { ip: "198.19.0.1", port: 8080, weight: 500000, state: "Ready", node: "n1" },
      { ip: "198.19.0.2", port: 8080, weight: 0, state: "Serving" },
    ],
  };
  assert.deepEqual(v.value.spec.entries[0], complete);
  // readers that do not validate see the same
  assert.deepEqual(expandRoutingTable(compactEntry() as RoutingTable).spec.entries[0], complete);
  // and `backends` is filled when a compact entry has no backends at all
  const none = validateRoutingTable(compactEntry({ endpoints: [] }));
  assert.ok(none.ok, JSON.stringify(none));
  assert.deepEqual(none.value.spec.entries[0]!.backends, []);
});

Deno.test("route and Service strings round-trip", () => {
  const routes = [
    { kind: "TCPRoute", namespace: "default", name: "web" },
    { kind: "UDPRoute", namespace: "a".repeat(63), name: `${"b".repeat(61)}.${"c".repeat(191)}` },
  ] as const;
  for (const r of routes) assert.deepEqual(parseRouteRef(formatRouteRef(r)!), r);
  const services = [web, { namespace: "x", name: "y-1", port: 65535 }];
  for (const s of services) assert.deepEqual(parseServiceRef(formatServiceRef(s)!), s);
  assert.equal(formatRouteRef({ kind: "TCPRoute", namespace: "default", name: "Web" }), undefined);
  assert.equal(formatServiceRef({ namespace: "default", name: "web.v2", port: 80 }), undefined);
  assert.equal(formatServiceRef({ namespace: "default", name: "web", port: 0 }), undefined);
});

Deno.test("bad route and Service strings are refused, each with its path", () => {
  const long = "a".repeat(64);
  const badRoutes: [string, unknown][] = [
    ["unknown kind", "HTTPRoute default/web"],
    ["no namespace", "TCPRoute web"],
    ["namespace not a DNS label", "TCPRoute Default/web"],
    ["namespace of 64 characters", `TCPRoute ${long}/web`],
    ["name not a DNS subdomain", "TCPRoute default/web_1"],
    ["name of 254 characters", `TCPRoute default/${"a".repeat(254)}`],
    ["a third part", "TCPRoute default/web/x"],
    ["two spaces", "TCPRoute  default/web"],
    ["not a string", { kind: "TCPRoute" }],
  ];
  for (const [what, routeRef] of badRoutes) {
    const v = validateRoutingTable(compactEntry({ routeRef }));
    assert.equal(v.ok, false, what);
    if (!v.ok) assert.deepEqual(v.errors.map((e) => e.path), ["spec.entries[0].routeRef"], what);
  }
  const badServices: [string, unknown][] = [
    ["port 0", "default/web:0"],
    ["port 65536", "default/web:65536"],
    ["leading zero", "default/web:080"],
    ["no port", "default/web"],
    ["name with a dot", "default/web.v2:80"],
    ["name of 64 characters", `default/${long}:80`],
    ["namespace upper case", "Default/web:80"],
    ["empty", ""],
    ["not a string", 80],
  ];
  for (const [what, serviceRef] of badServices) {
    const v = validateRoutingTable(compactEntry({ serviceRef }));
    assert.equal(v.ok, false, what);
    if (!v.ok) {
      assert.deepEqual(v.errors.map((e) => e.path), ["spec.entries[0].serviceRef"], what);
    }
  }
});

Deno.test("a compact entry names its route and Service once, and leaves backends out only with endpoints", () => {
  const errors = (extra: Record<string, unknown>) => {
    const v = validateRoutingTable(compactEntry(extra));
    return v.ok ? [] : v.errors.map((e) => e.path);
  };
  assert.deepEqual(errors({ route: { kind: "TCPRoute", namespace: "default", name: "web" } }), [
    "spec.entries[0].routeRef",
  ]);
  assert.deepEqual(errors({ service: web }), ["spec.entries[0].serviceRef"]);
  assert.deepEqual(errors({ endpoints: undefined }), ["spec.entries[0].backends"]);
  assert.deepEqual(errors({ backends: [] }), [], "an empty backends may stay");
});
