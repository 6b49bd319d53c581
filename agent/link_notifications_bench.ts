/**
 * What the link notifications cost an agent: its CPU in a local cluster of
 * one node, idle, then while links it does not watch come and go (a veth
 * pair made and deleted every 250 ms: pods starting and ending), then while
 * its pod bridge is re-made every second. JSON lines as bench/ prints them.
 *
 * ```sh
 * deno run -A agent/link_notifications_bench.ts [--seconds 60] [--agent-main PATH] [--label L]
 * ```
 *
 * `--agent-main` runs another checkout's agent (e.g. the one before this
 * change) with this checkout's object, for a before/after in one run.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { buildBpf } from "../bpf/build.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { DEFAULT_OBJECT } from "./bpf/loader.ts";
import { eventually, installCrds } from "./_cluster_testing.ts";

const NAME = "agent-linkbench";

function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime, every thread's
}

function load1(): number {
  return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
}

function emit(name: string, value: number, unit: string, extra: Record<string, unknown>): void {
  console.log(JSON.stringify({
    name,
    value: Math.round(value * 1000) / 1000,
    unit,
    better: "lower",
    ...extra,
  }));
}

/** CPU of `pid` in percent of one core over `seconds`, while `during` runs (until stopped). */
async function cpuPercent(
  pid: number,
  seconds: number,
  during?: (stop: AbortSignal) => Promise<void>,
): Promise<number> {
  const stop = new AbortController();
  const work = during?.(stop.signal);
  const ticks0 = cpuTicks(pid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const ticks = cpuTicks(pid) - ticks0;
  const elapsed = (performance.now() - t0) / 1000;
  stop.abort();
  await work;
  return ticks / 100 / elapsed * 100; // USER_HZ = 100
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "60" },
    "agent-main": { type: "string", default: new URL("./main.ts", import.meta.url).pathname },
    label: { type: "string", default: "this checkout" },
  },
});
const seconds = Number(values.seconds);
await buildBpf();
const cluster = await clusterUp({ name: NAME, nodes: 1 });
let child: Deno.ChildProcess | undefined;
try {
  await installCrds(cluster.kubeConfig());
  const node = cluster.nodes[0]!;
  const exec = (...args: string[]) => cluster.exec(node.netns, args);
  child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      node.netns,
      Deno.execPath(),
      "run",
      "-A",
      values["agent-main"],
      "--node",
      node.name,
      "--kubeconfig",
      cluster.kubeconfig,
      "--bpffs",
      node.bpffs,
      "--uplink",
      "eth0",
      "--pod-interface",
      "cni0",
      "--object",
      DEFAULT_OBJECT,
      "--metrics-port",
      "19466",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const pid = child.pid;
  await eventually("the agent's /readyz", async () => {
    const res = await fetch(`http://${node.ip}:19466/readyz`);
    await res.body?.cancel();
    return res.status === 200;
  }, { timeoutMs: 120_000, intervalMs: 200 });
  // past start-up's collections (bench/agent.ts waits 45 s after its last update)
  await new Promise((r) => setTimeout(r, 20_000));
  const extra = (more: Record<string, unknown> = {}) => ({ agent: values.label, ...more });

  let l = load1();
  emit("agent_cpu_idle_percent", await cpuPercent(pid, seconds), "percent", extra({ load1: l }));

  l = load1();
  let churned = 0;
  const veths = await cpuPercent(pid, seconds, async (stop) => {
    while (!stop.aborted) {
      await exec("ip", "link", "add", "bxlb0", "type", "veth", "peer", "name", "bxlb1");
      await exec("ip", "link", "del", "bxlb0");
      churned++;
      await new Promise((r) => setTimeout(r, 250));
    }
  });
  emit("agent_cpu_unwatched_link_churn_percent", veths, "percent", extra({ load1: l, churned }));

  l = load1();
  let remade = 0;
  const bridge = await cpuPercent(pid, seconds, async (stop) => {
    while (!stop.aborted) {
      await exec("ip", "link", "del", "cni0");
      await exec("ip", "link", "add", "cni0", "type", "bridge");
      await exec("ip", "link", "set", "cni0", "up");
      remade++;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  });
  emit("agent_cpu_pod_bridge_remade_percent", bridge, "percent", extra({ load1: l, remade }));
} finally {
  try {
    child?.kill("SIGKILL");
  } catch { /* gone */ }
  await child?.status;
  await clusterDown(NAME);
}
