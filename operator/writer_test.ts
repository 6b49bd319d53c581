/**
 * The operator's core and writer against a real API server: objects read
 * from the server, reconciled, written back; what kubectl then shows is what
 * the Gateway API asks for.
 */

import assert from "node:assert/strict";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { applyObject } from "../kube/client.ts";
import { parseManifests } from "../kube/manifests.ts";
import { applyBlixtCrds } from "../manifests/crds.ts";
import { reconcile } from "./gateway.ts";
import { reconcileGatewayClass } from "./gateway_class.ts";
import { listSnapshot } from "./resources.ts";
import { changedEntriesPatch, writeGatewayClassStatus, writeResult } from "./writer.ts";
import { blixtClassYaml } from "./_cluster_testing.ts";
import { METADATA_ONLY, requestJson } from "../kube/rest.ts";
import { entryKey, type RoutingTableEntry, validateRoutingTable } from "../api/routing_table.ts";

const NAME = "op2-test-writer";

/** A blixt class with a pool, a Gateway, an echo Service with one endpoint, and a TCPRoute. */
function objects(pool: string, endpoint: string) {
  return parseManifests(`
${blixtClassYaml(pool)}---
apiVersion: v1
kind: Namespace
metadata: { name: shop }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: shop }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 80, protocol: TCP }
  - { name: web, port: 8443, protocol: TLS, tls: { mode: Passthrough } }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: shop }
spec:
  ports: [{ name: echo, port: 80, targetPort: 8080, protocol: TCP }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: shop
  labels: { kubernetes.io/service-name: echo }
addressType: IPv4
ports: [{ name: echo, port: 8080, protocol: TCP }]
endpoints:
- addresses: ["${endpoint}"]
  nodeName: node-1
  conditions: { ready: true, serving: true, terminating: false }
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: echo, namespace: shop }
spec:
  parentRefs: [{ name: edge, sectionName: tcp }]
  rules: [{ backendRefs: [{ name: echo, port: 80 }] }]
`);
}

interface Cond {
  type: string;
  status: string;
  reason: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

Deno.test("operator writer: a reconciled Gateway reads right in kubectl", async (t) => {
  try {
    const cluster = await clusterUp({ name: NAME, nodes: 1 });
    const kc = cluster.kubeConfig();
    await applyBlixtCrds(kc, { fieldManager: "blixt-test" });
    const pool = cluster.plan.gatewayPool;
    for (const obj of objects(pool, "198.18.1.2")) {
      await applyObject(kc, obj, { fieldManager: "blixt-test", force: true });
    }
    const getJson = async (args: string[]) =>
      JSON.parse(await cluster.kubectl([...args, "-o", "json"]));

    await t.step(
      "one reconcile writes class, Gateway and route status, table and finalizer",
      async () => {
        let snapshot = await listSnapshot(kc);
        const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
        const classStatus = reconcileGatewayClass("blixt", snapshot, { now });
        assert.ok(classStatus);
        assert.ok(await writeGatewayClassStatus(kc, "blixt", { snapshot, status: classStatus }));
        const first = reconcile("shop/edge", snapshot, { now });
        const report = await writeResult(kc, first, { snapshot });
        assert.equal(report.finalizer, "added");
        assert.equal(report.table, "applied");
        // The finalizer changed the Gateway: a level-based second pass from fresh objects settles.
        snapshot = await listSnapshot(kc);
        await writeResult(kc, reconcile("shop/edge", snapshot, { now }), { snapshot });
      },
    );

    await t.step("GatewayClass: Accepted and SupportedVersion True, features listed", async () => {
      const gc = await getJson(["get", "gatewayclass", "blixt"]);
      const conds = gc.status.conditions as Cond[];
      assert.equal(conds.find((c) => c.type === "Accepted")?.status, "True");
      assert.equal(conds.find((c) => c.type === "SupportedVersion")?.status, "True");
      assert.ok(conds.every((c) => c.observedGeneration === gc.metadata.generation));
      assert.ok(Array.isArray(gc.status.supportedFeatures));
    });

    await t.step("Gateway: Accepted with ListenersNotValid, address from the pool", async () => {
      const gw = await getJson(["get", "gateway", "edge", "-n", "shop"]);
      const accepted = (gw.status.conditions as Cond[]).find((c) => c.type === "Accepted");
      assert.deepEqual([accepted?.status, accepted?.reason], ["True", "ListenersNotValid"]);
      const address = gw.status.addresses?.[0]?.value as string;
      assert.ok(address?.startsWith(pool.replace(/0\/24$/, "")), `address ${address} from ${pool}`);
      const [tcp, web] = gw.status.listeners as {
        name: string;
        attachedRoutes: number;
        conditions: Cond[];
      }[];
      assert.equal(tcp?.name, "tcp");
      assert.equal(tcp?.attachedRoutes, 1);
      assert.equal(tcp?.conditions.find((c) => c.type === "Accepted")?.status, "True");
      const webAccepted = web?.conditions.find((c) => c.type === "Accepted");
      assert.deepEqual([webAccepted?.status, webAccepted?.reason], [
        "False",
        "UnsupportedProtocol",
      ]);
      assert.ok(gw.metadata.finalizers.includes("blixt.dev/routing-table"));
    });

    await t.step("TCPRoute: our parent entry Accepted and ResolvedRefs", async () => {
      const route = await getJson(["get", "tcproute", "echo", "-n", "shop"]);
      const parents = route.status.parents as { controllerName: string; conditions: Cond[] }[];
      assert.equal(parents.length, 1);
      assert.equal(parents[0]?.controllerName, "blixt.dev/gateway-controller");
      for (const type of ["Accepted", "ResolvedRefs"]) {
        assert.equal(parents[0]?.conditions.find((c) => c.type === type)?.status, "True", type);
      }
    });

    await t.step("RoutingTable: owned by the Gateway, the endpoint as backend", async () => {
      const table = await getJson(["get", "routingtable", "edge", "-n", "shop"]);
      assert.equal(table.metadata.ownerReferences?.[0]?.kind, "Gateway");
      assert.equal(table.metadata.ownerReferences?.[0]?.name, "edge");
      const text = JSON.stringify(table.spec);
      assert.match(text, /198\.18\.1\.2/);
      assert.match(text, /8080/);
    });

    await t.step("a reconcile with nothing new writes nothing, times are kept", async () => {
      const before = await getJson(["get", "gateway", "edge", "-n", "shop"]);
      const snapshot = await listSnapshot(kc);
      const later = new Date(Date.now() + 60_000).toISOString().replace(/\.\d+Z$/, "Z");
      const report = await writeResult(kc, reconcile("shop/edge", snapshot, { now: later }), {
        snapshot,
      });
      assert.equal(report.gatewayStatus, false);
      assert.equal(report.routeStatuses, 0);
      const after = await getJson(["get", "gateway", "edge", "-n", "shop"]);
      assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
    });

    await t.step(
      "a second listener on the same Service refers to the first entry's backends, backends are strings and entries compact, each once every agent reads that",
      async () => {
        const features = async (list: string[]) => {
          const path = "/apis/blixt.dev/v1alpha1/dataplanenodes/node-share";
          const body = {
            apiVersion: "blixt.dev/v1alpha1",
            kind: "DataplaneNode",
            metadata: { name: "node-share" },
          };
          const options = { fieldManager: "blixt-agent", force: true };
          const apply = { method: "PATCH", contentType: "application/apply-patch+yaml" } as const;
          await requestJson(kc, path, {
            ...apply,
            query: options,
            body: { ...body, spec: { nodeName: "node-share" } },
          });
          await requestJson(kc, `${path}/status`, {
            ...apply,
            query: options,
            body: { ...body, status: { features: list } },
          });
        };
        const settle = async () => {
          for (let i = 0; i < 3; i++) {
            const snapshot = await listSnapshot(kc);
            const report = await writeResult(
              kc,
              reconcile("shop/edge", snapshot, {
                now: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
              }),
              {
                snapshot,
              },
            );
            if (report.table === "unchanged" && !report.gatewayStatus) return true;
          }
          return false;
        };
        const entries = async () => {
          const table = await getJson(["get", "routingtable", "edge", "-n", "shop"]);
          const v = validateRoutingTable(table);
          assert.ok(v.ok, JSON.stringify(v));
          return {
            raw: table.spec.entries as RoutingTableEntry[],
            expanded: v.value.spec.entries,
          };
        };
        const extra = parseManifests(`
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: shop }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 80, protocol: TCP }
  - { name: web, port: 8443, protocol: TLS, tls: { mode: Passthrough } }
  - { name: tcp2, port: 81, protocol: TCP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: echo2, namespace: shop }
spec:
  parentRefs: [{ name: edge, sectionName: tcp2 }]
  rules: [{ backendRefs: [{ name: echo, port: 80 }] }]
`);
        for (const obj of extra) await applyObject(kc, obj, { fieldManager: "blixt-test" });
        await features(["backendsFrom"]);
        await settle();
        let { raw, expanded } = await entries();
        const at = (list: RoutingTableEntry[], port: number) => list.find((e) => e.port === port)!;
        const key = entryKey(at(raw, 80));
        assert.deepEqual(at(raw, 81).backendsFrom, key);
        assert.deepEqual(at(raw, 81).backends, []);
        assert.equal(at(raw, 81).service, undefined);
        assert.deepEqual(at(expanded, 81).backends, at(raw, 80).backends);
        assert.deepEqual(at(expanded, 81).service, at(raw, 80).service);

        // an endpoint change rewrites the listed backends only; the reference stays
        const generation = (await getJson(["get", "routingtable", "edge", "-n", "shop"])).metadata
          .generation;
        for (const obj of objects(pool, "198.18.1.3")) {
          if (obj.kind === "EndpointSlice") {
            await applyObject(kc, obj, { fieldManager: "blixt-test", force: true });
          }
        }
        await settle();
        ({ raw, expanded } = await entries());
        assert.equal(at(raw, 81).backendsFrom, key);
        assert.deepEqual(at(raw, 80).backends.map((b) => b.ip), ["198.18.1.3"]);
        assert.deepEqual(at(expanded, 81).backends.map((b) => b.ip), ["198.18.1.3"]);
        const table = await getJson(["get", "routingtable", "edge", "-n", "shop"]);
        assert.equal(table.metadata.generation, generation + 1);

        // an agent without the feature (an older one) gets every entry complete again
        await features([]);
        await settle();
        ({ raw } = await entries());
        assert.ok(raw.every((e) => e.backendsFrom === undefined), JSON.stringify(raw));
        assert.deepEqual(at(raw, 81).backends.map((b) => b.ip), ["198.18.1.3"]);
        const complete = at(raw, 80).backends;

        // agents that all read backends as strings get them so, beside the reference
        await features(["backendsFrom", "endpoints"]);
        assert.ok(await settle(), "the table written as strings matches what the operator wants");
        ({ raw, expanded } = await entries());
        assert.deepEqual(at(raw, 80).backends, []);
        assert.equal(at(raw, 80).endpoints?.length, 1);
        assert.match(at(raw, 80).endpoints![0]!, /^198\.18\.1\.3:\d+ \d+ Ready/);
        assert.equal(at(raw, 81).backendsFrom, key);
        assert.equal(at(raw, 81).endpoints, undefined);
        assert.deepEqual(at(expanded, 80).backends, complete);
        assert.deepEqual(at(expanded, 81).backends, complete);
        const objects80 = { route: at(raw, 80).route, service: at(raw, 80).service };

        // agents that all read compact entries get them: route and Service strings, no backends
        await features(["backendsFrom", "endpoints", "compactEntries"]);
        assert.ok(await settle(), "the compact table matches what the operator wants");
        ({ raw, expanded } = await entries());
        assert.match(at(raw, 80).routeRef ?? "", /^TCPRoute shop\/[a-z0-9-]+$/);
        assert.equal(at(raw, 80).serviceRef, "shop/echo:80");
        assert.equal(at(raw, 80).route, undefined);
        assert.equal(at(raw, 80).service, undefined);
        assert.equal(at(raw, 80).backends, undefined, "left out beside endpoints");
        assert.equal(at(raw, 80).endpoints?.length, 1);
        assert.match(at(raw, 81).routeRef ?? "", /^TCPRoute shop\/echo2$/);
        assert.deepEqual(at(raw, 81).backends, [], "a reference keeps its empty backends");
        assert.deepEqual(at(expanded, 80).backends, complete);
        assert.deepEqual(at(expanded, 81).backends, complete);
        assert.deepEqual(at(expanded, 80).route, objects80.route);
        assert.deepEqual(at(expanded, 80).service, objects80.service);

        // one agent without compactEntries (an older one): objects again, strings stay
        await features(["backendsFrom", "endpoints"]);
        assert.ok(await settle(), "the objects' table matches what the operator wants");
        ({ raw } = await entries());
        assert.ok(
          raw.every((e) => e.routeRef === undefined && e.serviceRef === undefined),
          JSON.stringify(raw),
        );
        assert.deepEqual(at(raw, 80).route, objects80.route);
        assert.deepEqual(at(raw, 80).backends, []);
        assert.equal(at(raw, 80).endpoints?.length, 1);

        // one agent without it (an older one): complete backends again
        await features(["backendsFrom"]);
        await settle();
        ({ raw } = await entries());
        assert.ok(raw.every((e) => e.endpoints === undefined), JSON.stringify(raw));
        assert.deepEqual(at(raw, 80).backends, complete);
      },
    );

    await t.step(
      "a table write answered with its metadata only: no spec, the new versions",
      async () => {
        const path = "/apis/blixt.dev/v1alpha1/namespaces/shop/routingtables/edge";
        const before = await getJson(["get", "routingtable", "edge", "-n", "shop"]);
        const answer = await requestJson<
          Record<string, unknown> & { metadata: Record<string, unknown> }
        >(
          kc,
          path,
          {
            method: "PATCH",
            body: { metadata: { labels: { "blixt.dev/test": "metadata-only" } } },
            contentType: "application/merge-patch+json",
            accept: METADATA_ONLY,
          },
        );
        assert.equal(answer.kind, "PartialObjectMetadata");
        assert.equal(answer.spec, undefined);
        assert.notEqual(answer.metadata.resourceVersion, before.metadata.resourceVersion);
        assert.equal(answer.metadata.generation, before.metadata.generation);
        const after = await getJson(["get", "routingtable", "edge", "-n", "shop"]);
        assert.equal(answer.metadata.resourceVersion, after.metadata.resourceVersion);
      },
    );
  } finally {
    await clusterDown(NAME);
  }
});

Deno.test("changedEntriesPatch: only the entries whose backends changed, guarded by the resourceVersion", () => {
  const entry = (port: number, ips: string[]) => ({
    address: "198.18.0.1",
    port,
    protocol: "TCP" as const,
    listener: `l${port}`,
    backends: ips.map((ip) => ({ ip, port: 8080, weight: 1, node: "n1", state: "Ready" as const })),
    rejectWeight: 0,
  });
  const table = (entries: ReturnType<typeof entry>[], addresses = ["198.18.0.1"]) => ({
    apiVersion: "blixt.dev/v1alpha1" as const,
    kind: "RoutingTable" as const,
    metadata: { name: "gw", namespace: "ns", resourceVersion: "7" },
    spec: { addresses, entries },
  });
  const have = table([entry(80, ["198.19.0.2"]), entry(81, ["198.19.0.2"])]);
  assert.deepEqual(
    changedEntriesPatch(have, table([entry(80, ["198.19.0.2"]), entry(81, ["198.19.0.3"])])),
    [
      { op: "test", path: "/metadata/resourceVersion", value: "7" },
      { op: "replace", path: "/spec/entries/1", value: entry(81, ["198.19.0.3"]) },
    ],
  );
  assert.equal(changedEntriesPatch(have, have), undefined, "nothing changed: nothing to send");
  for (
    const [what, want] of [
      ["an entry more", table([entry(80, []), entry(81, []), entry(82, [])])],
      ["another frontend", table([entry(80, ["198.19.0.2"]), entry(82, ["198.19.0.2"])])],
      ["other addresses", table(have.spec.entries, ["198.18.0.2"])],
    ] as const
  ) {
    assert.equal(changedEntriesPatch(have, want), undefined, `${what}: the whole table is applied`);
  }
});
