/**
 * A two-node test network made of namespaces, for traffic tests and
 * benchmarks. Everything is named `bxdp<id>-*` and uses 198.18.192.0/18 only;
 * destroy() removes it all (links go with their namespaces).
 *
 * ```
 *              lan (bridge bxdpbr)  198.18.192.0/24
 *        ┌──────────────┼───────────────────┐
 *   client .10     node1 .1 (uplink bxdp0:   node2 .2
 *   VIP routes ──►  blixt ingress+egress)     │
 *                   │ bridge 198.18.201.1/24  │ bridge 198.18.202.1/24
 *               be1 .11    be2 .12           be3 .13 (remote backend)
 *   VIP 198.18.200.1 is routed to node1 and assigned nowhere.
 * ```
 *
 * @module
 */

/** Addresses of the topology. */
export const NET = {
  client: "198.18.192.10",
  node1: "198.18.192.1",
  node2: "198.18.192.2",
  be1: "198.18.201.11",
  be2: "198.18.201.12",
  be3: "198.18.202.13",
  vip: "198.18.200.1",
} as const;

/** The uplink of node1, where the program is attached. */
export const UPLINK = "bxdp0";

/** The pod bridge of each node. */
export const POD_BRIDGE = "bxdppods";

/** Runs a command, throwing with its stderr on failure; returns stdout. */
export async function run(
  cmd: string[],
  options: { allowFail?: boolean } = {},
): Promise<string> {
  const out = await new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success && !options.allowFail) {
    throw new Error(
      `${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  return text;
}

/** The namespaces of one topology. */
export class Topology {
  /** Unique id of this topology. */
  readonly id: string;
  /** Namespace names by role. */
  readonly ns: Record<
    "lan" | "client" | "node1" | "node2" | "be1" | "be2" | "be3",
    string
  >;
  readonly #children: Deno.ChildProcess[] = [];

  private constructor(id: string) {
    this.id = id;
    const n = (r: string) => `bxdp${id}-${r}`;
    this.ns = {
      lan: n("lan"),
      client: n("client"),
      node1: n("node1"),
      node2: n("node2"),
      be1: n("be1"),
      be2: n("be2"),
      be3: n("be3"),
    };
  }

  /** The `/run/netns` path of a namespace. */
  nsPath(role: keyof Topology["ns"]): string {
    return `/run/netns/${this.ns[role]}`;
  }

  /** Runs `cmd` inside namespace `role`. */
  exec(
    role: keyof Topology["ns"],
    cmd: string[],
    options: { allowFail?: boolean } = {},
  ) {
    return run(["ip", "netns", "exec", this.ns[role], ...cmd], options);
  }

  /** Starts a long-running process in namespace `role`; destroy() kills it. */
  spawn(role: keyof Topology["ns"], cmd: string[]): Deno.ChildProcess {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", this.ns[role], ...cmd],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#children.push(child);
    return child;
  }

  /**
   * Builds the network; on failure removes what it made and rethrows.
   * `softwareChecksums`: node1's devices finish checksums in software and
   * every receiver verifies them (no transmit or receive offload), so a
   * checksum the program left wrong makes the packet drop.
   */
  static async create(options: { softwareChecksums?: boolean } = {}): Promise<Topology> {
    const t = new Topology(crypto.randomUUID().slice(0, 4));
    try {
      await t.#build();
      if (options.softwareChecksums) await t.#softwareChecksums();
    } catch (e) {
      await t.destroy();
      throw e;
    }
    return t;
  }

  async #build(): Promise<void> {
    const ns = this.ns;
    for (const name of Object.values(ns)) {
      await run(["ip", "netns", "add", name]);
    }
    const ip = (role: keyof Topology["ns"], ...args: string[]) => this.exec(role, ["ip", ...args]);
    const sysctl = (role: keyof Topology["ns"], kv: string) =>
      this.exec(role, ["sysctl", "-qw", kv]);
    const veth = (a: string, aNs: string, b: string, bNs: string) =>
      run([
        "ip",
        "link",
        "add",
        a,
        "netns",
        aNs,
        "type",
        "veth",
        "peer",
        "name",
        b,
        "netns",
        bNs,
      ]);

    for (const role of Object.keys(ns) as (keyof Topology["ns"])[]) {
      await ip(role, "link", "set", "lo", "up");
    }
    // The LAN: a bridge joining client, node1 and node2.
    await ip("lan", "link", "add", "bxdpbr", "type", "bridge");
    await ip("lan", "link", "set", "bxdpbr", "up");
    const lanPorts = [["client", "bxdpc"], ["node1", "bxdpn1"], [
      "node2",
      "bxdpn2",
    ]] as const;
    for (const [role, port] of lanPorts) {
      await veth(UPLINK, ns[role], port, ns.lan);
      await ip("lan", "link", "set", port, "master", "bxdpbr", "up");
      await ip(role, "link", "set", UPLINK, "up");
    }
    await ip("client", "addr", "add", `${NET.client}/24`, "dev", UPLINK);
    await ip("node1", "addr", "add", `${NET.node1}/24`, "dev", UPLINK);
    await ip("node2", "addr", "add", `${NET.node2}/24`, "dev", UPLINK);
    // The client reaches the VIP and node1's pods through node1, node2's pods through node2.
    await ip("client", "route", "add", "198.18.200.0/24", "via", NET.node1);
    await ip("client", "route", "add", "198.18.201.0/24", "via", NET.node1);
    await ip("client", "route", "add", "198.18.202.0/24", "via", NET.node2);

    // Nodes: a pod bridge each, routes to the other node's pods (as kindnet does).
    const pods = [
      ["node1", "198.18.201.1", [["be1", NET.be1, "bxdpp1"], [
        "be2",
        NET.be2,
        "bxdpp2",
      ]]],
      ["node2", "198.18.202.1", [["be3", NET.be3, "bxdpp3"]]],
    ] as const;
    for (const [node, gw, members] of pods) {
      await ip(node, "link", "add", POD_BRIDGE, "type", "bridge");
      await ip(node, "addr", "add", `${gw}/24`, "dev", POD_BRIDGE);
      await ip(node, "link", "set", POD_BRIDGE, "up");
      for (const [pod, addr, hostSide] of members) {
        await veth(hostSide, ns[node], UPLINK, ns[pod]);
        await ip(node, "link", "set", hostSide, "master", POD_BRIDGE, "up");
        await ip(pod, "addr", "add", `${addr}/24`, "dev", UPLINK);
        await ip(pod, "link", "set", UPLINK, "up");
        await ip(pod, "route", "add", "default", "via", gw);
      }
      await sysctl(node, "net.ipv4.ip_forward=1");
      await sysctl(node, "net.ipv4.conf.all.rp_filter=0");
      await sysctl(node, `net.ipv4.conf.${UPLINK}.rp_filter=0`);
      // Replies of remote backends are translated and sent back out the
      // uplink they came in on: no ICMP redirects for that hairpin.
      await sysctl(node, "net.ipv4.conf.all.send_redirects=0");
      await sysctl(node, `net.ipv4.conf.${UPLINK}.send_redirects=0`);
    }
    await ip("node1", "route", "add", "198.18.202.0/24", "via", NET.node2);
    await ip("node2", "route", "add", "198.18.201.0/24", "via", NET.node1);
  }

  async #softwareChecksums(): Promise<void> {
    const ethtool = (role: keyof Topology["ns"], dev: string, what: "tx" | "rx") =>
      this.exec(role, ["ethtool", "-K", dev, what, "off"]);
    // Senders keep offloading: node1's hooks see CHECKSUM_PARTIAL, as from real pods.
    for (const dev of [UPLINK, "bxdpp1", "bxdpp2"]) await ethtool("node1", dev, "tx");
    for (const role of ["client", "node1", "node2", "be1", "be2", "be3"] as const) {
      await ethtool(role, UPLINK, "rx");
    }
  }

  /** Kills spawned processes and deletes every namespace (their links go with them). */
  async destroy(): Promise<void> {
    for (const c of this.#children) {
      try {
        c.kill("SIGKILL");
      } catch {
        // already exited
      }
      if (!c.stdin.locked) await c.stdin.close().catch(() => {});
      await c.stdout.cancel().catch(() => {});
      await c.status;
    }
    this.#children.length = 0;
    for (const name of Object.values(this.ns)) {
      await run(["ip", "netns", "del", name], { allowFail: true });
    }
  }
}
