/**
 * `kubectl blixt explain route NAME`: why a TCPRoute or UDPRoute is or is not
 * carrying traffic, as a list of checks per parent Gateway and listener: not
 * attached (and why), shadowed by an older route on the same listener, no
 * ready backends, a rejected share, not programmed on the nodes. Pure: view
 * -> explanation (`BlixtExplanation` v1) -> table.
 *
 * @module
 */
import { type Condition, CONTROLLER_NAME } from "../api/mod.ts";
import {
  attachments,
  type ClusterView,
  condition,
  controllerOf,
  entryShares,
  hostPort,
  isAbnormal,
  isManaged,
  nodeProgramming,
  type ObjectRef,
  shortRef,
  tableFor,
} from "./cluster_view.ts";
import { type Cell, type Color, percent, type Table } from "./table.ts";
import { GATEWAY_GROUP, type L4Route } from "../operator/mod.ts";

/** Version of the explanation schema. */
export const EXPLAIN_VERSION = "v1";

/** How serious a check is. */
export type Level = "ok" | "warning" | "error";

/**
 * Reasons a check may give (stable: scripts may match on them).
 * `ok`: Accepted, Carrying, Programmed.
 * `warning`: NoStatus, StaleStatus, RefsNotResolved, RejectedShare, PartlyProgrammed, NotInTable.
 * `error`: NoParents, UnsupportedParent, GatewayNotFound, NotManaged, NotAccepted, NoRoutingTable,
 * ListenerNotProgrammed, Shadowed, NoReadyBackends, NotProgrammed.
 */
export const REASONS = {
  ok: ["Accepted", "Carrying", "Programmed"],
  warning: [
    "NoStatus",
    "StaleStatus",
    "RefsNotResolved",
    "RejectedShare",
    "PartlyProgrammed",
    "NotInTable",
  ],
  error: [
    "NoParents",
    "UnsupportedParent",
    "GatewayNotFound",
    "NotManaged",
    "NotAccepted",
    "NoRoutingTable",
    "ListenerNotProgrammed",
    "Shadowed",
    "NoReadyBackends",
    "NotProgrammed",
  ],
} as const;

/** One finding. */
export interface Check {
  /** `namespace/name` of the parent Gateway; null for the route as a whole. */
  gateway: string | null;
  /** Listener the check is about; null for the parent as a whole. */
  listener: string | null;
  /** ok, warning or error. */
  level: Level;
  /** CamelCase reason, one of {@linkcode REASONS}. */
  reason: string;
  /** What it means, for a human. */
  message: string;
}

/** The explanation of one route. */
export interface RouteExplanation {
  /** The route. */
  route: ObjectRef;
  /**
   * True when at least one listener routes this route's traffic to a ready
   * backend and at least one node has programmed the table's generation.
   */
  carryingTraffic: boolean;
  /** One line. */
  summary: string;
  /** Findings in order: per parent, then per listener. */
  checks: Check[];
}

/** The `-o json|yaml` output of `kubectl blixt explain`. */
export interface Explanation {
  /** `BlixtExplanation`. */
  kind: "BlixtExplanation";
  /** Schema version, `v1`. */
  version: typeof EXPLAIN_VERSION;
  /** One per route explained (two when a TCPRoute and a UDPRoute share the name). */
  routes: RouteExplanation[];
}

function cond(c: Partial<Condition> | undefined): string {
  return c === undefined ? "absent" : `${c.type}=${c.status}/${c.reason}: ${c.message ?? ""}`;
}

/** Explains one route against the Gateways, tables and nodes of the view. */
export function explainRoute(route: L4Route, view: ClusterView): RouteExplanation {
  const self: ObjectRef = {
    kind: route.kind,
    namespace: route.metadata.namespace,
    name: route.metadata.name,
  };
  const checks: Check[] = [];
  let carrying = false;
  let rejected = 0;
  const refs = route.spec?.parentRefs ?? [];
  if (refs.length === 0) {
    checks.push({
      gateway: null,
      listener: null,
      level: "error",
      reason: "NoParents",
      message: "the route has no parentRefs: it is attached to no Gateway",
    });
  }
  const seen = new Set<string>();
  for (const ref of refs) {
    const group = ref.group ?? GATEWAY_GROUP;
    const kind = ref.kind ?? "Gateway";
    const namespace = ref.namespace ?? route.metadata.namespace;
    const key = `${namespace}/${ref.name}`;
    if (group !== GATEWAY_GROUP || kind !== "Gateway") {
      checks.push({
        gateway: null,
        listener: null,
        level: "error",
        reason: "UnsupportedParent",
        message:
          `parentRef ${group}/${kind} ${key} is not a Gateway; blixt attaches routes to Gateways`,
      });
      continue;
    }
    if (seen.has(key)) continue; // attachments() handles every ref to one Gateway at once
    seen.add(key);
    const gateway = view.gateways.find((g) =>
      g.metadata?.namespace === namespace && g.metadata?.name === ref.name
    );
    const at = (listener: string | null, level: Level, reason: string, message: string) =>
      checks.push({ gateway: key, listener, level, reason, message });
    if (gateway === undefined) {
      at(null, "error", "GatewayNotFound", `Gateway ${key} does not exist`);
      continue;
    }
    if (!isManaged(gateway, view)) {
      at(
        null,
        "error",
        "NotManaged",
        `Gateway ${key} has class ${gateway.spec.gatewayClassName} (controller ${
          controllerOf(gateway, view) ?? "unknown: no such GatewayClass"
        }); blixt (${CONTROLLER_NAME}) does not program it`,
      );
      continue;
    }
    const listeners = new Set<string>();
    for (const a of attachments(route, { gateway, view })) {
      const sel = [
        a.ref.sectionName === undefined ? "" : `sectionName ${a.ref.sectionName}`,
        a.ref.port === undefined ? "" : `port ${a.ref.port}`,
      ].filter((s) => s !== "").join(", ");
      const which = sel === "" ? "" : ` (${sel})`;
      const accepted = condition(a.reported?.conditions, "Accepted");
      if (a.reported === undefined) {
        at(
          null,
          "warning",
          "NoStatus",
          `blixt has not written status for parentRef${which} yet (is the operator running?); by the Gateway's spec: ${a.computed.reason}: ${a.computed.message}`,
        );
        if (a.computed.status === "True") a.listeners.forEach((l) => listeners.add(l));
        else at(null, "error", "NotAccepted", `${a.computed.reason}: ${a.computed.message}`);
        continue;
      }
      const observed = accepted?.observedGeneration;
      const generation = route.metadata.generation;
      if (observed !== undefined && generation !== undefined && observed < generation) {
        at(
          null,
          "warning",
          "StaleStatus",
          `blixt's status is for generation ${observed} of the route, which is at ${generation}: the operator has not caught up`,
        );
      }
      if (accepted?.status !== "True") {
        at(null, "error", "NotAccepted", `parentRef${which}: ${cond(accepted)}`);
        continue;
      }
      at(null, "ok", "Accepted", `parentRef${which}: ${accepted.message ?? ""}`);
      const refsOk = condition(a.reported.conditions, "ResolvedRefs");
      if (refsOk !== undefined && isAbnormal(refsOk)) {
        at(null, "warning", "RefsNotResolved", cond(refsOk));
      }
      // the operator's listeners; when its status and the spec disagree, the table below tells
      a.listeners.forEach((l) => listeners.add(l));
    }
    if (listeners.size === 0) continue;

    const table = tableFor(gateway, view);
    if (table === undefined) {
      const conditions = gateway.status?.conditions as Partial<Condition>[] | undefined;
      const why = [condition(conditions, "Accepted"), condition(conditions, "Programmed")]
        .filter((c) => c !== undefined && isAbnormal(c)).map(cond).join("; ");
      at(
        null,
        "error",
        "NoRoutingTable",
        `Gateway ${key} has no RoutingTable, nothing is programmed${why ? `: ${why}` : ""}`,
      );
      continue;
    }
    let carriesHere = false;
    for (
      const l of (gateway.spec.listeners ?? []).map((x) => x.name).filter((n) => listeners.has(n))
    ) {
      const entries = table.spec.entries.filter((e) => e.listener === l);
      if (entries.length === 0) {
        const status = gateway.status?.listeners?.find((s) => s.name === l);
        const why = (status?.conditions as Partial<Condition>[] | undefined ?? [])
          .filter(isAbnormal).map(cond).join("; ");
        at(
          l,
          "error",
          "ListenerNotProgrammed",
          `listener ${l} has no entry in the RoutingTable${why ? `: ${why}` : ""}`,
        );
        continue;
      }
      for (const entry of entries) {
        const frontend = `${hostPort(entry.address, entry.port)}/${entry.protocol}`;
        if (entry.route === undefined) {
          at(
            l,
            "warning",
            "NotInTable",
            `${frontend}: RoutingTable generation ${
              table.metadata.generation ?? "?"
            } has no route on listener ${l} yet; the operator may be catching up`,
          );
          continue;
        }
        const r = entry.route;
        if (r.kind !== self.kind || r.namespace !== self.namespace || r.name !== self.name) {
          at(
            l,
            "error",
            "Shadowed",
            `${frontend}: listener ${l} carries ${
              shortRef(r, route.metadata.namespace)
            }, which precedes this route (oldest creationTimestamp first, then namespace/name, as GEP-2644 says); this route gets no traffic there`,
          );
          continue;
        }
        const shares = entryShares(entry);
        const ready = entry.backends.filter((b) => b.state === "Ready" && b.weight > 0);
        const draining = entry.backends.filter((b) => b.state !== "Ready").length;
        const drainNote = draining > 0 ? `; ${draining} terminating (existing flows only)` : "";
        const reject = entry.protocol === "TCP" ? "TCP reset" : "ICMP port unreachable";
        if (ready.length === 0) {
          at(
            l,
            "error",
            "NoReadyBackends",
            `${frontend}: no ready backend, every new flow is rejected (${reject})${drainNote}`,
          );
          continue;
        }
        carriesHere = true;
        const list = ready.map((b) =>
          `${hostPort(b.ip, b.port)} ${percent(shares.backends[entry.backends.indexOf(b)] ?? 0)}`
        ).join(", ");
        at(
          l,
          "ok",
          "Carrying",
          `${frontend}: ${ready.length} ready backend${
            ready.length > 1 ? "s" : ""
          } (${list})${drainNote}`,
        );
        if (shares.reject > 0) {
          rejected = Math.max(rejected, shares.reject);
          at(
            l,
            "warning",
            "RejectedShare",
            `${frontend}: ${
              percent(shares.reject)
            } of new flows are rejected (${reject}): backendRefs that do not resolve or have no ready endpoint`,
          );
        }
      }
    }

    const nodes = nodeProgramming(
      { namespace, name: ref.name, generation: table.metadata.generation },
      view,
    ).filter((n) => n.nodeReady !== false && (n.agentReady !== null || n.nodeReady === true));
    const synced = nodes.filter((n) => n.inSync);
    const generation = table.metadata.generation ?? "?";
    const behind = nodes.filter((n) => !n.inSync).map((n) =>
      `${n.node} (${
        [
          n.agentReady === null
            ? "no agent: no DataplaneNode"
            : `programmed ${n.programmedGeneration ?? "none"}`,
          ...n.errors,
        ].join("; ")
      })`
    ).join(", ");
    if (nodes.length > 0 && synced.length === nodes.length) {
      at(
        null,
        "ok",
        "Programmed",
        `RoutingTable generation ${generation} programmed on ${synced.length} of ${nodes.length} nodes`,
      );
    } else if (synced.length > 0) {
      at(
        null,
        "warning",
        "PartlyProgrammed",
        `RoutingTable generation ${generation} programmed on ${synced.length} of ${nodes.length} nodes; behind: ${behind}`,
      );
    } else {
      at(
        null,
        "error",
        "NotProgrammed",
        `RoutingTable generation ${generation} programmed on no node${
          behind ? `; behind: ${behind}` : ""
        }`,
      );
    }
    if (carriesHere && synced.length > 0) carrying = true;
  }

  let summary: string;
  if (carrying) {
    summary = rejected > 0
      ? `carrying traffic (${percent(rejected)} of new flows rejected)`
      : "carrying traffic";
  } else {
    const first = checks.find((c) => c.level === "error");
    summary = `not carrying traffic${first ? `: ${first.reason}` : ""}`;
  }
  return { route: self, carryingTraffic: carrying, summary, checks };
}

/** Explains each route. */
export function buildExplanation(routes: readonly L4Route[], view: ClusterView): Explanation {
  return {
    kind: "BlixtExplanation",
    version: EXPLAIN_VERSION,
    routes: routes.map((r) => explainRoute(r, view)),
  };
}

const LEVEL_COLOR: Record<Level, Color> = { ok: "green", warning: "yellow", error: "red" };

/** The first line of a route's explanation: `tcproute/web -n default: carrying traffic`. */
export function explanationTitle(e: RouteExplanation): string {
  return `${e.route.kind.toLowerCase()}/${e.route.name} in namespace ${e.route.namespace}: ${e.summary}`;
}

/** The checks of a route as a table. */
export function explanationTable(e: RouteExplanation): Table {
  return {
    headers: ["GATEWAY", "LISTENER", "LEVEL", "CHECK", "MESSAGE"],
    rows: e.checks.map((c): Cell[] => [
      c.gateway ?? "",
      c.listener ?? "",
      { text: c.level, color: LEVEL_COLOR[c.level] },
      c.reason,
      c.message,
    ]),
  };
}
