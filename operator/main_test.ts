/**
 * The operator as it is deployed: `operator/main.ts` in a process of its own
 * against the local cluster, its `/metrics` scraped over HTTP as Prometheus
 * would. The figures move as the operator works: reconciles and their latency
 * count up, a failing write counts as an error, the queue drains.
 */

import assert from "node:assert/strict";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { applyObject, type KubeObject } from "../kube/client.ts";
import { parseManifests } from "../kube/manifests.ts";
import { applyBlixtCrds } from "../manifests/crds.ts";
import { blixtClassYaml } from "./_cluster_testing.ts";

const NAME = "op2-test-metrics";
const MANAGER = { fieldManager: "op2-test", force: true };

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
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: default }
spec:
  ports: [{ name: tcp, port: 80, targetPort: 8080, protocol: TCP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: echo, namespace: default }
spec:
  parentRefs: [{ name: edge, sectionName: tcp }]
  rules: [{ backendRefs: [{ name: echo, port: 80 }] }]
`);
}

function slice(ips: string[]): KubeObject {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: "echo-1",
      namespace: "default",
      labels: { "kubernetes.io/service-name": "echo" },
    },
    addressType: "IPv4",
    ports: [{ name: "tcp", port: 8080, protocol: "TCP" }],
    endpoints: ips.map((ip) => ({
      addresses: [ip],
      nodeName: "node-1",
      conditions: { ready: true, serving: true, terminating: false },
    })),
  };
}

/** Samples of a Prometheus text exposition, by name with labels (`a{q="0.5"}`). */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what}: not seen in ${timeoutMs} ms${last ? ` (${last})` : ""}`);
}

Deno.test("operator /metrics: reconciles, latency, errors and queue depth move", async (t) => {
  let operator: Deno.ChildProcess | undefined;
  try {
    const cluster = await clusterUp({ name: NAME, nodes: 1 });
    const kc = cluster.kubeConfig();
    await applyBlixtCrds(kc, { fieldManager: MANAGER.fieldManager });
    for (const obj of scenario(cluster.plan.gatewayPool)) await applyObject(kc, obj, MANAGER);
    await applyObject(kc, slice(["198.18.1.2"]), MANAGER);

    const port = 19000 + Math.floor(Math.random() * 1000);
    operator = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./main.ts", import.meta.url).pathname,
        "--kubeconfig",
        cluster.kubeconfig,
        "--health-port",
        String(port),
        "--identity",
        "metrics-test",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      const text = await res.text();
      assert.equal(res.status, 200, text);
      assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      return parseMetrics(text);
    };
    const table = async () =>
      JSON.stringify(
        (JSON.parse(
          await cluster.kubectl(["get", "routingtable", "edge", "-o", "json"]),
        )).spec,
      );

    let converged = new Map<string, number>();
    await t.step(
      "once the operator leads and has written the table, the figures show it",
      async () => {
        await until(
          "the table with the endpoint",
          async () => (await table()).includes("198.18.1.2") ? true : undefined,
        );
        converged = await until("an empty queue after the first reconciles", async () => {
          const m = await scrape();
          return m.get("blixt_operator_leader") === 1 &&
              m.get("blixt_operator_queue_depth") === 0 &&
              (m.get("blixt_operator_reconciles_total") ?? 0) > 0
            ? m
            : undefined;
        });
        assert.equal(converged.get("blixt_operator_reconcile_errors_total"), 0);
        assert.ok((converged.get("blixt_operator_reconcile_conflicts_total") ?? -1) >= 0);
        assert.ok((converged.get("blixt_operator_reconcile_seconds_count") ?? 0) > 0);
        const p50 = converged.get('blixt_operator_reconcile_seconds{quantile="0.5"}') ?? -1;
        const p99 = converged.get('blixt_operator_reconcile_seconds{quantile="0.99"}') ?? -1;
        assert.ok(p50 > 0 && p50 <= p99 && p99 < 30, `p50 ${p50} s, p99 ${p99} s`);
      },
    );

    await t.step("an endpoint change is reconciled: the counters move", async () => {
      await applyObject(kc, slice(["198.18.1.2", "198.18.1.3"]), MANAGER);
      await until(
        "the new endpoint in the table",
        async () => (await table()).includes("198.18.1.3") ? true : undefined,
      );
      const after = await until("more reconciles", async () => {
        const m = await scrape();
        return (m.get("blixt_operator_reconciles_total") ?? 0) >
            (converged.get("blixt_operator_reconciles_total") ?? 0)
          ? m
          : undefined;
      });
      assert.ok(
        (after.get("blixt_operator_reconcile_seconds_count") ?? 0) >
          (converged.get("blixt_operator_reconcile_seconds_count") ?? 0),
      );
      assert.equal(after.get("blixt_operator_reconcile_errors_total"), 0);
    });

    await t.step("a table that cannot be written counts as errors until it can", async () => {
      // Without its CRD every apply of the RoutingTable fails (404) and is retried.
      await cluster.kubectl(["delete", "crd", "routingtables.blixt.dev"]);
      const failing = await until("reconcile errors", async () => {
        const m = await scrape();
        return (m.get("blixt_operator_reconcile_errors_total") ?? 0) > 0 ? m : undefined;
      });
      await applyBlixtCrds(kc, { fieldManager: MANAGER.fieldManager });
      await until(
        "the table written again",
        async () => (await table()).includes("198.18.1.3") ? true : undefined,
        60_000,
      );
      const healed = await until("the queue empty again", async () => {
        const m = await scrape();
        return m.get("blixt_operator_queue_depth") === 0 ? m : undefined;
      });
      assert.ok(
        (healed.get("blixt_operator_reconciles_total") ?? 0) >
          (failing.get("blixt_operator_reconciles_total") ?? 0),
      );
    });
  } finally {
    if (operator) {
      try {
        operator.kill("SIGTERM");
      } catch { /* already gone */ }
      await operator.status;
    }
    await clusterDown(NAME);
  }
});
