// reconcile(gateway) as a specification: each test sets up the cluster, runs
// one reconcile, and checks what a user reads with kubectl (conditions as
// Type=Status/Reason) and what the data plane gets (RoutingTable entries).
import assert from "node:assert/strict";
import { reconcile, type ReconcileResult, reportsComplete } from "./gateway.ts";
import { classFinalizer, GATEWAY_CLASS_FINALIZER, reconcileGatewayClass } from "./gateway_class.ts";
import { createSnapshot, putObject, type Snapshot, type SnapshotObject } from "./snapshot.ts";
import {
  agentLease,
  blixtClass,
  BUNDLE,
  classConfig,
  dataplaneNode,
  endpointSlice,
  gateway,
  gatewayClass,
  gatewayShows,
  httpRoute,
  httpsListener,
  listener,
  listenerShows,
  namespace,
  node,
  NOW,
  referenceGrant,
  route,
  routeShows,
  secret,
  secretGrant,
  service,
  shown,
  TEST_CERT,
} from "./_test_objects.ts";
import type { RoutingTable } from "../api/mod.ts";
import { type SecretObject, summarizeSecret } from "./certificates.ts";

function snapshotOf(objects: SnapshotObject[]): Snapshot {
  return createSnapshot(objects, { crdBundleVersions: BUNDLE });
}

function run(objects: SnapshotObject[], key = "default/gw"): ReconcileResult {
  return reconcile(key, snapshotOf(objects), { now: NOW });
}

function tableOf(result: ReconcileResult): RoutingTable {
  assert.equal(
    result.table.action,
    "apply",
    JSON.stringify(result.status?.conditions),
  );
  return (result.table as { table: RoutingTable }).table;
}

const tcp = (name = "tcp", port = 5000) => listener(name, port, "TCP");
const gwRef = (
  extra: { sectionName?: string; port?: number; namespace?: string } = {},
) => ({
  name: "gw",
  ...extra,
});
const backend = (name: string, port = 80, weight?: number, ns?: string) => ({
  name,
  port,
  ...(weight === undefined ? {} : { weight }),
  ...(ns === undefined ? {} : { namespace: ns }),
});
const webService = [
  service("web", [{ port: 80, name: "http" }]),
  endpointSlice("web", [{ port: 8080, name: "http" }], [
    { ip: "198.19.0.1", node: "n1" },
    { ip: "198.19.0.2", node: "n2" },
  ]),
];

// --- GatewayClass ----------------------------------------------------------

Deno.test("a GatewayClass with blixt's controllerName is Accepted, with SupportedVersion and its features", () => {
  const status = reconcileGatewayClass("blixt", snapshotOf(blixtClass()), {
    now: NOW,
  });
  assert.ok(status);
  assert.equal(shown(status.conditions, "Accepted"), "Accepted=True/Accepted");
  assert.equal(
    shown(status.conditions, "SupportedVersion"),
    "SupportedVersion=True/SupportedVersion",
  );
  assert.deepEqual(status.supportedFeatures.map((f) => f.name), [
    "Gateway",
    "GatewayAddressEmpty",
    "GatewayStaticAddresses",
    "ReferenceGrant",
    "TCPRoute",
    "UDPRoute",
  ]);
  assert.equal(status.conditions[0]?.observedGeneration, 1);
});

Deno.test("a GatewayClass of another controller gets no status from blixt", () => {
  const other = gatewayClass("other");
  other.spec.controllerName = "example.com/other";
  assert.equal(
    reconcileGatewayClass("other", snapshotOf([other]), { now: NOW }),
    null,
  );
});

Deno.test("a GatewayClass whose parametersRef is wrong is Accepted=False/InvalidParameters", () => {
  const cases: [string, SnapshotObject[]][] = [
    ["config missing", [blixtClass()[0] as SnapshotObject]],
    ["wrong kind", [
      gatewayClass("blixt", {
        parametersRef: {
          group: "",
          kind: "ConfigMap",
          name: "x",
          namespace: "d",
        },
      }),
    ]],
    ["namespace on a cluster-scoped kind", [
      gatewayClass("blixt", {
        parametersRef: {
          group: "blixt.dev",
          kind: "GatewayClassConfig",
          name: "blixt-config",
          namespace: "d",
        },
      }),
      classConfig(["198.18.0.0/29"]),
    ]],
    ["pool not a CIDR", [
      blixtClass()[0] as SnapshotObject,
      classConfig(["198.18.0.0"]),
    ]],
  ];
  for (const [what, objects] of cases) {
    const status = reconcileGatewayClass("blixt", snapshotOf(objects), {
      now: NOW,
    });
    assert.equal(
      shown(status?.conditions, "Accepted"),
      "Accepted=False/InvalidParameters",
      what,
    );
  }
});

Deno.test("a GatewayClass seeing Gateway API CRDs of another bundle version is SupportedVersion=False, still Accepted", () => {
  const s = createSnapshot(blixtClass(), {
    crdBundleVersions: { "gateways.gateway.networking.k8s.io": "v1.5.0" },
  });
  const status = reconcileGatewayClass("blixt", s, { now: NOW });
  assert.equal(
    shown(status?.conditions, "SupportedVersion"),
    "SupportedVersion=False/UnsupportedVersion",
  );
  assert.equal(shown(status?.conditions, "Accepted"), "Accepted=True/Accepted");
});

Deno.test("a Gateway of a class with invalid parameters is Accepted=False/InvalidParameters and its last table is kept", () => {
  const r = run([blixtClass()[0] as SnapshotObject, gateway("gw", [tcp()])]);
  assert.equal(gatewayShows(r, "Accepted"), "Accepted=False/InvalidParameters");
  assert.equal(gatewayShows(r, "Programmed"), "Programmed=False/Invalid");
  assert.equal(r.table.action, "keep");
});

Deno.test("a Gateway with an infrastructure.parametersRef is Accepted=False/InvalidParameters: blixt takes none", () => {
  const gw = gateway("gw", [tcp()]);
  gw.spec.infrastructure = {
    parametersRef: { group: "invalid.io", kind: "InvalidParameters", name: "invalid" },
  };
  const r = run([...blixtClass(), gw]);
  assert.equal(gatewayShows(r, "Accepted"), "Accepted=False/InvalidParameters");
  assert.equal(r.table.action, "keep");
});

Deno.test("a GatewayClass holds the gateway-exists finalizer exactly while Gateways use it", () => {
  const held = gatewayClass("blixt");
  held.metadata = { ...held.metadata, finalizers: [GATEWAY_CLASS_FINALIZER] };
  const other = gatewayClass("other", { controllerName: "example.com/other" });
  const cases: [string, SnapshotObject[], string, string][] = [
    ["unused, none held", [gatewayClass("blixt")], "blixt", "none"],
    ["used, none held", [gatewayClass("blixt"), gateway("gw", [tcp()])], "blixt", "add"],
    ["used, held", [held, gateway("gw", [tcp()])], "blixt", "none"],
    ["no longer used", [held], "blixt", "remove"],
    ["another controller's class", [other, gateway("gw", [tcp()])], "other", "none"],
  ];
  for (const [what, objects, name, want] of cases) {
    assert.equal(classFinalizer(name, snapshotOf(objects)), want, what);
  }
});

Deno.test("an address decided for another Gateway, not yet in its status, is not handed out twice", () => {
  const s = snapshotOf([
    ...blixtClass(),
    gateway("a", [tcp()]),
    gateway("b", [tcp()], { created: "2026-01-01T00:00:01Z" }),
  ]);
  const a = reconcile("default/a", s, { now: NOW });
  // what the controller records between reconcile and the status write
  s.addressDecisions.set("default/a", a.status?.addresses.map((x) => x.value) ?? []);
  const b = reconcile("default/b", s, { now: NOW });
  assert.deepEqual(a.status?.addresses.map((x) => x.value), ["198.18.0.1"]);
  assert.deepEqual(b.status?.addresses.map((x) => x.value), ["198.18.0.2"]);
});

// --- Listeners -------------------------------------------------------------

Deno.test("TCP and UDP listeners are accepted, each with its route kind", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [tcp(), listener("udp", 5353, "UDP")]),
  ]);
  assert.equal(gatewayShows(r, "Accepted"), "Accepted=True/Accepted");
  for (const name of ["tcp", "udp"]) {
    assert.equal(listenerShows(r, name, "Accepted"), "Accepted=True/Accepted");
    assert.equal(
      listenerShows(r, name, "Conflicted"),
      "Conflicted=False/NoConflicts",
    );
    assert.equal(
      listenerShows(r, name, "ResolvedRefs"),
      "ResolvedRefs=True/ResolvedRefs",
    );
  }
  assert.deepEqual(r.status?.listeners.map((l) => l.supportedKinds), [
    [{ group: "gateway.networking.k8s.io", kind: "TCPRoute" }],
    [{ group: "gateway.networking.k8s.io", kind: "UDPRoute" }],
  ]);
});

Deno.test("HTTP and HTTPS listeners are accepted with supportedKinds HTTPRoute but get no table entry; TLS is Accepted=False/UnsupportedProtocol", () => {
  const r = run([
    ...blixtClass(),
    node("n1"),
    secret("cert"),
    gateway("gw", [
      tcp(),
      listener("http", 80, "HTTP"),
      httpsListener("https", 443, [{ name: "cert" }]),
      listener("tls", 8443, "TLS"),
    ]),
  ]);
  for (const name of ["http", "https"]) {
    assert.equal(listenerShows(r, name, "Accepted"), "Accepted=True/Accepted", name);
    assert.equal(listenerShows(r, name, "ResolvedRefs"), "ResolvedRefs=True/ResolvedRefs", name);
    assert.deepEqual(
      r.status?.listeners.find((l) => l.name === name)?.supportedKinds,
      [{ group: "gateway.networking.k8s.io", kind: "HTTPRoute" }],
    );
  }
  assert.equal(listenerShows(r, "tls", "Accepted"), "Accepted=False/UnsupportedProtocol");
  assert.equal(listenerShows(r, "tls", "Programmed"), "Programmed=False/Invalid");
  assert.equal(gatewayShows(r, "Accepted"), "Accepted=True/ListenersNotValid");
  assert.deepEqual(tableOf(r).spec.entries.map((e) => e.listener), ["tcp"]);
});

Deno.test("a programmed HTTP listener says it carries no traffic", () => {
  const objects = [...blixtClass(), node("n1"), gateway("gw", [listener("http", 80, "HTTP")])];
  const table = tableOf(run(objects));
  const r = run([
    ...objects,
    { ...table, metadata: { ...table.metadata, generation: 1 } },
    dataplaneNode("n1", [{ namespace: "default", name: "gw", programmedGeneration: 1 }]),
    agentLease("n1"),
  ]);
  assert.equal(gatewayShows(r, "Programmed"), "Programmed=True/Programmed");
  assert.equal(listenerShows(r, "http", "Programmed"), "Programmed=True/Programmed");
  const message = r.status?.listeners[0]?.conditions.find((c) => c.type === "Programmed")?.message;
  assert.match(message ?? "", /no data plane entries/);
  assert.deepEqual(tableOf(r).spec.entries, []);
});

Deno.test("a Gateway with no accepted listener is Accepted=False/ListenersNotValid and gets no table", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [listener("tls", 443, "TLS"), listener("bad", 80, "INVALID")]),
  ]);
  assert.equal(gatewayShows(r, "Accepted"), "Accepted=False/ListenersNotValid");
  assert.equal(gatewayShows(r, "Programmed"), "Programmed=False/Invalid");
  assert.equal(r.table.action, "delete");
});

Deno.test("HTTPS certificateRefs: missing, malformed, non-TLS, foreign group or kind Secrets are ResolvedRefs=False/InvalidCertificateRef", () => {
  const cases: [string, SnapshotObject[], Parameters<typeof httpsListener>[2]][] = [
    ["missing", [], [{ name: "nope" }]],
    ["malformed", [secret("bad", { crt: "Hello world\n", key: "Hello world\n" })], [{
      name: "bad",
    }]],
    ["opaque", [secret("opaque", { type: "Opaque" })], [{ name: "opaque" }]],
    ["group", [secret("cert")], [{ name: "cert", group: "wrong.example.com" }]],
    ["kind", [secret("cert")], [{ name: "cert", kind: "WrongKind" }]],
    ["no refs", [], []],
  ];
  for (const [what, objects, refs] of cases) {
    const r = run([
      ...blixtClass(),
      ...objects,
      gateway("gw", [httpsListener("https", 443, refs)]),
    ]);
    assert.equal(
      listenerShows(r, "https", "ResolvedRefs"),
      "ResolvedRefs=False/InvalidCertificateRef",
      what,
    );
    assert.equal(listenerShows(r, "https", "Programmed"), "Programmed=False/Invalid", what);
    // the listener itself is accepted, so the Gateway is (and stays programmable)
    assert.equal(gatewayShows(r, "Accepted"), "Accepted=True/ListenersNotValid", what);
  }
});

Deno.test("a certificateRef to another namespace needs a ReferenceGrant for Secrets from Gateways (RefNotPermitted)", () => {
  const ref = [{ name: "cert", namespace: "certs" }];
  const base = [...blixtClass(), secret("cert", { namespace: "certs" })];
  const gw = gateway("gw", [httpsListener("https", 443, ref)]);
  const denied = [
    [],
    [referenceGrant("certs", "Gateway", "default")], // grants Services, not Secrets
    [secretGrant("certs", "other")],
    [secretGrant("certs", "default", "another")],
  ];
  for (const grants of denied) {
    const r = run([...base, ...grants, gw]);
    assert.equal(
      listenerShows(r, "https", "ResolvedRefs"),
      "ResolvedRefs=False/RefNotPermitted",
      JSON.stringify(grants),
    );
  }
  for (const grant of [secretGrant("certs", "default"), secretGrant("certs", "default", "cert")]) {
    const r = run([...base, grant, gw]);
    assert.equal(listenerShows(r, "https", "ResolvedRefs"), "ResolvedRefs=True/ResolvedRefs");
    assert.equal(gatewayShows(r, "Accepted"), "Accepted=True/Accepted");
  }
});

Deno.test("HTTP listeners on one port conflict only with one hostname; HTTP and HTTPS or TCP on one port conflict", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [
      { ...listener("a", 80, "HTTP"), hostname: "a.example.com" },
      { ...listener("b", 80, "HTTP"), hostname: "b.example.com" },
      { ...listener("c", 81, "HTTP"), hostname: "same.example.com" },
      { ...listener("d", 81, "HTTP"), hostname: "same.example.com" },
      listener("e", 82, "HTTP"),
      tcp("f", 82),
      listener("g", 82, "UDP"),
    ]),
  ]);
  const shows = (name: string) => listenerShows(r, name, "Conflicted");
  assert.equal(shows("a"), "Conflicted=False/NoConflicts");
  assert.equal(shows("b"), "Conflicted=False/NoConflicts");
  assert.equal(shows("c"), "Conflicted=True/HostnameConflict");
  assert.equal(shows("d"), "Conflicted=True/HostnameConflict");
  assert.equal(shows("e"), "Conflicted=True/ProtocolConflict");
  assert.equal(shows("f"), "Conflicted=True/ProtocolConflict");
  assert.equal(shows("g"), "Conflicted=False/NoConflicts");
});

Deno.test("HTTPRoutes count in an HTTP listener's attachedRoutes (parentRef, allowedRoutes, hostnames) and nowhere else", () => {
  const r = run([
    ...blixtClass(),
    secret("cert"),
    gateway("gw", [
      httpsListener("https", 443, [{ name: "cert" }], "secure.test.com"),
      { ...listener("http", 80, "HTTP"), hostname: "*.example.com" },
      tcp(),
    ]),
    httpRoute("all", [{ name: "gw" }]),
    httpRoute("one", [{ name: "gw", sectionName: "http" }]),
    httpRoute("other-host", [{ name: "gw" }], { hostnames: ["www.example.com"] }),
    httpRoute("other-ns", [{ name: "gw", namespace: "default" }], { namespace: "elsewhere" }),
  ]);
  const attached = (name: string) =>
    r.status?.listeners.find((l) => l.name === name)?.attachedRoutes;
  assert.equal(attached("https"), 1); // all
  assert.equal(attached("http"), 3); // all, one, other-host
  assert.equal(attached("tcp"), 0);
  assert.deepEqual(r.routeStatuses, []);
});

Deno.test("two TCP (or two UDP) listeners on one port are both Conflicted=True/ProtocolConflict and neither is accepted", () => {
  for (const protocol of ["TCP", "UDP"]) {
    const r = run([
      ...blixtClass(),
      gateway("gw", [
        listener("a", 7000, protocol),
        listener("b", 7000, protocol),
        tcp("c", 7001),
      ]),
    ]);
    for (const name of ["a", "b"]) {
      assert.equal(
        listenerShows(r, name, "Conflicted"),
        "Conflicted=True/ProtocolConflict",
      );
      assert.equal(
        listenerShows(r, name, "Accepted"),
        "Accepted=False/PortUnavailable",
      );
    }
    assert.equal(
      gatewayShows(r, "Accepted"),
      "Accepted=True/ListenersNotValid",
    );
    assert.deepEqual(tableOf(r).spec.entries.map((e) => e.listener), ["c"]);
    assert.ok(r.events.some((e) => e.reason === "ListenerConflict"));
  }
});

Deno.test("TCP and UDP listeners on the same port are distinct and both accepted", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [listener("t", 53, "TCP"), listener("u", 53, "UDP")]),
  ]);
  assert.equal(
    listenerShows(r, "t", "Conflicted"),
    "Conflicted=False/NoConflicts",
  );
  assert.equal(
    listenerShows(r, "u", "Conflicted"),
    "Conflicted=False/NoConflicts",
  );
  assert.deepEqual(
    tableOf(r).spec.entries.map((e) => `${e.port}/${e.protocol}`),
    ["53/TCP", "53/UDP"],
  );
});

Deno.test("allowedRoutes.kinds with kinds the protocol cannot carry is ResolvedRefs=False/InvalidRouteKinds, listing only the valid kinds", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [
      listener("mixed", 5000, "TCP", {
        kinds: [{ kind: "HTTPRoute" }, { kind: "TCPRoute" }],
      }),
      listener("wrong", 5001, "TCP", { kinds: [{ kind: "UDPRoute" }] }),
      listener("fine", 5002, "TCP", {
        kinds: [{ group: "gateway.networking.k8s.io", kind: "TCPRoute" }],
      }),
    ]),
  ]);
  assert.equal(
    listenerShows(r, "mixed", "ResolvedRefs"),
    "ResolvedRefs=False/InvalidRouteKinds",
  );
  assert.equal(
    listenerShows(r, "wrong", "ResolvedRefs"),
    "ResolvedRefs=False/InvalidRouteKinds",
  );
  assert.equal(
    listenerShows(r, "fine", "ResolvedRefs"),
    "ResolvedRefs=True/ResolvedRefs",
  );
  assert.deepEqual(
    r.status?.listeners.map((l) => l.supportedKinds.map((k) => k.kind)),
    [["TCPRoute"], [], ["TCPRoute"]],
  );
});

// --- Addresses ---------------------------------------------------------------

Deno.test("a static IPAddress in spec.addresses is used as is", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [tcp()], {
      addresses: [{ type: "IPAddress", value: "198.18.5.5" }],
    }),
  ]);
  assert.deepEqual(r.status?.addresses, [{
    type: "IPAddress",
    value: "198.18.5.5",
  }]);
  assert.deepEqual(tableOf(r).spec.addresses, ["198.18.5.5"]);
});

Deno.test("without spec.addresses the Gateway gets the lowest free pool address, and keeps it", () => {
  const r = run([...blixtClass(), gateway("gw", [tcp()])]);
  assert.deepEqual(r.status?.addresses, [{
    type: "IPAddress",
    value: "198.18.0.1",
  }]);
  assert.ok(r.events.some((e) => e.reason === "AddressAssigned"));
  const again = run([
    ...blixtClass(),
    gateway("gw", [tcp()], {
      status: { addresses: [{ type: "IPAddress", value: "198.18.0.4" }] },
    }),
  ]);
  assert.deepEqual(again.status?.addresses, [{
    type: "IPAddress",
    value: "198.18.0.4",
  }]);
  assert.equal(
    again.events.filter((e) => e.reason === "AddressAssigned").length,
    0,
  );
});

Deno.test("an IPAddress entry without a value is filled from the pool", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [tcp()], { addresses: [{ type: "IPAddress" }] }),
  ]);
  assert.deepEqual(r.status?.addresses, [{
    type: "IPAddress",
    value: "198.18.0.1",
  }]);
});

Deno.test("pool addresses are never given twice: the older Gateway keeps a contested address", () => {
  const older = gateway("old", [tcp()], {
    created: "2026-01-01T00:00:00Z",
    status: { addresses: [{ value: "198.18.0.1" }] },
  });
  const newer = gateway("gw", [tcp()], {
    created: "2026-01-02T00:00:00Z",
    status: { addresses: [{ value: "198.18.0.1" }] },
  });
  const r = run([...blixtClass(), older, newer]);
  assert.deepEqual(r.status?.addresses, [{
    type: "IPAddress",
    value: "198.18.0.2",
  }]);
  const o = run([...blixtClass(), older, newer], "default/old");
  assert.deepEqual(o.status?.addresses, [{
    type: "IPAddress",
    value: "198.18.0.1",
  }]);
});

Deno.test("an address is released when its Gateway is deleted", () => {
  const first = gateway("first", [tcp()], {
    status: { addresses: [{ value: "198.18.0.1" }] },
  });
  const gw = gateway("gw", [tcp()], { created: "2026-01-03T00:00:00Z" });
  assert.deepEqual(run([...blixtClass(), first, gw]).status?.addresses, [{
    type: "IPAddress",
    value: "198.18.0.2",
  }]);
  assert.deepEqual(run([...blixtClass(), gw]).status?.addresses, [{
    type: "IPAddress",
    value: "198.18.0.1",
  }]);
});

Deno.test("an exhausted pool makes the Gateway Programmed=False/AddressNotAssigned, with a Warning event", () => {
  const others = [1, 2].map((i) =>
    gateway(`g${i}`, [tcp()], {
      status: { addresses: [{ value: `198.18.0.${i}` }] },
    })
  );
  const gw = gateway("gw", [tcp()], { created: "2026-01-09T00:00:00Z" });
  const r = run([...blixtClass(["198.18.0.0/30"]), ...others, gw]);
  assert.equal(gatewayShows(r, "Accepted"), "Accepted=True/Accepted");
  assert.equal(
    gatewayShows(r, "Programmed"),
    "Programmed=False/AddressNotAssigned",
  );
  assert.match(
    r.status?.conditions.find((c) => c.type === "Programmed")?.message ?? "",
    /exhausted/,
  );
  assert.ok(
    r.events.some((e) => e.type === "Warning" && e.reason === "AddressNotAssigned"),
  );
  assert.equal(r.table.action, "delete");
});

Deno.test("a Hostname (or any non-IPAddress) address makes the Gateway Accepted=False/UnsupportedAddress", () => {
  for (const type of ["Hostname", "NamedAddress", "example.com/custom"]) {
    const r = run([
      ...blixtClass(),
      gateway("gw", [tcp()], {
        addresses: [{ type, value: "lb.example.com" }],
      }),
    ]);
    assert.equal(
      gatewayShows(r, "Accepted"),
      "Accepted=False/UnsupportedAddress",
      type,
    );
    assert.equal(r.table.action, "delete");
  }
});

Deno.test("a static address already held by an older Gateway is Programmed=False/AddressNotUsable and left out of status", () => {
  const holder = gateway("holder", [tcp()], {
    addresses: [{ value: "198.18.9.9" }],
  });
  const gw = gateway("gw", [tcp()], {
    created: "2026-01-05T00:00:00Z",
    addresses: [{ value: "198.18.9.9" }, { value: "198.18.9.10" }],
  });
  const r = run([...blixtClass(), holder, gw]);
  assert.equal(gatewayShows(r, "Accepted"), "Accepted=True/Accepted");
  assert.equal(
    gatewayShows(r, "Programmed"),
    "Programmed=False/AddressNotUsable",
  );
  assert.deepEqual(r.status?.addresses, [{
    type: "IPAddress",
    value: "198.18.9.10",
  }]);
});

// --- Programmed ----------------------------------------------------------------

function programmedWorld(
  extra: SnapshotObject[],
  tableGeneration: number,
): SnapshotObject[] {
  const base = [
    ...blixtClass(),
    gateway("gw", [tcp()], { addresses: [{ value: "198.18.0.10" }] }),
  ];
  const spec = tableOf(run(base)).spec;
  const table: RoutingTable = {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: { name: "gw", namespace: "default", generation: tableGeneration },
    spec,
  };
  return [...base, table, ...extra];
}

Deno.test("Programmed waits for the RoutingTable to be written", () => {
  const r = run([...blixtClass(), gateway("gw", [tcp()]), node("n1")]);
  assert.equal(gatewayShows(r, "Programmed"), "Programmed=False/Pending");
  assert.equal(
    listenerShows(r, "tcp", "Programmed"),
    "Programmed=False/Pending",
  );
});

Deno.test("Programmed is True only once every ready node running an agent reports the table's current generation", () => {
  const gen = 3;
  const t = (g: number) => ({
    namespace: "default",
    name: "gw",
    programmedGeneration: g,
  });
  // a node whose agent runs: a Ready Node, its DataplaneNode and a held agent Lease
  const running = (name: string, generation: number) => [
    node(name),
    dataplaneNode(name, [t(generation)]),
    agentLease(name),
  ];
  const cases: [string, SnapshotObject[], string][] = [
    ["no nodes", [], "Programmed=False/Pending"],
    ["one node behind", [...running("n1", 3), ...running("n2", 2)], "Programmed=False/Pending"],
    ["no ready node runs an agent", [node("n1"), node("n2")], "Programmed=False/Pending"],
    ["a ready node without an agent (no DataplaneNode) is not waited for", [
      ...running("n1", 3),
      node("n2"),
    ], "Programmed=True/Programmed"],
    ["a DataplaneNode of a node that is gone does not count", [
      ...running("n1", 3),
      dataplaneNode("gone", [t(1)]),
    ], "Programmed=True/Programmed"],
    [
      "all ready nodes current",
      [...running("n1", 3), ...running("n2", 3)],
      "Programmed=True/Programmed",
    ],
    ["a not-ready node does not count", [
      ...running("n1", 3),
      node("n2", false),
      dataplaneNode("n2", [t(1)]),
    ], "Programmed=True/Programmed"],
    ["a node whose agent never took its Lease", [
      ...running("n1", 3),
      node("n2"),
      dataplaneNode("n2", [t(3)]),
    ], "Programmed=False/AgentNotRunning"],
    ["a node whose agent's Lease expired", [
      ...running("n1", 3),
      node("n2"),
      dataplaneNode("n2", [t(3)]),
      agentLease("n2", { renewedSecondsAgo: 41 }),
    ], "Programmed=False/AgentNotRunning"],
    ["a node whose agent released its Lease at shutdown", [
      ...running("n1", 3),
      node("n2"),
      dataplaneNode("n2", [t(3)]),
      agentLease("n2", { released: true }),
    ], "Programmed=False/AgentNotRunning"],
    ["a node whose agent's Lease is 39 s old still runs it", [
      ...running("n1", 3),
      node("n2"),
      dataplaneNode("n2", [t(3)]),
      agentLease("n2", { renewedSecondsAgo: 39 }),
    ], "Programmed=True/Programmed"],
  ];
  for (const [what, extra, want] of cases) {
    const r = run(programmedWorld(extra, gen));
    assert.equal(gatewayShows(r, "Programmed"), want, what);
    if (want.includes("True")) {
      assert.equal(
        listenerShows(r, "tcp", "Programmed"),
        "Programmed=True/Programmed",
      );
    }
  }
});

Deno.test("reportsComplete: every ready node with a DataplaneNode reports the table's generation, without errors", () => {
  const t = (g: number, errors?: string[]) => ({
    namespace: "default",
    name: "gw",
    programmedGeneration: g,
    ...(errors ? { errors } : {}),
  });
  const cases: [string, SnapshotObject[], boolean][] = [
    ["no node", [], false],
    ["one of two behind", [
      node("n1"),
      dataplaneNode("n1", [t(3)]),
      node("n2"),
      dataplaneNode("n2", [t(2)]),
    ], false],
    ["both current", [
      node("n1"),
      dataplaneNode("n1", [t(3)]),
      node("n2"),
      dataplaneNode("n2", [t(3)]),
    ], true],
    ["current with an error", [node("n1"), dataplaneNode("n1", [t(3, ["no room"])])], false],
    ["a not-ready node behind does not count", [
      node("n1"),
      dataplaneNode("n1", [t(3)]),
      node("n2", false),
      dataplaneNode("n2", [t(1)]),
    ], true],
    ["a ready node without a DataplaneNode does not count", [
      node("n1"),
      dataplaneNode("n1", [t(3)]),
      node("n2"),
    ], true],
  ];
  for (const [what, extra, want] of cases) {
    assert.equal(reportsComplete(snapshotOf(programmedWorld(extra, 3)), "default/gw"), want, what);
  }
  assert.equal(
    reportsComplete(snapshotOf(programmedWorld([], 3)), "default/other"),
    false,
    "no table",
  );
});

Deno.test("an agent's error for the table shows in the Programmed message", () => {
  const r = run(
    programmedWorld([
      node("n1"),
      agentLease("n1"),
      dataplaneNode("n1", [{
        namespace: "default",
        name: "gw",
        programmedGeneration: 1,
        errors: ["map full"],
      }]),
    ], 2),
  );
  assert.match(
    r.status?.conditions.find((c) => c.type === "Programmed")?.message ?? "",
    /n1: generation 1 of 2 \(map full\)/,
  );
});

Deno.test("every condition carries observedGeneration, and lastTransitionTime moves only when the status changes", () => {
  const gw = gateway("gw", [tcp()], { generation: 7 });
  const first = run([...blixtClass(), gw]);
  for (
    const c of [
      ...first.status?.conditions ?? [],
      ...first.status?.listeners.flatMap((l) => l.conditions) ?? [],
    ]
  ) {
    assert.equal(c.observedGeneration, 7, c.type);
  }
  const earlier = "2025-12-01T00:00:00Z";
  const seen = (first.status?.conditions ?? []).map((c) => ({
    ...c,
    lastTransitionTime: earlier,
  }));
  const again = reconcile(
    "default/gw",
    snapshotOf([...blixtClass(), { ...gw, status: { conditions: seen } }]),
    { now: NOW },
  );
  const lt = (r: ReconcileResult, type: string) =>
    r.status?.conditions.find((c) => c.type === type)?.lastTransitionTime;
  assert.equal(
    lt(again, "Accepted"),
    earlier,
    "unchanged Accepted keeps its time",
  );
  const flipped = seen.map((c) => c.type === "Accepted" ? { ...c, status: "False" } : c);
  const third = reconcile(
    "default/gw",
    snapshotOf([...blixtClass(), { ...gw, status: { conditions: flipped } }]),
    { now: NOW },
  );
  assert.equal(lt(third, "Accepted"), NOW, "a changed status gets a new time");
});

Deno.test("a node whose agent stopped makes the Gateway Programmed=False/AgentNotRunning, naming the node and why", () => {
  const t = { namespace: "default", name: "gw", programmedGeneration: 2 };
  const r = run(programmedWorld([
    node("n1"),
    dataplaneNode("n1", [t]),
    agentLease("n1"),
    node("n2"),
    dataplaneNode("n2", [t]),
    agentLease("n2", { renewedSecondsAgo: 50 }),
  ], 2));
  const programmed = r.status?.conditions.find((c) => c.type === "Programmed");
  assert.equal(programmed?.reason, "AgentNotRunning");
  assert.equal(
    programmed?.message,
    "the blixt agent is not running on n2 (agent Lease expired 10s ago); " +
      "RoutingTable generation 2 programmed on 1 of 2 ready nodes running the agent",
  );
  // listeners say Pending (their reasons are Programmed, Invalid, Pending) with the same message
  assert.equal(listenerShows(r, "tcp", "Programmed"), "Programmed=False/Pending");
});

Deno.test("conditions of other controllers on the Gateway are kept", () => {
  const foreign = {
    type: "example.com/Audited",
    status: "True",
    reason: "Ok",
    message: "",
    lastTransitionTime: "2025-01-01T00:00:00Z",
  };
  const r = run([
    ...blixtClass(),
    gateway("gw", [tcp()], { status: { conditions: [foreign] } }),
  ]);
  assert.deepEqual(
    r.status?.conditions.find((c) => c.type === foreign.type),
    foreign,
  );
});

// --- Routes: attachment ----------------------------------------------------------

Deno.test("a parentRef with sectionName, port, both, or neither attaches to the matching listeners", () => {
  const gw = gateway("gw", [
    tcp("a", 5000),
    tcp("b", 5001),
    listener("u", 5000, "UDP"),
  ]);
  const cases: [string, object, string[]][] = [
    ["sectionName", gwRef({ sectionName: "b" }), ["b"]],
    ["port", gwRef({ port: 5000 }), ["a"]],
    ["both", gwRef({ sectionName: "a", port: 5000 }), ["a"]],
    ["neither: every compatible listener", gwRef(), ["a", "b"]],
  ];
  for (const [what, ref, listeners] of cases) {
    const r = run([
      ...blixtClass(),
      gw,
      ...webService,
      route("TCPRoute", "r", [ref as never], [backend("web")]),
    ]);
    assert.equal(
      routeShows(r, "r", "Accepted"),
      "Accepted=True/Accepted",
      what,
    );
    assert.deepEqual(
      r.status?.listeners.filter((l) => l.attachedRoutes > 0).map((l) => l.name),
      listeners,
      what,
    );
  }
});

Deno.test("a parentRef naming no listener of the Gateway is Accepted=False/NoMatchingParent", () => {
  const gw = gateway("gw", [tcp("a", 5000)]);
  for (
    const ref of [
      gwRef({ sectionName: "nope" }),
      gwRef({ port: 9999 }),
      gwRef({ sectionName: "a", port: 5001 }),
    ]
  ) {
    const r = run([
      ...blixtClass(),
      gw,
      route("TCPRoute", "r", [ref], [backend("web")]),
    ]);
    assert.equal(
      routeShows(r, "r", "Accepted"),
      "Accepted=False/NoMatchingParent",
    );
    assert.equal(r.status?.listeners[0]?.attachedRoutes, 0);
  }
});

Deno.test("a TCPRoute pointed at a UDP (or HTTP) listener is Accepted=False/NotAllowedByListeners and not counted", () => {
  const gw = gateway("gw", [
    listener("u", 5000, "UDP"),
    listener("h", 80, "HTTP"),
  ]);
  for (const sectionName of ["u", "h"]) {
    const r = run([
      ...blixtClass(),
      gw,
      route("TCPRoute", "r", [gwRef({ sectionName })], [backend("web")]),
    ]);
    assert.equal(
      routeShows(r, "r", "Accepted"),
      "Accepted=False/NotAllowedByListeners",
      sectionName,
    );
    assert.deepEqual(r.status?.listeners.map((l) => l.attachedRoutes), [0, 0]);
  }
});

Deno.test("allowedRoutes.namespaces: Same, All, Selector and None decide which namespaces may attach", () => {
  const cases: [string, object | undefined, string, boolean][] = [
    ["Same (default), same namespace", undefined, "default", true],
    ["Same (default), other namespace", undefined, "team", false],
    ["All", { from: "All" }, "team", true],
    [
      "Selector matching",
      { from: "Selector", selector: { matchLabels: { gw: "yes" } } },
      "team",
      true,
    ],
    [
      "Selector by expression",
      {
        from: "Selector",
        selector: {
          matchExpressions: [{ key: "gw", operator: "In", values: ["yes"] }],
        },
      },
      "team",
      true,
    ],
    [
      "Selector not matching",
      { from: "Selector", selector: { matchLabels: { gw: "no" } } },
      "team",
      false,
    ],
    ["None", { from: "None" }, "default", false],
  ];
  for (const [what, namespaces, routeNs, allowed] of cases) {
    const gw = gateway("gw", [
      listener(
        "tcp",
        5000,
        "TCP",
        namespaces === undefined ? undefined : { namespaces: namespaces as never },
      ),
    ]);
    const r = run([
      ...blixtClass(),
      gw,
      namespace("team", { gw: "yes" }),
      namespace("default"),
      route("TCPRoute", "r", [gwRef({ namespace: "default" })], [
        backend("web"),
      ], { namespace: routeNs }),
    ]);
    assert.equal(
      routeShows(r, "r", "Accepted"),
      allowed ? "Accepted=True/Accepted" : "Accepted=False/NotAllowedByListeners",
      what,
    );
    assert.equal(r.status?.listeners[0]?.attachedRoutes, allowed ? 1 : 0, what);
  }
});

Deno.test("a route with more than one rule is Accepted=False/UnsupportedValue", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [tcp()]),
    route("TCPRoute", "r", [gwRef()], [backend("web")], { rules: 2 }),
  ]);
  assert.equal(
    routeShows(r, "r", "Accepted"),
    "Accepted=False/UnsupportedValue",
  );
});

Deno.test("route status: only blixt's entries for this Gateway change; other controllers' entries stay", () => {
  const r0 = route("TCPRoute", "r", [gwRef(), { name: "elsewhere" }], [
    backend("web"),
  ]);
  const foreign = {
    parentRef: { name: "elsewhere" },
    controllerName: "example.com/other",
    conditions: [],
  };
  const stale = {
    parentRef: { name: "gw", sectionName: "gone" },
    controllerName: "blixt.dev/gateway-controller",
    conditions: [],
  };
  r0.status = { parents: [foreign, stale] };
  const r = run([...blixtClass(), gateway("gw", [tcp()]), ...webService, r0]);
  const parents = r.routeStatuses.find((u) => u.name === "r")?.parents ?? [];
  assert.deepEqual(
    parents.map((p) => `${p.controllerName}:${p.parentRef.name}:${p.parentRef.sectionName ?? ""}`),
    [
      "example.com/other:elsewhere:",
      "blixt.dev/gateway-controller:gw:",
    ],
  );
});

Deno.test("nothing is written to a route whose status is already right", () => {
  const objects = [
    ...blixtClass(),
    gateway("gw", [tcp()]),
    ...webService,
    route("TCPRoute", "r", [gwRef()], [backend("web")]),
  ];
  const first = run(objects);
  const r = objects.at(-1) as ReturnType<typeof route>;
  r.status = { parents: first.routeStatuses[0]?.parents ?? [] };
  assert.deepEqual(run(objects).routeStatuses, []);
});

// --- Routes: several on one listener --------------------------------------------

Deno.test("several routes on one listener are all Accepted and counted; the oldest carries the traffic", () => {
  const objects = [
    ...blixtClass(),
    gateway("gw", [tcp()]),
    ...webService,
    service("other", [{ port: 80 }]),
    endpointSlice("other", [{ port: 9090 }], [{ ip: "198.19.9.9" }]),
    route("TCPRoute", "newer", [gwRef()], [backend("other")], {
      created: "2026-01-02T00:00:00Z",
    }),
    route("TCPRoute", "older", [gwRef()], [backend("web")], {
      created: "2026-01-01T00:00:00Z",
    }),
  ];
  const r = run(objects);
  assert.equal(routeShows(r, "newer", "Accepted"), "Accepted=True/Accepted");
  assert.equal(routeShows(r, "older", "Accepted"), "Accepted=True/Accepted");
  assert.equal(r.status?.listeners[0]?.attachedRoutes, 2);
  assert.deepEqual(tableOf(r).spec.entries[0]?.route, {
    kind: "TCPRoute",
    namespace: "default",
    name: "older",
  });
});

Deno.test("between routes created at the same second, namespace/name decides", () => {
  const objects = [
    ...blixtClass(),
    gateway("gw", [
      listener("tcp", 5000, "TCP", { namespaces: { from: "All" } }),
    ]),
    route(
      "TCPRoute",
      "a",
      [gwRef({ namespace: "default" })],
      [backend("web")],
      { namespace: "zeta" },
    ),
    route(
      "TCPRoute",
      "b",
      [gwRef({ namespace: "default" })],
      [backend("web")],
      { namespace: "alpha" },
    ),
  ];
  assert.deepEqual(
    tableOf(run(objects)).spec.entries[0]?.route?.namespace,
    "alpha",
  );
});

// --- Backends -----------------------------------------------------------------------

Deno.test("a backendRef resolves through the Service port to the EndpointSlice port of the same name (named targetPort)", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [tcp()], { addresses: [{ value: "198.18.0.10" }] }),
    ...webService,
    route("TCPRoute", "r", [gwRef()], [backend("web")]),
  ]);
  const entry = tableOf(r).spec.entries[0];
  assert.deepEqual(entry, {
    address: "198.18.0.10",
    port: 5000,
    protocol: "TCP",
    listener: "tcp",
    route: { kind: "TCPRoute", namespace: "default", name: "r" },
    rejectWeight: 0,
    // every backend came from one Service: the entry names it once
    service: { namespace: "default", name: "web", port: 80 },
    backends: [
      { ip: "198.19.0.1", port: 8080, weight: 500000, node: "n1", state: "Ready" },
      { ip: "198.19.0.2", port: 8080, weight: 500000, node: "n2", state: "Ready" },
    ],
  });
  assert.equal(
    routeShows(r, "r", "ResolvedRefs"),
    "ResolvedRefs=True/ResolvedRefs",
  );
});

Deno.test("ready endpoints take new flows; serving-but-terminating ones keep only existing flows; not-ready ones are left out", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [tcp()]),
    service("web", [{ port: 80 }]),
    endpointSlice("web", [{ port: 8080 }], [
      { ip: "198.19.0.1" },
      { ip: "198.19.0.2", ready: false, serving: true, terminating: true },
      { ip: "198.19.0.3", ready: false, serving: false, terminating: true },
      { ip: "198.19.0.4", ready: false, serving: false },
    ]),
    route("TCPRoute", "r", [gwRef()], [backend("web")]),
  ]);
  assert.deepEqual(
    tableOf(r).spec.entries[0]?.backends.map((b) => `${b.ip} ${b.state} ${b.weight}`),
    [
      "198.19.0.1 Ready 1000000",
      "198.19.0.2 Serving 0",
      "198.19.0.3 Terminating 0",
    ],
  );
});

Deno.test("weights split traffic across all backendRefs of the rule, then evenly across each ref's ready endpoints", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [listener("udp", 53, "UDP")]),
    service("a", [{ port: 53, protocol: "UDP" }]),
    endpointSlice("a", [{ port: 5353, protocol: "UDP" }], [
      { ip: "198.19.1.1" },
      { ip: "198.19.1.2" },
    ]),
    service("b", [{ port: 53, protocol: "UDP" }]),
    endpointSlice("b", [{ port: 5353, protocol: "UDP" }], [{
      ip: "198.19.2.1",
    }]),
    route("UDPRoute", "r", [gwRef()], [
      backend("a", 53, 3),
      backend("b", 53, 1),
    ]),
  ]);
  const e = tableOf(r).spec.entries[0];
  assert.deepEqual(e?.backends.map((b) => `${b.ip}:${b.port} ${b.weight}`), [
    "198.19.1.1:5353 375000",
    "198.19.1.2:5353 375000",
    "198.19.2.1:5353 250000",
  ]);
  assert.equal(e?.rejectWeight, 0);
  // two Services: each backend names its own, the entry none
  assert.equal(e?.service, undefined);
  assert.deepEqual(e?.backends.map((b) => b.service?.name), ["a", "a", "b"]);
});

Deno.test("invalid backendRefs become the reject share, in proportion to their weight, with the ResolvedRefs reason", () => {
  const cases: [string, SnapshotObject[], object, string][] = [
    [
      "missing Service",
      [],
      backend("nope", 80, 1),
      "ResolvedRefs=False/BackendNotFound",
    ],
    [
      "port not on the Service",
      [],
      backend("web", 81, 1),
      "ResolvedRefs=False/BackendNotFound",
    ],
    ["other kind", [], {
      group: "example.com",
      kind: "Bucket",
      name: "b",
      weight: 1,
    }, "ResolvedRefs=False/InvalidKind"],
    [
      "cross-namespace without a grant",
      [service("far", [{ port: 80 }], "other")],
      backend("far", 80, 1, "other"),
      "ResolvedRefs=False/RefNotPermitted",
    ],
  ];
  for (const [what, extra, bad, want] of cases) {
    const r = run([
      ...blixtClass(),
      gateway("gw", [tcp()]),
      ...webService,
      ...extra,
      route("TCPRoute", "r", [gwRef()], [backend("web", 80, 3), bad as never]),
    ]);
    assert.equal(routeShows(r, "r", "ResolvedRefs"), want, what);
    assert.equal(
      routeShows(r, "r", "Accepted"),
      "Accepted=True/Accepted",
      what,
    );
    const e = tableOf(r).spec.entries[0];
    assert.equal(e?.rejectWeight, 250000, what);
    assert.deepEqual(e?.backends.map((b) => b.weight), [375000, 375000], what);
  }
});

Deno.test("a cross-namespace backendRef is allowed by a ReferenceGrant for the route's kind and namespace", () => {
  const objects = (grant: SnapshotObject) => [
    ...blixtClass(),
    gateway("gw", [tcp()]),
    service("far", [{ port: 80 }], "other"),
    endpointSlice("far", [{ port: 80 }], [{ ip: "198.19.3.3" }], {
      namespace: "other",
    }),
    grant,
    route("TCPRoute", "r", [gwRef()], [backend("far", 80, 1, "other")]),
  ];
  const granted = run(
    objects(referenceGrant("other", "TCPRoute", "default", "far")),
  );
  assert.equal(
    routeShows(granted, "r", "ResolvedRefs"),
    "ResolvedRefs=True/ResolvedRefs",
  );
  assert.equal(tableOf(granted).spec.entries[0]?.backends.length, 1);
  const wrongKind = run(
    objects(referenceGrant("other", "UDPRoute", "default")),
  );
  assert.equal(
    routeShows(wrongKind, "r", "ResolvedRefs"),
    "ResolvedRefs=False/RefNotPermitted",
  );
  const wrongName = run(
    objects(referenceGrant("other", "TCPRoute", "default", "near")),
  );
  assert.equal(
    routeShows(wrongName, "r", "ResolvedRefs"),
    "ResolvedRefs=False/RefNotPermitted",
  );
});

Deno.test("a Service without ready endpoints resolves, but its share of traffic is rejected", () => {
  const r = run([
    ...blixtClass(),
    gateway("gw", [tcp()]),
    service("web", [{ port: 80 }]),
    route("TCPRoute", "r", [gwRef()], [backend("web")]),
  ]);
  assert.equal(
    routeShows(r, "r", "ResolvedRefs"),
    "ResolvedRefs=True/ResolvedRefs",
  );
  assert.equal(tableOf(r).spec.entries[0]?.rejectWeight, 1_000_000);
});

Deno.test("a listener without routes is still programmed, rejecting all its traffic", () => {
  const e = tableOf(run([...blixtClass(), gateway("gw", [tcp()])])).spec.entries[0];
  assert.deepEqual({
    backends: e?.backends,
    rejectWeight: e?.rejectWeight,
    route: e?.route,
  }, { backends: [], rejectWeight: 0, route: undefined });
});

Deno.test("the table is owned by the Gateway, labelled part-of blixt, and carries the class's local-only option", () => {
  const objects = [
    gatewayClass("blixt", {
      parametersRef: {
        group: "blixt.dev",
        kind: "GatewayClassConfig",
        name: "blixt-config",
      },
    }),
    classConfig(["198.18.0.0/29"], true),
    gateway("gw", [tcp()]),
  ];
  const t = tableOf(run(objects));
  assert.equal(t.metadata.ownerReferences?.[0]?.uid, "uid-gw");
  assert.equal(t.metadata.ownerReferences?.[0]?.controller, true);
  assert.deepEqual(t.metadata.labels, { "app.kubernetes.io/part-of": "blixt" });
  assert.equal(t.spec.localBackendsOnly, true);
});

// --- Lifecycle -------------------------------------------------------------------------

Deno.test("a managed Gateway gets the finalizer; a deleted one loses its table, its route entries and the finalizer", () => {
  const gw = gateway("gw", [tcp()]);
  assert.equal(run([...blixtClass(), gw]).finalizer, "add");
  const r0 = route("TCPRoute", "r", [gwRef()], [backend("web")]);
  r0.status = {
    parents: [{
      parentRef: { name: "gw" },
      controllerName: "blixt.dev/gateway-controller",
      conditions: [],
    }],
  };
  const deleting = {
    ...gw,
    metadata: {
      ...gw.metadata,
      deletionTimestamp: NOW,
      finalizers: ["blixt.dev/routing-table"],
    },
  };
  const r = run([...blixtClass(), deleting as never, r0]);
  assert.equal(r.managed, false);
  assert.equal(r.table.action, "delete");
  assert.equal(r.finalizer, "remove");
  assert.deepEqual(r.routeStatuses[0]?.parents, []);
});

Deno.test("a Gateway of another controller's class is left alone", () => {
  const other = gatewayClass("blixt");
  other.spec.controllerName = "example.com/other";
  const r = run([other, gateway("gw", [tcp()])]);
  assert.equal(r.managed, false);
  assert.equal(r.status, undefined);
  assert.equal(r.finalizer, "none");
});

Deno.test("a Secret summarized twice (informer, then snapshot) keeps its verdict and no data", () => {
  const once = summarizeSecret(secret("cert") as unknown as SecretObject);
  const twice = summarizeSecret({ ...once } as SecretObject);
  assert.deepEqual(twice, once);
  assert.equal(once.tlsProblem, undefined);
  assert.ok(!("data" in once));
  const bad = summarizeSecret(secret("bad", { key: TEST_CERT }) as unknown as SecretObject);
  assert.equal(summarizeSecret(bad as SecretObject).tlsProblem, "tls.key is not a PEM private key");
});

Deno.test("a static address in a Service CIDR, a node's pod CIDR or a node address is Programmed=False/AddressNotUsable", () => {
  const cases: [string, string][] = [
    ["198.18.80.250", "Service CIDR 198.18.80.0/24"],
    ["198.18.64.7", "pod CIDR 198.18.64.0/24 of node n1"],
    ["198.18.1.2", "an address of node n1"],
  ];
  for (const [value, why] of cases) {
    const r = run([
      ...blixtClass(),
      {
        apiVersion: "networking.k8s.io/v1",
        kind: "ServiceCIDR",
        metadata: { name: "kubernetes" },
        spec: { cidrs: ["198.18.80.0/24"] },
      },
      {
        ...node("n1"),
        spec: { podCIDR: "198.18.64.0/24", podCIDRs: ["198.18.64.0/24"] },
        status: {
          conditions: [{ type: "Ready", status: "True" }],
          addresses: [{ type: "InternalIP", address: "198.18.1.2" }],
        },
      } as SnapshotObject,
      gateway("gw", [tcp()], { addresses: [{ value }, { value: "198.18.5.5" }] }),
    ]);
    assert.equal(gatewayShows(r, "Accepted"), "Accepted=True/Accepted", value);
    assert.equal(gatewayShows(r, "Programmed"), "Programmed=False/AddressNotUsable", value);
    const message = r.status?.conditions.find((c) => c.type === "Programmed")?.message ?? "";
    assert.ok(message.includes(why), message);
    assert.deepEqual(r.status?.addresses.map((a) => a.value), ["198.18.5.5"]);
  }
});

// --- Programmed across table changes ---------------------------------------------------

/**
 * A Gateway with a TCPRoute to Service `web`, two nodes running agents, and
 * the operator's loop played by hand: reconcile, write the table (a new
 * generation, seen at a time), write the status, agents report.
 */
function churnWorld() {
  const nowMs = Date.parse(NOW);
  const s = snapshotOf([
    ...blixtClass(),
    gateway("gw", [tcp()], { addresses: [{ value: "198.18.0.10" }] }),
    route("TCPRoute", "r", [gwRef()], [backend("web")]),
    ...webService,
    ...["n1", "n2"].flatMap((n) => [node(n), agentLease(n)]),
  ]);
  let generation = 0;
  const world = {
    s,
    reconcile: (options: { atMs?: number } = {}) =>
      reconcile("default/gw", s, { now: NOW, nowMs: options.atMs ?? nowMs }),
    /** Writes the table reconcile wants as a new generation, seen `agoMs` before now. */
    writeTable(agoMs = 0) {
      const table = tableOf(world.reconcile());
      generation++;
      putObject(s, { ...table, metadata: { ...table.metadata, generation } }, {
        nowMs: nowMs - agoMs,
      });
      return generation;
    },
    /** Writes the Gateway status reconcile wants (as the writer would). */
    writeStatus(result: ReconcileResult) {
      const gw = s.gateways.get("default/gw")!;
      putObject(s, { ...gw, status: result.status } as SnapshotObject);
    },
    report(nodeName: string, programmed: number, errors?: string[]) {
      putObject(
        s,
        dataplaneNode(nodeName, [{
          namespace: "default",
          name: "gw",
          programmedGeneration: programmed,
          ...(errors ? { errors } : {}),
        }]),
      );
    },
    endpoints(ips: string[]) {
      putObject(
        s,
        endpointSlice(
          "web",
          [{ port: 8080, name: "http" }],
          ips.map((ip, i) => ({ ip, node: i % 2 ? "n2" : "n1" })),
        ),
      );
    },
    /** Reaches Programmed=True by the strict rule and writes it. */
    programmed() {
      const g = world.writeTable(60_000);
      world.report("n1", g);
      world.report("n2", g);
      const r = world.reconcile();
      assert.equal(gatewayShows(r, "Programmed"), "Programmed=True/Programmed");
      world.writeStatus(r);
      return r;
    },
  };
  return world;
}

Deno.test("an endpoint change of a Programmed Gateway changes nothing in its status, from the first reconcile to the nodes catching up", () => {
  const w = churnWorld();
  const before = w.programmed().status;
  w.endpoints(["198.19.0.1", "198.19.0.2", "198.19.0.3"]);
  // 1: the table is not written yet
  const first = w.reconcile();
  assert.deepEqual(first.status, before);
  assert.equal(first.recheckAfterMs, undefined);
  // 2: written; both nodes still serve the earlier generation
  const g = w.writeTable();
  const second = w.reconcile();
  assert.deepEqual(second.status, before);
  assert.equal(second.recheckAfterMs, 10_000, "a timer at the end of the grace period");
  // 3: one node caught up, then the other
  w.report("n1", g);
  assert.deepEqual(w.reconcile().status, before);
  w.report("n2", g);
  const last = w.reconcile();
  assert.deepEqual(last.status, before);
  assert.equal(last.recheckAfterMs, undefined);
});

Deno.test("programmedGeneration is the table generation once every node reports it, held or not", () => {
  const w = churnWorld();
  const first = w.programmed();
  assert.equal(first.programmedGeneration, 1);
  w.endpoints(["198.19.0.1", "198.19.0.2"]);
  const g = w.writeTable();
  w.report("n1", g);
  const held = w.reconcile();
  assert.equal(gatewayShows(held, "Programmed"), "Programmed=True/Programmed");
  assert.equal(held.programmedGeneration, undefined, "n2 still serves the earlier generation");
  w.report("n2", g);
  assert.equal(w.reconcile().programmedGeneration, g);
  w.report("n2", g, ["map full"]);
  assert.equal(w.reconcile().programmedGeneration, undefined, "an error is not programmed");
});

Deno.test("each node's report of the Gateway's table is found among thousands, and read anew when the node writes again", () => {
  const w = churnWorld();
  w.programmed();
  w.endpoints(["198.19.0.1"]);
  const g = w.writeTable();
  const report = (nodeName: string, generation: number) =>
    putObject(
      w.s,
      dataplaneNode(
        nodeName,
        Array.from({ length: 3000 }, (_, i) => ({
          namespace: "default",
          name: i === 1500 ? "gw" : `other-${i}`,
          programmedGeneration: i === 1500 ? generation : 1,
        })),
      ),
    );
  report("n1", g);
  report("n2", g);
  assert.equal(w.reconcile().programmedGeneration, g);
  report("n2", g - 1); // a newer object of n2 with an older generation (e.g. a re-created agent)
  assert.equal(w.reconcile().programmedGeneration, undefined);
  report("n2", g);
  assert.equal(w.reconcile().programmedGeneration, g);
});

Deno.test("a Pending Programmed message names ten lagging nodes and counts the rest", () => {
  const names = Array.from({ length: 2000 }, (_, i) => `node-${String(i).padStart(4, "0")}`);
  const s = createSnapshot([
    ...blixtClass(),
    gateway("gw", [listener("tcp", 5000)]),
    ...names.flatMap((n) => [node(n), agentLease(n), dataplaneNode(n, [])]),
  ]);
  const r = reconcile("default/gw", s, { now: NOW });
  putObject(s, { ...tableOf(r), metadata: { ...tableOf(r).metadata, generation: 1 } });
  const pending = reconcile("default/gw", s, { now: NOW });
  assert.equal(gatewayShows(pending, "Programmed"), "Programmed=False/Pending");
  const message = pending.status?.conditions.find((c) => c.type === "Programmed")?.message ?? "";
  assert.match(message, /programmed on 0 of 2000 ready nodes/);
  assert.match(
    message,
    /waiting for node-0000: generation none of 1, .*node-0009: .* and 1990 more$/,
  );
  assert.ok(message.length < 1000, `${message.length} characters`);
});

Deno.test("a node that serves an earlier table beyond the grace period makes a Programmed Gateway Pending, naming it", () => {
  const w = churnWorld();
  w.programmed();
  w.endpoints(["198.19.0.1"]);
  const g = w.writeTable(10_001);
  w.report("n1", g);
  const r = w.reconcile();
  assert.equal(gatewayShows(r, "Programmed"), "Programmed=False/Pending");
  assert.match(
    r.status?.conditions.find((c) => c.type === "Programmed")?.message ?? "",
    new RegExp(`waiting for n2: generation ${g - 1} of ${g}`),
  );
  assert.equal(listenerShows(r, "tcp", "Programmed"), "Programmed=False/Pending");
  // 9.9 s behind is still within the grace: True, and a recheck when it ends
  const w2 = churnWorld();
  w2.programmed();
  w2.endpoints(["198.19.0.1"]);
  w2.writeTable(9_900);
  const held = w2.reconcile();
  assert.equal(gatewayShows(held, "Programmed"), "Programmed=True/Programmed");
  assert.equal(held.recheckAfterMs, 100);
});

Deno.test("a node's error for the table revokes Programmed at once", () => {
  const w = churnWorld();
  w.programmed();
  w.endpoints(["198.19.0.1"]);
  const g = w.writeTable();
  w.report("n1", g);
  w.report("n2", g - 1, ["map full"]);
  const r = w.reconcile();
  assert.equal(gatewayShows(r, "Programmed"), "Programmed=False/Pending");
  assert.match(
    r.status?.conditions.find((c) => c.type === "Programmed")?.message ?? "",
    /n2: generation \d+ of \d+ \(map full\)/,
  );
});

Deno.test("a Gateway spec change keeps the strict rule: Programmed waits for every node", () => {
  const w = churnWorld();
  w.programmed();
  const gw = w.s.gateways.get("default/gw")!;
  putObject(w.s, { ...gw, metadata: { ...gw.metadata, generation: 2 } } as SnapshotObject);
  w.endpoints(["198.19.0.1"]);
  assert.equal(gatewayShows(w.reconcile(), "Programmed"), "Programmed=False/Pending");
  w.writeTable();
  assert.equal(gatewayShows(w.reconcile(), "Programmed"), "Programmed=False/Pending");
});

Deno.test("a table whose frontends change is not held: Programmed waits for every node", () => {
  const w = churnWorld();
  w.programmed();
  // the table written holds another address (as if the pool moved it): frontends differ
  const table = w.s.routingTables.get("default/gw")!;
  putObject(w.s, {
    ...table,
    metadata: { ...table.metadata, generation: 9 },
    spec: {
      ...table.spec,
      addresses: ["198.18.0.11"],
      entries: table.spec.entries.map((e) => ({ ...e, address: "198.18.0.11" })),
    },
  });
  const r = w.reconcile();
  assert.equal(gatewayShows(r, "Programmed"), "Programmed=False/Pending");
  assert.match(
    r.status?.conditions.find((c) => c.type === "Programmed")?.message ?? "",
    /waiting for the RoutingTable to be written/,
  );
});

Deno.test("a Gateway that was not Programmed becomes so only by the strict rule", () => {
  const w = churnWorld();
  const g = w.writeTable(60_000);
  w.report("n1", g);
  w.report("n2", g);
  w.endpoints(["198.19.0.1"]);
  const g2 = w.writeTable();
  w.report("n1", g2);
  const r = w.reconcile();
  assert.equal(gatewayShows(r, "Programmed"), "Programmed=False/Pending");
  w.report("n2", g2);
  assert.equal(gatewayShows(w.reconcile(), "Programmed"), "Programmed=True/Programmed");
});

Deno.test("a stopped agent revokes a held Programmed: AgentNotRunning", () => {
  const w = churnWorld();
  w.programmed();
  w.endpoints(["198.19.0.1"]);
  w.writeTable();
  putObject(w.s, agentLease("n2", { released: true }));
  assert.equal(gatewayShows(w.reconcile(), "Programmed"), "Programmed=False/AgentNotRunning");
});
