/**
 * The interface watch in the real kernel, with real packets: node1's pod
 * bridge, then its uplink, deleted and made again under the same name (as a
 * restarted CNI re-makes `cni0`, or a bond is re-made). The watch, told by
 * the kernel's link notifications (its 5 s look stays as in production),
 * attaches the program to the new device at once, and the traffic that needs
 * it (a pod to a VIP of its own node; a client to the VIP through the uplink)
 * flows again; the link pinned for the deleted device is replaced and its
 * ifindex leaves `pod_ifaces`. Prints how long each took.
 *
 * ```
 *   client ──► node1 uplink bxdp0 (blixt) ──► be1, be2 (pod bridge bxdppods, blixt: pods)
 *                   │                              └─► VIP (hairpin, from the node's address)
 *                   └──► node2 ──► be3 (remote)
 * ```
 */
import assert from "node:assert/strict";
import { buildBpf } from "../bpf/build.ts";
import { NET, POD_BRIDGE, Topology, UPLINK } from "../bpf/testing/topology.ts";
import { Dataplane, ensureBpffs, removePins } from "./bpf/loader.ts";
import { type InterfaceWatch, watchInterfaces } from "./interface_watch.ts";
import type { Level } from "./log.ts";
import { Registry } from "./metrics.ts";

const ECHO_SERVER = new URL("../tests/cluster/echo_server.ts", import.meta.url).pathname;
const SVC = 1;
/** The watch's interval in production. */
const INTERVAL_MS = 5_000;
/**
 * How long a re-attach may take: a notification's path takes milliseconds
 * (docs/operations.md); the bound is for a loaded 2-core machine, and the
 * `trigger` of the log line says the notification, not the 5 s look, did it.
 */
const WITHIN_MS = 2_000;

function program(dp: Dataplane): void {
  const m = dp.maps;
  m.setConfig({ nodeAddr: NET.node1 });
  m.setBackend(1, { addr: NET.be1, port: 8080 });
  m.setBackend(2, { addr: NET.be2, port: 8080 });
  m.setBackend(3, { addr: NET.be3, port: 8080, remote: true });
  m.setService({ addr: NET.vip, port: 80, protocol: "TCP" }, {
    id: SVC,
    backends: [1, 2, 3].map((id) => ({ id, weight: 1 })),
  });
}

/** One TCP line exchange from `role` to VIP:80: `name peer msg`, or the error. */
function tcpOnce(t: Topology, role: "client" | "be1", msg: string): Promise<string> {
  return t.exec(role, [
    "timeout",
    "2",
    "bash",
    "-c",
    `exec 2>&1; exec 3<>/dev/tcp/${NET.vip}/80 && echo ${msg} >&3 && head -n1 <&3`,
  ], { allowFail: true }).then((s) => s.trim());
}

/** ms until `role` gets an answer through the VIP (tries every 200 ms), or throws after `ms`. */
async function answeredWithin(t: Topology, role: "client" | "be1", ms: number): Promise<number> {
  const start = Date.now();
  let last = "";
  for (let i = 0; Date.now() - start < ms; i++) {
    last = await tcpOnce(t, role, `${role}${i}`);
    if (/^be[123] \S+ \S+$/.test(last)) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${role}: no answer through the VIP in ${ms} ms (last: ${last})`);
}

function facesPods(dp: Dataplane, ifindex: number): boolean {
  const key = new Uint8Array(new Uint32Array([ifindex]).buffer);
  return dp.object.map("pod_ifaces").lookup(key) !== undefined;
}

Deno.test("interfaces deleted and made again get the program at once, and traffic through them flows again", async (t) => {
  await buildBpf();
  await ensureBpffs();
  const topo = await Topology.create();
  const node1 = topo.nsPath("node1");
  const pinDir = `/sys/fs/bpf/blixt-test-ifwatch-${topo.id}`;
  const lines: { level: Level; msg: string; fields?: Record<string, unknown>; at: number }[] = [];
  const metrics = new Registry();
  let dp: Dataplane | undefined;
  let watch: InterfaceWatch | undefined;
  const ip = (...args: string[]) => topo.exec("node1", ["ip", ...args]);
  /**
   * ms from `since` until the watch logged the program attached to the re-made
   * `name` (throws after `ms`); the program is on it then, by the kernel's word.
   */
  const reattachedWithin = async (name: string, since: number, ms: number): Promise<number> => {
    for (;;) {
      const line = lines.find((l) =>
        l.msg.includes("deleted and made again") && l.fields?.interface === name
      );
      if (line) {
        assert.equal(line.fields?.trigger, "link notification", JSON.stringify(line));
        assert.notEqual(dp!.attachState(name, { netns: node1 }).mode, undefined);
        return line.at - since;
      }
      if (Date.now() - since > ms) throw new Error(`${name}: the program not back in ${ms} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  try {
    dp = Dataplane.load({ pinDir, conntrackEntries: 65536 });
    dp.attach(UPLINK, { netns: node1 });
    program(dp);
    for (const be of ["be1", "be2", "be3"] as const) {
      const child = topo.spawn(be, [
        Deno.execPath(),
        "run",
        "-A",
        "--unstable-net",
        ECHO_SERVER,
        `--name=${be}`,
        "--tcp-port=8080",
      ]);
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const { value } = await reader.read();
      assert.match(value ?? "", /^ready/);
      reader.releaseLock();
    }
    watch = watchInterfaces(dp, [
      { name: UPLINK, attached: true },
      { name: POD_BRIDGE, pods: true },
    ], {
      log: (level, msg, fields) =>
        void lines.push({ level, msg, ...(fields ? { fields } : {}), at: Date.now() }),
      metrics,
      netns: node1,
      intervalMs: INTERVAL_MS,
    });
    assert.deepEqual([...watch.attached].sort(), [UPLINK, POD_BRIDGE].sort());
    await answeredWithin(topo, "be1", 5_000);
    await answeredWithin(topo, "client", 5_000);

    await t.step("the pod bridge, re-made: a pod reaches the VIP again", async () => {
      const old = dp!.attachState(POD_BRIDGE, { netns: node1 }).ifindex!;
      const before = dp!.maps.serviceCounters(SVC).new_flows;
      await ip("link", "del", POD_BRIDGE);
      const added = Date.now();
      await ip("link", "add", POD_BRIDGE, "type", "bridge");
      await ip("addr", "add", "198.18.201.1/24", "dev", POD_BRIDGE);
      await ip("link", "set", POD_BRIDGE, "up");
      for (const port of ["bxdpp1", "bxdpp2"]) await ip("link", "set", port, "master", POD_BRIDGE);
      const made = Date.now();
      const attachedMs = await reattachedWithin(POD_BRIDGE, added, WITHIN_MS);
      await answeredWithin(topo, "be1", 5_000);
      console.log(
        `pod bridge re-made: attached ${attachedMs} ms after \`ip link add\`; made (address, up, ports) ${
          made - added
        } ms after it; hairpin answered ${Date.now() - made} ms after that`,
      );
      const now = dp!.attachState(POD_BRIDGE, { netns: node1 });
      assert.equal(now.mode, "tcx", "the pinned link is on the new bridge");
      assert.notEqual(now.ifindex, old);
      assert.ok(facesPods(dp!, now.ifindex!), "the new ifindex faces pods");
      assert.ok(!facesPods(dp!, old), "the old one left pod_ifaces");
      assert.ok(dp!.maps.serviceCounters(SVC).new_flows > before, "the program counted the flow");
      const remade = lines.filter((l) => l.msg.includes("deleted and made again"));
      assert.equal(remade.length, 1, JSON.stringify(lines));
      assert.equal(remade[0]!.fields?.interface, POD_BRIDGE);
      assert.match(
        metrics.render(),
        /blixt_agent_interface_reattaches_total\{interface="bxdppods",role="pods"\} 1/,
      );
    });

    await t.step("the uplink, re-made: a client reaches the VIP again", async () => {
      await ip("link", "del", UPLINK); // its peer in the LAN goes with it
      const added = Date.now();
      await topo.exec("lan", [
        "ip",
        "link",
        "add",
        "bxdpn1",
        "type",
        "veth",
        "peer",
        "name",
        UPLINK,
        "netns",
        topo.ns.node1,
      ]);
      await topo.exec("lan", ["ip", "link", "set", "bxdpn1", "master", "bxdpbr", "up"]);
      await ip("addr", "add", `${NET.node1}/24`, "dev", UPLINK);
      await ip("link", "set", UPLINK, "up");
      await ip("route", "add", "198.18.202.0/24", "via", NET.node2);
      for (
        const kv of [
          `net.ipv4.conf.${UPLINK}.rp_filter=0`,
          `net.ipv4.conf.${UPLINK}.send_redirects=0`,
        ]
      ) {
        await topo.exec("node1", ["sysctl", "-qw", kv]);
      }
      const made = Date.now();
      const attachedMs = await reattachedWithin(UPLINK, added, WITHIN_MS);
      await answeredWithin(topo, "client", 5_000);
      console.log(
        `uplink re-made: attached ${attachedMs} ms after \`ip link add\`; made (address, up, route) ${
          made - added
        } ms after it; the client answered ${Date.now() - made} ms after that`,
      );
      assert.equal(dp!.attachState(UPLINK, { netns: node1 }).mode, "tcx");
      assert.deepEqual(watch!.problems(), []);
      assert.equal(lines.filter((l) => l.msg.startsWith("uplink was deleted")).length, 1);
      assert.deepEqual(lines.filter((l) => l.level === "error"), []);
    });
  } finally {
    await watch?.stop();
    for (const dev of [UPLINK, POD_BRIDGE]) {
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
