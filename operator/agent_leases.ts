/**
 * The operator's view of which agents run: a watch on the agents' liveness
 * Leases (`blixt-agent-<node>` in blixt's namespace) that records, on the
 * operator's own clock, when each renewal was seen, and wakes the Gateways
 * whenever a node's agent starts or stops running: on the event that says
 * so (created, released, deleted, renewed after expiring) and, since an
 * agent that died writes nothing, on a timer at the moment its Lease runs out.
 *
 * ```
 * agent ── renew every 10 s ──> Lease blixt-agent-<node> {holder, renewTime, 40 s}
 *                                   │ list+watch (label selector)
 *                                   v
 *             AgentLeaseWatch: snapshot.agentLeases[node] = {holder, duration, seen at}
 *                  │ liveness changed now, or timer at seen at + duration
 *                  v
 *             wake() -> every managed Gateway is reconciled (Programmed)
 * ```
 *
 * Counting from the moment the renewal was seen (not from the agent's
 * `renewTime`) keeps a skewed node clock from making an agent look dead or
 * alive, as the node lifecycle controller does with node Leases. The price: a
 * freshly started operator counts every Lease it lists as just renewed, so an
 * agent that died before it started is noticed one lease duration later.
 *
 * @module
 */
import {
  AGENT_LEASE_SELECTOR,
  type AgentLeaseObject,
  agentLeaseRecord,
  agentLiveness,
  nodeOfAgentLease,
} from "../api/mod.ts";
import type { k8s } from "../kube/client.ts";
import { Informer } from "../kube/informer.ts";
import type { Log } from "../kube/log.ts";
import type { Snapshot } from "./snapshot.ts";

/** The clock the operator judges Leases by: epoch ms, monotonic within the process. */
export function operatorClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Options of {@linkcode AgentLeaseWatch}. */
export interface AgentLeaseWatchOptions {
  /** Namespace of the agent Leases (blixt's namespace). */
  namespace: string;
  /** Called when some node's agent started or stopped running (after the snapshot changed). */
  wake: () => void;
  /** Log sink. */
  log?: Log;
  /** Clock (default {@linkcode operatorClockMs}). */
  clock?: () => number;
}

/** Keeps `snapshot.agentLeases` up to date and wakes on every change of an agent's liveness. */
export class AgentLeaseWatch {
  readonly #snapshot: Snapshot;
  readonly #options: AgentLeaseWatchOptions;
  readonly #clock: () => number;
  readonly #informer: Informer<AgentLeaseObject & k8s.KubernetesObject>;
  readonly #timers = new Map<string, ReturnType<typeof setTimeout>>();
  #stopped = false;

  /** A watch of the agent Leases in `options.namespace` (not started). */
  constructor(kc: k8s.KubeConfig, snapshot: Snapshot, options: AgentLeaseWatchOptions) {
    this.#snapshot = snapshot;
    this.#options = options;
    this.#clock = options.clock ?? operatorClockMs;
    this.#informer = new Informer(kc, { apiVersion: "coordination.k8s.io/v1", plural: "leases" }, {
      namespace: options.namespace,
      labelSelector: AGENT_LEASE_SELECTOR,
      ...(options.log ? { log: options.log } : {}),
    });
    this.#informer.on("add", (o) => this.#observe(o));
    this.#informer.on("update", (o) => this.#observe(o));
    this.#informer.on("delete", (o) => this.#forget(o));
  }

  /** Resolves once the Leases have been listed. */
  get synced(): Promise<void> {
    return this.#informer.synced;
  }

  /** Starts watching; returns the watch. */
  start(): this {
    this.#informer.start();
    return this;
  }

  /** Stops the watch and every timer. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    await this.#informer.stop();
  }

  #observe(lease: AgentLeaseObject): void {
    const now = this.#clock();
    const node = nodeOfAgentLease(lease.metadata?.name ?? "");
    if (node === undefined) return;
    const before = this.#snapshot.agentLeases.get(node);
    const unchanged = before !== undefined &&
      before.holder === (lease.spec?.holderIdentity ?? "") &&
      before.renewTime === lease.spec?.renewTime &&
      before.durationMs === (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
    if (unchanged) return; // e.g. a re-list: the renewal was already seen
    const record = agentLeaseRecord(lease, { observedAtMs: now })!;
    const wasAlive = agentLiveness(before, now).alive;
    this.#snapshot.agentLeases.set(node, record);
    const liveness = agentLiveness(record, now);
    this.#arm(node, liveness.expiresAtMs);
    if (wasAlive !== liveness.alive) this.#wake(node, liveness.alive, liveness.reason);
  }

  #forget(lease: AgentLeaseObject): void {
    const node = nodeOfAgentLease(lease.metadata?.name ?? "");
    if (node === undefined) return;
    const wasAlive = agentLiveness(this.#snapshot.agentLeases.get(node), this.#clock()).alive;
    this.#snapshot.agentLeases.delete(node);
    this.#arm(node, undefined);
    if (wasAlive) this.#wake(node, false, "agent Lease deleted");
  }

  /** A timer at the moment the Lease runs out (an agent that died writes nothing more). */
  #arm(node: string, expiresAtMs: number | undefined): void {
    clearTimeout(this.#timers.get(node));
    this.#timers.delete(node);
    if (expiresAtMs === undefined || this.#stopped) return;
    const timer = setTimeout(() => {
      this.#timers.delete(node);
      const liveness = agentLiveness(this.#snapshot.agentLeases.get(node), this.#clock());
      if (liveness.alive) this.#arm(node, liveness.expiresAtMs);
      else this.#wake(node, false, liveness.reason);
    }, Math.max(0, expiresAtMs - this.#clock()) + 1);
    this.#timers.set(node, timer);
  }

  #wake(node: string, alive: boolean, reason: string): void {
    if (this.#stopped) return;
    this.#options.log?.({
      level: alive ? "info" : "warn",
      msg: alive ? "agent running" : "agent not running",
      node,
      reason,
    });
    this.#options.wake();
  }
}
