/**
 * Flows past the stack and the next hop's neighbour entry (bpf/forward.h): the program sends
 * through the kernel's neighbour output, so when the next hop's MAC changes (a NIC replaced, a
 * VM moved, an address failing over without a gratuitous ARP) the entry is re-probed as for the
 * stack's own packets, and a flow's packets reach the new MAC within the neighbour timers.
 *
 * ```
 *   client ──► node1 (blixt on its uplink) ──► node2 (new MAC) ──► be3, UDP echo
 *   node1's neighbour timers made short (reachable 1 s, first probe after 1 s, probes 250 ms);
 *   node2 knows node1 for good (a permanent entry): it never ARPs node1, which would teach
 *   node1 its new MAC whatever the program does.
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { buildBpf } from "./build.ts";
import { Dataplane, ensureBpffs, removePins } from "../agent/bpf/loader.ts";
import { NET, Topology, UPLINK } from "./testing/topology.ts";
import { lineReader } from "./testing/child_lines.ts";

const TESTING = new URL("./testing/", import.meta.url).pathname;
const ECHO_SERVER = new URL("../tests/cluster/echo_server.ts", import.meta.url).pathname;
const DENO = Deno.execPath();

/** node1's neighbour timers for its uplink (sysctl net.ipv4.neigh.<dev>.*). */
const TIMERS = { reachableMs: 1000, delayS: 1, retransMs: 250, ucastProbes: 3 };
/**
 * The most the stack takes to send to a new MAC with these timers: a REACHABLE entry lasts up to
 * 1.5 x base_reachable_time, then the first packet moves it to DELAY, then PROBE's unicast
 * probes to the old MAC go unanswered, FAILED, and the next packet resolves it by broadcast.
 */
const STACK_BOUND_MS = 1.5 * TIMERS.reachableMs + TIMERS.delayS * 1000 +
  TIMERS.ucastProbes * TIMERS.retransMs + 500;

async function macOf(topo: Topology, role: "node1" | "node2"): Promise<string> {
  const [link] = JSON.parse(await topo.exec(role, ["ip", "-j", "link", "show", UPLINK]));
  return link.address;
}

Deno.test("neighbour: a flow past the stack reaches its next hop's new MAC within the stack's neighbour timers", async () => {
  await buildBpf();
  await ensureBpffs();
  const topo = await Topology.create();
  const pinDir = `/sys/fs/bpf/blixt-test-neigh-${topo.id}`;
  let dp: Dataplane | undefined;
  try {
    dp = Dataplane.load({ pinDir, conntrackEntries: 4096 });
    dp.attach(UPLINK, { netns: topo.nsPath("node1") });
    const m = dp.maps;
    m.setConfig({ nodeAddr: NET.node1 });
    m.setBackend(1, { addr: NET.be3, port: 5353, remote: true });
    m.setService({ addr: NET.vip, port: 53, protocol: "UDP" }, {
      id: 1,
      backends: [{ id: 1, weight: 1 }],
    });
    const neigh = `net.ipv4.neigh.${UPLINK}`;
    for (
      const kv of [
        `${neigh}.base_reachable_time_ms=${TIMERS.reachableMs}`,
        `${neigh}.delay_first_probe_time=${TIMERS.delayS}`,
        `${neigh}.retrans_time_ms=${TIMERS.retransMs}`,
        `${neigh}.ucast_solicit=${TIMERS.ucastProbes}`,
      ]
    ) await topo.exec("node1", ["sysctl", "-qw", kv]);
    const node1Mac = await macOf(topo, "node1");
    await topo.exec("node2", [
      "ip",
      "neigh",
      "replace",
      NET.node1,
      "lladdr",
      node1Mac,
      "dev",
      UPLINK,
      "nud",
      "permanent",
    ]);
    const server = topo.spawn("be3", [
      DENO,
      "run",
      "-A",
      "--unstable-net",
      ECHO_SERVER,
      "--name=be3",
      "--tcp-port=8080",
      "--udp-port=5353",
    ]);
    assert.match(await lineReader(server)(), /^ready/);

    const pinger = topo.spawn("client", [
      DENO,
      "run",
      "-A",
      "--unstable-net",
      `${TESTING}udp_pinger.ts`,
      NET.vip,
      "53",
      "50",
    ]);
    const answer = lineReader(pinger);
    // The flow runs past the stack: answered, and no packet of it fell back.
    const first = await answer();
    assert.match(first, /^\d+ \d+ be3 198\.18\.192\.1:\d+ \d+$/, first);
    const until = Date.now() + 3000;
    while (Date.now() < until) await answer();
    assert.equal(m.events().forward_via_stack, 0n, "forwarded past the stack");

    const oldMac = await macOf(topo, "node2");
    const newMac = "02:00:5e:00:02:02";
    assert.notEqual(oldMac, newMac);
    await topo.exec("node2", ["ip", "link", "set", UPLINK, "address", newMac]);
    const changed = Date.now();
    // Answers in flight may still arrive; the flow is back once a datagram sent after the change
    // is answered.
    let back = 0;
    const deadline = changed + 4 * STACK_BOUND_MS;
    while (!back) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const line = await Promise.race([
        answer(),
        new Promise<string>((r) =>
          timer = setTimeout(() => r(""), Math.max(deadline - Date.now(), 0))
        ),
      ]);
      clearTimeout(timer);
      if (!line) break;
      const [, at] = line.split(" ").map(Number);
      if (at! - changed > 200) back = at!;
    }
    const took = back ? back - changed : Infinity;
    console.log(
      `neighbour: answered again ${took} ms after node2's MAC changed (stack bound ${STACK_BOUND_MS} ms)`,
    );
    assert.ok(took <= STACK_BOUND_MS, `back after ${took} ms, the stack's bound ${STACK_BOUND_MS}`);
    const entry = await topo.exec("node1", ["ip", "neigh", "show", NET.node2, "dev", UPLINK]);
    assert.match(entry, new RegExp(`lladdr ${newMac}`), entry);
    assert.equal(m.events().forward_via_stack, 0n, "still past the stack");
  } finally {
    dp?.close();
    await topo.destroy();
    removePins(pinDir);
  }
});
