/**
 * The operator and the API server with many nodes: what an endpoint change
 * costs them when N nodes each report every table generation in their
 * DataplaneNode (DESIGN.md: a Gateway is Programmed once every ready node
 * reports the current generation).
 *
 * **The agents are simulated; the data plane is not part of this
 * measurement.** A local cluster node is a network namespace with an agent
 * process, and 100 of them (each a Deno process with its BPF maps) do not fit
 * on the 2 cores these runs share. What the API server and the operator see
 * of an agent is kept real: per simulated node a Ready Node object, an agent
 * Lease (`blixt-agent-<node>`), a DataplaneNode owned by the Node, a
 * RoutingTable list+watch of its own, and after each table change, once
 * `--program-delay-ms` has passed (standing in for programming the maps), a
 * status written as the agent writes it: server-side apply as `blixt-agent`
 * (agent/node_status_writer.ts) of the status agent/status.ts `buildStatus`
 * makes, so a change to the agent's status shape is followed here. Not
 * simulated: traffic counters (no traffic), Lease renewals (the Leases are
 * written once with a one-hour duration: renewals are N/10 small writes a
 * second whatever changes, and would blur the per-change figures).
 *
 * ```
 * bench ──EndpointSlice apply (--rate/s)──> kube-apiserver ──watch──> operator ──RoutingTable──┐
 *   ^                                            ^                        ^                     │
 *   │ "table programmed" line (stderr)           │ N status applies       │ N DataplaneNode     │
 *   └──────────────── operator                   └── N simulated agents <─┴── events  <── watch ┘
 * ```
 *
 * For each N of `--nodes` (ascending; nodes are added to the same cluster
 * and operator), `--changes` endpoint changes at `--rate` a second over G
 * Gateways of L TCP listeners, each listener's TCPRoute to a Service of its
 * own. Lines (suffix `_n<N>`; with `--status-interval-ms` > 0 also
 * `_si<ms>`):
 *
 * - `endpoint_change_to_programmed_ms_p50` / `_p99`: from the EndpointSlice
 *   apply sent to the operator's "table programmed" log line for a table
 *   generation that carries it (every node reports it). The Gateway's
 *   Programmed condition stays True across an endpoint change and writes no
 *   status (docs/decisions.md), so the operator's line is where the new
 *   generation shows. `endpoint_change_to_table_ms_p50`: to the table seen
 *   through a watch.
 * - `operator_cpu_ms_per_change`, `apiserver_cpu_ms_per_change`,
 *   `etcd_cpu_ms_per_change`, `bench_cpu_ms_per_change` (the simulated agents and the watches of this
 *   process): process CPU (/proc) over the changes and 3 s after, per change.
 * - `operator_reconciles_per_change` (its /metrics), `operator_rss_mib`,
 *   `operator_heap_used_mib`, `operator_heap_total_mib` and
 *   `operator_external_mib` (V8's heap in use and reserved, memory held outside
 *   it; its /metrics).
 * - `agent_status_writes_per_change`: the simulated agents' status applies.
 * - `apiserver_requests_per_change_<verb>_<resource>[_<subresource>]`: the API
 *   server's `apiserver_request_total` over the window, per change, for every
 *   verb and resource that moved; `apiserver_watch_events_per_change_<kind>`
 *   from `apiserver_watch_events_total`.
 *
 * deno task bench nodes [--nodes 1,10,50,100] [--gateways 4] [--listeners 10]
 *   [--changes 40] [--rate 5] [--program-delay-ms 20] [--status-interval-ms 0]
 *   [--operator PATH/operator/main.ts] [--operator-log FILE]
 *
 * `--operator` runs another checkout's operator (e.g. the commit before a fix,
 * unpacked with `git archive`) against the same cluster set-up.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { clusterDown, clusterUp } from "../../tests/cluster/cluster.ts";
import { apiStatus, type KubeObject, shareConnections } from "../../kube/client.ts";
import { requestJson } from "../../kube/rest.ts";
import { collectionPath, type ResolvedResource, resolveResource } from "../../kube/resource.ts";
import { dropManagedFields, Informer } from "../../kube/informer.ts";
import { applyBlixtCrds } from "../../manifests/crds.ts";
import { AGENT_LEASE_LABELS, agentLeaseName, type DataplaneNodeStatus } from "../../api/mod.ts";
import { buildStatus } from "../../agent/status.ts";
import type { TableOutcome } from "../../agent/desired_state.ts";
import { kubeStatusWriter, type StatusWriter } from "../../agent/node_status_writer.ts";
import type { BenchLine } from "../dataplane.ts";
import { followOperatorLog } from "../operator.ts";
import { processCpuMs } from "../proc_cpu.ts";

const CLUSTER = "nodes-bench";
const MANAGER = "blixt-bench";
const NAMESPACE = "bench";
const ENDPOINTS = 4;

type Kc = Parameters<typeof requestJson>[0];

function emit(line: BenchLine): void {
  console.log(JSON.stringify(line));
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

const round = (x: number) => Math.round(x * 10) / 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU time (user + system) of process `pid` so far, in ms. */
function cpuMs(pid: number | "self"): Promise<number> {
  return Promise.resolve(processCpuMs(pid));
}

async function rssMiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
}

/** Sums of a Prometheus counter over the label sets `key` maps to one name. */
function counterSums(
  text: string,
  metric: string,
  key: (labels: Record<string, string>) => string,
): Map<string, number> {
  const out = new Map<string, number>();
  const re = new RegExp(`^${metric}\\{([^}]*)\\} (\\S+)$`, "gm");
  for (const m of text.matchAll(re)) {
    const labels: Record<string, string> = {};
    for (const l of m[1]!.matchAll(/(\w+)="([^"]*)"/g)) labels[l[1]!] = l[2]!;
    const k = key(labels);
    out.set(k, (out.get(k) ?? 0) + Number(m[2]));
  }
  return out;
}

/** The API server's request and watch-event counters. */
async function apiserverCounters(kc: Kc): Promise<{
  requests: Map<string, number>;
  watchEvents: Map<string, number>;
}> {
  const text = String(await requestJson(kc, "/metrics"));
  return {
    requests: counterSums(
      text,
      "apiserver_request_total",
      (l) =>
        [l.verb ?? "", l.resource ?? "", l.subresource ?? ""].filter((x) => x).join("_")
          .toLowerCase().replace(/[^a-z0-9_]+/g, "_"),
    ),
    watchEvents: counterSums(
      text,
      "apiserver_watch_events_total",
      (l) => (l.resource ?? l.kind ?? "").toLowerCase().replace(/[^a-z0-9]+/g, "_"),
    ),
  };
}

function diff(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) out.set(k, d);
  }
  return out;
}

function endpointSlice(gw: number, listener: number, extra: number): KubeObject {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: `svc-${gw}-${listener}-1`,
      namespace: NAMESPACE,
      labels: { "kubernetes.io/service-name": `svc-${gw}-${listener}` },
    },
    addressType: "IPv4",
    ports: [{ name: "tcp", port: 8080, protocol: "TCP" }],
    // a window of ENDPOINTS + 1 addresses that moves by one each change: the last one is new
    endpoints: Array.from({ length: ENDPOINTS + (extra > 0 ? 1 : 0) }, (_, i) => ({
      addresses: [`198.19.${gw * 16 + listener}.${((extra + i) % 250) + 1}`],
      nodeName: "node-1",
      conditions: { ready: true, serving: true, terminating: false },
    })),
  };
}

/** A simulated node: its agent's table watch and DataplaneNode status writes. */
class SimulatedAgent {
  readonly name: string;
  writes = 0;
  readonly #writer: StatusWriter;
  readonly #informer: Informer;
  readonly #tables = new Map<string, { namespace: string; name: string; generation: number }>();
  readonly #programmed = new Map<string, number>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #programDelayMs: number;
  readonly #intervalMs: number;
  #previous: DataplaneNodeStatus | undefined;
  #lastWriteAt = -Infinity;
  #writing: Promise<void> | undefined;
  #dirty = false;
  #pending: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(
    kc: Kc,
    name: string,
    options: { uid: string; programDelayMs: number; statusIntervalMs: number },
  ) {
    this.name = name;
    this.#programDelayMs = options.programDelayMs;
    this.#intervalMs = options.statusIntervalMs;
    this.#writer = kubeStatusWriter(kc, name, { uid: options.uid });
    this.#informer = new Informer(kc, {
      apiVersion: "blixt.dev/v1alpha1",
      kind: "RoutingTable",
      plural: "routingtables",
    }, { log: () => {}, transform: dropManagedFields });
    const onTable = (t: KubeObject) => {
      const namespace = t.metadata?.namespace ?? "";
      const tableName = t.metadata?.name ?? "";
      const key = `${namespace}/${tableName}`;
      const generation = t.metadata?.generation ?? 0;
      if ((this.#tables.get(key)?.generation ?? -1) >= generation) return;
      this.#tables.set(key, { namespace, name: tableName, generation });
      // programming the maps takes this long on a real node
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        if ((this.#programmed.get(key) ?? -1) < generation) this.#programmed.set(key, generation);
        this.#requestWrite();
      }, this.#programDelayMs);
      this.#timers.add(timer);
    };
    this.#informer.on("add", onTable);
    this.#informer.on("update", onTable);
    this.#informer.on("delete", (t) => {
      const key = `${t.metadata?.namespace}/${t.metadata?.name}`;
      this.#tables.delete(key);
      this.#programmed.delete(key);
      this.#requestWrite();
    });
  }

  async start(): Promise<void> {
    await this.#writer.ensure("sim0");
    this.#informer.start();
    await this.#informer.synced;
    this.#requestWrite();
  }

  /** Whether every table the agent knows is programmed at its latest generation and written. */
  get caughtUp(): boolean {
    return !this.#dirty && this.#writing === undefined && this.#pending === undefined &&
      this.#timers.size === 0 &&
      [...this.#tables].every(([k, t]) => this.#programmed.get(k) === t.generation);
  }

  /** One write in flight; with an interval, at most one a interval (the rest coalesced). */
  #requestWrite(): void {
    if (this.#stopped) return;
    if (this.#writing) {
      this.#dirty = true;
      return;
    }
    if (this.#pending) return;
    const wait = this.#lastWriteAt + this.#intervalMs - performance.now();
    if (wait > 0) {
      this.#pending = setTimeout(() => {
        this.#pending = undefined;
        this.#requestWrite();
      }, wait);
      return;
    }
    this.#writing = this.#write().finally(() => {
      this.#writing = undefined;
      if (this.#dirty) {
        this.#dirty = false;
        this.#requestWrite();
      }
    });
  }

  async #write(): Promise<void> {
    this.#lastWriteAt = performance.now();
    const tables: TableOutcome[] = [...this.#tables.values()].sort((a, b) =>
      `${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1
    ).map((t) => ({
      namespace: t.namespace,
      name: t.name,
      generation: t.generation,
      result: "programmed",
      errors: [],
      entries: 0,
      backends: 0,
    }));
    const status = buildStatus({
      tables,
      programmed: this.#programmed,
      synced: true,
      lastSyncTime: new Date().toISOString(),
    }, this.#previous);
    try {
      await this.#writer.write(status);
      this.#previous = status;
      this.writes++;
    } catch (err) {
      if (!this.#stopped) console.error(`# ${this.name}: status write failed: ${err}`);
      this.#dirty = true;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    clearTimeout(this.#pending);
    await this.#writing;
    await this.#informer.stop();
  }
}

/** A "table programmed" line of the operator's log. */
interface ProgrammedLine {
  at: number;
  gateway: string;
  generation: number;
}

async function operatorMetric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
}

/** Waits for `ok()` up to `ms`, polling. */
async function until(ok: () => boolean | Promise<boolean>, ms: number, what: string) {
  const deadline = performance.now() + ms;
  while (!(await ok())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Entry point of `deno task bench nodes`. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      nodes: { type: "string", default: "1,10,50,100" },
      gateways: { type: "string", default: "4" },
      listeners: { type: "string", default: "10" },
      changes: { type: "string", default: "40" },
      rate: { type: "string", default: "5" },
      "program-delay-ms": { type: "string", default: "20" },
      "status-interval-ms": { type: "string", default: "0" },
      operator: { type: "string" },
      "operator-log": { type: "string" },
    },
  });
  const steps = (values.nodes ?? "").split(",").map(Number).sort((a, b) => a - b);
  const gateways = Number(values.gateways);
  const listeners = Number(values.listeners);
  const changes = Number(values.changes);
  const rate = Number(values.rate);
  const programDelayMs = Number(values["program-delay-ms"]);
  const statusIntervalMs = Number(values["status-interval-ms"]);
  const operatorMain = values.operator ??
    new URL("../../operator/main.ts", import.meta.url).pathname;
  if (gateways > 15 || listeners > 16) throw new Error("at most 15 Gateways of 16 listeners");
  const suffix = statusIntervalMs > 0 ? `_si${statusIntervalMs}` : "";
  const log = (msg: string) => console.error(`# ${msg}`);
  log(
    `simulated agents (no data plane): ${gateways} Gateways x ${listeners} listeners, ${changes} changes at ${rate}/s, program delay ${programDelayMs} ms, status interval ${statusIntervalMs} ms, operator ${operatorMain}`,
  );
  let operator: Deno.ChildProcess | undefined;
  let logDone: Promise<void> | undefined;
  const informers: Informer[] = [];
  const agents: SimulatedAgent[] = [];
  let connections: { close(): void } | undefined;
  try {
    const cluster = await clusterUp({ name: CLUSTER, nodes: 1 });
    const kc = cluster.kubeConfig();
    await applyBlixtCrds(kc, { fieldManager: MANAGER });
    connections = shareConnections(kc);
    const resources = new Map<string, ResolvedResource>();
    const create = async (obj: KubeObject) => {
      const type = `${obj.apiVersion}/${obj.kind}`;
      let resource = resources.get(type);
      if (!resource) {
        resource = await resolveResource(kc, {
          apiVersion: obj.apiVersion ?? "",
          kind: obj.kind ?? "",
        });
        resources.set(type, resource);
      }
      try {
        return await requestJson<KubeObject>(
          kc,
          collectionPath(resource, obj.metadata?.namespace),
          { method: "POST", body: obj },
        );
      } catch (err) {
        if (apiStatus(err) !== 409) throw err; // left from an earlier run
        return undefined;
      }
    };
    const apply = (path: string, body: KubeObject) =>
      requestJson<KubeObject>(kc, path, {
        method: "PATCH",
        query: { fieldManager: MANAGER, force: true },
        body,
        contentType: "application/apply-patch+yaml",
      });
    for (
      const obj of [
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "blixt-system" } },
        { apiVersion: "v1", kind: "Namespace", metadata: { name: NAMESPACE } },
        {
          apiVersion: "blixt.dev/v1alpha1",
          kind: "GatewayClassConfig",
          metadata: { name: "bench" },
          spec: { addressPools: [{ name: "local", cidr: cluster.plan.gatewayPool }] },
        },
        {
          apiVersion: "gateway.networking.k8s.io/v1",
          kind: "GatewayClass",
          metadata: { name: "blixt" },
          spec: {
            controllerName: "blixt.dev/gateway-controller",
            parametersRef: { group: "blixt.dev", kind: "GatewayClassConfig", name: "bench" },
          },
        },
      ] as KubeObject[]
    ) await create(obj);
    for (let g = 0; g < gateways; g++) {
      await create({
        apiVersion: "gateway.networking.k8s.io/v1",
        kind: "Gateway",
        metadata: { name: `gw-${g}`, namespace: NAMESPACE },
        spec: {
          gatewayClassName: "blixt",
          listeners: Array.from({ length: listeners }, (_, l) => ({
            name: `l${l}`,
            port: 10000 + l,
            protocol: "TCP",
          })),
        },
      });
      for (let l = 0; l < listeners; l++) {
        await create({
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: `svc-${g}-${l}`, namespace: NAMESPACE },
          spec: { clusterIP: "None", ports: [{ name: "tcp", port: 80, targetPort: 8080 }] },
        });
        await create(endpointSlice(g, l, 0));
        await create({
          apiVersion: "gateway.networking.k8s.io/v1",
          kind: "TCPRoute",
          metadata: { name: `r-${g}-${l}`, namespace: NAMESPACE },
          spec: {
            parentRefs: [{ name: `gw-${g}`, sectionName: `l${l}` }],
            rules: [{ backendRefs: [{ name: `svc-${g}-${l}`, port: 80 }] }],
          },
        });
      }
    }

    // the tables as a user sees them: which generation carries which backend
    const seen = new Map<string, (table: KubeObject) => void>();
    const tableGenerations = new Map<string, number>();
    const tables = new Informer(kc, {
      apiVersion: "blixt.dev/v1alpha1",
      kind: "RoutingTable",
      plural: "routingtables",
    }, { log: () => {}, transform: dropManagedFields });
    const onTable = (t: KubeObject) => {
      const key = `${t.metadata?.namespace}/${t.metadata?.name}`;
      tableGenerations.set(key, t.metadata?.generation ?? 0);
      seen.get(key)?.(t);
    };
    tables.on("add", onTable);
    tables.on("update", onTable);
    informers.push(tables.start());
    await tables.synced;

    const port = 19000 + Math.floor(Math.random() * 1000);
    operator = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        operatorMain,
        "--kubeconfig",
        cluster.kubeconfig,
        "--health-port",
        String(port),
        "--identity",
        "bench",
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const programmedLines: ProgrammedLine[] = [];
    const logFile = values["operator-log"]
      ? await Deno.open(values["operator-log"], { write: true, create: true, truncate: true })
      : undefined;
    logDone = followOperatorLog(
      operator.stderr,
      logFile,
      "table programmed",
      (line) =>
        programmedLines.push({
          at: Date.parse(line.time),
          gateway: String(line.gateway),
          generation: Number(line.generation),
        }),
    );
    await until(() => tableGenerations.size === gateways, 120_000, "every RoutingTable");
    const { apiserverPid, etcdPid } = JSON.parse(
      await Deno.readTextFile(`${cluster.dir}/cluster.json`),
    ) as { apiserverPid: number; etcdPid: number };

    const extraOf = new Map<string, number>();
    let nextChange = 0;
    for (const n of steps) {
      // nodes up to n: Node (Ready), agent Lease, DataplaneNode, the agent's watch and writes
      const added: SimulatedAgent[] = [];
      for (let i = agents.length; i < n; i++) {
        const name = `sim-${String(i + 1).padStart(4, "0")}`;
        const node = await create({
          apiVersion: "v1",
          kind: "Node",
          metadata: { name, labels: { "kubernetes.io/hostname": name } },
        });
        const uid = node?.metadata?.uid ?? "";
        await requestJson(kc, `/api/v1/nodes/${name}/status`, {
          method: "PATCH",
          query: { fieldManager: MANAGER, force: true },
          contentType: "application/apply-patch+yaml",
          body: {
            apiVersion: "v1",
            kind: "Node",
            metadata: { name },
            status: {
              conditions: [{
                type: "Ready",
                status: "True",
                reason: "KubeletReady",
                message: "simulated",
                lastHeartbeatTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
                lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
              }],
              addresses: [{ type: "InternalIP", address: `198.18.250.${(i % 250) + 1}` }],
            },
          },
        });
        const now = new Date().toISOString().replace("Z", "000Z");
        await apply(
          `/apis/coordination.k8s.io/v1/namespaces/blixt-system/leases/${agentLeaseName(name)}`,
          {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: {
              name: agentLeaseName(name),
              namespace: "blixt-system",
              labels: { ...AGENT_LEASE_LABELS },
            },
            spec: {
              holderIdentity: `sim-agent-${name}`,
              leaseDurationSeconds: 3600,
              acquireTime: now,
              renewTime: now,
            },
          },
        );
        const agent = new SimulatedAgent(kc, name, {
          uid,
          programDelayMs,
          statusIntervalMs,
        });
        agents.push(agent);
        added.push(agent);
      }
      await Promise.all(added.map((a) => a.start()));
      // settled: every agent has written every table's latest generation, the operator is idle
      await until(
        async () =>
          agents.every((a) => a.caughtUp) &&
          await operatorMetric(port, "blixt_operator_queue_depth") === 0,
        120_000,
        `${n} nodes to settle`,
      );
      await sleep(3000);
      log(`${n} nodes settled`);

      const before = {
        operator: await cpuMs(operator.pid),
        apiserver: await cpuMs(apiserverPid),
        etcd: await cpuMs(etcdPid),
        bench: await cpuMs("self"),
        reconciles: await operatorMetric(port, "blixt_operator_reconciles_total"),
        writes: agents.reduce((s, a) => s + a.writes, 0),
        counters: await apiserverCounters(kc),
      };
      const started = performance.now();
      const sent: { gateway: string; at: number; generation?: number; tableAt?: number }[] = [];
      const pendingChanges: Promise<void>[] = [];
      for (let i = 0; i < changes; i++) {
        const wait = started + i * 1000 / rate - performance.now();
        if (wait > 0) await sleep(wait);
        const c = nextChange++;
        const g = c % gateways;
        const l = Math.floor(c / gateways) % listeners;
        const extraKey = `${g}/${l}`;
        const extra = (extraOf.get(extraKey) ?? 0) + 1;
        extraOf.set(extraKey, extra);
        const slice = endpointSlice(g, l, extra);
        const eps = slice.endpoints as { addresses: string[] }[];
        const ip = eps[eps.length - 1]!.addresses[0]!;
        const gateway = `${NAMESPACE}/gw-${g}`;
        const record: (typeof sent)[number] = { gateway, at: Date.now() };
        sent.push(record);
        // the table generation that carries the change: the first one with the new address
        const carries = (t: KubeObject) => {
          const spec = JSON.stringify(t.spec);
          return spec.includes(`"${ip}"`) || spec.includes(`"${ip}:`);
        };
        const previous = seen.get(gateway);
        seen.set(gateway, (t) => {
          previous?.(t);
          if (record.generation === undefined && carries(t)) {
            record.generation = t.metadata?.generation ?? 0;
            record.tableAt = Date.now();
          }
        });
        pendingChanges.push(
          apply(
            `/apis/discovery.k8s.io/v1/namespaces/${NAMESPACE}/endpointslices/${slice.metadata?.name}`,
            slice,
          ).then(() => {}),
        );
      }
      await Promise.all(pendingChanges);
      const programmedAt = (r: (typeof sent)[number]) =>
        r.generation === undefined
          ? undefined
          : programmedLines.find((p) =>
            p.gateway === r.gateway && p.generation >= r.generation! && p.at >= r.at - 1
          )?.at;
      try {
        await until(
          () => sent.every((r) => programmedAt(r) !== undefined),
          60_000,
          "every change's table programmed",
        );
      } catch (err) {
        log(`${err}: ${sent.filter((r) => programmedAt(r) === undefined).length} not programmed`);
      }
      await sleep(3000); // writes that follow: coalesced status, trailing reconciles
      for (const key of seen.keys()) seen.delete(key);
      const after = {
        operator: await cpuMs(operator.pid),
        apiserver: await cpuMs(apiserverPid),
        etcd: await cpuMs(etcdPid),
        bench: await cpuMs("self"),
        reconciles: await operatorMetric(port, "blixt_operator_reconciles_total"),
        writes: agents.reduce((s, a) => s + a.writes, 0),
        counters: await apiserverCounters(kc),
      };
      const load = (await Deno.readTextFile("/proc/loadavg")).split(" ")[0];
      log(`${n} nodes: 1-minute load ${load}`);
      const tag = `_n${n}${suffix}`;
      const latencies = sent.flatMap((r) => {
        const at = programmedAt(r);
        return at === undefined ? [] : [at - r.at];
      });
      const tableLatencies = sent.flatMap((r) => r.tableAt === undefined ? [] : [r.tableAt - r.at]);
      const line = (name: string, value: number, unit: string) =>
        emit({ name: `${name}${tag}`, value: round(value), unit, better: "lower" });
      line("endpoint_change_to_programmed_ms_p50", quantile(latencies, 0.5), "ms");
      line("endpoint_change_to_programmed_ms_p99", quantile(latencies, 0.99), "ms");
      line("endpoint_change_to_table_ms_p50", quantile(tableLatencies, 0.5), "ms");
      line("changes_not_programmed", changes - latencies.length, "changes");
      line("operator_cpu_ms_per_change", (after.operator - before.operator) / changes, "ms");
      line("apiserver_cpu_ms_per_change", (after.apiserver - before.apiserver) / changes, "ms");
      line("etcd_cpu_ms_per_change", (after.etcd - before.etcd) / changes, "ms");
      line("bench_cpu_ms_per_change", (after.bench - before.bench) / changes, "ms");
      line(
        "operator_reconciles_per_change",
        (after.reconciles - before.reconciles) / changes,
        "reconciles",
      );
      line("agent_status_writes_per_change", (after.writes - before.writes) / changes, "writes");
      line("operator_rss_mib", await rssMiB(operator.pid), "MiB");
      // V8's heap in use (live and not yet collected) and reserved: what of the RSS is the JS heap
      const mib = async (metric: string) => (await operatorMetric(port, metric)) / 2 ** 20;
      line("operator_heap_used_mib", await mib("blixt_operator_heap_used_bytes"), "MiB");
      line("operator_heap_total_mib", await mib("blixt_operator_heap_total_bytes"), "MiB");
      line("operator_external_mib", await mib("blixt_operator_external_memory_bytes"), "MiB");
      for (const [k, v] of diff(after.counters.requests, before.counters.requests)) {
        line(`apiserver_requests_per_change_${k}`, v / changes, "requests");
      }
      for (const [k, v] of diff(after.counters.watchEvents, before.counters.watchEvents)) {
        line(`apiserver_watch_events_per_change_${k}`, v / changes, "events");
      }
    }
  } finally {
    if (operator) {
      try {
        operator.kill("SIGTERM");
      } catch { /* already gone */ }
      await operator.status;
    }
    await logDone?.catch(() => {});
    for (const a of agents) await a.stop();
    for (const i of informers) await i.stop();
    connections?.close();
    await clusterDown(CLUSTER);
  }
}

if (import.meta.main) await main(Deno.args);
