/**
 * The operator's core and writer against a real API server: objects read
 * from the server, reconciled, written back; what kubectl then shows is what
 * the Gateway API asks for.
 */

import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { applyObject, k8s } from "../kube/client.ts";
import { parseManifests } from "../kube/manifests.ts";
import { applyBlixtCrds } from "../manifests/crds.ts";
import { reconcile } from "./gateway.ts";
import { reconcileGatewayClass } from "./gateway_class.ts";
import { listSnapshot } from "./resources.ts";
import { emptySnapshot } from "./snapshot.ts";
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

/**
 * A RoutingTable API of one table on a Unix socket of the test's own: JSON
 * patches with their resourceVersion test, server-side applies and deletes,
 * each bumping a resourceVersion as the API server does, and a log of what
 * was asked.
 */
async function fakeTableApi() {
  const dir = await Deno.makeTempDir({ prefix: "n5-writer-" });
  const socket = `${dir}/api.sock`;
  let version = 10;
  let table: { metadata: Record<string, unknown>; spec: Record<string, unknown> } | undefined;
  const requests: string[] = [];
  const answer = () =>
    Response.json({ metadata: { ...table!.metadata, resourceVersion: String(version) } });
  const server = Deno.serve({ path: socket, onListen() {} }, async (req) => {
    const body = await req.json().catch(() => undefined);
    const type = req.headers.get("content-type") ?? "";
    if (req.method === "DELETE") {
      requests.push("delete");
      if (!table) return Response.json({ code: 404 }, { status: 404 });
      table = undefined;
      return Response.json({});
    }
    if (type.startsWith("application/json-patch+json")) {
      const ops = body as { op: string; path: string; value: unknown }[];
      requests.push(`patch ${ops[0]!.value} (${ops.length - 1} entries)`);
      if (!table) return Response.json({ code: 404 }, { status: 404 });
      if (ops[0]!.value !== String(version)) {
        return Response.json({ code: 422, message: "test failed" }, { status: 422 });
      }
      const entries = [...(table.spec.entries as unknown[])];
      for (const op of ops.slice(1)) entries[Number(op.path.split("/").at(-1))] = op.value;
      table = { ...table, spec: { ...table.spec, entries } };
      version++;
      return answer();
    }
    requests.push("apply");
    const { metadata, spec } = body as NonNullable<typeof table>;
    table = { metadata: { ...metadata }, spec };
    version++;
    return answer();
  });
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "fake", server: "http://fake-api" }],
    users: [{ name: "fake" }],
    contexts: [{ name: "fake", cluster: "fake", user: "fake" }],
    currentContext: "fake",
  });
  const agent = new http.Agent({ keepAlive: true });
  (agent as unknown as { createConnection: () => net.Socket }).createConnection = () =>
    net.connect({ path: socket });
  kc.applyToHTTPSOptions = (opts) => {
    opts.agent = agent;
    return Promise.resolve();
  };
  return {
    kc,
    requests,
    /** The table as the server has it, as the cache would show it once its watch caught up. */
    stored: () => table && structuredClone({ ...table, resourceVersion: String(version) }),
    /** Someone else's write: the entries replaced, a new resourceVersion. */
    writeBySomeoneElse(entries: unknown[]) {
      table = { ...table!, spec: { ...table!.spec, entries } };
      version++;
    },
    deleteBySomeoneElse() {
      table = undefined;
    },
    async close() {
      agent.destroy();
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("writer: a table write while the cache lags its own last write is a patch against that write", async () => {
  const api = await fakeTableApi();
  try {
    const entry = (port: number, ip: string) => ({
      address: "198.18.0.1",
      port,
      protocol: "TCP" as const,
      listener: `l${port}`,
      backends: [{ ip, port: 8080, weight: 1, node: "n1", state: "Ready" as const }],
      rejectWeight: 0,
    });
    const table = (ips: [string, string], resourceVersion?: string) => ({
      apiVersion: "blixt.dev/v1alpha1" as const,
      kind: "RoutingTable" as const,
      metadata: { name: "gw", namespace: "ns", ...(resourceVersion ? { resourceVersion } : {}) },
      spec: { addresses: ["198.18.0.1"], entries: [entry(80, ips[0]), entry(81, ips[1])] },
    });
    const snapshot = emptySnapshot();
    const write = (ips: [string, string]) =>
      writeResult(api.kc, {
        gatewayKey: "ns/gw",
        managed: true,
        table: { action: "apply", table: table(ips) },
        routeStatuses: [],
        finalizer: "none",
        events: [],
      }, { snapshot });
    const cacheCatchesUp = () => {
      const stored = api.stored()!;
      snapshot.routingTables.set("ns/gw", {
        ...table(["198.19.0.2", "198.19.0.2"], stored.resourceVersion),
        spec: stored.spec as ReturnType<typeof table>["spec"],
      });
    };
    const serverIps = () =>
      (api.stored()?.spec.entries as ReturnType<typeof entry>[]).map((e) => e.backends[0]!.ip);

    // the table as the cache has it: resourceVersion 11
    await write(["198.19.0.2", "198.19.0.2"]);
    cacheCatchesUp();
    api.requests.length = 0;

    // the cache stays at 11 through three more writes
    await write(["198.19.0.3", "198.19.0.2"]);
    await write(["198.19.0.3", "198.19.0.4"]);
    await write(["198.19.0.3", "198.19.0.4"]);
    assert.deepEqual(api.requests, ["patch 11 (1 entries)", "patch 12 (1 entries)"]);
    assert.deepEqual(serverIps(), ["198.19.0.3", "198.19.0.4"]);

    // someone else writes the table: the patch against our write is refused, the whole table applied
    api.writeBySomeoneElse([entry(80, "198.19.0.9"), entry(81, "198.19.0.9")]);
    api.requests.length = 0;
    await write(["198.19.0.5", "198.19.0.4"]);
    assert.deepEqual(api.requests, ["patch 13 (1 entries)", "apply"]);
    assert.deepEqual(serverIps(), ["198.19.0.5", "198.19.0.4"]);

    // the cache caught up: it is trusted again
    cacheCatchesUp();
    api.requests.length = 0;
    await write(["198.19.0.5", "198.19.0.6"]);
    assert.deepEqual(api.requests, ["patch 15 (1 entries)"]);

    // someone else deletes the table while the cache lags: the patch finds nothing, the apply makes it again
    api.deleteBySomeoneElse();
    api.requests.length = 0;
    await write(["198.19.0.7", "198.19.0.6"]);
    assert.deepEqual(api.requests, ["patch 16 (1 entries)", "apply"]);
    assert.deepEqual(serverIps(), ["198.19.0.7", "198.19.0.6"]);
  } finally {
    await api.close();
  }
});
