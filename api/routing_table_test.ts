import assert from "node:assert/strict";
import { backendService, type RoutingTable, validateRoutingTable } from "./routing_table.ts";

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
