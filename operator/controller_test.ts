/**
 * The operator running against a real API server: what users create is
 * reconciled without anyone calling reconcile, changes are followed, and a
 * standby replica takes over when the leader dies.
 */

import assert from "node:assert/strict";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { applyObject, type KubeObject } from "../kube/client.ts";
import { parseManifests } from "../kube/manifests.ts";
import { applyBlixtCrds } from "../manifests/crds.ts";
import { Operator } from "./controller.ts";
import { blixtClassYaml } from "./_cluster_testing.ts";

const NAME = "op2-test-ctl";
const quiet = () => {};

function scenario(pool: string): KubeObject[] {
  return parseManifests(`
apiVersion: v1
kind: Namespace
metadata: { name: blixt-system }
---
${blixtClassYaml(pool)}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: default }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 80, protocol: TCP }
  - { name: udp, port: 53, protocol: UDP }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: default }
spec:
  ports:
  - { name: tcp, port: 80, targetPort: 8080, protocol: TCP }
  - { name: udp, port: 53, targetPort: 8080, protocol: UDP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: echo-tcp, namespace: default }
spec:
  parentRefs: [{ name: edge, sectionName: tcp }]
  rules: [{ backendRefs: [{ name: echo, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: echo-udp, namespace: default }
spec:
  parentRefs: [{ name: edge, port: 53 }]
  rules: [{ backendRefs: [{ name: echo, port: 53 }] }]
`);
}

function slice(ips: string[]): KubeObject {
  return parseManifests(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: default
  labels: { kubernetes.io/service-name: echo }
addressType: IPv4
ports:
- { name: tcp, port: 8080, protocol: TCP }
- { name: udp, port: 8080, protocol: UDP }
endpoints: ${
    JSON.stringify(ips.map((ip) => ({
      addresses: [ip],
      nodeName: "node-1",
      conditions: { ready: true, serving: true, terminating: false },
    })))
  }
`)[0]!;
}

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} not seen in ${timeoutMs} ms${last ? `: ${last}` : ""}`);
}

interface Cond {
  type: string;
  status: string;
  reason: string;
}

Deno.test("operator: reconciles what users create, follows changes, fails over", async (t) => {
  const operators: Operator[] = [];
  try {
    const cluster = await clusterUp({ name: NAME, nodes: 1 });
    const kc = cluster.kubeConfig();
    await applyBlixtCrds(kc, { fieldManager: "blixt-test" });
    const manager = { fieldManager: "blixt-test", force: true };
    for (const obj of scenario(cluster.plan.gatewayPool)) await applyObject(kc, obj, manager);
    await applyObject(kc, slice(["198.18.1.2"]), manager);
    const json = async (args: string[]) =>
      JSON.parse(await cluster.kubectl([...args, "-o", "json"]));
    const lease = { durationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 500 };
    const a = new Operator(kc, { identity: "operator-a", lease, log: quiet });
    operators.push(a);
    await a.start();

    await t.step("the Gateway, both routes and the class get their status", async () => {
      await eventually("Gateway Accepted and both routes attached", async () => {
        const gw = await json(["get", "gateway", "edge"]);
        const accepted = (gw.status?.conditions as Cond[] | undefined)?.find((c) =>
          c.type === "Accepted"
        );
        const attached = (gw.status?.listeners as { attachedRoutes: number }[] | undefined)
          ?.map((l) => l.attachedRoutes);
        return accepted?.status === "True" && attached?.join() === "1,1" ? gw : undefined;
      });
      for (const route of ["tcproute/echo-tcp", "udproute/echo-udp"]) {
        const r = await json(["get", route]);
        const ok = (r.status.parents[0].conditions as Cond[]).find((c) => c.type === "Accepted");
        assert.equal(ok?.status, "True", route);
      }
      const gc = await json(["get", "gatewayclass", "blixt"]);
      assert.equal(
        (gc.status.conditions as Cond[]).find((c) => c.type === "Accepted")?.status,
        "True",
      );
    });

    await t.step("an endpoint added to the EndpointSlice reaches the RoutingTable", async () => {
      await applyObject(kc, slice(["198.18.1.2", "198.18.1.3"]), manager);
      await eventually("both endpoints in the table", async () => {
        const table = JSON.stringify((await json(["get", "routingtable", "edge"])).spec);
        return table.includes("198.18.1.3") && table.includes("198.18.1.2") ? true : undefined;
      }, 5000);
    });

    await t.step("the route deleted: the listener counts no route", async () => {
      await cluster.kubectl(["delete", "udproute", "echo-udp"]);
      await eventually("udp listener with 0 routes", async () => {
        const gw = await json(["get", "gateway", "edge"]);
        const udp = (gw.status.listeners as { name: string; attachedRoutes: number }[])
          .find((l) => l.name === "udp");
        return udp?.attachedRoutes === 0 ? true : undefined;
      });
    });

    await t.step(
      "leadership lost and won back: the leader reconciles the next change at once",
      async () => {
        // Another holder takes the Lease (as after an API server outage outlasting the renew
        // deadline); when it runs out, a leads again and must not lose keys to its old term.
        const micro = new Date().toISOString().replace(/Z$/, "000Z");
        await cluster.kubectl([
          "patch",
          "lease",
          "blixt-operator",
          "-n",
          "blixt-system",
          "--type",
          "merge",
          "-p",
          JSON.stringify({
            spec: { holderIdentity: "intruder", renewTime: micro, leaseDurationSeconds: 2 },
          }),
        ]);
        await eventually("a stepped down", () => Promise.resolve(a.leading ? undefined : true));
        await eventually("a leading again", () => Promise.resolve(a.leading ? true : undefined));
        await applyObject(kc, slice(["198.18.1.2", "198.18.1.3", "198.18.1.4"]), manager);
        await eventually("the new endpoint in the table", async () => {
          const table = JSON.stringify((await json(["get", "routingtable", "edge"])).spec);
          return table.includes("198.18.1.4") ? true : undefined;
        }, 5000);
      },
    );

    await t.step(
      "the leader dies without releasing; the standby takes over within the lease",
      async () => {
        const b = new Operator(kc, { identity: "operator-b", lease, log: quiet });
        operators.push(b);
        await b.start();
        assert.ok(a.leading && !b.leading, "a leads, b stands by");
        // a "dies": it stops writing and never renews nor releases its Lease.
        const died = Date.now();
        await a.stop({ release: false });
        // The lease time itself is held to account by kube/leader_election_test.ts; here the
        // operator's takeover is, with room for CI's shared cores (a run at load ~25 took > 6 s).
        await eventually("b leading", () => Promise.resolve(b.leading ? true : undefined), 10_000);
        const takeover = Date.now() - died;
        assert.ok(takeover <= lease.durationMs + 5000, `took over after ${takeover} ms`);
        await cluster.kubectl(["delete", "tcproute", "echo-tcp"]);
        await eventually("the new leader writes: tcp listener with 0 routes", async () => {
          const gw = await json(["get", "gateway", "edge"]);
          const tcp = (gw.status.listeners as { name: string; attachedRoutes: number }[])
            .find((l) => l.name === "tcp");
          return tcp?.attachedRoutes === 0 ? true : undefined;
        });
      },
    );

    await t.step("the Gateway deleted: its table goes, the finalizer lets it go", async () => {
      await cluster.kubectl(["delete", "gateway", "edge", "--wait=false"]);
      await eventually("Gateway and RoutingTable gone", async () => {
        const left = await cluster.kubectl(["get", "gateways,routingtables", "-o", "name"]);
        return left.trim() === "" ? true : undefined;
      });
    });
  } finally {
    for (const o of operators) await o.stop();
    await clusterDown(NAME);
  }
});
