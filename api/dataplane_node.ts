/**
 * DataplaneNode (blixt.dev/v1alpha1): what one node's agent has programmed.
 * Cluster-scoped, one per node, same name as the Node, owned by it. Written by
 * the agent (status, server-side apply), read by the operator (Gateway
 * `Programmed`) and kubectl-blixt.
 *
 * @module
 */
import { FieldErrors, type JsonObject } from "./_field_checks.ts";
import { API_VERSION, type Condition, type ObjectMeta, type Validated } from "./meta.ts";
import { parseIp } from "./ip_address.ts";
import { PROTOCOLS } from "./routing_table.ts";

/** Kind name. */
export const DATAPLANE_NODE_KIND = "DataplaneNode";
/** Plural resource name. */
export const DATAPLANE_NODE_PLURAL = "dataplanenodes";

/** Condition types an agent reports. */
export const DATAPLANE_CONDITIONS = {
  /** True when every table is programmed at its current generation. */
  ready: "Ready",
  /** True when something is wrong but the node still forwards what it can. */
  degraded: "Degraded",
} as const;

/** Reasons an agent reports on its conditions. */
export const DATAPLANE_REASONS = {
  programmed: "Programmed",
  syncing: "Syncing",
  tableInvalid: "TableInvalid",
  frontendConflict: "FrontendConflict",
  capacityExceeded: "CapacityExceeded",
  bpfError: "BPFError",
  noProblems: "NoProblems",
  /** The agent stopped gracefully; the pinned maps keep forwarding what they hold. */
  agentStopped: "AgentStopped",
  /** The node's Node object does not exist (deleted); the maps are kept as they are. */
  nodeNotFound: "NodeNotFound",
  /** The uplink, or a pod interface that existed, does not carry the program (re-attached every 5 s). */
  interfaceNotAttached: "InterfaceNotAttached",
} as const;

/** Desired state of a DataplaneNode: which node and uplink it describes. */
export interface DataplaneNodeSpec {
  /** The Node this object describes (also its name). */
  nodeName: string;
  /** Interface the TC program is attached to, when known. */
  uplink?: string;
}

/** What the agent did with one RoutingTable. */
export interface TableStatus {
  /** Table (and Gateway) namespace. */
  namespace: string;
  /** Table (and Gateway) name. */
  name: string;
  /** Latest `metadata.generation` of the table the agent has seen. */
  observedGeneration: number;
  /**
   * Generation whose entries are in the maps now; absent before the first
   * success. The Gateway is Programmed when this equals the table's
   * generation on every ready node.
   */
  programmedGeneration?: number;
  /** Entries programmed. */
  entries: number;
  /** Backends programmed, over all entries. */
  backends: number;
  /** Why `observedGeneration` is not programmed, one line each. */
  errors?: string[];
}

/** Traffic counters of one backend, summed over CPUs. */
export interface BackendCounters {
  /** Backend address. */
  ip: string;
  /** Backend port. */
  port: number;
  /** Packets forwarded. */
  packets: number;
  /** Bytes forwarded. */
  bytes: number;
  /** Flows created. */
  newFlows: number;
}

/** Traffic counters of one frontend and its backends. */
export interface ServiceCounters {
  /** Frontend address. */
  address: string;
  /** Frontend port. */
  port: number;
  /** Frontend protocol. */
  protocol: typeof PROTOCOLS[number];
  /** Packets received. */
  packets: number;
  /** Bytes received. */
  bytes: number;
  /** Flows created. */
  newFlows: number;
  /** Flows rejected (no backend, or the reject share). */
  rejectedFlows: number;
  /** Per backend. */
  backends: BackendCounters[];
}

/**
 * The counters of one frontend in the compact form agents write: one string
 * for the frontend and one per backend, read through {@linkcode serviceCountersOf}.
 */
export interface CompactServiceCounters {
  /** `address port protocol packets bytes newFlows rejectedFlows`, e.g. `198.18.200.1 80 TCP 1200 96000 40 10`. */
  service: string;
  /** One per backend, busiest first: `ip port packets bytes newFlows`, e.g. `198.18.33.2 8080 700 56000 16`. */
  backends: string[];
}

/** A snapshot of the counters, written at most every 10 s and only on change. */
export interface CountersSnapshot {
  /** When the counters were read. */
  collectedAt: string;
  /**
   * Per frontend, one object per counter: what agents wrote before
   * `frontends`. Agents that write `frontends` write this empty (older
   * readers require it).
   */
  services: ServiceCounters[];
  /** Per frontend, compact (a fifth of the size); readers prefer it when present. */
  frontends?: CompactServiceCounters[];
  /**
   * New flows to backends on other nodes that found no free SNAT port and
   * were rejected (RST, ICMP unreachable), since the maps were created; absent when none.
   */
  snatExhausted?: number;
}

/** How full one BPF map is: what bounds how much a node can program. */
export interface MapUsage {
  /** Map name, e.g. `services`, `backends`, `maglev`, `conntrack`. */
  name: string;
  /** Entries in use. */
  entries: number;
  /** The map's `max_entries`. */
  capacity: number;
}

/** Observed state of a node's data plane. */
export interface DataplaneNodeStatus {
  /** `Ready` and `Degraded`. */
  conditions?: Condition[];
  /**
   * When the agent last finished bringing the maps in line with the tables
   * (a change programmed, or the reconcile at start), RFC 3339.
   */
  lastSyncTime?: string;
  /**
   * Optional parts of the RoutingTable contract the agent understands (e.g.
   * `backendsFrom`): the operator uses one only when every node lists it.
   */
  features?: string[];
  /** Fill of the maps against their capacity, sorted by name. */
  maps?: MapUsage[];
  /** One per RoutingTable the agent knows, sorted by namespace/name. */
  tables?: TableStatus[];
  /** Latest counters. */
  counters?: CountersSnapshot;
}

/** A DataplaneNode object. */
export interface DataplaneNode {
  /** `blixt.dev/v1alpha1`. */
  apiVersion: typeof API_VERSION;
  /** `DataplaneNode`. */
  kind: typeof DATAPLANE_NODE_KIND;
  /** Named after the node; no namespace. */
  metadata: ObjectMeta;
  /** Which node. */
  spec: DataplaneNodeSpec;
  /** What it did. */
  status?: DataplaneNodeStatus;
}

/**
 * Checks an untrusted object against the DataplaneNode contract, reporting
 * every problem with its field path. Never throws.
 */
export function validateDataplaneNode(
  value: unknown,
): Validated<DataplaneNode> {
  const e = new FieldErrors();
  if (!e.object(value, "")) return { ok: false, errors: e.list };
  if (value.apiVersion !== API_VERSION) {
    e.add("apiVersion", `must be ${API_VERSION}`);
  }
  if (value.kind !== DATAPLANE_NODE_KIND) {
    e.add("kind", `must be ${DATAPLANE_NODE_KIND}`);
  }
  if (e.object(value.metadata, "metadata")) {
    e.string(value.metadata.name, "metadata.name", { minLength: 1 });
    if (value.metadata.namespace !== undefined) {
      e.add("metadata.namespace", "must be absent: the kind is cluster-scoped");
    }
  }
  if (e.object(value.spec, "spec")) {
    e.string(value.spec.nodeName, "spec.nodeName", { minLength: 1 });
    if (value.spec.uplink !== undefined) {
      e.string(value.spec.uplink, "spec.uplink");
    }
  }
  if (value.status !== undefined && e.object(value.status, "status")) {
    checkStatus(value.status, e);
  }
  return e.list.length === 0
    ? { ok: true, value: value as unknown as DataplaneNode }
    : { ok: false, errors: e.list };
}

const COUNT_MAX = Number.MAX_SAFE_INTEGER;

function checkStatus(status: JsonObject, e: FieldErrors): void {
  if (status.conditions !== undefined) {
    if (e.array(status.conditions, "status.conditions")) {
      status.conditions.forEach((c, i) => {
        const p = `status.conditions[${i}]`;
        if (!e.object(c, p)) return;
        e.string(c.type, `${p}.type`, { minLength: 1 });
        e.oneOf(c.status, `${p}.status`, ["True", "False", "Unknown"]);
        e.string(c.reason, `${p}.reason`, { minLength: 1 });
        e.string(c.lastTransitionTime, `${p}.lastTransitionTime`, {
          minLength: 1,
        });
      });
    }
  }
  if (status.lastSyncTime !== undefined) {
    e.string(status.lastSyncTime, "status.lastSyncTime", { minLength: 1 });
  }
  if (status.features !== undefined && e.array(status.features, "status.features")) {
    status.features.forEach((f, i) => e.string(f, `status.features[${i}]`, { minLength: 1 }));
  }
  if (status.maps !== undefined && e.array(status.maps, "status.maps")) {
    status.maps.forEach((m, i) => {
      const p = `status.maps[${i}]`;
      if (!e.object(m, p)) return;
      e.string(m.name, `${p}.name`, { minLength: 1 });
      e.integer(m.entries, `${p}.entries`, 0, COUNT_MAX);
      e.integer(m.capacity, `${p}.capacity`, 0, COUNT_MAX);
    });
  }
  if (status.tables !== undefined && e.array(status.tables, "status.tables")) {
    status.tables.forEach((t, i) => {
      const p = `status.tables[${i}]`;
      if (!e.object(t, p)) return;
      e.string(t.namespace, `${p}.namespace`, { minLength: 1 });
      e.string(t.name, `${p}.name`, { minLength: 1 });
      e.integer(t.observedGeneration, `${p}.observedGeneration`, 0, COUNT_MAX);
      if (t.programmedGeneration !== undefined) {
        e.integer(
          t.programmedGeneration,
          `${p}.programmedGeneration`,
          0,
          COUNT_MAX,
        );
      }
      e.integer(t.entries, `${p}.entries`, 0, COUNT_MAX);
      e.integer(t.backends, `${p}.backends`, 0, COUNT_MAX);
      if (t.errors !== undefined && e.array(t.errors, `${p}.errors`)) {
        t.errors.forEach((m, j) => e.string(m, `${p}.errors[${j}]`));
      }
    });
  }
  if (
    status.counters !== undefined &&
    e.object(status.counters, "status.counters")
  ) {
    const c = status.counters;
    e.string(c.collectedAt, "status.counters.collectedAt", { minLength: 1 });
    if (c.snatExhausted !== undefined) {
      e.integer(c.snatExhausted, "status.counters.snatExhausted", 0, Number.MAX_SAFE_INTEGER);
    }
    if (c.frontends !== undefined && e.array(c.frontends, "status.counters.frontends")) {
      c.frontends.forEach((f, i) => {
        const p = `status.counters.frontends[${i}]`;
        if (!e.object(f, p)) return;
        if (typeof f.service !== "string" || parseService(f.service) === null) {
          e.add(
            `${p}.service`,
            `must be "address port protocol packets bytes newFlows rejectedFlows", got ${
              JSON.stringify(f.service)
            }`,
          );
        }
        if (e.array(f.backends, `${p}.backends`)) {
          f.backends.forEach((b, j) => {
            if (typeof b !== "string" || parseBackend(b) === null) {
              e.add(
                `${p}.backends[${j}]`,
                `must be "ip port packets bytes newFlows", got ${JSON.stringify(b)}`,
              );
            }
          });
        }
      });
    }
    if (e.array(c.services, "status.counters.services")) {
      c.services.forEach((s, i) => {
        const p = `status.counters.services[${i}]`;
        if (!e.object(s, p)) return;
        e.ip(s.address, `${p}.address`);
        e.integer(s.port, `${p}.port`, 1, 65535);
        e.oneOf(s.protocol, `${p}.protocol`, PROTOCOLS);
        for (const k of ["packets", "bytes", "newFlows", "rejectedFlows"]) {
          e.integer(s[k], `${p}.${k}`, 0, COUNT_MAX);
        }
        if (e.array(s.backends, `${p}.backends`)) {
          s.backends.forEach((b, j) => {
            const bp = `${p}.backends[${j}]`;
            if (!e.object(b, bp)) return;
            e.ip(b.ip, `${bp}.ip`);
            e.integer(b.port, `${bp}.port`, 1, 65535);
            for (const k of ["packets", "bytes", "newFlows"]) {
              e.integer(b[k], `${bp}.${k}`, 0, COUNT_MAX);
            }
          });
        }
      });
    }
  }
}

/**
 * The generation of a table that a node has programmed, or undefined.
 * The operator's `Programmed` check and kubectl-blixt both use this.
 */
export function programmedGeneration(
  node: DataplaneNode,
  table: { namespace: string; name: string },
): number | undefined {
  return node.status?.tables?.find((t) => t.namespace === table.namespace && t.name === table.name)
    ?.programmedGeneration;
}

const DIGITS = /^(0|[1-9][0-9]{0,15})$/;

/** A counter's decimal text, or null when it is not a safe integer >= 0. */
function count(text: string | undefined): number | null {
  if (text === undefined || !DIGITS.test(text)) return null;
  const n = Number(text);
  return n <= COUNT_MAX ? n : null;
}

function port(text: string | undefined): number | null {
  const n = count(text);
  return n !== null && n >= 1 && n <= 65535 ? n : null;
}

/** The backend counters of one compact string, or null when it is malformed. */
function parseBackend(text: string): BackendCounters | null {
  const f = text.split(" ");
  if (f.length !== 5 || parseIp(f[0]!) === null) return null;
  const [p, packets, bytes, newFlows] = [port(f[1]), count(f[2]), count(f[3]), count(f[4])];
  if (p === null || packets === null || bytes === null || newFlows === null) return null;
  return { ip: f[0]!, port: p, packets, bytes, newFlows };
}

/** The frontend counters (without backends) of one compact string, or null when it is malformed. */
function parseService(text: string): Omit<ServiceCounters, "backends"> | null {
  const f = text.split(" ");
  if (f.length !== 7 || parseIp(f[0]!) === null) return null;
  const protocol = PROTOCOLS.find((x) => x === f[2]);
  const [p, packets, bytes, newFlows, rejectedFlows] = [
    port(f[1]),
    count(f[3]),
    count(f[4]),
    count(f[5]),
    count(f[6]),
  ];
  if (
    protocol === undefined || p === null || packets === null || bytes === null ||
    newFlows === null || rejectedFlows === null
  ) return null;
  return { address: f[0]!, port: p, protocol, packets, bytes, newFlows, rejectedFlows };
}

/**
 * The per-frontend counters of a snapshot, from its compact `frontends` when
 * present (agents since 2026-11-27), else from `services` (older agents).
 * Use on validated objects: a malformed string is skipped.
 *
 * @example
 * ```ts
 * const services = serviceCountersOf({
 *   collectedAt: "2026-11-27T12:00:00Z",
 *   services: [],
 *   frontends: [{ service: "198.18.200.1 80 TCP 12 960 4 0", backends: ["198.18.33.2 8080 12 960 4"] }],
 * });
 * // services[0]!.backends[0]!.packets === 12
 * ```
 */
export function serviceCountersOf(snapshot: CountersSnapshot): ServiceCounters[] {
  if (snapshot.frontends === undefined) return snapshot.services;
  return snapshot.frontends.flatMap((f) => {
    const service = parseService(f.service);
    if (service === null) return [];
    const backends = f.backends.map(parseBackend).filter((b) => b !== null);
    return [{ ...service, backends }];
  });
}

/**
 * The compact form of per-frontend counters, as agents write them into
 * `status.counters` (`services` left empty for older readers).
 */
export function compactCounters(
  snapshot: { collectedAt: string; services: readonly ServiceCounters[]; snatExhausted?: number },
): CountersSnapshot {
  return {
    collectedAt: snapshot.collectedAt,
    services: [],
    frontends: snapshot.services.map((s) => ({
      service: [s.address, s.port, s.protocol, s.packets, s.bytes, s.newFlows, s.rejectedFlows]
        .join(" "),
      backends: s.backends.map((b) => [b.ip, b.port, b.packets, b.bytes, b.newFlows].join(" ")),
    })),
    ...(snapshot.snatExhausted !== undefined ? { snatExhausted: snapshot.snatExhausted } : {}),
  };
}
