/**
 * Traffic tests of the paths beyond "client to VIP": pods of the node itself
 * as clients (hairpin), and a local-only service whose backend is on another
 * node. The topology (testing/topology.ts) runs with software checksums: every
 * packet node1 sends is checksummed in software from what the program left in
 * it, and every receiver verifies, so a wrong checksum breaks the exchange.
 *
 * ```
 *   client ──► node1 uplink (blixt) ──► be1, be2 (pod bridge bxdppods, blixt: pods)
 *                   │                        └─► VIP (hairpin, from the node's address)
 *                   └──► node2 ──► be3 (remote)
 * ```
 */
import assert from "node:assert/strict";
import { buildBpf } from "./build.ts";
import { Dataplane, ensureBpffs, removePins } from "../agent/bpf/loader.ts";
import { NET, Topology, UPLINK } from "./testing/topology.ts";

const ECHO_SERVER = new URL("../tests/cluster/echo_server.ts", import.meta.url).pathname;
const DENO = Deno.execPath();
const PODS = "bxdppods";

const ID = { be1: 1, be2: 2, be3: 3, be1u: 11, be2u: 12, be3u: 13, be3local: 23 };
const SVC = { tcp: 1, udp: 2, localOnly: 3 };

function program(dp: Dataplane): void {
  const m = dp.maps;
  m.setConfig({ nodeAddr: NET.node1 });
  m.setBackend(ID.be1, { addr: NET.be1, port: 8080 });
  m.setBackend(ID.be2, { addr: NET.be2, port: 8080 });
  m.setBackend(ID.be3, { addr: NET.be3, port: 8080, remote: true });
  m.setBackend(ID.be1u, { addr: NET.be1, port: 5353 });
  m.setBackend(ID.be2u, { addr: NET.be2, port: 5353 });
  m.setBackend(ID.be3u, { addr: NET.be3, port: 5353, remote: true });
  const all = (ids: number[]) => ids.map((id) => ({ id, weight: 1 }));
  m.setService({ addr: NET.vip, port: 80, protocol: "TCP" }, {
    id: SVC.tcp,
    backends: all([ID.be1, ID.be2, ID.be3]),
  });
  m.setService({ addr: NET.vip, port: 53, protocol: "UDP" }, {
    id: SVC.udp,
    backends: all([ID.be1u, ID.be2u, ID.be3u]),
  });
  m.setService({ addr: NET.vip, port: 82, protocol: "TCP" }, {
    id: SVC.localOnly,
    backends: all([ID.be3]),
    keepClientAddress: true,
  });
}

type Role = "client" | "be1" | "be2" | "be3";

/** One TCP line exchange from `role` through bash's /dev/tcp: `name peer msg`, or the error. */
function tcpOnce(t: Topology, role: Role, port: number, msg: string): Promise<string> {
  return t.exec(role, [
    "timeout",
    "5",
    "bash",
    "-c",
    `exec 2>&1; exec 3<>/dev/tcp/${NET.vip}/${port} && echo ${msg} >&3 && head -n1 <&3`,
  ], { allowFail: true }).then((s) => s.trim());
}

/** One UDP exchange from `role` over a connected socket: replies only from VIP:port count. */
function udpOnce(t: Topology, role: Role, port: number, msg: string): Promise<string> {
  return t.exec(role, [
    "timeout",
    "3",
    "bash",
    "-c",
    `exec 3<>/dev/udp/${NET.vip}/${port}; echo ${msg} >&3; timeout 1 head -n1 <&3`,
  ], { allowFail: true }).then((s) => s.trim());
}

/** Backend name -> the peer address it saw, over exchanges until all three answered. */
async function spread(
  once: (i: number) => Promise<string>,
  pattern: RegExp,
): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  for (let i = 0; i < 40 && seen.size < 3; i++) {
    const answer = await once(i);
    assert.match(answer, pattern, answer);
    const [name, peer] = answer.split(" ");
    seen.set(name!, peer!.split(":")[0]!);
  }
  assert.deepEqual([...seen.keys()].sort(), ["be1", "be2", "be3"]);
  return seen;
}

Deno.test("traffic: hairpin and local-only paths, checksums verified", async (t) => {
  await buildBpf();
  await ensureBpffs();
  const topo = await Topology.create({ softwareChecksums: true });
  const pinDir = `/sys/fs/bpf/blixt-test-traffic-node-${topo.id}`;
  const node1 = topo.nsPath("node1");
  let dp: Dataplane | undefined;
  try {
    dp = Dataplane.load({ pinDir, conntrackEntries: 65536 });
    dp.attach(UPLINK, { netns: node1 });
    dp.attach(PODS, { netns: node1, pods: true });
    program(dp);
    for (const be of ["be1", "be2", "be3"] as const) {
      const child = topo.spawn(be, [
        DENO,
        "run",
        "-A",
        "--unstable-net",
        ECHO_SERVER,
        `--name=${be}`,
        "--tcp-port=8080",
        "--udp-port=5353",
      ]);
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const { value } = await reader.read();
      assert.match(value ?? "", /^ready/);
      reader.releaseLock();
    }

    await t.step("a client reaches every backend, checksums finished in software", async () => {
      const tcp = await spread((i) => tcpOnce(topo, "client", 80, `c${i}`), /^be[123] \S+ c\d+$/);
      assert.equal(tcp.get("be1"), NET.client);
      assert.equal(tcp.get("be3"), NET.node1);
      await spread((i) => udpOnce(topo, "client", 53, `u${i}`), /^be[123] \S+ u\d+$/);
    });

    await t.step("a pod reaches a VIP of its own node, itself included (hairpin)", async () => {
      const tcp = await spread((i) => tcpOnce(topo, "be1", 80, `h${i}`), /^be[123] \S+ h\d+$/);
      for (const [name, peer] of tcp) {
        assert.equal(peer, NET.node1, `${name} sees the node, whose replies it sends back`);
      }
      const udp = await spread((i) => udpOnce(topo, "be2", 53, `d${i}`), /^be[123] \S+ d\d+$/);
      assert.deepEqual([...udp.values()], [NET.node1, NET.node1, NET.node1]);
    });

    await t.step(
      "local-only: a remote backend sees the client; replies routed back through node1 leave as the VIP",
      async () => {
        // Keeping the client address across nodes needs the backend's node to send the
        // replies back through the node that translated the flow (no DSR here).
        await topo.exec("node2", ["ip", "route", "add", `${NET.client}/32`, "via", NET.node1]);
        const answer = await tcpOnce(topo, "client", 82, "local");
        assert.match(answer, /^be3 \S+ local$/, answer);
        assert.equal(answer.split(" ")[1]!.split(":")[0], NET.client);
        const c = dp!.maps.serviceCounters(SVC.localOnly);
        assert.ok(
          c.new_flows === 1n && c.reply_packets >= 2n,
          JSON.stringify(c, (_, v) => String(v)),
        );
      },
    );
  } finally {
    for (const dev of [UPLINK, PODS]) {
      try {
        dp?.detach(dev, { netns: node1 });
      } catch {
        // the namespace goes below anyway
      }
    }
    dp?.close();
    await topo.destroy();
    removePins(pinDir);
  }
});
