/**
 * The local cluster's pod runner: what stands in for kubelet and a container
 * runtime on a node (these machines have neither). One runs per node, in the
 * node's network namespace, with the node's credentials
 * (`system:node:<name>`, so the API server's Node authorizer limits it as it
 * limits kubelet).
 *
 * ```
 * API server ──watch pods spec.nodeName=<node>──► runner ──► one worker per pod (uid)
 *     ▲                                               │        │ images.ts: image -> binary (or ErrImagePull)
 *     │ pod status (phase, IPs, conditions,           │        │ pod_network.ts: netns + veth + address
 *     │ container states), final delete               │        │ pod_spec.ts: env, argv, volume files
 *     └───────────────────────────────────────────────┤        │ pod_container.ts: process, probes, stop
 *       Lease kube-node-lease/<node> every 10 s,       │        ▼
 *       Node Ready heartbeat every 60 s  ◄─────────────┘   pod_status.ts: status to write
 * ```
 *
 * Usage: `deno run -A tests/cluster/pod_runner.ts --cluster NAME --node NODE --kubeconfig FILE`
 * (started by `clusterUp`, inside the node's network namespace).
 *
 * @module
 */

import { k8s, loadKubeConfig } from "../../kube/client.ts";
import { Informer } from "../../kube/informer.ts";
import { microTime } from "../../kube/leader_election.ts";
import { errorMessage } from "../../kube/log.ts";
import { ApiError, requestJson } from "../../kube/rest.ts";
import { type Cluster, type ClusterNode, getCluster } from "./cluster.ts";
import { type ImageBinary, imageBinaryPath, ImageNotFoundError, resolveImage } from "./images.ts";
import { ContainerProcess, runProbe, startContainer } from "./pod_container.ts";
import {
  addressLeases,
  attachPodNetwork,
  detachPodNetwork,
  type PodNetwork,
  removeNetns,
  shortHash,
} from "./pod_network.ts";
import {
  type BindMount,
  containerArgv,
  containerEnv,
  type ContainerSpec,
  type KeyValues,
  type PodContext,
  type PodObject,
  PodSpecError,
  type Probe,
  referencedObjects,
  volumeContent,
} from "./pod_spec.ts";
import { type ContainerObservation, type ContainerState, podStatus } from "./pod_status.ts";

const LEASE_SECONDS = 40;
const LEASE_RENEW_MS = 10_000;
const NODE_STATUS_MS = 60_000;
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

function log(level: string, msg: string, fields: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
}

/** Restart back-off of a container that keeps ending: 0 s, then 10 s doubling to 300 s. */
export function restartDelayMs(restartCount: number): number {
  if (restartCount === 0) return 0;
  return Math.min(300_000, 10_000 * 2 ** (restartCount - 1));
}

/** One container of a pod, as the worker tracks it. */
class ContainerRun {
  process: ContainerProcess | undefined;
  state: ContainerState = { waiting: { reason: "ContainerCreating" } };
  lastState: ContainerState | undefined;
  restartCount = 0;
  ready = false;
  willRestart = false;
  env: Record<string, string> = {};
  probeTimers: ReturnType<typeof setTimeout>[] = [];
  restartTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly spec: ContainerSpec) {}

  observation(): ContainerObservation {
    return {
      name: this.spec.name,
      image: this.spec.image,
      state: this.state,
      ...(this.lastState ? { lastState: this.lastState } : {}),
      ready: this.ready,
      restartCount: this.restartCount,
      willRestart: this.willRestart,
    };
  }

  clearTimers(): void {
    for (const t of this.probeTimers) clearTimeout(t);
    this.probeTimers = [];
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
  }
}

/** Serves one pod (by uid) from creation to its final delete. */
class PodWorker {
  pod: PodObject;
  #runner: PodRunner;
  #queue: Promise<void> = Promise.resolve();
  #network: PodNetwork | undefined;
  #containers = new Map<string, ContainerRun>();
  #startTime = now();
  #lastWritten = "";
  #started = false;
  #finished = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #timersStopped = false;
  #ctx: PodContext | undefined;

  constructor(runner: PodRunner, pod: PodObject) {
    this.#runner = runner;
    this.pod = pod;
    for (const c of pod.spec.containers) this.#containers.set(c.name, new ContainerRun(c));
  }

  get uid(): string {
    return this.pod.metadata.uid;
  }

  get #key(): string {
    return `${this.pod.metadata.namespace}/${this.pod.metadata.name}`;
  }

  get #dir(): string {
    return `${this.#runner.nodeDir}/pods/${this.uid}`;
  }

  get #owner(): string {
    return `pod/${this.uid}/${this.#netnsName}`;
  }

  get #netnsName(): string {
    const m = this.pod.metadata;
    return `blixt-${this.#runner.cluster.name}-pod-${m.namespace}_${m.name}_${m.uid.slice(0, 8)}`;
  }

  /** Runs `fn` after everything queued before it (one thing at a time per pod). */
  enqueue(fn: () => Promise<void>): Promise<void> {
    this.#queue = this.#queue.then(fn).catch((e) => {
      // As kubelet does, a failed step (e.g. a token request the node authorizer refuses until
      // it has seen the pod bound to this node) is tried again: the reconcile is level-based.
      log("error", "pod worker step failed; retrying", { pod: this.#key, error: errorMessage(e) });
      this.#retryLater(2000);
    });
    return this.#queue;
  }

  update(pod: PodObject): void {
    this.pod = pod;
    void this.enqueue(() => this.#reconcile());
  }

  /** The pod is gone from the API (deleted without grace): stop everything now. */
  gone(): Promise<void> {
    return this.enqueue(() => this.#terminate(0, false));
  }

  /** Stops the worker's timers (the runner stops; processes stay, as with kubelet). */
  stopTimers(): void {
    this.#timersStopped = true;
    clearTimeout(this.#retryTimer);
    for (const c of this.#containers.values()) c.clearTimers();
  }

  async #reconcile(): Promise<void> {
    if (this.#finished) return;
    const m = this.pod.metadata;
    if (m.deletionTimestamp) {
      const grace = m.deletionGracePeriodSeconds ?? this.pod.spec.terminationGracePeriodSeconds ??
        30;
      await this.#terminate(grace, true);
      return;
    }
    if (!this.#started) await this.#start();
    await this.#writeStatus();
  }

  #retryLater(ms: number): void {
    if (this.#timersStopped || this.#finished) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => void this.enqueue(() => this.#reconcile()), ms);
  }

  #waitAll(reason: string, message: string): void {
    for (const c of this.#containers.values()) c.state = { waiting: { reason, message } };
  }

  async #start(): Promise<void> {
    const spec = this.pod.spec;
    if (spec.hostNetwork) {
      this.#waitAll(
        "CreateContainerConfigError",
        "hostNetwork pods are not supported by the pod runner",
      );
      return;
    }
    if (spec.initContainers?.length) {
      this.#waitAll(
        "CreateContainerConfigError",
        "initContainers are not supported by the pod runner",
      );
      return;
    }
    // Images first: an image with no binary cannot run, whatever else is right.
    const images = new Map<string, { image: ImageBinary; path: string }>();
    let pullError = false;
    for (const c of spec.containers) {
      try {
        const image = resolveImage(c.image);
        const path = await imageBinaryPath(image);
        try {
          await Deno.stat(path);
        } catch {
          throw new ImageNotFoundError(
            c.image,
            `is not built yet (${path} is missing; clusterUp builds it)`,
          );
        }
        images.set(c.name, { image, path });
      } catch (e) {
        if (!(e instanceof ImageNotFoundError)) throw e;
        pullError = true;
        const run = this.#containers.get(c.name);
        if (run) run.state = { waiting: { reason: "ErrImagePull", message: e.message } };
      }
    }
    if (pullError) {
      log("warn", "image has no binary", { pod: this.#key });
      return;
    }
    // What the spec refers to; a missing one waits (kubelet retries the mount).
    let ctx: PodContext;
    try {
      ctx = await this.#context();
    } catch (e) {
      if (e instanceof PodSpecError) {
        this.#waitAll("ContainerCreating", e.message);
        this.#retryLater(2000);
        return;
      }
      throw e;
    }
    if (!this.#network) {
      this.#network = await attachPodNetwork(this.#runner.node, this.#netnsName, {
        owner: this.#owner,
        hostVeth: `vp${await shortHash(this.uid)}`,
      });
      log("info", "pod network attached", { pod: this.#key, ip: this.#network.ip });
    }
    ctx.podIP = this.#network.ip;
    this.#ctx = ctx;
    let mounts: Map<string, BindMount[]>;
    try {
      mounts = await this.#writeVolumes(ctx);
    } catch (e) {
      if (e instanceof PodSpecError) {
        this.#waitAll(e.reason, e.message);
        if (e.reason === "ContainerCreating") this.#retryLater(2000);
        return;
      }
      throw e;
    }
    this.#started = true;
    for (const c of spec.containers) {
      const run = this.#containers.get(c.name);
      const image = images.get(c.name);
      if (!run || !image) continue;
      try {
        run.env = containerEnv(this.pod, c, ctx);
        this.#launch(
          run,
          containerArgv(c, image.image, image.path, run.env),
          mounts.get(c.name) ?? [],
        );
      } catch (e) {
        if (!(e instanceof PodSpecError)) throw e;
        run.state = { waiting: { reason: e.reason, message: e.message } };
      }
    }
  }

  async #context(): Promise<PodContext> {
    const refs = referencedObjects(this.pod);
    const ns = this.pod.metadata.namespace;
    const configMaps = new Map<string, KeyValues>();
    const secrets = new Map<string, KeyValues>();
    for (const name of refs.configMaps) {
      const cm = await this.#runner.getOptional<{ data?: KeyValues }>(
        `/api/v1/namespaces/${ns}/configmaps/${name}`,
      );
      if (cm) configMaps.set(name, cm.data ?? {});
    }
    for (const name of refs.secrets) {
      const secret = await this.#runner.getOptional<{ data?: KeyValues }>(
        `/api/v1/namespaces/${ns}/secrets/${name}`,
      );
      if (secret) {
        const data: KeyValues = {};
        for (const [k, v] of Object.entries(secret.data ?? {})) {
          data[k] = new TextDecoder().decode(Uint8Array.from(atob(v), (ch) => ch.charCodeAt(0)));
        }
        secrets.set(name, data);
      }
    }
    const plan = this.#runner.cluster.plan;
    return {
      podIP: "",
      hostIP: this.#runner.node.ip,
      nodeName: this.#runner.node.name,
      configMaps,
      secrets,
      baseEnv: {
        PATH: DEFAULT_PATH,
        HOSTNAME: this.pod.metadata.name,
        // No kube-proxy here: ClusterIPs do not route, so pods reach the API server directly.
        KUBERNETES_SERVICE_HOST: plan.bridgeIP,
        KUBERNETES_SERVICE_PORT: "6443",
        KUBERNETES_SERVICE_PORT_HTTPS: "6443",
      },
    };
  }

  /** Writes every volume's files under the pod's directory; returns each container's mounts. */
  async #writeVolumes(ctx: PodContext): Promise<Map<string, BindMount[]>> {
    const volumes = new Map<string, string>();
    const files = new Set<string>();
    const token = async (audience: string, seconds: number) =>
      await this.#runner.token(this.pod, audience, seconds);
    for (const v of this.pod.spec.volumes ?? []) {
      const content = await volumeContent(this.pod, v, { ...ctx, token });
      const dir = `${this.#dir}/volumes/${v.name}`;
      await Deno.mkdir(dir, { recursive: true });
      if (content.kind === "files") {
        for (const f of content.files) {
          const path = `${dir}/${f.path}`;
          await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
          await Deno.writeTextFile(path, f.content, { mode: f.mode });
          await Deno.chmod(path, f.mode);
          files.add(path);
        }
      }
      volumes.set(v.name, dir);
    }
    const mounts = new Map<string, BindMount[]>();
    for (const c of this.pod.spec.containers) {
      const list: BindMount[] = [];
      for (const vm of c.volumeMounts ?? []) {
        const dir = volumes.get(vm.name);
        if (!dir) {
          throw new PodSpecError(
            "CreateContainerConfigError",
            `volume "${vm.name}" is not in the pod's volumes`,
          );
        }
        const source = vm.subPath ? `${dir}/${vm.subPath}` : dir;
        if (vm.subPath && !files.has(source)) await Deno.mkdir(source, { recursive: true });
        list.push({
          source,
          target: vm.mountPath,
          readOnly: vm.readOnly ?? false,
          file: files.has(source),
        });
      }
      mounts.set(c.name, list);
    }
    return mounts;
  }

  #launch(run: ContainerRun, argv: string[], mounts: BindMount[]): void {
    const network = this.#network;
    if (!network) return;
    const logDir = `${this.#dir}/containers`;
    Deno.mkdirSync(logDir, { recursive: true });
    const logFile = `${logDir}/${run.spec.name}.log`;
    const overlayDir = `${this.#dir}/overlay/${run.spec.name}-${run.restartCount}`;
    let process: ContainerProcess;
    try {
      process = startContainer({
        netns: network.netns,
        argv,
        env: run.env,
        mounts,
        overlayDir,
        hostname: this.pod.metadata.name,
        logFile,
        workingDir: run.spec.workingDir ?? "/",
      });
    } catch (e) {
      run.state = { waiting: { reason: "RunContainerError", message: errorMessage(e) } };
      return;
    }
    run.process = process;
    run.state = { running: { startedAt: process.startedAt } };
    run.ready = !run.spec.readinessProbe;
    run.willRestart = false;
    log("info", "container started", {
      pod: this.#key,
      container: run.spec.name,
      pid: process.pid,
    });
    this.#scheduleProbes(run, process, network.ip);
    process.exited.then((exit) =>
      this.enqueue(async () => {
        if (run.process !== process) return;
        run.clearTimers();
        run.process = undefined;
        run.ready = false;
        const policy = this.pod.spec.restartPolicy ?? "Always";
        const failed = exit.exitCode !== 0;
        run.state = {
          terminated: {
            exitCode: exit.exitCode,
            ...(exit.signal !== undefined ? { signal: exit.signal } : {}),
            reason: failed ? "Error" : "Completed",
            ...(failed && exit.tail ? { message: exit.tail } : {}),
            startedAt: exit.startedAt,
            finishedAt: exit.finishedAt,
          },
        };
        log("info", "container ended", {
          pod: this.#key,
          container: run.spec.name,
          exitCode: exit.exitCode,
        });
        const restart = !this.#finished && !this.pod.metadata.deletionTimestamp &&
          (policy === "Always" || (policy === "OnFailure" && failed));
        run.willRestart = restart;
        if (restart) {
          const delay = restartDelayMs(run.restartCount);
          run.lastState = run.state;
          if (delay > 0) {
            run.state = {
              waiting: {
                reason: "CrashLoopBackOff",
                message: `back-off ${
                  delay / 1000
                }s restarting failed container=${run.spec.name} pod=${this.pod.metadata.name}`,
              },
            };
          }
          run.restartTimer = setTimeout(() =>
            void this.enqueue(async () => {
              if (this.#finished || this.pod.metadata.deletionTimestamp) return;
              run.restartCount++;
              this.#launch(run, argv, mounts);
              await this.#writeStatus();
            }), delay);
        }
        await this.#writeStatus();
      })
    );
  }

  #scheduleProbes(run: ContainerRun, process: ContainerProcess, podIP: string): void {
    const loop = (probe: Probe, kind: "readiness" | "liveness") => {
      let successes = 0, failures = 0;
      const tick = async () => {
        if (run.process !== process) return;
        const result = await runProbe(probe, run.spec, { podIP, pid: process.pid, env: run.env });
        if (run.process !== process) return;
        if (result.ok) {
          successes++;
          failures = 0;
        } else {
          failures++;
          successes = 0;
        }
        if (kind === "readiness") {
          const before = run.ready;
          if (result.ok && successes >= (probe.successThreshold ?? 1)) run.ready = true;
          if (!result.ok && failures >= (probe.failureThreshold ?? 3)) run.ready = false;
          if (before !== run.ready) void this.enqueue(() => this.#writeStatus());
        } else if (!result.ok && failures >= (probe.failureThreshold ?? 3)) {
          log("info", "liveness probe failed; restarting", {
            pod: this.#key,
            container: run.spec.name,
            message: result.message,
          });
          void process.stop(this.pod.spec.terminationGracePeriodSeconds ?? 30);
          return;
        }
        run.probeTimers.push(setTimeout(tick, (probe.periodSeconds ?? 10) * 1000));
      };
      run.probeTimers.push(setTimeout(tick, (probe.initialDelaySeconds ?? 0) * 1000));
    };
    if (run.spec.readinessProbe) loop(run.spec.readinessProbe, "readiness");
    if (run.spec.livenessProbe) loop(run.spec.livenessProbe, "liveness");
  }

  async #writeStatus(): Promise<void> {
    if (this.#finished) return;
    const seen = {
      podIP: this.#network?.ip,
      hostIP: this.#runner.node.ip,
      startTime: this.pod.status?.startTime ?? this.#startTime,
      containers: [...this.#containers.values()].map((c) => c.observation()),
    };
    const status = podStatus(this.pod, seen, now());
    // Compare without transition times: they only move when a status does.
    const key = JSON.stringify(status, (k, v) => (k === "lastTransitionTime" ? undefined : v));
    if (key === this.#lastWritten) return;
    const m = this.pod.metadata;
    try {
      const written = await requestJson<PodObject>(
        this.#runner.kc,
        `/api/v1/namespaces/${m.namespace}/pods/${m.name}/status`,
        {
          method: "PATCH",
          contentType: "application/merge-patch+json",
          body: { metadata: { uid: m.uid }, status },
        },
      );
      this.#lastWritten = key;
      if (written.metadata.uid === this.uid) {
        this.pod = { ...this.pod, status: written.status ?? {} };
      }
    } catch (e) {
      if (e instanceof ApiError && (e.code === 404 || e.code === 409)) return;
      log("warn", "pod status write failed; retrying", { pod: this.#key, error: errorMessage(e) });
      this.#retryLater(1000);
    }
  }

  /** Stops the containers (SIGTERM, SIGKILL after `grace` s), removes the network, then the Pod. */
  async #terminate(grace: number, deleteObject: boolean): Promise<void> {
    if (this.#finished) return;
    clearTimeout(this.#retryTimer);
    for (const run of this.#containers.values()) run.clearTimers();
    await Promise.all([...this.#containers.values()].map(async (run) => {
      const process = run.process;
      if (!process) return;
      const exit = await process.stop(grace);
      run.process = undefined;
      run.ready = false;
      run.state = {
        terminated: {
          exitCode: exit.exitCode,
          ...(exit.signal !== undefined ? { signal: exit.signal } : {}),
          reason: exit.exitCode === 0 ? "Completed" : "Error",
          startedAt: exit.startedAt,
          finishedAt: exit.finishedAt,
        },
      };
    }));
    if (deleteObject) await this.#writeStatus();
    this.#finished = true;
    await detachPodNetwork(
      this.#runner.node,
      this.#network ?? { netns: this.#netnsName },
      this.#owner,
    );
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
    log("info", "pod stopped and cleaned up", { pod: this.#key });
    if (deleteObject) {
      // The first delete with grace 0 of a terminating pod may only shorten its grace
      // period; kubelet deletes again until the pod is gone, and so does the runner.
      // (DeleteOptions go in the query: Deno's node:http drops a DELETE's body.)
      const m = this.pod.metadata;
      const path = `/api/v1/namespaces/${m.namespace}/pods/${m.name}`;
      for (let attempt = 0; attempt < 20; attempt++) {
        const current = await this.#runner.getOptional<PodObject>(path);
        if (current?.metadata.uid !== m.uid) break;
        try {
          await requestJson(this.#runner.kc, path, {
            method: "DELETE",
            query: { gracePeriodSeconds: 0 },
          });
        } catch (e) {
          if (e instanceof ApiError && e.code === 404) break;
          throw e;
        }
        await new Promise((resolve) => setTimeout(resolve, 100 * (attempt + 1)));
      }
    }
    this.#runner.forget(this.uid);
  }
}

/** Options of {@link PodRunner}. */
export interface PodRunnerOptions {
  cluster: Cluster;
  node: ClusterNode;
  kc: k8s.KubeConfig;
}

/** The pod runner of one node (see the module doc). */
export class PodRunner {
  readonly cluster: Cluster;
  readonly node: ClusterNode;
  readonly kc: k8s.KubeConfig;
  #pods: Informer;
  #workers = new Map<string, PodWorker>();
  #stop = new AbortController();
  #heartbeat: Promise<void> | undefined;

  constructor(options: PodRunnerOptions) {
    this.cluster = options.cluster;
    this.node = options.node;
    this.kc = options.kc;
    this.#pods = new Informer(this.kc, { apiVersion: "v1", kind: "Pod" }, {
      fieldSelector: `spec.nodeName=${this.node.name}`,
    });
  }

  /** Directory of this node's pods' files. */
  get nodeDir(): string {
    return `${this.cluster.dir}/nodes/${this.node.name}`;
  }

  /** Starts heart-beating and serving pods; resolves once the pods are listed. */
  async start(): Promise<void> {
    this.#heartbeat = this.#heartbeatLoop();
    await this.#cleanUpLeftovers();
    const handle = (obj: unknown) => {
      const pod = obj as PodObject;
      const uid = pod.metadata.uid;
      let worker = this.#workers.get(uid);
      if (!worker) {
        const phase = pod.status?.phase;
        // A pod that finished before this runner started stays as it is.
        if ((phase === "Succeeded" || phase === "Failed") && !pod.metadata.deletionTimestamp) {
          return;
        }
        worker = new PodWorker(this, pod);
        this.#workers.set(uid, worker);
      }
      worker.update(pod);
    };
    this.#pods.on("add", handle);
    this.#pods.on("update", handle);
    this.#pods.on("delete", (obj) => {
      const worker = this.#workers.get((obj as unknown as PodObject).metadata.uid);
      if (worker) void worker.gone();
    });
    this.#pods.start();
    await this.#pods.synced;
    log("info", "pod runner serving", { node: this.node.name, pods: this.#pods.list().length });
  }

  /** Stops watching and heart-beating (containers keep running, as when kubelet stops). */
  async stop(): Promise<void> {
    this.#stop.abort();
    for (const w of this.#workers.values()) w.stopTimers();
    await this.#pods.stop();
    await this.#heartbeat;
  }

  forget(uid: string): void {
    this.#workers.delete(uid);
  }

  /** GETs `path`; undefined when it does not exist (403 too: the Node authorizer's graph may lag). */
  async getOptional<T>(path: string): Promise<T | undefined> {
    try {
      return await requestJson<T>(this.kc, path);
    } catch (e) {
      if (e instanceof ApiError && (e.code === 404 || e.code === 403)) return undefined;
      throw e;
    }
  }

  /** A service account token bound to `pod`, as kubelet requests it for projected volumes. */
  async token(pod: PodObject, audience: string, seconds: number): Promise<string> {
    const m = pod.metadata;
    const sa = pod.spec.serviceAccountName ?? "default";
    const res = await requestJson<{ status?: { token?: string } }>(
      this.kc,
      `/api/v1/namespaces/${m.namespace}/serviceaccounts/${sa}/token`,
      {
        method: "POST",
        body: {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenRequest",
          spec: {
            ...(audience ? { audiences: [audience] } : {}),
            expirationSeconds: Math.max(600, seconds),
            boundObjectRef: { apiVersion: "v1", kind: "Pod", name: m.name, uid: m.uid },
          },
        },
      },
    );
    return res.status?.token ?? "";
  }

  /** Pod networks of this node left by an earlier runner: their processes are not ours to watch. */
  async #cleanUpLeftovers(): Promise<void> {
    for (const [address, owner] of await addressLeases(this.node)) {
      const m = /^pod\/([^/]+)\/(.+)$/.exec(owner);
      if (!m?.[2]) continue;
      log("info", "removing a pod network left by an earlier runner", { netns: m[2], ip: address });
      await removeNetns(m[2]);
      await detachPodNetwork(this.node, { netns: m[2], ip: address }, owner);
      await Deno.remove(`${this.nodeDir}/pods/${m[1]}`, { recursive: true }).catch(() => {});
    }
  }

  async #heartbeatLoop(): Promise<void> {
    const signal = this.#stop.signal;
    let lastNodeStatus = 0;
    while (!signal.aborted) {
      try {
        await this.#renewLease();
        if (Date.now() - lastNodeStatus >= NODE_STATUS_MS) {
          await this.#postNodeReady();
          lastNodeStatus = Date.now();
        }
      } catch (e) {
        if (signal.aborted) break;
        log("warn", "node heartbeat failed", { error: errorMessage(e) });
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, LEASE_RENEW_MS);
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    }
  }

  async #renewLease(): Promise<void> {
    const name = this.node.name;
    const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`;
    const signal = this.#stop.signal;
    const lease = await requestJson<Record<string, unknown> & { spec?: Record<string, unknown> }>(
      this.kc,
      path,
      { signal },
    ).catch((e) => {
      if (e instanceof ApiError && e.code === 404) return undefined;
      throw e;
    });
    const spec = {
      holderIdentity: name,
      leaseDurationSeconds: LEASE_SECONDS,
      renewTime: microTime(),
    };
    if (lease) {
      await requestJson(this.kc, path, {
        method: "PUT",
        body: { ...lease, spec: { ...lease.spec, ...spec } },
        signal,
      });
      return;
    }
    const node = await requestJson<{ metadata: { uid: string } }>(
      this.kc,
      `/api/v1/nodes/${name}`,
      { signal },
    );
    await requestJson(this.kc, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
      method: "POST",
      body: {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: {
          name,
          namespace: "kube-node-lease",
          ownerReferences: [{ apiVersion: "v1", kind: "Node", name, uid: node.metadata.uid }],
        },
        spec,
      },
      signal,
    });
  }

  async #postNodeReady(): Promise<void> {
    const t = now();
    await requestJson(this.kc, `/api/v1/nodes/${this.node.name}/status`, {
      method: "PATCH",
      contentType: "application/strategic-merge-patch+json",
      body: {
        status: {
          conditions: [{
            type: "Ready",
            status: "True",
            reason: "PodRunnerReady",
            message: "blixt's pod runner is posting ready status",
            lastHeartbeatTime: t,
          }],
        },
      },
      signal: this.#stop.signal,
    });
  }
}

function flag(args: string[], name: string): string {
  const i = args.indexOf(`--${name}`);
  const value = i >= 0 ? args[i + 1] : undefined;
  if (!value) throw new Error(`pod_runner: --${name} is required`);
  return value;
}

async function main(args: string[]): Promise<void> {
  const clusterName = flag(args, "cluster");
  const nodeName = flag(args, "node");
  const kubeconfig = flag(args, "kubeconfig");
  const cluster = await getCluster(clusterName);
  if (!cluster) throw new Error(`cluster ${clusterName} is not up`);
  const node = cluster.nodes.find((n) => n.name === nodeName);
  if (!node) throw new Error(`cluster ${clusterName} has no node ${nodeName}`);
  const runner = new PodRunner({ cluster, node, kc: loadKubeConfig({ kubeconfig }) });
  const stopped = new Promise<void>((resolve) => {
    for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => resolve());
  });
  await runner.start();
  await stopped;
  log("info", "pod runner stopping", { node: nodeName });
  await runner.stop();
  Deno.exit(0);
}

if (import.meta.main) await main(Deno.args);
