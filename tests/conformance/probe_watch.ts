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

async function output(argv: string[], netns?: string): Promise<string> {
  const res = await run(argv, { allowFailure: true, ...(netns ? { netns } : {}) });
  return res.stdout + (res.code === 0 ? "" : `(exit ${res.code}) ${res.stderr}`);
}

/**
 * Records the cluster now into `dir`: the Gateway API and blixt objects and
 * pods (`objects.yaml`, `pods.txt`), and per node `node-N.txt` with its data
 * plane (`dataplane_dump.ts` over its pinned maps), ARP entries on the pod
 * bridge, the bridge's learned MACs, and each pod's address and MAC.
 * Returns a short summary for the run's output.
 */
export async function captureWhileFailing(
  cluster: Cluster,
  dir: string,
  stuck: Stuck,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const objects = "gateways,udproutes,tcproutes,routingtables,dataplanenodes,endpointslices";
  const [yaml, pods] = await Promise.all([
    cluster.kubectl(["get", objects, "-A", "-o", "yaml"]).catch((e) => `${e}`),
    cluster.kubectl(["get", "pods", "-A", "-o", "wide"]).catch((e) => `${e}`),
  ]);
  await Deno.writeTextFile(`${dir}/objects.yaml`, yaml);
  await Deno.writeTextFile(`${dir}/pods.txt`, pods);
  const dump = new URL("./dataplane_dump.ts", import.meta.url).pathname;
  const summary: string[] = [`${stuck.test}: ${stuck.line}`];
  for (const node of cluster.nodes) {
    const [dataplane, neigh, fdb, links] = await Promise.all([
      output([Deno.execPath(), "run", "-A", dump, `${node.bpffs}/blixt`]),
      output(["ip", "neigh", "show", "dev", "cni0"], node.netns),
      output(["bridge", "fdb", "show", "br", "cni0"], node.netns),
      output(["ip", "-br", "link"], node.netns),
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
    summary.push(`${node.name} ARP on cni0: ${neigh.trim().replaceAll("\n", "; ") || "none"}`);
    for (const l of dataplane.split("\n")) summary.push(`${node.name} ${l}`);
  }
  // The pods' side of the pod network: which namespace holds which address and MAC.
  const podNamespaces = (await output(["ip", "netns", "list"])).split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(`blixt-${cluster.name}-pod-`));
  const lines = await Promise.all(podNamespaces.map(async (ns) => {
    const addr = await output(["ip", "-br", "addr", "show", "eth0"], ns);
    const mac = await output(["ip", "-br", "link", "show", "eth0"], ns);
    return `${ns}: ${addr.trim()} ${mac.trim().split(/\s+/)[2] ?? ""}`;
  }));
  await Deno.writeTextFile(`${dir}/pod-netns.txt`, lines.sort().join("\n") + "\n");
  return summary.join("\n");
}
