/**
 * A node goes down under ECMP: the host routes the Gateway pool over both
 * nodes, as a router in front of a cluster does. Local cluster `rel-node`.
 *
 * ```
 * host ──ECMP──► node-1 ──► p1 (node-1)
 *            └──► node-2 ──► p2 (node-2)        Service pool: p1, p2
 *   Gateway rel: tcp 80 / udp 53 ──► pool
 * ```
 *
 * node-2's uplink goes down; the router withdraws node-2's next hop (what
 * BGP or BFD do; their detection time is not blixt's) and Kubernetes marks
 * p2 not ready (what the node lifecycle and EndpointSlice controllers do
 * after the node's grace period). What must hold: new connections go to
 * node-1 and, once p2 is out of the table, are all answered. What happens
 * to the flows that were open is measured and reported, by the node that
 * carried them and the backend they reached.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ip, run } from "../cluster/host.ts";
import { programmedAddress } from "../e2e/kube_state.ts";
import { startSystem, stopSystem, type System } from "../e2e/system.ts";
import { tcpProbe } from "../e2e/traffic.ts";
import type { BackendPod } from "../e2e/remote_cluster.ts";
import { newConnectionsConverge } from "./traffic_watch.ts";
import { figure, GATEWAY_AND_ROUTES_YAML, PORTS } from "./_fixtures.ts";

const NAME = "rel-node";

Deno.test("reliability: a node down under ECMP: new connections go to the other node; open flows are reported", async () => {
  let system: System | undefined;
  let clientNs = "";
  let holder: Deno.ChildProcess | undefined;
  try {
    system = await startSystem({ name: NAME, nodes: 2 });
    const sys = system;
    const local = sys.target;
    if (local.kind !== "local") throw new Error("needs the local cluster (a node goes down)");
    const cluster = local.cluster;
    const kubectl = (args: string[]) => cluster.kubectl(args);
    const [node1, node2] = cluster.nodes;
    assert.ok(node1 && node2);
    const p1 = await sys.createPod({ name: "p1", node: node1.name });
    const p2 = await sys.createPod({ name: "p2", node: node2.name });
    const publish = (p2Ready: boolean) =>
      sys.publishService("default", "pool", {
        ports: PORTS,
        pods: [p1, { pod: p2, ready: p2Ready, serving: p2Ready, terminating: false }] as (
          | BackendPod
          | { pod: BackendPod; ready: boolean; serving: boolean; terminating: boolean }
        )[],
      });
    await publish(true);
    await sys.apply(GATEWAY_AND_ROUTES_YAML);
    const vip = await programmedAddress(kubectl, "rel");
    await newConnectionsConverge(vip, 80, (n) => n === "p1" || n === "p2");

    // Clients in a namespace of their own whose ECMP route hashes on ports (policy 1), as a
    // router in front of a cluster would: flows from one client spread over both nodes.
    clientNs = `blixt-${cluster.name}-client`;
    const hostIf = `blx${cluster.plan.slot}cl`;
    await ip(["netns", "add", clientNs]);
    await ip(["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", clientNs]);
    await ip(["link", "set", hostIf, "master", `blx${cluster.plan.slot}`, "up"]);
    const clientIP = cluster.plan.nodeNetwork.replace(/\.0\/24$/, ".240");
    await ip(["addr", "add", `${clientIP}/24`, "dev", "eth0"], { netns: clientNs });
    await ip(["link", "set", "eth0", "up"], { netns: clientNs });
    await ip(["link", "set", "lo", "up"], { netns: clientNs });
    await run(["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"], { netns: clientNs });
    const pool = cluster.plan.gatewayPool;
    await ip(["route", "add", pool, "nexthop", "via", node1.ip, "nexthop", "via", node2.ip], {
      netns: clientNs,
    });
    holder = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        clientNs,
        Deno.execPath(),
        "run",
        "-A",
        new URL("./flow_holder.ts", import.meta.url).pathname,
        vip,
        "24",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    const nextLine = async (): Promise<{ proto: string; name: string; peer: string }[]> => {
      while (!buffered.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) throw new Error("the flow holder exited");
        buffered += value;
      }
      const i = buffered.indexOf("\n");
      const line = buffered.slice(0, i);
      buffered = buffered.slice(i + 1);
      return JSON.parse(line);
    };
    const writer = holder.stdin.getWriter();
    // Which node carried a flow: a backend sees the client itself when the flow came in
    // through the backend's own node, and that node's address when through the other one.
    const nodeOf = (backend: string, peer: string) => {
      const host = peer.split(":")[0];
      if (host === node1.ip) return "node-1";
      if (host === node2.ip) return "node-2";
      return backend === "p1" ? "node-1" : "node-2";
    };
    const opened = (await nextLine()).map((f) => ({
      ...f,
      path: nodeOf(f.name, f.peer),
    }));

    // node-2 goes down; the router withdraws its next hop.
    await ip(["link", "set", "eth0", "down"], { netns: node2.netns });
    await ip(["route", "replace", pool, "via", node1.ip], { netns: clientNs });
    await ip(["route", "replace", pool, "via", node1.ip]);

    // New connections before Kubernetes marks p2 not ready: the ones Maglev gives p2 fail.
    const before = await tallyNew(vip, 40);
    await publish(false);
    const convergeMs = await newConnectionsConverge(vip, 80, (n) => n === "p1", { n: 20 });
    const after = await tallyNew(vip, 40);

    // What became of each open flow, by the node that carried it and its backend.
    await writer.write(new TextEncoder().encode("ask\n"));
    const answers = await nextLine();
    const outcome = new Map<string, Map<string, number>>();
    opened.forEach((f, i) => {
      const a = answers[i]!;
      const result = a.name === f.name
        ? "kept its backend"
        : a.name === "reset" || a.name === "timeout"
        ? a.name
        : `moved to ${a.name}`;
      const key = `${f.proto} via ${f.path} to ${f.name}`;
      const m = outcome.get(key) ?? new Map<string, number>();
      m.set(result, (m.get(result) ?? 0) + 1);
      outcome.set(key, m);
    });
    await writer.close();
    const table = [...outcome].sort(([a], [b]) => a.localeCompare(b)).map(([k, m]) =>
      `${k}: ${[...m].map(([r, n]) => `${n} ${r}`).join(", ")}`
    );
    figure("node_down.new_connections_before_p2_not_ready", JSON.stringify(before));
    figure("node_down.converged_after_p2_not_ready_ms", convergeMs);
    figure("node_down.new_connections_after", JSON.stringify(after));
    for (const line of table) figure("node_down.open_flow", line);

    assert.deepEqual(Object.keys(after), ["p1"], "every new connection answered by p1");
    // Flows node-1 carried to its own backend never noticed.
    for (const [k, m] of outcome) {
      if (k.includes("via node-1 to p1")) assert.deepEqual([...m.keys()], ["kept its backend"], k);
    }
  } catch (e) {
    if (system) console.error(await system.logTails(30));
    throw e;
  } finally {
    if (holder) {
      try {
        holder.kill("SIGKILL");
      } catch {
        // already gone
      }
      await holder.status;
    }
    if (clientNs) await ip(["netns", "del", clientNs]).catch(() => {});
    await stopSystem(system, NAME);
  }
});

/** Which backends answer `n` new TCP connections (or how they failed: timeout, reset, ...). */
async function tallyNew(vip: string, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await tcpProbe(vip, 80, 2);
    const name = r.kind === "answer" ? r.answer.name : r.kind;
    out[name] = (out[name] ?? 0) + 1;
  }
  return out;
}
