/**
 * The agent's liveness Lease: each node's agent holds a coordination.k8s.io/v1
 * Lease named `blixt-agent-<node>` in blixt's namespace and renews it, as the
 * kubelet does with its node Lease. The operator reads these Leases to know on
 * which nodes an agent runs now; a missing, released or expired Lease means
 * the node's agent is not running, and Gateways stop being `Programmed=True`.
 *
 * @module
 */

/** Prefix of every agent Lease's name; the rest is the node's name. */
export const AGENT_LEASE_PREFIX = "blixt-agent-";

/** Labels of every agent Lease (the operator watches with this selector). */
export const AGENT_LEASE_LABELS = {
  "app.kubernetes.io/part-of": "blixt",
  "app.kubernetes.io/component": "agent",
} as const;

/** The label selector that finds the agent Leases. */
export const AGENT_LEASE_SELECTOR =
  "app.kubernetes.io/part-of=blixt,app.kubernetes.io/component=agent";

/** How long an agent Lease lasts without renewal, by default (kubelet: 40 s). */
export const AGENT_LEASE_DURATION_SECONDS = 40;

/** How often an agent renews its Lease, by default (kubelet: a quarter of the duration). */
export const AGENT_LEASE_RENEW_INTERVAL_SECONDS = 10;

/** Name of the agent Lease of `node`. */
export function agentLeaseName(node: string): string {
  return `${AGENT_LEASE_PREFIX}${node}`;
}

/** The node an agent Lease belongs to, or undefined when `name` is no agent Lease's. */
export function nodeOfAgentLease(name: string): string | undefined {
  if (!name.startsWith(AGENT_LEASE_PREFIX)) return undefined;
  const node = name.slice(AGENT_LEASE_PREFIX.length);
  return node === "" ? undefined : node;
}

/** The part of a coordination.k8s.io/v1 Lease that liveness reads. */
export interface AgentLeaseObject {
  /** `coordination.k8s.io/v1`. */
  apiVersion?: string;
  /** `Lease`. */
  kind?: string;
  /** Name `blixt-agent-<node>`. */
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
  };
  /** Holder and timing. */
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
  };
}

/**
 * What the operator remembers of one agent Lease: who holds it, for how long,
 * and when the reader saw it last renewed, on the reader's own clock (epoch ms).
 */
export interface AgentLeaseRecord {
  /** The node. */
  node: string;
  /** The agent's identity; empty once the agent gave the Lease up. */
  holder: string;
  /** Lease duration in ms. */
  durationMs: number;
  /** `spec.renewTime` as written by the agent. */
  renewTime?: string;
  /** When the reader saw this renewal (epoch ms, the reader's clock). */
  observedAtMs: number;
}

/** Whether an agent runs on a node, and if not, why not (one phrase). */
export interface AgentLiveness {
  /** The agent holds an unexpired Lease. */
  alive: boolean;
  /** Why not: `no Lease`, `Lease released at shutdown`, `Lease expired 12s ago`. */
  reason: string;
  /** When the Lease runs out (epoch ms), while alive. */
  expiresAtMs?: number;
}

/**
 * Reads an agent Lease into a record. `observedAtMs` is when the reader saw
 * it; without one the Lease's own `renewTime` is trusted (one-shot readers
 * such as tests and kubectl-blixt have no history to count from).
 */
export function agentLeaseRecord(
  lease: AgentLeaseObject,
  options: { observedAtMs?: number } = {},
): AgentLeaseRecord | undefined {
  const node = nodeOfAgentLease(lease.metadata?.name ?? "");
  if (node === undefined) return undefined;
  const renewTime = lease.spec?.renewTime;
  const parsed = renewTime === undefined ? NaN : Date.parse(renewTime);
  return {
    node,
    holder: lease.spec?.holderIdentity ?? "",
    durationMs: (lease.spec?.leaseDurationSeconds ?? 0) * 1000,
    ...(renewTime !== undefined ? { renewTime } : {}),
    observedAtMs: options.observedAtMs ?? (Number.isNaN(parsed) ? 0 : parsed),
  };
}

/** Whether the agent of `record` runs at `nowMs` (epoch ms, the reader's clock). */
export function agentLiveness(record: AgentLeaseRecord | undefined, nowMs: number): AgentLiveness {
  if (record === undefined) return { alive: false, reason: "no agent Lease" };
  if (record.holder === "") return { alive: false, reason: "agent stopped (Lease released)" };
  const expiresAtMs = record.observedAtMs + record.durationMs;
  if (nowMs >= expiresAtMs) {
    const ago = Math.round((nowMs - expiresAtMs) / 1000);
    return { alive: false, reason: `agent Lease expired ${ago}s ago` };
  }
  return { alive: true, reason: "agent Lease held", expiresAtMs };
}
