/**
 * The informer as the operator and the agent rely on it, against the real
 * API server of the local cluster: it sees what kubectl would see, and it
 * converges again after the API server dies, after a partition and after
 * its resourceVersion expires; stop() leaves nothing running (the test
 * sanitizers check every step).
 */

import assert from "node:assert/strict";
import { applyObject, k8s, type KubeObject } from "./client.ts";
import { dropManagedFields, Informer, type InformerOptions, type ResourceRef } from "./informer.ts";
import type { LogEntry } from "./log.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import {
  apiServerProxy,
  etcdOf,
  eventually,
  killApiServer,
  kubeConfigThrough,
} from "./_testing.ts";

const CLUSTER = "kube-test";

type ConfigMap = KubeObject & { data?: Record<string, string> };
const MANAGER = { fieldManager: "blixt-test", force: true };

/** An informer that records its events and log lines, and how long they took. */
function recordingInformer<T extends KubeObject = ConfigMap>(
  kc: k8s.KubeConfig,
  resource: ResourceRef,
  options: InformerOptions = {},
) {
  const events: string[] = [];
  const logs: LogEntry[] = [];
  const informer = new Informer<T>(kc, resource, {
    // Fast retries keep the test short; the defaults are client-go's.
    backoff: { initialMs: 100, maxMs: 1_000 },
    log: (entry) => logs.push({ ...entry, at: performance.now() }),
    ...options,
  });
  const name = (o: T) =>
    o.metadata?.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : `${o.metadata?.name}`;
  informer.on("add", (o) => events.push(`add ${name(o)}`));
  informer.on("update", (o, old) => {
    assert.notEqual(o.metadata?.resourceVersion, old.metadata?.resourceVersion);
    events.push(`update ${name(o)}`);
  });
  informer.on("delete", (o) => events.push(`delete ${name(o)}`));
  return { informer, events, logs };
}

function configMap(namespace: string, name: string, data: Record<string, string>): KubeObject {
  return { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, data };
}

async function createNamespace(kc: k8s.KubeConfig, name: string): Promise<void> {
  await applyObject(kc, { apiVersion: "v1", kind: "Namespace", metadata: { name } }, MANAGER);
}

function names(objects: k8s.KubernetesObject[]): string[] {
  return objects.map((o) => o.metadata?.name ?? "").sort();
}

Deno.test("informer: list+watch of real objects, through restarts, partitions and 410 Gone", async (t) => {
  const cluster = await clusterUp({ name: CLUSTER, nodes: 1 });
  try {
    const kc = cluster.kubeConfig();
    const core = kc.makeApiClient(k8s.CoreV1Api);

    await t.step(
      "ConfigMaps: the first list fills the cache, then adds, updates and deletes arrive",
      async () => {
        const ns = "inf-configmaps";
        await createNamespace(kc, ns);
        await applyObject(kc, configMap(ns, "before", { v: "1" }), MANAGER);
        await applyObject(kc, configMap("default", "elsewhere", { v: "1" }), MANAGER);
        const { informer, events } = recordingInformer(
          kc,
          { apiVersion: "v1", kind: "ConfigMap" },
          {
            namespace: ns,
          },
        );
        informer.start();
        try {
          await informer.synced;
          assert.equal(informer.hasSynced, true);
          assert.deepEqual(
            events,
            [`add ${ns}/before`],
            "synced resolves after the first list's adds",
          );
          assert.equal(informer.get("before", ns)?.data?.v, "1");
          assert.equal(
            informer.get("elsewhere", "default"),
            undefined,
            "other namespaces are not watched",
          );
          assert.equal(
            informer.get("before", ns)?.kind,
            "ConfigMap",
            "listed objects carry their kind",
          );

          await applyObject(kc, configMap(ns, "a", { v: "1" }), MANAGER);
          await applyObject(kc, configMap(ns, "a", { v: "2" }), MANAGER);
          await core.deleteNamespacedConfigMap({ name: "before", namespace: ns });
          await eventually(
            "the cache has a=2 and no longer has before",
            () =>
              informer.get("a", ns)?.data?.v === "2" && informer.get("before", ns) === undefined,
          );
          assert.deepEqual(events, [
            `add ${ns}/before`,
            `add ${ns}/a`,
            `update ${ns}/a`,
            `delete ${ns}/before`,
          ]);
          assert.deepEqual(names(informer.list(ns)), ["a"]);
          assert.deepEqual(names(informer.list()), ["a"]);
        } finally {
          await informer.stop();
        }
      },
    );

    await t.step(
      "EndpointSlices (discovery.k8s.io) with a label selector: objects enter and leave the selection",
      async () => {
        const ns = "inf-slices";
        await createNamespace(kc, ns);
        const slice = (name: string, service: string, ready: boolean): KubeObject => ({
          apiVersion: "discovery.k8s.io/v1",
          kind: "EndpointSlice",
          metadata: { name, namespace: ns, labels: { "kubernetes.io/service-name": service } },
          addressType: "IPv4",
          endpoints: [{ addresses: ["198.18.33.2"], conditions: { ready } }],
          ports: [{ name: "tcp", port: 8080, protocol: "TCP" }],
        });
        await applyObject(kc, slice("echo-1", "echo", true), MANAGER);
        await applyObject(kc, slice("other-1", "other", true), MANAGER);
        const { informer, events } = recordingInformer<KubeObject>(
          kc,
          { apiVersion: "discovery.k8s.io/v1", plural: "endpointslices" },
          {
            namespace: ns,
            labelSelector: "kubernetes.io/service-name=echo",
            transform: dropManagedFields,
          },
        );
        informer.start();
        try {
          await informer.synced;
          assert.deepEqual(names(informer.list(ns)), ["echo-1"]);
          await applyObject(kc, slice("echo-1", "echo", false), MANAGER);
          await applyObject(kc, slice("other-1", "echo", true), MANAGER);
          await applyObject(kc, slice("echo-1", "gone", false), MANAGER);
          await eventually(
            "other-1 entered and echo-1 left the selection",
            () => names(informer.list(ns)).join() === "other-1",
          );
          assert.deepEqual(events, [
            `add ${ns}/echo-1`,
            `update ${ns}/echo-1`,
            `add ${ns}/other-1`,
            `delete ${ns}/echo-1`,
          ]);
          const endpoints = informer.get("other-1", ns)?.endpoints as {
            conditions: { ready: boolean };
          }[];
          assert.equal(endpoints[0]?.conditions.ready, true);
          assert.ok(
            informer.list().every((o) => o.metadata?.managedFields === undefined),
            "the transform dropped managedFields of listed and watched objects",
          );
        } finally {
          await informer.stop();
        }
      },
    );

    await t.step(
      "a Gateway API object (GatewayClass, cluster-scoped, found by kind): spec and status changes",
      async () => {
        const gatewayClasses = recordingInformer<KubeObject>(kc, {
          apiVersion: "gateway.networking.k8s.io/v1",
          kind: "GatewayClass",
        });
        const { informer, events } = gatewayClasses;
        informer.start();
        try {
          await informer.synced;
          assert.deepEqual(informer.list(), []);
          const gatewayClass = {
            apiVersion: "gateway.networking.k8s.io/v1",
            kind: "GatewayClass",
            metadata: { name: "blixt" },
            spec: { controllerName: "blixt.dev/gateway-controller" },
          };
          await applyObject(kc, gatewayClass, MANAGER);
          await applyObject(kc, {
            ...gatewayClass,
            spec: { ...gatewayClass.spec, description: "L4" },
          }, MANAGER);
          await eventually(
            "the description is in the cache",
            () => (informer.get("blixt")?.spec as { description?: string })?.description === "L4",
          );
          const objects = kc.makeApiClient(k8s.CustomObjectsApi);
          await objects.patchClusterCustomObjectStatus({
            group: "gateway.networking.k8s.io",
            version: "v1",
            plural: "gatewayclasses",
            name: "blixt",
            body: {
              status: {
                conditions: [{
                  type: "Accepted",
                  status: "True",
                  reason: "Accepted",
                  message: "",
                  observedGeneration: 2,
                  lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
                }],
              },
            },
          }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
          await eventually("the Accepted condition is in the cache", () => {
            const status = informer.get("blixt")?.status as { conditions?: { type: string }[] };
            return status?.conditions?.[0]?.type === "Accepted";
          });
          await objects.deleteClusterCustomObject({
            group: "gateway.networking.k8s.io",
            version: "v1",
            plural: "gatewayclasses",
            name: "blixt",
          });
          await eventually(
            "the GatewayClass left the cache",
            () => informer.get("blixt") === undefined,
          );
          assert.deepEqual(events, ["add blixt", "update blixt", "update blixt", "delete blixt"]);
        } finally {
          await informer.stop();
        }
      },
    );

    await t.step(
      "an API server killed (kill -9) while watching: reconnects with backoff, gets 410 Gone, re-lists and emits what it missed",
      async () => {
        const ns = "inf-restart";
        await createNamespace(kc, ns);
        for (const name of ["kept", "changed", "deleted-in-etcd", "deleted-after"]) {
          await applyObject(kc, configMap(ns, name, { v: "1" }), MANAGER);
        }
        const { informer, events, logs } = recordingInformer(kc, {
          apiVersion: "v1",
          kind: "ConfigMap",
          // Pages of two: the lists here take several requests with a continue token.
        }, { namespace: ns, pageSize: 2 });
        informer.start();
        try {
          await informer.synced;
          assert.deepEqual(names(informer.list(ns)), [
            "changed",
            "deleted-after",
            "deleted-in-etcd",
            "kept",
          ]);
          events.length = 0;
          const killedAt = performance.now();
          await killApiServer(cluster);
          // While the API server is down: a delete straight in etcd (no watch
          // event will ever tell of it) and a compaction, so that the
          // informer's resourceVersion can be served by no one any more.
          const etcd = etcdOf(cluster);
          const { revision, deleted } = await etcd.delete(
            `/registry/configmaps/${ns}/deleted-in-etcd`,
          );
          assert.equal(deleted, 1);
          await etcd.compact(revision);
          await clusterUp({ name: CLUSTER });
          await applyObject(kc, configMap(ns, "changed", { v: "2" }), MANAGER);
          await applyObject(kc, configMap(ns, "added", { v: "1" }), MANAGER);
          await core.deleteNamespacedConfigMap({ name: "deleted-after", namespace: ns });
          const convergedMs = await eventually(
            "the cache equals the API server",
            () =>
              names(informer.list(ns)).join() === "added,changed,kept" &&
              informer.get("changed", ns)?.data?.v === "2",
            { timeoutMs: 30_000 },
          );
          assert.deepEqual(
            events.filter((e) => e.includes("deleted-in-etcd")),
            [`delete ${ns}/deleted-in-etcd`],
            "the re-list found the object that vanished without a watch event",
          );
          assert.ok(events.includes(`update ${ns}/changed`));
          assert.ok(events.includes(`add ${ns}/added`));
          assert.ok(events.includes(`delete ${ns}/deleted-after`));
          assert.ok(
            !events.some((e) => e.includes("/kept")),
            "an unchanged object causes no event",
          );
          assert.ok(
            logs.some((l) => l.msg === "re-listing: resourceVersion expired"),
            "the stale resourceVersion was answered with 410 Gone and a re-list",
          );
          const retries = logs.filter((l) => l.msg === "list/watch failed; retrying");
          assert.ok(retries.length >= 1, "the broken stream was retried");
          const relisted = logs.filter((l) => l.msg === "listed").at(-1)!;
          const relistedAfterMs = Math.round(relisted.at as number - killedAt);
          console.log(
            `killed the API server; the informer re-listed ${relistedAfterMs} ms later ` +
              `(restart included, ${retries.length} retries; the list took ${relisted.ms} ms) ` +
              `and had the last change ${Math.round(convergedMs)} ms after it was made`,
          );
        } finally {
          await informer.stop();
        }
      },
    );

    await t.step(
      "a partition from the API server: retries with growing backoff, and replays what changed meanwhile once it heals",
      async () => {
        const ns = "inf-partition";
        await createNamespace(kc, ns);
        await applyObject(kc, configMap(ns, "kept", { v: "1" }), MANAGER);
        await applyObject(kc, configMap(ns, "changed", { v: "1" }), MANAGER);
        await applyObject(kc, configMap(ns, "deleted", { v: "1" }), MANAGER);
        const proxy = apiServerProxy(cluster);
        const { informer, events, logs } = recordingInformer(
          kubeConfigThrough(cluster, proxy),
          { apiVersion: "v1", kind: "ConfigMap" },
          { namespace: ns, backoff: { initialMs: 100, maxMs: 800 } },
        );
        informer.start();
        try {
          await informer.synced;
          events.length = 0;
          proxy.setMode("refuse");
          await applyObject(kc, configMap(ns, "changed", { v: "2" }), MANAGER);
          await applyObject(kc, configMap(ns, "added", { v: "1" }), MANAGER);
          await core.deleteNamespacedConfigMap({ name: "deleted", namespace: ns });
          await eventually(
            "four failed reconnects",
            () => logs.filter((l) => l.msg === "list/watch failed; retrying").length >= 4,
          );
          assert.deepEqual(events, [], "nothing arrives while partitioned");
          const delays = logs.filter((l) => l.msg === "list/watch failed; retrying")
            .map((l) => l.retryInMs as number);
          // Nominal delays 100, 200, 400, 800 (capped), each jittered into its upper half.
          assert.ok(delays[0]! >= 50 && delays[0]! <= 100, `first delay ${delays[0]}`);
          assert.ok(delays[3]! >= 400 && delays[3]! <= 800, `fourth delay ${delays[3]}`);
          const healedAt = performance.now();
          proxy.setMode("forward");
          await eventually(
            "the cache equals the API server",
            () =>
              names(informer.list(ns)).join() === "added,changed,kept" &&
              informer.get("changed", ns)?.data?.v === "2",
          );
          console.log(
            `partition healed; informer converged in ${
              Math.round(performance.now() - healedAt)
            } ms`,
          );
          assert.deepEqual(events.sort(), [
            `add ${ns}/added`,
            `delete ${ns}/deleted`,
            `update ${ns}/changed`,
          ]);
        } finally {
          await informer.stop();
          await proxy.close();
        }
      },
    );

    await t.step(
      "a watch the API server ends (timeoutSeconds) or that breaks mid-stream is opened again at once: changes made meanwhile wait for no backoff",
      async () => {
        const ns = "inf-reopen";
        await createNamespace(kc, ns);
        await applyObject(kc, configMap(ns, "c", { v: "0" }), MANAGER);
        const proxy = apiServerProxy(cluster);
        // Both with the defaults' backoff (400-800 ms after a first failure): what a change would
        // wait. `short` has the API server end its watches every second.
        const short = recordingInformer(
          kubeConfigThrough(cluster, proxy),
          { apiVersion: "v1", kind: "ConfigMap" },
          { namespace: ns, watchTimeoutSeconds: [1, 1], backoff: {} },
        );
        const long = recordingInformer(
          kubeConfigThrough(cluster, proxy),
          { apiVersion: "v1", kind: "ConfigMap" },
          { namespace: ns, backoff: {} },
        );
        const informers = [short.informer, long.informer];
        /** ms from starting the write of `v` to `informer`'s handler seeing it. */
        const change = async (informer: Informer<ConfigMap>, v: number): Promise<number> => {
          let seen!: () => void;
          const arrived = new Promise<void>((resolve) => seen = resolve);
          const off = informer.on("update", (o) => {
            if (o.data?.v === String(v)) seen();
          });
          let timer: ReturnType<typeof setTimeout> | undefined;
          const started = performance.now();
          try {
            await applyObject(kc, configMap(ns, "c", { v: String(v) }), MANAGER);
            await Promise.race([
              arrived,
              new Promise((_, reject) =>
                timer = setTimeout(() => reject(new Error(`v=${v} never arrived`)), 10_000)
              ),
            ]);
            return performance.now() - started;
          } finally {
            clearTimeout(timer);
            off();
          }
        };
        try {
          for (const i of informers) i.start();
          await Promise.all(informers.map((i) => i.synced));

          // ~3 s of changes 50 ms apart across the watches the API server ends
          const latencies: number[] = [];
          const until = performance.now() + 3_000;
          for (let v = 1; performance.now() < until; v++) {
            latencies.push(await change(short.informer, v));
            await new Promise((r) => setTimeout(r, 50));
          }
          const reopened = short.logs.filter((l) => l.msg === "watch ended; watching again");
          assert.ok(reopened.length >= 2, `the API server ended ${reopened.length} watches`);
          const worst = Math.max(...latencies);
          console.log(
            `${latencies.length} changes across ${reopened.length} watch re-opens: the slowest ` +
              `reached the cache ${worst.toFixed(1)} ms after its write started`,
          );
          assert.ok(worst < 400, `a change waited ${worst} ms across a re-open`);

          // `long`'s watch has delivered changes; the proxy now closes every connection
          await change(long.informer, 500);
          proxy.setMode("refuse");
          proxy.setMode("forward");
          const afterBreak = await change(long.informer, 1_000);
          console.log(
            `a change made as the watch broke reached the cache ${afterBreak.toFixed(1)} ms ` +
              "after its write started",
          );
          assert.ok(afterBreak < 400, `the change waited ${afterBreak} ms: a backoff`);
          assert.ok(
            long.logs.some((l) => l.msg === "watch broke; watching again"),
            "the broken watch was opened again",
          );
          assert.ok(
            !long.logs.some((l) => l.msg === "list/watch failed; retrying"),
            "a watch that worked is not backed off after one break",
          );
        } finally {
          for (const i of informers) await i.stop();
          await proxy.close();
        }
      },
    );

    await t.step(
      "a watch that falls silent (a link that drops packets) is replaced after the idle timeout",
      async () => {
        const ns = "inf-silent";
        await createNamespace(kc, ns);
        const proxy = apiServerProxy(cluster);
        const { informer, events, logs } = recordingInformer(
          kubeConfigThrough(cluster, proxy),
          { apiVersion: "v1", kind: "ConfigMap" },
          { namespace: ns, idleTimeoutMs: 1_000 },
        );
        informer.start();
        try {
          await informer.synced;
          proxy.setMode("blackhole");
          await applyObject(kc, configMap(ns, "while-silent", { v: "1" }), MANAGER);
          await eventually(
            "the silent watch was given up",
            () => logs.some((l) => l.msg === "watch idle; watching again"),
          );
          assert.deepEqual(events, []);
          proxy.setMode("forward");
          await eventually(
            "the change made during the silence arrived",
            () => informer.get("while-silent", ns) !== undefined,
          );
          assert.deepEqual(events, [`add ${ns}/while-silent`]);
          assert.ok(
            !logs.some((l) => l.level === "warn"),
            "a silent link is not reported as a failure",
          );
        } finally {
          await informer.stop();
          await proxy.close();
        }
      },
    );

    await t.step(
      "stop(): ends a watch, a connect to a silent server and a backoff at once, and no handler runs after it",
      async () => {
        // Watching: stop, then a change that no handler may see.
        const { informer, events } = recordingInformer(
          kc,
          { apiVersion: "v1", kind: "ConfigMap" },
          {
            namespace: "inf-configmaps",
          },
        );
        informer.start();
        await informer.synced;
        let started = performance.now();
        await informer.stop();
        const watchStopMs = performance.now() - started;
        const seen = events.length;
        await applyObject(kc, configMap("inf-configmaps", "after-stop", { v: "1" }), MANAGER);
        assert.equal(events.length, seen);

        // A server that accepts and never answers: stop() must not wait for it.
        const proxy = apiServerProxy(cluster);
        proxy.setMode("blackhole");
        const silent = recordingInformer(kubeConfigThrough(cluster, proxy), {
          apiVersion: "v1",
          plural: "configmaps",
        });
        silent.informer.start();
        await eventually("the informer connected", () => proxy.accepted > 0);
        started = performance.now();
        await silent.informer.stop();
        const connectStopMs = performance.now() - started;
        await assert.rejects(silent.informer.synced, /stopped before it synced/);

        // A refusing server: the informer sleeps in its backoff; stop() wakes it.
        proxy.setMode("refuse");
        const refused = recordingInformer(kubeConfigThrough(cluster, proxy), {
          apiVersion: "v1",
          plural: "configmaps",
        }, { backoff: { initialMs: 60_000, maxMs: 60_000 } });
        refused.informer.start();
        await eventually(
          "the informer backs off",
          () => refused.logs.some((l) => l.msg === "list/watch failed; retrying"),
        );
        started = performance.now();
        await refused.informer.stop();
        const backoffStopMs = performance.now() - started;
        await proxy.close();
        for (const ms of [watchStopMs, connectStopMs, backoffStopMs]) {
          assert.ok(ms < 500, `stop took ${ms} ms`);
        }
        console.log(
          `stop() took ${watchStopMs.toFixed(1)} ms watching, ${
            connectStopMs.toFixed(1)
          } ms connecting, ` +
            `${backoffStopMs.toFixed(1)} ms backing off`,
        );
      },
    );
  } finally {
    await clusterDown(CLUSTER);
  }
});
