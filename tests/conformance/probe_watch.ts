/**
 * Evidence of a probe that keeps failing, taken while it fails. The suite
 * deletes a test's objects as soon as the test ends, so what the run keeps
 * after a failure (`.cache/conformance-failure/`) no longer has the Gateway,
 * its RoutingTable or its pods; the run reads the suite's log as it comes and,
 * once a test's probes have failed for {@linkcode STUCK_MS}, records the
 * cluster then: objects, each node's data plane (its pinned maps) and pod
 * network (ARP entries, the bridge's learned MACs, the pods' addresses).
 *
 * ```
 * go test -v ──lines──> ProbeWatch.line() ──stuck──> captureWhileFailing() ──> .cache/conformance-stuck/
 * ```
 *
 * @module
 */

import type { Cluster } from "../cluster/cluster.ts";
import { run } from "../cluster/host.ts";

/** A test's probes failing this long (ms) are stuck, not starting: the run records the cluster. */
export const STUCK_MS = 10_000;

/** A retried probe that failed (the suite's tcp and udp helpers). */
const FAILED =
  /failed to (read|dial|write|receive|establish)|could not connect|will retry|; retrying/;
/** A probe that went through. */
const PASSED = /got UDP echo response|received a TCP echo response|tcp client connected/;
/** `=== RUN   TestConformance/<test>[/<subtest>]` */
const RUN = /^=== RUN\s+TestConformance\/(\S+)/;

/** What a stuck probe's line said, for the record. */
export interface Stuck {
  /** The (sub)test whose probes fail. */
  test: string;
  /** Since when (ms, the clock given to `line`). */
  sinceMs: number;
  /** The last failure line. */
  line: string;
}

/**
 * Follows the suite's log: which test runs, since when its probes fail.
 * `line()` returns the stuck probe once per test, when it has failed for
 * {@linkcode STUCK_MS} without a success in between.
 *
 * @example
 * ```ts
 * const watch = new ProbeWatch();
 * const stuck = watch.line(text, performance.now());
 * if (stuck) await captureWhileFailing(cluster, dir, stuck);
 * ```
 */
export class ProbeWatch {
  #test = "";
  #failingSince: number | undefined;
  #reported = new Set<string>();
  readonly #stuckMs: number;

  /** A watch that calls a probe stuck after `stuckMs` of failures. */
  constructor(stuckMs = STUCK_MS) {
    this.#stuckMs = stuckMs;
  }

  /** Takes one line of the log, seen at `nowMs`; returns the stuck probe once per test. */
  line(text: string, nowMs: number): Stuck | undefined {
    const run = RUN.exec(text);
    if (run) {
      this.#test = run[1]!;
      this.#failingSince = undefined;
      return undefined;
    }
    if (PASSED.test(text)) {
      this.#failingSince = undefined;
      return undefined;
    }
    if (!FAILED.test(text)) return undefined;
    this.#failingSince ??= nowMs;
    if (nowMs - this.#failingSince < this.#stuckMs || this.#reported.has(this.#test)) {
      return undefined;
    }
    this.#reported.add(this.#test);
    return { test: this.#test, sinceMs: this.#failingSince, line: text.trim() };
  }
}

async function output(argv: string[]): Promise<string> {
  const res = await run(argv, { allowFailure: true });
  return res.stdout + (res.code === 0 ? "" : `(exit ${res.code}) ${res.stderr}`);
}

/** A pod's side of the pod network. */
export interface PodInterface {
  /** Its network namespace. */
  netns: string;
  /** Its eth0's MAC. */
  mac: string;
}

/**
 * ARP entries of a node's pod bridge that name a MAC other than that of the
 * pod holding the address (`ip neigh show dev cni0` and `bridge fdb show`
 * output): a dead pod's interface still answering for the address, or an
 * entry not refreshed since the address changed hands. One line each, with
 * the bridge port the MAC was learned on.
 */
export function arpMismatches(
  neigh: string,
  fdb: string,
  pods: ReadonlyMap<string, PodInterface>,
): string[] {
  const ports = new Map<string, string>();
  for (const l of fdb.split("\n")) {
    const m = /^([0-9a-f:]{17}) dev (\S+)/.exec(l.trim());
    if (m && !l.includes("permanent")) ports.set(m[1]!, m[2]!);
  }
  const out: string[] = [];
  for (const l of neigh.split("\n")) {
    const m = /^(\S+) (?:dev \S+ )?lladdr ([0-9a-f:]{17}) (.*)$/.exec(l.trim());
    if (!m) continue;
    const [, address, mac, state] = m;
    const pod = pods.get(address!);
    if (!pod || pod.mac === mac) continue;
    const port = ports.get(mac!);
    out.push(
      `ARP ${address} -> ${mac} (${state!.trim()}), learned on ${
        port ? `bridge port ${port}` : "no bridge port"
      }, but ${pod.netns} holds ${address} with MAC ${pod.mac}`,
    );
  }
  return out;
}

/** Address -> namespace and MAC of every pod of the cluster. */
async function podInterfaces(cluster: Cluster): Promise<Map<string, PodInterface>> {
  const namespaces = (await output(["ip", "netns", "list"])).split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(`blixt-${cluster.name}-pod-`));
  const pods = new Map<string, PodInterface>();
  await Promise.all(namespaces.map(async (netns) => {
    const text = await output(["ip", "-n", netns, "-j", "addr", "show", "dev", "eth0"]);
    try {
      const links = JSON.parse(text) as {
        address?: string;
        addr_info?: { family?: string; local?: string }[];
      }[];
      for (const link of links) {
        for (const a of link.addr_info ?? []) {
          if (a.family === "inet" && a.local) pods.set(a.local, { netns, mac: link.address ?? "" });
        }
      }
    } catch { /* gone meanwhile */ }
  }));
  return pods;
}

/**
 * Records the cluster now into `dir`: the Gateway API and blixt objects and
 * pods (`objects.yaml`, `pods.txt`), each pod namespace's address and MAC
 * (`pod-netns.txt`), and per node `node-N.txt` with its data plane
 * (`dataplane_dump.ts` over its pinned maps), ARP entries on the pod bridge,
 * the bridge's learned MACs and its links. Returns a short summary for the
 * run's output, ARP entries naming the wrong MAC first.
 */
export async function captureWhileFailing(
  cluster: Cluster,
  dir: string,
  stuck: Stuck,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const objects = "gateways,udproutes,tcproutes,routingtables,dataplanenodes,endpointslices";
  const [yaml, podList, pods] = await Promise.all([
    cluster.kubectl(["get", objects, "-A", "-o", "yaml"]).catch((e) => `${e}`),
    cluster.kubectl(["get", "pods", "-A", "-o", "wide"]).catch((e) => `${e}`),
    podInterfaces(cluster),
  ]);
  await Deno.writeTextFile(`${dir}/objects.yaml`, yaml);
  await Deno.writeTextFile(`${dir}/pods.txt`, podList);
  await Deno.writeTextFile(
    `${dir}/pod-netns.txt`,
    [...pods].map(([ip, p]) => `${ip} ${p.mac} ${p.netns}`).sort().join("\n") + "\n",
  );
  const dump = new URL("./dataplane_dump.ts", import.meta.url).pathname;
  const summary: string[] = [`${stuck.test}: ${stuck.line}`];
  const details: string[] = [];
  for (const node of cluster.nodes) {
    const [dataplane, neigh, fdb, links] = await Promise.all([
      output([Deno.execPath(), "run", "-A", dump, `${node.bpffs}/blixt`]),
      output(["ip", "-n", node.netns, "neigh", "show", "dev", "cni0"]),
      output(["bridge", "-n", node.netns, "fdb", "show", "br", "cni0"]),
      output(["ip", "-n", node.netns, "-br", "link"]),
    ]);
    const text = [
      `# data plane (pinned maps)\n${dataplane}`,
      `# ARP entries on cni0\n${neigh}`,
      `# learned MACs of cni0 (not permanent)\n${
        fdb.split("\n").filter((l) => !l.includes("permanent")).join("\n")
      }`,
      `# links\n${links}`,
    ].join("\n\n");
    await Deno.writeTextFile(`${dir}/${node.name}.txt`, text);
    for (const l of arpMismatches(neigh, fdb, pods)) summary.push(`${node.name} ${l}`);
    details.push(`${node.name} ARP on cni0: ${neigh.trim().replaceAll("\n", "; ") || "none"}`);
    for (const l of dataplane.trim().split("\n")) details.push(`${node.name} ${l}`);
  }
  return [...summary, ...details].join("\n");
}
