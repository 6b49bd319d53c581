import assert from "node:assert/strict";
import {
  backendService,
  expandRoutingTable,
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
