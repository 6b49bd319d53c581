/**
 * `Programmed` across table changes, against a real API server with the
 * operator running: an endpoint change of a Programmed Gateway writes no
 * Gateway status while the nodes catch up; a node that lags beyond the grace
 * period, or reports an error, makes it Pending naming the node; a Gateway
 * spec change waits for every node (docs/decisions.md). The agents are played
 * by the test: their DataplaneNodes and liveness Leases, written as they do.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type KubeObject } from "../kube/client.ts";
import { Informer } from "../kube/informer.ts";
import { type Cond, converge, withOperatorCluster } from "./_cluster_testing.ts";
import { PROGRAMMED_GRACE_MS } from "./gateway.ts";

const NS = "c-churn";

function slice(ips: string[]): string {
  const endpoints = ips.map((ip) =>
    `{ addresses: [${ip}], nodeName: node-1, conditions: { ready: true } }`
  );
  return `
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-1, namespace: ${NS}, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: tcp, port: 8080, protocol: TCP }]
endpoints: [${endpoints.join(", ")}]
`;
}

function gatewayYaml(listeners: string): string {
  return `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: ${NS} }
spec:
  gatewayClassName: blixt
  listeners: ${listeners}
`;
}

const TCP = "[{ name: tcp, port: 80, protocol: TCP }]";

function world(pool: string): string {
  return `
apiVersion: v1
kind: Namespace
metadata: { name: ${NS} }
---
apiVersion: blixt.dev/v1alpha1
kind: GatewayClassConfig
metadata: { name: blixt }
spec: { addressPools: [{ name: test, cidr: ${pool} }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: blixt }
spec:
  controllerName: blixt.dev/gateway-controller
  parametersRef: { group: blixt.dev, kind: GatewayClassConfig, name: blixt }
---
${gatewayYaml(TCP)}
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: ${NS} }
spec: { ports: [{ name: tcp, port: 80, targetPort: 8080 }] }
---
${slice(["198.19.40.2"])}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: web, namespace: ${NS} }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`;
}

/** An agent's DataplaneNode and its liveness Lease (held for an hour). */
function agent(node: string): string {
  return `
apiVersion: blixt.dev/v1alpha1
kind: DataplaneNode
metadata: { name: ${node} }
spec: { nodeName: ${node} }
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: blixt-agent-${node}
  namespace: blixt-system
  labels: { app.kubernetes.io/part-of: blixt, app.kubernetes.io/component: agent }
spec:
  holderIdentity: agent-${node}
  leaseDurationSeconds: 3600
  renewTime: "${new Date().toISOString().replace("Z", "000Z")}"
`;
}

Deno.test("Programmed across endpoint changes: no Gateway status write while nodes catch up; a lag beyond the grace or an error names the node; a spec change waits for every node", async () => {
  await withOperatorCluster("op2-test-prog", async (oc) => {
    /** What an agent writes: `programmed` in the maps, or `errors` for `observed`. */
    const report = async (
      node: string,
      programmed: number,
      failed?: { observed: number; errors: string[] },
    ) => {
      await oc.cluster.kubectl([
        "patch",
        "dataplanenode",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        JSON.stringify({
          status: {
            // not `endpoints` as well: the table would be rewritten as strings once both nodes
            // list it, moving the generation this test follows (writer_test.ts tests that form)
            features: ["backendsFrom"],
            tables: [{
              namespace: NS,
              name: "gw",
              observedGeneration: failed?.observed ?? programmed,
              programmedGeneration: programmed,
              ...(failed ? { errors: failed.errors } : {}),
              entries: 1,
              backends: 1,
            }],
          },
        }),
      ]);
    };
    const programmed = async (): Promise<Cond> => {
      const g = await oc.get(["gateway", "-n", NS, "gw"]);
      return (g.status?.conditions as Cond[] | undefined)?.find((c) => c.type === "Programmed") ??
        { type: "Programmed", status: "Unknown", reason: "", message: "" };
    };
    /** Waits for the table to carry `ip` (or not, `present: false`); returns its generation. */
    const tableWith = (ip: string, present = true) =>
      converge(async () => {
        const t = await oc.get(["routingtable", "-n", NS, "gw"]);
        assert.equal(JSON.stringify(t.spec).includes(`"${ip}"`), present, `table and ${ip}`);
        return t.metadata.generation as number;
      });

    await oc.apply(
      world(oc.cluster.plan.gatewayPool) + "---" + agent("node-1") + "---" + agent("node-2"),
    );
    let generation = await tableWith("198.19.40.2");
    await report("node-1", generation);
    await report("node-2", generation);
    await converge(async () => assert.equal((await programmed()).status, "True"));

    // every Gateway write from here on, seen through a watch
    const writes: { at: number; programmed: string }[] = [];
    const gateways = new Informer(oc.kc, {
      apiVersion: "gateway.networking.k8s.io/v1",
      kind: "Gateway",
      plural: "gateways",
    }, { namespace: NS, log: () => {} });
    gateways.on("update", (o: KubeObject) => {
      const p = ((o.status as { conditions?: Cond[] } | undefined)?.conditions ?? [])
        .find((c) => c.type === "Programmed");
      writes.push({ at: performance.now(), programmed: `${p?.status}/${p?.reason}` });
    });
    gateways.start();
    try {
      await gateways.synced;

      // 1. an endpoint change; the nodes catch up one after the other: no Gateway write at all
      await oc.apply(slice(["198.19.40.2", "198.19.40.3"]));
      generation = await tableWith("198.19.40.3");
      await new Promise((r) => setTimeout(r, 1000));
      await report("node-1", generation);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal((await programmed()).status, "True");
      await report("node-2", generation);
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(writes, [], "an endpoint change wrote the Gateway's status");

      // 2. node-2 does not catch up: Pending naming it once the grace period is over
      await oc.apply(slice(["198.19.40.2"]));
      const behind = generation;
      generation = await tableWith("198.19.40.3", false);
      assert.ok(generation > behind);
      const written = performance.now();
      await report("node-1", generation);
      const lagging = await converge(async () => {
        const p = await programmed();
        assert.equal(`${p.status}/${p.reason}`, "False/Pending");
        return p;
      }, { timeoutMs: PROGRAMMED_GRACE_MS + 10_000 });
      const after = performance.now() - written;
      assert.match(
        lagging.message ?? "",
        new RegExp(`node-2: generation ${behind} of ${generation}`),
      );
      assert.ok(
        after >= PROGRAMMED_GRACE_MS - 1000,
        `revoked ${Math.round(after)} ms after the write`,
      );
      await report("node-2", generation);
      await converge(async () => assert.equal((await programmed()).status, "True"));

      // 3. a node's error for the table revokes at once
      await oc.apply(slice(["198.19.40.2", "198.19.40.4"]));
      const served = generation;
      generation = await tableWith("198.19.40.4");
      await report("node-1", generation);
      const failed = performance.now();
      await report("node-2", served, { observed: generation, errors: ["map full"] });
      const error = await converge(async () => {
        const p = await programmed();
        assert.equal(`${p.status}/${p.reason}`, "False/Pending");
        return p;
      });
      assert.ok(performance.now() - failed < PROGRAMMED_GRACE_MS / 2);
      assert.match(error.message ?? "", /node-2: .*\(map full\)/);
      await report("node-2", generation);
      await converge(async () => assert.equal((await programmed()).status, "True"));

      // 4. a Gateway spec change (a second listener) waits for every node
      await oc.apply(gatewayYaml(`${TCP.slice(0, -1)}, { name: tcp2, port: 81, protocol: TCP }]`));
      await converge(async () => {
        const p = await programmed();
        assert.equal(`${p.status}/${p.reason}`, "False/Pending");
        assert.equal(p.observedGeneration, 2);
      });
      const spec = await converge(async () => {
        const t = await oc.get(["routingtable", "-n", NS, "gw"]);
        assert.equal(t.spec.entries.length, 2);
        // the route attaches to both listeners: the second entry takes the first's backends
        assert.equal(t.spec.entries[1].backendsFrom, `${t.spec.entries[0].address}:80/TCP`);
        return t.metadata.generation as number;
      });
      await report("node-1", spec);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal((await programmed()).status, "False");
      await report("node-2", spec);
      await converge(async () => assert.equal((await programmed()).status, "True"));
    } finally {
      await gateways.stop();
    }
  });
});
