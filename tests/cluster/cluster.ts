/**
 * The local cluster: a real etcd and kube-apiserver on the host, nodes as
 * network namespaces on one bridge, pods as network namespaces behind their
 * node. See README.md beside this file for the topology.
 *
 * @example
 * ```ts
 * const cluster = await clusterUp({ name: "demo", nodes: 2 });
 * const pod = await cluster.createPod({ name: "echo", node: "node-1" });
 * await clusterDown("demo");
 * ```
 *
 * @module
 */

import { stringify as toYaml } from "yaml";
import { applyObject, k8s, loadKubeConfig } from "../../kube/client.ts";
import { applyManifestFiles } from "../../kube/manifests.ts";
import {
  addressPlan,
  type ClusterPlan,
  MAX_NODES,
  MAX_SLOTS,
  type NodePlan,
} from "./address_plan.ts";
import {
  ensureKubeBinary,
  GATEWAY_API_VERSION,
  type GatewayApiChannel,
  gatewayApiCrdFiles,
  kubeBinaryPath,
} from "./binaries.ts";
import {
  ip,
  linkExists,
  listNetns,
  mountsUnder,
  processAlive,
  run,
  sleep,
  spawnDetached,
  stopProcess,
  waitListenerGone,
  writeFileAtomic,
} from "./host.ts";
import { type ClientCert, ensureClientCert, makePki, type Pki } from "./pki.ts";
import { ensureImageBinaries } from "./images.ts";
import {
  attachPodNetwork,
  detachPodNetwork,
  type PodNode,
  removeNetns,
  shortHash,
} from "./pod_network.ts";

/** Default cluster name. */
export const DEFAULT_NAME = "blixt";
/** Field manager of what the cluster itself applies. */
const FIELD_MANAGER = "blixt-local-cluster";

/**
 * The name cluster `name` really has: `BLIXT_CLUSTER_PREFIX` (when set) in
 * front, so that several checkouts can run the same tests side by side on
 * one machine without sharing clusters. A name that already carries the
 * prefix keeps it once.
 */
export function clusterName(name: string): string {
  const prefix = Deno.env.get("BLIXT_CLUSTER_PREFIX") ?? "";
  return name.startsWith(prefix) ? name : `${prefix}${name}`;
}

/** Root of every cluster's state (pids, certificates, etcd data, logs). */
export function runDir(): string {
  return Deno.env.get("BLIXT_RUN_DIR") ?? "/run/blixt";
}

/** Options of {@link clusterUp}. */
export interface ClusterUpOptions {
  name?: string;
  /** Number of nodes (default 2). */
  nodes?: number;
  /** Gateway API CRD channel (default experimental). */
  channel?: GatewayApiChannel;
  /**
   * Serve Pod objects (default false): start kube-controller-manager,
   * kube-scheduler and a pod runner per node, and build the pod images'
   * binaries. Without it the cluster is the API server and etcd alone, whose
   * objects are only what a test writes (no controller adds any).
   */
  pods?: boolean;
  /** Receives one line per step. */
  log?: (line: string) => void;
}

/** A pod: a network namespace on a node with one process in it. */
export interface Pod {
  name: string;
  node: string;
  netns: string;
  ip: string;
  /** Pid of the pod's process. */
  pid: number;
  /** File with the process's output. */
  log: string;
}

/** Options of {@link Cluster.createPod}. */
export interface PodOptions {
  name: string;
  /** Node name, e.g. `node-1`. */
  node: string;
  /**
   * Command to run in the pod. Default: the echo server, answering on TCP
   * and UDP port 8080 with the pod's name.
   */
  command?: string[];
}

/** A node of a cluster: its addresses, network namespace, bpffs and address leases. */
export type ClusterNode = NodePlan & PodNode & { bpffs: string };

/** What {@link clusterUp} records in the cluster's state directory. */
interface ClusterState {
  name: string;
  slot: number;
  nodes: number;
  channel: GatewayApiChannel;
  etcdPid: number;
  apiserverPid: number;
  /** Pids of kube-controller-manager, kube-scheduler and the pod runners (by node). */
  /** Whether the cluster serves Pod objects ({@link ClusterUpOptions.pods}). */
  servePods?: boolean;
  controllerManagerPid?: number;
  schedulerPid?: number;
  podRunnerPids?: Record<string, number>;
  pods: Record<string, Pod>;
}

function clusterDir(name: string): string {
  return `${runDir()}/clusters/${name}`;
}

function stateFile(name: string): string {
  return `${clusterDir(name)}/cluster.json`;
}

/** Network namespace of node `node` of cluster `cluster`. */
export function nodeNetns(cluster: string, node: string): string {
  return `blixt-${cluster}-${node}`;
}

function podNetns(cluster: string, pod: string): string {
  return `blixt-${cluster}-pod-${pod}`;
}

function bridgeName(slot: number): string {
  return `blx${slot}`;
}

function uplinkPeerName(slot: number, node: NodePlan): string {
  return `blx${slot}n${node.index}`;
}

function etcdPorts(slot: number): { client: number; peer: number } {
  return { client: 23790 + 2 * slot, peer: 23791 + 2 * slot };
}

const echoServer = new URL("./echo_server.ts", import.meta.url).pathname;
const echoClient = new URL("./echo_client.ts", import.meta.url).pathname;

/** One request of {@link Cluster.echoFrom}. */
export interface EchoRequest {
  protocol: "tcp" | "udp";
  host: string;
  port: number;
  text: string;
  timeoutMs?: number;
}

/** A running local cluster. */
export class Cluster {
  constructor(
    /** Cluster name. */
    readonly name: string,
    /** Its addresses. */
    readonly plan: ClusterPlan,
    /** Absolute path of the host's kubeconfig (client certificate auth). */
    readonly kubeconfig: string,
    /** Gateway API CRD channel installed. */
    readonly channel: GatewayApiChannel,
  ) {}

  /** State directory of the cluster. */
  get dir(): string {
    return clusterDir(this.name);
  }

  /** The nodes with their network namespace and bpffs directory. */
  get nodes(): ClusterNode[] {
    return this.plan.nodes.map((n) => ({
      ...n,
      plan: n,
      netns: nodeNetns(this.name, n.name),
      bpffs: `${this.dir}/nodes/${n.name}/bpffs`,
      ipamDir: `${this.dir}/nodes/${n.name}/ipam`,
    }));
  }

  /** URL of the API server. */
  get server(): string {
    return `https://${this.plan.bridgeIP}:6443`;
  }

  /** A client configuration for the host's admin credentials. */
  kubeConfig(): k8s.KubeConfig {
    return loadKubeConfig({ kubeconfig: this.kubeconfig });
  }

  /** Runs `command` in network namespace `netns` and returns its stdout. */
  async exec(netns: string, command: string[]): Promise<string> {
    return (await run(command, { netns })).stdout;
  }

  /**
   * Runs kubectl (the one built with the API server, same version) against
   * this cluster and returns its stdout.
   */
  async kubectl(args: string[], options: { stdin?: string } = {}): Promise<string> {
    const kube = await kubeBinaryPath();
    const res = await run([kube, "kubectl", "--kubeconfig", this.kubeconfig, ...args], options);
    return res.stdout;
  }

  /** The pods this cluster has. */
  async pods(): Promise<Pod[]> {
    return Object.values((await readState(this.name)).pods);
  }

  /**
   * Creates a pod: a network namespace joined to its node's pod bridge by a
   * veth pair, with an address from the node's pod CIDR, running `command`.
   */
  async createPod(options: PodOptions): Promise<Pod> {
    if (!/^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$/.test(options.name)) {
      throw new Error(
        `pod name "${options.name}" is not a DNS label of <= 42 chars`,
      );
    }
    const node = this.nodes.find((n) => n.name === options.node);
    if (!node) {
      throw new Error(`cluster ${this.name} has no node "${options.node}"`);
    }
    return await withStateLock(this.name, async () => {
      const state = await readState(this.name);
      if (state.pods[options.name]) {
        throw new Error(`pod "${options.name}" already exists`);
      }
      const netns = podNetns(this.name, options.name);
      const log = `${this.dir}/pods/${options.name}.log`;
      await Deno.mkdir(`${this.dir}/pods`, { recursive: true });
      const owner = `test-pod/${options.name}`;
      const network = await attachPodNetwork(node, netns, {
        owner,
        hostVeth: `vp${await shortHash(options.name)}`,
      });
      const address = network.ip;
      try {
        const command = options.command ??
          [
            Deno.execPath(),
            "run",
            "-A",
            "--unstable-net",
            echoServer,
            "--name",
            options.name,
            "--port",
            "8080",
          ];
        const pid = await spawnDetached(command, { netns, log });
        if (!options.command) {
          await waitFor(`echo server of pod ${options.name}`, async () => {
            const res = await run(["ss", "-Hltn", "sport = :8080"], { netns });
            return res.stdout.trim() !== "";
          }, { timeoutMs: 20_000, pid, log });
        }
        const pod: Pod = {
          name: options.name,
          node: node.name,
          netns,
          ip: address,
          pid,
          log,
        };
        state.pods[pod.name] = pod;
        await writeState(state);
        return pod;
      } catch (e) {
        await detachPodNetwork(node, network, owner);
        throw e;
      }
    });
  }

  /**
   * Sends one echo request (a TCP line or a UDP datagram) from inside
   * network namespace `netns` and returns the reply.
   */
  async echoFrom(netns: string, request: EchoRequest): Promise<string> {
    const res = await run([
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-net",
      echoClient,
      `--${request.protocol}`,
      `--timeout=${request.timeoutMs ?? 3000}`,
      request.host,
      String(request.port),
      request.text,
    ], { netns });
    return res.stdout.trim();
  }

  /** Stops a pod's process and removes its namespace. */
  async deletePod(name: string): Promise<void> {
    await withStateLock(this.name, async () => {
      const state = await readState(this.name);
      const pod = state.pods[name];
      if (!pod) return;
      await stopProcess(pod.pid);
      const node = this.nodes.find((n) => n.name === pod.node);
      if (node) await detachPodNetwork(node, pod, `test-pod/${name}`);
      else await removeNetns(pod.netns);
      await Deno.remove(pod.log).catch(() => {});
      delete state.pods[name];
      await writeState(state);
    });
  }
}

async function readState(name: string): Promise<ClusterState> {
  return JSON.parse(await Deno.readTextFile(stateFile(name))) as ClusterState;
}

async function writeState(state: ClusterState): Promise<void> {
  await writeFileAtomic(
    stateFile(state.name),
    JSON.stringify(state, null, 2) + "\n",
  );
}

/** Serialises changes to one cluster's state between processes (mkdir lock). */
async function withStateLock<T>(
  name: string,
  fn: () => Promise<T>,
): Promise<T> {
  const lock = `${clusterDir(name)}/.lock`;
  const deadline = Date.now() + 120_000;
  while (true) {
    try {
      await Deno.mkdir(lock);
      await Deno.writeTextFile(`${lock}/pid`, String(Deno.pid));
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      const holder = Number(
        await Deno.readTextFile(`${lock}/pid`).catch(() => "0"),
      );
      if (holder > 0 && !processAlive(holder)) {
        await Deno.remove(lock, { recursive: true }).catch(() => {});
        continue;
      }
      if (Date.now() > deadline) {
        throw new Error(`cluster ${name} is locked by pid ${holder}`);
      }
      await sleep(100);
    }
  }
  try {
    return await fn();
  } finally {
    await Deno.remove(lock, { recursive: true }).catch(() => {});
  }
}

/** Claims a free slot (an address block) for cluster `name`. */
async function claimSlot(name: string): Promise<number> {
  const slots = `${runDir()}/slots`;
  await Deno.mkdir(slots, { recursive: true });
  for (let slot = 0; slot < MAX_SLOTS; slot++) {
    try {
      await Deno.mkdir(`${slots}/${slot}`);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) continue;
      throw e;
    }
    await Deno.writeTextFile(`${slots}/${slot}/cluster`, name);
    return slot;
  }
  throw new Error(
    `all ${MAX_SLOTS} cluster slots are taken; run cluster:down on one`,
  );
}

/** The cluster called `name`, if it is up (its state exists). */
export async function getCluster(
  name = DEFAULT_NAME,
): Promise<Cluster | undefined> {
  name = clusterName(name);
  let state: ClusterState;
  try {
    state = await readState(name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  return new Cluster(
    name,
    addressPlan(state.slot, state.nodes),
    `${clusterDir(name)}/kubeconfig`,
    state.channel,
  );
}

/**
 * Brings cluster `name` up, or mends it if parts are missing; harmless when
 * it is already up. Resolves once the API server is ready, the Gateway API
 * CRDs are Established and every node is registered Ready.
 */
export async function clusterUp(
  options: ClusterUpOptions = {},
): Promise<Cluster> {
  const name = clusterName(options.name ?? DEFAULT_NAME);
  if (!/^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$/.test(name)) {
    throw new Error(
      `cluster name "${name}" must be a DNS label of at most 20 characters`,
    );
  }
  const log = options.log ?? (() => {});
  const dir = clusterDir(name);
  await Deno.mkdir(dir, { recursive: true });
  return await withStateLock(name, async () => {
    let state: ClusterState;
    try {
      state = await readState(name);
      if (options.nodes !== undefined && options.nodes !== state.nodes) {
        state.nodes = options.nodes;
      }
      if (options.channel !== undefined && options.channel !== state.channel) {
        throw new Error(
          `cluster ${name} has the ${state.channel} channel; cluster:down it to change channel`,
        );
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      state = {
        name,
        slot: await claimSlot(name),
        nodes: options.nodes ?? 2,
        channel: options.channel ?? "experimental",
        etcdPid: 0,
        apiserverPid: 0,
        pods: {},
      };
    }
    const plan = addressPlan(state.slot, state.nodes);
    await writeState(state);

    const binary = await ensureKubeBinary(log);
    const pki = await makePki(`${dir}/pki`, {
      serverIP: plan.bridgeIP,
      serviceIP: plan.kubernetesServiceIP,
    });
    await ensureBridge(plan);
    state.etcdPid = await ensureEtcd(
      binary.path,
      dir,
      plan,
      state.etcdPid,
      log,
    );
    state.apiserverPid = await ensureApiserver(
      binary.path,
      dir,
      plan,
      pki,
      state.apiserverPid,
      log,
    );
    await writeState(state);
    const kubeconfig = await writeKubeconfig(`${dir}/kubeconfig`, plan, pki, {
      name,
      user: "admin",
      cert: { cert: pki.adminCert, key: pki.adminKey },
    });
    const cluster = new Cluster(name, plan, kubeconfig, state.channel);
    const kc = cluster.kubeConfig();
    await installGatewayApiCrds(kc, state.channel, log);
    await removeExtraNodes(cluster, log);
    for (const node of cluster.nodes) {
      await ensureNode(cluster, node, kc);
    }
    await routeGatewayPool(plan);
    log(`${plan.nodes.length} nodes Ready`);
    state.servePods = options.pods ?? state.servePods ?? false;
    if (state.servePods) {
      await ensureImageBinaries(log);
      await ensurePodMachinery(cluster, state, pki, binary.path, log);
      await writeState(state);
    }
    return cluster;
  });
}

async function ensureBridge(plan: ClusterPlan): Promise<void> {
  const br = bridgeName(plan.slot);
  if (!(await linkExists(br))) {
    await ip(["link", "add", br, "type", "bridge"]);
    await ip(["addr", "add", `${plan.bridgeIP}/24`, "dev", br]);
  }
  await ip(["link", "set", br, "up"]);
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  options: { timeoutMs: number; pid?: number; log?: string },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    if (options.pid !== undefined && !processAlive(options.pid)) {
      const tail = options.log
        ? (await Deno.readTextFile(options.log).catch(() => "")).split("\n")
          .slice(-15).join("\n")
        : "";
      throw new Error(
        `${what} exited while starting; last lines of its log:\n${tail}`,
      );
    }
    await sleep(100);
  }
  throw new Error(`${what} was not ready within ${options.timeoutMs / 1000} s`);
}

async function ensureEtcd(
  binary: string,
  dir: string,
  plan: ClusterPlan,
  pid: number,
  log: (line: string) => void,
): Promise<number> {
  const ports = etcdPorts(plan.slot);
  const healthy = async () => {
    const res = await fetch(`http://127.0.0.1:${ports.client}/health`);
    const body = await res.json() as { health?: string };
    return body.health === "true";
  };
  if (pid > 0 && processAlive(pid) && (await healthy().catch(() => false))) {
    return pid;
  }
  if (pid > 0) await stopProcess(pid);
  // as for the API server: a killed etcd's threads may hold its ports a moment longer
  await waitListenerGone("127.0.0.1", ports.client);
  await waitListenerGone("127.0.0.1", ports.peer);
  log("starting etcd");
  const client = `http://127.0.0.1:${ports.client}`;
  const peer = `http://127.0.0.1:${ports.peer}`;
  const logFile = `${dir}/etcd.log`;
  const newPid = await spawnDetached([
    binary,
    "etcd",
    "--name=etcd",
    `--data-dir=${dir}/etcd`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=etcd=${peer}`,
    "--log-level=warn",
    "--quota-backend-bytes=2147483648",
    "--unsafe-no-fsync",
  ], { log: logFile });
  await waitFor("etcd", healthy, {
    timeoutMs: 30_000,
    pid: newPid,
    log: logFile,
  });
  return newPid;
}

/**
 * Whether kube-apiserver serves `/debug/pprof` (`BLIXT_APISERVER_PROFILING=1`):
 * for profiling its share of a write with `go tool pprof`. Read when the API
 * server starts; an API server already running keeps its flag.
 */
function apiserverProfiling(): boolean {
  return Deno.env.get("BLIXT_APISERVER_PROFILING") === "1";
}

function tlsClient(pki: Pki): Deno.HttpClient {
  return Deno.createHttpClient({
    caCerts: [Deno.readTextFileSync(pki.caCert)],
    cert: Deno.readTextFileSync(pki.adminCert),
    key: Deno.readTextFileSync(pki.adminKey),
  });
}

async function ensureApiserver(
  binary: string,
  dir: string,
  plan: ClusterPlan,
  pki: Pki,
  pid: number,
  log: (line: string) => void,
): Promise<number> {
  const client = tlsClient(pki);
  try {
    const ready = async () => {
      const res = await fetch(`https://${plan.bridgeIP}:6443/readyz`, {
        client,
      });
      await res.body?.cancel();
      return res.ok;
    };
    if (pid > 0 && processAlive(pid) && (await ready().catch(() => false))) {
      return pid;
    }
    if (pid > 0) await stopProcess(pid);
    // a killed one's threads may hold the port a moment after it shows as a zombie
    await waitListenerGone(plan.bridgeIP, 6443);
    log("starting kube-apiserver");
    const logFile = `${dir}/apiserver.log`;
    const newPid = await spawnDetached([
      binary,
      "apiserver",
      `--etcd-servers=http://127.0.0.1:${etcdPorts(plan.slot).client}`,
      `--bind-address=${plan.bridgeIP}`,
      `--advertise-address=${plan.bridgeIP}`,
      "--secure-port=6443",
      `--service-cluster-ip-range=${plan.serviceCIDR}`,
      `--client-ca-file=${pki.caCert}`,
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--service-account-key-file=${pki.serviceAccountPub}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      "--api-audiences=https://kubernetes.default.svc.cluster.local",
      "--authorization-mode=Node,RBAC",
      "--allow-privileged=true",
      // BLIXT_APISERVER_PROFILING=1: /debug/pprof on (docs/performance.md); off by default
      `--profiling=${apiserverProfiling()}`,
      "--enable-priority-and-fairness=false",
      `--cert-dir=${dir}/pki`,
      "--v=1",
    ], { log: logFile });
    await waitFor("kube-apiserver", ready, {
      timeoutMs: 90_000,
      pid: newPid,
      log: logFile,
    });
    return newPid;
  } finally {
    client.close();
  }
}

async function writeKubeconfig(
  path: string,
  plan: ClusterPlan,
  pki: Pki,
  who: { name: string; user: string; cert: ClientCert },
): Promise<string> {
  const name = who.name;
  const b64 = async (path: string) => btoa(await Deno.readTextFile(path));
  const context = `blixt-${name}`;
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{
      name: context,
      cluster: {
        server: `https://${plan.bridgeIP}:6443`,
        "certificate-authority-data": await b64(pki.caCert),
      },
    }],
    users: [{
      name: `${context}-${who.user}`,
      user: {
        "client-certificate-data": await b64(who.cert.cert),
        "client-key-data": await b64(who.cert.key),
      },
    }],
    contexts: [{
      name: context,
      context: { cluster: context, user: `${context}-${who.user}` },
    }],
    "current-context": context,
  };
  await writeFileAtomic(path, toYaml(config));
  await Deno.chmod(path, 0o600);
  return path;
}

/** Applies the pinned Gateway API CRDs of `channel` and waits for Established. */
async function installGatewayApiCrds(
  kc: k8s.KubeConfig,
  channel: GatewayApiChannel,
  log: (line: string) => void,
): Promise<void> {
  const files = await gatewayApiCrdFiles(channel);
  await applyManifestFiles(kc, files, { fieldManager: FIELD_MANAGER });
  log(`Gateway API ${GATEWAY_API_VERSION} CRDs (${channel}) Established`);
}

/** Creates (or mends) node `node`: namespace, uplink, pod bridge, routes, Node object. */
async function ensureNode(
  cluster: Cluster,
  node: ClusterNode,
  kc: k8s.KubeConfig,
): Promise<void> {
  const plan = cluster.plan;
  const ns = node.netns;
  if (!(await listNetns()).includes(ns)) await ip(["netns", "add", ns]);
  const peer = uplinkPeerName(plan.slot, node);
  if (!(await linkExists("eth0", { netns: ns }))) {
    if (await linkExists(peer)) await ip(["link", "del", peer]);
    await ip([
      "link",
      "add",
      peer,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      ns,
    ]);
  }
  await ip(["link", "set", peer, "master", bridgeName(plan.slot), "up"]);
  await ip(["link", "set", "lo", "up"], { netns: ns });
  await ip(["addr", "replace", `${node.ip}/24`, "dev", "eth0"], { netns: ns });
  await ip(["link", "set", "eth0", "up"], { netns: ns });
  if (!(await linkExists("cni0", { netns: ns }))) {
    await ip(["link", "add", "cni0", "type", "bridge"], { netns: ns });
  }
  await ip(["addr", "replace", `${node.podGateway}/24`, "dev", "cni0"], {
    netns: ns,
  });
  await ip(["link", "set", "cni0", "up"], { netns: ns });
  await run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], { netns: ns });
  // Routes to the other nodes' pods, as kindnet installs them.
  for (const other of plan.nodes) {
    if (other.index === node.index) continue;
    await ip(["route", "replace", other.podCIDR, "via", other.ip], {
      netns: ns,
    });
  }
  // The host (tests, the demo's client) reaches pods through their node.
  await ip(["route", "replace", node.podCIDR, "via", node.ip]);
  await ensureBpffs(node.bpffs);
  await registerNode(kc, node);
}

/**
 * The controllers that make Deployments, ReplicaSets, EndpointSlices,
 * garbage collection, namespaces and service accounts work, and node
 * lifecycle (which would evict pods from a node whose pod runner stops).
 */
export const CONTROLLERS = [
  "deployment-controller",
  "replicaset-controller",
  "endpointslice-controller",
  "endpointslice-mirroring-controller",
  "endpoints-controller",
  "garbage-collector-controller",
  "namespace-controller",
  "serviceaccount-controller",
  "serviceaccount-token-controller",
  "root-ca-certificate-publisher-controller",
  "clusterrole-aggregation-controller",
  "node-lifecycle-controller",
  "taint-eviction-controller",
  "pod-garbage-collector-controller",
];

const podRunner = new URL("./pod_runner.ts", import.meta.url).pathname;

/**
 * Starts (or keeps) kube-controller-manager, kube-scheduler and one pod
 * runner per node, each with a client certificate of its own, and waits
 * until namespace `default` has its ServiceAccount (pods need it).
 */
async function ensurePodMachinery(
  cluster: Cluster,
  state: ClusterState,
  pki: Pki,
  binary: string,
  log: (line: string) => void,
): Promise<void> {
  const dir = cluster.dir;
  const component = async (user: string, subject: string) =>
    await writeKubeconfig(`${dir}/${user}.kubeconfig`, cluster.plan, pki, {
      name: cluster.name,
      user,
      cert: await ensureClientCert(pki, user, subject),
    });
  if (!state.controllerManagerPid || !processAlive(state.controllerManagerPid)) {
    log("starting kube-controller-manager");
    const kubeconfig = await component("controller-manager", "/CN=system:kube-controller-manager");
    state.controllerManagerPid = await spawnDetached([
      binary,
      "controller-manager",
      `--kubeconfig=${kubeconfig}`,
      "--secure-port=0",
      "--leader-elect=false",
      "--use-service-account-credentials=true",
      `--service-account-private-key-file=${pki.serviceAccountKey}`,
      `--root-ca-file=${pki.caCert}`,
      `--controllers=${CONTROLLERS.join(",")}`,
      `--service-cluster-ip-range=${cluster.plan.serviceCIDR}`,
      "--v=1",
    ], { log: `${dir}/controller-manager.log` });
  }
  if (!state.schedulerPid || !processAlive(state.schedulerPid)) {
    log("starting kube-scheduler");
    const kubeconfig = await component("scheduler", "/CN=system:kube-scheduler");
    state.schedulerPid = await spawnDetached([
      binary,
      "scheduler",
      `--kubeconfig=${kubeconfig}`,
      "--secure-port=0",
      "--leader-elect=false",
      "--v=1",
    ], { log: `${dir}/scheduler.log` });
  }
  state.podRunnerPids ??= {};
  for (const node of cluster.nodes) {
    const pid = state.podRunnerPids[node.name];
    if (pid && processAlive(pid)) continue;
    await Deno.mkdir(`${dir}/nodes/${node.name}`, { recursive: true });
    const kubeconfig = await writeKubeconfig(
      `${dir}/nodes/${node.name}/kubeconfig`,
      cluster.plan,
      pki,
      {
        name: cluster.name,
        user: `node-${node.name}`,
        cert: await ensureClientCert(
          pki,
          `node-${node.name}`,
          `/O=system:nodes/CN=system:node:${node.name}`,
        ),
      },
    );
    // nsenter, not `ip netns exec`: the runner stays in the host's mount
    // namespace, so the pod namespaces it adds are visible to everyone.
    state.podRunnerPids[node.name] = await spawnDetached([
      "nsenter",
      `--net=/run/netns/${node.netns}`,
      Deno.execPath(),
      "run",
      "-A",
      podRunner,
      "--cluster",
      cluster.name,
      "--node",
      node.name,
      "--kubeconfig",
      kubeconfig,
    ], { log: `${dir}/nodes/${node.name}/pod-runner.log` });
  }
  log(`kube-controller-manager, kube-scheduler and ${cluster.nodes.length} pod runners running`);
  const api = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
  await waitFor("the ServiceAccount default/default", async () => {
    await api.readNamespacedServiceAccount({ name: "default", namespace: "default" });
    return true;
  }, { timeoutMs: 60_000, pid: state.controllerManagerPid, log: `${dir}/controller-manager.log` });
}

/**
 * Routes the Gateway address pool from the host to the nodes, spread over
 * all of them (ECMP), as a router in front of a cluster would: a Gateway
 * address then reaches whichever node's data plane the route picks.
 */
async function routeGatewayPool(plan: ClusterPlan): Promise<void> {
  const hops = plan.nodes.flatMap((n) => ["nexthop", "via", n.ip]);
  await ip(["route", "replace", plan.gatewayPool, ...hops]);
}

async function ensureBpffs(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  if ((await mountsUnder(dir)).includes(dir)) return;
  await run(["mount", "-t", "bpf", "bpf", dir]);
}

function nodeResources(): Record<string, string> {
  const meminfo = Deno.readTextFileSync("/proc/meminfo");
  const kib = Number(/^MemTotal:\s+(\d+) kB/m.exec(meminfo)?.[1] ?? "0");
  return {
    cpu: String(navigator.hardwareConcurrency),
    memory: `${kib}Ki`,
    pods: "110",
  };
}

async function registerNode(kc: k8s.KubeConfig, node: NodePlan): Promise<void> {
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const labels = {
    "kubernetes.io/hostname": node.name,
    "kubernetes.io/os": "linux",
    "kubernetes.io/arch": "amd64",
    "app.kubernetes.io/part-of": "blixt-local-cluster",
  };
  await applyObject(kc, {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: node.name, labels },
    spec: { podCIDR: node.podCIDR, podCIDRs: [node.podCIDR] },
  }, { fieldManager: FIELD_MANAGER, force: true });
  const api = kc.makeApiClient(k8s.CoreV1Api);
  const condition = (
    type: string,
    status: string,
    reason: string,
    message: string,
  ) => ({
    type,
    status,
    reason,
    message,
    lastHeartbeatTime: now,
    lastTransitionTime: now,
  });
  await api.patchNodeStatus({
    name: node.name,
    body: {
      status: {
        addresses: [
          { type: "InternalIP", address: node.ip },
          { type: "Hostname", address: node.name },
        ],
        conditions: [
          condition(
            "Ready",
            "True",
            "LocalClusterNodeReady",
            "network namespace is up",
          ),
          condition("MemoryPressure", "False", "NoPressure", ""),
          condition("DiskPressure", "False", "NoPressure", ""),
          condition("PIDPressure", "False", "NoPressure", ""),
          condition(
            "NetworkUnavailable",
            "False",
            "RoutesCreated",
            "pod CIDR routes are in place",
          ),
        ],
        // What the machine has, as kubelet reports it: the scheduler fits pods' requests to it.
        capacity: nodeResources(),
        allocatable: nodeResources(),
        nodeInfo: {
          architecture: "amd64",
          operatingSystem: "linux",
          kernelVersion: Deno.osRelease(),
          osImage: "blixt local cluster node (network namespace)",
          containerRuntimeVersion: "none://",
          kubeletVersion: "none",
          kubeProxyVersion: "",
          bootID: "",
          machineID: "",
          systemUUID: "",
        },
      },
    },
  }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
}

async function removeExtraNodes(
  cluster: Cluster,
  log: (line: string) => void,
): Promise<void> {
  const wanted = new Set(cluster.nodes.map((n) => n.netns));
  const prefix = `blixt-${cluster.name}-node-`;
  for (const ns of await listNetns()) {
    if (!ns.startsWith(prefix) || wanted.has(ns)) continue;
    const node = ns.slice(`blixt-${cluster.name}-`.length);
    log(`removing ${node}`);
    await removeNetns(ns);
    const index = Number(node.slice("node-".length));
    const peer = `blx${cluster.plan.slot}n${index}`;
    if (await linkExists(peer)) await ip(["link", "del", peer]);
    const bpffs = `${cluster.dir}/nodes/${node}/bpffs`;
    for (const m of await mountsUnder(bpffs)) await run(["umount", m]);
    await Deno.remove(`${cluster.dir}/nodes/${node}`, { recursive: true })
      .catch(() => {});
    await cluster.kubeConfig().makeApiClient(k8s.CoreV1Api).deleteNode({
      name: node,
    })
      .catch(() => {});
  }
}

/**
 * Removes cluster `name` and everything it made: processes, pods and node
 * namespaces, links, routes, mounts and its state directory.
 */
export async function clusterDown(
  name = DEFAULT_NAME,
  options: { log?: (line: string) => void } = {},
): Promise<void> {
  name = clusterName(name);
  const log = options.log ?? (() => {});
  const dir = clusterDir(name);
  let state: ClusterState | undefined;
  try {
    state = await readState(name);
  } catch {
    state = undefined;
  }
  // The pod runners first (they would restart what goes next), then the controllers.
  for (const pid of Object.values(state?.podRunnerPids ?? {})) await stopProcess(pid);
  if (state?.controllerManagerPid) await stopProcess(state.controllerManagerPid);
  if (state?.schedulerPid) await stopProcess(state.schedulerPid);
  // Pods and nodes first, so nothing writes to the API server during shutdown.
  for (const ns of await listNetns()) {
    if (ns.startsWith(`blixt-${name}-pod-`)) await removeNetns(ns);
  }
  for (const ns of await listNetns()) {
    if (ns.startsWith(`blixt-${name}-node-`)) await removeNetns(ns);
  }
  // Whatever else runs against this cluster (an operator, a test's helper) goes too.
  for (const pid of await processesMentioning(`${dir}/`)) {
    if (pid !== state?.apiserverPid && pid !== state?.etcdPid) await stopProcess(pid);
  }
  if (state) {
    await stopProcess(state.apiserverPid);
    await stopProcess(state.etcdPid);
  }
  const slot = state?.slot ?? await slotOf(name);
  if (slot !== undefined) {
    for (let i = 1; i <= MAX_NODES; i++) {
      const peer = `blx${slot}n${i}`;
      if (await linkExists(peer)) await ip(["link", "del", peer]);
    }
    // The host's routes to pods go with the bridge they point through.
    const br = bridgeName(slot);
    if (await linkExists(br)) await ip(["link", "del", br]);
    await Deno.remove(`${runDir()}/slots/${slot}`, { recursive: true }).catch(
      () => {},
    );
  }
  for (const m of await mountsUnder(dir)) await run(["umount", m]);
  await Deno.remove(dir, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await removeIfEmpty(`${runDir()}/clusters`);
  await removeIfEmpty(`${runDir()}/slots`);
  await removeIfEmpty(runDir());
  log(`cluster ${name} is down`);
}

/** Pids of the processes (other than this one) whose command line contains `text`. */
async function processesMentioning(text: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (cmdline.replaceAll("\0", " ").includes(text)) pids.push(Number(entry.name));
  }
  return pids;
}

async function slotOf(name: string): Promise<number | undefined> {
  for (let slot = 0; slot < MAX_SLOTS; slot++) {
    const owner = await Deno.readTextFile(`${runDir()}/slots/${slot}/cluster`)
      .catch(() => "");
    if (owner === name) return slot;
  }
  return undefined;
}

async function removeIfEmpty(dir: string): Promise<void> {
  try {
    await Deno.remove(dir);
  } catch {
    // not empty, or not there
  }
}
