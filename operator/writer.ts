/**
 * The writer: turns a {@linkcode ReconcileResult} into API calls. It is the
 * operator's only code that writes to the API server.
 *
 * - Gateway, GatewayClass and route status: replace of the status
 *   subresource carrying the resourceVersion the result was computed from
 *   (optimistic concurrency). Conditions of other controllers were merged in
 *   by reconcile, and a route's `status.parents` is an atomic list, so a
 *   blind server-side apply would take other controllers' entries over.
 * - RoutingTable: server-side apply, field manager `blixt-operator`; when only
 *   some entries' contents changed (backends moved), a JSON patch of those
 *   entries, guarded by the resourceVersion the cache has, or by that of the
 *   writer's own last write while the cache has not seen it yet
 *   ({@linkcode TableBase}). An entry repeating an earlier one's backends
 *   refers to it once every agent reads that form (`shared_backends.ts`).
 *
 * Every call is one raw JSON request (`kube/rest.ts`): on the operator's
 * kept-alive connections, without client-node's typed (de)serialisation.
 * Writes ask to be answered with the object's metadata only
 * ({@linkcode METADATA_ONLY}): nothing here reads more of an answer than its
 * resourceVersion, and a table's whole body would cost the API server an
 * encoding and the operator a parse (docs/performance.md).
 * - Finalizer: merge patch of `metadata.finalizers` with the resourceVersion.
 * - Events: core/v1 Events on the Gateway.
 *
 * A write that loses a race (409 Conflict) throws {@linkcode ConflictError}:
 * the caller requeues the Gateway and reconciles again from fresh objects.
 *
 * @module
 */

import { apiStatus, type k8s } from "../kube/client.ts";
import { METADATA_ONLY, requestJson, type RequestOptions } from "../kube/rest.ts";
import { GROUP, VERSION } from "../api/meta.ts";
import { ROUTING_TABLE_PLURAL } from "../api/routing_table.ts";
import { GATEWAY_FINALIZER, type GatewayEvent, type ReconcileResult } from "./gateway.ts";
import { GATEWAY_CLASS_FINALIZER, type GatewayClassStatus } from "./gateway_class.ts";
import { GATEWAY_GROUP, type Snapshot } from "./snapshot.ts";
import { sameJson } from "./same_json.ts";
import { specToWrite, type WrittenSpec } from "./shared_backends.ts";

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
  /** How long the table's write took, in ms (0 when unchanged). */
  tableMs: number;
  finalizer: "added" | "removed" | "unchanged";
  events: number;
}

const ROUTE_PLURALS: Record<string, string> = { TCPRoute: "tcproutes", UDPRoute: "udproutes" };

function rethrow(err: unknown, what: string): never {
  if (apiStatus(err) === 409) throw new ConflictError(what);
  throw err;
}

/** Path of a namespaced object (or of its status subresource). */
function objectPath(
  group: string,
  version: string,
  plural: string,
  namespace: string,
  name: string,
  sub = "",
): string {
  const e = encodeURIComponent;
  return `/apis/${group}/${version}/namespaces/${e(namespace)}/${plural}/${e(name)}${sub}`;
}

const MERGE_PATCH = "application/merge-patch+json";
const APPLY_PATCH = "application/apply-patch+yaml";
const JSON_PATCH = "application/json-patch+json";

/** A write, answered with the object's metadata only (see the module doc). */
function writeJson<T = unknown>(
  kc: Parameters<typeof requestJson>[0],
  path: string,
  options: RequestOptions,
): Promise<T> {
  return requestJson<T>(kc, path, { ...options, accept: METADATA_ONLY });
}

type TableObject = Extract<ReconcileResult["table"], { action: "apply" }>["table"];

/**
 * A JSON patch that replaces only the entries of `have` that differ from
 * `want`, guarded by `have`'s resourceVersion; undefined when more than the
 * entries' contents changed (addresses, frontends, their number): then the
 * whole table is applied.
 *
 * Why: the API server's cost of a write grows with what it is sent and
 * decodes; one entry of a 50-entry table as a JSON patch took half the time of
 * applying the whole table (docs/performance.md). The result is the same
 * object either way, so the agent sees no difference.
 */
export function changedEntriesPatch(
  have: { metadata: { resourceVersion?: string }; spec: WrittenSpec },
  want: { spec: WrittenSpec },
): unknown[] | undefined {
  const resourceVersion = have.metadata.resourceVersion;
  const before = have.spec.entries ?? [];
  const after = want.spec.entries;
  if (
    !resourceVersion || before.length !== after.length ||
    !sameJson(have.spec.addresses, want.spec.addresses) ||
    (have.spec.localBackendsOnly ?? false) !== (want.spec.localBackendsOnly ?? false)
  ) {
    return undefined;
  }
  const ops: unknown[] = [{
    op: "test",
    path: "/metadata/resourceVersion",
    value: resourceVersion,
  }];
  for (let i = 0; i < after.length; i++) {
    const a = before[i]!;
    const b = after[i]!;
    if (sameJson(a, b)) continue;
    if (a.address !== b.address || a.port !== b.port || a.protocol !== b.protocol) return undefined;
    ops.push({ op: "replace", path: `/spec/entries/${i}`, value: b });
  }
  if (ops.length === 1) return undefined;
  return ops;
}

/** The table as the writer last wrote it: what a patch can be computed against. */
interface WrittenTable {
  /** The resourceVersions the cache may show that are older than `resourceVersion`. */
  cacheBehind: string[];
  /** The resourceVersion the API server gave the writer's last write. */
  resourceVersion: string;
  metadata: TableObject["metadata"];
  spec: WrittenSpec;
}

/** A cache that lags by more than this many of the writer's own writes is trusted as it is. */
const MAX_WRITES_AHEAD = 16;

/** Per API client: per table key, the writer's last write ({@linkcode tableBase}). */
const writtenTables = new WeakMap<k8s.KubeConfig, Map<string, WrittenTable>>();

/** What a table write is computed against: the cached table, or the writer's own last write. */
export interface TableBase {
  metadata: TableObject["metadata"];
  spec: WrittenSpec;
  /** True when this is the writer's own last write, which the cache has not shown yet. */
  ownWrite: boolean;
}

/**
 * The table to compute a write of `key` against: the writer's own last write
 * while the cache still shows a resourceVersion from before it, else the
 * cached table.
 *
 * Why: a reconcile that runs between the operator's table write and that
 * write's watch event read the older table from the cache; its JSON patch's
 * resourceVersion test failed, and the writer fell back to applying the whole
 * table (0.4-0.8 such applies per endpoint change, docs/performance.md). The
 * remembered write carries the resourceVersion the API server gave it, so a
 * patch against it still fails (and the whole table is applied) if anyone
 * else has written or deleted the table since. Once the cache shows anything
 * else, the cache is right.
 */
export function tableBase(
  kc: k8s.KubeConfig,
  key: string,
  cached: { metadata: TableObject["metadata"]; spec: WrittenSpec } | undefined,
): TableBase | undefined {
  const written = writtenTables.get(kc)?.get(key);
  const cachedVersion = cached?.metadata.resourceVersion;
  if (written && cachedVersion && written.cacheBehind.includes(cachedVersion)) {
    return {
      metadata: { ...written.metadata, resourceVersion: written.resourceVersion },
      spec: written.spec,
      ownWrite: true,
    };
  }
  if (written) writtenTables.get(kc)?.delete(key);
  return cached && { metadata: cached.metadata, spec: cached.spec, ownWrite: false };
}

/** Remembers a table write the API server answered with `resourceVersion`. */
function rememberWrite(
  kc: k8s.KubeConfig,
  key: string,
  write: {
    base: TableBase | undefined;
    cachedVersion: string | undefined;
    resourceVersion: string | undefined;
    table: { metadata: TableObject["metadata"]; spec: WrittenSpec };
  },
): void {
  let tables = writtenTables.get(kc);
  if (!tables) writtenTables.set(kc, tables = new Map());
  const before = write.base?.ownWrite ? tables.get(key) : undefined;
  const cacheBehind = before
    ? [...before.cacheBehind, before.resourceVersion]
    : write.cachedVersion
    ? [write.cachedVersion]
    : [];
  // no resourceVersion, or no older one the cache can show (a new table): nothing to remember
  if (!write.resourceVersion || cacheBehind.length === 0 || cacheBehind.length > MAX_WRITES_AHEAD) {
    tables.delete(key);
    return;
  }
  tables.set(key, {
    cacheBehind,
    resourceVersion: write.resourceVersion,
    metadata: write.table.metadata,
    spec: write.table.spec,
  });
}

function forgetWrite(kc: k8s.KubeConfig, key: string): void {
  writtenTables.get(kc)?.delete(key);
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
  const { namespace, name } = splitKey(result.gatewayKey);
  let gateway = options.snapshot.gateways.get(result.gatewayKey);
  const report: WriteReport = {
    gatewayStatus: false,
    routeStatuses: 0,
    table: "unchanged",
    tableMs: 0,
    finalizer: "unchanged",
    events: 0,
  };

  // The finalizer goes on before a table exists, so a deleted Gateway's table is always cleaned up.
  if (result.finalizer === "add" && gateway) {
    const resourceVersion = await setFinalizer(kc, gateway, true);
    // Our own patch moved the resourceVersion; the status write goes on from it.
    if (resourceVersion) {
      gateway = { ...gateway, metadata: { ...gateway.metadata, resourceVersion } };
    }
    report.finalizer = "added";
  }

  if (result.table.action === "apply") {
    // backends repeated across entries written once, when every agent reads that form
    const built = result.table.table;
    const spec = specToWrite(built.spec, options.snapshot.dataplaneNodes);
    const want = spec === built.spec ? built : { ...built, spec };
    const cached = options.snapshot.routingTables.get(result.gatewayKey);
    // the cache, or our own last write while the cache has not caught up with it
    const have = tableBase(kc, result.gatewayKey, cached);
    // an apply that changes nothing still costs the API server a request: skip it
    const sameMeta = have !== undefined &&
      sameJson(have.metadata.ownerReferences, want.metadata.ownerReferences) &&
      Object.entries(want.metadata.labels ?? {}).every(([k, v]) => have.metadata.labels?.[k] === v);
    if (!sameMeta || !sameJson(have.spec, want.spec)) {
      const started = performance.now();
      const path = objectPath(GROUP, VERSION, ROUTING_TABLE_PLURAL, namespace, name);
      const patch = sameMeta ? changedEntriesPatch(have, want) : undefined;
      let written: { metadata?: { resourceVersion?: string } } | undefined;
      let patched = false;
      if (patch) {
        try {
          written = await writeJson<typeof written>(kc, path, {
            method: "PATCH",
            query: { fieldManager: FIELD_MANAGER },
            body: patch,
            contentType: JSON_PATCH,
          });
          patched = true;
        } catch {
          // the table moved under us (the resourceVersion test failed) or the
          // patch was refused: the whole table, as below, says it all again
        }
      }
      if (!patched) {
        forgetWrite(kc, result.gatewayKey);
        // server-side apply: JSON is YAML
        written = await writeJson<typeof written>(kc, path, {
          method: "PATCH",
          query: { fieldManager: FIELD_MANAGER, force: true },
          body: want,
          contentType: APPLY_PATCH,
        });
      }
      rememberWrite(kc, result.gatewayKey, {
        // after a full apply, only the cache's resourceVersion is known to be older
        base: patched ? have : undefined,
        cachedVersion: cached?.metadata.resourceVersion,
        resourceVersion: written?.metadata?.resourceVersion,
        table: want,
      });
      report.table = "applied";
      report.tableMs = Math.round(performance.now() - started);
    }
  } else if (result.table.action === "delete") {
    forgetWrite(kc, result.gatewayKey);
    if (options.snapshot.routingTables.has(result.gatewayKey)) {
      try {
        await requestJson(kc, objectPath(GROUP, VERSION, ROUTING_TABLE_PLURAL, namespace, name), {
          method: "DELETE",
        });
        report.table = "deleted";
      } catch (err) {
        if (apiStatus(err) !== 404) throw err;
      }
    }
  }

  if (result.status && gateway && !sameJson(gateway.status, result.status)) {
    try {
      await writeJson(
        kc,
        objectPath(GATEWAY_GROUP, "v1", "gateways", namespace, name, "/status"),
        {
          method: "PUT",
          body: {
            ...gateway,
            apiVersion: `${GATEWAY_GROUP}/v1`,
            kind: "Gateway",
            status: result.status,
          },
        },
      );
      report.gatewayStatus = true;
    } catch (err) {
      rethrow(err, `Gateway ${result.gatewayKey}`);
    }
  }

  if (options.routeStatuses ?? true) {
    report.routeStatuses = await writeRouteStatuses(kc, result, options);
  }

  if (result.finalizer === "remove" && gateway) {
    await setFinalizer(kc, gateway, false);
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
  let written = 0;
  let conflict: ConflictError | undefined;
  let next = 0;
  await Promise.all(Array.from({ length: ROUTE_WRITERS }, async () => {
    while (next < result.routeStatuses.length) {
      const update = result.routeStatuses[next++]!;
      try {
        if (await writeRouteStatus(kc, update, options.snapshot)) written++;
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
  kc: k8s.KubeConfig,
  update: ReconcileResult["routeStatuses"][number],
  snapshot: Snapshot,
): Promise<boolean> {
  const plural = ROUTE_PLURALS[update.kind];
  if (!plural) return false;
  const route = snapshot.routes.get(`${update.kind}/${update.namespace}/${update.name}`);
  if (!route) return false;
  const [, version = "v1"] = update.apiVersion.split("/");
  try {
    const path = objectPath(
      GATEWAY_GROUP,
      version,
      plural,
      update.namespace,
      update.name,
      "/status",
    );
    await writeJson(kc, path, {
      method: "PUT",
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
  kc: k8s.KubeConfig,
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
    const path = objectPath(
      GATEWAY_GROUP,
      "v1",
      "gateways",
      gateway.metadata?.namespace ?? "",
      gateway.metadata?.name ?? "",
    );
    const patched = await writeJson<{ metadata?: { resourceVersion?: string } }>(kc, path, {
      method: "PATCH",
      body: { metadata: { finalizers, resourceVersion: gateway.metadata?.resourceVersion } },
      contentType: MERGE_PATCH,
    });
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
  const now = new Date().toISOString();
  const namespace = gateway.metadata?.namespace ?? "default";
  await writeJson(kc, `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, {
    method: "POST",
    body: {
      apiVersion: "v1",
      kind: "Event",
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
  if (!gc || sameJson(gc.status, options.status)) return false;
  try {
    await writeJson(
      kc,
      `/apis/${GATEWAY_GROUP}/v1/gatewayclasses/${encodeURIComponent(name)}/status`,
      {
        method: "PUT",
        body: {
          ...gc,
          apiVersion: `${GATEWAY_GROUP}/v1`,
          kind: "GatewayClass",
          status: options.status,
        },
      },
    );
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
    await writeJson(kc, `/apis/${GATEWAY_GROUP}/v1/gatewayclasses/${encodeURIComponent(name)}`, {
      method: "PATCH",
      body: { metadata: { finalizers, resourceVersion: gc.metadata?.resourceVersion } },
      contentType: MERGE_PATCH,
    });
    return true;
  } catch (err) {
    if (apiStatus(err) === 404) return false;
    rethrow(err, `GatewayClass ${name}`);
  }
}
