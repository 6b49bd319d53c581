/**
 * A SYN flood from many spoofed sources against a VIP while established
 * connections carry traffic. Local cluster `rel-syn`, 2 nodes; the host's
 * clients and the flood both reach the VIP through node-1.
 *
 * ```
 * host (clients) ──────────────┐
 * netns e-…-flood (raw socket) ─┴─► node-1 ──► p1 (node-1, local)
 *   sources 198.19.192.0/18          └──────► p2 (node-2, remote: SNAT to node-1)
 *   Gateway rel: tcp 80 / udp 53 ──► Service pool: p1, p2
 * ```
 *
 * The spoofed range is outside every local cluster's address plan (slots use
 * 198.18.0.0-198.19.127.255), so answers to it go nowhere. What must hold: the
 * established flows keep working, and new connections of the host's clients
 * (which connected before: a verified client address) reach both backends
 * during and right after the flood, the remote one although the flood's
 * half-open flows hold its SNAT ports. A newcomer (the flood namespace's own
 * address, which never connected before) is reported during the flood and
 * must reach both backends right after it. Reported: the conntrack map's fill
 * on node-1 before and after, the program's events (SNAT ports run out,
 * conntrack inserts that failed), and new connections per backend.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ip, run, sleep } from "../cluster/host.ts";
import { parseEchoReply } from "../cluster/echo_server.ts";
import { programmedAddress } from "../e2e/kube_state.ts";
import { startSystem, stopSystem, type System } from "../e2e/system.ts";
import { type ProbeResult, routeThrough, tcpProbe } from "../e2e/traffic.ts";
import { openPinnedMap } from "../../agent/bpf/object.ts";
import { flowValue } from "../../agent/bpf/layout.ts";
import { ctTimeoutS } from "../../agent/bpf/conntrack_sweep.ts";
import { monotonicCoarseNs } from "../../agent/bpf/libbpf.ts";
import { describeTraffic, newConnectionsConverge, watchTraffic } from "./traffic_watch.ts";
import { figure, GATEWAY_AND_ROUTES_YAML, PORTS } from "./_fixtures.ts";

const NAME = "rel-syn";
const SPOOFED = { net: "198.19.192.0", bits: 14 };
const FLOOD = Number(Deno.env.get("BLIXT_SYN_FLOOD_PACKETS") ?? 300_000);
/** Seconds to wait after the flood before reporting again (the half-open timeouts, the sweep). */
const RECOVERY_S = Number(Deno.env.get("BLIXT_SYN_FLOOD_RECOVERY_S") ?? 0);

/**
 * Conntrack entries of a node's pinned map, by kind and (for DNAT entries) TCP state, the DNAT
 * entries the program still treats as live (`live_flows`), and DNAT entries to the remote
 * backend by state (`remote_…`: the flows that hold its SNAT ports).
 */
function conntrackFill(pinDir: string, remote: string): Record<string, number> {
  const map = openPinnedMap(`${pinDir}/conntrack`);
  try {
    const now = monotonicCoarseNs();
    const out: Record<string, number> = { total: 0, live_flows: 0 };
    const kinds = ["", "dnat", "snat", "reply"];
    const states = ["new", "established", "closing", "closed", "syn_recv", "pickup"];
    for (const [, v] of map.entries()) {
      const f = flowValue.decode(v);
      out.total!++;
      const state = states[f.state] ?? f.state;
      const key = f.kind === 1 ? `dnat_${state}` : kinds[f.kind] ?? "?";
      out[key] = (out[key] ?? 0) + 1;
      if (f.kind === 1 && f.daddr === remote) {
        out[`remote_${state}`] = (out[`remote_${state}`] ?? 0) + 1;
      }
      const age = Number(now - f.last_seen) / 1e9;
      if (f.kind === 1 && age <= ctTimeoutS(6, f.state)) out.live_flows!++;
    }
    return out;
  } finally {
    map.close();
  }
}

async function events(nodeIP: string): Promise<Record<string, number>> {
  const text = await fetch(`http://${nodeIP}:9464/metrics`).then((r) => r.text());
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^blixt_dataplane_events_total\{event="([a-z_]+)"\} (\d+)/gm)) {
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** The client addresses in a node's `verified_clients` map (they finished a handshake there). */
function verifiedClients(pinDir: string): string[] {
  const map = openPinnedMap(`${pinDir}/verified_clients`);
  try {
    return [...map.entries()].map(([k]) => [...k].join("."));
  } finally {
    map.close();
  }
}

/** One TCP request from network namespace `netns`, as {@linkcode tcpProbe} from the host. */
async function tcpProbeIn(netns: string, host: string, port: number): Promise<ProbeResult> {
  const started = performance.now();
  const res = await run([
    "timeout",
    "2",
    "bash",
    "-c",
    `exec 2>&1; exec 3<>/dev/tcp/${host}/${port} && echo probe >&3 && head -n1 <&3`,
  ], { netns, allowFailure: true });
  const ms = performance.now() - started;
  const out = res.stdout.trim();
  const answer = res.code === 0 ? parseEchoReply(out) : undefined;
  if (answer) return { kind: "answer", answer, ms };
  if (/Connection refused/.test(out)) return { kind: "reset", detail: out, ms };
  return { kind: res.code === 124 ? "timeout" : "error", detail: out, ms };
}

/** Outcomes of new connections: answers per backend, failures per kind, and their rate. */
interface Tally {
  counts: Record<string, number>;
  seconds: number;
  /** Answered connections that took over 900 ms (a SYN retransmitted), and the slowest, in ms. */
  slow: number;
  slowestMs: number;
}

function tally(results: ProbeResult[], seconds: number): Tally {
  const counts: Record<string, number> = {};
  let slow = 0, slowestMs = 0;
  for (const r of results) {
    const name = r.kind === "answer" ? r.answer.name : r.kind;
    counts[name] = (counts[name] ?? 0) + 1;
    if (r.kind !== "answer") continue;
    if (r.ms > 900) slow++;
    slowestMs = Math.max(slowestMs, Math.round(r.ms));
  }
  return { counts, seconds: Math.round(seconds * 100) / 100, slow, slowestMs };
}

function describeTally(t: Tally): string {
  const n = Object.values(t.counts).reduce((a, b) => a + b, 0);
  const rate = t.seconds > 0 ? ` (${(n / t.seconds).toFixed(1)}/s over ${t.seconds} s)` : "";
  return `${
    JSON.stringify(t.counts)
  }${rate}; ${t.slow} answered after > 900 ms, slowest ${t.slowestMs} ms`;
}

/** New connections one after another until `done` settles (every 100 ms). */
async function probeUntil(
  done: Promise<unknown>,
  probe: () => Promise<ProbeResult>,
): Promise<Tally> {
  let over = false;
  done.finally(() => over = true).catch(() => {});
  const started = performance.now();
  const results: ProbeResult[] = [];
  while (!over) {
    results.push(await probe());
    await sleep(100);
  }
  return tally(results, (performance.now() - started) / 1000);
}

/** `n` new connections one after another. */
async function probeN(n: number, probe: () => Promise<ProbeResult>): Promise<Tally> {
  const started = performance.now();
  const results: ProbeResult[] = [];
  for (let i = 0; i < n; i++) results.push(await probe());
  return tally(results, (performance.now() - started) / 1000);
}

async function buildFlooder(dir: string): Promise<string> {
  const src = new URL("./syn_flood.c", import.meta.url).pathname;
  const bin = `${dir}/syn_flood`;
  await run(["clang", "-O2", "-Wall", "-o", bin, src]);
  return bin;
}

Deno.test({
  name:
    "reliability: a spoofed SYN flood leaves established connections working; conntrack pressure reported",
  // A new connection that timed out (its SYN dropped) leaves Deno's connect op running until
  // the kernel gives up on it, after the test.
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  let system: System | undefined;
  let floodNs = "";
  let unroute = async () => {};
  try {
    system = await startSystem({ name: NAME, nodes: 2 });
    const sys = system;
    const local = sys.target;
    if (local.kind !== "local") throw new Error("needs the local cluster (spoofed traffic)");
    const cluster = local.cluster;
    const kubectl = (args: string[]) => cluster.kubectl(args);
    const [node1, node2] = cluster.nodes;
    assert.ok(node1 && node2);
    const p1 = await sys.createPod({ name: "p1", node: node1.name });
    const p2 = await sys.createPod({ name: "p2", node: node2.name });
    await sys.publishService("default", "pool", { ports: PORTS, pods: [p1, p2] });
    await sys.apply(GATEWAY_AND_ROUTES_YAML);
    const vip = await programmedAddress(kubectl, "rel");
    unroute = await routeThrough(vip, node1.ip);
    await newConnectionsConverge(vip, 80, (n) => n === "p1" || n === "p2");

    // The flood's namespace, on the cluster's bridge, its only route the VIP via node-1.
    floodNs = `blixt-${cluster.name}-flood`;
    const hostIf = `blx${cluster.plan.slot}fl`;
    await ip(["netns", "add", floodNs]);
    await ip(["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", floodNs]);
    await ip(["link", "set", hostIf, "master", `blx${cluster.plan.slot}`, "up"]);
    const floodIP = cluster.plan.nodeNetwork.replace(/\.0\/24$/, ".250");
    await ip(["addr", "add", `${floodIP}/24`, "dev", "eth0"], { netns: floodNs });
    await ip(["link", "set", "eth0", "up"], { netns: floodNs });
    await ip(["link", "set", "lo", "up"], { netns: floodNs });
    await ip(["route", "add", `${vip}/32`, "via", node1.ip], { netns: floodNs });
    const flooder = await buildFlooder(cluster.dir);

    const pinDir = `${node1.bpffs}/blixt`;
    const before = conntrackFill(pinDir, p2.ip);
    const newcomerBefore = verifiedClients(pinDir).includes(floodIP) ? "verified" : "unknown";
    const eventsBefore = await events(node1.ip);
    // 5 s: a stall while the flood has both CPUs is not a broken flow; a lost one stays lost.
    const traffic = watchTraffic(vip, { tcp: 80, udp: 53 }, { timeoutMs: 5000 });
    await sleep(2000);
    const flooding = run(
      [flooder, vip, "80", SPOOFED.net, String(SPOOFED.bits), String(FLOOD)],
      { netns: floodNs },
    );
    // New connections while the flood runs: the host's (verified) and the newcomer's.
    const [hostDuring, newcomerDuring] = await Promise.all([
      probeUntil(flooding, () => tcpProbe(vip, 80, 2)),
      probeUntil(flooding, () => tcpProbeIn(floodNs, vip, 80)),
    ]);
    const flood = await flooding;
    const [sent = "0", seconds = "0"] = flood.stdout.trim().split(" ");
    const during = conntrackFill(pinDir, p2.ip);
    const verified = verifiedClients(pinDir);
    await sleep(3000);
    const report = await traffic.stop();
    const eventsAfter = await events(node1.ip);
    const delta: Record<string, number> = {};
    for (const [k, v] of Object.entries(eventsAfter)) {
      if (v - (eventsBefore[k] ?? 0) > 0) delta[k] = v - (eventsBefore[k] ?? 0);
    }
    // New connections right after the flood: which backends answer, and how others fail.
    const hostAfter = await probeN(40, () => tcpProbe(vip, 80, 2));
    const newcomerAfter = await probeN(40, () => tcpProbeIn(floodNs, vip, 80));
    const capacity = openPinnedMap(`${pinDir}/conntrack`);
    const maxEntries = capacity.maxEntries;
    capacity.close();
    figure("syn_flood.sent", `${sent} SYNs in ${seconds} s`);
    figure("syn_flood.conntrack_capacity", maxEntries);
    figure("syn_flood.conntrack_before", JSON.stringify(before));
    figure("syn_flood.conntrack_after_flood", JSON.stringify(during));
    figure("syn_flood.events", JSON.stringify(delta));
    figure("syn_flood.established_traffic", describeTraffic(report));
    figure(
      "syn_flood.verified_clients_after_flood",
      `${verified.length}: ${verified.join(" ")} (newcomer ${floodIP}, before: ${newcomerBefore})`,
    );
    figure("syn_flood.new_connections_during.host", describeTally(hostDuring));
    figure("syn_flood.new_connections_during.newcomer", describeTally(newcomerDuring));
    figure("syn_flood.new_connections_after.host", describeTally(hostAfter));
    figure("syn_flood.new_connections_after.newcomer", describeTally(newcomerAfter));
    if (RECOVERY_S > 0) {
      await sleep(RECOVERY_S * 1000);
      const later: Record<string, number> = {};
      for (let i = 0; i < 40; i++) {
        const r = await tcpProbe(vip, 80, 2);
        const name = r.kind === "answer" ? r.answer.name : r.kind;
        later[name] = (later[name] ?? 0) + 1;
      }
      figure(
        `syn_flood.conntrack_${RECOVERY_S}s_after`,
        JSON.stringify(conntrackFill(pinDir, p2.ip)),
      );
      figure(`syn_flood.new_connections_${RECOVERY_S}s_after`, JSON.stringify(later));
    }
    assert.ok(Number(sent) > 0, `the flood sent nothing: ${flood.stdout} ${flood.stderr}`);
    assert.equal(report.failed["long-tcp"] ?? 0, 0, describeTraffic(report));
    assert.equal(report.failed["long-udp"] ?? 0, 0, describeTraffic(report));
    // The host's clients connected before (a verified address): the flood's half-open flows
    // give up their SNAT ports to them, during the flood and after it.
    for (const [when, t] of [["during", hostDuring], ["after", hostAfter]] as const) {
      const c = t.counts;
      assert.ok((c.p1 ?? 0) > 0 && (c.p2 ?? 0) > 0, `${when}: both backends: ${describeTally(t)}`);
      const failed = Object.entries(c).filter(([k]) => k !== "p1" && k !== "p2");
      assert.deepEqual(failed, [], `${when} the flood, host: ${describeTally(t)}`);
    }
    // A newcomer takes a half-open port once it is 5 s old: right after the flood, not during.
    const c = newcomerAfter.counts;
    assert.ok(
      (c.p1 ?? 0) > 0 && (c.p2 ?? 0) > 0,
      `newcomer after: ${describeTally(newcomerAfter)}`,
    );
    assert.equal((c.p1 ?? 0) + (c.p2 ?? 0), 40, `newcomer after: ${describeTally(newcomerAfter)}`);
  } catch (e) {
    if (system) console.error(await system.logTails(30));
    throw e;
  } finally {
    await unroute();
    if (floodNs) await ip(["netns", "del", floodNs]).catch(() => {});
    await stopSystem(system, NAME);
  }
});
