/**
 * `deno task bench soak [--minutes N]` (default 10): a churn soak on the
 * local cluster `rel-soak` (2 nodes, operator and agents as processes).
 *
 * ```
 * host ──ECMP──► node-1 | node-2 ──► p1 p3 (node-1), p2 p4 (node-2)
 *   Gateway soak: tcp 80 / udp 53 ──► Service pool (p1..p4), weights change every second
 *                 tcp 81 ──► a route created and deleted every other second
 * ```
 *
 * Clients (tests/reliability/traffic_watch.ts): a long-lived TCP connection
 * and UDP flow asking every 100 ms, a new TCP connection and UDP socket
 * every 200 ms. Weight changes move no tracked flow, so every failure is
 * unexpected and a long-lived flow answered by another backend is
 * misrouted. Reported as JSON lines: requests, failures, resets, misrouted
 * answers, conntrack entries of both nodes (total, and live by the program's
 * timeouts) at the start and end and after the idle timeouts (130 s), RSS of
 * the agents (mean) and the operator at start, end and after the idle time,
 * and its slope during the soak (least squares over a sample every 10 s), over
 * the whole soak and over its first and last 10 minutes (a third of it when
 * shorter than 30 minutes); the operator's V8 heap (its /metrics gauges) the
 * same way. Every sample goes to `.cache/soak-samples.jsonl`. With
 * `--heap-snapshots` the operator writes a heap snapshot (SIGUSR2) at the end
 * of the first window, at the end of the churn and after the idle time; compare
 * them with `deno run -A bench/heap_snapshot.ts A B`. Writing one leaves the
 * operator's RSS ~300 MiB higher for good (the serializer's memory): with
 * snapshots, compare RSS by the last window's slope, not by levels.
 *
 * @module
 */
import { sleep } from "../tests/cluster/host.ts";
import { programmedAddress } from "../tests/e2e/kube_state.ts";
import { startSystem, stopSystem, type System } from "../tests/e2e/system.ts";
import { newConnectionsConverge, watchTraffic } from "../tests/reliability/traffic_watch.ts";
import { openPinnedMap } from "../agent/bpf/object.ts";
import { flowValue } from "../agent/bpf/layout.ts";

const root = new URL("../", import.meta.url).pathname;
const NAME = "rel-soak";
const PORTS = [
  { name: "tcp", port: 80, targetPort: 8080, protocol: "TCP" as const },
  { name: "udp", port: 53, targetPort: 8080, protocol: "UDP" as const },
];

function emit(name: string, value: number, unit: string, better: "higher" | "lower"): void {
  console.log(JSON.stringify({ name, value: Math.round(value * 100) / 100, unit, better }));
}

function yaml(weights: number[], extraRoute: boolean): string {
  const refs = (port: number) =>
    weights.map((w, i) => `{ name: p${i + 1}, port: ${port}, weight: ${w} }`).join(", ");
  return `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: soak, namespace: default }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 80, protocol: TCP }
  - { name: udp, port: 53, protocol: UDP }
  - { name: extra, port: 81, protocol: TCP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: soak-tcp, namespace: default }
spec:
  parentRefs: [{ name: soak, sectionName: tcp }]
  rules: [{ backendRefs: [${refs(80)}] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: soak-udp, namespace: default }
spec:
  parentRefs: [{ name: soak, sectionName: udp }]
  rules: [{ backendRefs: [${refs(53)}] }]
${
    extraRoute
      ? `---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: soak-extra, namespace: default }
spec:
  parentRefs: [{ name: soak, sectionName: extra }]
  rules: [{ backendRefs: [{ name: p1, port: 80 }] }]
`
      : ""
  }`;
}

/** CLOCK_MONOTONIC in ns, near enough (10 ms), from /proc/uptime. */
function monotonicNs(): number {
  // The program stamps entries with CLOCK_MONOTONIC_COARSE; /proc/uptime is CLOCK_BOOTTIME,
  // equal on a machine that never suspended (a VM).
  return Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]) * 1e9;
}

const TIMEOUT_S: Record<string, number[]> = {
  // state -> seconds (bpf/consts.h): new, established, closing, closed, syn_recv, pickup
  "6": [60, 432000, 120, 10, 60, 60],
  "17": [30, 120, 30, 30],
};

/** Conntrack entries on a node: all of them, and those the program still treats as live. */
function conntrack(pinDir: string): { total: number; live: number } {
  const map = openPinnedMap(`${pinDir}/conntrack`);
  try {
    const now = monotonicNs();
    let total = 0;
    let live = 0;
    for (const [k, v] of map.entries()) {
      total++;
      const f = flowValue.decode(v);
      const proto = String(k[12]);
      const timeout = (TIMEOUT_S[proto] ?? [120])[f.state] ?? 120;
      if (now - Number(f.last_seen) < timeout * 1e9) live++;
    }
    return { total, live };
  } finally {
    map.close();
  }
}

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Least-squares slope of (minute, MiB) samples, in MiB per minute. */
function slope(samples: [number, number][]): number {
  const n = samples.length;
  if (n < 2) return 0;
  const mx = samples.reduce((a, [x]) => a + x, 0) / n;
  const my = samples.reduce((a, [, y]) => a + y, 0) / n;
  const num = samples.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const den = samples.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return den ? num / den : 0;
}

/** The operator's V8 heap gauges (MiB), from its /metrics; zeros when unreachable. */
async function operatorHeap(
  port: number,
): Promise<{ used: number; total: number; external: number }> {
  try {
    const text = await fetch(`http://127.0.0.1:${port}/metrics`, {
      signal: AbortSignal.timeout(5000),
    }).then((r) => r.text());
    const gauge = (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? 0) / 2 ** 20;
    return {
      used: gauge("blixt_operator_heap_used_bytes"),
      total: gauge("blixt_operator_heap_total_bytes"),
      external: gauge("blixt_operator_external_memory_bytes"),
    };
  } catch {
    return { used: 0, total: 0, external: 0 };
  }
}

/**
 * Has the operator write a heap snapshot and waits until it is written (the write blocks its
 * event loop, so /healthz answers only after). Resolves to the snapshot's path.
 */
async function heapSnapshot(pid: number, port: number): Promise<string> {
  const dir = Deno.env.get("TMPDIR") ?? "/tmp";
  const prefix = `blixt-operator-${pid}-`;
  const existing = new Set(
    [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith(prefix)),
  );
  Deno.kill(pid, "SIGUSR2");
  for (let t = 0; t < 600; t++) {
    await sleep(1000);
    const made = [...Deno.readDirSync(dir)].map((e) => e.name).find((n) =>
      n.startsWith(prefix) && !existing.has(n)
    );
    const up = await fetch(`http://127.0.0.1:${port}/healthz`, {
      signal: AbortSignal.timeout(2000),
    }).then((r) => r.ok, () => false);
    if (made && up) return `${dir}/${made}`;
  }
  throw new Error("the operator wrote no heap snapshot in 600 s");
}

/** Slopes over the first and the last `window` minutes of the samples. */
function emitWindows(
  prefix: string,
  samples: [number, number][],
  window: number,
  minutes: number,
): void {
  const first = samples.filter(([m]) => m <= window);
  const last = samples.filter(([m]) => m >= minutes - window);
  emit(
    `${prefix}_slope_first_${Math.round(window)}min_mib_per_min`,
    slope(first),
    "MiB/min",
    "lower",
  );
  emit(
    `${prefix}_slope_last_${Math.round(window)}min_mib_per_min`,
    slope(last),
    "MiB/min",
    "lower",
  );
}

/** Runs the soak and prints its figures. */
export async function main(args: string[]): Promise<void> {
  const i = args.indexOf("--minutes");
  const minutes = i >= 0 ? Number(args[i + 1]) : 10;
  if (!(minutes > 0 && minutes <= 24 * 60)) throw new RangeError(`--minutes ${args[i + 1]}`);
  const snapshots = args.includes("--heap-snapshots");
  // The windows whose slopes tell a settling heap (steep, then flat) from a leak (steady).
  const window = Math.min(10, minutes / 3);
  const samplesPath = `${root}.cache/soak-samples.jsonl`;
  await Deno.mkdir(`${root}.cache`, { recursive: true });
  await Deno.writeTextFile(samplesPath, "");
  const snapshotPaths: string[] = [];
  let system: System | undefined;
  try {
    system = await startSystem({ name: NAME, nodes: 2 });
    const sys = system;
    const local = sys.target;
    if (local.kind !== "local") throw new Error("the soak runs on the local cluster");
    const [node1, node2] = local.cluster.nodes;
    if (!node1 || !node2) throw new Error("two nodes expected");
    const pods = [];
    for (let p = 1; p <= 4; p++) {
      pods.push(await sys.createPod({ name: `p${p}`, node: p % 2 ? node1.name : node2.name }));
    }
    for (const pod of pods) {
      await sys.publishService("default", pod.name, { ports: PORTS, pods: [pod] });
    }
    await sys.apply(yaml([1, 1, 1, 1], false));
    const vip = await programmedAddress((a) => local.cluster.kubectl(a), "soak");
    await newConnectionsConverge(vip, 80, (n) => n.startsWith("p"));
    // Both nodes: the host's ECMP route hashes on addresses, so its flows may all take one.
    const ct = () => {
      const all = [node1, node2].map((n) => conntrack(`${n.bpffs}/blixt`));
      return { total: all[0]!.total + all[1]!.total, live: all[0]!.live + all[1]!.live };
    };
    const ctStart = ct();
    const pids = {
      agents: local.agents.map((a) => a.pid),
      operator: local.operator.pid,
    };
    const rss = (which: "agents" | "operator") =>
      which === "agents"
        ? pids.agents.reduce((a, p) => a + rssMiB(p), 0) / pids.agents.length
        : rssMiB(pids.operator);
    const healthPort = 18081 + local.cluster.plan.slot;
    const samples = {
      agents: [] as [number, number][],
      operator: [] as [number, number][],
      operator_heap_used: [] as [number, number][],
      operator_heap_total: [] as [number, number][],
      operator_external: [] as [number, number][],
    };
    const traffic = watchTraffic(vip, { tcp: 80, udp: 53 });
    const started = performance.now();
    let changes = 0;
    let lastSample = -1;
    while (performance.now() - started < minutes * 60_000) {
      const m = (performance.now() - started) / 60_000;
      if (Math.floor(m * 6) !== lastSample) {
        lastSample = Math.floor(m * 6);
        const heap = await operatorHeap(healthPort);
        const sample = {
          minute: m,
          agents: rss("agents"),
          operator: rss("operator"),
          operator_heap_used: heap.used,
          operator_heap_total: heap.total,
          operator_external: heap.external,
          changes,
        };
        await Deno.writeTextFile(samplesPath, JSON.stringify(sample) + "\n", { append: true });
        for (const k of Object.keys(samples) as (keyof typeof samples)[]) {
          samples[k].push([m, sample[k]]);
        }
        if (snapshots && snapshotPaths.length === 0 && m >= window) {
          snapshotPaths.push(await heapSnapshot(pids.operator, healthPort));
        }
      }
      const w = [0, 1, 2, 3].map((k) => 1 + ((changes + k) % 4));
      await sys.apply(yaml(w, changes % 2 === 0)).catch((e) => console.error(`apply: ${e}`));
      changes++;
      await sleep(1000);
    }
    const report = await traffic.stop();
    const ctEnd = ct();
    const rssEnd = { agents: rss("agents"), operator: rss("operator") };
    const heapEnd = await operatorHeap(healthPort);
    if (snapshots) snapshotPaths.push(await heapSnapshot(pids.operator, healthPort));
    // Closed connections linger 120 s (TIME_WAIT-like), UDP 30-120 s: then they are dead.
    await sleep(130_000);
    const ctIdle = ct();
    const heapIdle = await operatorHeap(healthPort);
    if (snapshots) snapshotPaths.push(await heapSnapshot(pids.operator, healthPort));
    const total = Object.values(report.sent).reduce((a, b) => a + b, 0);
    const failed = Object.values(report.failed).reduce((a, b) => a + b, 0);
    const resets = report.failures.filter((f) => f.kind === "reset").length;
    const moved = Object.values(report.moved).reduce((a, b) => a + b, 0);
    emit("soak_minutes", minutes, "min", "higher");
    emit("soak_table_changes", changes, "changes", "higher");
    emit("soak_requests", total, "requests", "higher");
    emit("soak_unexpected_failures", failed, "requests", "lower");
    emit("soak_resets", resets, "resets", "lower");
    emit("soak_misrouted_answers", moved, "answers", "lower");
    emit("soak_conntrack_total_start", ctStart.total, "entries", "lower");
    emit("soak_conntrack_live_start", ctStart.live, "entries", "lower");
    emit("soak_conntrack_total_end", ctEnd.total, "entries", "lower");
    emit("soak_conntrack_live_end", ctEnd.live, "entries", "lower");
    emit("soak_conntrack_live_idle", ctIdle.live, "entries", "lower");
    emit("soak_conntrack_total_idle", ctIdle.total, "entries", "lower");
    for (const which of ["agents", "operator"] as const) {
      const s = samples[which];
      emit(`soak_${which}_rss_start_mib`, s[0]?.[1] ?? 0, "MiB", "lower");
      emit(`soak_${which}_rss_end_mib`, rssEnd[which], "MiB", "lower");
      emit(`soak_${which}_rss_idle_mib`, rss(which), "MiB", "lower");
      emit(`soak_${which}_rss_slope_mib_per_min`, slope(s), "MiB/min", "lower");
      emitWindows(`soak_${which}_rss`, s, window, minutes);
    }
    for (
      const [key, end, idle] of [
        ["operator_heap_used", heapEnd.used, heapIdle.used],
        ["operator_heap_total", heapEnd.total, heapIdle.total],
        ["operator_external", heapEnd.external, heapIdle.external],
      ] as const
    ) {
      const s = samples[key];
      emit(`soak_${key}_start_mib`, s[0]?.[1] ?? 0, "MiB", "lower");
      emit(`soak_${key}_end_mib`, end, "MiB", "lower");
      emit(`soak_${key}_idle_mib`, idle, "MiB", "lower");
      emit(`soak_${key}_slope_mib_per_min`, slope(s), "MiB/min", "lower");
      emitWindows(`soak_${key}`, s, window, minutes);
    }
    console.error(`samples: ${samplesPath}`);
    if (snapshotPaths.length) console.error(`heap snapshots: ${snapshotPaths.join(" ")}`);
    if (failed > 0) {
      console.error(`failures: ${JSON.stringify(report.failures.slice(0, 20))}`);
      Deno.exitCode = 1;
    }
  } finally {
    await stopSystem(system, NAME);
  }
}
