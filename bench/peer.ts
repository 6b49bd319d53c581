/**
 * blixt side by side with the real kube-proxy (nftables mode) on one local
 * cluster (2 nodes, the operator and agents as tests/e2e/system.ts starts
 * them, a kube-proxy per node namespace), the same backends and client for
 * both, printed as JSON lines (blixt's figure `value`, kube-proxy's
 * `peer_value`):
 *
 * - throughput (iperf3), connections/s and ping-pong p50/p99 (l4bench)
 *   through each one's address to a backend on the receiving node and on the
 *   other one, medians of `runs`;
 * - beside each of those a `_paired` line: the median of the per-run ratios
 *   (both peers measured seconds apart in every run, the first alternating),
 *   which load that comes and goes moves less than the ratio of medians;
 * - `throughput_per_cpu`: iperf3's Gbit/s over the share of a CPU its client
 *   and server used (their user and system time, the forwarding they ran in
 *   softirq included), the data planes' cost per byte, which the CPU time
 *   other work takes from the test does not move.
 *
 * - programming latency: from an EndpointSlice write to the first answer of
 *   the new backend through each address, p50/p99 of `samples`, with 1,
 *   1,000 and 10,000 exposed services;
 * - CPU seconds of the agents and of the kube-proxies during a churn of
 *   EndpointSlice changes at the largest size.
 *
 * Throughput is one TCP stream (iperf3) with the kernel's default congestion
 * control, cubic, whatever the machine's sysctl says (`--iperf-congestion
 * system` takes the machine's: BBR on the benchmark VM, whose pacing inside
 * TCP costs the endpoints more per byte and hides the data planes'
 * difference), client and servers pinned to one
 * CPU: what a user runs first, and a figure of one CPU's work, the data
 * plane's share included. On 2 shared cores its runs spread by +-15% or more
 * (docs/performance.md, "Throughput against kube-proxy"); compare the
 * `_paired` and `throughput_per_cpu` lines, with `--runs 10` to settle a
 * difference of a few percent. `--profile DIR` records the servers' CPU with
 * `perf record -g` during each iperf3 run (DIR/PEER-WHERE-RUN.data), as the
 * profiles of that section were made.
 *
 * deno task bench peer [--runs 5] [--seconds 3] [--samples 20] [--probe-interval-ms 1]
 *   [--traffic iperf,crr,rr] [--iperf-seconds S] [--iperf-streams 1]
 *   [--iperf-congestion cubic|system|bbr|...] [--iperf-cpus same|split] [--profile DIR]
 *   [--services 1,1000,10000] [--churn-rate 100] [--churn-seconds 30]
 *   [--churn-connections 4] [--churn-write update|apply|update,apply]
 *   [--only traffic|programming|churn]
 *
 * Programming runs log each peer's path (blixt's operator and agent, kube-proxy's sync and its
 * nftables commit from `nft monitor`); with `BLIXT_APISERVER_PROFILING=1` also the API server's side
 * of the RoutingTable write, and with `BLIXT_BENCH_DEBUG=1` every probe's start, end and answer.
 *
 * The run makes its own local cluster, `peer-bench` after `BLIXT_CLUSTER_PREFIX`, and takes down
 * only that: where a cluster of that name exists (another run's, or one left behind), it stops
 * with an error and leaves it (bench/cluster_claim.ts).
 *
 * See docs/performance.md ("Against kube-proxy") for the set-up and figures.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { buildBpf } from "../bpf/build.ts";
import { type ClusterPlan } from "../tests/cluster/address_plan.ts";
import { type Cluster, type Pod } from "../tests/cluster/cluster.ts";
import { run, sleep } from "../tests/cluster/host.ts";
import { programmedAddress, waitFor } from "../tests/e2e/kube_state.ts";
import { startSystem, stopSystem, type System } from "../tests/e2e/system.ts";
import { LineConnection, routeThrough } from "../tests/e2e/traffic.ts";
import { requestJson } from "../kube/rest.ts";
import { type BenchLine, buildL4bench, round } from "./dataplane.ts";
import {
  cpuSeconds,
  ensureKubeProxyBinary,
  type KubeProxyProcess,
  startKubeProxies,
  stopKubeProxies,
} from "./kube_proxy.ts";
import { median, percentile } from "./stats.ts";
import { withOwnCluster } from "./cluster_claim.ts";

/** The local cluster's name (after `BLIXT_CLUSTER_PREFIX`). */
const CLUSTER = "peer-bench";

/** Address `host` (1..254) of the cluster's Gateway pool, routed from the host to the nodes. */
export function loadBalancerAddress(plan: ClusterPlan, host: number): string {
  return plan.gatewayPool.replace(/\.0\/24$/, `.${host}`);
}

/** A port of a benchmark Service (TCP, same port on the backends). */
export interface BenchPort {
  name: string;
  port: number;
}

/**
 * A Service of type LoadBalancer without a selector and its EndpointSlice
 * with `pods` as ready endpoints (what the EndpointSlice controller would
 * write for them). No node ports: there is no cloud load balancer to use them.
 */
export function loadBalancerServiceYaml(
  name: string,
  ports: BenchPort[],
  pods: { ip: string; node: string; name: string }[],
  namespace = "default",
): string {
  const service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace },
    spec: {
      type: "LoadBalancer",
      allocateLoadBalancerNodePorts: false,
      externalTrafficPolicy: "Cluster",
      ports: ports.map((p) => ({
        name: p.name,
        port: p.port,
        targetPort: p.port,
        protocol: "TCP",
      })),
    },
  };
  return `${JSON.stringify(service)}\n---\n${
    JSON.stringify(endpointSlice(name, ports, pods, namespace))
  }\n`;
}

/** The EndpointSlice of a benchmark Service. */
export function endpointSlice(
  name: string,
  ports: BenchPort[],
  pods: { ip: string; node: string; name: string }[],
  namespace = "default",
): Record<string, unknown> {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name: `${name}-bench`, namespace, labels: { "kubernetes.io/service-name": name } },
    addressType: "IPv4",
    ports: ports.map((p) => ({ name: p.name, port: p.port, protocol: "TCP" })),
    endpoints: pods.map((pod) => ({
      addresses: [pod.ip],
      nodeName: pod.node,
      conditions: { ready: true, serving: true, terminating: false },
    })),
  };
}

/** Sets `status.loadBalancer.ingress` of Service `name`, as a cloud controller would. */
export async function setLoadBalancerIngress(
  cluster: Cluster,
  name: string,
  addresses: string[],
  namespace = "default",
): Promise<void> {
  const patch = { status: { loadBalancer: { ingress: addresses.map((ip) => ({ ip })) } } };
  await cluster.kubectl([
    "patch",
    "service",
    name,
    "-n",
    namespace,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify(patch),
  ]);
}

// ---------------------------------------------------------------- the benchmark

/** Which clusters' addresses the benchmark uses, by host number in the Gateway pool. */
const HOSTS = {
  blixtLocal: 254,
  blixtRemote: 253,
  kubeProxyLocal: 252,
  kubeProxyRemote: 251,
  blixtProbe: 250,
  kubeProxyProbe: 249,
  kubeProxyFill: 248,
} as const;

const PEER = "kube_proxy_nftables";
const PORTS: BenchPort[] = [{ name: "l4", port: 9000 }, { name: "iperf", port: 5201 }];
const ECHO: BenchPort[] = [{ name: "echo", port: 8080 }];
const CPUS = navigator.hardwareConcurrency;
/** Client and servers on one CPU, as in bench/dataplane.ts (see there why). */
const PIN = CPUS >= 2 ? ["taskset", "-c", String(CPUS - 1)] : [];
const FIELD_MANAGER = "blixt-bench";

type Peer = "blixt" | "kubeProxy";
type Where = "local" | "remote";

function gatewayYaml(
  name: string,
  address: string | undefined,
  listeners: BenchPort[],
  routes: { name: string; section?: string; service: string; port: number }[],
): string {
  const gateway = {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "Gateway",
    metadata: { name, namespace: "default" },
    spec: {
      gatewayClassName: "blixt",
      ...(address ? { addresses: [{ type: "IPAddress", value: address }] } : {}),
      listeners: listeners.map((l) => ({ name: l.name, port: l.port, protocol: "TCP" })),
    },
  };
  const docs: unknown[] = [gateway];
  for (const r of routes) {
    docs.push({
      apiVersion: "gateway.networking.k8s.io/v1",
      kind: "TCPRoute",
      metadata: { name: r.name, namespace: "default" },
      spec: {
        parentRefs: [{ name, ...(r.section ? { sectionName: r.section } : {}) }],
        rules: [{ backendRefs: [{ name: r.service, port: r.port }] }],
      },
    });
  }
  return docs.map((d) => JSON.stringify(d)).join("\n---\n") + "\n";
}

/** Gateway `service` at `address`: a listener and a TCPRoute to Service `service` per port. */
function throughputGatewayYaml(service: string, address: string): string {
  const routes = PORTS.map((p) => ({
    name: `${service}-${p.name}`,
    section: p.name,
    service,
    port: p.port,
  }));
  return gatewayYaml(service, address, PORTS, routes);
}

/** Everything the benchmark set up, for the measurements and the teardown. */
interface Bench {
  system: System;
  cluster: Cluster;
  proxies: KubeProxyProcess[];
  l4: string;
  addresses: Record<keyof typeof HOSTS, string>;
  pods: Record<"srvLocal" | "srvRemote" | "echoA" | "echoB", Pod>;
  log: (line: string) => void;
  /** The API server logs each request with its latency (programming phases). */
  apiserverRequestLog?: boolean;
}

async function setUp(log: (line: string) => void, options: { agentInfo: boolean }): Promise<Bench> {
  await buildBpf();
  const l4 = await buildL4bench();
  await ensureKubeProxyBinary(log);
  const system = await startSystem({
    name: CLUSTER,
    nodes: 2,
    log,
    // the agents' "maps synced" lines time blixt's path (programming only: no extra CPU in the churn)
    ...(options.agentInfo ? { agentArgs: ["--log-level", "info"] } : {}),
  });
  if (system.target.kind !== "local") throw new Error("bench peer runs on the local cluster only");
  const cluster = system.target.cluster;
  // kube-proxy's sync lines (verbosity 2) time its path as the agents' lines time blixt's
  const proxies = await startKubeProxies(cluster, log, { verbosity: options.agentInfo ? 2 : 1 });
  const addresses = Object.fromEntries(
    Object.entries(HOSTS).map(([k, host]) => [k, loadBalancerAddress(cluster.plan, host)]),
  ) as Record<keyof typeof HOSTS, string>;
  const server = (node: string, name: string) =>
    cluster.createPod({
      name,
      node,
      command: [
        "sh",
        "-c",
        `${PIN.join(" ")} iperf3 -s -p 5201 & exec ${PIN.join(" ")} ${l4} serve 9000`,
      ],
    });
  const pods = {
    srvLocal: await server("node-1", "srv-local"),
    srvRemote: await server("node-2", "srv-remote"),
    echoA: await cluster.createPod({ name: "echo-a", node: "node-1" }),
    echoB: await cluster.createPod({ name: "echo-b", node: "node-1" }),
  };
  const node1 = cluster.nodes[0]!;
  // Every benchmark address reaches node-1 only: "local" and "remote" are where the backend is.
  for (const address of Object.values(addresses)) await routeThrough(address, node1.ip);
  const yaml = [
    loadBalancerServiceYaml("tp-local", PORTS, [pods.srvLocal]),
    loadBalancerServiceYaml("tp-remote", PORTS, [pods.srvRemote]),
    loadBalancerServiceYaml("probe", ECHO, [pods.echoA]),
    throughputGatewayYaml("tp-local", addresses.blixtLocal),
    throughputGatewayYaml("tp-remote", addresses.blixtRemote),
    gatewayYaml("probe", addresses.blixtProbe, ECHO, [{
      name: "probe",
      service: "probe",
      port: 8080,
    }]),
  ].join("---\n");
  await cluster.kubectl(["apply", "-f", "-"], { stdin: yaml });
  await setLoadBalancerIngress(cluster, "tp-local", [addresses.kubeProxyLocal]);
  await setLoadBalancerIngress(cluster, "tp-remote", [addresses.kubeProxyRemote]);
  await setLoadBalancerIngress(cluster, "probe", [addresses.kubeProxyProbe]);
  const kubectl = (args: string[]) => cluster.kubectl(args);
  for (const gw of ["tp-local", "tp-remote", "probe"]) {
    await programmedAddress(kubectl, gw, "default", 60_000);
  }
  // Both answer on every address before anything is measured.
  for (
    const [address, port] of [
      [addresses.blixtLocal, 9000],
      [addresses.blixtRemote, 9000],
      [addresses.kubeProxyLocal, 9000],
      [addresses.kubeProxyRemote, 9000],
    ] as const
  ) {
    await waitFor(`${address}:${port} answers`, async () => {
      const out = await run([...PIN, l4, "crr", address, String(port), "1", "1"], {
        allowFailure: true,
      });
      const res = out.code === 0 ? JSON.parse(out.stdout) : undefined;
      return res && res.connections > 0 && res.failed === 0 ? true : undefined;
    }, { timeoutMs: 60_000 });
  }
  log("blixt and kube-proxy both serve the benchmark's addresses");
  return { system, cluster, proxies, l4, addresses, pods, log };
}

/** Takes down what {@linkcode setUp} made (all of the cluster, when it failed half-way). */
async function tearDown(bench: Bench | undefined): Promise<void> {
  if (bench) await stopKubeProxies(bench.proxies).catch(() => {});
  await stopSystem(bench?.system, CLUSTER);
}

// ---------------------------------------------------------------- traffic

type Metric = "gbps" | "gbpsPerCpu" | "connPerS" | "p50" | "p99";
type Which = "iperf" | "crr" | "rr";

/** How the traffic part measures (`--runs`, `--seconds`, `--traffic`, `--iperf-*`). */
export interface TrafficOptions {
  /** Runs; each measures both peers back to back for every figure. */
  runs: number;
  /** Seconds of each l4bench run (conn/s, ping-pong). */
  seconds: number;
  /** Which measurements run. */
  figures: Which[];
  /** Seconds of each iperf3 run. */
  iperfSeconds: number;
  /** iperf3's parallel streams (`-P`); 1 is the single-stream figure. */
  streams: number;
  /** The client's TCP congestion control (`-C`); the machine's default when unset. */
  congestion?: string;
  /** `same`: the iperf3 client on the servers' CPU (the default); `split`: on another one. */
  cpus: "same" | "split";
  /** Where `perf record` of the servers' CPU during each iperf3 run goes (`--profile DIR`). */
  profileDir?: string;
}

/**
 * `perf record -g` of the servers' CPU (the whole path when the client shares it) from 2 s into an
 * iperf3 run of `seconds` to 2 s before its end, into `path`.
 */
async function profileIperf(bench: Bench, path: string, seconds: number): Promise<void> {
  await sleep(2000);
  const res = await run([
    "perf",
    "record",
    "-C",
    String(CPUS - 1),
    "-g",
    "-F",
    "999",
    "-o",
    path,
    "--",
    "sleep",
    String(Math.max(1, seconds - 4)),
  ], { allowFailure: true });
  if (res.code !== 0) bench.log(`perf record ${path}: ${res.stderr.trim()}`);
}

async function measure(
  bench: Bench,
  address: string,
  which: Which,
  options: TrafficOptions,
  label: string,
): Promise<Partial<Record<Metric, number>>> {
  const seconds = which === "iperf" ? options.iperfSeconds : options.seconds;
  const limit = ["timeout", String(seconds + 20), ...PIN];
  if (which === "iperf") {
    const pin = options.cpus === "split" ? ["taskset", "-c", String(CPUS - 2)] : PIN;
    const args = ["-c", address, "-p", "5201", "-t", String(seconds), "-J"];
    if (options.streams > 1) args.push("-P", String(options.streams));
    if (options.congestion) args.push("-C", options.congestion);
    for (let attempt = 1;; attempt++) {
      const profiling = options.profileDir && attempt === 1
        ? profileIperf(bench, `${options.profileDir}/${label}.data`, seconds)
        : undefined;
      const res = await run(["timeout", String(seconds + 20), ...pin, "iperf3", ...args], {
        allowFailure: true,
      });
      await profiling;
      const out = JSON.parse(res.stdout || "{}");
      if (out.end?.sum_received?.bytes > 0) {
        const cpu = out.end.cpu_utilization_percent ?? {};
        bench.log(
          `iperf3 ${address}: ${round(out.end.sum_received.bits_per_second / 1e9, 2)} Gbit/s, ` +
            `${out.end.sum_sent?.retransmits ?? "?"} retransmits, ` +
            `CPU client ${round(cpu.host_total, 0)}% server ${round(cpu.remote_total, 0)}%`,
        );
        const gbps = out.end.sum_received.bits_per_second / 1e9;
        // The share of a CPU the client and the server used, the forwarding they ran included.
        const used = ((cpu.host_total ?? NaN) + (cpu.remote_total ?? NaN)) / 100;
        return { gbps, gbpsPerCpu: gbps / used };
      }
      if (attempt === 5) throw new Error(`iperf3 to ${address}: ${out.error ?? res.stderr}`);
      await sleep(500 * attempt);
    }
  }
  if (which === "crr") {
    const out = JSON.parse(
      (await run([...limit, bench.l4, "crr", address, "9000", String(seconds), "4"])).stdout,
    );
    if (out.failed > out.connections / 100) {
      throw new Error(`crr to ${address}: ${out.failed} of ${out.connections} failed`);
    }
    return { connPerS: out.conn_per_s };
  }
  const out = JSON.parse(
    (await run([...limit, bench.l4, "rr", address, "9000", String(seconds)])).stdout,
  );
  return { p50: out.p50_us, p99: out.p99_us };
}

/**
 * Throughput, connections/s and ping-pong latency through each peer's
 * address, to a backend on the receiving node and on the other one. Every
 * run measures both peers back to back for each figure, the first of the
 * pair alternating from run to run. Each figure's line is the median of
 * blixt's runs over the median of kube-proxy's; a `_paired` line beside it
 * is the median of the per-run ratios (the two peers measured seconds apart,
 * so load that comes and goes moves both alike).
 */
async function trafficBench(bench: Bench, options: TrafficOptions): Promise<void> {
  const { runs } = options;
  const address = (peer: Peer, where: Where) =>
    bench.addresses[`${peer}${where === "local" ? "Local" : "Remote"}`];
  const samples = new Map<string, number[]>();
  const key = (peer: Peer, where: Where, m: Metric) => `${peer}/${where}/${m}`;
  if (options.profileDir) await Deno.mkdir(options.profileDir, { recursive: true });
  const congestion = options.congestion ??
    await Deno.readTextFile("/proc/sys/net/ipv4/tcp_congestion_control").then((t) => t.trim())
      .catch(() => "the machine's");
  bench.log(
    `iperf3: ${options.streams} stream(s) of ${options.iperfSeconds} s, ${congestion}, ` +
      `client on ${options.cpus === "same" ? "the servers' CPU" : "another CPU"}`,
  );
  for (let r = 0; r < runs; r++) {
    const order: Peer[] = r % 2 ? ["kubeProxy", "blixt"] : ["blixt", "kubeProxy"];
    for (const where of ["local", "remote"] as const) {
      for (const which of options.figures) {
        for (const peer of order) {
          const label = `${peer}-${where}-${r + 1}`;
          const got = await measure(bench, address(peer, where), which, options, label);
          for (const [m, v] of Object.entries(got)) {
            const k = key(peer, where, m as Metric);
            samples.set(k, [...(samples.get(k) ?? []), v]);
          }
        }
      }
    }
    const last = (k: string) => round(samples.get(k)?.at(-1) ?? NaN, 2);
    bench.log(
      `traffic run ${r + 1}/${runs}: ${
        [...samples.keys()].map((k) => `${k}=${last(k)}`).join(" ")
      }`,
    );
  }
  // Drops the agent counted while the traffic ran (e.g. no free SNAT port for a remote flow).
  const node1 = bench.cluster.nodes[0]!;
  const events = await fetch(`http://${node1.ip}:9464/metrics`).then((r) => r.text())
    .then((t) =>
      t.split("\n").filter((l) => l.startsWith("blixt_dataplane_events_total") && !l.endsWith(" 0"))
    ).catch((e) => [`unreadable: ${(e as Error).message}`]);
  bench.log(`node-1 agent's data plane events after the traffic: ${events.join(", ") || "none"}`);
  const metrics: [Metric, string, string, "higher" | "lower"][] = [
    ["gbps", "throughput", "Gbit/s", "higher"],
    ["gbpsPerCpu", "throughput_per_cpu", "Gbit/s per CPU", "higher"],
    ["connPerS", "conn_rate", "conn/s", "higher"],
    ["p50", "rr_latency_p50", "us", "lower"],
    ["p99", "rr_latency_p99", "us", "lower"],
  ];
  for (const where of ["local", "remote"] as const) {
    for (const [m, name, unit, better] of metrics) {
      const ours = samples.get(key("blixt", where, m)) ?? [];
      const theirs = samples.get(key("kubeProxy", where, m)) ?? [];
      if (!ours.length || !theirs.length) continue;
      emit(`${name}_${where}`, median(ours), unit, better, median(theirs));
      const paired = ours.map((v, i) => v / theirs[i]!).sort((a, b) => a - b);
      const ahead = paired.filter((x) => better === "higher" ? x > 1 : x < 1).length;
      const ratios = paired.map((x) => round(x, 2)).join(" ");
      bench.log(`${name}_${where} per-run ratios: ${ratios} (${ahead} of ${paired.length} ahead)`);
      const line: BenchLine = {
        name: `${name}_${where}_paired`,
        value: round(median(paired)),
        unit: "ratio",
        better,
      };
      console.log(JSON.stringify(line));
    }
  }
}

function emit(
  name: string,
  value: number,
  unit: string,
  better: "higher" | "lower",
  peer: number,
): void {
  const line: BenchLine = {
    name,
    value: round(value),
    unit,
    better,
    peer: PEER,
    peer_value: round(peer),
    ratio: round(value / peer),
  };
  console.log(JSON.stringify(line));
}

// ---------------------------------------------------------------- programming latency

const DEBUG_TRIES = Deno.env.get("BLIXT_BENCH_DEBUG") === "1";

/** When a prober's first answer from the new pod came, and how many connections it took. */
interface Probed {
  /** performance.now() of the answer */
  at: number;
  /** connections opened, the answering one included */
  tries: number;
}

/**
 * Opens a new connection through `address` every `intervalMs` (after the last one closed) until
 * pod `name` answers.
 */
async function firstAnswerFrom(
  address: string,
  name: string,
  options: { timeoutMs: number; intervalMs: number },
): Promise<Probed> {
  const deadline = performance.now() + options.timeoutMs;
  let tries = 0;
  const log: unknown[] = [];
  while (performance.now() < deadline) {
    let conn: LineConnection | undefined;
    tries++;
    const t0 = performance.timeOrigin + performance.now();
    let got = "";
    try {
      conn = await LineConnection.open(address, 8080, 300);
      got = "connected";
      const answer = await conn.ask("probe", 300);
      got = String(answer.name);
      if (answer.name === name) {
        if (DEBUG_TRIES) {
          log.push([t0, performance.timeOrigin + performance.now(), got]);
          console.error(JSON.stringify({ tries: address, log }));
        }
        return { at: performance.now(), tries };
      }
    } catch (err) {
      got += " error " + (err as Error).message;
    } finally {
      conn?.close();
    }
    if (DEBUG_TRIES) log.push([t0, performance.timeOrigin + performance.now(), got]);
    await sleep(options.intervalMs);
  }
  throw new Error(`${address}: no answer from ${name} within ${options.timeoutMs} ms`);
}

/**
 * Exposed services beyond the benchmark's own: `n / 100` Services of 100
 * ports (one LoadBalancer address for all, as kube-proxy needs no more) and
 * `n / 50` Gateways of 50 TCP listeners, each with one TCPRoute to one of
 * those Services. Each side then programs `n` more (address, port) services.
 */
function fillYaml(bench: Bench, n: number): string {
  const services = Math.ceil(n / 100), gateways = Math.ceil(n / 50);
  const docs: string[] = [];
  const backends = [bench.pods.echoA, bench.pods.echoB];
  for (let i = 0; i < services; i++) {
    const ports = Array.from({ length: 100 }, (_, j) => ({
      name: `p${j}`,
      port: 10000 + 100 * i + j,
    }));
    docs.push(loadBalancerServiceYaml(`fill-${i}`, ports, backends));
  }
  for (let g = 0; g < gateways; g++) {
    const listeners = Array.from({ length: 50 }, (_, j) => ({ name: `l${j}`, port: 10000 + j }));
    const i = g % services;
    docs.push(gatewayYaml(`fill-${g}`, undefined, listeners, [{
      name: `fill-${g}`,
      service: `fill-${i}`,
      port: 10000 + 100 * i,
    }]));
  }
  return docs.join("---\n");
}

async function fillTo(bench: Bench, n: number): Promise<void> {
  if (n < 100) return;
  const started = performance.now();
  const { cluster } = bench;
  await cluster.kubectl(["apply", "--server-side", "--force-conflicts", "-f", "-"], {
    stdin: fillYaml(bench, n),
  });
  const services = Math.ceil(n / 100), gateways = Math.ceil(n / 50);
  for (let i = 0; i < services; i += 10) {
    await Promise.all(
      Array.from(
        { length: Math.min(10, services - i) },
        (_, k) => setLoadBalancerIngress(cluster, `fill-${i + k}`, [bench.addresses.kubeProxyFill]),
      ),
    );
  }
  const node1 = cluster.nodes[0]!;
  await waitFor(`kube-proxy programs ${n} more services`, async () => {
    const out = await run(["nft", "-j", "list", "map", "ip", "kube-proxy", "service-ips"], {
      netns: node1.netns,
    });
    const elems = JSON.stringify(JSON.parse(out.stdout)).split('"concat"').length - 1;
    // A ClusterIP and a LoadBalancer element per port.
    return elems >= 2 * n ? true : undefined;
  }, { timeoutMs: 600_000 });
  const kpMs = performance.now() - started;
  await waitFor(`${gateways} filler Gateways Programmed`, async () => {
    const items = JSON.parse(await cluster.kubectl(["get", "gateways", "-o", "json"])).items as {
      metadata: { name: string };
      status?: { conditions?: { type: string; status: string }[] };
    }[];
    const done = items.filter((g) =>
      g.metadata.name.startsWith("fill-") &&
      g.status?.conditions?.some((c) => c.type === "Programmed" && c.status === "True")
    ).length;
    return done >= gateways ? true : undefined;
  }, { timeoutMs: 900_000 });
  bench.log(
    `${n} more services: kube-proxy programmed them within ${Math.round(kpMs)} ms, ` +
      `blixt within ${Math.round(performance.now() - started)} ms (from the start of the apply)`,
  );
}

/**
 * Where one change of the probe's EndpointSlice spent its time in blixt, in
 * ms from the start of the write (the operator's and node-1's agent's log
 * lines; one clock, one machine).
 */
interface Phases {
  /** the benchmark's EndpointSlice write answered */
  sliceWritten: number;
  /** the operator's watch delivered the event (its work queue got the Gateway) */
  operatorEvent: number;
  /** a worker took the Gateway from the queue */
  reconcileStart: number;
  /** reconcile done: the RoutingTable write starts */
  tableWriteStart: number;
  /** the RoutingTable write answered */
  tableWritten: number;
  /**
   * The API server's side of that write (its request log, with
   * `BLIXT_APISERVER_PROFILING=1` only): the request received (after TLS and
   * HTTP parsing) and its answer done; what lies outside is the client's and
   * the wire's.
   */
  tableWriteReceived?: number;
  tableWriteServed?: number;
  /** node-1's agent's cache saw the new table */
  agentEvent: number;
  /** its sync started (a macrotask after the event) */
  agentSyncStart: number;
  /** its desired state computed */
  agentComputed: number;
  /** its last services entry written: packets see the change from here */
  entriesWritten: number;
  /** node-1's agent wrote the maps */
  mapsWritten: number;
  /** the new backend answered through the Gateway's address */
  firstAnswer: number;
}

async function blixtPhases(
  bench: Bench,
  startedAt: number,
  sliceWritten: number,
  firstAnswer: number,
): Promise<Phases | undefined> {
  if (bench.system.target.kind !== "local") return undefined;
  const { operator, agents } = bench.system.target;
  await sleep(300); // let both logs flush
  type Line = Record<string, unknown> & { time: string; msg: string };
  const lines = async (path: string): Promise<Line[]> => {
    const out: Line[] = [];
    for (const text of (await Deno.readTextFile(path)).split("\n")) {
      if (!text.startsWith("{")) continue;
      try {
        const l = JSON.parse(text) as Line;
        if (Date.parse(l.time) >= startedAt) out.push(l);
      } catch {
        // a line cut mid-write
      }
    }
    return out;
  };
  const reconciled = (await lines(operator.log)).find((l) =>
    l.msg === "reconciled" && l.gateway === "default/probe" && l.table === "applied"
  );
  const synced = (await lines(agents[0]!.log)).find((l) => l.msg === "maps synced");
  if (!reconciled || !synced) {
    bench.log(`no ${reconciled ? "agent" : "operator"} log line for the change at ${startedAt}`);
    return undefined;
  }
  const at = (l: { time: string }) => Date.parse(l.time) - startedAt;
  const num = (v: unknown) => Number(v ?? 0);
  const steps = synced.stepsMs as Record<string, number> | undefined;
  // the operator logs once the whole write is done: its table write started right after reconcile
  const tableStart = at(reconciled) - num(reconciled.writeMs);
  const reconcileStart = tableStart - num(reconciled.reconcileMs);
  const served = await apiserverWrite(bench, startedAt, ROUTING_TABLE_WRITE);
  return {
    sliceWritten,
    operatorEvent: reconcileStart - num(reconciled.queuedMs),
    reconcileStart,
    tableWriteStart: tableStart,
    tableWritten: tableStart + num(reconciled.tableMs),
    ...(served
      ? {
        tableWriteReceived: served.received - startedAt,
        tableWriteServed: served.done - startedAt,
      }
      : {}),
    agentEvent: at(synced) - num(synced.sinceChangeMs),
    agentSyncStart: at(synced) - num(synced.sinceChangeMs) + num(steps?.start),
    agentComputed: at(synced) - num(synced.sinceChangeMs) + num(steps?.computed),
    entriesWritten: at(synced) - num(synced.sinceChangeMs) + num(steps?.entries),
    mapsWritten: at(synced),
    firstAnswer,
  };
}

/** The operator's write of the probe's RoutingTable, as the API server's request log names it. */
const ROUTING_TABLE_WRITE =
  /verb="(PATCH|APPLY)" URI="\/apis\/blixt\.dev\/v1alpha1\/namespaces\/default\/routingtables\/probe\?/;

/**
 * Sets the API server's log verbosity at run time through `/debug/flags/v`,
 * which it serves only with profiling on (`BLIXT_APISERVER_PROFILING=1` when
 * the cluster starts): 3 logs every request with its latency, 1 is the
 * cluster's own. Returns whether it did.
 */
async function apiserverVerbosity(bench: Bench, level: 1 | 3): Promise<boolean> {
  if (Deno.env.get("BLIXT_APISERVER_PROFILING") !== "1") return false;
  try {
    await requestJson(bench.cluster.kubeConfig(), "/debug/flags/v", { method: "PUT", body: level });
    return true;
  } catch (err) {
    bench.log(`the API server's verbosity stays as it was: ${(err as Error).message}`);
    return false;
  }
}

/** A Go duration as klog writes it (`812.3µs`, `9.09ms`, `1.2s`) in ms, or NaN. */
function goDurationMs(text: string): number {
  const m = /^([\d.]+)(ns|µs|us|ms|s)$/.exec(text);
  if (!m) return NaN;
  const scale: Record<string, number> = { ns: 1e-6, "µs": 1e-3, us: 1e-3, ms: 1, s: 1000 };
  return Number(m[1]) * scale[m[2]!]!;
}

/**
 * When the API server received and finished the first request matching `what`
 * after `startedAt` (epoch ms), from its request log (`httplog` lines of
 * verbosity 3); undefined when it does not log requests.
 */
async function apiserverWrite(
  bench: Bench,
  startedAt: number,
  what: RegExp,
): Promise<{ received: number; done: number } | undefined> {
  if (!bench.apiserverRequestLog) return undefined;
  const year = new Date(startedAt).getUTCFullYear();
  const text = await Deno.readTextFile(`${bench.cluster.dir}/apiserver.log`);
  for (const line of text.split("\n")) {
    if (!line.includes('"HTTP"') || !what.test(line)) continue;
    const done = klogTime(line, year);
    const latency = goDurationMs(/ latency="([^"]+)"/.exec(line)?.[1] ?? "");
    if (done >= startedAt && Number.isFinite(latency)) return { received: done - latency, done };
  }
  return undefined;
}

/** kube-proxy's side of one change, in ms from the start of the write (node-1's log, verbosity 2). */
interface KubeProxyPhases {
  /** its sync began ("Syncing nftables rules") */
  kubeProxySyncStart: number;
  /**
   * its nftables transaction committed: node-1's `nft monitor` printed the
   * probe Service's new rules (packets see the change from here), as blixt's
   * `entriesWritten`; read by this process, so late by as much as its loop is
   */
  kubeProxyRulesIn?: number;
  /** its sync ended, the nftables transaction in ("SyncProxyRules complete") */
  kubeProxySynced: number;
  /** the new backend answered through its address */
  kubeProxyFirstAnswer: number;
}

/** The time of a klog line (`I1126 22:58:29.475123 ...`, UTC on these machines), or NaN. */
function klogTime(line: string, year: number): number {
  const m = /^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6})/.exec(line);
  if (!m) return NaN;
  const [, mo, d, h, mi, sec, us] = m.map(Number) as number[];
  return Date.UTC(year, mo! - 1, d, h, mi, sec) + us! / 1000;
}

/** When node-1's nftables changed the probe Service's rules (epoch ms), while it runs. */
interface ProbeRuleCommits {
  times: number[];
  stop(): Promise<void>;
}

/** Follows `nft monitor` in node-1's netns for rule changes of the probe Service. */
function followProbeRules(bench: Bench): ProbeRuleCommits {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", bench.cluster.nodes[0]!.netns, "nft", "monitor", "ruleset"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const times: number[] = [];
  const reading = (async () => {
    let pending = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      const at = performance.timeOrigin + performance.now();
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      if (lines.some((l) => l.includes("default/probe/"))) times.push(at);
    }
  })().catch(() => {});
  return {
    times,
    async stop() {
      try {
        child.kill();
      } catch {
        // already gone
      }
      await reading;
      await child.status;
    },
  };
}

async function kubeProxyPhases(
  bench: Bench,
  startedAt: number,
  firstAnswer: number,
  rules: ProbeRuleCommits,
): Promise<KubeProxyPhases | undefined> {
  const proxy = bench.proxies.find((p) => p.node === bench.cluster.nodes[0]!.name);
  if (!proxy) return undefined;
  const year = new Date(startedAt).getUTCFullYear();
  let start = NaN, end = NaN;
  for (const line of (await Deno.readTextFile(proxy.log)).split("\n")) {
    const t = klogTime(line, year);
    if (!(t >= startedAt)) continue;
    if (Number.isNaN(start) && line.includes('"Syncing nftables rules"')) start = t;
    else if (!Number.isNaN(start) && line.includes('"SyncProxyRules complete"')) {
      end = t;
      break;
    }
  }
  if (Number.isNaN(end)) return undefined;
  const rulesIn = rules.times.find((t) => t >= startedAt);
  return {
    kubeProxySyncStart: start - startedAt,
    ...(rulesIn !== undefined ? { kubeProxyRulesIn: rulesIn - startedAt } : {}),
    kubeProxySynced: end - startedAt,
    kubeProxyFirstAnswer: firstAnswer,
  };
}

/**
 * Programming latency: the probe Service's only endpoint moves between two
 * pods; from the start of the EndpointSlice write, each side's prober opens
 * new connections through its address (one every `probeIntervalMs` after the last closed) until the new pod
 * answers. Both sides see the same change of the same slice.
 */
async function programmingBench(
  bench: Bench,
  n: number,
  options: { samples: number; probeIntervalMs: number },
): Promise<void> {
  await fillTo(bench, n);
  // the request log costs the API server CPU: on for the samples only, not for the churn after
  bench.apiserverRequestLog = await apiserverVerbosity(bench, 3);
  // The write goes over a kept-alive connection: through the client library each write made
  // a TLS connection of its own and held this process's event loop, the probers' included.
  const writer = endpointSliceWriter(bench.cluster, 1);
  const rules = followProbeRules(bench);
  try {
    await programmingSamples(bench, n, options, writer, rules);
  } finally {
    writer.close();
    await rules.stop();
    if (bench.apiserverRequestLog) await apiserverVerbosity(bench, 1);
    bench.apiserverRequestLog = false;
  }
}

async function programmingSamples(
  bench: Bench,
  n: number,
  { samples, probeIntervalMs }: { samples: number; probeIntervalMs: number },
  writer: ReturnType<typeof endpointSliceWriter>,
  rules: ProbeRuleCommits,
): Promise<void> {
  const took: Record<Peer, number[]> = { blixt: [], kubeProxy: [] };
  const period: Record<Peer, number[]> = { blixt: [], kubeProxy: [] };
  const phases: Phases[] = [];
  const kubeProxyPath: KubeProxyPhases[] = [];
  for (let s = 0; s < samples + 1; s++) {
    const target = s % 2 ? bench.pods.echoA : bench.pods.echoB;
    const startedAt = Date.now();
    const started = performance.now();
    let written = 0;
    const slice = endpointSlice("probe", ECHO, [target]);
    const meta = slice.metadata as { name: string; namespace: string };
    const path =
      `/apis/discovery.k8s.io/v1/namespaces/${meta.namespace}/endpointslices/${meta.name}`;
    const write = writer.write(path, "apply", JSON.stringify(slice))
      .then(() => written = performance.now());
    const probe = { timeoutMs: 60_000, intervalMs: probeIntervalMs };
    const [bp, kp] = await Promise.all([
      firstAnswerFrom(bench.addresses.blixtProbe, target.name, probe),
      firstAnswerFrom(bench.addresses.kubeProxyProbe, target.name, probe),
    ]);
    const b = bp.at, k = kp.at;
    await write;
    // The first change only hands the slice to this field manager.
    if (s > 0) {
      took.blixt.push(b - started);
      took.kubeProxy.push(k - started);
      // ms per try: whether the probers kept to their interval (both share this event loop)
      period.blixt.push((b - started) / bp.tries);
      period.kubeProxy.push((k - started) / kp.tries);
      const p = await blixtPhases(bench, startedAt, written - started, b - started);
      if (p) {
        phases.push(p);
        bench.log(`blixt's path: ${Object.entries(p).map(([k, v]) => `${k} ${Math.round(v)}`)}`);
      }
      const kpp = await kubeProxyPhases(bench, startedAt, k - started, rules);
      if (kpp) {
        kubeProxyPath.push(kpp);
        bench.log(
          `kube-proxy's path: ${Object.entries(kpp).map(([k, v]) => `${k} ${Math.round(v)}`)}`,
        );
      }
    }
    // kube-proxy syncs at most once a second (--min-sync-period): changes are spaced beyond it.
    await sleep(1500);
  }
  bench.log(
    `programming at +${n}: blixt ${took.blixt.map(Math.round)} kube-proxy ${
      took.kubeProxy.map(Math.round)
    }; ms per probe (interval ${probeIntervalMs} ms), median: blixt ${
      round(median(period.blixt))
    } kube-proxy ${round(median(period.kubeProxy))}`,
  );
  const label = n === 0 ? "1" : String(n);
  logPath(bench, `blixt's path at +${n}`, label, phases);
  logPath(bench, `kube-proxy's path at +${n}`, label, kubeProxyPath);
  emit(
    `programming_latency_p50_ms_${label}_services`,
    median(took.blixt),
    "ms",
    "lower",
    median(took.kubeProxy),
  );
  emit(
    `programming_latency_p99_ms_${label}_services`,
    percentile(took.blixt, 99),
    "ms",
    "lower",
    percentile(took.kubeProxy, 99),
  );
}

/** Logs the median of each step of `paths` and prints it as a `programming_path_*` line. */
function logPath<P extends object>(bench: Bench, title: string, label: string, paths: P[]): void {
  if (paths.length === 0) return;
  const keys = Object.keys(paths[0]!) as (keyof P & string)[];
  const medianOf = (k: keyof P) => Math.round(median(paths.map((p) => p[k] as number)));
  bench.log(
    `${title}, median ms of ${paths.length} (write start = 0): ` +
      keys.map((k) => `${k} ${medianOf(k)}`).join(", "),
  );
  for (const k of keys) {
    console.log(JSON.stringify({
      name: `programming_path_${k}_${label}_services`,
      value: medianOf(k),
      unit: "ms",
      better: "lower",
    }));
  }
}

// ---------------------------------------------------------------- churn

/** Services the churn changes: one port each, exposed by both peers (100 more services). */
const CHURN_SERVICES = 100;

/**
 * The churn's own Services (one port each: a write of one is cheap for the
 * API server) and 2 Gateways of 50 listeners with one TCPRoute per listener.
 */
async function addChurnServices(bench: Bench): Promise<void> {
  const pods = [bench.pods.echoA, bench.pods.echoB];
  const docs: string[] = [];
  const port = (i: number) => ({ name: "c", port: 20000 + i });
  for (let i = 0; i < CHURN_SERVICES; i++) {
    docs.push(loadBalancerServiceYaml(`churn-${i}`, [port(i)], pods));
  }
  for (let g = 0; g < CHURN_SERVICES / 50; g++) {
    const listeners = Array.from({ length: 50 }, (_, j) => ({ name: `l${j}`, port: 20000 + j }));
    docs.push(gatewayYaml(
      `churn-${g}`,
      undefined,
      listeners,
      listeners.map((l, j) => ({
        name: `churn-${g}-${j}`,
        section: l.name,
        service: `churn-${50 * g + j}`,
        port: 20000 + 50 * g + j,
      })),
    ));
  }
  await bench.cluster.kubectl(["apply", "--server-side", "--force-conflicts", "-f", "-"], {
    stdin: docs.join("---\n"),
  });
  for (let i = 0; i < CHURN_SERVICES; i += 10) {
    await Promise.all(
      Array.from(
        { length: 10 },
        (_, k) =>
          setLoadBalancerIngress(bench.cluster, `churn-${i + k}`, [bench.addresses.kubeProxyFill]),
      ),
    );
  }
  const kubectl = (args: string[]) => bench.cluster.kubectl(args);
  for (let g = 0; g < CHURN_SERVICES / 50; g++) {
    await programmedAddress(kubectl, `churn-${g}`, "default", 300_000);
  }
  const node1 = bench.cluster.nodes[0]!;
  await waitFor("kube-proxy programs the churn's services", async () => {
    const out = await run(["nft", "list", "map", "ip", "kube-proxy", "service-ips"], {
      netns: node1.netns,
    });
    return out.stdout.includes("churn-99/tcp/c") ? true : undefined;
  }, { timeoutMs: 300_000 });
}

/**
 * How the churn writes a slice: `update` is a PUT of the whole object, as kube-controller-manager's
 * EndpointSlice controller writes them; `apply` is a server-side apply (more work for the API
 * server: it merges the fields of every manager).
 */
type ChurnWrite = "update" | "apply";

/**
 * Writes of EndpointSlices spread over `connections` HTTPS clients (HTTP/2 each) with the host's
 * admin certificate: the client library's agent took ~16 writes a second here, too few for the
 * churn. A write resolves to its latency (ms).
 */
function endpointSliceWriter(
  cluster: Cluster,
  connections: number,
): { write(path: string, write: ChurnWrite, body: string): Promise<number>; close(): void } {
  const kc = cluster.kubeConfig();
  const user = kc.getCurrentUser(), server = kc.getCurrentCluster();
  if (!user?.certData || !user.keyData || !server?.caData) {
    throw new Error(`${cluster.kubeconfig}: expected inline client certificate, key and CA`);
  }
  const tls = {
    caCerts: [atob(server.caData)],
    cert: atob(user.certData),
    key: atob(user.keyData),
  };
  const clients = Array.from({ length: connections }, () => Deno.createHttpClient(tls));
  let next = 0;
  const write = async (path: string, write: ChurnWrite, body: string) => {
    const client = clients[next++ % clients.length]!;
    const started = performance.now();
    const res = await fetch(
      `${server.server}${path}?fieldManager=${FIELD_MANAGER}${
        write === "apply" ? "&force=true" : ""
      }`,
      {
        method: write === "apply" ? "PATCH" : "PUT",
        headers: {
          "content-type": write === "apply" ? "application/apply-patch+yaml" : "application/json",
        },
        body,
        client,
      },
    );
    const text = await res.text();
    if (!res.ok) throw new Error(`${write} ${path}: ${res.status} ${text.slice(0, 200)}`);
    return performance.now() - started;
  };
  return { write, close: () => clients.forEach((c) => c.close()) };
}

/** Busy and total jiffies of the machine (all CPUs), from /proc/stat. */
async function machineJiffies(): Promise<{ busy: number; total: number }> {
  const cpu = (await Deno.readTextFile("/proc/stat")).split("\n")[0]!.split(/\s+/).slice(1)
    .map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  // idle and iowait are fields 4 and 5.
  return { busy: total - (cpu[3] ?? 0) - (cpu[4] ?? 0), total };
}

/** Sum of the samples of Prometheus metric `name` (every label set matching `labels`) at `url`. */
async function scrape(url: string, name: string, labels = ""): Promise<number> {
  const text = await fetch(url, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text());
  let sum = 0;
  for (const line of text.split("\n")) {
    const [key, value] = line.split(" ");
    if (key && (key === name || key.startsWith(`${name}{`)) && key.includes(labels)) {
      sum += Number(value);
    }
  }
  return sum;
}

/** Options of {@link churnBench}. */
interface ChurnOptions {
  rate: number;
  seconds: number;
  connections: number;
  writes: ChurnWrite[];
}

/**
 * CPU seconds of each node's data-plane component (the agents, the kube-proxies; summed over the
 * nodes) while `rate` EndpointSlice changes a second (one endpoint added or removed) go to the
 * churn's 100 one-port Services for `seconds`, on top of the `n` filler services; once per way of
 * writing. Writes start on a paced schedule (the k-th at k / rate s) over `connections`
 * connections, bodies made beforehand; the rate achieved, the write latency and the CPU of the API
 * server, etcd and the whole machine tell where a rate out of reach is lost.
 */
async function churnBench(bench: Bench, n: number, options: ChurnOptions): Promise<void> {
  if (bench.system.target.kind !== "local") return;
  const { agents, operator } = bench.system.target;
  const { rate, seconds } = options;
  await addChurnServices(bench);
  const state = JSON.parse(await Deno.readTextFile(`${bench.cluster.dir}/cluster.json`)) as {
    etcdPid: number;
    apiserverPid: number;
  };
  const writer = endpointSliceWriter(bench.cluster, options.connections);
  const pods = [bench.pods.echoA, bench.pods.echoB];
  const sum = async (pids: number[]) =>
    (await Promise.all(pids.map((p) => cpuSeconds(p)))).reduce((x, y) => x + y, 0);
  const nodes = bench.cluster.nodes;
  const sumOf = async (urls: string[], name: string, labels?: string) =>
    (await Promise.all(urls.map((u) => scrape(u, name, labels)))).reduce((x, y) => x + y, 0);
  const cpu = async () => ({
    agents: await sum(agents.map((a) => a.pid)),
    proxies: await sum(bench.proxies.map((p) => p.pid)),
    operator: await cpuSeconds(operator.pid),
    apiserver: await cpuSeconds(state.apiserverPid),
    etcd: await cpuSeconds(state.etcdPid),
    generator: await cpuSeconds(Deno.pid),
    machine: await machineJiffies(),
    // Each one's syncs: how many changes one data-plane run carries.
    agentSyncs: await sumOf(
      nodes.map((node) => `http://${node.ip}:9464/metrics`),
      "blixt_agent_syncs_total",
      'result="ok"',
    ),
    proxySyncs: await sumOf(
      nodes.map((node) => `http://${node.ip}:10249/metrics`),
      "kubeproxy_sync_proxy_rules_duration_seconds_count",
    ),
    reconciles: await scrape(
      `http://127.0.0.1:${18081 + bench.cluster.plan.slot}/metrics`,
      "blixt_operator_reconciles_total",
    ),
  });
  // Each change moves one endpoint: a slice alternates between one and two pods (it has two now).
  const bodies = Array.from(
    { length: CHURN_SERVICES },
    (_, i) =>
      [[pods[0]!], pods].map((endpoints) =>
        JSON.stringify(endpointSlice(`churn-${i}`, [{ name: "c", port: 20000 + i }], endpoints))
      ),
  );
  const twoPods = bodies.map(() => true);
  const path = (i: number) =>
    `/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/churn-${i}-bench`;
  for (const write of options.writes) {
    const before = await cpu();
    const started = performance.now();
    let sent = 0, done = 0, failed = 0, lastError = "", maxBehind = 0;
    const latencies: number[] = [];
    const inflight = new Set<Promise<void>>();
    while (performance.now() - started < seconds * 1000) {
      const due = Math.floor(((performance.now() - started) / 1000) * rate);
      maxBehind = Math.max(maxBehind, due - sent);
      while (sent < due && inflight.size < 200) {
        const i = sent % CHURN_SERVICES;
        twoPods[i] = !twoPods[i];
        const p = writer.write(path(i), write, bodies[i]![twoPods[i] ? 1 : 0]!)
          .then((ms) => {
            done++;
            latencies.push(ms);
          }, (e) => {
            failed++;
            lastError = (e as Error).message;
          }).finally(() => inflight.delete(p));
        inflight.add(p);
        sent++;
      }
      await sleep(Math.max(1, started + ((sent + 1) * 1000) / rate - performance.now()));
    }
    await Promise.all(inflight);
    const elapsed = (performance.now() - started) / 1000;
    if (done === 0) throw new Error(`churn (${write}): no write succeeded: ${lastError}`);
    // kube-proxy syncs at most once a second (minSyncPeriod): both get 3 s to finish the last.
    await sleep(3000);
    const after = await cpu();
    const d = (k: "agents" | "proxies" | "operator" | "apiserver" | "etcd" | "generator") =>
      after[k] - before[k];
    const busy = (after.machine.busy - before.machine.busy) /
      (after.machine.total - before.machine.total);
    const prefix = write === "update" ? "churn" : `churn_${write}`;
    bench.log(
      `churn (${write}, ${options.connections} connections): ${done} changes in ` +
        `${elapsed.toFixed(1)} s = ${(done / elapsed).toFixed(1)}/s of ${rate}/s asked, ` +
        `${failed} failed${lastError ? ` (${lastError})` : ""}, schedule behind by up to ` +
        `${maxBehind}; write latency p50 ${percentile(latencies, 50).toFixed(0)} ms p99 ` +
        `${percentile(latencies, 99).toFixed(0)} ms. CPU s (+3 s): agents ` +
        `${d("agents").toFixed(2)}, kube-proxies ${d("proxies").toFixed(2)}, operator ` +
        `${d("operator").toFixed(2)}, kube-apiserver ${d("apiserver").toFixed(2)}, etcd ` +
        `${d("etcd").toFixed(2)}, this generator ${d("generator").toFixed(2)}; syncs: agents ` +
        `${after.agentSyncs - before.agentSyncs}, kube-proxies ` +
        `${after.proxySyncs - before.proxySyncs}, operator reconciles ` +
        `${after.reconciles - before.reconciles}; machine ` +
        `${(100 * busy).toFixed(0)}% busy of ${CPUS} CPUs; load average ` +
        `${(await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ")}`,
    );
    // Where the API server cannot take `rate` writes a second, the figure is per 100 changes made.
    emit(
      `${prefix}_cpu_seconds_per_100_changes_${n}_services`,
      (100 * d("agents")) / done,
      "CPU s",
      "lower",
      (100 * d("proxies")) / done,
    );
    emit(`${prefix}_cpu_seconds_${n}_services`, d("agents"), "CPU s", "lower", d("proxies"));
    emit(
      `${prefix}_data_plane_syncs_${n}_services`,
      after.agentSyncs - before.agentSyncs,
      "syncs",
      "lower",
      after.proxySyncs - before.proxySyncs,
    );
    for (
      const [name, value, unit, better] of [
        [`${prefix}_changes_per_s_${n}_services`, done / elapsed, "changes/s", "higher"],
        [`${prefix}_write_latency_p50_ms`, percentile(latencies, 50), "ms", "lower"],
        [`${prefix}_write_latency_p99_ms`, percentile(latencies, 99), "ms", "lower"],
        [`${prefix}_apiserver_cpu_seconds`, d("apiserver"), "CPU s", "lower"],
        [`${prefix}_etcd_cpu_seconds`, d("etcd"), "CPU s", "lower"],
        [
          `${prefix}_operator_reconciles`,
          after.reconciles - before.reconciles,
          "reconciles",
          "lower",
        ],
        [`${prefix}_machine_busy_percent`, 100 * busy, "%", "lower"],
      ] as const
    ) {
      console.log(JSON.stringify({ name, value: round(value, 1), unit, better }));
    }
  }
  writer.close();
}

/** The traffic part's options from the command line's values. */
function trafficOptions(values: Record<string, string | boolean | undefined>): TrafficOptions {
  const text = (name: string) => String(values[name] ?? "");
  const figures = text("traffic").split(",");
  if (!figures.every((f): f is Which => f === "iperf" || f === "crr" || f === "rr")) {
    throw new RangeError(`--traffic ${text("traffic")}: a list of iperf, crr, rr`);
  }
  const cpus = text("iperf-cpus");
  if (cpus !== "same" && cpus !== "split") {
    throw new RangeError(`--iperf-cpus ${cpus}: same or split`);
  }
  if (cpus === "split" && CPUS < 2) throw new RangeError("--iperf-cpus split needs 2 CPUs");
  const seconds = Number(text("seconds"));
  return {
    runs: Number(text("runs")),
    seconds,
    figures,
    iperfSeconds: values["iperf-seconds"] ? Number(text("iperf-seconds")) : seconds,
    streams: Number(text("iperf-streams")),
    ...(text("iperf-congestion") !== "system" ? { congestion: text("iperf-congestion") } : {}),
    cpus,
    ...(values.profile ? { profileDir: text("profile") } : {}),
  };
}

/** Runs the benchmark with command-line arguments. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      runs: { type: "string", default: "5" },
      seconds: { type: "string", default: "3" },
      traffic: { type: "string", default: "iperf,crr,rr" },
      "iperf-seconds": { type: "string" },
      "iperf-streams": { type: "string", default: "1" },
      "iperf-congestion": { type: "string", default: "cubic" },
      "iperf-cpus": { type: "string", default: "same" },
      profile: { type: "string" },
      samples: { type: "string", default: "20" },
      "probe-interval-ms": { type: "string", default: "1" },
      services: { type: "string", default: "1,1000,10000" },
      "churn-rate": { type: "string", default: "100" },
      "churn-seconds": { type: "string", default: "30" },
      "churn-connections": { type: "string", default: "4" },
      "churn-write": { type: "string", default: "update" },
      only: { type: "string" },
    },
  });
  const only = values.only;
  const log = (line: string) => console.error(`[${new Date().toISOString()}] ${line}`);
  let bench: Bench | undefined;
  // the cluster is this run's own: one of its name that exists (another run's) stops it untouched
  await withOwnCluster(CLUSTER, async () => {
    bench = await setUp(log, { agentInfo: only === "programming" });
    if (!only || only === "traffic") {
      await trafficBench(bench, trafficOptions(values));
    }
    const sizes = values.services.split(",").map(Number).sort((a, b) => a - b);
    if (!only || only === "programming") {
      const options = {
        samples: Number(values.samples),
        probeIntervalMs: Number(values["probe-interval-ms"]),
      };
      for (const n of sizes) await programmingBench(bench, n <= 1 ? 0 : n, options);
    }
    if (!only || only === "churn") {
      const n = sizes[sizes.length - 1]!;
      await fillTo(bench, n);
      const writes = values["churn-write"].split(",");
      if (!writes.every((w): w is ChurnWrite => w === "update" || w === "apply")) {
        throw new RangeError(`--churn-write ${values["churn-write"]}: update, apply or both`);
      }
      await churnBench(bench, n, {
        rate: Number(values["churn-rate"]),
        seconds: Number(values["churn-seconds"]),
        connections: Number(values["churn-connections"]),
        writes,
      });
    }
  }, () => tearDown(bench));
}
