import assert from "node:assert/strict";
import { addressPlan, MAX_NODES, MAX_SLOTS, podAddress } from "./address_plan.ts";

Deno.test("address plan: slot 0 with two nodes", () => {
  const plan = addressPlan(0, 2);
  assert.equal(plan.bridgeIP, "198.18.0.1");
  assert.equal(plan.serviceCIDR, "198.18.16.0/24");
  assert.equal(plan.gatewayPool, "198.18.24.0/24");
  assert.deepEqual(
    plan.nodes.map((n) => [n.name, n.ip, n.podCIDR, n.podGateway]),
    [
      ["node-1", "198.18.0.11", "198.18.1.0/24", "198.18.1.1"],
      ["node-2", "198.18.0.12", "198.18.2.0/24", "198.18.2.1"],
    ],
  );
});

Deno.test("address plan: slots never overlap and stay inside 198.18.0.0/17 and 198.19.0.0/17", () => {
  const seen = new Set<string>();
  for (let slot = 0; slot < MAX_SLOTS; slot++) {
    const plan = addressPlan(slot, MAX_NODES);
    const blocks = [
      plan.nodeNetwork,
      plan.serviceCIDR,
      plan.gatewayPool,
      ...plan.nodes.map((n) => n.podCIDR),
    ];
    for (const block of blocks) {
      assert.ok(!seen.has(block), `${block} is used twice`);
      seen.add(block);
      const third = Number(block.split(".")[2]);
      const inside = (block.startsWith("198.18.") || block.startsWith("198.19.")) && third < 128;
      assert.ok(inside, `${block} is inside 198.18.0.0/17 or 198.19.0.0/17`);
    }
  }
});

Deno.test("address plan: out-of-range slots, node counts and pod hosts are refused", () => {
  assert.throws(() => addressPlan(MAX_SLOTS, 1), RangeError);
  assert.throws(() => addressPlan(0, 0), RangeError);
  assert.throws(() => addressPlan(0, MAX_NODES + 1), RangeError);
  const node = addressPlan(1, 1).nodes[0]!;
  assert.equal(podAddress(node, 2), "198.18.33.2");
  assert.equal(addressPlan(5, 1).bridgeIP, "198.19.32.1");
  assert.throws(() => podAddress(node, 1), RangeError);
  assert.throws(() => podAddress(node, 255), RangeError);
});
