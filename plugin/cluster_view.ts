/**
 * What kubectl-blixt reads from the cluster, as plain objects, and the
 * questions every command asks of it (which Gateways are blixt's, which
 * listeners a route attached to, what each node has programmed). Pure: the
 * fetching lives in `fetch_view.ts`, so commands render fixtures in tests.
 *
 * Gateway API semantics come from the operator's own functions
 * (`judgeListeners`, `attachRoute`, `refersToGateway`), so the plugin and the
 * operator cannot disagree on them.
 *
 * @module
 */
import type { V1Namespace, V1Node } from "@kubernetes/client-node";
import {
  type AgentLeaseRecord,
  agentLiveness,
  canonicalIp,
  type Condition,
  CONTROLLER_NAME,
  type CountersSnapshot,
  type DataplaneNode,
  programmedGeneration,
  type RoutingTable,
  type RoutingTableEntry,
  type ServiceCounters,
  serviceCountersOf,
} from "../api/mod.ts";
import {
  attachRoute,
  type ConditionSpec,
  createSnapshot,
  type Gateway,
  type GatewayClass,
  judgeListeners,
  type L4Route,
  type ParentReference,
  refersToGateway,
  type RouteParentStatus,
  type SnapshotObject,
} from "../operator/mod.ts";

/** Everything a command may read; lists are complete for what was asked. */
export interface ClusterView {
  /** Gateways (gateway.networking.k8s.io/v1). */
  gateways: Gateway[];
  /** GatewayClasses; undefined when they could not be read (then no Gateway is left out). */
  gatewayClasses: GatewayClass[] | undefined;
  /** TCPRoutes and UDPRoutes. */
  routes: L4Route[];
  /** RoutingTables (validated). */
  routingTables: RoutingTable[];
  /** DataplaneNodes (validated). */
  dataplaneNodes: DataplaneNode[];
  /** Nodes; undefined when they could not be read. */
  nodes: V1Node[] | undefined;
  /** Namespaces, read only when a listener selects route namespaces by label. */
  namespaces: V1Namespace[] | undefined;
  /**
   * The agents' liveness Leases (their `renewTime` trusted, as a one-shot
   * reader has no history); absent or undefined when they were not read.
   */
  agentLeases?: AgentLeaseRecord[] | undefined;
  /** The clock the Leases are judged by (epoch ms; default: now). */
  nowMs?: number;
}

/** An empty view, to build fixtures from. */
export function emptyView(): ClusterView {
  return {
    gateways: [],
    gatewayClasses: [],
    routes: [],
    routingTables: [],
    dataplaneNodes: [],
    nodes: [],
    namespaces: undefined,
  };
}

/** A reference to a namespaced object. */
export interface ObjectRef {
  /** Kind, e.g. `TCPRoute`. */
  kind: string;
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
}

/** `namespace/name` of a Gateway. */
export function gatewayKey(gateway: Gateway): string {
  return `${gateway.metadata?.namespace ?? ""}/${gateway.metadata?.name ?? ""}`;
}

/**
 * Whether blixt manages the Gateway: its class names blixt's controller.
 * When the classes could not be read, every Gateway counts.
 */
export function isManaged(gateway: Gateway, view: ClusterView): boolean {
  if (view.gatewayClasses === undefined) return true;
  const gc = view.gatewayClasses.find((c) => c.metadata?.name === gateway.spec.gatewayClassName);
  return gc?.spec.controllerName === CONTROLLER_NAME;
}

/** The controller of a Gateway's class, when known. */
export function controllerOf(gateway: Gateway, view: ClusterView): string | undefined {
  return view.gatewayClasses?.find((c) => c.metadata?.name === gateway.spec.gatewayClassName)
    ?.spec.controllerName;
}

/** The Gateway's RoutingTable (same namespace and name), if written. */
export function tableFor(gateway: Gateway, view: ClusterView): RoutingTable | undefined {
  return view.routingTables.find((t) =>
    t.metadata.namespace === gateway.metadata?.namespace &&
    t.metadata.name === gateway.metadata?.name
  );
}

/** A route's parentRef to a Gateway with what blixt reported and what the spec implies. */
export interface Attachment {
  /** The parentRef. */
  ref: ParentReference;
  /** blixt's `status.parents` entry for the ref, if the operator wrote one. */
  reported: RouteParentStatus | undefined;
  /** Listeners the ref attaches the route to, by the operator's rules. */
  listeners: string[];
  /** The Accepted condition the operator's rules give. */
  computed: ConditionSpec;
}

function sameRef(a: ParentReference, b: ParentReference, route: L4Route): boolean {
  return (a.group ?? "gateway.networking.k8s.io") === (b.group ?? "gateway.networking.k8s.io") &&
    (a.kind ?? "Gateway") === (b.kind ?? "Gateway") && a.name === b.name &&
    (a.namespace ?? route.metadata.namespace) === (b.namespace ?? route.metadata.namespace) &&
    a.sectionName === b.sectionName && a.port === b.port;
}

/**
 * The route's parentRefs that point at the Gateway, each with blixt's
 * reported status and the listeners it selects. Listener attachment is the
 * operator's `attachRoute`, run over the Gateway's spec.
 */
export function attachments(
  route: L4Route,
  context: { gateway: Gateway; view: ClusterView },
): Attachment[] {
  const { gateway, view } = context;
  const refs = (route.spec?.parentRefs ?? []).filter((ref) =>
    refersToGateway(ref, { route, gateway })
  );
  if (refs.length === 0) return [];
  const verdicts = judgeListeners(gateway);
  const snapshot = createSnapshot(
    (view.namespaces ?? []).map((ns) => ({ ...ns, kind: "Namespace" }) as SnapshotObject),
  );
  return refs.map((ref) => {
    const result = attachRoute(route, ref, { gateway, verdicts, snapshot });
    return {
      ref,
      reported: route.status?.parents?.find((p) =>
        p.controllerName === CONTROLLER_NAME && sameRef(p.parentRef, ref, route)
      ),
      listeners: result.listeners,
      computed: result.accepted,
    };
  });
}

/** Whether a listener of any Gateway selects route namespaces by label (namespaces are needed). */
export function needsNamespaces(gateways: readonly Gateway[]): boolean {
  return gateways.some((g) =>
    (g.spec.listeners ?? []).some((l) => l.allowedRoutes?.namespaces?.from === "Selector")
  );
}

/** A condition of a list by type. */
export function condition(
  conditions: readonly Partial<Condition>[] | undefined,
  type: string,
): Partial<Condition> | undefined {
  return conditions?.find((c) => c.type === type);
}

/** Condition types whose normal state is False (Kubernetes' "abnormal-true" conditions). */
export const NEGATIVE_POLARITY = ["Conflicted", "Degraded"] as const;

/**
 * Whether a condition says something is wrong: a positive condition
 * (Accepted, Programmed, ResolvedRefs, Ready) that is not True, or a negative
 * one (Conflicted, Degraded) that is True.
 */
export function isAbnormal(c: Partial<Condition>): boolean {
  return (NEGATIVE_POLARITY as readonly string[]).includes(c.type ?? "")
    ? c.status === "True"
    : c.status !== "True";
}

/** Share of new flows of each backend and of the reject share of one entry. */
export interface EntryShares {
  /** Per backend, in the entry's order, 0-1. */
  backends: number[];
  /** Rejected share, 0-1: 1 when nothing has weight (no route, no ready backend). */
  reject: number;
}

/** Shares of new flows of an entry, as the data plane's weighted Maglev splits them. */
export function entryShares(entry: RoutingTableEntry): EntryShares {
  const total = entry.backends.reduce((s, b) => s + b.weight, 0) + entry.rejectWeight;
  if (total === 0) return { backends: entry.backends.map(() => 0), reject: 1 };
  return {
    backends: entry.backends.map((b) => b.weight / total),
    reject: entry.rejectWeight / total,
  };
}

/** Whether a Node object says it is Ready; undefined when Nodes are unknown. */
export function nodeReady(name: string, view: ClusterView): boolean | undefined {
  if (view.nodes === undefined) return undefined;
  const node = view.nodes.find((n) => n.metadata?.name === name);
  if (node === undefined) return undefined;
  return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/**
 * Whether the agent of node `name` runs (holds its liveness Lease), and if not
 * why; null when unknown (no DataplaneNode, or the Leases were not read).
 */
export function agentRunning(
  name: string,
  view: ClusterView,
): { running: boolean; reason: string } | null {
  if (view.agentLeases === undefined) return null;
  if (!view.dataplaneNodes.some((d) => d.metadata.name === name)) return null;
  const liveness = agentLiveness(
    view.agentLeases.find((l) => l.node === name),
    view.nowMs ?? Date.now(),
  );
  return { running: liveness.alive, reason: liveness.reason };
}

/** Names of every node: Nodes and DataplaneNodes, sorted. */
export function nodeNames(view: ClusterView): string[] {
  const names = new Set<string>();
  for (const n of view.nodes ?? []) if (n.metadata?.name) names.add(n.metadata.name);
  for (const d of view.dataplaneNodes) names.add(d.metadata.name);
  return [...names].sort();
}

/** What one node has done with one RoutingTable. */
export interface NodeProgramming {
  /** Node name. */
  node: string;
  /** The Node's Ready condition; null when unknown. */
  nodeReady: boolean | null;
  /** The agent's Ready condition status; null when the node has no DataplaneNode. */
  agentReady: "True" | "False" | "Unknown" | null;
  /** Whether the agent holds its liveness Lease; null when unknown. */
  agentRunning: boolean | null;
  /** Table generation the agent has seen; null before it has. */
  observedGeneration: number | null;
  /** Table generation in the node's maps; null before the first success. */
  programmedGeneration: number | null;
  /** Whether the node has programmed the table's current generation. */
  inSync: boolean;
  /** Why the agent has not programmed it. */
  errors: string[];
}

/** Per node, what it has programmed of the table `namespace/name` at `generation`. */
export function nodeProgramming(
  table: { namespace: string; name: string; generation: number | undefined },
  view: ClusterView,
): NodeProgramming[] {
  return nodeNames(view).map((node) => {
    const dpn = view.dataplaneNodes.find((d) => d.metadata.name === node);
    const status = dpn?.status?.tables?.find((t) =>
      t.namespace === table.namespace && t.name === table.name
    );
    const programmed = dpn === undefined ? undefined : programmedGeneration(dpn, table);
    const ready = condition(dpn?.status?.conditions, "Ready")?.status;
    return {
      node,
      nodeReady: nodeReady(node, view) ?? null,
      agentReady: dpn === undefined ? null : ready ?? "Unknown",
      agentRunning: agentRunning(node, view)?.running ?? null,
      observedGeneration: status?.observedGeneration ?? null,
      programmedGeneration: programmed ?? null,
      inSync: table.generation !== undefined && programmed === table.generation,
      errors: status?.errors ?? [],
    };
  });
}

/** Traffic counters summed over the nodes that report them. */
export interface Counters {
  /** Packets. */
  packets: number;
  /** Bytes. */
  bytes: number;
  /** New flows. */
  newFlows: number;
}

/** Frontend counters summed over nodes. */
export interface FrontendCounters extends Counters {
  /** Flows rejected (no backend, or the reject share). */
  rejectedFlows: number;
  /** Nodes whose snapshot has the frontend. */
  nodes: number;
  /** The oldest of those snapshots' `collectedAt`. */
  collectedAt: string;
  /** Per backend `ip:port` (IPv6 in brackets). */
  backends: Map<string, Counters>;
}

/** `ip:port`, IPv6 in brackets. */
export function hostPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

const decoded = new WeakMap<CountersSnapshot, ServiceCounters[]>();

/** A snapshot's per-frontend counters, decoded once per snapshot (compact `frontends` or older agents' `services`). */
function decodedCounters(snapshot: CountersSnapshot): ServiceCounters[] {
  let services = decoded.get(snapshot);
  if (services === undefined) {
    services = serviceCountersOf(snapshot);
    decoded.set(snapshot, services);
  }
  return services;
}

/** Counters of one frontend summed over every DataplaneNode; undefined when none reports it. */
export function frontendCounters(
  frontend: { address: string; port: number; protocol: string },
  view: ClusterView,
): FrontendCounters | undefined {
  const address = canonicalIp(frontend.address) ?? frontend.address;
  let sum: FrontendCounters | undefined;
  for (const dpn of view.dataplaneNodes) {
    const snap = dpn.status?.counters;
    const s = snap &&
      decodedCounters(snap).find((x) =>
        (canonicalIp(x.address) ?? x.address) === address && x.port === frontend.port &&
        x.protocol === frontend.protocol
      );
    if (snap === undefined || s === undefined) continue;
    sum ??= {
      packets: 0,
      bytes: 0,
      newFlows: 0,
      rejectedFlows: 0,
      nodes: 0,
      collectedAt: snap.collectedAt,
      backends: new Map(),
    };
    sum.packets += s.packets;
    sum.bytes += s.bytes;
    sum.newFlows += s.newFlows;
    sum.rejectedFlows += s.rejectedFlows;
    sum.nodes += 1;
    if (snap.collectedAt < sum.collectedAt) sum.collectedAt = snap.collectedAt;
    for (const b of s.backends) {
      const key = hostPort(canonicalIp(b.ip) ?? b.ip, b.port);
      const c = sum.backends.get(key) ?? { packets: 0, bytes: 0, newFlows: 0 };
      c.packets += b.packets;
      c.bytes += b.bytes;
      c.newFlows += b.newFlows;
      sum.backends.set(key, c);
    }
  }
  return sum;
}

/** Short form of a route for tables: `tcproute/web`, or `tcproute/ns/web` from another namespace. */
export function shortRef(ref: ObjectRef, namespace: string): string {
  const kind = ref.kind.toLowerCase();
  return ref.namespace === namespace
    ? `${kind}/${ref.name}`
    : `${kind}/${ref.namespace}/${ref.name}`;
}
