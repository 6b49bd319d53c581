/**
 * The whole of blixt on the local cluster, as a user runs it: the operator
 * and one agent per node as processes (agents inside their node's network
 * namespace, on its uplink), each with the credentials of its own service
 * account as manifests/rbac.yaml grants them (a kubeconfig with a bound token
 * from the TokenRequest API), blixt's CRDs and the `blixt` GatewayClass with
 * the cluster's Gateway address pool. The demo and the e2e tests start it.
 *
 * Bare test pods (`Cluster.createPod`: a network namespace, no Pod object)
 * match no Service selector, so {@linkcode System.publishService} writes the
 * Service (without a selector) and its EndpointSlice from them, as the
 * EndpointSlice controller would; Deployments and Pod objects get theirs from
 * the real controller.
 *
 * With `BLIXT_E2E_KUBECONFIG` set, {@linkcode startSystem} uses that cluster
 * instead, where blixt is deployed and pods run (remote_cluster.ts,
 * docs/e2e.md); {@linkcode stopSystem} then deletes what the test created.
 *
 * @module
 */

import { applyObject, type KubeObject } from "../../kube/client.ts";
import { applyManifestFiles, parseManifests } from "../../kube/manifests.ts";
import { applyBlixtCrds } from "../../manifests/crds.ts";
import { writeServiceAccountKubeconfig } from "../../manifests/service_account_kubeconfig.ts";
import { type Cluster, clusterDown, clusterUp } from "../cluster/cluster.ts";
import { processAlive, run, sleep, spawnDetached, stopProcess } from "../cluster/host.ts";
import {
  type BackendPod,
  RemoteCluster,
  sourceAddressTo,
  type TestCluster,
} from "./remote_cluster.ts";

const root = new URL("../../", import.meta.url).pathname;
const FIELD_MANAGER = "blixt-e2e";

/** Options of {@linkcode startSystem}. */
export interface SystemOptions {
  /** Cluster name (default `e2e`). */
  name?: string;
  nodes?: number;
  /** Receives one line per step. */
  log?: (line: string) => void;
  /** Lease timings for the operator (ms); short ones make failover tests quick. */
  operatorArgs?: string[];
  /**
   * Extra agent arguments, also on restarts (e.g. `--lease-duration 10
   * --lease-renew-interval 2`: a stopped agent is noticed sooner).
   */
  agentArgs?: string[];
  /**
   * Another cluster to use instead of a local one (default: `BLIXT_E2E_KUBECONFIG`
   * from the environment, with `$KUBECTL` or `kubectl`).
   */
  remote?: { kubeconfig: string; kubectl?: readonly string[] };
  /** Serve Pod objects in the local cluster (controllers, scheduler, pod runners). */
  pods?: boolean;
}

/** A process the system runs, with its log file. */
export interface SystemProcess {
  name: string;
  pid: number;
  log: string;
  /** Network namespace it runs in (agents), if any. */
  netns?: string;
}

/** A port of a Service published from pods. */
export interface ServicePort {
  name: string;
  port: number;
  targetPort: number;
  protocol: "TCP" | "UDP";
}

/** Where a {@linkcode System} runs: the local cluster with our processes, or another. */
export type SystemTarget =
  | {
    kind: "local";
    cluster: Cluster;
    operator: SystemProcess;
    agents: SystemProcess[];
    agentArgs?: string[];
  }
  | { kind: "remote" };

/** blixt running on a cluster: the local one (processes) or another (deployed). */
export class System {
  /** Objects this system applied, for the cleanup of a remote cluster (kind/namespace/name). */
  readonly #created = new Map<string, KubeObject>();
  readonly #pods = new Set<string>();

  constructor(
    readonly cluster: TestCluster,
    readonly target: SystemTarget,
    /** Source address of the tests' traffic, as a backend on the receiving node sees it. */
    readonly clientAddress: string,
  ) {}

  /** The operator and agent processes (none on a remote cluster). */
  get processes(): SystemProcess[] {
    return this.target.kind === "local" ? [this.target.operator, ...this.target.agents] : [];
  }

  /** Applies YAML objects (server-side apply) and returns them as the server has them. */
  async apply(yaml: string): Promise<KubeObject[]> {
    const kc = this.cluster.kubeConfig();
    const out: KubeObject[] = [];
    for (const obj of parseManifests(yaml)) {
      out.push(await applyObject(kc, obj, { fieldManager: FIELD_MANAGER, force: true }));
      this.#remember(obj);
    }
    return out;
  }

  #remember(obj: KubeObject): void {
    const key = `${obj.kind}/${obj.metadata?.namespace ?? ""}/${obj.metadata?.name}`;
    this.#created.delete(key);
    this.#created.set(key, obj);
  }

  /** Starts an echo backend on `node` (see {@linkcode TestCluster.createPod}). */
  async createPod(options: { name: string; node: string }): Promise<BackendPod> {
    const pod = await this.cluster.createPod(options);
    this.#pods.add(pod.name);
    return pod;
  }

  /** Deletes a backend pod. */
  async deletePod(name: string): Promise<void> {
    await this.cluster.deletePod(name);
    this.#pods.delete(name);
  }

  /**
   * On a remote cluster, deletes what this system created, newest first
   * (pods, then objects; namespaces take their contents along).
   */
  async deleteCreated(): Promise<void> {
    for (const name of this.#pods) await this.cluster.deletePod(name).catch(() => {});
    for (const obj of [...this.#created.values()].reverse()) {
      const ns = obj.metadata?.namespace ? ["-n", obj.metadata.namespace] : [];
      const kind = `${obj.kind}.${(obj.apiVersion ?? "").split("/").slice(0, -1)[0] ?? ""}`
        .replace(/\.$/, "");
      await this.cluster.kubectl([
        "delete",
        kind,
        obj.metadata?.name ?? "",
        ...ns,
        "--ignore-not-found",
        "--wait=false",
      ]).catch(() => "");
    }
  }

  /** The last `lines` lines of the operator's and every agent's log, for a failed test. */
  async logTails(lines = 20): Promise<string> {
    const out: string[] = [];
    for (const p of this.processes) {
      const text = await Deno.readTextFile(p.log).catch(() => "");
      out.push(
        `--- last lines of ${p.name} (${p.log}):\n${text.split("\n").slice(-lines).join("\n")}`,
      );
    }
    if (this.target.kind === "local") {
      for (const node of this.cluster.nodes) {
        const metrics = await fetch(`http://${node.ip}:9464/metrics`).then((r) => r.text())
          .catch((e) => `unreachable: ${(e as Error).message}`);
        const events = metrics.split("\n").filter((l) =>
          l.startsWith("blixt_dataplane_events_total") && !l.endsWith(" 0")
        );
        out.push(`--- data plane events of ${node.name}: ${events.join(", ") || "none"}`);
      }
    }
    return out.join("\n");
  }

  /**
   * Writes Service `name` in `namespace` and one EndpointSlice with `pods` as
   * ready endpoints (or the state given per pod).
   */
  async publishService(
    namespace: string,
    name: string,
    options: {
      ports: ServicePort[];
      pods: (BackendPod | {
        pod: BackendPod;
        ready: boolean;
        serving: boolean;
        terminating: boolean;
      })[];
    },
  ): Promise<void> {
    const endpoints = options.pods.map((p) => {
      const pod = "pod" in p ? p.pod : p;
      const conditions = "pod" in p
        ? { ready: p.ready, serving: p.serving, terminating: p.terminating }
        : { ready: true, serving: true, terminating: false };
      return {
        addresses: [pod.ip],
        nodeName: pod.node,
        targetRef: { kind: "Pod", name: pod.name, namespace },
        conditions,
      };
    });
    const kc = this.cluster.kubeConfig();
    const service = {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace },
      spec: {
        ports: options.ports.map((p) => ({
          name: p.name,
          port: p.port,
          targetPort: p.targetPort,
          protocol: p.protocol,
        })),
      },
    };
    await applyObject(kc, service, { fieldManager: FIELD_MANAGER, force: true });
    this.#remember(service);
    // Service without a selector: on any cluster, this slice is the only one.
    const slice = {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: `${name}-e2e`, namespace, labels: { "kubernetes.io/service-name": name } },
      addressType: "IPv4",
      ports: options.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol })),
      endpoints,
    };
    await applyObject(kc, slice, { fieldManager: FIELD_MANAGER, force: true });
    this.#remember(slice);
  }

  /** Runs `kubectl blixt ARGS` (the plugin's entry point) and returns what it printed. */
  async blixt(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return await run([
      Deno.execPath(),
      "run",
      "-A",
      `${root}plugin/main.ts`,
      ...args,
      "--kubeconfig",
      this.cluster.kubeconfig,
    ], { allowFailure: true, env: { NO_COLOR: "1" } });
  }

  /** The local target, or an error saying what is not portable yet. */
  #local(what: string): Extract<SystemTarget, { kind: "local" }> {
    if (this.target.kind !== "local") {
      throw new Error(`${what} is not portable yet: it needs the local cluster's agent processes`);
    }
    return this.target;
  }

  /** Stops the agent of `node` (SIGKILL when `kill`); its pinned maps keep forwarding. */
  async stopAgent(node: string, options: { kill?: boolean } = {}): Promise<void> {
    const agent = this.#local("stopping an agent").agents.find((a) => a.name === `agent-${node}`);
    if (!agent) throw new Error(`no agent on ${node}`);
    if (options.kill) Deno.kill(agent.pid, "SIGKILL");
    await stopProcess(agent.pid);
  }

  /**
   * Starts the agent of `node` again (after {@linkcode System.stopAgent}),
   * with `args` after the system's agent arguments.
   */
  async startAgent(node: string, options: { args?: string[] } = {}): Promise<void> {
    const local = this.#local("starting an agent");
    const i = local.agents.findIndex((a) => a.name === `agent-${node}`);
    const n = local.cluster.nodes.find((x) => x.name === node);
    if (i < 0 || !n) throw new Error(`no agent on ${node}`);
    local.agents[i] = await startAgent(local.cluster, n, [
      ...local.agentArgs ?? [],
      ...options.args ?? [],
    ]);
  }

  /** Stops operator and agents; the cluster stays (see {@linkcode stopSystem}). */
  async stopProcesses(): Promise<void> {
    for (const p of this.processes) await stopProcess(p.pid);
  }
}

/** Kubeconfig of a component's service account, written by {@linkcode startSystem}. */
function componentKubeconfig(cluster: Cluster, component: "operator" | "agent"): string {
  return `${cluster.dir}/${component}.kubeconfig`;
}

function agentCommand(
  cluster: Cluster,
  node: Cluster["nodes"][number],
  extra: string[],
): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    `${root}agent/main.ts`,
    "--node",
    node.name,
    "--kubeconfig",
    componentKubeconfig(cluster, "agent"),
    "--uplink",
    "eth0",
    // the node's pod bridge: pods reaching Gateway addresses (hairpin), local flows past the stack
    "--pod-interface",
    "cni0",
    "--bpffs",
    node.bpffs,
    "--log-level",
    "warn",
    ...extra,
  ];
}

async function startAgent(
  cluster: Cluster,
  node: Cluster["nodes"][number],
  extra: string[],
): Promise<SystemProcess> {
  const log = `${cluster.dir}/agent-${node.name}.log`;
  const pid = await spawnDetached(agentCommand(cluster, node, extra), { netns: node.netns, log });
  return { name: `agent-${node.name}`, pid, log, netns: node.netns };
}

/** The GatewayClass `blixt` with a config that hands out the cluster's Gateway pool. */
export function gatewayClassYaml(pool: string): string {
  return `
apiVersion: blixt.dev/v1alpha1
kind: GatewayClassConfig
metadata: { name: blixt, labels: { app.kubernetes.io/part-of: blixt } }
spec:
  addressPools: [{ name: local-cluster, cidr: ${pool} }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: blixt, labels: { app.kubernetes.io/part-of: blixt } }
spec:
  controllerName: blixt.dev/gateway-controller
  parametersRef: { group: blixt.dev, kind: GatewayClassConfig, name: blixt }
`;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  const attempt = () =>
    check().catch((e) => {
      if (e instanceof ProcessExited) throw e;
      return false;
    });
  while (!(await attempt())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/** Resolves once every node's DataplaneNode is Ready; `alive` throws when a process died. */
async function waitForAgents(cluster: TestCluster, alive: () => Promise<void>): Promise<void> {
  await waitFor("every agent Ready", async () => {
    await alive();
    const out = await cluster.kubectl(["get", "dataplanenodes", "-o", "json"]);
    const items = (JSON.parse(out) as {
      items: {
        metadata: { name: string };
        status?: { conditions?: { type: string; status: string }[] };
      }[];
    }).items;
    return cluster.nodes.every((node) =>
      items.some((n) =>
        n.metadata.name === node.name &&
        n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")
      )
    );
  }, 60_000);
}

/** Environment variable that points the suite at another cluster (see docs/e2e.md). */
export const REMOTE_KUBECONFIG_ENV = "BLIXT_E2E_KUBECONFIG";

/**
 * Brings up the cluster (or reuses it), installs blixt's CRDs and class, and
 * starts the operator and an agent per node; resolves once every agent's
 * DataplaneNode is Ready. With `BLIXT_E2E_KUBECONFIG` set, uses that cluster
 * instead (blixt deployed there, nothing started) once its agents are Ready.
 */
export async function startSystem(options: SystemOptions = {}): Promise<System> {
  const log = options.log ?? (() => {});
  const fromEnv = Deno.env.get(REMOTE_KUBECONFIG_ENV);
  const remote = options.remote ?? (fromEnv ? { kubeconfig: fromEnv } : undefined);
  if (remote) {
    const cluster = await RemoteCluster.connect(
      remote.kubeconfig,
      remote.kubectl ? { kubectl: remote.kubectl } : {},
    );
    await waitForAgents(cluster, async () => {});
    const first = cluster.nodes[0];
    if (!first) {
      throw new Error(`${remote.kubeconfig}: the cluster has no node with an InternalIP`);
    }
    log(`using the cluster of ${remote.kubeconfig}: ${cluster.nodes.length} nodes, agents Ready`);
    return new System(cluster, { kind: "remote" }, await sourceAddressTo(first.ip));
  }
  const cluster = await clusterUp({
    name: options.name ?? "e2e",
    nodes: options.nodes ?? 2,
    ...(options.pods === undefined ? {} : { pods: options.pods }),
    log,
  });
  const kc = cluster.kubeConfig();
  await applyBlixtCrds(kc, { fieldManager: FIELD_MANAGER });
  for (const obj of parseManifests(gatewayClassYaml(cluster.plan.gatewayPool))) {
    await applyObject(kc, obj, { fieldManager: FIELD_MANAGER, force: true });
  }
  await applyManifestFiles(kc, [`${root}manifests/namespace.yaml`, `${root}manifests/rbac.yaml`], {
    fieldManager: FIELD_MANAGER,
  });
  for (const component of ["operator", "agent"] as const) {
    await writeServiceAccountKubeconfig(kc, {
      namespace: "blixt-system",
      name: `blixt-${component}`,
    }, { path: componentKubeconfig(cluster, component), expirationSeconds: 24 * 3600 });
  }
  log("blixt CRDs, RBAC and GatewayClass blixt applied; service account kubeconfigs written");
  const operatorLog = `${cluster.dir}/operator.log`;
  const operatorPid = await spawnDetached([
    Deno.execPath(),
    "run",
    "-A",
    `${root}operator/main.ts`,
    "--kubeconfig",
    componentKubeconfig(cluster, "operator"),
    "--health-port",
    String(18081 + cluster.plan.slot),
    "--identity",
    `operator-${cluster.name}`,
    ...(options.operatorArgs ?? []),
  ], { log: operatorLog });
  const operator = { name: "operator", pid: operatorPid, log: operatorLog };
  const agents: SystemProcess[] = [];
  const agentArgs = options.agentArgs ?? [];
  for (const node of cluster.nodes) agents.push(await startAgent(cluster, node, agentArgs));
  const system = new System(
    cluster,
    { kind: "local", cluster, operator, agents, agentArgs },
    cluster.plan.bridgeIP,
  );
  await waitForAgents(cluster, async () => {
    for (const p of [operator, ...agents]) {
      if (!processAlive(p.pid)) {
        const tail = (await Deno.readTextFile(p.log)).split("\n").slice(-10).join("\n");
        throw new ProcessExited(`${p.name} exited:\n${tail}`);
      }
    }
  });
  log(`operator and ${agents.length} agents running`);
  return system;
}

/** A process of the system died while it was starting. */
class ProcessExited extends Error {}

/**
 * Stops the system's processes and takes its cluster down; on a remote
 * cluster, deletes what the test created instead.
 */
export async function stopSystem(system: System | undefined, name = "e2e"): Promise<void> {
  if (system?.target.kind === "remote") return await system.deleteCreated();
  // A remote run that failed to start has no local cluster to take down.
  if (!system && Deno.env.get(REMOTE_KUBECONFIG_ENV)) return;
  await system?.stopProcesses();
  await clusterDown(system?.cluster.name ?? name);
}
