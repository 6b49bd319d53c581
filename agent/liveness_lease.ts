/**
 * The agent's liveness Lease: `blixt-agent-<node>` in blixt's namespace,
 * renewed every 10 s for 40 s, as the kubelet renews its node Lease. The
 * operator counts a node's agent as running only while this Lease is held, so
 * a killed agent (or a node cut off from the API server) makes its Gateways
 * `Programmed=False` within the lease duration; a graceful stop gives the
 * Lease up (no holder) and the operator sees it at once.
 *
 * ```
 * start ── PUT (or POST when missing) {holder, renewTime, duration} ── every renew interval
 *   │ 409: read it again, write on the next tick     │ error: retry after 1 s
 * stop ─── PUT {holder: ""} (released) ─────────────►  operator: agent not running
 * ```
 *
 * @module
 */
import {
  AGENT_LEASE_DURATION_SECONDS,
  AGENT_LEASE_LABELS,
  AGENT_LEASE_RENEW_INTERVAL_SECONDS,
  agentLeaseName,
  type AgentLeaseObject,
} from "../api/mod.ts";
import type { RestConfig } from "../kube/kubeconfig.ts";
import { apiStatus } from "../kube/rest.ts";
import { microTime } from "../kube/leader_election.ts";
import { requestJson } from "../kube/rest.ts";
import { errorText, type Logger } from "./log.ts";

/** Options of {@linkcode LivenessLease}. */
export interface LivenessLeaseOptions {
  /** Namespace of the Lease (blixt's namespace, default `blixt-system`). */
  namespace?: string;
  /** The node this agent runs on. */
  node: string;
  /** This agent's identity in `holderIdentity` (the pod name, else host and pid). */
  identity: string;
  /** Lease duration in seconds (default 40). */
  durationSeconds?: number;
  /** Renewal interval in seconds (default 10). */
  renewIntervalSeconds?: number;
  /** Log lines. */
  log: Logger;
}

/** Holds and renews this node's agent Lease until stopped. */
export class LivenessLease {
  readonly #kc: RestConfig;
  readonly #o: LivenessLeaseOptions;
  readonly #namespace: string;
  readonly #name: string;
  readonly #stop = new AbortController();
  #current: AgentLeaseObject | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #inFlight: Promise<void> | undefined;
  #failing = false;
  #lastRenewMs: number | undefined;

  /** A holder of `options.node`'s agent Lease (not started). */
  constructor(kc: RestConfig, options: LivenessLeaseOptions) {
    this.#kc = kc;
    this.#o = options;
    this.#namespace = options.namespace ?? "blixt-system";
    this.#name = agentLeaseName(options.node);
  }

  /** `namespace/name` of the Lease. */
  get lease(): string {
    return `${this.#namespace}/${this.#name}`;
  }

  /** When the Lease was last renewed (performance.now() ms), if ever. */
  get lastRenewMs(): number | undefined {
    return this.#lastRenewMs;
  }

  /** Takes the Lease now and keeps renewing it. */
  start(): this {
    this.#tick();
    return this;
  }

  /**
   * Stops renewing; with `release` (default true) gives the Lease up so the
   * operator sees at once that this node's agent stopped. `release: false` is
   * what a crash looks like: the Lease runs out.
   */
  async stop(options: { release?: boolean } = {}): Promise<void> {
    this.#stop.abort();
    clearTimeout(this.#timer);
    await this.#inFlight;
    if (options.release ?? true) await this.#release();
  }

  #tick(): void {
    if (this.#stop.signal.aborted) return;
    this.#inFlight = this.#renew().then((ok) => {
      this.#inFlight = undefined;
      if (this.#stop.signal.aborted) return;
      const interval = (this.#o.renewIntervalSeconds ?? AGENT_LEASE_RENEW_INTERVAL_SECONDS) *
        1000;
      this.#timer = setTimeout(() => this.#tick(), ok ? interval : Math.min(1000, interval));
    });
  }

  #spec(previous: AgentLeaseObject["spec"]): NonNullable<AgentLeaseObject["spec"]> {
    const now = microTime();
    const mine = previous?.holderIdentity === this.#o.identity;
    return {
      ...previous,
      holderIdentity: this.#o.identity,
      leaseDurationSeconds: this.#o.durationSeconds ?? AGENT_LEASE_DURATION_SECONDS,
      acquireTime: mine ? previous?.acquireTime ?? now : now,
      renewTime: now,
    };
  }

  /** One renewal: PUT over what was last read or written; POST when missing. True on success. */
  async #renew(): Promise<boolean> {
    const path = this.#path(this.#name);
    const timeoutMs = (this.#o.renewIntervalSeconds ?? AGENT_LEASE_RENEW_INTERVAL_SECONDS) * 1000;
    const signal = this.#stop.signal;
    const started = performance.now();
    try {
      if (this.#current === undefined) {
        try {
          this.#current = await requestJson<AgentLeaseObject>(this.#kc, path, {
            signal,
            timeoutMs,
          });
        } catch (e) {
          if (apiStatus(e) !== 404) throw e;
          this.#current = await requestJson<AgentLeaseObject>(this.#kc, this.#path(), {
            method: "POST",
            body: {
              apiVersion: "coordination.k8s.io/v1",
              kind: "Lease",
              metadata: {
                name: this.#name,
                namespace: this.#namespace,
                labels: { ...AGENT_LEASE_LABELS },
              },
              spec: this.#spec(undefined),
            },
            signal,
            timeoutMs,
          });
          this.#renewed(started, "took the agent Lease");
          return true;
        }
      }
      const current: AgentLeaseObject = this.#current;
      this.#current = await requestJson<AgentLeaseObject>(this.#kc, path, {
        method: "PUT",
        body: {
          ...current,
          metadata: {
            ...current.metadata,
            labels: { ...current.metadata?.labels, ...AGENT_LEASE_LABELS },
          },
          spec: this.#spec(current.spec),
        },
        signal,
        timeoutMs,
      });
      this.#renewed(
        started,
        current.spec?.holderIdentity === this.#o.identity
          ? "renewed the agent Lease"
          : "took the agent Lease",
      );
      return true;
    } catch (e) {
      if (signal.aborted) return false;
      const code = apiStatus(e);
      // 409 (written meanwhile) or 404 (deleted): read it again on the next try
      if (code === 409 || code === 404) this.#current = undefined;
      if (!this.#failing) {
        this.#o.log("warn", "renewing the agent Lease failed, retrying", {
          lease: this.lease,
          error: errorText(e),
        });
      }
      this.#failing = true;
      return false;
    }
  }

  #renewed(started: number, msg: string): void {
    this.#lastRenewMs = started;
    if (this.#failing || msg !== "renewed the agent Lease") {
      this.#o.log("info", msg, { lease: this.lease, identity: this.#o.identity });
    }
    this.#failing = false;
  }

  /** Gives the Lease up: no holder, so the operator counts this node's agent as stopped. */
  async #release(): Promise<void> {
    const path = this.#path(this.#name);
    try {
      const current = await requestJson<AgentLeaseObject>(this.#kc, path, { timeoutMs: 5_000 });
      if (current.spec?.holderIdentity !== this.#o.identity) return;
      const now = microTime();
      await requestJson<AgentLeaseObject>(this.#kc, path, {
        method: "PUT",
        body: { ...current, spec: { ...current.spec, holderIdentity: "", renewTime: now } },
        timeoutMs: 5_000,
      });
      this.#o.log("info", "released the agent Lease", { lease: this.lease });
    } catch (e) {
      // Not fatal: the operator notices when the Lease runs out.
      this.#o.log("warn", "releasing the agent Lease failed", {
        lease: this.lease,
        error: errorText(e),
      });
    }
  }

  #path(name?: string): string {
    const base = `/apis/coordination.k8s.io/v1/namespaces/${
      encodeURIComponent(this.#namespace)
    }/leases`;
    return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
  }
}
