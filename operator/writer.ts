/**
 * The writer: turns a {@linkcode ReconcileResult} into API calls. It is the
 * operator's only code that writes to the API server.
 *
 * - Gateway, GatewayClass and route status: replace of the status
 *   subresource carrying the resourceVersion the result was computed from
 *   (optimistic concurrency). Conditions of other controllers were merged in
 *   by reconcile, and a route's `status.parents` is an atomic list, so a
 *   blind server-side apply would take other controllers' entries over.
 * - RoutingTable: server-side apply, field manager `blixt-operator`.
 * - Finalizer: merge patch of `metadata.finalizers` with the resourceVersion.
 * - Events: core/v1 Events on the Gateway.
 *
 * A write that loses a race (409 Conflict) throws {@linkcode ConflictError}:
 * the caller requeues the Gateway and reconciles again from fresh objects.
 *
 * @module
 */

import { isDeepStrictEqual } from "node:util";
import { apiStatus, applyObject, k8s, type KubeObject } from "../kube/client.ts";
import { GROUP, VERSION } from "../api/meta.ts";
import { ROUTING_TABLE_PLURAL } from "../api/routing_table.ts";
import { GATEWAY_FINALIZER, type GatewayEvent, type ReconcileResult } from "./gateway.ts";
import { GATEWAY_CLASS_FINALIZER, type GatewayClassStatus } from "./gateway_class.ts";
import { GATEWAY_GROUP, type Snapshot } from "./snapshot.ts";

/** The field manager of everything the operator writes. */
export const FIELD_MANAGER = "blixt-operator";

/** A write lost an optimistic-concurrency race; reconcile again. */
export class ConflictError extends Error {
  constructor(what: string) {
    super(`${what} changed since it was read (409 Conflict); reconciling again`);
    this.name = "ConflictError";
  }
}

/** What {@linkcode writeResult} did, for logs and metrics. */
export interface WriteReport {
  gatewayStatus: boolean;
  routeStatuses: number;
  table: "applied" | "deleted" | "unchanged";
  finalizer: "added" | "removed" | "unchanged";
  events: number;
}

const ROUTE_PLURALS: Record<string, string> = { TCPRoute: "tcproutes", UDPRoute: "udproutes" };

function rethrow(err: unknown, what: string): never {
  if (apiStatus(err) === 409) throw new ConflictError(what);
  throw err;
}

function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf("/");
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/**
 * Writes everything `result` asks for, reading the objects it was computed
 * from out of `snapshot` (route statuses only unless `routeStatuses: false`).
 * Throws {@linkcode ConflictError} on a lost race.
 */
export async function writeResult(
  kc: k8s.KubeConfig,
  result: ReconcileResult,
  options: { snapshot: Snapshot; routeStatuses?: boolean },
): Promise<WriteReport> {
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  const { namespace, name } = splitKey(result.gatewayKey);
  let gateway = options.snapshot.gateways.get(result.gatewayKey);
  const report: WriteReport = {
    gatewayStatus: false,
    routeStatuses: 0,
    table: "unchanged",
    finalizer: "unchanged",
    events: 0,
  };

  // The finalizer goes on before a table exists, so a deleted Gateway's table is always cleaned up.
  if (result.finalizer === "add" && gateway) {
    const resourceVersion = await setFinalizer(api, gateway, true);
    // Our own patch moved the resourceVersion; the status write goes on from it.
    if (resourceVersion) {
      gateway = { ...gateway, metadata: { ...gateway.metadata, resourceVersion } };
    }
    report.finalizer = "added";
  }

  if (result.table.action === "apply") {
    const want = result.table.table;
    const have = options.snapshot.routingTables.get(result.gatewayKey);
    // an apply that changes nothing still costs the API server a request: skip it
    const same = have !== undefined && isDeepStrictEqual(have.spec, want.spec) &&
      isDeepStrictEqual(have.metadata.ownerReferences, want.metadata.ownerReferences) &&
      Object.entries(want.metadata.labels ?? {}).every(([k, v]) => have.metadata.labels?.[k] === v);
    if (!same) {
      await applyObject(kc, want as unknown as KubeObject, {
        fieldManager: FIELD_MANAGER,
        force: true,
      });
      report.table = "applied";
    }
  } else if (result.table.action === "delete") {
    if (options.snapshot.routingTables.has(result.gatewayKey)) {
      try {
        await api.deleteNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: ROUTING_TABLE_PLURAL,
          name,
        });
        report.table = "deleted";
      } catch (err) {
        if (apiStatus(err) !== 404) throw err;
      }
    }
  }

  if (result.status && gateway && !isDeepStrictEqual(gateway.status, result.status)) {
    try {
      await api.replaceNamespacedCustomObjectStatus({
        group: GATEWAY_GROUP,
        version: "v1",
        namespace,
        plural: "gateways",
        name,
        body: {
          ...gateway,
          apiVersion: `${GATEWAY_GROUP}/v1`,
          kind: "Gateway",
          status: result.status,
        },
      });
      report.gatewayStatus = true;
    } catch (err) {
      rethrow(err, `Gateway ${result.gatewayKey}`);
    }
  }

  if (options.routeStatuses ?? true) {
    report.routeStatuses = await writeRouteStatuses(kc, result, options);
  }

  if (result.finalizer === "remove" && gateway) {
    await setFinalizer(api, gateway, false);
    report.finalizer = "removed";
  }

  if (gateway) {
    for (const event of result.events) {
      await recordEvent(kc, gateway, event);
      report.events++;
    }
  }
  return report;
}

/**
 * Writes only the route statuses of `result`, a few at a time (a Gateway with
 * hundreds of routes does not wait for each round trip in turn); returns how
 * many were written. Throws {@linkcode ConflictError} once all were tried.
 */
export async function writeRouteStatuses(
  kc: k8s.KubeConfig,
  result: ReconcileResult,
  options: { snapshot: Snapshot },
): Promise<number> {
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  let written = 0;
  let conflict: ConflictError | undefined;
  let next = 0;
  await Promise.all(Array.from({ length: ROUTE_WRITERS }, async () => {
    while (next < result.routeStatuses.length) {
      const update = result.routeStatuses[next++]!;
      try {
        if (await writeRouteStatus(api, update, options.snapshot)) written++;
      } catch (err) {
        if (err instanceof ConflictError) conflict = err;
        else throw err;
      }
    }
  }));
  if (conflict) throw conflict;
  return written;
}

/** Route status writes in flight at once for one Gateway. */
const ROUTE_WRITERS = 8;

async function writeRouteStatus(
  api: k8s.CustomObjectsApi,
  update: ReconcileResult["routeStatuses"][number],
  snapshot: Snapshot,
): Promise<boolean> {
  const plural = ROUTE_PLURALS[update.kind];
  if (!plural) return false;
  const route = snapshot.routes.get(`${update.kind}/${update.namespace}/${update.name}`);
  if (!route) return false;
  const [, version = "v1"] = update.apiVersion.split("/");
  try {
    await api.replaceNamespacedCustomObjectStatus({
      group: GATEWAY_GROUP,
      version,
      namespace: update.namespace,
      plural,
      name: update.name,
      body: {
        ...route,
        apiVersion: update.apiVersion,
        kind: update.kind,
        metadata: {
          ...route.metadata,
          ...(update.resourceVersion ? { resourceVersion: update.resourceVersion } : {}),
        },
        status: { ...route.status, parents: update.parents },
      },
    });
    return true;
  } catch (err) {
    if (apiStatus(err) === 404) return false;
    rethrow(err, `${update.kind} ${update.namespace}/${update.name}`);
  }
}

async function setFinalizer(
  api: k8s.CustomObjectsApi,
  gateway: {
    metadata?: {
      name?: string;
      namespace?: string;
      finalizers?: string[];
      resourceVersion?: string;
    };
  },
  present: boolean,
): Promise<string | undefined> {
  const current = gateway.metadata?.finalizers ?? [];
  const has = current.includes(GATEWAY_FINALIZER);
  if (has === present) return undefined;
  const finalizers = present
    ? [...current, GATEWAY_FINALIZER]
    : current.filter((f) => f !== GATEWAY_FINALIZER);
  try {
    const patched = await api.patchNamespacedCustomObject(
      {
        group: GATEWAY_GROUP,
        version: "v1",
        namespace: gateway.metadata?.namespace ?? "",
        plural: "gateways",
        name: gateway.metadata?.name ?? "",
        body: { metadata: { finalizers, resourceVersion: gateway.metadata?.resourceVersion } },
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    ) as { metadata?: { resourceVersion?: string } };
    return patched.metadata?.resourceVersion;
  } catch (err) {
    if (apiStatus(err) === 404 && !present) return undefined;
    rethrow(err, `Gateway ${gateway.metadata?.namespace}/${gateway.metadata?.name}`);
  }
}

async function recordEvent(
  kc: k8s.KubeConfig,
  gateway: {
    metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
  },
  event: GatewayEvent,
): Promise<void> {
  const now = new Date();
  const namespace = gateway.metadata?.namespace ?? "default";
  await kc.makeApiClient(k8s.CoreV1Api).createNamespacedEvent({
    namespace,
    body: {
      metadata: { generateName: `${gateway.metadata?.name ?? "gateway"}.`, namespace },
      involvedObject: {
        apiVersion: `${GATEWAY_GROUP}/v1`,
        kind: "Gateway",
        name: gateway.metadata?.name ?? "",
        namespace,
        ...(gateway.metadata?.uid ? { uid: gateway.metadata.uid } : {}),
      },
      type: event.type,
      reason: event.reason,
      message: event.message,
      source: { component: FIELD_MANAGER },
      reportingComponent: FIELD_MANAGER,
      reportingInstance: FIELD_MANAGER,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    },
  });
}

/** Writes a GatewayClass's status unless it already is `status`. */
export async function writeGatewayClassStatus(
  kc: k8s.KubeConfig,
  name: string,
  options: { snapshot: Snapshot; status: GatewayClassStatus },
): Promise<boolean> {
  const gc = options.snapshot.gatewayClasses.get(name);
  if (!gc || isDeepStrictEqual(gc.status, options.status)) return false;
  try {
    await kc.makeApiClient(k8s.CustomObjectsApi).replaceClusterCustomObjectStatus({
      group: GATEWAY_GROUP,
      version: "v1",
      plural: "gatewayclasses",
      name,
      body: {
        ...gc,
        apiVersion: `${GATEWAY_GROUP}/v1`,
        kind: "GatewayClass",
        status: options.status,
      },
    });
    return true;
  } catch (err) {
    if (apiStatus(err) === 404) return false;
    rethrow(err, `GatewayClass ${name}`);
  }
}

/**
 * Adds or removes the gateway-exists finalizer of a GatewayClass (merge patch
 * carrying the resourceVersion read, so a concurrent change is a conflict).
 */
export async function setGatewayClassFinalizer(
  kc: k8s.KubeConfig,
  name: string,
  options: { snapshot: Snapshot; present: boolean },
): Promise<boolean> {
  const gc = options.snapshot.gatewayClasses.get(name);
  if (!gc) return false;
  const current = gc.metadata?.finalizers ?? [];
  if (current.includes(GATEWAY_CLASS_FINALIZER) === options.present) return false;
  const finalizers = options.present
    ? [...current, GATEWAY_CLASS_FINALIZER]
    : current.filter((f) => f !== GATEWAY_CLASS_FINALIZER);
  try {
    await kc.makeApiClient(k8s.CustomObjectsApi).patchClusterCustomObject(
      {
        group: GATEWAY_GROUP,
        version: "v1",
        plural: "gatewayclasses",
        name,
        body: { metadata: { finalizers, resourceVersion: gc.metadata?.resourceVersion } },
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    );
    return true;
  } catch (err) {
    if (apiStatus(err) === 404) return false;
    rethrow(err, `GatewayClass ${name}`);
  }
}
