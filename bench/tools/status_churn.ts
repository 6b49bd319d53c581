/**
 * One-off measurement: how often one node's agent writes its DataplaneNode
 * status under a churn of table changes, and what the changes cost the API
 * server with those writes (docs/performance.md, "The agent's status write at
 * scale").
 *
 * ```sh
 * deno run -A bench/tools/status_churn.ts [--tables 157] [--rate 20] [--seconds 20]
 *   [--interval-ms 0,1000] [--list-types tables=atomic]
 * ```
 *
 * A local cluster of one node holds `--tables` RoutingTables of 4 entries x
 * 2 backends (the status's size follows the tables, not their entries). For
 * each agent status interval of `--interval-ms` in turn (0: every change
 * written as soon as the last write is answered, the agent before the
 * interval existed), an agent starts, and once it has reported every table
 * programmed, the churn changes one backend's weight in table `k mod tables`
 * at `--rate` changes a second (a JSON patch each) for `--seconds`. One JSON
 * line per interval: the changes made, the agent's status writes a second,
 * the API server's CPU per change (from `/proc`, over the churn and the 3 s
 * after it, the agent's status writes included) and its CPU seconds, the
 * agent's CPU seconds, and the status's size. `--list-types` is passed to
 * the CRD as bench/tools/status_write.ts does.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { clusterDown, clusterName, clusterUp, runDir } from "../../tests/cluster/cluster.ts";
import {
  AgentProcess,
  dataplaneNode,
  eventually,
  installCrds,
} from "../../agent/_cluster_testing.ts";
import { shareConnections } from "../../kube/client.ts";
import { METADATA_ONLY, requestJson } from "../../kube/rest.ts";
import type { RoutingTable } from "../../api/mod.ts";
import { applyCrdAsWritten, setListTypes } from "./status_write.ts";
import { processCpuMs } from "../proc_cpu.ts";

const NAME = "status-churn";
const TABLES_PATH = "/apis/blixt.dev/v1alpha1/namespaces/default/routingtables";
const ENTRIES = 4;

const cpuMs = processCpuMs;

function table(t: number, vip: string, podNet: string): RoutingTable {
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: { name: `gw-${t}`, namespace: "default" },
    spec: {
      addresses: [vip],
      entries: Array.from({ length: ENTRIES }, (_, e) => ({
        address: vip,
        port: 1000 + t * ENTRIES + e,
        protocol: "TCP" as const,
        listener: `l${e}`,
        rejectWeight: 0,
        backends: Array.from({ length: 2 }, (_, b) => ({
          ip: `${podNet}.${2 + b}`,
          port: 8080,
          weight: 1,
          node: "node-1",
          state: "Ready" as const,
        })),
      })),
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      tables: { type: "string", default: "157" },
      rate: { type: "string", default: "20" },
      seconds: { type: "string", default: "20" },
      "interval-ms": { type: "string", default: "0,1000" },
      "list-types": { type: "string" },
    },
  });
  const tables = Number(values.tables);
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const cluster = await clusterUp({ name: NAME, nodes: 1 });
  const kc = cluster.kubeConfig();
  const connections = shareConnections(kc);
  const apiserver = (JSON.parse(
    Deno.readTextFileSync(`${runDir()}/clusters/${clusterName(NAME)}/cluster.json`),
  ) as { apiserverPid: number }).apiserverPid;
  try {
    await installCrds(kc);
    await applyCrdAsWritten(kc);
    if (values["list-types"]) await setListTypes(kc, values["list-types"]);
    const node = cluster.nodes[0]!;
    const podNet = node.podCIDR.replace(/\.0\/24$/, "");
    const vip = cluster.plan.gatewayPool.replace(/\.0\/24$/, ".2");
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < tables) {
        await requestJson(kc, `${TABLES_PATH}/gw-${next}`, {
          method: "PATCH",
          query: { fieldManager: "agent-test", force: true },
          body: table(next++, vip, podNet),
          contentType: "application/apply-patch+yaml",
          accept: METADATA_ONLY,
        });
      }
    }));
    /** Each table's weight of its first backend, flipped by every change. */
    const weights = new Array<number>(tables).fill(1);
    for (const interval of values["interval-ms"].split(",").map(Number)) {
      const agent = AgentProcess.start(cluster, 0, {
        args: ["--log-level", "debug", "--status-interval-ms", String(interval)],
      });
      try {
        const generations = new Map<string, number>();
        await eventually("every table programmed", async () => {
          const list = await requestJson<{ items: RoutingTable[] }>(kc, TABLES_PATH);
          for (const t of list.items) generations.set(t.metadata.name, t.metadata.generation!);
          const dn = await dataplaneNode(kc, node.name);
          return dn?.status?.tables?.filter((t) =>
            t.programmedGeneration === generations.get(t.name)
          ).length === tables;
        }, { timeoutMs: 120_000, intervalMs: 200 });
        await new Promise((r) => setTimeout(r, 2_000));
        const seen = agent.lines.length;
        const api0 = cpuMs(apiserver);
        const agent0 = cpuMs(agent.pid);
        const started = performance.now();
        const total = Math.round(rate * seconds);
        let made = 0;
        const inFlight = new Set<Promise<void>>();
        for (let k = 0; k < total; k++) {
          const wait = started + (k * 1000) / rate - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          const t = k % tables;
          weights[t] = weights[t] === 1 ? 2 : 1;
          const p = requestJson(kc, `${TABLES_PATH}/gw-${t}`, {
            method: "PATCH",
            query: { fieldManager: "agent-test" },
            body: [{ op: "replace", path: "/spec/entries/0/backends/0/weight", value: weights[t] }],
            contentType: "application/json-patch+json",
            accept: METADATA_ONLY,
          }).then(() => void made++);
          inFlight.add(p);
          p.finally(() => inFlight.delete(p));
        }
        await Promise.all(inFlight);
        const churnMs = performance.now() - started;
        await new Promise((r) => setTimeout(r, 3_000));
        const apiMs = cpuMs(apiserver) - api0;
        const agentMs = cpuMs(agent.pid) - agent0;
        const writes = agent.lines.slice(seen).map((l) => JSON.parse(l))
          .filter((l) => l.msg === "status written");
        console.log(JSON.stringify({
          status_interval_ms: interval,
          ...(values["list-types"] ? { list_types: values["list-types"] } : {}),
          tables,
          changes: made,
          changes_per_s: Math.round(made / churnMs * 1000 * 10) / 10,
          status_writes: writes.length,
          status_writes_per_s: Math.round(writes.length / (churnMs + 3_000) * 1000 * 100) / 100,
          status_bytes: writes.at(-1)?.bytes,
          apiserver_cpu_ms_per_change: Math.round(apiMs / made * 10) / 10,
          apiserver_cpu_s: apiMs / 1000,
          agent_cpu_s: agentMs / 1000,
        }));
      } finally {
        await agent.kill("SIGTERM");
      }
    }
  } finally {
    connections.close();
    await clusterDown(NAME);
  }
}

if (import.meta.main) await main();
