/**
 * The operator's loop: informers fill one snapshot, events map to Gateway
 * keys on a work queue, workers reconcile a key from the snapshot and the
 * writer writes the result. Informers run on every replica (a standby has a
 * warm cache); workers run only on the leader.
 *
 * ```
 * informers (one per kind) ──put/remove──> Snapshot
 *      │ gatewaysForEvent / class events
 *      v
 * WorkQueue ──get──> worker (leader only) ──reconcile──> writeResult ──> API server
 *      ^                    │ conflict / error
 *      └──── retry(key) ────┘ (per-key exponential backoff)
 * ```
 *
 * @module
 */

import { type k8s, type KubeObject, shareConnections } from "../kube/client.ts";
import { dropManagedFields, Informer } from "../kube/informer.ts";
import { LeaderElector } from "../kube/leader_election.ts";
import { errorMessage, jsonLog, type Log } from "../kube/log.ts";
import { AgentLeaseWatch, operatorClockMs } from "./agent_leases.ts";
import { gatewaysForEvent, managedGateways } from "./event_map.ts";
import { reconcile, reportsComplete } from "./gateway.ts";
import { classFinalizer, reconcileGatewayClass } from "./gateway_class.ts";
import { watchedResources } from "./resources.ts";
import {
  emptySnapshot,
  type Gateway,
  GATEWAY_GROUP,
  putObject,
  removeObject,
  type Snapshot,
  type SnapshotObject,
} from "./snapshot.ts";
import { WorkQueue } from "./work_queue.ts";
import {
  ConflictError,
  setGatewayClassFinalizer,
  writeGatewayClassStatus,
  writeResult,
  writeRouteStatuses,
} from "./writer.ts";

/** Prefix of queue keys that name a GatewayClass rather than a Gateway. */
const CLASS_KEY = "class:";
/** Prefix of queue keys that write the route statuses of a Gateway. */
const ROUTES_KEY = "routes:";

/**
 * Gateways woken by DataplaneNode reports are reconciled at most once per this
 * many ms (the first report at once): N nodes reporting one table generation
 * make a few reconciles, not N (docs/performance.md, "Many nodes").
 */
export const DATAPLANE_NODE_COALESCE_MS = 100;

/** Options of {@linkcode Operator}. */
export interface OperatorOptions {
  /** This replica's name in the Lease (e.g. the pod name). */
  identity: string;
  /** Namespace of the leader-election Lease (default `blixt-system`). */
  leaseNamespace?: string;
  /** Lease timings in ms (defaults 15 s / 10 s / 2 s). */
  lease?: { durationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number };
  /** Concurrent workers (default 4). */
  workers?: number;
  /** Log sink (default JSON lines on stderr). */
  log?: Log;
}

/** Counters the operator exposes as metrics. */
export interface OperatorStats {
  reconciles: number;
  errors: number;
  conflicts: number;
  /** Reconcile+write durations in ms, most recent last (bounded). */
  latenciesMs: number[];
}

/** The operator: start it, await {@linkcode Operator.synced}, stop it on shutdown. */
export class Operator {
  readonly snapshot: Snapshot = emptySnapshot();
  /** Route status writes wait behind every Gateway's reconcile (a table must not wait for them). */
  readonly queue = new WorkQueue({ background: (key) => key.startsWith(ROUTES_KEY) });
  readonly stats: OperatorStats = { reconciles: 0, errors: 0, conflicts: 0, latenciesMs: [] };
  readonly #kc: k8s.KubeConfig;
  readonly #options: OperatorOptions;
  readonly #log: Log;
  #informers: Informer[] = [];
  #agentLeases: AgentLeaseWatch | undefined;
  #elector: LeaderElector | undefined;
  #workers: Promise<void>[] = [];
  #synced = false;
  #leading: AbortSignal | undefined;
  #stopped = false;
  /** Gateways to reconcile again at a time, though nothing changes (`recheckAfterMs`). */
  readonly #rechecks = new Map<string, ReturnType<typeof setTimeout>>();
  /** The last table generation logged as programmed on every node, per Gateway. */
  readonly #programmedLogged = new Map<string, number>();
  /** The operator's requests share kept-alive connections (closed by stop()). */
  readonly #connections: { close(): void };

  constructor(kc: k8s.KubeConfig, options: OperatorOptions) {
    this.#kc = kc;
    this.#options = options;
    this.#log = options.log ?? jsonLog;
    this.#connections = shareConnections(kc);
  }

  /** Whether every informer has listed once. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Whether this replica leads (and so writes). */
  get leading(): boolean {
    return this.#leading !== undefined && !this.#leading.aborted;
  }

  /** Starts informers and leader election; resolves once the caches are synced. */
  async start(): Promise<void> {
    for (const resource of await watchedResources(this.#kc)) {
      const informer = new Informer(this.#kc, {
        apiVersion: resource.apiVersion,
        kind: resource.kind,
        plural: resource.plural,
      }, { log: this.#log, transform: resource.transform ?? dropManagedFields });
      // list items and watch events carry their type already: no copy of 10,000 routes
      const typed = (o: KubeObject) =>
        (o.apiVersion === resource.apiVersion && o.kind === resource.kind
          ? o
          : { ...o, apiVersion: resource.apiVersion, kind: resource.kind }) as SnapshotObject;
      informer.on("add", (o) => this.#observe(undefined, typed(o)));
      informer.on("update", (o, old) => this.#observe(typed(old), typed(o)));
      informer.on("delete", (o) => this.#observe(typed(o), undefined));
      this.#informers.push(informer.start());
    }
    const crds = new Informer(this.#kc, {
      apiVersion: "apiextensions.k8s.io/v1",
      plural: "customresourcedefinitions",
    }, { log: this.#log });
    crds.on("add", (o) => this.#observeCrd(o, true));
    crds.on("update", (o) => this.#observeCrd(o, true));
    crds.on("delete", (o) => this.#observeCrd(o, false));
    this.#informers.push(crds.start());
    // Which nodes run an agent now: a node whose agent stops holds Programmed back.
    this.#agentLeases = new AgentLeaseWatch(this.#kc, this.snapshot, {
      namespace: this.#options.leaseNamespace ?? "blixt-system",
      log: this.#log,
      wake: () => {
        if (!this.#synced) return;
        for (const key of managedGateways(this.snapshot)) this.queue.add(key);
      },
    }).start();
    await Promise.all([...this.#informers.map((i) => i.synced), this.#agentLeases.synced]);
    this.#synced = true;
    for (const key of managedGateways(this.snapshot)) this.queue.add(key);
    for (const name of this.snapshot.gatewayClasses.keys()) this.queue.add(CLASS_KEY + name);
    this.#log({ level: "info", msg: "caches synced", gateways: this.snapshot.gateways.size });

    const lease = this.#options.lease ?? {};
    this.#elector = new LeaderElector(this.#kc, {
      namespace: this.#options.leaseNamespace ?? "blixt-system",
      name: "blixt-operator",
    }, {
      identity: this.#options.identity,
      ...(lease.durationMs ? { leaseDurationMs: lease.durationMs } : {}),
      ...(lease.renewDeadlineMs ? { renewDeadlineMs: lease.renewDeadlineMs } : {}),
      ...(lease.retryPeriodMs ? { retryPeriodMs: lease.retryPeriodMs } : {}),
      log: this.#log,
      onStartedLeading: (signal) => this.#lead(signal),
    });
    this.#elector.start();
  }

  /**
   * Stops workers, leader election and informers; idempotent. `release:
   * false` leaves the Lease to expire, as a crashed leader would.
   */
  async stop(options: { release?: boolean } = {}): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.queue.shutdown();
    for (const timer of this.#rechecks.values()) clearTimeout(timer);
    this.#rechecks.clear();
    await this.#elector?.stop({ release: options.release ?? true });
    await Promise.all(this.#workers);
    await Promise.all(this.#informers.map((i) => i.stop()));
    await this.#agentLeases?.stop();
    this.#connections.close();
  }

  #observe(old: SnapshotObject | undefined, now: SnapshotObject | undefined): void {
    if (now) putObject(this.snapshot, now);
    else if (old) removeObject(this.snapshot, old);
    if (!this.#synced) return;
    const kind = (now ?? old)?.kind;
    for (
      const key of gatewaysForEvent(
        { ...(old ? { old } : {}), ...(now ? { new: now } : {}) },
        this.snapshot,
      )
    ) {
      // a node's report is coalesced with the others' of the same change, except the one that
      // completes it: the Gateway's last report then waits for no window
      if (kind !== "DataplaneNode") this.queue.add(key);
      else if (reportsComplete(this.snapshot, key)) {
        this.queue.addCoalescedNow(key, DATAPLANE_NODE_COALESCE_MS);
      } else this.queue.addCoalesced(key, DATAPLANE_NODE_COALESCE_MS);
    }
    if (kind === "GatewayClass" || kind === "GatewayClassConfig") {
      for (const name of this.snapshot.gatewayClasses.keys()) this.queue.add(CLASS_KEY + name);
    } else if (kind === "Gateway") {
      // a Gateway coming or going decides the class's gateway-exists finalizer
      const before = (old as Gateway | undefined)?.spec?.gatewayClassName;
      const after = (now as Gateway | undefined)?.spec?.gatewayClassName;
      if (before !== after || old === undefined || now === undefined) {
        for (const name of new Set([before, after])) {
          if (name !== undefined) this.queue.add(CLASS_KEY + name);
        }
      }
    }
  }

  #observeCrd(crd: KubeObject, present: boolean): void {
    const spec = crd.spec as { group?: string } | undefined;
    const name = crd.metadata?.name;
    if (spec?.group !== GATEWAY_GROUP || !name) return;
    const version = crd.metadata?.annotations?.["gateway.networking.k8s.io/bundle-version"];
    if (present && version) this.snapshot.crdBundleVersions.set(name, version);
    else this.snapshot.crdBundleVersions.delete(name);
    if (!this.#synced) return;
    for (const gc of this.snapshot.gatewayClasses.keys()) this.queue.add(CLASS_KEY + gc);
  }

  #lead(signal: AbortSignal): void {
    this.#leading = signal;
    this.#log({ level: "info", msg: "leading", identity: this.#options.identity });
    // Everything again: the previous leader may have died between a read and a write.
    for (const key of managedGateways(this.snapshot)) this.queue.add(key);
    for (const name of this.snapshot.gatewayClasses.keys()) this.queue.add(CLASS_KEY + name);
    const workers = this.#options.workers ?? 4;
    for (let i = 0; i < workers; i++) this.#workers.push(this.#work(signal));
  }

  async #work(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const key = await this.queue.get();
      if (key === undefined) return;
      if (signal.aborted) {
        // Not ours to write any more. The key goes back: a worker of a term that ended waits in
        // get() until a key comes, and when this replica leads again the new term's keys (its
        // "everything again" and every event after) would otherwise be taken and dropped here,
        // one per old worker, leaving a change unreconciled until its Gateway's next event.
        this.queue.add(key);
        this.queue.done(key);
        return;
      }
      const started = performance.now();
      try {
        await this.#reconcileKey(key);
        this.queue.forget(key);
      } catch (err) {
        if (err instanceof ConflictError) this.stats.conflicts++;
        else {
          this.stats.errors++;
          this.#log({ level: "warn", msg: "reconcile failed", key, error: errorMessage(err) });
        }
        this.queue.retry(key);
      } finally {
        this.queue.done(key);
        this.stats.reconciles++;
        this.stats.latenciesMs.push(performance.now() - started);
        if (this.stats.latenciesMs.length > 4096) this.stats.latenciesMs.splice(0, 2048);
      }
    }
  }

  /** Queues `key` again in `ms`, replacing an earlier timer of the same key. */
  #recheck(key: string, ms: number): void {
    clearTimeout(this.#rechecks.get(key));
    this.#rechecks.set(
      key,
      setTimeout(() => {
        this.#rechecks.delete(key);
        if (!this.#stopped) this.queue.add(key);
      }, ms + 50),
    );
  }

  /**
   * One line per table generation that reaches every node: with `Programmed`
   * held across endpoint changes (docs/decisions.md) no status shows it.
   */
  #logProgrammed(key: string, generation: number | undefined): void {
    if (generation === undefined) {
      if (!this.snapshot.gateways.has(key)) this.#programmedLogged.delete(key);
      return;
    }
    if (this.#programmedLogged.get(key) === generation) return;
    this.#programmedLogged.set(key, generation);
    this.#log({
      level: "info",
      msg: "table programmed",
      gateway: key,
      generation,
      dataplaneNodes: this.snapshot.dataplaneNodes.size,
    });
  }

  async #reconcileKey(key: string): Promise<void> {
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    if (key.startsWith(CLASS_KEY)) {
      const name = key.slice(CLASS_KEY.length);
      const finalizer = classFinalizer(name, this.snapshot);
      if (finalizer !== "none") {
        // the patch moves the resourceVersion; its watch event brings the class back for status
        await setGatewayClassFinalizer(this.#kc, name, {
          snapshot: this.snapshot,
          present: finalizer === "add",
        });
        return;
      }
      const status = reconcileGatewayClass(name, this.snapshot, { now });
      if (status) {
        await writeGatewayClassStatus(this.#kc, name, { snapshot: this.snapshot, status });
      }
      return;
    }
    if (key.startsWith(ROUTES_KEY)) {
      const gateway = key.slice(ROUTES_KEY.length);
      const result = reconcile(gateway, this.snapshot, { now, nowMs: operatorClockMs() });
      const written = await writeRouteStatuses(this.#kc, result, { snapshot: this.snapshot });
      if (written > 0) this.#log({ level: "info", msg: "route status", gateway, written });
      return;
    }
    const started = performance.now();
    const result = reconcile(key, this.snapshot, { now, nowMs: operatorClockMs() });
    const computed = performance.now();
    // other workers must see this decision before its status write lands
    if (result.status) {
      this.snapshot.addressDecisions.set(key, result.status.addresses.map((a) => a.value));
    } else this.snapshot.addressDecisions.delete(key);
    const report = await writeResult(this.#kc, result, {
      snapshot: this.snapshot,
      routeStatuses: false,
    });
    if (result.recheckAfterMs !== undefined) this.#recheck(key, result.recheckAfterMs);
    this.#logProgrammed(key, result.programmedGeneration);
    // Route statuses wait in the background queue: every Gateway's table and status first.
    if (result.routeStatuses.length > 0) this.queue.add(ROUTES_KEY + key);
    if (report.gatewayStatus || report.table !== "unchanged") {
      this.#log({
        level: "info",
        msg: "reconciled",
        gateway: key,
        ...report,
        // from the event that queued the key to a worker taking it
        queuedMs: Math.round(this.queue.waitedMs(key)),
        reconcileMs: Math.round(computed - started),
        writeMs: Math.round(performance.now() - computed),
      });
    }
  }
}
