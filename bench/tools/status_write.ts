/**
 * One-off measurement: what the agent's DataplaneNode status write costs the
 * API server, by write method, at a number of tables, with and without
 * counters (docs/performance.md, "The agent's status write after each change",
 * "The counters in every status write").
 *
 * ```sh
 * deno run -A bench/tools/status_write.ts [--writes 100] [--tables 157]
 *   [--methods apply,merge,jsonpatch] [--counters 0,100x10,100x10c,100x100]
 *   [--list-types tables=map,maps=atomic,...] [--keep]
 * ```
 *
 * Each write is what the agent writes after one table change: the status of
 * `--tables` tables with table 0's generations moved and a new
 * `lastSyncTime`. `apply`: server-side apply of the whole status (force, as
 * `blixt-agent`); `merge`: a JSON merge patch of the whole status;
 * `jsonpatch`: a JSON patch of the three fields that moved (the bound of
 * what a smaller write saves). The methods take turns write by write (the
 * same load for all). Prints one JSON line per method: p50 and p99 of the
 * request's wall time, the API server's CPU per write (from `/proc`, summed
 * over the method's writes, each measured alone), and the object's and its
 * managedFields' size after that method's writes.
 *
 * `--counters` adds `status.counters` to every write: `SxB` is S services of B
 * backends each, in the object form (`services`, as agents wrote it before),
 * `SxBc` the same in the compact form ({@linkcode compactCounters}), `0` none.
 * Every method and counters pair writes its own DataplaneNode, all taking
 * turns; the counters are the same in every write (as in the writes for a
 * table change between two counter reads).
 *
 * The DataplaneNode CRD is applied as written (as `kubectl apply --server-side`
 * would; the project's installer drops its list types: {@linkcode applyCrdAsWritten}).
 * `--list-types` changes the installed CRD's `x-kubernetes-list-type` of the
 * status lists named (`tables`, `maps`, `conditions`, `features`) before the
 * writes, to compare list types in the same cluster build: `map` (keyed as
 * {@linkcode MAP_KEYS} says), `set` or `atomic`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parse } from "yaml";
import { clusterDown, clusterName, clusterUp, runDir } from "../../tests/cluster/cluster.ts";
import { installCrds } from "../../agent/_cluster_testing.ts";
import { shareConnections } from "../../kube/client.ts";
import { METADATA_ONLY, requestJson } from "../../kube/rest.ts";
import {
  compactCounters,
  type CountersSnapshot,
  type DataplaneNodeStatus,
  type ServiceCounters,
} from "../../api/mod.ts";
import { percentile } from "../stats.ts";
import { processCpuMs } from "../proc_cpu.ts";

const NAME = "status-write";
const NODES = "/apis/blixt.dev/v1alpha1/dataplanenodes";
const CRD_FILE = new URL("../../manifests/crds/dataplanenodes.blixt.dev.yaml", import.meta.url);
const CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/dataplanenodes.blixt.dev";

/** The keys of each status list when it is a `map`. */
const MAP_KEYS: Record<string, string[]> = {
  tables: ["namespace", "name"],
  maps: ["name"],
  conditions: ["type"],
};

/**
 * Applies manifests/crds/dataplanenodes.blixt.dev.yaml as `kubectl apply --server-side` does,
 * the JSON as written: the project's installer (kube/manifests.ts, through
 * @kubernetes/client-node's typed serializer) drops the `x-kubernetes-*` keys of the schemas
 * reached through `properties`, the status lists' types among them.
 */
export async function applyCrdAsWritten(kc: Parameters<typeof requestJson>[0]): Promise<void> {
  const crd = parse(await Deno.readTextFile(CRD_FILE));
  await requestJson(kc, CRD_PATH, {
    method: "PATCH",
    query: { fieldManager: "status-write", force: true },
    body: crd,
    contentType: "application/apply-patch+yaml",
  });
  await new Promise((r) => setTimeout(r, 3_000));
}

/** Sets the list type of the DataplaneNode CRD's status lists, e.g. `tables=atomic,maps=map`. */
export async function setListTypes(
  kc: Parameters<typeof requestJson>[0],
  spec: string,
): Promise<void> {
  interface Crd {
    spec: { versions: { schema: { openAPIV3Schema: { properties: Record<string, Schema> } } }[] };
  }
  interface Schema {
    properties?: Record<string, Record<string, unknown>>;
  }
  const crd = await requestJson<Crd>(kc, CRD_PATH);
  const status = crd.spec.versions[0]!.schema.openAPIV3Schema.properties.status!.properties!;
  for (const pair of spec.split(",")) {
    const [list, type] = pair.split("=") as [string, string];
    const schema = status[list];
    if (!schema || !["map", "set", "atomic"].includes(type)) throw new Error(`${pair}?`);
    if (type === "map" && !MAP_KEYS[list]) throw new Error(`${list} has no map keys`);
    schema["x-kubernetes-list-type"] = type;
    if (type === "map") schema["x-kubernetes-list-map-keys"] = MAP_KEYS[list];
    else delete schema["x-kubernetes-list-map-keys"];
  }
  await requestJson(kc, CRD_PATH, { method: "PUT", body: crd });
  // the API server serves the new schema once its handler is rebuilt
  await new Promise((r) => setTimeout(r, 3_000));
}

const cpuMs = processCpuMs;

/** The agent's status at `tables` tables of 64 entries, table 0 at generation `gen`. */
function status(tables: number, gen: number): DataplaneNodeStatus {
  const now = new Date().toISOString();
  return {
    conditions: [
      {
        type: "Ready",
        status: "True",
        reason: "Programmed",
        message: `${tables} tables programmed`,
        lastTransitionTime: "2026-11-27T08:00:00.000Z",
      },
      {
        type: "Degraded",
        status: "False",
        reason: "Programmed",
        message: "",
        lastTransitionTime: "2026-11-27T08:00:00.000Z",
      },
    ],
    lastSyncTime: now,
    features: ["backendsFrom", "endpoints", "compactEntries"],
    maps: ["services", "backends", "maglev", "conntrack"].map((name) => ({
      name,
      entries: 10_000,
      capacity: 65_536,
    })),
    tables: Array.from({ length: tables }, (_, t) => ({
      namespace: "default",
      name: `gw-${t}`,
      observedGeneration: t === 0 ? gen : 1,
      programmedGeneration: t === 0 ? gen : 1,
      entries: 64,
      backends: 640,
    })),
  } as DataplaneNodeStatus;
}

/** `status.counters` of `spec` (`0`, `SxB` or `SxBc`, see the module's doc), undefined for `0`. */
function counters(spec: string): CountersSnapshot | undefined {
  if (spec === "0") return undefined;
  const m = /^(\d+)x(\d+)(c?)$/.exec(spec);
  if (!m) throw new Error(`--counters ${spec}?`);
  const services: ServiceCounters[] = Array.from({ length: Number(m[1]) }, (_, i) => {
    // traffic of a busy node: 7-digit packets, 10-digit bytes, 5-digit flows per backend
    const backends = Array.from({ length: Number(m[2]) }, (_, j) => ({
      ip: `198.19.${i}.${j + 1}`,
      port: 8080,
      packets: 1_234_567 - j * 1_001,
      bytes: 1_234_567_890 - j * 1_000_003,
      newFlows: 23_456 - j * 7,
    }));
    const sum = (k: "packets" | "bytes" | "newFlows") => backends.reduce((t, b) => t + b[k], 0);
    return {
      address: `198.18.${200 + Math.floor(i / 250)}.${(i % 250) + 1}`,
      port: 80,
      protocol: "TCP",
      packets: sum("packets"),
      bytes: sum("bytes"),
      newFlows: sum("newFlows"),
      rejectedFlows: 12,
      backends,
    };
  });
  const snapshot = { collectedAt: "2026-11-27T12:00:00.000Z", services };
  return m[3] ? compactCounters(snapshot) : snapshot;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      writes: { type: "string", default: "100" },
      tables: { type: "string", default: "157" },
      methods: { type: "string", default: "apply,merge,jsonpatch" },
      counters: { type: "string", default: "0" },
      "list-types": { type: "string" },
      keep: { type: "boolean", default: false },
    },
  });
  const writes = Number(values.writes);
  const tables = Number(values.tables);
  // every method and counters pair writes its own object
  const runs = values.methods.split(",").flatMap((method) =>
    values.counters.split(",").map((c) => ({ method, counters: c, snapshot: counters(c) }))
  ).map((r, k) => ({ ...r, path: `${NODES}/node-${k}` }));
  const cluster = await clusterUp({ name: NAME, nodes: 1 });
  const kc = cluster.kubeConfig();
  const connections = shareConnections(kc);
  const pid = (JSON.parse(
    Deno.readTextFileSync(`${runDir()}/clusters/${clusterName(NAME)}/cluster.json`),
  ) as { apiserverPid: number }).apiserverPid;
  const query = { fieldManager: "blixt-agent" };
  const body = (name: string, s: DataplaneNodeStatus) => ({
    apiVersion: "blixt.dev/v1alpha1",
    kind: "DataplaneNode",
    metadata: { name },
    status: s,
  });
  try {
    await installCrds(kc);
    await applyCrdAsWritten(kc);
    if (values["list-types"]) await setListTypes(kc, values["list-types"]);
    for (const r of runs) {
      const name = r.path.slice(NODES.length + 1);
      await requestJson(kc, r.path, {
        method: "PATCH",
        query: { ...query, force: true },
        body: { ...body(name, status(tables, 1)), status: undefined, spec: { nodeName: name } },
        contentType: "application/apply-patch+yaml",
      });
    }
    let gen = 1;
    const write = async (r: typeof runs[number]) => {
      const s = status(tables, ++gen);
      if (r.snapshot) s.counters = r.snapshot;
      const common = { method: "PATCH", accept: METADATA_ONLY } as const;
      const path = `${r.path}/status`;
      if (r.method === "apply") {
        await requestJson(kc, path, {
          ...common,
          query: { ...query, force: true },
          body: body(r.path.slice(NODES.length + 1), s),
          contentType: "application/apply-patch+yaml",
        });
      } else if (r.method === "merge") {
        await requestJson(kc, path, {
          ...common,
          query,
          body: { status: s },
          contentType: "application/merge-patch+json",
        });
      } else if (r.method === "jsonpatch") {
        await requestJson(kc, path, {
          ...common,
          query,
          body: [
            { op: "test", path: "/status/tables/0/name", value: "gw-0" },
            { op: "replace", path: "/status/tables/0/observedGeneration", value: gen },
            { op: "replace", path: "/status/tables/0/programmedGeneration", value: gen },
            { op: "replace", path: "/status/lastSyncTime", value: s.lastSyncTime },
          ],
          contentType: "application/json-patch+json",
        });
      } else throw new Error(`method ${r.method}?`);
    };
    // the object has its whole shape once (a JSON patch writes no counters: an apply first)
    for (const r of runs) {
      await write(r.method === "jsonpatch" ? { ...r, method: "apply" } : r);
      await write(r);
    }
    const wall = runs.map(() => [] as number[]);
    const cpu = runs.map(() => 0);
    for (let i = 0; i < writes; i++) {
      for (let k = 0; k < runs.length; k++) {
        const n = (i + k) % runs.length;
        const c0 = cpuMs(pid);
        const t0 = performance.now();
        await write(runs[n]!);
        wall[n]!.push(performance.now() - t0);
        // the watch fan-out and GC the write caused land after its answer
        await new Promise((r) => setTimeout(r, 50));
        cpu[n]! += cpuMs(pid) - c0;
      }
    }
    for (const [n, r] of runs.entries()) {
      const obj = await requestJson<{ metadata: { managedFields?: unknown[] } }>(kc, r.path);
      const w = wall[n]!;
      console.log(JSON.stringify({
        method: r.method,
        counters: r.counters,
        ...(values["list-types"] ? { list_types: values["list-types"] } : {}),
        tables,
        writes,
        p50_ms: Math.round(percentile(w, 50) * 10) / 10,
        p99_ms: Math.round(percentile(w, 99) * 10) / 10,
        apiserver_cpu_ms_per_write: Math.round(cpu[n]! / writes * 10) / 10,
        object_bytes: JSON.stringify(obj).length,
        counters_bytes: r.snapshot ? JSON.stringify(r.snapshot).length : 0,
        managed_fields_bytes: JSON.stringify(obj.metadata.managedFields ?? []).length,
        load1: Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]),
      }));
    }
  } finally {
    connections.close();
    if (!values.keep) await clusterDown(NAME);
  }
}

if (import.meta.main) await main();
