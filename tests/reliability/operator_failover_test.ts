/**
 * Operator failover during route and endpoint churn (issue 9): two operator
 * replicas, the leader killed with SIGKILL while routes are created and
 * deleted and backendRefs and EndpointSlices change every 100-200 ms. Local
 * cluster `rel-fo`, 2 nodes, an agent per node.
 *
 * ```
 * host ──ECMP──► node-1 | node-2
 *   Gateway rel: tcp 80 ── TCPRoute rel-tcp ──┬─ echo-a (node-1)      weights churned
 *                udp 53 ── UDPRoute rel-udp ──┼─ echo-b (node-2)
 *                                             └─ pool: c (node-1) ready <-> terminating, d (node-2)
 *                tcp 81 ── TCPRoute rel-spare (created, deleted) ── spare: [c] <-> [c, d]
 * operator (leader, killed) + operator standby ── Lease blixt-system/blixt-operator (15 s)
 * ```
 *
 * Every change keeps each flow's backend (weights stay >= 1, a terminating
 * endpoint keeps its flows, the spare listener carries no traffic) and no
 * reference dangles, so the assertions are strict: no failed request, no
 * condition of the Gateway, its listeners or the routes ever leaves its good
 * state (True; False for Conflicted), as a watch sees them.
 *
 * Figures are printed with a `reliability:` prefix (docs/reliability.md).
 *
 * @module
 */
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { type KubeObject } from "../../kube/client.ts";
import { Informer } from "../../kube/informer.ts";
import { requestJson } from "../../kube/rest.ts";
import { AGENT_LEASE_SELECTOR, programmedGeneration } from "../../api/mod.ts";
import { putObject, type SnapshotObject } from "../../operator/snapshot.ts";
import { reconcile } from "../../operator/gateway.ts";
import { specToWrite } from "../../operator/shared_backends.ts";
import { listSnapshot } from "../../operator/resources.ts";
import { sleep, stopProcess } from "../cluster/host.ts";
import { programmedAddress } from "../e2e/kube_state.ts";
import { startSystem, stopSystem, type System } from "../e2e/system.ts";
import { describeTraffic, newConnectionsConverge, watchTraffic } from "./traffic_watch.ts";
import { figure, PORTS, startStandbyOperator } from "./_fixtures.ts";

const NAME = "rel-fo";
const LEASE_MS = 15_000;

const GATEWAY = `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: rel, namespace: default }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 80, protocol: TCP }
  - { name: udp, port: 53, protocol: UDP }
  - { name: spare, port: 81, protocol: TCP }
`;

/** rel-tcp and rel-udp to echo-a, echo-b and pool with weights `w`. */
function routesYaml(w: readonly [number, number, number]): string {
  const refs = (port: number) =>
    `[{ name: echo-a, port: ${port}, weight: ${w[0]} }, { name: echo-b, port: ${port}, weight: ${
      w[1]
    } }, { name: pool, port: ${port}, weight: ${w[2]} }]`;
  return ["TCPRoute rel-tcp tcp 80", "UDPRoute rel-udp udp 53"].map((s) => {
    const [kind, name, section, port] = s.split(" ");
    return `
apiVersion: gateway.networking.k8s.io/v1
kind: ${kind}
metadata: { name: ${name}, namespace: default }
spec:
  parentRefs: [{ name: rel, sectionName: ${section} }]
  rules: [{ backendRefs: ${refs(Number(port))} }]
`;
  }).join("---");
}

const SPARE_ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: rel-spare, namespace: default }
spec:
  parentRefs: [{ name: rel, sectionName: spare }]
  rules: [{ backendRefs: [{ name: spare, port: 80 }] }]
`;

const WEIGHTS: readonly (readonly [number, number, number])[] = [
  [1, 1, 1],
  [2, 1, 1],
  [1, 2, 1],
  [1, 1, 2],
  [3, 2, 1],
];

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  observedGeneration?: number;
}

/** Whether a condition is in its good state: True, or False for Conflicted. */
function good(c: Condition): boolean {
  return c.type === "Conflicted" ? c.status === "False" : c.status === "True";
}

/** Every blixt-owned condition of a Gateway (and its listeners) or route, labelled. */
function conditionsOf(o: KubeObject): [string, Condition][] {
  const status = o.status as {
    conditions?: Condition[];
    listeners?: { name: string; conditions?: Condition[] }[];
    parents?: { controllerName?: string; parentRef: { name: string }; conditions?: Condition[] }[];
  } | undefined;
  const id = `${o.kind} ${o.metadata?.name}`;
  const out: [string, Condition][] = [];
  for (const c of status?.conditions ?? []) out.push([id, c]);
  for (const l of status?.listeners ?? []) {
    for (const c of l.conditions ?? []) out.push([`${id} listener ${l.name}`, c]);
  }
  for (const p of status?.parents ?? []) {
    if (p.controllerName !== "blixt.dev/gateway-controller") continue;
    for (const c of p.conditions ?? []) out.push([`${id} parent ${p.parentRef.name}`, c]);
  }
  return out;
}

/**
 * Watches Gateways, TCPRoutes, UDPRoutes, RoutingTables and the operator's
 * Lease: every condition that is not in its good state, and when each object
 * kind was last written and by whom the Lease is held.
 */
async function watchControlPlane(sys: System, standby: string) {
  const kc = sys.cluster.kubeConfig();
  const bad = new Map<string, number>();
  const writes: { at: number; what: string }[] = [];
  let leaseTakenAt: number | undefined;
  const informers: Informer[] = [];
  const kinds = [
    { apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", plural: "gateways" },
    { apiVersion: "gateway.networking.k8s.io/v1", kind: "TCPRoute", plural: "tcproutes" },
    { apiVersion: "gateway.networking.k8s.io/v1", kind: "UDPRoute", plural: "udproutes" },
  ];
  for (const ref of kinds) {
    const informer = new Informer(kc, ref, { namespace: "default", log: () => {} });
    const check = (o: KubeObject) => {
      for (const [id, c] of conditionsOf({ ...o, kind: ref.kind })) {
        if (!good(c)) {
          const key = `${id} ${c.type}=${c.status}/${c.reason}`;
          bad.set(key, (bad.get(key) ?? 0) + 1);
        }
      }
    };
    informer.on("add", check);
    informer.on("update", (o, old) => {
      check(o);
      if (!isDeepStrictEqual(o.status, old.status)) {
        writes.push({ at: performance.now(), what: `${ref.kind} ${o.metadata?.name} status` });
      }
    });
    informers.push(informer.start());
  }
  const tables = new Informer(kc, {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    plural: "routingtables",
  }, { namespace: "default", log: () => {} });
  tables.on(
    "update",
    (o) => writes.push({ at: performance.now(), what: `table gen ${o.metadata?.generation}` }),
  );
  informers.push(tables.start());
  const lease = new Informer(kc, { apiVersion: "coordination.k8s.io/v1", plural: "leases" }, {
    namespace: "blixt-system",
    fieldSelector: "metadata.name=blixt-operator",
    log: () => {},
  });
  lease.on("update", (o) => {
    const holder = (o.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
    if (holder === standby && leaseTakenAt === undefined) leaseTakenAt = performance.now();
  });
  informers.push(lease.start());
  await Promise.all(informers.map((i) => i.synced));
  return {
    bad,
    leaseTakenAt: () => leaseTakenAt,
    /** The first write of an object the operator owns at or after `at`. */
    firstWriteAfter: (at: number) => writes.find((w) => w.at >= at),
    stop: () => Promise.all(informers.map((i) => i.stop())),
  };
}

/**
 * Whether what is stored is what the operator's own reconcile wants from the
 * objects as they are now: the table, the Gateway status and every route's
 * parents, and every node programmed at the table's generation.
 */
async function converged(sys: System): Promise<string | undefined> {
  const kc = sys.cluster.kubeConfig();
  const snapshot = await listSnapshot(kc);
  // the agents' liveness Leases come from a watch of their own in the operator
  const leases = await requestJson<{ items: KubeObject[] }>(
    kc,
    "/apis/coordination.k8s.io/v1/namespaces/blixt-system/leases",
    { query: { labelSelector: AGENT_LEASE_SELECTOR } },
  );
  for (const lease of leases.items) {
    putObject(snapshot, { ...lease, kind: "Lease" } as SnapshotObject);
  }
  const result = reconcile("default/rel", snapshot, {
    now: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    nowMs: Date.now(),
  });
  const table = snapshot.routingTables.get("default/rel");
  if (result.table.action !== "apply") return `table ${result.table.action}`;
  // as the writer writes it: backends once when every agent reads that (shared_backends.ts)
  const want = specToWrite(result.table.table.spec, snapshot.dataplaneNodes);
  if (!table || !isDeepStrictEqual(table.spec, want)) return "table differs";
  const generation = table.metadata.generation;
  for (const dpn of snapshot.dataplaneNodes.values()) {
    const done = programmedGeneration(dpn, { namespace: "default", name: "rel" });
    if (done !== generation) return `${dpn.metadata.name} at ${done} of ${generation}`;
  }
  const gateway = snapshot.gateways.get("default/rel");
  if (!isDeepStrictEqual(gateway?.status, result.status)) {
    return `Gateway status ${JSON.stringify(gateway?.status)}, wanted ${
      JSON.stringify(result.status)
    }`;
  }
  if (result.routeStatuses.length > 0) {
    return `route status differs: ${result.routeStatuses.map((r) => r.name).join(", ")}`;
  }
  return undefined;
}

Deno.test("reliability: operator failover during route and endpoint churn: the standby leads within the lease, converges, no condition leaves its good state, traffic untouched", async () => {
  let system: System | undefined;
  let standbyPid = 0;
  try {
    system = await startSystem({ name: NAME, nodes: 2 });
    const sys = system;
    const local = sys.target;
    if (local.kind !== "local") throw new Error("needs the local cluster (the leader is killed)");
    const cluster = local.cluster;
    const kubectl = (args: string[]) => cluster.kubectl(args);
    const kc = cluster.kubeConfig();
    const [node1, node2] = cluster.nodes;
    assert.ok(node1 && node2);
    const a = await sys.createPod({ name: "echo-a", node: node1.name });
    const b = await sys.createPod({ name: "echo-b", node: node2.name });
    const c = await sys.createPod({ name: "echo-c", node: node1.name });
    const d = await sys.createPod({ name: "echo-d", node: node2.name });
    await sys.publishService("default", "echo-a", { ports: PORTS, pods: [a] });
    await sys.publishService("default", "echo-b", { ports: PORTS, pods: [b] });
    const pool = (cReady: boolean) =>
      sys.publishService("default", "pool", {
        ports: PORTS,
        pods: [{ pod: c, ready: cReady, serving: true, terminating: !cReady }, d],
      });
    await pool(true);
    const spare = (both: boolean) =>
      sys.publishService("default", "spare", { ports: PORTS, pods: both ? [c, d] : [c] });
    await spare(true);
    await sys.apply([GATEWAY, routesYaml([1, 1, 1]), SPARE_ROUTE].join("---"));
    const vip = await programmedAddress(kubectl, "rel");
    await newConnectionsConverge(
      vip,
      80,
      (n) => ["echo-a", "echo-b", "echo-c", "echo-d"].includes(n),
    );

    // The standby: synced, not leading.
    const started = await startStandbyOperator(cluster, (pid) => standbyPid = pid);
    const standby = started.identity;
    const standbyPort = started.port;
    const metrics = () =>
      fetch(`http://127.0.0.1:${standbyPort}/metrics`).then((r) => r.text()).catch(() => "");
    assert.match(await metrics(), /^blixt_operator_leader 0$/m);

    const watch = await watchControlPlane(sys, standby);
    assert.deepEqual([...watch.bad], [], "every condition good before the churn");
    const traffic = watchTraffic(vip, { tcp: 80, udp: 53 });
    let churning = true;
    const ops = { weights: 0, pool: 0, spareRoute: 0, spareSlice: 0, errors: 0 };
    let weights = WEIGHTS[0]!;
    let spareRoute = true;
    const routePath = "/apis/gateway.networking.k8s.io/v1/namespaces/default/tcproutes/rel-spare";
    const churn = (async () => {
      for (let i = 0; churning; i++) {
        try {
          switch (i % 4) {
            case 0:
              weights = WEIGHTS[ops.weights % WEIGHTS.length]!;
              await sys.apply(routesYaml(weights));
              ops.weights++;
              break;
            case 1:
              await pool(ops.pool % 2 === 1); // echo-c terminating, then ready again
              ops.pool++;
              break;
            case 2:
              if (spareRoute) await requestJson(kc, routePath, { method: "DELETE" });
              else await sys.apply(SPARE_ROUTE);
              spareRoute = !spareRoute;
              ops.spareRoute++;
              break;
            case 3:
              await spare(ops.spareSlice % 2 === 1);
              ops.spareSlice++;
              break;
          }
        } catch {
          ops.errors++;
        }
        await sleep(100 + Math.random() * 100);
      }
    })();

    await sleep(5000);
    Deno.kill(local.operator.pid, "SIGKILL");
    const killed = performance.now();
    while (watch.leaseTakenAt() === undefined) {
      assert.ok(performance.now() - killed < 30_000, "the standby did not take the Lease in 30 s");
      await sleep(50);
    }
    const leaseMs = Math.round(watch.leaseTakenAt()! - killed);
    while (watch.firstWriteAfter(watch.leaseTakenAt()!) === undefined) {
      assert.ok(performance.now() - killed < 40_000, "the new leader wrote nothing in 40 s");
      await sleep(50);
    }
    const first = watch.firstWriteAfter(watch.leaseTakenAt()!)!;
    const firstWriteMs = Math.round(first.at - killed);
    await sleep(5000);
    churning = false;
    await churn;
    const stopped = performance.now();
    let last: string | undefined = "not checked";
    while ((last = await converged(sys).catch((e) => String(e))) !== undefined) {
      assert.ok(
        performance.now() - stopped < 60_000,
        `not converged 60 s after the churn: ${last}`,
      );
      await sleep(250);
    }
    const convergedMs = Math.round(performance.now() - stopped);
    await sleep(1000);
    const report = await traffic.stop();
    await watch.stop();
    assert.match(await metrics(), /^blixt_operator_leader 1$/m);

    const lost = (report.failed["long-udp"] ?? 0) + (report.failed["new-udp"] ?? 0);
    const resets = report.failures.filter((f) => f.kind === "reset").length;
    figure("operator_failover_churn.lease_duration_ms", LEASE_MS);
    figure("operator_failover_churn.kill_to_lease_taken_ms", leaseMs);
    figure("operator_failover_churn.kill_to_first_write_ms", `${firstWriteMs} (${first.what})`);
    figure("operator_failover_churn.changes", JSON.stringify(ops));
    figure("operator_failover_churn.converged_after_churn_ms", convergedMs);
    figure("operator_failover_churn.traffic", describeTraffic(report));
    figure("operator_failover_churn.udp_lost", lost);
    figure("operator_failover_churn.tcp_resets", resets);
    figure("operator_failover_churn.conditions_not_good", JSON.stringify([...watch.bad]));

    // client-go's algorithm counts the lease from the last renewal before the kill: within 15 s,
    // plus up to 1 s for the watch event and timers on a loaded machine
    assert.ok(
      leaseMs <= LEASE_MS + 1000,
      `the standby took the Lease ${leaseMs} ms after the kill`,
    );
    assert.deepEqual([...watch.bad], [], "a condition left its good state");
    assert.equal(traffic.failures(), 0, describeTraffic(report));
    assert.deepEqual(report.moved, {}, "a long-lived flow changed backend");
    assert.ok(ops.weights > 10 && ops.spareRoute > 10, JSON.stringify(ops));

    // the new leader drives the data plane: everything to echo-a
    await sys.apply(routesYaml([1, 0, 0]));
    await newConnectionsConverge(vip, 80, (n) => n === "echo-a");
  } catch (e) {
    if (system) console.error(await system.logTails(30));
    if (system?.target.kind === "local") {
      const log = `${system.target.cluster.dir}/operator-standby.log`;
      const text = await Deno.readTextFile(log).catch(() => "");
      console.error(
        `--- last lines of the standby (${log}):\n${text.split("\n").slice(-40).join("\n")}`,
      );
    }
    throw e;
  } finally {
    if (standbyPid) await stopProcess(standbyPid);
    await stopSystem(system, NAME);
  }
});
