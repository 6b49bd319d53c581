/**
 * DataplaneNode status from what the agent did: one line per table,
 * `Ready`/`Degraded` conditions whose `lastTransitionTime` moves only when
 * their status does, and the counters snapshot.
 *
 * @module
 */
import {
  BACKENDS_FROM_FEATURE,
  COMPACT_ENTRIES_FEATURE,
  compactCounters,
  type Condition,
  type CountersSnapshot,
  DATAPLANE_CONDITIONS,
  DATAPLANE_REASONS,
  type DataplaneNodeStatus,
  ENDPOINTS_FEATURE,
  type MapUsage,
  type ServiceCounters,
  type TableStatus,
} from "../api/mod.ts";
import type { CounterTotals } from "./bpf/maps.ts";
import type { TableOutcome, TableResult } from "./desired_state.ts";
import type { ProgrammedService } from "./programmer.ts";

/**
 * `Degraded` reason while an interface that should carry the program (the
 * uplink, a pod interface that existed) does not (agent/interface_watch.ts).
 */
export const INTERFACE_NOT_ATTACHED = DATAPLANE_REASONS.interfaceNotAttached;

/** At most this many services in the counters snapshot (busiest first): etcd objects stay small. */
export const MAX_COUNTED_SERVICES = 100;

/**
 * Optional parts of the RoutingTable contract this agent understands, listed
 * in `status.features`: the operator writes `entries[].backendsFrom`,
 * `entries[].endpoints` and compact entries (`routeRef`, `serviceRef`, no
 * `backends`) each only once every node's agent lists it (an older agent
 * would program such entries with no backends, or refuse them). Its validator
 * expands them all before programming.
 */
export const AGENT_FEATURES: readonly string[] = [
  BACKENDS_FROM_FEATURE,
  ENDPOINTS_FEATURE,
  COMPACT_ENTRIES_FEATURE,
];

/** Inputs of {@linkcode buildStatus}. */
export interface StatusInput {
  /** Per table, from the last desired state. */
  tables: readonly TableOutcome[];
  /** Generation programmed per table (`namespace/name`). */
  programmed: ReadonlyMap<string, number>;
  /** The last apply's error, if it failed. */
  applyError?: string | undefined;
  /** False until the first sync. */
  synced: boolean;
  /** When the maps were last brought in line with the tables. */
  lastSyncTime?: string | undefined;
  /** Fill of the maps. */
  maps?: MapUsage[];
  /** False once the node's Node object is gone (default true). */
  nodeFound?: boolean;
  /** Interfaces that should carry the program and do not, one line each. */
  interfaceProblems?: readonly string[];
}

const REASON_OF: Record<Exclude<TableResult, "programmed">, string> = {
  invalid: DATAPLANE_REASONS.tableInvalid,
  conflict: DATAPLANE_REASONS.frontendConflict,
  capacity: DATAPLANE_REASONS.capacityExceeded,
};

/** Keeps `lastTransitionTime` of `previous` when the status did not change. */
function condition(
  c: Omit<Condition, "lastTransitionTime">,
  previous: readonly Condition[] | undefined,
  now: string,
): Condition {
  const old = previous?.find((p) => p.type === c.type);
  return {
    ...c,
    lastTransitionTime: old && old.status === c.status ? old.lastTransitionTime : now,
  };
}

/**
 * The status (without counters) for what the agent did, keeping transition
 * times from `previous`.
 */
export function buildStatus(
  input: StatusInput,
  previous: DataplaneNodeStatus | undefined,
  options: { now?: string } = {},
): DataplaneNodeStatus {
  const now = options.now ?? new Date().toISOString();
  const tables: TableStatus[] = input.tables.map((t) => {
    const programmed = input.programmed.get(`${t.namespace}/${t.name}`);
    const errors = [...t.errors];
    if (input.applyError && t.result === "programmed" && programmed !== t.generation) {
      errors.push(`maps: ${input.applyError}`);
    }
    return {
      namespace: t.namespace,
      name: t.name,
      observedGeneration: t.generation,
      ...(programmed !== undefined ? { programmedGeneration: programmed } : {}),
      entries: t.entries,
      backends: t.backends,
      ...(errors.length > 0 ? { errors } : {}),
    };
  });
  const failing = input.tables.filter((t) => t.result !== "programmed");
  let reason: string = DATAPLANE_REASONS.programmed;
  let message = `${input.tables.length} tables programmed`;
  if (!input.synced) {
    reason = DATAPLANE_REASONS.syncing;
    message = "waiting for the first sync";
  } else if (input.applyError) {
    reason = DATAPLANE_REASONS.bpfError;
    message = input.applyError;
  } else if (failing.length > 0) {
    const first = failing[0]!;
    reason = REASON_OF[first.result as Exclude<TableResult, "programmed">];
    message = failing.map((t) => `${t.namespace}/${t.name}: ${t.errors[0] ?? t.result}`)
      .slice(0, 5).join("; ");
  }
  const ready = reason === DATAPLANE_REASONS.programmed;
  let degraded = input.synced && !ready;
  let degradedReason = reason;
  let degradedMessage = message;
  if (input.nodeFound === false && !degraded) {
    degraded = true;
    degradedReason = DATAPLANE_REASONS.nodeNotFound;
    degradedMessage = "the Node does not exist; the maps are kept as they are";
  }
  if (input.interfaceProblems?.length && !degraded) {
    degraded = true;
    degradedReason = INTERFACE_NOT_ATTACHED;
    degradedMessage = `the program is not on ${input.interfaceProblems.join("; ")}`;
  }
  return {
    conditions: [
      condition(
        {
          type: DATAPLANE_CONDITIONS.ready,
          status: ready ? "True" : "False",
          reason,
          message,
        },
        previous?.conditions,
        now,
      ),
      condition(
        {
          type: DATAPLANE_CONDITIONS.degraded,
          status: degraded ? "True" : "False",
          reason: degraded ? degradedReason : DATAPLANE_REASONS.noProblems,
          message: degraded ? degradedMessage : "",
        },
        previous?.conditions,
        now,
      ),
    ],
    ...(input.lastSyncTime ? { lastSyncTime: input.lastSyncTime } : {}),
    features: [...AGENT_FEATURES],
    ...(input.maps ? { maps: input.maps } : {}),
    tables,
  };
}

/**
 * Per-service and per-backend counters of the services with traffic, the
 * busiest {@linkcode MAX_COUNTED_SERVICES}, sorted by frontend.
 */
export function countersOf(
  services: Iterable<ProgrammedService>,
  totals: {
    services: ReadonlyMap<number, CounterTotals>;
    backends: ReadonlyMap<number, CounterTotals>;
  },
): ServiceCounters[] {
  const out: ServiceCounters[] = [];
  for (const s of services) {
    const t = totals.services.get(s.entry.id);
    if (!t) continue;
    const backends = [...s.backends.values()].map((b) => {
      const c = totals.backends.get(b.id);
      return {
        ip: b.addr,
        port: b.port,
        packets: c?.packets ?? 0,
        bytes: c?.bytes ?? 0,
        newFlows: c?.newFlows ?? 0,
      };
    }).filter((b) => b.packets > 0 || b.newFlows > 0)
      .sort((x, y) => y.packets - x.packets).slice(0, MAX_COUNTED_SERVICES);
    out.push({
      address: s.address.addr,
      port: s.address.port,
      protocol: s.address.protocol,
      packets: t.packets,
      bytes: t.bytes,
      newFlows: t.newFlows,
      rejectedFlows: t.rejected,
      backends,
    });
  }
  out.sort((a, b) => b.packets - a.packets);
  const kept = out.slice(0, MAX_COUNTED_SERVICES);
  const key = (c: ServiceCounters) => `${c.address}:${c.port}/${c.protocol}`;
  return kept.sort((a, b) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
}

const written = new WeakMap<object, CountersSnapshot>();

/**
 * `status.counters` for a counters read, in the compact form
 * (docs/decisions.md "Counters as one string per frontend and backend"):
 * encoded once per read, though every status write until the next one carries it.
 */
export function countersStatus(
  snapshot: { collectedAt: string; services: ServiceCounters[]; snatExhausted?: number },
): CountersSnapshot {
  let out = written.get(snapshot);
  if (out === undefined) {
    out = compactCounters(snapshot);
    written.set(snapshot, out);
  }
  return out;
}
