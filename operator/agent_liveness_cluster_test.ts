/**
 * Agent liveness against the API server: the operator runs in-process, the
 * agents' side is the agent's own Lease holder (`agent/liveness_lease.ts`)
 * with a 3 s Lease renewed every second, and the agents' DataplaneNode reports
 * are written as an agent writes them. A node whose agent stops renewing (a
 * crash: the Lease runs out) or gives its Lease up (a graceful stop) makes the
 * Gateway `Programmed=False/AgentNotRunning`, naming the node; an agent that
 * holds its Lease again brings `Programmed=True` back.
 */

import assert from "node:assert/strict";
import { LivenessLease } from "../agent/liveness_lease.ts";
import { converge, type OperatorCluster, withOperatorCluster } from "./_cluster_testing.ts";

const CLUSTER = "op2-test-liveness";
const LEASE_SECONDS = 3;

const YAML = `
apiVersion: blixt.dev/v1alpha1
kind: GatewayClassConfig
metadata: { name: blixt-config }
spec:
  addressPools: [{ name: local, cidr: POOL }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: blixt }
spec:
  controllerName: blixt.dev/gateway-controller
  parametersRef: { group: blixt.dev, kind: GatewayClassConfig, name: blixt-config }
---
apiVersion: v1
kind: Namespace
metadata: { name: live }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: live }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
`;

/** The agent's Lease holder for `node`, as the agent runs it, with a short Lease. */
function holdLease(oc: OperatorCluster, node: string): LivenessLease {
  return new LivenessLease(oc.kc, {
    node,
    identity: `agent-${node}-${crypto.randomUUID().slice(0, 8)}`,
    durationSeconds: LEASE_SECONDS,
    renewIntervalSeconds: 1,
    log: () => {},
  }).start();
}

/** What an agent writes: its DataplaneNode, then `generation` of live/gw as programmed. */
async function reportProgrammed(oc: OperatorCluster, node: string, generation: number) {
  await oc.apply(`
apiVersion: blixt.dev/v1alpha1
kind: DataplaneNode
metadata: { name: ${node} }
spec: { nodeName: ${node} }
`);
  const status = {
    status: {
      tables: [{
        namespace: "live",
        name: "gw",
        observedGeneration: generation,
        programmedGeneration: generation,
        entries: 1,
        backends: 0,
      }],
    },
  };
  await oc.cluster.kubectl([
    "patch",
    "dataplanenode",
    node,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify(status),
  ]);
}

/** The Gateway's Programmed condition as `Status/Reason`, and its message. */
async function programmed(oc: OperatorCluster): Promise<{ shows: string; message: string }> {
  const g = await oc.get(["gateway", "-n", "live", "gw"]);
  const c = (g.status?.conditions ?? []).find((x: { type: string }) => x.type === "Programmed");
  return { shows: `${c?.status}/${c?.reason}`, message: c?.message ?? "" };
}

Deno.test("agent liveness: a node whose agent stops holding its Lease makes the Gateway Programmed=False naming it", async (t) => {
  await withOperatorCluster(CLUSTER, async (oc) => {
    await oc.apply(YAML.replace("POOL", oc.cluster.plan.gatewayPool));
    const generation = await converge(async () => {
      const table = await oc.get(["routingtable", "-n", "live", "gw"]);
      return table.metadata.generation as number;
    });
    let node1 = holdLease(oc, "node-1");
    let node2 = holdLease(oc, "node-2");
    try {
      await reportProgrammed(oc, "node-1", generation);
      await reportProgrammed(oc, "node-2", generation);
      await converge(async () => {
        assert.equal((await programmed(oc)).shows, "True/Programmed");
      });

      await t.step(
        "an agent that dies: Programmed=False/AgentNotRunning within the lease duration, naming the node",
        async () => {
          await node2.stop({ release: false }); // no more renewals, as after kill -9
          const stopped = performance.now();
          const p = await converge(async () => {
            const p = await programmed(oc);
            assert.equal(p.shows, "False/AgentNotRunning", p.message);
            return p;
          }, { timeoutMs: (LEASE_SECONDS + 10) * 1000 });
          const seconds = (performance.now() - stopped) / 1000;
          assert.match(p.message, /not running on node-2 \(agent Lease expired \d+s ago\)/);
          assert.doesNotMatch(p.message, /node-1 \(/);
          // The last renewal was up to a second before the stop: within the duration, plus a
          // second for the operator's write and this poll.
          assert.ok(seconds < LEASE_SECONDS + 1, `took ${seconds.toFixed(1)} s`);
          assert.ok(seconds > LEASE_SECONDS - 1.5, `too early: ${seconds.toFixed(1)} s`);
        },
      );

      await t.step("the agent takes its Lease again: Programmed=True", async () => {
        node2 = holdLease(oc, "node-2");
        await converge(async () => {
          assert.equal((await programmed(oc)).shows, "True/Programmed");
        });
      });

      await t.step(
        "an agent that stops gracefully gives its Lease up: Programmed=False at once",
        async () => {
          const stopped = performance.now();
          await node1.stop({ release: true });
          const p = await converge(async () => {
            const p = await programmed(oc);
            assert.equal(p.shows, "False/AgentNotRunning", p.message);
            return p;
          });
          const seconds = (performance.now() - stopped) / 1000;
          assert.match(p.message, /not running on node-1 \(agent stopped \(Lease released\)\)/);
          assert.ok(seconds < LEASE_SECONDS - 1, `took ${seconds.toFixed(1)} s`);
          node1 = holdLease(oc, "node-1");
          await converge(async () => {
            assert.equal((await programmed(oc)).shows, "True/Programmed");
          });
        },
      );

      await t.step(
        "the Lease deleted: Programmed=False; a Node that is not Ready no longer counts",
        async () => {
          await node1.stop({ release: false });
          await oc.cluster.kubectl(["delete", "lease", "-n", "blixt-system", "blixt-agent-node-1"]);
          await converge(async () => {
            const p = await programmed(oc);
            assert.equal(p.shows, "False/AgentNotRunning", p.message);
            assert.match(p.message, /not running on node-1 \(no agent Lease\)/);
          });
          // a drained, NotReady node is not waited for, whatever its agent does
          await oc.cluster.kubectl([
            "patch",
            "node",
            "node-1",
            "--subresource=status",
            "--type=strategic",
            "-p",
            JSON.stringify({
              status: { conditions: [{ type: "Ready", status: "False", reason: "Test" }] },
            }),
          ]);
          await converge(async () => {
            assert.equal((await programmed(oc)).shows, "True/Programmed");
          });
        },
      );
    } finally {
      await node1.stop({ release: false });
      await node2.stop({ release: false });
    }
  }, { nodes: 2 });
});
