/**
 * Leader election with a coordination.k8s.io/v1 Lease, as client-go's
 * `leaderelection` does it: one of several replicas leads, the others stand
 * by and take over when it stops renewing.
 *
 * ```
 *  candidate ──GET+PUT(resourceVersion)──► Lease {holderIdentity, renewTime, leaseTransitions}
 *     ▲   │ won                                 │ watched: release or expiry wakes standbys
 *     │   ▼                                     │
 *     │  leader ── renew every retryPeriod ─────┘
 *     │   │ no renewal for renewDeadline, or another holder
 *     └───┘ steps down (onStoppedLeading), then is a candidate again
 * ```
 *
 * Safety: every write carries the resourceVersion that was read, so of two
 * candidates racing for the same Lease only one write succeeds. A standby
 * counts the lease duration from the moment it saw the Lease last change (on
 * its own monotonic clock, so clock offsets between nodes do not matter); a
 * leader steps down once `renewDeadline` has passed since the start of its
 * last successful renewal, which (renewDeadline < leaseDuration) is before any
 * standby may take over.
 *
 * @example
 * ```ts
 * const elector = new LeaderElector(kc, { namespace: "blixt-system", name: "blixt-operator" }, {
 *   identity: Deno.hostname(),
 *   onStartedLeading: (signal) => runControllers(signal),
 * });
 * elector.start();
 * // on SIGTERM: hand over at once
 * await elector.stop();
 * ```
 *
 * @module
 */

import type { RestConfig } from "./kubeconfig.ts";
import { childController, sleep } from "./backoff.ts";
import { Informer } from "./informer.ts";
import { errorMessage, jsonLog, type Log } from "./log.ts";
import { apiStatus } from "./rest.ts";
import { requestJson } from "./rest.ts";

/** Which Lease the candidates compete for. */
export interface LeaseRef {
  namespace: string;
  name: string;
}

/** Options of a {@link LeaderElector}. */
export interface LeaderElectionOptions {
  /** This candidate's name in `holderIdentity` (e.g. the pod name); unique among candidates. */
  identity: string;
  /** How long a standby waits after the Lease last changed before taking it (default 15 s). */
  leaseDurationMs?: number;
  /** How long a leader keeps leading without a successful renewal (default 10 s). */
  renewDeadlineMs?: number;
  /** Interval of renewals and of acquisition attempts (default 2 s). */
  retryPeriodMs?: number;
  /** Labels of the Lease when this candidate creates it (default `app.kubernetes.io/part-of: blixt`). */
  labels?: Record<string, string>;
  /** This candidate now leads; `signal` aborts when it stops leading. */
  onStartedLeading?: (signal: AbortSignal) => void | Promise<void>;
  /** This candidate stopped leading; awaited before a graceful release of the Lease. */
  onStoppedLeading?: () => void | Promise<void>;
  /** The Lease names a new holder (this candidate included). */
  onNewLeader?: (identity: string) => void;
  /** Receives log lines (default: JSON lines on stderr). */
  log?: Log;
}

/** Options of {@link LeaderElector.stop}. */
export interface StopOptions {
  /**
   * Hand the Lease over at once (default true): a standby takes over within
   * moments instead of waiting out the lease duration.
   */
  release?: boolean;
}

/** The Lease's spec, as the API serves it. */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

/** A coordination.k8s.io/v1 Lease. */
export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
  };
  spec?: LeaseSpec;
}

/** Microseconds since the epoch, now. */
function nowMicros(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000);
}

/**
 * A Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits,
 * e.g. `2026-11-26T10:00:00.123456Z`.
 *
 * @param epochMicros microseconds since the epoch (default: now)
 */
export function microTime(epochMicros: number = nowMicros()): string {
  const micros = Math.floor(epochMicros);
  const seconds = new Date(Math.floor(micros / 1000)).toISOString().slice(0, 19);
  const fraction = String(((micros % 1_000_000) + 1_000_000) % 1_000_000).padStart(6, "0");
  return `${seconds}.${fraction}Z`;
}

function leasePath(lease: LeaseRef, name?: string): string {
  const base = `/apis/coordination.k8s.io/v1/namespaces/${
    encodeURIComponent(lease.namespace)
  }/leases`;
  return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
}

/** What a standby compares to see whether the Lease moved. */
function recordKey(spec: LeaseSpec | undefined): string {
  return JSON.stringify([
    spec?.holderIdentity ?? "",
    spec?.leaseDurationSeconds ?? 0,
    spec?.acquireTime ?? "",
    spec?.renewTime ?? "",
    spec?.leaseTransitions ?? 0,
  ]);
}

/**
 * One candidate of a leader election on a Lease. Construct,
 * {@link LeaderElector.start}, and {@link LeaderElector.stop} on shutdown.
 */
export class LeaderElector {
  readonly #kc: RestConfig;
  readonly #lease: LeaseRef;
  readonly #options: LeaderElectionOptions;
  readonly #leaseDurationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #log: Log;
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #watcher: Informer<Lease> | undefined;
  /** The Lease's record as last seen, and when (monotonic ms) it was first seen so. */
  #observedKey = "";
  #observedAt = 0;
  #observedHolder = "";
  #observedDurationMs = 0;
  /** Set while leading; aborted when leadership ends. */
  #leadership: AbortController | undefined;
  /** Wakes a napping candidate early (the Lease was released or expired). */
  #poke: (() => void) | undefined;

  /** A candidate for `lease` (not started). */
  constructor(kc: RestConfig, lease: LeaseRef, options: LeaderElectionOptions) {
    this.#kc = kc;
    this.#lease = lease;
    this.#options = options;
    this.#leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.#renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.#retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.#log = options.log ?? jsonLog;
    if (!options.identity) throw new Error("leader election needs an identity");
    if (this.#leaseDurationMs <= this.#renewDeadlineMs) {
      throw new Error("leaseDurationMs must be greater than renewDeadlineMs");
    }
    if (this.#renewDeadlineMs <= this.#retryPeriodMs * 1.2) {
      throw new Error("renewDeadlineMs must be greater than 1.2 x retryPeriodMs");
    }
  }

  /** Whether this candidate leads now. */
  get isLeader(): boolean {
    return this.#leadership !== undefined;
  }

  /** The holder the Lease names, as last seen ("" when none). */
  get leader(): string {
    return this.#observedHolder;
  }

  /** Starts competing for the Lease (once); returns the elector. */
  start(): this {
    if (this.#loop) throw new Error("leader election was already started");
    if (this.#stop.signal.aborted) throw new Error("leader election was stopped");
    // Watching the Lease lets a standby see a release at once and count the
    // lease duration from the moment of the last renewal, not of its last poll.
    const watcher = new Informer<Lease>(this.#kc, {
      apiVersion: "coordination.k8s.io/v1",
      plural: "leases",
    }, {
      namespace: this.#lease.namespace,
      fieldSelector: `metadata.name=${this.#lease.name}`,
      log: this.#log,
      backoff: { initialMs: this.#retryPeriodMs, maxMs: this.#leaseDurationMs },
    });
    const seen = (lease: Lease) => {
      this.#observe(lease.spec);
      if (!this.isLeader) this.#poke?.();
    };
    watcher.on("add", seen);
    watcher.on("update", seen);
    watcher.on("delete", () => this.#poke?.());
    this.#watcher = watcher.start();
    this.#loop = this.#run();
    return this;
  }

  /**
   * Stops competing: ends leadership (calls and awaits onStoppedLeading),
   * releases the Lease unless `release: false`, and leaves no request or
   * timer running. `release: false` is what a crash looks like to the others.
   */
  async stop(options: StopOptions = {}): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    await this.#watcher?.stop();
    await this.#stepDown("stopped");
    // Also when stop() came between winning the Lease and leading.
    const holding = this.#observedHolder === this.#options.identity;
    if (holding && (options.release ?? true)) await this.#release();
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      // The deadline counts from the start of the request that won: the
      // write may have landed at any moment after it.
      let lastRenewStart = performance.now();
      if (!(await this.#tryAcquireOrRenew(this.#renewDeadlineMs))) {
        await this.#nap(this.#candidateWait());
        continue;
      }
      if (signal.aborted) return;
      this.#startLeading();
      while (!signal.aborted) {
        // Wake at the deadline at the latest, so a leader whose renewals fail
        // fast steps down on time, not up to a retry period late.
        const untilDeadline = lastRenewStart + this.#renewDeadlineMs - performance.now();
        await sleep(Math.max(0, Math.min(this.#retryPeriodMs, untilDeadline)), signal);
        if (signal.aborted) return;
        const attemptStart = performance.now();
        const left = lastRenewStart + this.#renewDeadlineMs - attemptStart;
        const renewed = left > 0 && await this.#tryAcquireOrRenew(left);
        if (signal.aborted) return;
        if (renewed) {
          lastRenewStart = attemptStart;
          continue;
        }
        if (this.#observedHolder !== this.#options.identity) {
          await this.#stepDown(`the Lease names ${this.#observedHolder || "nobody"}`);
          break;
        }
        if (performance.now() - lastRenewStart >= this.#renewDeadlineMs) {
          await this.#stepDown(
            `no renewal within the renew deadline (${this.#renewDeadlineMs} ms)`,
          );
          break;
        }
      }
    }
  }

  /** How long a candidate waits before its next attempt. */
  #candidateWait(): number {
    // Jittered, as client-go's JitterUntil(retryPeriod, 1.2), and never past
    // the moment the current holder's lease runs out.
    const retry = this.#retryPeriodMs * (1 + Math.random() * 0.2);
    if (!this.#observedHolder) return retry;
    const expiresIn = this.#observedAt + this.#observedDurationMs - performance.now();
    return Math.max(0, Math.min(retry, expiresIn + 1));
  }

  /** Waits `ms`, or until stop() or a Lease change pokes. */
  async #nap(ms: number): Promise<void> {
    const [wake, unlink] = childController(this.#stop.signal);
    this.#poke = () => wake.abort();
    try {
      await sleep(ms, wake.signal);
    } finally {
      this.#poke = undefined;
      unlink();
    }
  }

  /** Records what the Lease says, and since when; reports a new holder. */
  #observe(spec: LeaseSpec | undefined): void {
    const key = recordKey(spec);
    if (key === this.#observedKey) return;
    this.#observedKey = key;
    this.#observedAt = performance.now();
    this.#observedDurationMs = (spec?.leaseDurationSeconds ?? 0) * 1000;
    const holder = spec?.holderIdentity ?? "";
    if (holder !== this.#observedHolder) {
      this.#observedHolder = holder;
      if (holder) {
        this.#log({ level: "info", msg: "new leader", lease: this.#leaseName(), leader: holder });
        this.#callback("onNewLeader", () => this.#options.onNewLeader?.(holder));
      }
    }
  }

  /**
   * Reads the Lease and, if it is free, expired or ours, writes it with this
   * candidate as holder. True when the write succeeded.
   */
  async #tryAcquireOrRenew(timeoutMs: number): Promise<boolean> {
    const me = this.#options.identity;
    const signal = this.#stop.signal;
    const now = microTime();
    const spec = (holderSpec: LeaseSpec | undefined): LeaseSpec => {
      const mine = holderSpec?.holderIdentity === me;
      return {
        holderIdentity: me,
        leaseDurationSeconds: Math.ceil(this.#leaseDurationMs / 1000),
        acquireTime: mine ? holderSpec?.acquireTime ?? now : now,
        renewTime: now,
        leaseTransitions: holderSpec === undefined
          ? 0
          : (holderSpec.leaseTransitions ?? 0) + (mine ? 0 : 1),
      };
    };
    try {
      let current: Lease;
      try {
        current = await requestJson<Lease>(this.#kc, leasePath(this.#lease, this.#lease.name), {
          signal,
          timeoutMs,
        });
      } catch (err) {
        if (apiStatus(err) !== 404) throw err;
        const created = await requestJson<Lease>(this.#kc, leasePath(this.#lease), {
          method: "POST",
          body: {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: {
              name: this.#lease.name,
              namespace: this.#lease.namespace,
              labels: this.#options.labels ?? { "app.kubernetes.io/part-of": "blixt" },
            },
            spec: spec(undefined),
          },
          signal,
          timeoutMs,
        });
        this.#observe(created.spec);
        return true;
      }
      this.#observe(current.spec);
      const holder = current.spec?.holderIdentity ?? "";
      if (
        holder !== "" && holder !== me &&
        performance.now() < this.#observedAt + this.#observedDurationMs
      ) {
        return false;
      }
      const updated = await requestJson<Lease>(this.#kc, leasePath(this.#lease, this.#lease.name), {
        method: "PUT",
        body: { ...current, spec: { ...current.spec, ...spec(current.spec) } },
        signal,
        timeoutMs,
      });
      this.#observe(updated.spec);
      return true;
    } catch (err) {
      if (signal.aborted) return false;
      const code = apiStatus(err);
      // 409: another candidate wrote first; that is the election working.
      this.#log({
        level: code === 409 ? "debug" : "warn",
        msg: this.isLeader ? "renewing the Lease failed" : "acquiring the Lease failed",
        lease: this.#leaseName(),
        error: errorMessage(err),
      });
      return false;
    }
  }

  #startLeading(): void {
    const leadership = new AbortController();
    this.#leadership = leadership;
    this.#log({
      level: "info",
      msg: "started leading",
      lease: this.#leaseName(),
      identity: this.#options.identity,
    });
    this.#callback("onStartedLeading", () => this.#options.onStartedLeading?.(leadership.signal));
  }

  async #stepDown(reason: string): Promise<void> {
    const leadership = this.#leadership;
    if (!leadership) return;
    this.#leadership = undefined;
    leadership.abort();
    this.#log({ level: "info", msg: "stopped leading", lease: this.#leaseName(), reason });
    await this.#callback("onStoppedLeading", () => this.#options.onStoppedLeading?.());
  }

  /** Hands the Lease over: no holder, a 1 s duration, so a standby takes it at once. */
  async #release(): Promise<void> {
    try {
      const current = await requestJson<Lease>(this.#kc, leasePath(this.#lease, this.#lease.name), {
        timeoutMs: this.#renewDeadlineMs,
      });
      if (current.spec?.holderIdentity !== this.#options.identity) return;
      const now = microTime();
      await requestJson<Lease>(this.#kc, leasePath(this.#lease, this.#lease.name), {
        method: "PUT",
        body: {
          ...current,
          spec: {
            ...current.spec,
            holderIdentity: "",
            leaseDurationSeconds: 1,
            acquireTime: now,
            renewTime: now,
          },
        },
        timeoutMs: this.#renewDeadlineMs,
      });
      this.#log({ level: "info", msg: "released the Lease", lease: this.#leaseName() });
    } catch (err) {
      // Not fatal: the standbys take over when the lease runs out.
      this.#log({
        level: "warn",
        msg: "releasing the Lease failed",
        lease: this.#leaseName(),
        error: errorMessage(err),
      });
    }
  }

  async #callback(name: string, fn: () => void | Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.#log({
        level: "error",
        msg: `${name} threw`,
        lease: this.#leaseName(),
        error: errorMessage(err),
      });
    }
  }

  #leaseName(): string {
    return `${this.#lease.namespace}/${this.#lease.name}`;
  }
}
