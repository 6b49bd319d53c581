/**
 * `kubectl blixt nodes`: per node, whether its agent is ready, how many
 * RoutingTables it has programmed at their current generation, how full its
 * maps are, and when it last synced. Pure: view -> report (`BlixtNodes` v1)
 * -> tables.
 *
 * @module
 */
import type { Condition } from "../api/mod.ts";
import {
  agentRunning,
  type ClusterView,
  condition,
  isAbnormal,
  nodeNames,
  nodeReady,
} from "./cluster_view.ts";
import type { ConditionReport } from "./status.ts";
import { age, type Cell, NONE, percent, type Table, UNKNOWN } from "./table.ts";

/** Version of the nodes schema. */
export const NODES_VERSION = "v1";

/** The `-o json|yaml` output of `kubectl blixt nodes`. */
export interface NodesReport {
  /** `BlixtNodes`. */
  kind: "BlixtNodes";
  /** Schema version, `v1`. */
  version: typeof NODES_VERSION;
  /** Nodes by name. */
  nodes: NodeReport[];
}

/** One node. */
export interface NodeReport {
  /** Node name. */
  name: string;
  /** The Node's Ready condition; null when unknown. */
  nodeReady: boolean | null;
  /** Whether the node has a DataplaneNode, i.e. an agent has reported. */
  agent: boolean;
  /** The agent's Ready condition status; null without a DataplaneNode. */
  ready: "True" | "False" | "Unknown" | null;
  /**
   * Whether the agent runs, i.e. holds its liveness Lease (a stopped agent's
   * DataplaneNode still reads as it last wrote it); null when unknown.
   */
  agentRunning: boolean | null;
  /** Why it does not run (`agent Lease expired 12s ago`, ...); null while it runs. */
  agentNotRunningReason: string | null;
  /** Whether the agent reports Degraded=True. */
  degraded: boolean;
  /** Interface the TC program is on; null when not reported. */
  uplink: string | null;
  /** RoutingTables in the cluster and what this node did with each. */
  tables: {
    /** Tables in the cluster. */
    total: number;
    /** Tables programmed at their current generation. */
    programmed: number;
    /** Per table, sorted by namespace and name. */
    items: NodeTableReport[];
  };
  /** Map fill, sorted by name; empty when the agent does not report it. */
  maps: { name: string; entries: number; capacity: number; usage: number }[];
  /** When the agent last synced its maps; null when not reported. */
  lastSyncTime: string | null;
  /** When its counters were read; null when none. */
  countersCollectedAt: string | null;
  /** Conditions that say something is wrong. */
  problems: ConditionReport[];
}

/** What a node did with one table. */
export interface NodeTableReport {
  /** Table namespace. */
  namespace: string;
  /** Table name. */
  name: string;
  /** The table's current generation; null when the table no longer exists. */
  generation: number | null;
  /** Generation programmed on the node; null when none. */
  programmedGeneration: number | null;
  /** Whether the current generation is programmed. */
  inSync: boolean;
  /** The agent's errors for it. */
  errors: string[];
}

/** Builds the nodes report. */
export function buildNodes(view: ClusterView): NodesReport {
  const tables = [...view.routingTables].sort((a, b) =>
    `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(
      `${b.metadata.namespace}/${b.metadata.name}`,
    )
  );
  return {
    kind: "BlixtNodes",
    version: NODES_VERSION,
    nodes: nodeNames(view).map((name) => {
      const dpn = view.dataplaneNodes.find((d) => d.metadata.name === name);
      const status = dpn?.status;
      const items: NodeTableReport[] = tables.map((t) => {
        const s = status?.tables?.find((x) =>
          x.namespace === t.metadata.namespace && x.name === t.metadata.name
        );
        const generation = t.metadata.generation ?? null;
        const programmed = s?.programmedGeneration ?? null;
        return {
          namespace: t.metadata.namespace,
          name: t.metadata.name,
          generation,
          programmedGeneration: programmed,
          inSync: programmed !== null && programmed === generation,
          errors: s?.errors ?? [],
        };
      });
      // tables the agent still reports but that are gone from the cluster
      for (const s of status?.tables ?? []) {
        if (items.some((i) => i.namespace === s.namespace && i.name === s.name)) continue;
        items.push({
          namespace: s.namespace,
          name: s.name,
          generation: null,
          programmedGeneration: s.programmedGeneration ?? null,
          inSync: false,
          errors: s.errors ?? [],
        });
      }
      const conditions = status?.conditions as Partial<Condition>[] | undefined;
      const running = agentRunning(name, view);
      return {
        name,
        nodeReady: nodeReady(name, view) ?? null,
        agent: dpn !== undefined,
        ready: dpn === undefined ? null : condition(conditions, "Ready")?.status ?? "Unknown",
        agentRunning: running?.running ?? null,
        agentNotRunningReason: running && !running.running ? running.reason : null,
        degraded: condition(conditions, "Degraded")?.status === "True",
        uplink: dpn?.spec.uplink ?? null,
        tables: {
          total: tables.length,
          programmed: items.filter((i) => i.inSync).length,
          items,
        },
        maps: [...status?.maps ?? []].sort((a, b) => a.name.localeCompare(b.name)).map((m) => ({
          name: m.name,
          entries: m.entries,
          capacity: m.capacity,
          usage: m.capacity === 0 ? 0 : Math.round(m.entries / m.capacity * 10000) / 10000,
        })),
        lastSyncTime: status?.lastSyncTime ?? null,
        countersCollectedAt: status?.counters?.collectedAt ?? null,
        problems: (conditions ?? []).filter(isAbnormal).map((c) => ({
          type: c.type ?? "",
          status: c.status ?? "Unknown",
          reason: c.reason ?? "",
          message: c.message ?? "",
          lastTransitionTime: c.lastTransitionTime ?? null,
        })),
      };
    }),
  };
}

function agentCell(n: NodeReport): Cell {
  if (!n.agent) return { text: NONE, color: "red" };
  if (n.agentRunning === false) return { text: "NotRunning", color: "red" };
  const ready = n.ready === "True" ? "Ready" : n.ready === "False" ? "NotReady" : "Unknown";
  const text = n.degraded ? `${ready},Degraded` : ready;
  return {
    text,
    color: n.ready === "True" && !n.degraded ? "green" : n.ready === "True" ? "yellow" : "red",
  };
}

/** The fullest map as `61% backends`, or `<unknown>` when the agent reports no maps. */
function fullest(n: NodeReport): Cell {
  const top = [...n.maps].sort((a, b) => b.usage - a.usage || a.name.localeCompare(b.name))[0];
  if (top === undefined) return UNKNOWN;
  const color = top.usage >= 0.9 ? "red" : top.usage >= 0.75 ? "yellow" : undefined;
  return { text: `${percent(top.usage)} ${top.name}`, color };
}

/** The tables of `kubectl blixt nodes`: one row per node, then problems when any. */
export function nodesTables(
  report: NodesReport,
  options: { wide: boolean; now: Date },
): Table[] {
  const main: Table = {
    headers: [
      "NODE",
      "AGENT",
      "TABLES",
      "MAPS",
      "LAST SYNC",
      ...(options.wide ? ["NODE READY", "UPLINK", "COUNTERS", "MAP USAGE"] : []),
    ],
    rows: report.nodes.map((n) => {
      const behind = n.tables.programmed < n.tables.total;
      return [
        n.name,
        agentCell(n),
        { text: `${n.tables.programmed}/${n.tables.total}`, color: behind ? "red" : "green" },
        fullest(n),
        n.lastSyncTime === null ? UNKNOWN : age(n.lastSyncTime, options.now),
        ...(options.wide
          ? [
            n.nodeReady === null ? UNKNOWN : n.nodeReady ? "True" : "False",
            n.uplink ?? NONE,
            n.countersCollectedAt === null ? NONE : age(n.countersCollectedAt, options.now),
            n.maps.map((m) => `${m.name}=${m.entries}/${m.capacity}`).join(",") || UNKNOWN,
          ]
          : []),
      ];
    }),
  };
  const problems: Table = {
    headers: ["NODE", "CONDITION", "STATUS", "REASON", "AGE", "MESSAGE"],
    rows: report.nodes.flatMap((n) => [
      ...(n.agentRunning === false
        ? [[
          n.name,
          "AgentRunning",
          { text: "False", color: "red" as const },
          "AgentNotRunning",
          NONE,
          n.agentNotRunningReason ?? "",
        ]]
        : []),
      ...n.problems.map((p) => [
        n.name,
        p.type,
        { text: p.status, color: "red" as const },
        p.reason,
        age(p.lastTransitionTime ?? undefined, options.now),
        p.message,
      ]),
    ]),
  };
  return problems.rows.length > 0 ? [main, problems] : [main];
}
