import assert from "node:assert/strict";
import { type ServiceCounters, serviceCountersOf, validateDataplaneNode } from "../api/mod.ts";
import { AGENT_FEATURES, buildStatus, countersStatus, INTERFACE_NOT_ATTACHED } from "./status.ts";

Deno.test("the agent lists backendsFrom, endpoints and compactEntries in status.features, so the operator may use them", () => {
  const status = buildStatus({ tables: [], programmed: new Map(), synced: true }, undefined);
  const all = ["backendsFrom", "endpoints", "compactEntries"];
  assert.deepEqual(status.features, all);
  assert.deepEqual(AGENT_FEATURES, all);
});

Deno.test("an interface without the program makes the node Degraded=True/InterfaceNotAttached, not un-Ready", () => {
  const status = buildStatus(
    {
      tables: [],
      programmed: new Map(),
      synced: true,
      interfaceProblems: ["cni0 (pods): not present since it was deleted"],
    },
    undefined,
    { now: "2026-11-27T08:00:00Z" },
  );
  const by = (type: string) => status.conditions?.find((c) => c.type === type);
  assert.equal(by("Ready")?.status, "True");
  assert.deepEqual(
    [by("Degraded")?.status, by("Degraded")?.reason, by("Degraded")?.message],
    [
      "True",
      INTERFACE_NOT_ATTACHED,
      "the program is not on cni0 (pods): not present since it was deleted",
    ],
  );
  const fixed = buildStatus({ tables: [], programmed: new Map(), synced: true }, status);
  assert.equal(fixed.conditions?.find((c) => c.type === "Degraded")?.reason, "NoProblems");
});

Deno.test("the counters go into the status compact, encoded once per read, and read back as counted", () => {
  const services: ServiceCounters[] = [{
    address: "198.18.200.1",
    port: 80,
    protocol: "TCP",
    packets: 30,
    bytes: 2400,
    newFlows: 3,
    rejectedFlows: 1,
    backends: [{ ip: "198.19.1.5", port: 8080, packets: 30, bytes: 2400, newFlows: 3 }],
  }];
  const read = { collectedAt: "2026-11-27T12:00:00Z", services, snatExhausted: 2 };
  const status = buildStatus({ tables: [], programmed: new Map(), synced: true }, undefined);
  status.counters = countersStatus(read);
  assert.equal(countersStatus(read), status.counters, "a later status write reuses the encoding");
  assert.deepEqual(status.counters.services, []);
  assert.deepEqual(status.counters.frontends, [{
    service: "198.18.200.1 80 TCP 30 2400 3 1",
    backends: ["198.19.1.5 8080 30 2400 3"],
  }]);
  assert.equal(status.counters.snatExhausted, 2);
  const written = {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "DataplaneNode",
    metadata: { name: "node-1" },
    spec: { nodeName: "node-1" },
    status,
  };
  assert.ok(validateDataplaneNode(written).ok);
  assert.deepEqual(serviceCountersOf(status.counters), services);
});
