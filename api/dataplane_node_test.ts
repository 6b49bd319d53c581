import assert from "node:assert/strict";
import {
  compactCounters,
  type CountersSnapshot,
  type DataplaneNode,
  type ServiceCounters,
  serviceCountersOf,
  validateDataplaneNode,
} from "./dataplane_node.ts";

const services: ServiceCounters[] = [{
  address: "198.18.200.1",
  port: 5000,
  protocol: "TCP",
  packets: 1200,
  bytes: 96000,
  newFlows: 40,
  rejectedFlows: 10,
  backends: [
    { ip: "198.18.33.2", port: 8080, packets: 700, bytes: 56000, newFlows: 16 },
    { ip: "2001:db8::5", port: 8080, packets: 0, bytes: 0, newFlows: 0 },
  ],
}, {
  address: "2001:db8::53",
  port: 53,
  protocol: "UDP",
  packets: Number.MAX_SAFE_INTEGER,
  bytes: 0,
  newFlows: 1,
  rejectedFlows: 0,
  backends: [],
}];

function node(counters: CountersSnapshot): DataplaneNode {
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "DataplaneNode",
    metadata: { name: "node-1" },
    spec: { nodeName: "node-1" },
    status: { counters },
  };
}

Deno.test("compact counters are one string per frontend and backend, services left empty", () => {
  const c = compactCounters({ collectedAt: "2026-11-27T12:00:00Z", services, snatExhausted: 3 });
  assert.deepEqual(c, {
    collectedAt: "2026-11-27T12:00:00Z",
    services: [],
    frontends: [{
      service: "198.18.200.1 5000 TCP 1200 96000 40 10",
      backends: ["198.18.33.2 8080 700 56000 16", "2001:db8::5 8080 0 0 0"],
    }, {
      service: "2001:db8::53 53 UDP 9007199254740991 0 1 0",
      backends: [],
    }],
    snatExhausted: 3,
  });
});

Deno.test("a reader gets the same counters from the compact form as from an older agent's objects", () => {
  const older: CountersSnapshot = { collectedAt: "2026-11-27T12:00:00Z", services };
  const compact = compactCounters(older);
  assert.ok(validateDataplaneNode(node(older)).ok);
  assert.ok(validateDataplaneNode(node(compact)).ok);
  assert.deepEqual(serviceCountersOf(compact), services);
  assert.deepEqual(serviceCountersOf(older), services);
});

Deno.test("malformed compact counters are refused with their field path", () => {
  const c = compactCounters({ collectedAt: "2026-11-27T12:00:00Z", services });
  const broken: [string, string][] = [
    ["198.18.33.2 8080 700 56000", "status.counters.frontends[0].backends[0]"],
    ["198.18.33.2 0 700 56000 16", "status.counters.frontends[0].backends[0]"],
    ["198.18.33 8080 700 56000 16", "status.counters.frontends[0].backends[0]"],
    ["198.18.33.2 8080 -1 56000 16", "status.counters.frontends[0].backends[0]"],
    ["198.18.33.2 8080 9007199254740992 1 1", "status.counters.frontends[0].backends[0]"],
    ["198.18.33.2  8080 700 56000 16", "status.counters.frontends[0].backends[0]"],
  ];
  for (const [text, path] of broken) {
    const bad = structuredClone(c);
    bad.frontends![0]!.backends[0] = text;
    const r = validateDataplaneNode(node(bad));
    assert.equal(r.ok, false, text);
    if (!r.ok) assert.equal(r.errors[0]?.path, path, text);
  }
  const bad = structuredClone(c);
  bad.frontends![1]!.service = "2001:db8::53 53 SCTP 1 0 1 0";
  const r = validateDataplaneNode(node(bad));
  assert.equal(r.ok, false);
  if (!r.ok) assert.equal(r.errors[0]?.path, "status.counters.frontends[1].service");
});
