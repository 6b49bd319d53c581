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
 * Service and its EndpointSlice from them, as the EndpointSlice controller
 * would; Deployments and Pod objects get theirs from the real controller.
 *
 * @module
 */

import { applyObject, type KubeObject } from "../../kube/client.ts";
import { applyManifestFiles, parseManifests } from "../../kube/manifests.ts";
import { applyBlixtCrds } from "../../manifests/crds.ts";
import { writeServiceAccountKubeconfig } from "../../manifests/service_account_kubeconfig.ts";
import { type Cluster, clusterDown, clusterUp, type Pod } from "../cluster/cluster.ts";
import { processAlive, run, sleep, spawnDetached, stopProcess } from "../cluster/host.ts";

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

/** blixt running on a local cluster. */
export class System {
  constructor(
    readonly cluster: Cluster,
    readonly operator: SystemProcess,
    readonly agents: SystemProcess[],
  ) {}

  /** Applies YAML objects (server-side apply) and returns them as the server has them. */
  async apply(yaml: string): Promise<KubeObject[]> {
    const kc = this.cluster.kubeConfig();
    const out: KubeObject[] = [];
    for (const obj of parseManifests(yaml)) {
      out.push(await applyObject(kc, obj, { fieldManager: FIELD_MANAGER, force: true }));
    }
    return out;
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
      pods: (Pod | { pod: Pod; ready: boolean; serving: boolean; terminating: boolean })[];
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
    await applyObject(kc, {
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
    }, { fieldManager: FIELD_MANAGER, force: true });
    await applyObject(kc, {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: `${name}-e2e`, namespace, labels: { "kubernetes.io/service-name": name } },
      addressType: "IPv4",
      ports: options.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol })),
      endpoints,
    }, { fieldManager: FIELD_MANAGER, force: true });
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

  /** Stops the agent of `node` (SIGKILL when `kill`); its pinned maps keep forwarding. */
  async stopAgent(node: string, options: { kill?: boolean } = {}): Promise<void> {
    const agent = this.agents.find((a) => a.name === `agent-${node}`);
    if (!agent) throw new Error(`no agent on ${node}`);
    if (options.kill) Deno.kill(agent.pid, "SIGKILL");
    await stopProcess(agent.pid);
  }

  /** Starts the agent of `node` again (after {@linkcode System.stopAgent}). */
  async startAgent(node: string): Promise<void> {
    const i = this.agents.findIndex((a) => a.name === `agent-${node}`);
    const n = this.cluster.nodes.find((x) => x.name === node);
    if (i < 0 || !n) throw new Error(`no agent on ${node}`);
    this.agents[i] = await startAgent(this.cluster, n);
  }

  /** Stops operator and agents; the cluster stays (see {@linkcode stopSystem}). */
  async stopProcesses(): Promise<void> {
    for (const p of [this.operator, ...this.agents]) await stopProcess(p.pid);
  }
}

/** Kubeconfig of a component's service account, written by {@linkcode startSystem}. */
function componentKubeconfig(cluster: Cluster, component: "operator" | "agent"): string {
  return `${cluster.dir}/${component}.kubeconfig`;
}

function agentCommand(cluster: Cluster, node: Cluster["nodes"][number]): string[] {
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
    "--bpffs",
    node.bpffs,
    "--log-level",
    "warn",
  ];
}

async function startAgent(
  cluster: Cluster,
  node: Cluster["nodes"][number],
): Promise<SystemProcess> {
  const log = `${cluster.dir}/agent-${node.name}.log`;
  const pid = await spawnDetached(agentCommand(cluster, node), { netns: node.netns, log });
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
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/**
 * Brings up the cluster (or reuses it), installs blixt's CRDs and class, and
 * starts the operator and an agent per node; resolves once every agent's
 * DataplaneNode is Ready.
 */
export async function startSystem(options: SystemOptions = {}): Promise<System> {
  const log = options.log ?? (() => {});
  const cluster = await clusterUp({
    name: options.name ?? "e2e",
    nodes: options.nodes ?? 2,
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
  for (const node of cluster.nodes) agents.push(await startAgent(cluster, node));
  const system = new System(cluster, operator, agents);
  await waitFor("every agent Ready", async () => {
    for (const p of [operator, ...agents]) {
      if (!processAlive(p.pid)) {
        const tail = (await Deno.readTextFile(p.log)).split("\n").slice(-10).join("\n");
        throw new Error(`${p.name} exited:\n${tail}`);
      }
    }
    const out = await cluster.kubectl(["get", "dataplanenodes", "-o", "json"]);
    const items = (JSON.parse(out) as {
      items: { status?: { conditions?: { type: string; status: string }[] } }[];
    }).items;
    return items.length === cluster.nodes.length &&
      items.every((n) =>
        n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")
      );
  }, 60_000);
  log(`operator and ${agents.length} agents running`);
  return system;
}

/** Stops the system's processes and takes its cluster down. */
export async function stopSystem(system: System | undefined, name = "e2e"): Promise<void> {
  await system?.stopProcesses();
  await clusterDown(system?.cluster.name ?? name);
}
