import assert from "node:assert/strict";
import {
  agentLeaseName,
  agentLeaseRecord,
  agentLiveness,
  nodeOfAgentLease,
} from "./agent_lease.ts";

Deno.test("agent Lease names: blixt-agent-<node>, and back", () => {
  assert.equal(agentLeaseName("node-1"), "blixt-agent-node-1");
  assert.equal(nodeOfAgentLease("blixt-agent-node-1"), "node-1");
  assert.equal(nodeOfAgentLease("blixt-operator"), undefined);
  assert.equal(nodeOfAgentLease("blixt-agent-"), undefined);
});

Deno.test("an agent runs while its Lease is held and younger than its duration, counted from when it was seen", () => {
  const lease = {
    metadata: { name: "blixt-agent-n1" },
    spec: {
      holderIdentity: "agent-n1",
      leaseDurationSeconds: 40,
      renewTime: "2026-02-01T00:00:00.000000Z",
    },
  };
  const seen = agentLeaseRecord(lease, { observedAtMs: 1_000_000 })!;
  assert.equal(seen.node, "n1");
  assert.equal(agentLiveness(seen, 1_000_000 + 39_999).alive, true);
  assert.deepEqual(agentLiveness(seen, 1_000_000 + 52_000), {
    alive: false,
    reason: "agent Lease expired 12s ago",
  });
  // without an observation time (a one-shot reader), renewTime is trusted
  const trusted = agentLeaseRecord(lease)!;
  assert.equal(trusted.observedAtMs, Date.parse("2026-02-01T00:00:00Z"));
  assert.equal(agentLiveness(trusted, Date.parse("2026-02-01T00:00:30Z")).alive, true);
  assert.equal(agentLiveness(undefined, 0).reason, "no agent Lease");
  const released = agentLeaseRecord({ ...lease, spec: { ...lease.spec, holderIdentity: "" } })!;
  assert.deepEqual(agentLiveness(released, trusted.observedAtMs), {
    alive: false,
    reason: "agent stopped (Lease released)",
  });
  assert.equal(agentLeaseRecord({ metadata: { name: "blixt-operator" } }), undefined);
});
