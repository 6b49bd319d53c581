/**
 * The form a RoutingTable is written in: an entry whose Service and backends
 * are those of an earlier entry refers to it (`backendsFrom`) instead of
 * listing them again, and an entry lists its backends as one string each
 * (`endpoints`), and an entry names its route and Service in one string each
 * and leaves its empty `backends` out (`compactEntries`), each once every
 * agent understands it.
 *
 * Why: when one Service backs many listeners of a Gateway, the table repeated
 * the same backend list once per listener, and the API server's cost of each
 * write grows with the object (docs/performance.md, "Backends written once per
 * table"). Reconcile still builds every entry complete; only what is compared
 * with the cache and written takes this form, so an endpoint change in that
 * shape patches the one entry that lists the backends.
 *
 * @module
 */
import {
  BACKENDS_FROM_FEATURE,
  COMPACT_ENTRIES_FEATURE,
  type DataplaneNode,
  ENDPOINTS_FEATURE,
  entryKey,
  formatEndpoint,
  formatRouteRef,
  formatServiceRef,
  type RoutingTableEntry,
  type RoutingTableSpec,
} from "../api/mod.ts";
import { sameJson } from "./same_json.ts";

/**
 * Whether every agent understands `backendsFrom`: at least one DataplaneNode
 * exists and each lists the feature in `status.features`. An agent that
 * predates the field would program a referring entry with no backends, so one
 * such node (or a downgraded agent, whose status drops the feature) makes the
 * operator write every entry complete again.
 */
export function agentsShareBackends(
  dataplaneNodes: ReadonlyMap<string, DataplaneNode>,
): boolean {
  return agentsList(BACKENDS_FROM_FEATURE, dataplaneNodes);
}

/**
 * Whether at least one DataplaneNode exists and each lists `feature` in
 * `status.features`.
 */
export function agentsList(
  feature: string,
  dataplaneNodes: ReadonlyMap<string, DataplaneNode>,
): boolean {
  if (dataplaneNodes.size === 0) return false;
  for (const node of dataplaneNodes.values()) {
    if (!node.status?.features?.includes(feature)) return false;
  }
  return true;
}

/**
 * `spec` with each entry whose `service` and `backends` equal those of an
 * earlier entry (the first in table order with them, and with backends)
 * replaced by a reference to it; `spec` itself when no entry repeats another.
 * Deterministic, so comparing with the cached table and patching only the
 * changed entries keep working.
 *
 * @example
 * ```ts
 * const written = shareBackends(result.table.table.spec);
 * ```
 */
export function shareBackends(spec: RoutingTableSpec): RoutingTableSpec {
  // entries with backends, bucketed by a cheap key: sameJson runs only within a bucket
  const firsts = new Map<string, RoutingTableEntry[]>();
  let shared = false;
  const entries = spec.entries.map((entry) => {
    if (entry.backends.length === 0 || entry.backendsFrom !== undefined) return entry;
    const b0 = entry.backends[0]!;
    const bucket = `${entry.backends.length} ${b0.ip} ${b0.port} ${entry.service?.name ?? ""}`;
    const list = firsts.get(bucket) ?? [];
    const first = list.find((f) =>
      sameJson(f.backends, entry.backends) && sameJson(f.service, entry.service)
    );
    if (!first) {
      list.push(entry);
      firsts.set(bucket, list);
      return entry;
    }
    shared = true;
    const { service: _service, backends: _backends, ...rest } = entry;
    return { ...rest, backendsFrom: entryKey(first), backends: [] };
  });
  return shared ? { ...spec, entries } : spec;
}

/**
 * `spec` with each entry's backends written as endpoint strings
 * (`entries[].endpoints`, `backends: []`); an entry with a backend that does
 * not fit a string (a Service of its own, an odd node name) stays complete.
 * `spec` itself when no entry changes. A backend object is six JSON values
 * and a Go map in the API server, a string one: a write costs it a third of
 * the CPU (docs/performance.md, "Backends as strings").
 *
 * @example
 * ```ts
 * const written = backendsAsStrings(shareBackends(spec));
 * ```
 */
export function backendsAsStrings(spec: RoutingTableSpec): RoutingTableSpec {
  let changed = false;
  const entries = spec.entries.map((entry) => {
    if (entry.backends.length === 0 || entry.endpoints !== undefined) return entry;
    const endpoints: string[] = [];
    for (const b of entry.backends) {
      const s = formatEndpoint(b);
      if (s === undefined) return entry;
      endpoints.push(s);
    }
    changed = true;
    const { backends: _, ...rest } = entry;
    return { ...rest, endpoints, backends: [] };
  });
  return changed ? { ...spec, entries } : spec;
}

/**
 * A RoutingTable spec as written: a compact entry ({@linkcode compactEntries})
 * may leave `backends` out.
 */
export interface WrittenSpec extends Omit<RoutingTableSpec, "entries"> {
  /** The entries, `backends` optional. */
  entries: (Omit<RoutingTableEntry, "backends"> & { backends?: RoutingTableEntry["backends"] })[];
}

/**
 * `spec` with each entry's `route` and `service` written as one string each
 * (`routeRef`, `serviceRef`) and an entry that lists `endpoints` without its
 * empty `backends`; a route or Service with no string form (a name
 * Kubernetes would not give) stays an object. `spec` itself when no entry
 * changes. An entry was 17 JSON values and 2 maps around its endpoint
 * strings, and the API server's cost of a write follows the number of values
 * (docs/performance.md, "Compact entries").
 *
 * @example
 * ```ts
 * const written = compactEntries(backendsAsStrings(spec));
 * ```
 */
export function compactEntries(spec: WrittenSpec): WrittenSpec {
  let changed = false;
  const entries = spec.entries.map((entry) => {
    const { route, service, backends, ...rest } = entry;
    const routeRef = route && formatRouteRef(route);
    const serviceRef = service && formatServiceRef(service);
    const dropBackends = entry.endpoints !== undefined && backends?.length === 0;
    if (!routeRef && !serviceRef && !dropBackends) return entry;
    changed = true;
    return {
      ...rest,
      ...(routeRef ? { routeRef } : route ? { route } : {}),
      ...(serviceRef ? { serviceRef } : service ? { service } : {}),
      ...(dropBackends || backends === undefined ? {} : { backends }),
    };
  });
  return changed ? { ...spec, entries } : spec;
}

/**
 * The spec to compare with the cached table and write: backends shared,
 * written as strings, and entries compact, each when every agent understands
 * it.
 */
export function specToWrite(
  spec: RoutingTableSpec,
  dataplaneNodes: ReadonlyMap<string, DataplaneNode>,
): WrittenSpec {
  const shared = agentsShareBackends(dataplaneNodes) ? shareBackends(spec) : spec;
  const strings = agentsList(ENDPOINTS_FEATURE, dataplaneNodes)
    ? backendsAsStrings(shared)
    : shared;
  return agentsList(COMPACT_ENTRIES_FEATURE, dataplaneNodes) ? compactEntries(strings) : strings;
}
