/**
 * `deno task deploy` and `deno task undeploy`: blixt onto a cluster and off it.
 *
 * ```
 * deploy:   Gateway API CRDs (pinned; only when missing or older; gateway_api.ts)
 *        -> blixt's CRDs (crds.ts), wait until served
 *        -> namespace.yaml, rbac.yaml, operator.yaml, agent.yaml, gateway_class.yaml
 *           (server-side apply, field manager blixt-deploy; each object reported
 *            created | configured | unchanged from its resourceVersion)
 *        -> wait for the operator Deployment and agent DaemonSet, bounded, and
 *           only where a node can run pods
 * undeploy: operator and agent -> Gateways' blixt finalizer, RoutingTables,
 *           DataplaneNodes -> GatewayClass and config -> RBAC -> namespace
 *           (-> blixt's CRDs with `crds`; the Gateway API CRDs are never removed)
 * ```
 *
 * @module
 */

import { isDeepStrictEqual } from "node:util";
import { apiStatus, applyObject, k8s, type KubeObject, readObject } from "../kube/client.ts";
import { parseManifests, waitForCrdsEstablished } from "../kube/manifests.ts";
import {
  GATEWAY_API_VERSION,
  type GatewayApiChannel,
  gatewayApiCrdFiles,
} from "../tests/cluster/binaries.ts";
import workspace from "../deno.json" with { type: "json" };
import { applyBlixtCrds, blixtCrdFiles } from "./crds.ts";
import {
  BUNDLE_VERSION_ANNOTATION,
  CHANNEL_ANNOTATION,
  type GatewayApiPlan,
  isGatewayApiCrd,
  planGatewayApiCrds,
} from "./gateway_api.ts";

/** Field manager of everything deploy applies. */
export const FIELD_MANAGER = "blixt-deploy";
/** Namespace of blixt's components. */
export const NAMESPACE = "blixt-system";
/** Registry and path prefix of blixt's images in the manifests. */
export const DEFAULT_REGISTRY = "ghcr.io/blixt-dev";
/** Image tag in the manifests: the workspace version. */
export const DEFAULT_IMAGE_TAG = workspace.version;
/** Objects with this annotation set to `create-only` are created once, never overwritten. */
export const DEPLOY_ANNOTATION = "blixt.dev/deploy";
/** The finalizer the operator puts on Gateways it programs. */
export const GATEWAY_FINALIZER = "blixt.dev/routing-table";

const here = new URL("./", import.meta.url).pathname;

/** blixt's manifests (besides its CRDs), in the order deploy applies them. */
export const MANIFEST_FILES: readonly string[] = [
  "namespace.yaml",
  "rbac.yaml",
  "operator.yaml",
  "agent.yaml",
  "gateway_class.yaml",
].map((f) => `${here}${f}`);

/** Paths of the samples (`manifests/samples/*.yaml`), sorted. */
export function sampleFiles(): string[] {
  return [...Deno.readDirSync(`${here}samples`)]
    .filter((e) => e.isFile && e.name.endsWith(".yaml"))
    .map((e) => `${here}samples/${e.name}`)
    .sort();
}

/** Which images the manifests name. */
export interface ImageOptions {
  /** Tag of the operator and agent images (default: the workspace version). */
  imageTag?: string | undefined;
  /** Registry and path prefix of the images (default {@linkcode DEFAULT_REGISTRY}). */
  registry?: string | undefined;
}

/**
 * The objects of {@linkcode MANIFEST_FILES}, with the operator's and agent's
 * images at `options.registry` and `options.imageTag`.
 */
export function blixtManifests(options: ImageOptions = {}): KubeObject[] {
  const objects = MANIFEST_FILES.flatMap((f) => parseManifests(Deno.readTextFileSync(f)));
  const registry = options.registry ?? DEFAULT_REGISTRY;
  const tag = options.imageTag ?? DEFAULT_IMAGE_TAG;
  for (const obj of objects) {
    const containers = (obj.spec as { template?: { spec?: { containers?: { image?: string }[] } } })
      ?.template?.spec?.containers ?? [];
    for (const c of containers) {
      if (!c.image?.startsWith(`${DEFAULT_REGISTRY}/`)) continue;
      const name = c.image.slice(DEFAULT_REGISTRY.length + 1).split(":")[0];
      c.image = `${registry}/${name}:${tag}`;
    }
  }
  return objects;
}

/** kubectl's name of an object, e.g. `deployment.apps/blixt-operator`. */
export function objectRef(obj: k8s.KubernetesObject): string {
  const group = obj.apiVersion?.includes("/") ? obj.apiVersion.split("/")[0] : "";
  return `${obj.kind?.toLowerCase()}${group ? `.${group}` : ""}/${obj.metadata?.name}`;
}

/** What deploy or undeploy did to one object. */
export interface ObjectChange {
  /** kubectl's name of the object, e.g. `deployment.apps/blixt-operator`. */
  ref: string;
  outcome: "created" | "configured" | "unchanged" | "deleted";
  /** Why, where it is not obvious. */
  note?: string;
}

/** The line kubectl would print for `change`. */
export function changeLine(change: ObjectChange, options: { dryRun?: boolean } = {}): string {
  const notes = [
    ...(options.dryRun ? ["server dry run"] : []),
    ...(change.note ? [change.note] : []),
  ];
  return `${change.ref} ${change.outcome}${notes.length ? ` (${notes.join("; ")})` : ""}`;
}

/** Options of {@linkcode deploy}. */
export interface DeployOptions extends ImageOptions {
  /** Apply with a server-side dry run: validate and report, change nothing. */
  dryRun?: boolean | undefined;
  /** Gateway API channel to install (default: the cluster's, else experimental). */
  gatewayApiChannel?: GatewayApiChannel | undefined;
  /** How long to wait for the operator and agents to be ready (default 180 s). */
  timeoutMs?: number | undefined;
  /** Receives one line per step, as it happens. */
  log?: ((line: string) => void) | undefined;
}

/** What {@linkcode deploy} did. */
export interface DeployReport {
  gatewayApi: GatewayApiPlan;
  changes: ObjectChange[];
  /** `ready`: waited until ready; `no-nodes`: no node can run pods; `dry-run`: nothing to wait for. */
  wait: "ready" | "no-nodes" | "dry-run";
}

function isUnknownKind(err: unknown): boolean {
  return apiStatus(err) === 404 ||
    (err instanceof Error && (err.message.includes("Unrecognized API version and kind") ||
      err.message.includes("the API server serves no kind")));
}

/** The live object, or undefined when it (or its kind) does not exist. */
async function readLive(kc: k8s.KubeConfig, obj: KubeObject): Promise<KubeObject | undefined> {
  try {
    return await readObject(kc, obj);
  } catch (err) {
    if (isUnknownKind(err)) return undefined;
    throw err;
  }
}

/** `obj` without what a write moves by itself: resourceVersion, managedFields' times. */
function comparable(obj: KubeObject): unknown {
  const { resourceVersion: _rv, managedFields, ...metadata } = obj.metadata ?? {};
  return {
    ...obj,
    metadata: {
      ...metadata,
      managedFields: (managedFields ?? []).map(({ time: _t, ...f }) => f),
    },
  };
}

/**
 * Server-side applies `obj` and says what changed: a resourceVersion that
 * did not move is `unchanged` (the API server does not write a no-op apply).
 */
async function applyTracked(
  kc: k8s.KubeConfig,
  obj: KubeObject,
  options: { dryRun: boolean },
): Promise<ObjectChange> {
  const ref = objectRef(obj);
  const before = await readLive(kc, obj);
  if (before && obj.metadata?.annotations?.[DEPLOY_ANNOTATION] === "create-only") {
    return { ref, outcome: "unchanged", note: "created once, never overwritten" };
  }
  let after: KubeObject;
  try {
    // A no-op apply can still write (and move resourceVersion): seen with the Gateway API's
    // GatewayClass CRD served with its list types and CEL rules. A dry run first says whether
    // the apply would change anything; if not, nothing is written.
    if (before && !options.dryRun) {
      const would = await applyObject(kc, obj, {
        fieldManager: FIELD_MANAGER,
        force: true,
        dryRun: true,
      });
      if (isDeepStrictEqual(comparable(before), comparable(would))) {
        return { ref, outcome: "unchanged" };
      }
    }
    after = await applyObject(kc, obj, {
      fieldManager: FIELD_MANAGER,
      force: true,
      dryRun: options.dryRun,
    });
  } catch (err) {
    // A dry run cannot validate an object whose namespace or CRD this deploy creates.
    if (options.dryRun && !before && isUnknownKind(err)) {
      return { ref, outcome: "created", note: "not validated: needs what this deploy creates" };
    }
    throw new Error(`applying ${ref}: ${errorText(err)}`);
  }
  if (!before) return { ref, outcome: "created" };
  // A dry run writes nothing, so its resourceVersion never moves: compare content.
  const same = options.dryRun
    ? isDeepStrictEqual(before, after)
    : before.metadata?.resourceVersion === after.metadata?.resourceVersion;
  return { ref, outcome: same ? "unchanged" : "configured" };
}

/** The message of an API error (its Status message when it has one). */
export function errorText(err: unknown): string {
  if (err instanceof k8s.ApiException) {
    const body = err.body as unknown;
    try {
      const status = (typeof body === "string" ? JSON.parse(body) : body) as { message?: string };
      if (status?.message) return `${status.message} (HTTP ${err.code})`;
    } catch {
      // not a Status
    }
    return `HTTP ${err.code}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** The cluster's Gateway API CRDs with their bundle version and channel. */
async function installedGatewayApiCrds(kc: k8s.KubeConfig) {
  const list = await kc.makeApiClient(k8s.ApiextensionsV1Api).listCustomResourceDefinition();
  return list.items
    .filter((c) => isGatewayApiCrd(c.metadata?.name ?? ""))
    .map((c) => ({
      name: c.metadata!.name!,
      bundleVersion: c.metadata?.annotations?.[BUNDLE_VERSION_ANNOTATION],
      channel: c.metadata?.annotations?.[CHANNEL_ANNOTATION],
    }));
}

async function pinnedGatewayApiObjects(channel: GatewayApiChannel): Promise<KubeObject[]> {
  let files: string[];
  try {
    files = await gatewayApiCrdFiles(channel);
  } catch (err) {
    throw new Error(
      `the Gateway API ${GATEWAY_API_VERSION} CRDs come from the Go module cache ` +
        `(go mod download sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}), which failed: ` +
        `${errorText(err)}. Install Go, or install the CRDs yourself: kubectl apply ` +
        `--server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/download/` +
        `${GATEWAY_API_VERSION}/${channel}-install.yaml`,
    );
  }
  const objects: KubeObject[] = [];
  for (const f of files) objects.push(...parseManifests(await Deno.readTextFile(f)));
  return objects;
}

/** Names of the CRDs among `objects`. */
function crdNames(objects: readonly KubeObject[]): string[] {
  return objects.filter((o) => o.kind === "CustomResourceDefinition").map((o) => o.metadata!.name!);
}

/**
 * Installs blixt: the Gateway API CRDs where the cluster lacks them or has an
 * older bundle, blixt's CRDs, and its manifests, all with server-side apply;
 * then waits (bounded) for the operator and agents where pods can run.
 * Running it again changes nothing.
 */
export async function deploy(
  kc: k8s.KubeConfig,
  options: DeployOptions = {},
): Promise<DeployReport> {
  const log = options.log ?? (() => {});
  const dryRun = options.dryRun ?? false;
  const changes: ObjectChange[] = [];
  const record = (change: ObjectChange) => {
    changes.push(change);
    log(changeLine(change, { dryRun }));
  };

  // Before anything changes: nothing can be created in a namespace on its way out.
  await refuseTerminatingNamespace(kc);
  const gatewayApi = planGatewayApiCrds(
    await installedGatewayApiCrds(kc),
    GATEWAY_API_VERSION,
    { channel: options.gatewayApiChannel },
  );
  log(`Gateway API CRDs: ${gatewayApi.reason}`);
  if (gatewayApi.action !== "keep") {
    const objects = await pinnedGatewayApiObjects(gatewayApi.channel);
    for (const obj of objects) record(await applyTracked(kc, obj, { dryRun }));
    if (!dryRun) await waitForCrdsEstablished(kc, crdNames(objects));
  }

  const crdObjects = blixtCrdFiles().flatMap((f) => parseManifests(Deno.readTextFileSync(f)));
  if (dryRun) {
    for (const obj of crdObjects) record(await applyTracked(kc, obj, { dryRun }));
  } else {
    const before = new Map<string, string | undefined>();
    for (const obj of crdObjects) {
      before.set(obj.metadata!.name!, (await readLive(kc, obj))?.metadata?.resourceVersion);
    }
    const applied = await applyBlixtCrds(kc, { fieldManager: FIELD_MANAGER });
    for (const obj of applied.objects) {
      const was = before.get(obj.metadata!.name!);
      record({
        ref: objectRef(obj),
        outcome: was === undefined
          ? "created"
          : was === obj.metadata?.resourceVersion
          ? "unchanged"
          : "configured",
      });
    }
  }

  for (const obj of blixtManifests(options)) record(await applyTracked(kc, obj, { dryRun }));

  if (dryRun) return { gatewayApi, changes, wait: "dry-run" };
  const wait = await waitForComponents(kc, { timeoutMs: options.timeoutMs ?? 180_000, log });
  return { gatewayApi, changes, wait };
}

async function refuseTerminatingNamespace(kc: k8s.KubeConfig): Promise<void> {
  try {
    const ns = await kc.makeApiClient(k8s.CoreV1Api).readNamespace({ name: NAMESPACE });
    if (ns.metadata?.deletionTimestamp) {
      throw new Error(
        `namespace ${NAMESPACE} is being deleted (since ` +
          `${new Date(ns.metadata.deletionTimestamp).toISOString()}); ` +
          `deploy again once it is gone: kubectl get namespace ${NAMESPACE}`,
      );
    }
  } catch (err) {
    if (apiStatus(err) !== 404) throw err;
  }
}

/**
 * Whether some node can run pods: Ready, schedulable, with a kubelet that
 * reports its version (the local cluster registers nodes without one).
 */
export function nodeCanRunPods(node: k8s.V1Node): boolean {
  const ready = node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
  const kubelet = /^v\d/.test(node.status?.nodeInfo?.kubeletVersion ?? "");
  return Boolean(ready && kubelet && !node.spec?.unschedulable);
}

/** Progress of the operator Deployment, as `kubectl rollout status` judges it. */
function deploymentProgress(d: k8s.V1Deployment | undefined): { ready: boolean; text: string } {
  if (!d) return { ready: false, text: "not found" };
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  const ready = (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
    (s.updatedReplicas ?? 0) >= want && (s.replicas ?? 0) <= (s.updatedReplicas ?? 0) &&
    (s.availableReplicas ?? 0) >= want;
  return { ready, text: `${s.availableReplicas ?? 0}/${want} available` };
}

/** Progress of the agent DaemonSet, as `kubectl rollout status` judges it. */
function daemonSetProgress(d: k8s.V1DaemonSet | undefined): { ready: boolean; text: string } {
  if (!d) return { ready: false, text: "not found" };
  const s = d.status;
  const want = s?.desiredNumberScheduled ?? 0;
  const ready = (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) && want > 0 &&
    (s?.updatedNumberScheduled ?? 0) >= want && (s?.numberAvailable ?? 0) >= want;
  return { ready, text: `${s?.numberAvailable ?? 0}/${want} available` };
}

/**
 * Waits until the operator Deployment and the agent DaemonSet are rolled
 * out, at most `options.timeoutMs`; returns at once with `no-nodes` when no
 * node can run pods (a cluster without kubelets, such as the local one).
 */
export async function waitForComponents(
  kc: k8s.KubeConfig,
  options: { timeoutMs: number; log?: (line: string) => void },
): Promise<"ready" | "no-nodes"> {
  const log = options.log ?? (() => {});
  const nodes = await kc.makeApiClient(k8s.CoreV1Api).listNode();
  if (!nodes.items.some(nodeCanRunPods)) {
    log("not waiting: no node can run pods (no Ready, schedulable node reports a kubelet version)");
    return "no-nodes";
  }
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const read = async <T>(f: () => Promise<T>) => {
    try {
      return await f();
    } catch (err) {
      if (apiStatus(err) === 404) return undefined;
      throw err;
    }
  };
  log(`waiting up to ${Math.round(options.timeoutMs / 1000)} s for the operator and the agents`);
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const op = deploymentProgress(
      await read(() =>
        apps.readNamespacedDeployment({ name: "blixt-operator", namespace: NAMESPACE })
      ),
    );
    const agent = daemonSetProgress(
      await read(() => apps.readNamespacedDaemonSet({ name: "blixt-agent", namespace: NAMESPACE })),
    );
    if (op.ready && agent.ready) {
      log(`deployment.apps/blixt-operator ready (${op.text})`);
      log(`daemonset.apps/blixt-agent ready (${agent.text})`);
      return "ready";
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `timed out after ${Math.round(options.timeoutMs / 1000)} s waiting for blixt: ` +
          `deployment.apps/blixt-operator ${op.text}, daemonset.apps/blixt-agent ${agent.text}; ` +
          `see kubectl -n ${NAMESPACE} get pods and kubectl -n ${NAMESPACE} get events`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(2000, deadline - Date.now())));
  }
}

/** Options of {@linkcode undeploy}. */
export interface UndeployOptions {
  /** Also delete blixt's CRDs, and with them every RoutingTable, DataplaneNode and config. */
  crds?: boolean | undefined;
  /** Receives one line per step, as it happens. */
  log?: ((line: string) => void) | undefined;
}

/** kubectl delete's name of an object: `deployment.apps "blixt-operator"`. */
function deleteRef(obj: k8s.KubernetesObject): string {
  const [kind, name] = objectRef(obj).split("/");
  return `${kind} "${name}"`;
}

/** Deletes `obj`; false when it was not there or already being deleted. */
async function deleteObject(kc: k8s.KubeConfig, obj: k8s.KubernetesObject): Promise<boolean> {
  const live = await readLive(kc, obj as KubeObject);
  if (!live || live.metadata?.deletionTimestamp) return false;
  try {
    await kc.makeApiClient(k8s.KubernetesObjectApi).delete(
      obj,
      undefined,
      undefined,
      undefined,
      undefined,
      "Background",
    );
    return true;
  } catch (err) {
    if (isUnknownKind(err)) return false;
    throw new Error(`deleting ${objectRef(obj)}: ${errorText(err)}`);
  }
}

/** Every object of a kind, or none when the kind is not served. */
async function listAll(
  kc: k8s.KubeConfig,
  apiVersion: string,
  kind: string,
): Promise<KubeObject[]> {
  try {
    const list = await kc.makeApiClient(k8s.KubernetesObjectApi).list(apiVersion, kind);
    return list.items.map((o) => ({ ...o, apiVersion, kind }) as KubeObject);
  } catch (err) {
    if (isUnknownKind(err)) return [];
    throw err;
  }
}

/**
 * Removes blixt: the operator and agents first (so nothing writes any more),
 * then the state they left (blixt's finalizer on Gateways, RoutingTables,
 * DataplaneNodes), the GatewayClass, RBAC and namespace; blixt's CRDs only
 * with `options.crds`. The Gateway API CRDs and users' Gateways and routes
 * stay. Returns what it deleted; running it again deletes nothing.
 */
export async function undeploy(
  kc: k8s.KubeConfig,
  options: UndeployOptions = {},
): Promise<ObjectChange[]> {
  const log = options.log ?? (() => {});
  const changes: ObjectChange[] = [];
  const remove = async (obj: k8s.KubernetesObject) => {
    if (await deleteObject(kc, obj)) {
      changes.push({ ref: objectRef(obj), outcome: "deleted" });
      log(`${deleteRef(obj)} deleted`);
    }
  };
  const manifests = blixtManifests();
  const byKind = (...kinds: string[]) => manifests.filter((o) => kinds.includes(o.kind!));

  for (const obj of byKind("Deployment", "DaemonSet")) await remove(obj);
  await removeGatewayFinalizers(kc, log, changes);
  for (const obj of await listAll(kc, "blixt.dev/v1alpha1", "RoutingTable")) await remove(obj);
  for (const obj of await listAll(kc, "blixt.dev/v1alpha1", "DataplaneNode")) await remove(obj);
  const rest = manifests.filter((o) => !["Deployment", "DaemonSet"].includes(o.kind!)).reverse();
  for (const obj of rest) await remove(obj);

  if (options.crds) {
    const crds = blixtCrdFiles().flatMap((f) => parseManifests(Deno.readTextFileSync(f)));
    for (const obj of crds) await remove(obj);
    await waitForCrdsGone(kc, crdNames(crds));
  }
  const ns = await readLive(kc, {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: NAMESPACE },
  });
  if (ns?.metadata?.deletionTimestamp) {
    log(
      `namespace "${NAMESPACE}" terminating: the namespace controller removes it once it is empty`,
    );
  } else if (changes.length === 0) {
    log("blixt is not deployed: nothing to remove");
  }
  return changes;
}

/**
 * Takes blixt's finalizer off every Gateway: with the operator gone nothing
 * would ever remove it, and deleting such a Gateway would hang.
 */
async function removeGatewayFinalizers(
  kc: k8s.KubeConfig,
  log: (line: string) => void,
  changes: ObjectChange[],
): Promise<void> {
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  for (const gw of await listAll(kc, "gateway.networking.k8s.io/v1", "Gateway")) {
    const finalizers = gw.metadata?.finalizers ?? [];
    if (!finalizers.includes(GATEWAY_FINALIZER)) continue;
    await api.patchNamespacedCustomObject(
      {
        group: "gateway.networking.k8s.io",
        version: "v1",
        plural: "gateways",
        namespace: gw.metadata!.namespace!,
        name: gw.metadata!.name!,
        // The resourceVersion makes this a compare-and-swap of the list.
        body: {
          metadata: {
            resourceVersion: gw.metadata!.resourceVersion,
            finalizers: finalizers.filter((f) => f !== GATEWAY_FINALIZER),
          },
        },
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    );
    changes.push({
      ref: objectRef(gw),
      outcome: "configured",
      note: `namespace ${gw.metadata!.namespace}: finalizer ${GATEWAY_FINALIZER} removed`,
    });
    log(
      `gateway.gateway.networking.k8s.io "${gw.metadata!.name}" in ${gw.metadata!.namespace}: ` +
        `finalizer ${GATEWAY_FINALIZER} removed`,
    );
  }
}

async function waitForCrdsGone(kc: k8s.KubeConfig, names: readonly string[]): Promise<void> {
  const api = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const deadline = Date.now() + 60_000;
  for (const name of names) {
    for (;;) {
      try {
        await api.readCustomResourceDefinition({ name });
      } catch (err) {
        if (apiStatus(err) === 404) break;
        throw err;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `CRD ${name} still exists 60 s after its deletion; ` +
            `kubectl get crd ${name} -o yaml shows what holds it`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
