/**
 * Operator benchmarks on the local cluster, printed as JSON lines:
 *
 * - `reconcile_10k_routes_ms`: 10,000 TCPRoutes over 100 Gateways (50 TCP
 *   listeners each, 2 routes a listener) exist before the operator starts;
 *   from starting `deno task operator` (a process of its own) to every
 *   RoutingTable written complete (every entry with its route and backends),
 *   as seen through a watch. `route_status_10k_ms`: to every route's status
 *   written too.
 * - `endpoint_change_to_table_ms_p50` / `_p99`: at that scale, from writing an
 *   EndpointSlice (one endpoint added) to the Gateway's RoutingTable carrying
 *   it, as seen through a watch. With `--services per-gateway` (the default)
 *   one Service backs all 50 listeners of a Gateway, so a change rewrites
 *   every entry of its table; with `--services per-listener` (the usual shape:
 *   a Service per route, the listener's two routes sharing it; lines suffixed
 *   `_per_listener`) a change rewrites one entry.
 * - `endpoint_change_step_<step>_ms_p50` / `_p99`: the same changes in steps,
 *   placed by the operator's "reconciled" line of the table write: `apply`
 *   (the EndpointSlice apply answered), `to_operator` (to the operator queueing
 *   the Gateway), `queue`, `reconcile`, `table_write` (its `queuedMs`,
 *   `reconcileMs`, `tableMs`), `to_watch` (its line to the watch showing the
 *   table); the five slowest changes on stderr with their `total`.
 * - `operator_cpu_s_to_tables`, `operator_cpu_s_to_status`: CPU time the
 *   operator process used until then (its share of two busy cores is what
 *   shared machines make noisy; its CPU time much less so), and
 *   `operator_cpu_ms_per_endpoint_change` during the endpoint changes.
 * - `apiserver_cpu_ms_per_endpoint_change`: the API server process's CPU time
 *   over the changes (its EndpointSlice and table writes, their watches, its
 *   GC), per change.
 * - `apiserver_gc_cycles_per_100_endpoint_changes`, `apiserver_heap_mib_after_endpoint_changes`:
 *   the API server's Go GC cycles over the changes and its heap in use after
 *   them (its /metrics): the table writes that overlap a cycle are the slow ones.
 * - `gateway_status_writes_per_endpoint_change`: Gateway updates (the
 *   operator writes only their status there) seen through a watch from the
 *   first endpoint change to 3 s after the last, over the number of changes.
 * - `routing_table_bytes`: a RoutingTable's JSON (without managedFields), the
 *   mean over the tables after the changes.
 * - `operator_rss_mib_at_10k`: the operator process's resident set once it has
 *   converged and the endpoint changes are done; `operator_heap_used_mib_at_10k`
 *   and `operator_heap_total_mib_at_10k`: its V8 heap then (from its /metrics).
 *
 * deno task bench operator [--gateways 100] [--routes 10000] [--changes 100]
 *   [--services per-gateway|per-listener] [--operator-log FILE] [--operator-v8-flags FLAGS]
 *   [--operator-profile FILE] [--agent-features backendsFrom,endpoints|none]
 *
 * No agent runs: a DataplaneNode `bench-agent` (no Node of that name, so it
 * holds no Gateway's Programmed back) lists the features agents would, by
 * default what this version's agent lists; `--agent-features none` is a
 * cluster of older agents, where the operator writes every entry's backends.
 *
 * The operator runs with the `DENO_V8_FLAGS` manifests/operator.yaml deploys
 * it with (its heap cap), as stderr says; `--operator-v8-flags FLAGS` replaces
 * them, `--operator-v8-flags ""` runs it without (V8 then sizes its heap from
 * the machine's memory, not a container's limit).
 *
 * `--operator-profile FILE`: a CPU profile of the operator (over its inspector,
 * bench/tools/cpu_profile.ts) during the endpoint changes only, written to FILE,
 * its busiest functions on stderr.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseAllDocuments } from "yaml";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { apiStatus, type KubeObject, shareConnections } from "../kube/client.ts";
import { expandRoutingTable, type RoutingTable } from "../api/mod.ts";
import { AGENT_FEATURES } from "../agent/status.ts";
import { requestJson } from "../kube/rest.ts";
import { collectionPath, type ResolvedResource, resolveResource } from "../kube/resource.ts";
import { dropManagedFields, Informer } from "../kube/informer.ts";
import { applyBlixtCrds } from "../manifests/crds.ts";
import type { BenchLine } from "./dataplane.ts";
import { percentile } from "./stats.ts";
import { startCpuProfile, summarizeProfile } from "./tools/cpu_profile.ts";

const CLUSTER = "op2-test-bench";
const MANAGER = "blixt-bench";
/** The DataplaneNode standing in for the agents (none run here). */
const BENCH_AGENT = "bench-agent";
const LISTENERS = 50;
const ENDPOINTS = 4;

function emit(line: BenchLine): void {
  console.log(JSON.stringify(line));
}

/** Service `svc-G` (all of Gateway G's listeners) or `svc-G-lL` (listener L's only). */
function serviceName(gw: number, listener?: number): string {
  return listener === undefined ? `svc-${gw}` : `svc-${gw}-l${listener}`;
}

function slice(ns: string, gw: number, extra: number, listener?: number): KubeObject {
  const service = serviceName(gw, listener);
  // per listener: addresses unique within the Gateway (listener L: a /26 of its own), so the
  // changed table shows the new one in exactly one entry
  const base = listener === undefined ? 2 : 2 + (listener % 4) * 64;
  const third = listener === undefined ? gw : (gw + 100 * Math.floor(listener / 4)) % 256;
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: `${service}-1`,
      namespace: ns,
      labels: { "kubernetes.io/service-name": service },
    },
    addressType: "IPv4",
    ports: [{ name: "tcp", port: 8080, protocol: "TCP" }],
    endpoints: Array.from({ length: ENDPOINTS + extra }, (_, i) => ({
      addresses: [`198.19.${third}.${base + i}`],
      nodeName: "node-1",
      conditions: { ready: true, serving: true, terminating: false },
    })),
  };
}

/** The fields of the operator's "reconciled" log line the step breakdown needs. */
interface ReconciledLine {
  /** When the line was logged (ms since the epoch): the writes are answered. */
  at: number;
  gateway: string;
  table: string;
  queuedMs: number;
  reconcileMs: number;
  writeMs: number;
  tableMs: number;
}

/** One endpoint change on the benchmark's clock (ms since the epoch). */
interface ChangeClock {
  gateway: string;
  /** The EndpointSlice apply sent. */
  sent: number;
  /** Its answer read. */
  answered: number;
  /** The table carrying the change seen through the benchmark's watch. */
  seen: number;
}

/**
 * Copies the operator's stderr to `file` (if any) and hands each JSON log line whose `msg` is
 * `msg` to `onLine`; lines that are not JSON are skipped.
 */
export async function followOperatorLog(
  stderr: ReadableStream<Uint8Array>,
  file: Deno.FsFile | undefined,
  msg: string,
  onLine: (line: Record<string, unknown> & { time: string }) => void,
): Promise<void> {
  const encoder = new TextEncoder();
  const marker = `"msg":${JSON.stringify(msg)}`;
  let rest = "";
  try {
    for await (const chunk of stderr.pipeThrough(new TextDecoderStream())) {
      if (file) {
        const bytes = encoder.encode(chunk);
        for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
      }
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      for (const part of parts) {
        if (!part.includes(marker)) continue;
        let line;
        try {
          line = JSON.parse(part);
        } catch {
          continue; // not a JSON line
        }
        onLine(line);
      }
    }
  } finally {
    file?.close();
  }
}

/** The steps of one change, in ms, or undefined without the operator's table write in its log. */
function stepsOf(
  change: ChangeClock,
  reconciled: ReconciledLine[],
): Record<string, number> | undefined {
  // the first table write of the change's Gateway after the EndpointSlice was sent (the log's
  // clock is in whole ms, hence the 1 ms of slack)
  const line = reconciled.find((r) =>
    r.gateway === change.gateway && r.table === "applied" && r.at >= change.sent - 1 &&
    r.at <= change.seen + 1000
  );
  if (!line) return undefined;
  const writeStart = line.at - line.writeMs;
  const queued = writeStart - line.reconcileMs - line.queuedMs;
  return {
    // the API server's answer to the EndpointSlice apply
    apply: change.answered - change.sent,
    // from sending it to the operator queueing the Gateway (store, watch, the operator's event)
    to_operator: queued - change.sent,
    queue: line.queuedMs,
    reconcile: line.reconcileMs,
    table_write: line.tableMs,
    // the operator's write answered (its log line) to the benchmark's watch showing the table
    to_watch: change.seen - line.at,
    total: change.seen - change.sent,
  };
}

/** Each step's figures over the changes whose operator line was found. */
function changeSteps(
  changes: ChangeClock[],
  reconciled: ReconciledLine[],
): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const change of changes) {
    for (const [step, ms] of Object.entries(stepsOf(change, reconciled) ?? {})) {
      (out[step] ??= []).push(ms);
    }
  }
  return out;
}

/** The `n` slowest changes with their steps, for the log. */
function slowest(changes: ChangeClock[], reconciled: ReconciledLine[], n: number): unknown[] {
  return [...changes].sort((a, b) => (b.seen - b.sent) - (a.seen - a.sent)).slice(0, n)
    .map((c) => ({
      gateway: c.gateway,
      ...(stepsOf(c, reconciled) ?? { total: c.seen - c.sent }),
    }));
}

/**
 * `DENO_V8_FLAGS` of the operator's container in manifests/operator.yaml: the
 * benchmark runs the operator as it is deployed.
 */
export function deployedV8Flags(manifest: string): string | undefined {
  for (const doc of parseAllDocuments(manifest)) {
    const obj = doc.toJS() as KubeObject | null;
    if (obj?.kind !== "Deployment") continue;
    const containers = (obj.spec as {
      template?: { spec?: { containers?: { env?: { name: string; value?: string }[] }[] } };
    })?.template?.spec?.containers ?? [];
    for (const c of containers) {
      const flags = c.env?.find((e) => e.name === "DENO_V8_FLAGS")?.value;
      if (flags !== undefined) return flags;
    }
  }
  return undefined;
}

/** The API server's Go GC cycles so far and its heap in use, from its /metrics. */
async function apiserverGc(
  kc: Parameters<typeof requestJson>[0],
): Promise<{ cycles: number; heapBytes: number }> {
  const text = String(await requestJson(kc, "/metrics"));
  const gauge = (name: string) =>
    Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
  return {
    cycles: gauge("go_gc_cycles_total_gc_cycles_total"),
    heapBytes: gauge("go_memstats_heap_alloc_bytes"),
  };
}

/** Runs `fn` over `items` with `width` at once. */
async function pool<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** CPU time (user + system) of process `pid` so far, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, USER_HZ = 100
}

async function rssMiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/** Entry point of `deno task bench operator`. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      gateways: { type: "string", default: "100" },
      routes: { type: "string", default: "10000" },
      changes: { type: "string", default: "100" },
      services: { type: "string", default: "per-gateway" },
      "operator-log": { type: "string" },
      "operator-v8-flags": { type: "string" },
      "operator-profile": { type: "string" },
      "agent-features": { type: "string", default: AGENT_FEATURES.join(",") },
    },
  });
  const gateways = Number(values.gateways);
  const routes = Number(values.routes);
  const changes = Number(values.changes);
  if (values.services !== "per-gateway" && values.services !== "per-listener") {
    throw new Error(`--services per-gateway|per-listener, not ${values.services}`);
  }
  const agentFeatures = values["agent-features"] === "none"
    ? []
    : (values["agent-features"] ?? "").split(",").filter((f) => f !== "");
  const perListener = values.services === "per-listener";
  const suffix = perListener ? "_per_listener" : "";
  const log = (msg: string) => console.error(`# ${msg}`);
  let operator: Deno.ChildProcess | undefined;
  let logDone: Promise<void> | undefined;
  const informers: Informer[] = [];
  try {
    const cluster = await clusterUp({ name: CLUSTER, nodes: 1 });
    const kc = cluster.kubeConfig();
    await applyBlixtCrds(kc, { fieldManager: MANAGER });
    // the set-up's 10,000 creates over kept-alive connections: minutes less on a busy machine
    const setupConnections = shareConnections(kc);
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
        await requestJson(kc, collectionPath(resource, obj.metadata?.namespace), {
          method: "POST",
          body: obj,
        });
      } catch (err) {
        if (apiStatus(err) !== 409) throw err; // left from an earlier run
      }
    };
    const setupStarted = performance.now();
    for (
      const obj of [
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "blixt-system" } },
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
    // the agents' stand-in: the features they list gate how the operator writes tables
    // (api/routing_table.ts backendsFrom, endpoints); no Node has its name, so it holds no
    // Programmed back
    const applyNode = (sub: string, fields: Record<string, unknown>) =>
      requestJson(kc, `/apis/blixt.dev/v1alpha1/dataplanenodes/${BENCH_AGENT}${sub}`, {
        method: "PATCH",
        query: { fieldManager: MANAGER, force: true },
        body: {
          apiVersion: "blixt.dev/v1alpha1",
          kind: "DataplaneNode",
          metadata: { name: BENCH_AGENT },
          ...fields,
        },
        contentType: "application/apply-patch+yaml",
      });
    await applyNode("", { spec: { nodeName: BENCH_AGENT } });
    await applyNode("/status", { status: { features: agentFeatures } });
    log(`agents list features: ${agentFeatures.join(",") || "none"}`);
    const nsOf = (gw: number) => `bench-${gw % 10}`;
    for (let n = 0; n < 10; n++) {
      await create({ apiVersion: "v1", kind: "Namespace", metadata: { name: `bench-${n}` } });
    }
    const perGateway: KubeObject[] = [];
    for (let g = 0; g < gateways; g++) {
      const ns = nsOf(g);
      perGateway.push({
        apiVersion: "gateway.networking.k8s.io/v1",
        kind: "Gateway",
        metadata: { name: `gw-${g}`, namespace: ns },
        spec: {
          gatewayClassName: "blixt",
          listeners: Array.from({ length: LISTENERS }, (_, l) => ({
            name: `l${l}`,
            port: 10000 + l,
            protocol: "TCP",
          })),
        },
      });
      for (const l of perListener ? Array.from({ length: LISTENERS }, (_, l) => l) : [undefined]) {
        perGateway.push({
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: serviceName(g, l), namespace: ns },
          spec: {
            // headless: 5,000 Services do not fit the local cluster's /24 of ClusterIPs
            ...(l === undefined ? {} : { clusterIP: "None" }),
            ports: [{ name: "tcp", port: 80, targetPort: 8080 }],
          },
        });
        perGateway.push(slice(ns, g, 0, l));
      }
    }
    await pool(perGateway, 8, create);
    const routeObjects = Array.from({ length: routes }, (_, r): KubeObject => {
      const g = r % gateways;
      const l = Math.floor(r / gateways) % LISTENERS;
      return {
        apiVersion: "gateway.networking.k8s.io/v1",
        kind: "TCPRoute",
        metadata: { name: `r-${r}`, namespace: nsOf(g) },
        spec: {
          parentRefs: [{
            name: `gw-${g}`,
            sectionName: `l${l}`,
          }],
          rules: [{
            backendRefs: [{ name: serviceName(g, perListener ? l : undefined), port: 80 }],
          }],
        },
      };
    });
    await pool(routeObjects, 16, create);
    setupConnections.close();
    log(
      `created ${gateways} Gateways and ${routes} TCPRoutes in ${
        ((performance.now() - setupStarted) / 1000).toFixed(1)
      } s`,
    );

    // what a user would watch: the tables, and the routes' status
    const complete = new Set<string>();
    let allTables: () => void = () => {};
    const tablesDone = new Promise<void>((r) => allTables = r);
    const seen = new Map<string, (table: KubeObject) => void>();
    const tables = new Informer(kc, {
      apiVersion: "blixt.dev/v1alpha1",
      kind: "RoutingTable",
      plural: "routingtables",
    }, { log: () => {}, transform: dropManagedFields });
    const tableBytes = new Map<string, number>();
    const onTable = (t: KubeObject) => {
      const key = `${t.metadata?.namespace}/${t.metadata?.name}`;
      tableBytes.set(key, JSON.stringify(t).length);
      // an entry may list its backends, as strings (endpoints), or take another entry's
      // (backendsFrom)
      const entries = expandRoutingTable(t as unknown as RoutingTable).spec.entries ?? [];
      if (
        entries.length === LISTENERS &&
        entries.every((e) => e.route !== undefined && e.backends.length >= ENDPOINTS)
      ) {
        complete.add(key);
        if (complete.size === gateways) allTables();
      }
      seen.get(key)?.(t);
    };
    tables.on("add", onTable);
    tables.on("update", onTable);
    informers.push(tables.start());
    await tables.synced;

    const statusDone = new Set<string>();
    let allStatus: () => void = () => {};
    const statusesDone = new Promise<void>((r) => allStatus = r);
    const routeInformer = new Informer(kc, {
      apiVersion: "gateway.networking.k8s.io/v1",
      kind: "TCPRoute",
      plural: "tcproutes",
    }, { log: () => {}, transform: dropManagedFields });
    const onRoute = (r: KubeObject) => {
      const parents = (r.status as { parents?: unknown[] } | undefined)?.parents ?? [];
      if (parents.length > 0) statusDone.add(`${r.metadata?.namespace}/${r.metadata?.name}`);
      if (statusDone.size === routes) allStatus();
    };
    routeInformer.on("add", onRoute);
    routeInformer.on("update", onRoute);
    informers.push(routeInformer.start());
    await routeInformer.synced;

    const port = 18000 + Math.floor(Math.random() * 1000);
    const inspect = `127.0.0.1:${port + 1000}`;
    const started = performance.now();
    // as deployed unless --operator-v8-flags says otherwise ("" for none: V8 sizes the heap from
    // the machine's memory)
    const v8Flags = values["operator-v8-flags"] ?? deployedV8Flags(
      await Deno.readTextFile(new URL("../manifests/operator.yaml", import.meta.url)),
    ) ?? "";
    log(
      `operator V8 flags: ${v8Flags || "none"}${
        values["operator-v8-flags"] === undefined ? " (manifests/operator.yaml)" : ""
      }`,
    );
    operator = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
        ...(values["operator-profile"] ? [`--inspect=${inspect}`] : []),
        new URL("../operator/main.ts", import.meta.url).pathname,
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
    // the operator's "reconciled" lines place its steps of each endpoint change on the clock
    const reconciled: ReconciledLine[] = [];
    const logFile = values["operator-log"]
      ? await Deno.open(values["operator-log"], { write: true, create: true, truncate: true })
      : undefined;
    logDone = followOperatorLog(
      operator.stderr,
      logFile,
      "reconciled",
      (line) =>
        reconciled.push({ ...line, at: Date.parse(line.time) } as unknown as ReconciledLine),
    );
    // an operator that exits (a bad flag) ends the run instead of leaving it waiting
    const exited = operator.status.then((status) => {
      throw new Error(`the operator exited (code ${status.code}) before the tables were written`);
    });
    exited.catch(() => {});
    await Promise.race([tablesDone, exited]);
    const reconcileMs = performance.now() - started;
    emit({
      name: "reconcile_10k_routes_ms",
      value: Math.round(reconcileMs),
      unit: "ms",
      better: "lower",
    });
    const round = (x: number) => Math.round(x * 10) / 10;
    emit({
      name: "operator_cpu_s_to_tables",
      value: round(await cpuSeconds(operator.pid)),
      unit: "s",
      better: "lower",
    });
    await statusesDone;
    emit({
      name: "route_status_10k_ms",
      value: Math.round(performance.now() - started),
      unit: "ms",
      better: "lower",
    });
    const convergedCpu = await cpuSeconds(operator.pid);
    emit({
      name: "operator_cpu_s_to_status",
      value: round(convergedCpu),
      unit: "s",
      better: "lower",
    });

    // every Gateway write from here on is one the endpoint changes caused
    let gatewayWrites = 0;
    const gatewayInformer = new Informer(kc, {
      apiVersion: "gateway.networking.k8s.io/v1",
      kind: "Gateway",
      plural: "gateways",
    }, { log: () => {}, transform: dropManagedFields });
    gatewayInformer.on("update", () => gatewayWrites++);
    informers.push(gatewayInformer.start());
    await gatewayInformer.synced;
    const latencies: number[] = [];
    const steps: ChangeClock[] = [];
    // the changes over one kept-alive connection: a new TLS connection per write is the client's
    // cost, not the operator's
    const changeConnections = shareConnections(kc);
    const profiling = values["operator-profile"] ? await startCpuProfile(inspect) : undefined;
    // the API server's CPU per change: steadier than wall time on shared cores, and the figure a
    // smaller table would move
    const apiserverPid = (JSON.parse(
      await Deno.readTextFile(`${cluster.dir}/cluster.json`),
    ) as { apiserverPid: number }).apiserverPid;
    const apiserverCpu = await cpuSeconds(apiserverPid);
    const gcBefore = await apiserverGc(kc);
    for (let i = 0; i < changes; i++) {
      const g = i % gateways;
      const ns = nsOf(g);
      const extra = 1 + Math.floor(i / gateways);
      // per listener: the changes go round the listeners too (listener 0 of each Gateway first)
      const l = perListener ? Math.floor(i / gateways) % LISTENERS : undefined;
      const changed = slice(ns, g, extra, l);
      const ips = (changed.endpoints as { addresses: string[] }[]).map((e) => e.addresses[0]);
      const ip = ips[ips.length - 1];
      const key = `${ns}/gw-${g}`;
      const arrived = new Promise<void>((resolve) => {
        seen.set(key, (t) => {
          // the address as a backend object's ip, or at the start of an endpoint string
          const spec = JSON.stringify(t.spec);
          if (spec.includes(`"${ip}"`) || spec.includes(`"${ip}:`)) resolve();
        });
      });
      const name = changed.metadata?.name ?? "";
      const t0 = performance.now();
      const sent = Date.now();
      await requestJson(
        kc,
        `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices/${name}`,
        {
          method: "PATCH",
          query: { fieldManager: MANAGER, force: true },
          body: changed,
          contentType: "application/apply-patch+yaml",
        },
      );
      const answered = Date.now();
      await arrived;
      latencies.push(performance.now() - t0);
      steps.push({ gateway: key, sent, answered, seen: Date.now() });
      seen.delete(key);
    }
    const apiserverCpuPerChange = (await cpuSeconds(apiserverPid) - apiserverCpu) * 1000 / changes;
    const gcAfter = await apiserverGc(kc);
    changeConnections.close();
    if (profiling) {
      const profile = await profiling.stop();
      await Deno.writeTextFile(values["operator-profile"]!, JSON.stringify(profile));
      log(`operator CPU profile of the endpoint changes:\n${summarizeProfile(profile, 40)}`);
    }
    await new Promise((r) => setTimeout(r, 3000)); // writes that follow the table's
    emit({
      name: `gateway_status_writes_per_endpoint_change${suffix}`,
      value: Math.round(gatewayWrites * 100 / changes) / 100,
      unit: "writes",
      better: "lower",
    });
    emit({
      name: `operator_cpu_ms_per_endpoint_change${suffix}`,
      value: round((await cpuSeconds(operator.pid) - convergedCpu) * 1000 / changes),
      unit: "ms",
      better: "lower",
    });
    const sizes = [...tableBytes.values()];
    emit({
      name: `routing_table_bytes${suffix}`,
      value: Math.round(sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length)),
      unit: "bytes",
      better: "lower",
    });
    emit({
      name: `apiserver_cpu_ms_per_endpoint_change${suffix}`,
      value: round(apiserverCpuPerChange),
      unit: "ms",
      better: "lower",
    });
    // the slow table writes are the ones during the API server's GC cycles (docs/performance.md)
    emit({
      name: `apiserver_gc_cycles_per_100_endpoint_changes${suffix}`,
      value: round((gcAfter.cycles - gcBefore.cycles) * 100 / changes),
      unit: "cycles",
      better: "lower",
    });
    emit({
      name: `apiserver_heap_mib_after_endpoint_changes${suffix}`,
      value: round(gcAfter.heapBytes / 2 ** 20),
      unit: "MiB",
      better: "lower",
    });
    emit({
      name: `endpoint_change_to_table_ms_p50${suffix}`,
      value: round(percentile(latencies, 50)),
      unit: "ms",
      better: "lower",
    });
    emit({
      name: `endpoint_change_to_table_ms_p99${suffix}`,
      value: round(percentile(latencies, 99)),
      unit: "ms",
      better: "lower",
    });
    for (const [step, values] of Object.entries(changeSteps(steps, reconciled))) {
      if (step === "total") continue; // endpoint_change_to_table_ms, on the log's coarser clock
      for (const [q, at] of [["p50", 50], ["p99", 99]] as const) {
        emit({
          name: `endpoint_change_step_${step}_ms_${q}${suffix}`,
          value: round(percentile(values, at)),
          unit: "ms",
          better: "lower",
        });
      }
    }
    log(
      `endpoint changes, slowest five, steps in ms: ${
        JSON.stringify(slowest(steps, reconciled, 5))
      }`,
    );
    emit({
      name: "operator_rss_mib_at_10k",
      value: round(await rssMiB(operator.pid)),
      unit: "MiB",
      better: "lower",
    });
    // what of the resident set is V8 heap, as the operator's /metrics says
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const gauge = (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, "m").exec(metrics)?.[1] ?? NaN) / 2 ** 20;
    emit({
      name: "operator_heap_used_mib_at_10k",
      value: round(gauge("blixt_operator_heap_used_bytes")),
      unit: "MiB",
      better: "lower",
    });
    emit({
      name: "operator_heap_total_mib_at_10k",
      value: round(gauge("blixt_operator_heap_total_bytes")),
      unit: "MiB",
      better: "lower",
    });
  } finally {
    if (operator) {
      try {
        operator.kill("SIGTERM");
      } catch { /* already gone */ }
      await operator.status;
    }
    await logDone?.catch(() => {});
    for (const i of informers) await i.stop();
    await clusterDown(CLUSTER);
  }
}
