/**
 * `reconcile(gatewayKey, snapshot)`: the whole desired state of one Gateway,
 * computed from the snapshot alone (level-based): its status, its routes'
 * parent entries for blixt, and its RoutingTable. The caller writes what it
 * returns; nothing here talks to the API server.
 *
 * @module
 */
import {
  agentLiveness,
  API_VERSION,
  type Condition,
  CONTROLLER_NAME,
  type DataplaneNode,
  parseIp,
  PART_OF_LABEL,
  ROUTING_TABLE_KIND,
  type RoutingTable,
  type RoutingTableEntry,
  type RoutingTableSpec,
  type TableStatus,
} from "../api/mod.ts";
import { assignAddresses } from "./addresses.ts";
import { type ResolvedRule, resolveRule, weighBackends } from "./backends.ts";
import { type ConditionSpec, findCondition, mergeConditions } from "./conditions.ts";
import { classParameters, isOurClass } from "./gateway_class.ts";
import { judgeListeners, type ListenerVerdict } from "./listeners.ts";
import { attachRoute, httpRouteListeners, refersToGateway } from "./route_attachment.ts";
import {
  type Gateway,
  GATEWAY_GROUP,
  type L4Route,
  objectKey,
  type RouteParentStatus,
  routesOfParent,
  type Snapshot,
  tableFrontends,
} from "./snapshot.ts";
import { sameJson } from "./same_json.ts";
import { specToWrite } from "./shared_backends.ts";

/** Finalizer the operator keeps on Gateways it manages, so their table goes first. */
export const GATEWAY_FINALIZER = "blixt.dev/routing-table";

/** Desired status of one listener. */
export interface ListenerStatus {
  /** Listener name. */
  name: string;
  /** Route kinds that may attach. */
  supportedKinds: { group: string; kind: string }[];
  /** Routes attached and Accepted. */
  attachedRoutes: number;
  /** Accepted, Conflicted, ResolvedRefs, Programmed. */
  conditions: Condition[];
}

/** Desired status of a Gateway. */
export interface GatewayStatus {
  /** Addresses bound. */
  addresses: { type: "IPAddress"; value: string }[];
  /** Accepted, Programmed (and other controllers' conditions, kept). */
  conditions: Condition[];
  /** One per listener, in spec order. */
  listeners: ListenerStatus[];
}

/** The new `status.parents` of a route whose blixt entries changed. */
export interface RouteStatusUpdate {
  /** TCPRoute or UDPRoute. */
  kind: string;
  /** apiVersion the route was read with. */
  apiVersion: string;
  /** Route namespace. */
  namespace: string;
  /** Route name. */
  name: string;
  /** resourceVersion it was computed from, for the read-modify-write. */
  resourceVersion?: string;
  /** The full list: other controllers' entries untouched, ours replaced. */
  parents: RouteParentStatus[];
}

/** A Kubernetes Event to record on the Gateway. */
export interface GatewayEvent {
  /** Normal or Warning. */
  type: "Normal" | "Warning";
  /** CamelCase reason. */
  reason: string;
  /** What happened. */
  message: string;
}

/** What to do with the Gateway's RoutingTable. */
export type TableAction =
  | { action: "apply"; table: RoutingTable }
  | { action: "delete" }
  | { action: "keep" };

/** Everything reconcile wants written for one Gateway. */
export interface ReconcileResult {
  /** `namespace/name` of the Gateway. */
  gatewayKey: string;
  /**
   * False when the Gateway is gone, being deleted, or not of a blixt class:
   * then only cleanup is asked for (table delete, our route entries removed,
   * finalizer removed).
   */
  managed: boolean;
  /** Desired Gateway status, when managed. */
  status?: GatewayStatus;
  /** The RoutingTable. */
  table: TableAction;
  /** Routes whose `status.parents` must change. */
  routeStatuses: RouteStatusUpdate[];
  /** Add the finalizer, remove it, or leave it. */
  finalizer: "add" | "remove" | "none";
  /** Events to record (only on change). */
  events: GatewayEvent[];
  /**
   * Reconcile again after this many ms even if nothing changes: `Programmed`
   * is held True while a node serves an earlier table, until a grace period
   * ends ({@linkcode PROGRAMMED_GRACE_MS}).
   */
  recheckAfterMs?: number;
  /**
   * The RoutingTable generation every counted node reports programmed, with
   * no errors and every agent alive (DESIGN.md's rule met), whether
   * `Programmed` was decided by it or held; absent otherwise. The controller
   * logs each new one: an endpoint change writes no Gateway status, and this
   * is when the operator knows the change is in every node's data plane.
   */
  programmedGeneration?: number;
}

/**
 * Computes the desired state of the Gateway `namespace/name` from a snapshot.
 * Pure and total: for any snapshot it returns a result and never throws on
 * malformed objects.
 *
 * @example
 * ```ts
 * const result = reconcile("default/gw", snapshot, { now: new Date().toISOString() });
 * if (result.table.action === "apply") await writer.apply(result.table.table);
 * ```
 */
export function reconcile(
  gatewayKey: string,
  snapshot: Snapshot,
  options: {
    now: string;
    /**
     * The clock agent Leases are judged by (epoch ms; the clock their
     * observation times were taken on). Default: `now`.
     */
    nowMs?: number;
    /** Default {@linkcode PROGRAMMED_GRACE_MS}. */
    programmedGraceMs?: number;
  },
): ReconcileResult {
  const gateway = snapshot.gateways.get(gatewayKey);
  const gc = gateway &&
    snapshot.gatewayClasses.get(gateway.spec.gatewayClassName);
  if (
    gateway === undefined || !isOurClass(gc) ||
    gateway.metadata?.deletionTimestamp !== undefined
  ) {
    return cleanup(gatewayKey, gateway, snapshot, options);
  }
  const generation = gateway.metadata?.generation ?? 0;
  const events: GatewayEvent[] = [];
  const params = classParameters(gc as NonNullable<typeof gc>, snapshot);
  const verdicts = judgeListeners(gateway, snapshot);
  const config = params.ok ? params.spec : {};
  const assignment = assignAddresses(gateway, snapshot, { config });

  // routes: attachment per parentRef, status per parentRef
  const attached = new Map<string, L4Route[]>(
    verdicts.map((v) => [v.listener.name, []]),
  );
  const routeStatuses: RouteStatusUpdate[] = [];
  const rules = new Map<L4Route, ResolvedRule>();
  for (const route of candidateRoutes(gateway, snapshot)) {
    const ours: RouteParentStatus[] = [];
    for (const ref of route.spec.parentRefs ?? []) {
      if (!refersToGateway(ref, { route, gateway })) continue;
      const attachment = attachRoute(route, ref, {
        gateway,
        verdicts,
        snapshot,
      });
      let rule = rules.get(route);
      if (rule === undefined) {
        rule = resolveRule(route, snapshot);
        rules.set(route, rule);
      }
      if (attachment.accepted.status === "True") {
        for (const name of attachment.listeners) {
          const list = attached.get(name);
          if (list && !list.includes(route)) list.push(route);
        }
      }
      const previous = findParent(route, ref)?.conditions;
      ours.push({
        parentRef: ref,
        controllerName: CONTROLLER_NAME,
        conditions: mergeConditions(
          previous,
          [attachment.accepted, rule.resolvedRefs],
          { generation: route.metadata.generation ?? 0, now: options.now },
        ),
      });
    }
    const update = routeUpdate(route, gateway, ours);
    if (update) routeStatuses.push(update);
  }
  // HTTPRoutes: counted in attachedRoutes, never routed, no status written
  const httpAttached = new Map<string, number>();
  for (const route of snapshot.httpRoutes.values()) {
    const names = new Set<string>();
    for (const ref of route.spec.parentRefs ?? []) {
      if (!refersToGateway(ref, { route, gateway })) continue;
      for (const n of httpRouteListeners(route, ref, { gateway, verdicts, snapshot })) names.add(n);
    }
    for (const n of names) httpAttached.set(n, (httpAttached.get(n) ?? 0) + 1);
  }

  // Gateway Accepted: by the listeners' own Accepted (a listener whose refs do not resolve is
  // accepted but not valid: its Gateway stays Accepted, with reason ListenersNotValid)
  const acceptedListeners = verdicts.filter((v) => v.accepted.status === "True");
  const validListeners = verdicts.filter((v) => v.valid);
  const routedListeners = verdicts.filter((v) => v.routed);
  const invalidNames = verdicts.filter((v) => !v.valid).map((v) => v.listener.name);
  const infrastructureRef = gateway.spec.infrastructure?.parametersRef;
  let accepted: ConditionSpec;
  if (!params.ok) {
    accepted = {
      type: "Accepted",
      status: "False",
      reason: "InvalidParameters",
      message: `GatewayClass ${gateway.spec.gatewayClassName}: ${params.message}`,
    };
  } else if (infrastructureRef !== undefined) {
    // blixt has no per-Gateway parameters kind; the class's GatewayClassConfig says it all
    accepted = {
      type: "Accepted",
      status: "False",
      reason: "InvalidParameters",
      message: `spec.infrastructure.parametersRef ${
        infrastructureRef.group || "core"
      }/${infrastructureRef.kind} ${infrastructureRef.name} is not supported: blixt takes its parameters from the GatewayClass`,
    };
  } else if (assignment.notAccepted) {
    accepted = assignment.notAccepted;
  } else if (acceptedListeners.length === 0) {
    accepted = {
      type: "Accepted",
      status: "False",
      reason: "ListenersNotValid",
      message: `no accepted listener: ${invalidNames.join(", ") || "none defined"}`,
    };
  } else if (invalidNames.length > 0) {
    accepted = {
      type: "Accepted",
      status: "True",
      reason: "ListenersNotValid",
      message: `listeners ${invalidNames.join(", ")} are not valid; valid: ${
        validListeners.map((v) => v.listener.name).join(", ") || "none"
      }`,
    };
  } else {
    accepted = {
      type: "Accepted",
      status: "True",
      reason: "Accepted",
      message: "Gateway accepted",
    };
  }

  // the table, then Programmed
  let table: TableAction;
  let programmed: ConditionSpec;
  let recheckAfterMs: number | undefined;
  let programmedGeneration: number | undefined;
  if (accepted.status === "False") {
    // a parameters typo must not take traffic down: keep the last table
    table = accepted.reason === "InvalidParameters" ? { action: "keep" } : { action: "delete" };
    programmed = {
      type: "Programmed",
      status: "False",
      reason: "Invalid",
      message: `not accepted: ${accepted.message}`,
    };
  } else if (assignment.addresses.length === 0 && assignment.notProgrammed) {
    table = { action: "delete" };
    programmed = assignment.notProgrammed;
  } else {
    const spec = tableSpec(routedListeners, attached, rules, {
      addresses: assignment.addresses,
      localBackendsOnly: config.localBackendsOnly ?? false,
    });
    table = { action: "apply", table: routingTable(gateway, spec) };
    if (assignment.notProgrammed) programmed = assignment.notProgrammed;
    else {
      const verdict = dataplaneProgrammed(gateway, spec, snapshot, {
        nowMs: options.nowMs ?? Date.parse(options.now),
        graceMs: options.programmedGraceMs ?? PROGRAMMED_GRACE_MS,
      });
      programmed = verdict.condition;
      recheckAfterMs = verdict.recheckAfterMs;
      programmedGeneration = verdict.programmedGeneration;
    }
  }

  const gatewayConditions = mergeConditions(
    gateway.status?.conditions as Partial<Condition>[] | undefined,
    [accepted, programmed],
    { generation, now: options.now },
  );
  const listeners = verdicts.map((v) =>
    listenerStatus(v, gateway, {
      attachedRoutes: (attached.get(v.listener.name)?.length ?? 0) +
        (httpAttached.get(v.listener.name) ?? 0),
      gatewayProgrammed: programmed,
      generation,
      now: options.now,
    })
  );
  const status: GatewayStatus = {
    addresses: assignment.addresses.map((value) => ({
      type: "IPAddress",
      value,
    })),
    conditions: gatewayConditions,
    listeners,
  };
  events.push(...changeEvents(gateway, status));
  return {
    gatewayKey,
    managed: true,
    status,
    table,
    routeStatuses,
    finalizer: gateway.metadata?.finalizers?.includes(GATEWAY_FINALIZER) ? "none" : "add",
    events,
    ...(recheckAfterMs === undefined ? {} : { recheckAfterMs }),
    ...(programmedGeneration === undefined ? {} : { programmedGeneration }),
  };
}

function cleanup(
  gatewayKey: string,
  gateway: Gateway | undefined,
  snapshot: Snapshot,
  _options: { now: string },
): ReconcileResult {
  const [namespace = "", name = ""] = gatewayKey.split("/");
  const ghost = gateway ?? ({ metadata: { namespace, name } } as Gateway);
  const routeStatuses: RouteStatusUpdate[] = [];
  for (const route of snapshot.routes.values()) {
    const update = routeUpdate(route, ghost, []);
    if (update) routeStatuses.push(update);
  }
  return {
    gatewayKey,
    managed: false,
    table: { action: "delete" },
    routeStatuses,
    finalizer: gateway?.metadata?.finalizers?.includes(GATEWAY_FINALIZER) ? "remove" : "none",
    events: [],
  };
}

/** Routes with a parentRef to the Gateway, or a blixt entry for it to clean up. */
function candidateRoutes(gateway: Gateway, snapshot: Snapshot): L4Route[] {
  const out: L4Route[] = [];
  const key = objectKey(gateway.metadata?.namespace ?? "", gateway.metadata?.name ?? "");
  for (const route of routesOfParent(snapshot, key)) {
    const refers = (route.spec?.parentRefs ?? []).some((r) =>
      refersToGateway(r, { route, gateway })
    );
    const listed = (route.status?.parents ?? []).some((p) =>
      p.controllerName === CONTROLLER_NAME &&
      refersToGateway(p.parentRef, { route, gateway })
    );
    if (refers || listed) out.push(route);
  }
  return out;
}

function sameRef(
  a: RouteParentStatus["parentRef"],
  b: RouteParentStatus["parentRef"],
  route: L4Route,
): boolean {
  return (a.group ?? GATEWAY_GROUP) === (b.group ?? GATEWAY_GROUP) &&
    (a.kind ?? "Gateway") === (b.kind ?? "Gateway") &&
    a.name === b.name &&
    (a.namespace ?? route.metadata.namespace) ===
      (b.namespace ?? route.metadata.namespace) &&
    a.sectionName === b.sectionName && a.port === b.port;
}

function findParent(route: L4Route, ref: RouteParentStatus["parentRef"]) {
  return route.status?.parents?.find((p) =>
    p.controllerName === CONTROLLER_NAME && sameRef(p.parentRef, ref, route)
  );
}

/**
 * The route's new parents list: our entries for this Gateway replaced by
 * `ours`, everything else (other controllers, our other Gateways) untouched;
 * undefined when nothing changes.
 */
function routeUpdate(
  route: L4Route,
  gateway: Gateway,
  ours: RouteParentStatus[],
): RouteStatusUpdate | undefined {
  const before = route.status?.parents ?? [];
  const mine = (p: RouteParentStatus) =>
    p.controllerName === CONTROLLER_NAME &&
    refersToGateway(p.parentRef, { route, gateway });
  const after: RouteParentStatus[] = [];
  const pending = [...ours];
  for (const p of before) {
    if (!mine(p)) {
      after.push(p);
      continue;
    }
    const i = pending.findIndex((o) => sameRef(o.parentRef, p.parentRef, route));
    if (i >= 0) after.push(...pending.splice(i, 1)); // keep the entry's place
  }
  after.push(...pending);
  if (sameJson(after, before)) return undefined;
  return {
    kind: route.kind,
    apiVersion: route.apiVersion,
    namespace: route.metadata.namespace,
    name: route.metadata.name,
    ...(route.metadata.resourceVersion === undefined
      ? {}
      : { resourceVersion: route.metadata.resourceVersion }),
    parents: after.slice(0, 32), // the API caps the list at 32 parents
  };
}

/** Oldest first (creationTimestamp, then namespace/name): GEP-2644/2645 precedence. */
function compareRouteAge(a: L4Route, b: L4Route): number {
  const ta = a.metadata.creationTimestamp ?? "",
    tb = b.metadata.creationTimestamp ?? "";
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = `${a.metadata.namespace}/${a.metadata.name}`;
  const kb = `${b.metadata.namespace}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function tableSpec(
  listeners: readonly ListenerVerdict[],
  attached: Map<string, L4Route[]>,
  rules: Map<L4Route, ResolvedRule>,
  options: { addresses: string[]; localBackendsOnly: boolean },
): RoutingTableSpec {
  const entries: RoutingTableEntry[] = [];
  for (const address of options.addresses) {
    const family = parseIp(address)?.family ?? 4;
    for (const v of listeners) {
      const winner = [...attached.get(v.listener.name) ?? []].sort(compareRouteAge)[0];
      const weighted = winner === undefined
        ? { backends: [], rejectWeight: 0 }
        : weighBackends(rules.get(winner)?.refs ?? [], family);
      entries.push({
        address,
        port: v.listener.port,
        protocol: v.listener.protocol as "TCP" | "UDP",
        listener: v.listener.name,
        ...(winner === undefined ? {} : {
          route: {
            kind: winner.kind,
            namespace: winner.metadata.namespace,
            name: winner.metadata.name,
          },
        }),
        ...(weighted.service === undefined ? {} : { service: weighted.service }),
        backends: weighted.backends,
        rejectWeight: weighted.rejectWeight,
      });
    }
  }
  entries.sort((a, b) =>
    a.address.localeCompare(b.address) || a.port - b.port ||
    a.protocol.localeCompare(b.protocol)
  );
  return {
    addresses: options.addresses,
    localBackendsOnly: options.localBackendsOnly,
    entries,
  };
}

function routingTable(gateway: Gateway, spec: RoutingTableSpec): RoutingTable {
  return {
    apiVersion: API_VERSION,
    kind: ROUTING_TABLE_KIND,
    metadata: {
      name: gateway.metadata?.name ?? "",
      namespace: gateway.metadata?.namespace ?? "",
      labels: { ...PART_OF_LABEL },
      ownerReferences: [{
        apiVersion: `${GATEWAY_GROUP}/v1`,
        kind: "Gateway",
        name: gateway.metadata?.name ?? "",
        uid: gateway.metadata?.uid ?? "",
        controller: true,
        blockOwnerDeletion: true,
      }],
    },
    spec,
  };
}

/** Gateway `Programmed=False` reason while a node's agent does not run (its Lease is not held). */
export const AGENT_NOT_RUNNING = "AgentNotRunning";

/**
 * How long a node may serve an earlier generation of a Programmed Gateway's
 * table (same Gateway generation, same frontends) before `Programmed` turns
 * False naming it.
 */
export const PROGRAMMED_GRACE_MS = 10_000;

/** Nodes a Programmed message names at most; the rest are counted. */
export const NAMED_NODES_MAX = 10;

/**
 * The first {@linkcode NAMED_NODES_MAX} items, then how many more: a message
 * naming every lagging node of a large cluster would outgrow a condition's
 * 32,768 characters, and its status write would be refused.
 */
function someOf(items: readonly string[]): string {
  const more = items.length - NAMED_NODES_MAX;
  return items.slice(0, NAMED_NODES_MAX).join(", ") + (more > 0 ? ` and ${more} more` : "");
}

/** Each DataplaneNode's tables by `namespace/name`, built once per object the cache holds. */
const tableIndex = new WeakMap<DataplaneNode, Map<string, TableStatus>>();

/**
 * A node's report of each table by `namespace/name`. Every reconcile reads
 * every node's report of its table: a scan of the node's list each time made
 * N events of N nodes with T tables cost N * N * T (docs/performance.md, "Many
 * nodes"). Cache objects are replaced, never changed, so an index per object
 * stays right.
 */
function tablesOf(node: DataplaneNode): Map<string, TableStatus> {
  let index = tableIndex.get(node);
  if (index === undefined) {
    index = new Map();
    for (const t of node.status?.tables ?? []) {
      const k = `${t.namespace}/${t.name}`;
      if (!index.has(k)) index.set(k, t); // the first, as a scan would find
    }
    tableIndex.set(node, index);
  }
  return index;
}

/**
 * Whether every Ready node with a DataplaneNode reports the current
 * generation of Gateway `key`'s RoutingTable as programmed, without errors.
 * A scheduling hint only (the controller reconciles such a Gateway at once
 * instead of coalescing node reports): reconcile decides `Programmed`, with
 * the agents' liveness and the table's written form.
 */
export function reportsComplete(snapshot: Snapshot, key: string): boolean {
  const generation = snapshot.routingTables.get(key)?.metadata.generation;
  if (generation === undefined) return false;
  let counted = 0;
  for (const node of snapshot.nodes.values()) {
    if (!node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) continue;
    const dn = snapshot.dataplaneNodes.get(node.metadata?.name ?? "");
    if (dn === undefined) continue;
    const reported = tablesOf(dn).get(key);
    if (reported?.programmedGeneration !== generation || (reported.errors?.length ?? 0) > 0) {
      return false;
    }
    counted++;
  }
  return counted > 0;
}

/**
 * `Programmed` of a Gateway whose table reconcile wants as `spec`.
 *
 * It becomes True only once every ready node running an agent (a Ready Node
 * with a DataplaneNode), and at least one, reports the table's current
 * generation as programmed and holds its agent Lease (DESIGN.md). A node whose
 * agent stopped makes it `False/AgentNotRunning`, naming the node.
 *
 * Once True for the Gateway's current `metadata.generation`, it stays True
 * while a newer table changes only routes and backends (same frontends) and
 * every node serves an earlier generation with those frontends, without
 * errors, for less than `graceMs` since the first generation it lacks was
 * seen: the change is generated and assumed ready soon in the data plane, as
 * Gateway API defines Programmed, and an endpoint change writes no status
 * (docs/decisions.md). A lag beyond the grace, a node's error, or a node that
 * serves nothing known makes it False again by the strict rule.
 */
function dataplaneProgrammed(
  gateway: Gateway,
  spec: RoutingTableSpec,
  snapshot: Snapshot,
  options: { nowMs: number; graceMs: number },
): { condition: ConditionSpec; recheckAfterMs?: number; programmedGeneration?: number } {
  const pending = (message: string) => ({
    condition: { type: "Programmed", status: "False", reason: "Pending", message } as const,
  });
  const namespace = gateway.metadata?.namespace ?? "";
  const name = gateway.metadata?.name ?? "";
  const gatewayKey = `${namespace}/${name}`;
  // Nodes that count: Ready ones whose agent has announced itself with a DataplaneNode. A node
  // the agent does not run on (nodeSelector, taints) must not hold Programmed back forever.
  const ready = [...snapshot.nodes.values()].filter((n) =>
    n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") &&
    snapshot.dataplaneNodes.has(n.metadata?.name ?? "")
  );
  if (ready.length === 0) {
    return pending("no ready node runs the blixt agent yet (no DataplaneNode for a Ready Node)");
  }
  const current = snapshot.routingTables.get(gatewayKey);
  // the writer's form of the table: backends written once when every agent reads that
  const written = current !== undefined &&
    sameJson(current.spec, specToWrite(spec, snapshot.dataplaneNodes));
  const generation = current?.metadata.generation ?? 0;
  const waiting: string[] = [];
  const stopped: string[] = [];
  const behind: { done: number | undefined; errors: string[] }[] = [];
  for (const node of ready) {
    const nodeName = node.metadata?.name ?? "";
    const liveness = agentLiveness(snapshot.agentLeases.get(nodeName), options.nowMs);
    if (!liveness.alive) {
      stopped.push(`${nodeName} (${liveness.reason})`);
      continue;
    }
    const reported = tablesOf(snapshot.dataplaneNodes.get(nodeName)!).get(gatewayKey);
    const done = reported?.programmedGeneration;
    const errors = reported?.errors ?? [];
    if (done !== generation || errors.length > 0) behind.push({ done, errors });
    if (done !== generation) {
      waiting.push(
        `${nodeName}: generation ${done ?? "none"} of ${generation}${
          errors.length ? ` (${errors.join("; ")})` : ""
        }`,
      );
    }
  }

  // every counted node serves the written table: the strict rule is met, held or not
  const complete = written && stopped.length === 0 && behind.length === 0
    ? { programmedGeneration: generation }
    : {};

  // Held: True already for this Gateway generation, and only routes and backends changed since.
  const previous = findCondition(
    gateway.status?.conditions as Partial<Condition>[] | undefined,
    "Programmed",
  );
  if (
    stopped.length === 0 && current !== undefined && previous?.status === "True" &&
    previous.observedGeneration === (gateway.metadata?.generation ?? 0) &&
    tableFrontends(current.spec) === tableFrontends(spec)
  ) {
    const frontends = tableFrontends(spec);
    const history = snapshot.tableHistory.get(gatewayKey) ?? [];
    let until = Infinity;
    const held = behind.every(({ done, errors }) => {
      if (errors.length > 0) return false;
      if (done === generation) return true;
      const i = history.findIndex((r) => r.generation === done);
      const lacked = history[i + 1];
      if (i < 0 || history[i]!.frontends !== frontends || lacked === undefined) return false;
      until = Math.min(until, lacked.seenAtMs + options.graceMs);
      return options.nowMs < until;
    });
    if (held) {
      return {
        condition: {
          type: "Programmed",
          status: "True",
          reason: previous.reason ?? "Programmed",
          message: previous.message ?? "",
        },
        ...(until === Infinity ? {} : { recheckAfterMs: Math.ceil(until - options.nowMs) }),
        ...complete,
      };
    }
  }

  if (!written) return pending("waiting for the RoutingTable to be written");
  const progress = `RoutingTable generation ${generation} programmed on ${
    ready.length - waiting.length - stopped.length
  } of ${ready.length} ready nodes running the agent`;
  if (stopped.length > 0) {
    return {
      condition: {
        type: "Programmed",
        status: "False",
        reason: AGENT_NOT_RUNNING,
        message: `the blixt agent is not running on ${someOf(stopped)}; ${progress}${
          waiting.length > 0 ? `; waiting for ${someOf(waiting)}` : ""
        }`,
      },
    };
  }
  if (waiting.length > 0) {
    return pending(`${progress}; waiting for ${someOf(waiting)}`);
  }
  // no generation in the message: a True Gateway's status stays the same across table changes
  return {
    condition: {
      type: "Programmed",
      status: "True",
      reason: "Programmed",
      message: `programmed on ${ready.length} ready node${
        ready.length > 1 ? "s" : ""
      } running the agent`,
    },
    ...complete,
  };
}

function listenerStatus(
  v: ListenerVerdict,
  gateway: Gateway,
  context: {
    attachedRoutes: number;
    gatewayProgrammed: ConditionSpec;
    generation: number;
    now: string;
  },
): ListenerStatus {
  let programmed: ConditionSpec;
  if (!v.valid) {
    programmed = {
      type: "Programmed",
      status: "False",
      reason: "Invalid",
      message: "listener is not valid, see its other conditions",
    };
  } else if (context.gatewayProgrammed.status === "True") {
    programmed = {
      type: "Programmed",
      status: "True",
      reason: "Programmed",
      message: v.routed
        ? "programmed on every ready node running the agent"
        : `nothing to program: blixt routes no ${v.listener.protocol} traffic, this listener has no data plane entries`,
    };
  } else {
    programmed = {
      type: "Programmed",
      status: "False",
      reason: context.gatewayProgrammed.reason === "Invalid" ? "Invalid" : "Pending",
      message: context.gatewayProgrammed.message,
    };
  }
  const previous = gateway.status?.listeners?.find((l) => l.name === v.listener.name)
    ?.conditions as Partial<Condition>[] | undefined;
  return {
    name: v.listener.name,
    supportedKinds: v.supportedKinds,
    attachedRoutes: context.attachedRoutes,
    conditions: mergeConditions(
      previous,
      [v.accepted, v.conflicted, v.resolvedRefs, programmed],
      { generation: context.generation, now: context.now },
    ),
  };
}

function changeEvents(gateway: Gateway, status: GatewayStatus): GatewayEvent[] {
  const events: GatewayEvent[] = [];
  const before = (gateway.status?.addresses ?? []).map((a) => a.value);
  const after = status.addresses.map((a) => a.value);
  if (after.length > 0 && !sameJson(before, after)) {
    events.push({
      type: "Normal",
      reason: "AddressAssigned",
      message: `addresses ${after.join(", ")}`,
    });
  }
  const programmed = findCondition(status.conditions, "Programmed");
  const wasProgrammed = findCondition(
    gateway.status?.conditions as Partial<Condition>[] | undefined,
    "Programmed",
  );
  if (
    programmed?.reason === "AddressNotAssigned" ||
    programmed?.reason === "AddressNotUsable"
  ) {
    if (wasProgrammed?.reason !== programmed.reason) {
      events.push({
        type: "Warning",
        reason: programmed.reason,
        message: programmed.message,
      });
    }
  }
  for (const l of status.listeners) {
    const c = findCondition(l.conditions, "Conflicted");
    const old = gateway.status?.listeners?.find((p) => p.name === l.name);
    const was = findCondition(
      old?.conditions as Partial<Condition>[] | undefined,
      "Conflicted",
    );
    if (c?.status === "True" && was?.status !== "True") {
      events.push({
        type: "Warning",
        reason: "ListenerConflict",
        message: `${l.name}: ${c.message}`,
      });
    }
  }
  return events;
}
