/**
 * `deno task bench agent`: the agent at 10,000 services x 10 backends, in
 * the local cluster (one node), against the real API server and kernel.
 *
 * - `program_10k_services_ms`: the agent's first sync, from its table cache
 *   to all 10,000 services in the maps (its "maps synced" log line), and
 *   `program_10k_services_cpu_ms` the agent's CPU time over it (the machine
 *   is shared: the wall clock includes waiting for a core);
 *   `program_10k_services_e2e_ms`: from the agent's start to the last of the
 *   100 tables reported programmed in DataplaneNode, and
 *   `program_10k_services_e2e_cpu_ms` the agent's CPU time until then.
 * - `update_one_backend_at_10k_ms` (p50, and `_p99`): one table write that
 *   changes one backend's weight, from the start of the API call to the
 *   service's new Maglev table in the pinned map.
 * - `update_one_backend_agent_ms` (p50, and `_p99`): the agent's own part of
 *   the same updates, from its table cache seeing the change to the maps
 *   written (`sinceChangeMs` of its "maps synced" lines).
 * - `update_api_write_ms` (p50, and `_p99`): the apply request of those
 *   writes alone (the API server's part).
 * - `agent_rss_mib_at_10k`, `agent_cpu_idle_percent` (30 s at steady state,
 *   from 45 s after the last update);
 *   `agent_rss_mib_peak`: the agent's largest RSS (VmHWM) over the whole run;
 *   `agent_rss_mib_empty`: an agent started before any table exists.
 *
 * @module
 */
import { buildBpf } from "../bpf/build.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import type { RoutingTable } from "../api/mod.ts";
import {
  AgentProcess,
  applyTable,
  dataplaneNode,
  eventually,
  installCrds,
} from "../agent/_cluster_testing.ts";
import { openPinnedMap } from "../agent/bpf/object.ts";
import { serviceKey, serviceValue } from "../agent/bpf/layout.ts";

const NAME = "agent-test-bench";
const TABLES = 100;
const ENTRIES = 100;
const BACKENDS = 10;

function emit(name: string, value: number, unit: string, better: "higher" | "lower"): void {
  console.log(JSON.stringify({ name, value: Math.round(value * 100) / 100, unit, better }));
}

function table(t: number, vip: string, podNet: string, changed = -1, weight = 1): RoutingTable {
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: { name: `gw-${t}`, namespace: "default" },
    spec: {
      addresses: [vip],
      entries: Array.from({ length: ENTRIES }, (_, e) => ({
        address: vip,
        port: 1000 + e,
        protocol: "TCP" as const,
        listener: `l${e}`,
        rejectWeight: 0,
        backends: Array.from({ length: BACKENDS }, (_, b) => ({
          ip: `${podNet}.${2 + b}`,
          port: 10000 + t * ENTRIES + e,
          weight: e === changed && b === 0 ? weight : 1,
          node: "node-1",
          state: "Ready" as const,
        })),
      })),
    },
  };
}

function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

function rssMiB(pid: number): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+) kB/);
  return Number(m?.[1] ?? 0) / 1024;
}

/** VmHWM: the largest RSS the process has had. */
function peakRssMiB(pid: number): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmHWM:\s+(\d+) kB/);
  return Number(m?.[1] ?? 0) / 1024;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** Runs the benchmark and prints its JSON lines. */
export async function main(args: string[]): Promise<void> {
  const rounds = Number(args[0] ?? 20);
  // e.g. --max-semi-space-size=1, to measure V8 settings of the agent (as manifests/agent.yaml sets)
  const v8Flags = Deno.env.get("BLIXT_BENCH_AGENT_V8_FLAGS") || undefined;
  await buildBpf();
  const cluster = await clusterUp({ name: NAME, nodes: 1 });
  let agent: AgentProcess | undefined;
  try {
    const kc = cluster.kubeConfig();
    await installCrds(kc);
    const node = cluster.nodes[0]!;
    const podNet = node.podCIDR.replace(/\.0\/24$/, "");
    const vips = Array.from(
      { length: TABLES },
      (_, t) => cluster.plan.gatewayPool.replace(/\.0\/24$/, `.${t + 2}`),
    );
    // The agent with no table at all: what Deno, its libraries and the loaded data plane cost.
    const idle = AgentProcess.start(cluster, 0, { metricsPort: 19465, v8Flags });
    try {
      await eventually("the idle agent's DataplaneNode", async () => {
        return (await dataplaneNode(kc, node.name))?.status !== undefined;
      }, { timeoutMs: 60_000, intervalMs: 200 });
      await new Promise((r) => setTimeout(r, 3_000));
      emit("agent_rss_mib_empty", rssMiB(idle.pid), "MiB", "lower");
    } finally {
      await idle.kill("SIGTERM");
    }

    const generations: number[] = [];
    for (let t = 0; t < TABLES; t++) {
      generations.push(await applyTable(kc, table(t, vips[t]!, podNet)));
    }
    console.error(`${TABLES} tables of ${ENTRIES} entries x ${BACKENDS} backends written`);

    const started = performance.now();
    agent = AgentProcess.start(cluster, 0, { metricsPort: 19464, v8Flags });
    await eventually("every table programmed", async () => {
      const dn = await dataplaneNode(kc, node.name);
      const done = dn?.status?.tables?.filter((t) => t.programmedGeneration !== undefined).length;
      return done === TABLES;
    }, { timeoutMs: 180_000, intervalMs: 100 });
    const e2e = performance.now() - started;
    const e2eCpu = cpuTicks(agent.pid) * 10; // USER_HZ = 100
    const synced = agent.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "maps synced");
    emit("program_10k_services_ms", synced.ms, "ms", "lower");
    emit("program_10k_services_cpu_ms", synced.cpuMs, "ms", "lower");
    emit("program_10k_services_e2e_ms", e2e, "ms", "lower");
    emit("program_10k_services_e2e_cpu_ms", e2eCpu, "ms", "lower");

    // One backend's weight, back and forth, in table 0's first entry.
    const services = openPinnedMap(`${node.bpffs}/blixt/services`);
    const maglev = openPinnedMap(`${node.bpffs}/blixt/maglev`);
    try {
      const key = serviceKey.encode({ addr: vips[0]!, port: 1000, proto: 6, family: 2 });
      const id = serviceValue.decode(services.lookup(key)!).id;
      const idKey = new Uint8Array(new Uint32Array([id]).buffer);
      const innerId = () => new DataView(maglev.lookup(idKey)!.buffer).getUint32(0, true);
      const times: number[] = [];
      const agentTimes: number[] = [];
      const writes: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const seen = agent.lines.length;
        const before = innerId();
        const t0 = performance.now();
        await applyTable(kc, table(0, vips[0]!, podNet, 0, r % 2 === 0 ? 2 : 1));
        writes.push(performance.now() - t0);
        await eventually("the new Maglev table", () => innerId() !== before, {
          timeoutMs: 10_000,
          intervalMs: 1,
        });
        times.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 200));
        const synced = agent.lines.slice(seen).map((l) => JSON.parse(l))
          .filter((l) => l.msg === "maps synced");
        for (const l of synced) agentTimes.push(l.sinceChangeMs);
      }
      emit("update_one_backend_at_10k_ms", percentile(times, 50), "ms", "lower");
      emit("update_one_backend_at_10k_ms_p99", percentile(times, 99), "ms", "lower");
      // The API server's part: the apply request of the table (1,000 backends) alone.
      emit("update_api_write_ms", percentile(writes, 50), "ms", "lower");
      emit("update_api_write_ms_p99", percentile(writes, 99), "ms", "lower");
      // The agent's own part: from its table cache seeing the change to the maps written.
      emit("update_one_backend_agent_ms", percentile(agentTimes, 50), "ms", "lower");
      emit("update_one_backend_agent_ms_p99", percentile(agentTimes, 99), "ms", "lower");
    } finally {
      services.close();
      maglev.close();
    }

    // Steady state: V8's memory reducer runs full collections for ~35 s after the last
    // allocations (measured: 8-13 ticks a 5 s slice, then 1-2, RSS 186 -> 125 MiB).
    await new Promise((r) => setTimeout(r, 45_000));
    const pid = agent.pid;
    const ticks0 = cpuTicks(pid);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 30_000));
    const seconds = (performance.now() - t0) / 1000;
    const cpu = ((cpuTicks(pid) - ticks0) / 100) / seconds * 100; // USER_HZ = 100
    emit("agent_rss_mib_at_10k", rssMiB(pid), "MiB", "lower");
    emit("agent_rss_mib_peak", peakRssMiB(pid), "MiB", "lower");
    emit("agent_cpu_idle_percent", cpu, "percent", "lower");
  } finally {
    await agent?.kill("SIGTERM");
    await clusterDown(NAME);
  }
}
