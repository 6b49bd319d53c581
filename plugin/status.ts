/**
 * `kubectl blixt status`: from the view of the cluster to the status report
 * (the `-o json|yaml` schema, `BlixtStatus` v1) and from the report to
 * kubectl-style tables. Pure; see README.md for the schema.
 *
 * @module
 */
import { backendService, type BackendState, type Condition, type ServiceRef } from "../api/mod.ts";
import {
  attachments,
  type ClusterView,
  condition,
  type Counters,
  entryShares,
  frontendCounters,
  gatewayKey,
  hostPort,
  isAbnormal,
  type NodeProgramming,
  nodeProgramming,
  type ObjectRef,
  shortRef,
  tableFor,
} from "./cluster_view.ts";
import { age, type Cell, type Color, NONE, percent, type Table } from "./table.ts";
import type { Gateway } from "../operator/mod.ts";

/** Version of the status schema; bumped only on incompatible changes. */
export const STATUS_VERSION = "v1";

/** The `-o json|yaml` output of `kubectl blixt status`. */
export interface StatusReport {
  /** `BlixtStatus`. */
  kind: "BlixtStatus";
  /** Schema version, `v1`. */
  version: typeof STATUS_VERSION;
  /** Gateways, sorted by namespace and name. */
  gateways: GatewayReport[];
}

/** A condition, as reported. */
export interface ConditionReport {
  /** Type. */
  type: string;
  /** True, False or Unknown. */
  status: string;
  /** Reason. */
  reason: string;
  /** Message. */
  message: string;
  /** When the status last changed, RFC 3339; null when not set. */
  lastTransitionTime: string | null;
}

/** A condition that says something is wrong, with the object it is on. */
export interface Problem extends ConditionReport {
  /** `Gateway`, `Listener`, `TCPRoute` or `UDPRoute`. */
  kind: string;
  /** Object namespace. */
  namespace: string;
  /** Object name (the listener name for a listener). */
  name: string;
}

/** One Gateway. */
export interface GatewayReport {
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
  /** `spec.gatewayClassName`. */
  gatewayClass: string;
  /** `status.addresses` values. */
  addresses: string[];
  /** Accepted condition; null when absent. */
  accepted: ConditionReport | null;
  /** Programmed condition; null when absent. */
  programmed: ConditionReport | null;
  /** The RoutingTable; null when the operator has not written one. */
  table: { generation: number | null } | null;
  /** Listeners in spec order. */
  listeners: ListenerReport[];
  /** Per node, what it programmed of the table; empty without a table. */
  nodes: NodeProgramming[];
  /** Conditions of the Gateway, its listeners and its routes that say something is wrong. */
  problems: Problem[];
}

/** One listener. */
export interface ListenerReport {
  /** Name. */
  name: string;
  /** Port. */
  port: number;
  /** Protocol. */
  protocol: string;
  /** `status.listeners[].attachedRoutes`; null when not reported. */
  attachedRoutes: number | null;
  /** The route carrying the traffic (from the RoutingTable); null when none. */
  route: ObjectRef | null;
  /** Routes attached to the listener that carry no traffic: an older route wins. */
  shadowedRoutes: ObjectRef[];
  /** One per Gateway address. */
  frontends: FrontendReport[];
}

/** One `address:port/protocol` of a listener. */
export interface FrontendReport {
  /** Virtual IP. */
  address: string;
  /** Backends in the table's order (ip, port). */
  backends: BackendReport[];
  /** Reject weight from the table. */
  rejectWeight: number;
  /** Share of new flows rejected, 0-1 (1 when nothing has weight). */
  rejectShare: number;
  /** Counters summed over nodes; null when no node reported any. */
  counters: FrontendCountersReport | null;
}

/** Frontend counters summed over the nodes that report them. */
export interface FrontendCountersReport extends Counters {
  /** Flows rejected. */
  rejectedFlows: number;
  /** Nodes whose counters are included. */
  nodes: number;
  /** Oldest snapshot time among them. */
  collectedAt: string;
}

/** One backend of a frontend. */
export interface BackendReport {
  /** Endpoint IP. */
  ip: string;
  /** Endpoint port. */
  port: number;
  /** Weight, 0-1,000,000. */
  weight: number;
  /** Share of new flows, 0-1. */
  share: number;
  /** Ready, Serving (terminating, existing flows only) or Terminating. */
  state: BackendState;
  /** Node of the endpoint; null when unknown. */
  node: string | null;
  /** Service the backend came from; null when unknown. */
  service: { namespace: string; name: string; port: number } | null;
  /** Counters summed over nodes; null when none reported. */
  counters: Counters | null;
}

function conditionReport(c: Partial<Condition> | undefined): ConditionReport | null {
  if (c === undefined) return null;
  return {
    type: c.type ?? "",
    status: c.status ?? "Unknown",
    reason: c.reason ?? "",
    message: c.message ?? "",
    lastTransitionTime: c.lastTransitionTime ?? null,
  };
}

function round(x: number): number {
  return Math.round(x * 10000) / 10000;
}

/** Builds the report of the Gateways in the view (the caller has already chosen them). */
export function buildStatus(view: ClusterView): StatusReport {
  const gateways = [...view.gateways].sort((a, b) =>
    gatewayKey(a) < gatewayKey(b) ? -1 : gatewayKey(a) > gatewayKey(b) ? 1 : 0
  );
  return {
    kind: "BlixtStatus",
    version: STATUS_VERSION,
    gateways: gateways.map((g) => gatewayReport(g, view)),
  };
}

function gatewayReport(gateway: Gateway, view: ClusterView): GatewayReport {
  const namespace = gateway.metadata?.namespace ?? "";
  const name = gateway.metadata?.name ?? "";
  const table = tableFor(gateway, view);
  const conditions = gateway.status?.conditions as Partial<Condition>[] | undefined;
  const problems: Problem[] = [];
  const add = (kind: string, ns: string, n: string, cs: Partial<Condition>[] | undefined) => {
    for (const c of cs ?? []) {
      if (!isAbnormal(c)) continue;
      problems.push({
        kind,
        namespace: ns,
        name: n,
        ...(conditionReport(c) as ConditionReport),
      });
    }
  };
  add("Gateway", namespace, name, conditions);
  for (const l of gateway.status?.listeners ?? []) {
    add("Listener", namespace, l.name, l.conditions as Partial<Condition>[]);
  }

  // routes attached per listener, from blixt's route status and the operator's rules
  const attached = new Map<string, ObjectRef[]>();
  const routes = [...view.routes].sort((a, b) =>
    `${a.kind}/${a.metadata.namespace}/${a.metadata.name}`.localeCompare(
      `${b.kind}/${b.metadata.namespace}/${b.metadata.name}`,
    )
  );
  for (const route of routes) {
    const ref = {
      kind: route.kind,
      namespace: route.metadata.namespace,
      name: route.metadata.name,
    };
    for (const a of attachments(route, { gateway, view })) {
      add(route.kind, ref.namespace, ref.name, a.reported?.conditions);
      if (condition(a.reported?.conditions, "Accepted")?.status !== "True") continue;
      for (const l of a.listeners) {
        const list = attached.get(l) ?? [];
        if (
          !list.some((r) =>
            r.kind === ref.kind && r.namespace === ref.namespace && r.name === ref.name
          )
        ) {
          list.push(ref);
        }
        attached.set(l, list);
      }
    }
  }

  const listeners: ListenerReport[] = (gateway.spec.listeners ?? []).map((l) => ({
    name: l.name,
    port: l.port,
    protocol: l.protocol,
    attachedRoutes: gateway.status?.listeners?.find((s) => s.name === l.name)?.attachedRoutes ??
      null,
    route: null,
    shadowedRoutes: [],
    frontends: [],
  }));
  for (const entry of table?.spec.entries ?? []) {
    let listener = listeners.find((l) => l.name === entry.listener);
    if (listener === undefined) { // a table older than the spec: still what is programmed
      listener = {
        name: entry.listener,
        port: entry.port,
        protocol: entry.protocol,
        attachedRoutes: null,
        route: null,
        shadowedRoutes: [],
        frontends: [],
      };
      listeners.push(listener);
    }
    if (entry.route !== undefined) {
      // fields in the schema's order, whatever order the API server returned
      const { kind, namespace, name } = entry.route;
      listener.route = { kind, namespace, name };
    }
    const shares = entryShares(entry);
    const counters = frontendCounters(entry, view);
    listener.frontends.push({
      address: entry.address,
      backends: entry.backends.map((b, i) => ({
        ip: b.ip,
        port: b.port,
        weight: b.weight,
        share: round(shares.backends[i] ?? 0),
        state: b.state,
        node: b.node ?? null,
        service: plainService(backendService(entry, b)),
        counters: counters?.backends.get(hostPort(b.ip, b.port)) ?? null,
      })),
      rejectWeight: entry.rejectWeight,
      rejectShare: round(shares.reject),
      counters: counters === undefined ? null : {
        packets: counters.packets,
        bytes: counters.bytes,
        newFlows: counters.newFlows,
        rejectedFlows: counters.rejectedFlows,
        nodes: counters.nodes,
        collectedAt: counters.collectedAt,
      },
    });
  }
  for (const l of listeners) {
    const carrier = l.route;
    l.shadowedRoutes = (attached.get(l.name) ?? []).filter((r) =>
      carrier === null ||
      !(r.kind === carrier.kind && r.namespace === carrier.namespace && r.name === carrier.name)
    );
  }

  return {
    namespace,
    name,
    gatewayClass: gateway.spec.gatewayClassName,
    addresses: (gateway.status?.addresses ?? []).map((a) => a.value),
    accepted: conditionReport(condition(conditions, "Accepted")),
    programmed: conditionReport(condition(conditions, "Programmed")),
    table: table === undefined ? null : { generation: table.metadata.generation ?? null },
    listeners,
    nodes: table === undefined ? [] : nodeProgramming(
      { namespace, name, generation: table.metadata.generation },
      view,
    ),
    problems,
  };
}

/** How to lay out the tables. */
export interface TableOptions {
  /** `-o wide`. */
  wide: boolean;
  /** `-A`: a NAMESPACE column first. */
  allNamespaces: boolean;
  /** Clock for ages. */
  now: Date;
}

const STATE_COLOR: Record<BackendState, Color> = {
  Ready: "green",
  Serving: "yellow",
  Terminating: "red",
};

function statusCell(value: string, good: boolean): Cell {
  return { text: value, color: good ? "green" : "red" };
}

/**
 * The tables of `kubectl blixt status`: backends (one row per backend and
 * per rejected share), nodes (per Gateway), and problems (only when any).
 */
export function statusTables(report: StatusReport, options: TableOptions): Table[] {
  const ns = (g: GatewayReport): Cell[] => options.allNamespaces ? [g.namespace] : [];
  const nsHeader = options.allNamespaces ? ["NAMESPACE"] : [];

  const routing: Table = {
    headers: [
      ...nsHeader,
      "GATEWAY",
      "ADDRESS",
      "PORT",
      "LISTENER",
      "ROUTE",
      "BACKEND",
      "WEIGHT",
      "SHARE",
      "STATE",
      "PACKETS",
      "BYTES",
      "FLOWS",
      ...(options.wide ? ["NODE", "SERVICE", "SHADOWED"] : []),
    ],
    rows: [],
  };
  for (const g of report.gateways) {
    for (const l of g.listeners) {
      const route = l.route === null ? NONE : shortRef(l.route, g.namespace);
      const shadowed = l.shadowedRoutes.map((r) => shortRef(r, g.namespace)).join(",");
      const head = (address: string): Cell[] => [
        ...ns(g),
        g.name,
        address,
        `${l.port}/${l.protocol}`,
        l.name,
        route,
      ];
      if (l.frontends.length === 0) {
        // HTTP and HTTPS listeners are accepted but blixt carries no traffic for them
        const routed = l.protocol === "TCP" || l.protocol === "UDP";
        routing.rows.push([
          ...head(NONE),
          NONE,
          NONE,
          NONE,
          routed ? NONE : "NotRouted",
          NONE,
          NONE,
          NONE,
          ...(options.wide ? [NONE, NONE, shadowed] : []),
        ]);
        continue;
      }
      for (const f of l.frontends) {
        for (const b of f.backends) {
          routing.rows.push([
            ...head(f.address),
            hostPort(b.ip, b.port),
            String(b.weight),
            percent(b.share),
            { text: b.state, color: STATE_COLOR[b.state] },
            count(b.counters?.packets),
            count(b.counters?.bytes),
            count(b.counters?.newFlows),
            ...(options.wide
              ? [
                b.node ?? NONE,
                b.service === null
                  ? NONE
                  : `${b.service.namespace}/${b.service.name}:${b.service.port}`,
                shadowed,
              ]
              : []),
          ]);
        }
        if (f.rejectShare > 0) {
          routing.rows.push([
            ...head(f.address),
            { text: "<rejected>", color: "red" },
            String(f.rejectWeight),
            percent(f.rejectShare),
            NONE,
            NONE,
            NONE,
            count(f.counters?.rejectedFlows),
            ...(options.wide ? [NONE, NONE, shadowed] : []),
          ]);
        }
      }
    }
  }

  const nodes: Table = {
    headers: [
      ...nsHeader,
      "GATEWAY",
      "NODE",
      "AGENT",
      "GENERATION",
      "PROGRAMMED",
      "SYNCED",
      ...(options.wide ? ["NODE READY", "OBSERVED", "ERRORS"] : []),
    ],
    rows: [],
  };
  for (const g of report.gateways) {
    for (const n of g.nodes) {
      nodes.rows.push([
        ...ns(g),
        g.name,
        n.node,
        n.agentRunning === false
          ? { text: "NotRunning", color: "red" }
          : n.agentReady === null
          ? NONE
          : agentCell(n.agentReady),
        g.table?.generation == null ? NONE : String(g.table.generation),
        n.programmedGeneration === null ? NONE : String(n.programmedGeneration),
        statusCell(n.inSync ? "True" : "False", n.inSync),
        ...(options.wide
          ? [
            n.nodeReady === null ? "<unknown>" : n.nodeReady ? "True" : "False",
            n.observedGeneration === null ? NONE : String(n.observedGeneration),
            n.errors.join("; "),
          ]
          : []),
      ]);
    }
  }

  const problems: Table = {
    headers: [
      ...nsHeader,
      "GATEWAY",
      "OBJECT",
      "CONDITION",
      "STATUS",
      "REASON",
      "AGE",
      "MESSAGE",
    ],
    rows: [],
  };
  for (const g of report.gateways) {
    for (const p of g.problems) {
      problems.rows.push([
        ...ns(g),
        g.name,
        problemObject(p, g),
        p.type,
        { text: p.status, color: "red" },
        p.reason,
        age(p.lastTransitionTime ?? undefined, options.now),
        p.message,
      ]);
    }
  }
  return [
    routing,
    ...(nodes.rows.length > 0 ? [nodes] : []),
    ...(problems.rows.length > 0 ? [problems] : []),
  ];
}

function agentCell(ready: "True" | "False" | "Unknown"): Cell {
  const text = ready === "True" ? "Ready" : ready === "False" ? "NotReady" : "Unknown";
  return { text, color: ready === "True" ? "green" : "red" };
}

function count(n: number | undefined): string {
  return n === undefined ? NONE : String(n);
}

function problemObject(p: Problem, g: GatewayReport): string {
  if (p.kind === "Gateway") return `gateway/${p.name}`;
  if (p.kind === "Listener") return `listener/${p.name}`;
  return shortRef(p, g.namespace);
}

/** A backend's Service, fields in the schema's order, or null when the table names none. */
function plainService(s: ServiceRef | undefined): ServiceRef | null {
  return s === undefined ? null : { namespace: s.namespace, name: s.name, port: s.port };
}
