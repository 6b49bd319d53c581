/**
 * The form a RoutingTable is written in: an entry whose Service and backends
 * are those of an earlier entry refers to it (`backendsFrom`) instead of
 * listing them again, and an entry lists its backends as one string each
 * (`endpoints`), each once every agent understands it.
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
  type DataplaneNode,
  ENDPOINTS_FEATURE,
  entryKey,
  formatEndpoint,
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
 * The spec to compare with the cached table and write: backends shared, and
 * written as strings, each when every agent understands it.
 */
export function specToWrite(
  spec: RoutingTableSpec,
  dataplaneNodes: ReadonlyMap<string, DataplaneNode>,
): RoutingTableSpec {
  const shared = agentsShareBackends(dataplaneNodes) ? shareBackends(spec) : spec;
  return agentsList(ENDPOINTS_FEATURE, dataplaneNodes) ? backendsAsStrings(shared) : shared;
}
