/**
 * Helpers of the agent's cluster tests: blixt's CRDs, RoutingTables written
 * by hand, agents spawned inside node namespaces, and polling.
 *
 * @module
 */
import { applyBlixtCrds } from "../manifests/crds.ts";
import { applyObject, k8s, type KubeObject } from "../kube/client.ts";
import type { Cluster } from "../tests/cluster/cluster.ts";
import type { DataplaneNode, RoutingTable } from "../api/mod.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** Polls `check` until it returns a value that is not undefined/false, or fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** Applies blixt's CRDs and waits until they are served. */
export async function installCrds(kc: k8s.KubeConfig): Promise<void> {
  await applyBlixtCrds(kc, { fieldManager: "agent-test" });
}

/** Writes a RoutingTable (server-side apply, as the operator would) and returns its generation. */
export async function applyTable(kc: k8s.KubeConfig, table: RoutingTable): Promise<number> {
  const out = await applyObject(kc, table as unknown as KubeObject, {
    fieldManager: "agent-test",
    force: true,
  });
  return (out.metadata as { generation: number }).generation;
}

/** Deletes a RoutingTable. */
export async function deleteTable(
  kc: k8s.KubeConfig,
  namespace: string,
  name: string,
): Promise<void> {
  await kc.makeApiClient(k8s.CustomObjectsApi).deleteNamespacedCustomObject({
    group: "blixt.dev",
    version: "v1alpha1",
    namespace,
    plural: "routingtables",
    name,
  });
}

/** Reads DataplaneNode `node`, or undefined. */
export async function dataplaneNode(
  kc: k8s.KubeConfig,
  node: string,
): Promise<DataplaneNode | undefined> {
  try {
    return await kc.makeApiClient(k8s.CustomObjectsApi).getClusterCustomObject({
      group: "blixt.dev",
      version: "v1alpha1",
      plural: "dataplanenodes",
      name: node,
    }) as DataplaneNode;
  } catch (e) {
    if (e instanceof k8s.ApiException && e.code === 404) return undefined;
    throw e;
  }
}

/** A running agent process inside a node's namespace. */
export class AgentProcess {
  /** Output lines (JSON logs) seen so far. */
  readonly lines: string[] = [];
  #child: Deno.ChildProcess;
  #done: Promise<Deno.CommandStatus>;
  #pump: Promise<void>;

  private constructor(child: Deno.ChildProcess, readonly metricsUrl: string) {
    this.#child = child;
    this.#done = child.status;
    this.#pump = (async () => {
      const decoder = new TextDecoderStream();
      let pending = "";
      for await (const chunk of child.stderr.pipeThrough(decoder)) {
        pending += chunk;
        const parts = pending.split("\n");
        pending = parts.pop()!;
        this.lines.push(...parts);
        if (Deno.env.get("AGENT_TEST_LOGS")) { for (const p of parts) console.error(p); }
      }
    })();
  }

  /**
   * Starts `deno run -A agent/main.ts` for node `index` of `cluster` inside its
   * namespace (`v8Flags`: as `deno run --v8-flags=...`).
   */
  static start(
    cluster: Cluster,
    index: number,
    options: { metricsPort?: number; args?: string[]; v8Flags?: string | undefined } = {},
  ): AgentProcess {
    const node = cluster.nodes[index]!;
    const port = options.metricsPort ?? 9464;
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        node.netns,
        Deno.execPath(),
        "run",
        "-A",
        ...(options.v8Flags ? [`--v8-flags=${options.v8Flags}`] : []),
        MAIN,
        "--node",
        node.name,
        "--kubeconfig",
        cluster.kubeconfig,
        "--bpffs",
        node.bpffs,
        "--uplink",
        "eth0",
        "--metrics-port",
        String(port),
        ...(options.args ?? []),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    return new AgentProcess(child, `http://${node.ip}:${port}`);
  }

  /** The process id (of `ip netns exec`, which execs into deno: the same process). */
  get pid(): number {
    return this.#child.pid;
  }

  /** Whether the process has exited. */
  async exited(): Promise<boolean> {
    return await Promise.race([this.#done.then(() => true), Promise.resolve(false)]);
  }

  /** Sends `signal` and waits for the exit. */
  async kill(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.#child.kill(signal);
    } catch { /* already gone */ }
    const status = await this.#done;
    await this.#pump;
    return status;
  }

  /** GET of an endpoint: [status, body]. */
  async get(path: string): Promise<[number, string]> {
    const res = await fetch(`${this.metricsUrl}${path}`);
    return [res.status, await res.text()];
  }

  /**
   * Waits until the agent is up with its program loaded and synced once
   * (`/readyz`). Loading the program takes 2-4 s on a quiet 2-core VM and
   * over 10 s on a busy one (the verifier and the maps' allocation), so tests
   * wait for this first and keep their tighter timeouts for what they assert.
   */
  async started(timeoutMs = 90_000): Promise<void> {
    await eventually("the agent's /readyz", async () => {
      if (await this.exited()) throw new Error("the agent exited");
      return (await this.get("/readyz"))[0] === 200;
    }, { timeoutMs, intervalMs: 200 });
  }
}

const ECHO_CLIENT = new URL("../tests/cluster/echo_client.ts", import.meta.url).pathname;

/**
 * One TCP echo from a child process: the reply, or undefined when none came
 * in `timeoutMs`. For probes expected to fail: a connect that is still
 * retrying its SYN dies with the child instead of connecting later.
 */
export async function tcpProbe(
  host: string,
  port: number,
  text: string,
  timeoutMs = 500,
): Promise<string | undefined> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ECHO_CLIENT, "--tcp", `--timeout=${timeoutMs}`, host, String(port), text],
    stdout: "piped",
    stderr: "null",
  }).output();
  return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
}
