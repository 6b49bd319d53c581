/**
 * Desired state: what the maps of one node should hold, computed from every
 * RoutingTable the agent knows. Pure: no maps, no API server.
 *
 * Per table the outcome is one of
 * - `programmed`: its current generation goes in;
 * - `invalid` or `capacity`: its last programmed entries stay (or, when the
 *   agent has not programmed it since it started, whatever the maps hold
 *   for its addresses), never part of the new generation;
 * - `conflict`: frontends claimed by another table too are programmed for
 *   neither; its other entries go in.
 *
 * @module
 */
import {
  canonicalIp,
  entryKey,
  formatFieldErrors,
  type RoutingTable,
  type RoutingTableEntry,
  validateRoutingTable,
} from "../api/mod.ts";
import type { MapCapacity, ServiceAddress } from "./bpf/maps.ts";
import { parseIPv4 } from "./bpf/layout.ts";

/** A backend as the data plane needs it. */
export interface DesiredBackend {
  /** Address. */
  addr: string;
  /** Port. */
  port: number;
  /** Share of new flows; 0 keeps existing flows only. */
  weight: number;
  /** On another node: reached with the source translated to this node. */
  remote: boolean;
}

/** One frontend to program. */
export interface DesiredService {
  /** `address:port/protocol`. */
  frontend: string;
  /** The frontend as the maps key it. */
  address: ServiceAddress;
  /** `namespace/name` of the table it comes from. */
  table: string;
  /** Never translate the source (local-only Gateways). */
  keepClientAddress: boolean;
  /** Share of new flows rejected actively. */
  rejectWeight: number;
  /** Backends sorted by address then port, unique. */
  backends: DesiredBackend[];
}

/** What became of one table. */
export type TableResult = "programmed" | "invalid" | "conflict" | "capacity";

/** The outcome for one table, for its status line. */
export interface TableOutcome {
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
  /** `metadata.generation` seen. */
  generation: number;
  /** What happened. */
  result: TableResult;
  /** One line per problem. */
  errors: string[];
  /** Entries of the table that are programmed. */
  entries: number;
  /** Backends of those entries. */
  backends: number;
}

/** The last generation of a table that went into the maps, remembered for fallbacks. */
export interface LastProgrammed {
  /** Its generation. */
  generation: number;
  /** Its services. */
  services: DesiredService[];
}

/** Everything the maps should hold. */
export interface DesiredState {
  /** By frontend. */
  services: Map<string, DesiredService>;
  /** Frontends to leave exactly as they are in the maps (fallback after a restart). */
  keep: Set<string>;
  /** Per table, sorted by namespace/name. */
  tables: TableOutcome[];
  /**
   * Per table (`namespace/name`), its services in `services`: the same array
   * as last time while the table is unchanged, so it can be remembered as
   * {@linkcode LastProgrammed} and the next call reuses what it computed.
   */
  byTable: Map<string, DesiredService[]>;
  /**
   * Set when the state was computed from an earlier one (DesiredStateTracker): the frontends
   * whose service in `services` may differ from `since`'s. The programmer then visits only
   * these, if `since` is what it applied last.
   */
  changes?: { since: DesiredState; frontends: ReadonlySet<string> };
}

/** Options of {@linkcode computeDesiredState}. */
export interface DesiredStateOptions {
  /** This node's name: backends on other nodes are remote. */
  node: string;
  /** Last programmed generation per table (`namespace/name`). */
  lastProgrammed: ReadonlyMap<string, LastProgrammed>;
  /** Frontends in the maps now (for fallbacks after a restart; iterated only when needed). */
  programmedFrontends: Iterable<string>;
  /** Map capacity. */
  capacity: MapCapacity;
  /** Reuse of unchanged tables' validation and services between calls. */
  cache?: TableCache;
}

/** At most this many error lines per table: statuses stay small. */
const MAX_ERRORS = 8;

/** `namespace/name` of a table. */
export function tableName(t: { metadata?: { namespace?: string; name?: string } }): string {
  return `${t.metadata?.namespace ?? ""}/${t.metadata?.name ?? ""}`;
}

/**
 * `canonicalIp(ip) ?? ip`, without the general parser for dotted quads (the
 * common case, ~10^5 per sync): canonicalIp returns one unchanged, and one
 * with leading zeros is no address for it either.
 */
function canonical(ip: string): string {
  return parseIPv4(ip) !== undefined ? ip : canonicalIp(ip) ?? ip;
}

/** The frontend key of an entry, with the address canonical. */
export function frontendKey(e: Pick<RoutingTableEntry, "address" | "port" | "protocol">): string {
  return entryKey({ ...e, address: canonical(e.address) });
}

/** The services one valid table asks this node for. */
export function tableServices(table: RoutingTable, node: string): DesiredService[] {
  const local = table.spec.localBackendsOnly === true;
  const name = tableName(table);
  return table.spec.entries.map((e) => {
    const all: DesiredBackend[] = [];
    for (const b of e.backends) {
      const remote = b.node !== undefined && b.node !== node;
      if (local && remote) continue;
      all.push({ addr: canonical(b.ip), port: b.port, weight: b.weight, remote });
    }
    // A stable sort keeps equal endpoints in their order: the same endpoint twice is one slot,
    // the first one's weight (no set of keys, a string each: ~10^5 backends in a first sync).
    all.sort((a, b) => a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : a.port - b.port);
    let backends = all;
    for (let i = 1; i < all.length; i++) {
      if (all[i]!.addr === all[i - 1]!.addr && all[i]!.port === all[i - 1]!.port) {
        backends = all.filter((b, j) =>
          j === 0 || b.addr !== all[j - 1]!.addr || b.port !== all[j - 1]!.port
        );
        break;
      }
    }
    const addr = canonical(e.address);
    return {
      frontend: frontendKey(e),
      address: { addr, port: e.port, protocol: e.protocol },
      table: name,
      keepClientAddress: local,
      rejectWeight: e.rejectWeight,
      backends,
    };
  });
}

/** Map entries a list of services takes. */
export interface Usage {
  services: number;
  keys: number;
  backends: number;
}

/** Usage per services list, by identity: unchanged tables keep their lists between calls. */
const usageCache = new WeakMap<readonly DesiredService[], Usage>();

export function usageOf(services: readonly DesiredService[]): Usage {
  const cached = usageCache.get(services);
  if (cached) return cached;
  const addrs = new Set(services.map((s) => s.address.addr));
  let backends = 0;
  for (const s of services) backends += s.backends.length;
  const u = { services: services.length, keys: services.length + addrs.size, backends };
  usageCache.set(services, u);
  return u;
}

/** peakUsage per (old, now) pair of lists, by identity. */
const peakCache = new WeakMap<
  readonly DesiredService[],
  WeakMap<readonly DesiredService[], Usage>
>();

/** Usage while switching from `old` to `now`: old backends linger until the new ones are in. */
export function peakUsage(old: readonly DesiredService[], now: readonly DesiredService[]): Usage {
  const cached = peakCache.get(now)?.get(old);
  if (cached) return cached;
  const u = { ...usageOf(now) };
  const byFrontend = new Map(now.map((s) => [s.frontend, s]));
  for (const o of old) {
    const n = byFrontend.get(o.frontend);
    if (!n || n === o) continue; // removed services go first and free their ids; same: no extra
    const keep = new Set(n.backends.map((b) => `${b.addr}:${b.port}`));
    for (const b of o.backends) if (!keep.has(`${b.addr}:${b.port}`)) u.backends++;
  }
  // `old` only as a weak key: a strong one would keep each table's lists alive through the next.
  peakCache.set(now, new WeakMap([[old, u]]));
  return u;
}

/** Whether `u` fits in `c`. */
export function fits(u: Usage, c: MapCapacity): boolean {
  return u.services <= c.serviceIds && u.keys <= c.serviceKeys && u.backends <= c.backendIds;
}

/** `a + sign * b`. */
export function add(a: Usage, b: Usage, sign = 1): Usage {
  return {
    services: a.services + sign * b.services,
    keys: a.keys + sign * b.keys,
    backends: a.backends + sign * b.backends,
  };
}

interface Candidate {
  name: string;
  namespace: string;
  tableName: string;
  generation: number;
  valid?: boolean;
  errors: string[];
  addresses: string[];
  /** What stays if this generation does not go in. */
  fallback: DesiredService[];
  /** This generation's services, when valid. */
  wanted: DesiredService[];
  result?: TableResult;
}

/** A table validated and turned into services, cached by resourceVersion. */
export interface ParsedTable {
  /** Whether the table is valid. */
  valid: boolean;
  /** Its services when valid. */
  wanted: DesiredService[];
  /** Validation errors. */
  errors: string[];
  /** Its addresses, canonical. */
  addresses: string[];
}

/** Parsed tables by `namespace/name`, reused while the resourceVersion is the same. */
export type TableCache = Map<string, { resourceVersion: string; parsed: ParsedTable }>;

function parseTable(raw: unknown, node: string): ParsedTable {
  const v = validateRoutingTable(raw);
  if (v.ok) {
    return {
      valid: true,
      wanted: tableServices(v.value, node),
      errors: [],
      addresses: v.value.spec.addresses.map(canonical),
    };
  }
  const lines = formatFieldErrors(v.errors).split("\n");
  const errors = lines.slice(0, MAX_ERRORS);
  if (lines.length > MAX_ERRORS) errors.push(`... and ${lines.length - MAX_ERRORS} more`);
  const addrs = (raw as { spec?: { addresses?: unknown } }).spec?.addresses;
  const addresses = Array.isArray(addrs)
    ? addrs.filter((a): a is string => typeof a === "string").map(canonical)
    : [];
  return { valid: false, wanted: [], errors, addresses };
}

/** What {@linkcode compactTable} parsed, by the object it returned. */
const preparsed = new WeakMap<object, ParsedTable>();

/**
 * A valid table's entries by their JSON text, kept with the object compactTable returned so that
 * its next version's unchanged entries are neither validated nor parsed again.
 */
interface EntryIndex {
  /** What the services were computed with: the node, the table's name, localBackendsOnly. */
  node: string;
  name: string;
  local: boolean;
  /** `spec.addresses` as JSON: each entry's address was checked against them. */
  addresses: string;
  /** Per entry (in order), its JSON text: `parsed.wanted[i]` is entry i's service. */
  keys: string[];
  /** Entry index by JSON text. */
  byKey: Map<string, number>;
  parsed: ParsedTable;
}

/** The entry index of what compactTable returned, for the next version of the table. */
const entryIndexes = new WeakMap<object, EntryIndex>();

/** A RoutingTable reduced to what identifies it; its parsed services are held aside. */
export interface CompactTable {
  apiVersion: unknown;
  kind: unknown;
  metadata: {
    name?: string;
    namespace?: string;
    uid?: string;
    generation?: number;
    resourceVersion?: string;
  };
}

/** Options of {@linkcode compactTable}. */
export interface CompactTableOptions {
  /**
   * What compactTable returned for the table's version before (the cache's
   * object, if any). From a table's first change on, its entries' JSON texts
   * are kept with what this returns, and at its next change the entries
   * whose text is the same are taken from it, not validated and parsed again.
   */
  previous?: unknown;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Each entry's JSON text, or undefined when an entry is not an object or
 * has `backendsFrom` (its services depend on another entry: no reuse).
 */
function entryTexts(raw: unknown): string[] | undefined {
  const spec = (raw as { spec?: unknown } | null)?.spec;
  if (!isPlainObject(spec) || !Array.isArray(spec.entries)) return undefined;
  const keys: string[] = [];
  for (const e of spec.entries) {
    if (!isPlainObject(e) || e.backendsFrom !== undefined) return undefined;
    keys.push(JSON.stringify(e));
  }
  return keys;
}

/**
 * `raw` parsed from `prev` and its changed entries alone, when that is
 * exact: the same name, node, addresses and localBackendsOnly, the table
 * without its unchanged entries valid, no frontend twice. Otherwise
 * undefined, and the whole table is validated as always (so an invalid
 * table's errors and their paths are exactly those of a full validation).
 * The table-wide checks of an entry are over the addresses (the same) and
 * the other entries' frontends (checked here); the rest of its checks read
 * the entry alone, whose JSON text is the same as when it passed them.
 */
function parseChanged(
  raw: unknown,
  node: string,
  prev: EntryIndex,
  keys: string[],
): { parsed: ParsedTable; keys: string[] } | undefined {
  const spec = (raw as { spec: Record<string, unknown> & { entries: unknown[] } }).spec;
  if (
    prev.node !== node || prev.name !== tableName(raw as never) ||
    prev.local !== (spec.localBackendsOnly === true) ||
    prev.addresses !== JSON.stringify(spec.addresses)
  ) return undefined;
  const old = prev.parsed.wanted;
  const changed: unknown[] = [];
  const at: number[] = [];
  for (let i = 0; i < keys.length; i++) {
    const j = prev.byKey.get(keys[i]!);
    at.push(j ?? -1);
    if (j === undefined) changed.push(spec.entries[i]);
    else keys[i] = prev.keys[j]!; // the old text: the new one dies young
  }
  if (changed.length === keys.length) return undefined; // nothing to reuse
  const v = validateRoutingTable({ ...(raw as object), spec: { ...spec, entries: changed } });
  if (!v.ok) return undefined;
  const fresh = tableServices(v.value, node);
  const wanted: DesiredService[] = [];
  const frontends = new Set<string>();
  let next = 0;
  for (let i = 0; i < keys.length; i++) {
    const j = at[i]!;
    const s = j >= 0 ? old[j]! : fresh[next++]!;
    if (frontends.has(s.frontend)) return undefined; // a duplicate: the full check reports it
    frontends.add(s.frontend);
    wanted.push(s);
  }
  return { parsed: { valid: true, wanted, errors: [], addresses: prev.parsed.addresses }, keys };
}

/**
 * Validates and parses `raw` for `node` now and returns only its identity:
 * computeDesiredState uses the parsed form of what this returns. A table
 * cache that keeps this instead of the table does not hold the raw spec
 * (~30 MiB of heap for 10,000 services of 10 backends) beside its parsed
 * services, and the parsing is done as tables arrive rather than in a sync.
 * With `options.previous`, the entries that are the same as in the version
 * before are taken from it (one changed endpoint of a 64-entry table: one
 * entry validated and parsed, not 64), from the table's second change on.
 */
export function compactTable(
  raw: unknown,
  node: string,
  options: CompactTableOptions = {},
): CompactTable {
  const meta = (raw as { metadata?: CompactTable["metadata"] } | undefined)?.metadata;
  const compact: CompactTable = {
    apiVersion: (raw as { apiVersion?: unknown })?.apiVersion,
    kind: (raw as { kind?: unknown })?.kind,
    metadata: {
      ...(meta?.name !== undefined ? { name: meta.name } : {}),
      ...(meta?.namespace !== undefined ? { namespace: meta.namespace } : {}),
      ...(meta?.uid !== undefined ? { uid: meta.uid } : {}),
      ...(meta?.generation !== undefined ? { generation: meta.generation } : {}),
      ...(meta?.resourceVersion !== undefined ? { resourceVersion: meta.resourceVersion } : {}),
    },
  };
  const prev = isPlainObject(options.previous) ? entryIndexes.get(options.previous) : undefined;
  // Only a table that changes keeps its entries' texts (~0.5 KB an entry): none of a first list
  // (~5 MiB at 10,000 services), nor of a re-list that finds a table as it was.
  const changes = prev !== undefined ||
    (isPlainObject(options.previous) &&
      (options.previous as Partial<CompactTable>).metadata?.resourceVersion !==
        meta?.resourceVersion);
  let keys = changes ? entryTexts(raw) : undefined;
  const reused = keys && prev ? parseChanged(raw, node, prev, keys) : undefined;
  const parsed = reused?.parsed ?? parseTable(raw, node);
  preparsed.set(compact, parsed);
  if (reused) keys = reused.keys;
  if (keys && parsed.valid && parsed.wanted.length === keys.length) {
    const spec = (raw as { spec: Record<string, unknown> }).spec;
    const byKey = new Map<string, number>();
    keys.forEach((k, i) => byKey.set(k, i));
    entryIndexes.set(compact, {
      node,
      name: tableName(raw as never),
      local: spec.localBackendsOnly === true,
      addresses: JSON.stringify(spec.addresses),
      keys,
      byKey,
      parsed,
    });
  }
  return compact;
}

/**
 * The parsed form of `raw` (named `name`): compactTable's, else the cache's
 * while the resourceVersion is the same, else parsed now (and cached).
 */
export function parsedTable(
  raw: unknown,
  name: string,
  options: Pick<DesiredStateOptions, "node" | "cache">,
): ParsedTable {
  const parsed = typeof raw === "object" && raw !== null ? preparsed.get(raw) : undefined;
  if (parsed) return parsed;
  const rv = (raw as { metadata?: { resourceVersion?: string } } | null)?.metadata?.resourceVersion;
  const cached = rv !== undefined ? options.cache?.get(name) : undefined;
  if (cached && cached.resourceVersion === rv) return cached.parsed;
  const now = parseTable(raw, options.node);
  if (rv !== undefined) options.cache?.set(name, { resourceVersion: rv, parsed: now });
  return now;
}

/**
 * Computes the desired map contents from raw RoutingTable objects (as read
 * from the API server, unvalidated).
 *
 * @example
 * ```ts
 * const desired = computeDesiredState(informerObjects, {
 *   node: "node-1", lastProgrammed: new Map(), programmedFrontends: new Set(),
 *   capacity: maps.capacity(),
 * });
 * ```
 */
export function computeDesiredState(
  tables: readonly unknown[],
  options: DesiredStateOptions,
): DesiredState {
  const candidates: Candidate[] = [];
  for (const raw of tables) {
    const meta = (raw as { metadata?: { namespace?: string; name?: string; generation?: number } })
      .metadata;
    const name = tableName(raw as never);
    const c: Candidate = {
      name: meta?.name ?? "",
      namespace: meta?.namespace ?? "",
      tableName: name,
      generation: meta?.generation ?? 0,
      errors: [],
      addresses: [],
      fallback: options.lastProgrammed.get(name)?.services ?? [],
      wanted: [],
    };
    const parsed = parsedTable(raw, name, options);
    c.addresses = parsed.addresses;
    c.errors = [...parsed.errors];
    if (parsed.valid) {
      c.valid = parsed.valid;
      c.wanted = parsed.wanted;
    } else {
      c.result = "invalid";
    }
    candidates.push(c);
  }
  candidates.sort((a, b) => a.tableName < b.tableName ? -1 : a.tableName > b.tableName ? 1 : 0);

  // Conflicts over what each table would program: frontends claimed twice go nowhere.
  // One map of first claimants; a set of claimants only for the (rare) frontends claimed twice.
  const firstClaim = new Map<string, string>();
  const claims = new Map<string, Set<string>>();
  for (const c of candidates) {
    for (const s of c.valid ? c.wanted : c.fallback) {
      const first = firstClaim.get(s.frontend);
      if (first === undefined) firstClaim.set(s.frontend, c.tableName);
      else if (first !== c.tableName) {
        const set = claims.get(s.frontend) ?? new Set([first]);
        set.add(c.tableName);
        claims.set(s.frontend, set);
      }
    }
  }
  const conflicted = new Set(claims.keys());
  if (conflicted.size > 0) {
    // Lists without conflicted frontends stay the same arrays (their usage stays cached).
    const drop = (list: DesiredService[]) =>
      list.some((s) => conflicted.has(s.frontend))
        ? list.filter((s) => !conflicted.has(s.frontend))
        : list;
    for (const c of candidates) {
      if (c.valid) {
        const mine = c.wanted.filter((s) => conflicted.has(s.frontend));
        for (const s of mine) {
          const others = [...claims.get(s.frontend)!].filter((t) => t !== c.tableName);
          c.errors.push(`frontend ${s.frontend} is also claimed by ${others.join(", ")}`);
        }
        if (mine.length > 0) c.result = "conflict";
        c.wanted = drop(c.wanted);
      }
      c.fallback = drop(c.fallback);
    }
  }

  // Capacity: start from what stays anyway, then let tables in one at a time.
  let usage: Usage = { services: 0, keys: 0, backends: 0 };
  for (const c of candidates) usage = add(usage, usageOf(c.fallback));
  for (const c of candidates) {
    if (!c.valid) continue;
    const next = add(add(usage, usageOf(c.fallback), -1), peakUsage(c.fallback, c.wanted));
    if (fits(next, options.capacity)) {
      usage = add(add(usage, usageOf(c.fallback), -1), usageOf(c.wanted));
      c.result ??= "programmed";
    } else {
      const u = usageOf(c.wanted);
      c.result = "capacity";
      c.errors.push(
        `does not fit: ${u.services} services, ${u.backends} backends; free ` +
          `${options.capacity.serviceIds - usage.services} service ids, ` +
          `${options.capacity.backendIds - usage.backends} backend ids`,
      );
    }
  }

  const services = new Map<string, DesiredService>();
  const keep = new Set<string>();
  const outcomes: TableOutcome[] = [];
  const lists: [string, DesiredService[]][] = [];
  const claimedNow = new Set<string>();
  for (const c of candidates) {
    const list = c.result === "programmed" || c.result === "conflict" ? c.wanted : c.fallback;
    for (const s of list) claimedNow.add(s.frontend);
  }
  for (const c of candidates) {
    const goesIn = c.result === "programmed" || c.result === "conflict";
    const list = goesIn ? c.wanted : c.fallback;
    for (const s of list) services.set(s.frontend, s);
    lists.push([c.tableName, list]);
    if (!goesIn && !options.lastProgrammed.has(c.tableName)) {
      // Not programmed by this process yet: leave what the maps hold for its addresses.
      const addrs = new Set(c.addresses);
      for (const f of options.programmedFrontends) {
        if (claimedNow.has(f) || conflicted.has(f)) continue;
        if (addrs.has(frontendAddress(f))) keep.add(f);
      }
    }
    outcomes.push({
      namespace: c.namespace,
      name: c.name,
      generation: c.generation,
      result: c.result ?? "invalid",
      errors: c.errors,
      entries: list.length,
      backends: usageOf(list).backends,
    });
  }
  // Each table's services as they went in (a later table's fallback may take a frontend over).
  const byTable = new Map<string, DesiredService[]>();
  for (const [name, list] of lists) {
    byTable.set(
      name,
      list.every((s) => services.get(s.frontend) === s)
        ? list
        : list.filter((s) => services.get(s.frontend) === s),
    );
  }
  return { services, keep, tables: outcomes, byTable };
}

/** The address part of a frontend key. */
export function frontendAddress(frontend: string): string {
  const host = frontend.slice(0, frontend.lastIndexOf(":"));
  return host.startsWith("[") ? host.slice(1, -1) : host;
}
