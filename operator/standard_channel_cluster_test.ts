/**
 * On a cluster with the Gateway API standard channel, TCPRoute and UDPRoute
 * are served at v1 only: the operator watches v1 and reconciles them, and a
 * v1alpha2 object is refused by the API server before blixt sees it.
 */

import assert from "node:assert/strict";
import {
  assertConditions,
  blixtClassYaml,
  blixtParents,
  converge,
  listenerOf,
  withOperatorCluster,
} from "./_cluster_testing.ts";
import { watchedResources } from "./resources.ts";

Deno.test("standard channel: v1 routes are reconciled, v1alpha2 is not served", async () => {
  await withOperatorCluster("op2-test-std", async (oc) => {
    const routes = (await watchedResources(oc.kc)).filter((r) =>
      r.kind === "TCPRoute" || r.kind === "UDPRoute"
    );
    assert.deepEqual(routes.map((r) => `${r.kind} ${r.apiVersion}`), [
      "TCPRoute gateway.networking.k8s.io/v1",
      "UDPRoute gateway.networking.k8s.io/v1",
    ]);
    await oc.apply(`
${blixtClassYaml(oc.cluster.plan.gatewayPool)}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tcp, port: 80, protocol: TCP }, { name: udp, port: 53, protocol: UDP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: tcp, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: svc, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: udp, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: svc, port: 53 }] }]
`);
    await converge(async () => {
      for (const route of ["tcproute/tcp", "udproute/udp"]) {
        const r = await oc.get([route]);
        assertConditions(blixtParents(r)[0]?.conditions, { Accepted: "True/Accepted" }, {
          generation: 1,
          what: route,
        });
      }
      const gw = await oc.get(["gateway", "gw"]);
      assert.equal(listenerOf(gw, "tcp").attachedRoutes, 1);
      assert.equal(listenerOf(gw, "udp").attachedRoutes, 1);
    });
    await assert.rejects(
      oc.apply(`
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: { name: alpha, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: svc, port: 80 }] }]
`),
    );
  }, { channel: "standard", nodes: 1 });
});
