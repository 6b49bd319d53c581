/**
 * Data-plane benchmarks, printed as JSON lines (see DESIGN.md):
 *
 * - ns per packet of blixt_ingress by `bpf_prog_test_run_opts` (repeat 1e6,
 *   median of `samples` interleaved runs): established TCP, new TCP flow,
 *   established UDP, a pass-through packet, and an empty TC program (the floor);
 * - VIP vs direct ratios in the test topology (bpf/testing/topology.ts) for
 *   throughput (iperf3), short connections/s and request/response latency
 *   (bench/tools/l4bench.c), with kube-proxy's nftables rules for the same
 *   service in the same topology as the peer; VIP and direct alternate in
 *   1-second slices, each ratio is the median of per-round ratios.
 *
 * The traffic figures are taken for a local backend (be1, on node1) and a remote one (be3, on
 * node2: blixt and the peer translate the source to node1; its direct path is client -> node2).
 * blixt is attached to node1's uplink and, as for pods (`pods: true`), to its pod bridge.
 *
 * `--node-conntrack` loads netfilter's conntrack in node1 for both peers, as every real node has
 * it (kube-proxy's or the CNI's tables): one forward-hook rule matching `ct state invalid`. Without
 * it, node1 runs conntrack only in the nftables peer's rounds.
 *
 * deno task bench dataplane [--seconds 5] [--rounds 5] [--repeat 1000000] [--samples 9]
 *   [--only packet|traffic] [--target local|remote|both] [--node-conntrack]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { buildBpf } from "../bpf/build.ts";
import { Dataplane, ensureBpffs, removePins } from "../agent/bpf/loader.ts";
import { BpfObject, testRun } from "../agent/bpf/object.ts";
import { buildPacket, TCP } from "../bpf/testing/packet.ts";
import { NET, POD_BRIDGE, run, Topology, UPLINK } from "../bpf/testing/topology.ts";
import { median } from "./stats.ts";

/** One benchmark result line. */
export interface BenchLine {
  /** Metric name. */
  name: string;
  /** Measured value. */
  value: number;
  /** Unit of value. */
  unit: string;
  /** Which direction is better. */
  better: "higher" | "lower";
  /** The peer measured in the same run. */
  peer?: string;
  /** The peer's value. */
  peer_value?: number;
  /** value / peer_value. */
  ratio?: number;
}

/** `x` rounded to `digits` decimals. */
export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function emit(line: BenchLine): void {
  console.log(JSON.stringify(line));
}

// ---------------------------------------------------------------- per packet

/**
 * Per-packet cost by test runs. A repeated run sees its own output, so the
 * services form cycles (VIP:80 -> BE:8080 and BE:8080 -> VIP:80) and every
 * run takes the measured path: established runs hit conntrack and are
 * translated. A SYN has to be new to take the new-flow path (Maglev pick, two
 * conntrack inserts, translation), and a repeated run would see its own flow
 * (a retransmission), so "syn" is timed as single runs of SYNs from fresh
 * source ports, `min(repeat, 5000)` of them a sample, each sample their mean.
 * A single run's time includes the test harness's clock reads (tens of ns)
 * that a repeated run spreads over its repetitions.
 */
/** ifindex listed as the pod bridge in the per-packet runs (no device: only its slot matters). */
const POD_BRIDGE_IFINDEX = 7;

async function packetBench(repeat: number, samples: number): Promise<void> {
  await buildBpf();
  await ensureBpffs();
  const pinDir = `/sys/fs/bpf/blixt-test-bench-${Deno.pid}`;
  let dp: Dataplane;
  try {
    dp = Dataplane.load({ pinDir, conntrackEntries: 262144 });
  } catch (e) {
    removePins(pinDir); // a refused load leaves the directory it made
    throw e;
  }
  try {
    const m = dp.maps;
    const CLIENT = "198.18.192.10", VIP = "198.18.200.1", BE = "198.18.201.11";
    m.setConfig({ nodeAddr: "198.18.192.1" });
    // A node lists its pod bridge; test runs come in on lo, as packets on an uplink (no pods).
    m.setPodInterface(POD_BRIDGE_IFINDEX);
    m.setBackend(1, { addr: BE, port: 8080 });
    m.setBackend(2, { addr: VIP, port: 80 });
    m.setBackend(3, { addr: BE, port: 5353 });
    m.setBackend(4, { addr: VIP, port: 53 });
    m.setService({ addr: VIP, port: 80, protocol: "TCP" }, {
      id: 1,
      backends: [{ id: 1, weight: 1 }],
    });
    m.setService({ addr: BE, port: 8080, protocol: "TCP" }, {
      id: 2,
      backends: [{ id: 2, weight: 1 }],
    });
    m.setService({ addr: VIP, port: 53, protocol: "UDP" }, {
      id: 3,
      backends: [{ id: 3, weight: 1 }],
    });
    m.setService({ addr: BE, port: 5353, protocol: "UDP" }, {
      id: 4,
      backends: [{ id: 4, weight: 1 }],
    });
    const payload = new Uint8Array(64);
    const cases = {
      tcp_established: buildPacket({
        src: CLIENT,
        dst: VIP,
        tcp: { sport: 40000, dport: 80, flags: TCP.ACK },
        payload,
      }),
      udp: buildPacket({
        src: CLIENT,
        dst: VIP,
        udp: { sport: 40002, dport: 53 },
        payload,
      }),
      passthrough: buildPacket({
        src: CLIENT,
        dst: "198.18.203.1",
        tcp: { sport: 40003, dport: 80, flags: TCP.ACK },
        payload,
      }),
    };
    // Create the flows of both halves of each cycle once.
    for (const pkt of [cases.tcp_established, cases.udp]) {
      const once = testRun(dp.ingressFd, pkt);
      testRun(dp.ingressFd, once.data as Uint8Array<ArrayBuffer>);
    }
    // The harness's own cost: an empty TC program on the same packet.
    const empty = BpfObject.open(await buildEmptyTc());
    const progs: [string, number, Uint8Array<ArrayBuffer>][] = [
      ...Object.entries(cases).map(([name, pkt]) =>
        [name, dp.ingressFd, pkt] as [
          string,
          number,
          Uint8Array<ArrayBuffer>,
        ]
      ),
      ["empty_tc_program", empty.programFd("empty_tc"), cases.tcp_established],
    ];
    const runs = new Map<string, number[]>(progs.map(([name]) => [name, []]));
    runs.set("tcp_syn", []);
    const synsPerSample = Math.min(repeat, 5000);
    // Fresh flows: source port and address advance together over 2^18 tuples.
    let tuple = 0;
    const syns = () => {
      let total = 0;
      for (let j = 0; j < synsPerSample; j++, tuple++) {
        const pkt = buildPacket({
          src: `198.18.${192 + ((tuple >> 15) & 7)}.${10 + ((tuple >> 8) & 127)}`,
          dst: VIP,
          tcp: { sport: 1024 + (tuple & 0xff), dport: 80, flags: TCP.SYN },
        });
        total += testRun(dp.ingressFd, pkt).durationNs;
      }
      return total / synsPerSample;
    };
    try {
      // Samples of all cases interleaved: a busy moment of the shared cores hits them alike.
      for (let i = 0; i < samples; i++) {
        for (const [name, fd, pkt] of progs) {
          runs.get(name)!.push(testRun(fd, pkt, { repeat }).durationNs);
        }
        runs.get("tcp_syn")!.push(syns());
      }
    } finally {
      empty.close();
    }
    const results: Record<string, number> = {};
    for (const [name, xs] of runs) results[name] = median(xs);
    const flows = m.serviceCounters(1).new_flows;
    if (flows < BigInt(synsPerSample * samples)) {
      throw new Error(`tcp_syn created only ${flows} flows of ${synsPerSample * samples} SYNs`);
    }
    for (
      const name of ["tcp_established", "tcp_syn", "udp", "passthrough", "empty_tc_program"]
    ) {
      emit({
        name: `ns_per_packet_${name}`,
        value: results[name]!,
        unit: "ns",
        better: "lower",
      });
    }
  } finally {
    dp.close();
    removePins(pinDir);
  }
}

// ---------------------------------------------------------------- traffic

const L4BENCH_SRC = new URL("./tools/l4bench.c", import.meta.url).pathname;
const EMPTY_TC_SRC = new URL("./tools/empty_tc.c", import.meta.url).pathname;
const CACHE = new URL("../.cache/bench/", import.meta.url).pathname;

/**
 * Client and servers share one CPU (the last one, where there are two): left
 * to the scheduler, whether they share a CPU changes ping-pong latency by 2-4x
 * from one run to the next, and pinned apart, every wake-up of this VM's other
 * vCPU costs tens of microseconds. On one CPU the figures measure what the
 * load balancer costs that CPU, client, forwarding and server included.
 */
const CPUS = navigator.hardwareConcurrency;
const BENCH_CPU = CPUS >= 2 ? ["taskset", "-c", String(CPUS - 1)] : [];
const CLIENT_CPU = BENCH_CPU;
const SERVER_CPU = BENCH_CPU;

async function buildEmptyTc(): Promise<string> {
  await Deno.mkdir(CACHE, { recursive: true });
  const obj = `${CACHE}empty_tc.o`;
  const arch = Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
  await run([
    "clang",
    "-O2",
    "-target",
    "bpf",
    `-I/usr/include/${arch}-linux-gnu`,
    "-c",
    EMPTY_TC_SRC,
    "-o",
    obj,
  ]);
  return obj;
}

/** Builds bench/tools/l4bench.c (cached under .cache/bench) and returns the binary's path. */
export async function buildL4bench(): Promise<string> {
  await Deno.mkdir(CACHE, { recursive: true });
  const bin = `${CACHE}l4bench`;
  await run(["clang", "-O2", "-Wall", "-pthread", L4BENCH_SRC, "-o", bin]);
  return bin;
}

/**
 * The peer: what kube-proxy's nftables mode generates for this service (a
 * LoadBalancer IP with one local endpoint), in the same shape: a verdict map
 * of service IPs jumped to from prerouting, a chain per service that picks an
 * endpoint with `numgen random`, a chain per endpoint that marks hairpin
 * traffic and DNATs, masquerading of marked packets in postrouting, and the
 * forward-hook check of new connections against services without endpoints.
 * External clients keep their address to a local endpoint, as with blixt.
 */
export function nftRules(vip: string, endpoint: string, remote = false): string {
  const svc = (port: number) => `service-bench-${port}`;
  const ep = (port: number) => `endpoint-bench-${port}`;
  const perPort = [9000, 5201].map((port) => `
  chain ${svc(port)} {
    numgen random mod 1 vmap { 0 : goto ${ep(port)} }
  }
  chain ${ep(port)} {
    ${remote ? "jump mark-for-masquerade" : `ip saddr ${endpoint} jump mark-for-masquerade`}
    meta l4proto tcp dnat to ${endpoint}:${port}
  }`).join("");
  return `table ip bxdp_bench {
  map service-ips {
    type ipv4_addr . inet_proto . inet_service : verdict
    elements = { ${vip} . tcp . 9000 : goto ${svc(9000)}, ${vip} . tcp . 5201 : goto ${svc(5201)} }
  }
  map no-endpoint-services {
    type ipv4_addr . inet_proto . inet_service : verdict
  }
  chain mark-for-masquerade {
    meta mark set meta mark | 0x4000
  }
  chain masquerading {
    meta mark & 0x4000 == 0 return
    meta mark set meta mark ^ 0x4000
    masquerade fully-random
  }
  chain services {
    ip daddr . meta l4proto . th dport vmap @service-ips
  }
  chain service-endpoints-check {
    ip daddr . meta l4proto . th dport vmap @no-endpoint-services
  }
  chain nat-prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump services
  }
  chain nat-postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump masquerading
  }
  chain filter-forward {
    type filter hook forward priority -110; policy accept;
    ct state new jump service-endpoints-check
  }${perPort}
}
`;
}

interface Sample {
  gbps: number;
  connPerS: number;
  p50: number;
  p99: number;
}

/** The three client runs against one host; `which` picks the figure(s) to take. */
async function runClient(
  topo: Topology,
  l4: string,
  host: string,
  seconds: number,
  which: "iperf" | "crr" | "rr",
): Promise<Partial<Sample>> {
  // A hung client must fail the benchmark, not stall it; it runs on the benchmark's CPU.
  const limit = ["timeout", String(seconds + 15), ...CLIENT_CPU];
  if (which === "iperf") {
    // iperf3's server takes one test at a time and may still be closing the last one.
    for (let attempt = 1;; attempt++) {
      const out = JSON.parse(
        await topo.exec("client", [
          ...limit,
          "iperf3",
          "-c",
          host,
          "-p",
          "5201",
          "-t",
          String(seconds),
          "-J",
        ], { allowFail: true }),
      );
      if (!out.error) return { gbps: out.end.sum_received.bits_per_second / 1e9 };
      if (attempt === 5) throw new Error(`iperf3 to ${host}: ${out.error}`);
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
  if (which === "crr") {
    const crr = JSON.parse(
      await topo.exec("client", [...limit, l4, "crr", host, "9000", String(seconds), "4"]),
    );
    if (crr.failed > crr.connections / 100) {
      throw new Error(`crr to ${host}: ${crr.failed} failed`);
    }
    return { connPerS: crr.conn_per_s };
  }
  const rr = JSON.parse(
    await topo.exec("client", [...limit, l4, "rr", host, "9000", String(seconds)]),
  );
  return { p50: rr.p50_us, p99: rr.p99_us };
}

/** One round of one system: mean figures per target, and the VIP/direct ratio of each metric. */
interface Round {
  vip: Sample;
  direct: Sample;
  /** Median over the round's slice pairs of VIP / direct (one pair for throughput). */
  ratio: Sample;
}

/**
 * VIP and direct figures measured pairwise so that the load of the shared
 * cores hits both alike: iperf3 runs `seconds` to each target back to back;
 * connections/s and ping-pong alternate between the targets in 1-second
 * slices, `seconds` pairs (`vipFirst` chooses who starts each round). A
 * burst of someone else's load spoils one pair, which the median drops.
 */
async function measurePair(
  topo: Topology,
  l4: string,
  seconds: number,
  vipFirst: boolean,
  direct: string,
): Promise<Round> {
  const order = vipFirst ? [NET.vip, direct] : [direct, NET.vip];
  const runs = new Map<string, Partial<Sample>[]>([[NET.vip, []], [direct, []]]);
  // iperf3 runs whole: its server trips over tests that follow each other by the second.
  for (const host of order) runs.get(host)!.push(await runClient(topo, l4, host, seconds, "iperf"));
  for (const which of ["crr", "rr"] as const) {
    for (let slice = 0; slice < seconds; slice++) {
      const sliceOrder = slice % 2 ? [...order].reverse() : order;
      for (const host of sliceOrder) {
        runs.get(host)!.push(await runClient(topo, l4, host, 1, which));
      }
    }
  }
  const values = (host: string, k: keyof Sample) =>
    runs.get(host)!.map((r) => r[k]).filter((x): x is number => x !== undefined);
  const mean = (host: string, k: keyof Sample) => {
    const xs = values(host, k);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  const pairRatio = (k: keyof Sample) => {
    const v = values(NET.vip, k), d = values(direct, k);
    return median(v.map((x, i) => x / d[i]!));
  };
  const keys = ["gbps", "connPerS", "p50", "p99"] as const;
  const sample = (f: (k: keyof Sample) => number) =>
    Object.fromEntries(keys.map((k) => [k, f(k)])) as unknown as Sample;
  return {
    vip: sample((k) => mean(NET.vip, k)),
    direct: sample((k) => mean(direct, k)),
    ratio: sample(pairRatio),
  };
}

async function trafficBench(
  seconds: number,
  rounds: number,
  target: "local" | "remote",
  options: { nodeConntrack?: boolean } = {},
): Promise<void> {
  const remote = target === "remote";
  const be = remote ? "be3" : "be1";
  const beAddr = NET[be];
  // Local figures keep their names; remote ones get a suffix.
  const suffix = remote ? "_remote" : "";
  await buildBpf();
  await ensureBpffs();
  const l4 = await buildL4bench();
  const topo = await Topology.create();
  const pinDir = `/sys/fs/bpf/blixt-test-bench-${topo.id}`;
  const node1 = topo.nsPath("node1");
  const dp = Dataplane.load({ pinDir, conntrackEntries: 262144 });
  try {
    dp.maps.setConfig({ nodeAddr: NET.node1 });
    dp.maps.setBackend(1, { addr: beAddr, port: 9000, remote });
    dp.maps.setBackend(2, { addr: beAddr, port: 5201, remote });
    dp.maps.setService({ addr: NET.vip, port: 9000, protocol: "TCP" }, {
      id: 1,
      backends: [{ id: 1, weight: 1 }],
    });
    dp.maps.setService({ addr: NET.vip, port: 5201, protocol: "TCP" }, {
      id: 2,
      backends: [{ id: 2, weight: 1 }],
    });
    const server = topo.spawn(be, [...SERVER_CPU, l4, "serve", "9000"]);
    const reader = server.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    const first = await reader.read();
    if (!first.value?.startsWith("ready")) {
      throw new Error("l4bench server did not start");
    }
    reader.releaseLock();
    topo.spawn(be, [...SERVER_CPU, "iperf3", "-s", "-p", "5201"]);
    await new Promise((r) => setTimeout(r, 500));
    // TIME_WAIT of server-side closes must not starve the client of ports.
    await topo.exec("client", ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
    if (options.nodeConntrack) {
      await topo.exec("node1", [
        "nft",
        "table ip bxdp_node { chain forward { type filter hook forward priority 0; " +
        "ct state invalid counter; }; }",
      ]);
    }

    const samples: Record<
      "blixt" | "nftables",
      Round[]
    > = {
      blixt: [],
      nftables: [],
    };
    for (let r = 0; r < rounds; r++) {
      // Alternate which system and which target go first: drift of the shared cores cancels.
      const modes = r % 2 ? ["nftables", "blixt"] as const : ["blixt", "nftables"] as const;
      for (const mode of modes) {
        if (mode === "blixt") {
          await topo.exec("node1", [
            "nft",
            "delete",
            "table",
            "ip",
            "bxdp_bench",
          ], { allowFail: true });
          dp.attach(UPLINK, { netns: node1 });
          // The pod side too (docs/dataplane.md): a local backend's replies skip the stack there.
          dp.attach(POD_BRIDGE, { netns: node1, pods: true });
        } else {
          dp.detach(UPLINK, { netns: node1 });
          dp.detach(POD_BRIDGE, { netns: node1 });
          const file = await Deno.makeTempFile({ suffix: ".nft" });
          await Deno.writeTextFile(file, nftRules(NET.vip, beAddr, remote));
          try {
            await topo.exec("node1", ["nft", "-f", file]);
          } finally {
            await Deno.remove(file);
          }
        }
        const round = await measurePair(topo, l4, seconds, r % 2 === 0, beAddr);
        samples[mode].push(round);
        console.error(`${target} round ${r + 1}/${rounds} ${mode}: ${JSON.stringify(round)}`);
      }
    }

    const ratio = (mode: "blixt" | "nftables", k: keyof Sample) =>
      median(samples[mode].map((s) => s.ratio[k]));
    const metrics: [string, keyof Sample, "higher" | "lower"][] = [
      ["throughput_ratio_vip_vs_direct", "gbps", "higher"],
      ["conn_rate_ratio_vip_vs_direct", "connPerS", "higher"],
      ["rr_latency_p50_ratio_vip_vs_direct", "p50", "lower"],
      ["rr_latency_p99_ratio_vip_vs_direct", "p99", "lower"],
    ];
    for (const [name, k, better] of metrics) {
      const value = ratio("blixt", k);
      const peer = ratio("nftables", k);
      emit({
        name: `${name}${suffix}`,
        value: round(value),
        unit: "ratio",
        better,
        peer: "nftables_kube_proxy",
        peer_value: round(peer),
        ratio: round(value / peer),
      });
    }
    const raw: [string, keyof Sample, string, "higher" | "lower"][] = [
      ["throughput_vip", "gbps", "Gbit/s", "higher"],
      ["conn_rate_vip", "connPerS", "conn/s", "higher"],
      ["rr_latency_p50_vip", "p50", "us", "lower"],
      ["rr_latency_p99_vip", "p99", "us", "lower"],
    ];
    for (const [name, k, unit, better] of raw) {
      const value = median(samples.blixt.map((s) => s.vip[k]));
      const peer = median(samples.nftables.map((s) => s.vip[k]));
      emit({
        name: `${name}${suffix}`,
        value: round(value),
        unit,
        better,
        peer: "nftables_kube_proxy",
        peer_value: round(peer),
        ratio: round(value / peer),
      });
      const direct = median(samples.blixt.map((s) => s.direct[k]));
      emit({
        name: `${name.replace("_vip", "_direct")}${suffix}`,
        value: round(direct),
        unit,
        better,
      });
    }
  } finally {
    try {
      dp.detach(UPLINK, { netns: node1 });
      dp.detach(POD_BRIDGE, { netns: node1 });
    } catch {
      // the namespace goes below anyway
    }
    dp.close();
    await topo.destroy();
    removePins(pinDir);
  }
}

/** Runs the data-plane benchmarks with command-line arguments. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      seconds: { type: "string", default: "5" },
      rounds: { type: "string", default: "5" },
      repeat: { type: "string", default: "1000000" },
      samples: { type: "string", default: "9" },
      only: { type: "string" },
      target: { type: "string", default: "both" },
      "node-conntrack": { type: "boolean", default: false },
    },
  });
  const targets = values.target === "both"
    ? ["local", "remote"] as const
    : [values.target === "remote" ? "remote" as const : "local" as const];
  if (values.only !== "traffic") {
    await packetBench(Number(values.repeat), Number(values.samples));
  }
  if (values.only !== "packet") {
    for (const target of targets) {
      await trafficBench(Number(values.seconds), Number(values.rounds), target, {
        nodeConntrack: values["node-conntrack"],
      });
    }
  }
}
