/**
 * The agent's loop: on every change of the tables, compute the desired
 * state, apply the difference to the maps, and report it in DataplaneNode
 * status (under churn at most one write per status interval, 1 s by default);
 * every 10 s, report the counters when they changed.
 *
 * @module
 */
import {
  DATAPLANE_CONDITIONS,
  DATAPLANE_REASONS,
  type DataplaneNodeStatus,
  type MapUsage,
  type ServiceCounters,
} from "../api/mod.ts";
import type { CounterTotals, DataplaneMaps } from "./bpf/maps.ts";
import type { SweepResult } from "./bpf/conntrack_sweep.ts";
import type { LastProgrammed, TableCache, TableOutcome } from "./desired_state.ts";
import { DesiredStateTracker } from "./desired_state_tracker.ts";
import process from "node:process";
import { setImmediate } from "node:timers";
import { apiStatus } from "../kube/rest.ts";
import { errorText, type Logger } from "./log.ts";
import type { Registry } from "./metrics.ts";
import type { StatusWriter } from "./node_status_writer.ts";
import { Programmer } from "./programmer.ts";
import { buildStatus, countersOf, countersStatus } from "./status.ts";
import type { TableSource } from "./table_source.ts";

/** The maps as the agent uses them. */
export type AgentMaps = Pick<
  DataplaneMaps,
  | "listServices"
  | "listBackends"
  | "writeBackends"
  | "clearBackends"
  | "writeMaglevs"
  | "deleteMaglevs"
  | "waitForReaders"
  | "putService"
  | "putServices"
  | "deleteServiceEntry"
  | "putVipMarker"
  | "deleteVipMarker"
  | "resetServiceCounters"
  | "resetBackendCounters"
  | "capacity"
  | "allCounters"
  | "countersInSteps"
  | "events"
>;

/** Options of {@linkcode Agent}. */
export interface AgentOptions {
  /** This node's name. */
  node: string;
  /** Uplink the program is attached to (reported in DataplaneNode spec). */
  uplink: string;
  /** The data plane's maps. */
  maps: AgentMaps;
  /** Where tables come from. */
  source: TableSource;
  /** Where status goes. */
  status: StatusWriter;
  /** Log lines. */
  log: Logger;
  /** Metrics registry. */
  metrics: Registry;
  /** How often counters are read and, when changed, written; default 10 s. */
  countersIntervalMs?: number;
  /**
   * Deletes expired conntrack entries a chunk a step (`DataplaneMaps.sweepConntrackInSteps`;
   * the loop runs between steps); when set, it runs every `sweepIntervalMs` and the conntrack
   * map's usage counts live entries.
   */
  sweepConntrack?: () => Iterator<void, SweepResult>;
  /** How often conntrack is swept; default 30 s. */
  sweepIntervalMs?: number;
  /**
   * Least time between the starts of two status writes, default
   * {@linkcode DEFAULT_STATUS_INTERVAL_MS} (0: none). The first write after a quiet
   * interval goes out at once; the changes within one are written together at its end.
   */
  statusIntervalMs?: number;
}

/**
 * Default least time between two DataplaneNode status writes: under churn a node writes at
 * most one status a second (each costs the API server ~30 ms of CPU at 157 tables).
 */
export const DEFAULT_STATUS_INTERVAL_MS = 1_000;

/** Ids of counters read per step (the backends' array: 64 steps of ~200 KB with 2 CPUs). */
const COUNTERS_CHUNK = 2048;

const SYNC_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The node daemon, given its maps, table source and status writer. */
export class Agent {
  readonly #o: AgentOptions;
  readonly #programmer: Programmer;
  readonly #lastProgrammed = new Map<string, LastProgrammed>();
  readonly #programmedGeneration = new Map<string, number>();
  readonly #tableCache: TableCache = new Map();
  /** The desired state, kept from one sync to the next: a change costs O(its tables). */
  readonly #desired = new DesiredStateTracker();
  #tables: TableOutcome[] = [];
  #applyError: string | undefined;
  #synced = false;
  #stopped = false;
  #running = false;
  #dirty = false;
  #retryMs = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #countersTimer: ReturnType<typeof setInterval> | undefined;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #sweeping = false;
  #lastSweep: SweepResult | undefined;
  #lastStatus: DataplaneNodeStatus | undefined;
  #lastWritten = "";
  #counters: { collectedAt: string; services: ServiceCounters[] } | undefined;
  #statusInFlight: Promise<void> | undefined;
  #statusAgain = false;
  #statusRetryMs = 0;
  #statusTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set while a status waits for the end of the interval since the last write. */
  #statusDelay: ReturnType<typeof setTimeout> | undefined;
  /** When the last status write started (performance.now()). */
  #statusStartedAt = -Infinity;
  #lastTick = Date.now();
  #objectReady = false;
  #nodeFound = true;
  #interfaceProblems: readonly string[] = [];
  #lastSyncTime: string | undefined;
  #countersDigest = -1;
  #lastLogged = new Map<string, string>();
  /** When the first table change not yet synced arrived. */
  #changedAt: number | undefined;
  #countersReading = false;
  /** Counts syncs that changed services: a counters read across one must not skip the next. */
  #programmedSeq = 0;
  /** The longest step of the current counters read, ms. */
  /** When the current sync's writes ended, by kind (see timedMaps). */
  readonly #writes: WriteTimes = { entries: 0, waitStart: 0, waitMs: 0 };

  /** An agent over `options.maps`; {@linkcode Agent.start} runs it. */
  constructor(options: AgentOptions) {
    this.#o = options;
    this.#programmer = new Programmer(timedMaps(options.maps, this.#writes));
    this.#registerMetrics();
  }

  /** True once the first sync of the tables is in the maps. */
  get ready(): boolean {
    return this.#synced && this.#applyError === undefined;
  }

  /** True while the loop is alive (it ticks at least every counters interval). */
  get healthy(): boolean {
    return !this.#stopped && Date.now() - this.#lastTick < 3 * this.#interval + 5_000;
  }

  get #interval(): number {
    return this.#o.countersIntervalMs ?? 10_000;
  }

  /**
   * Adopts what the pinned maps hold, starts the table source and, once it
   * has listed, reconciles; then follows every change.
   */
  async start(): Promise<void> {
    const adopted = this.#programmer.adopt();
    this.#o.log("info", "adopted pinned maps", adopted);
    this.#o.source.onChange(() => this.#schedule());
    this.#o.source.start();
    await this.#o.source.synced;
    this.#synced = true;
    this.#schedule();
    this.#countersTimer = setInterval(() => this.#collectCounters(), this.#interval);
    if (this.#o.sweepConntrack) {
      this.#sweepTimer = setInterval(() => this.#sweep(), this.#o.sweepIntervalMs ?? 30_000);
    }
    this.#ensureObject();
  }

  /**
   * Stops timers and the source; the maps and links stay as they are. With
   * `report`, the DataplaneNode then says `Ready=False/AgentStopped` (a
   * graceful shutdown), written once with a 5 s limit.
   */
  async stop(options: { report?: boolean } = {}): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#statusTimer);
    clearTimeout(this.#statusDelay);
    clearInterval(this.#countersTimer);
    clearInterval(this.#sweepTimer);
    await this.#o.source.stop();
    await this.#statusInFlight;
    if (options.report && this.#objectReady && this.#lastStatus) {
      await this.#reportStopped(this.#lastStatus);
    }
  }

  async #reportStopped(last: DataplaneNodeStatus): Promise<void> {
    const now = new Date().toISOString();
    const status: DataplaneNodeStatus = {
      ...last,
      conditions: (last.conditions ?? []).map((c) =>
        c.type === DATAPLANE_CONDITIONS.ready
          ? {
            ...c,
            status: "False",
            reason: DATAPLANE_REASONS.agentStopped,
            message: "the agent stopped; the pinned maps keep forwarding what they hold",
            lastTransitionTime: c.status === "False" ? c.lastTransitionTime : now,
          }
          : c
      ),
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#o.status.write(status),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("timed out after 5 s")), 5_000);
        }),
      ]);
    } catch (e) {
      this.#o.log("warn", "reporting the stop in DataplaneNode failed", { error: errorText(e) });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The node's Node changed: gone (`found: false`: the status says so), or
   * there (again, or with a new uid: the DataplaneNode is applied again, so
   * its owner reference names the Node that exists).
   */
  nodeChanged(state: { found: boolean }): void {
    this.#nodeFound = state.found;
    if (state.found && !this.#stopped && this.#synced) this.#ensureObject();
    else this.#statusChanged();
  }

  /** Interfaces that should carry the program and do not (interface_watch.ts), for `Degraded`. */
  interfacesChanged(problems: readonly string[]): void {
    this.#interfaceProblems = problems;
    this.#statusChanged();
  }

  /** Reconciles now (tests and benchmarks); normally changes trigger it. */
  reconcile(): void {
    const started = performance.now();
    const cpuStarted = process.cpuUsage();
    const changedAt = this.#changedAt ?? started;
    this.#changedAt = undefined;
    const parseMs = this.#o.source.takeParseMs?.();
    const writes = this.#writes;
    writes.entries = writes.waitStart = writes.waitMs = 0;
    const programmed = this.#programmer.services;
    const desired = this.#desired.compute(this.#o.source.list(), {
      node: this.#o.node,
      lastProgrammed: this.#lastProgrammed,
      programmedFrontends: { [Symbol.iterator]: () => programmed.keys() },
      capacity: this.#o.maps.capacity(),
      cache: this.#tableCache,
    });
    this.#tables = desired.tables;
    const computed = performance.now();
    try {
      const stats = this.#programmer.apply(desired);
      this.#applyError = undefined;
      this.#retryMs = 0;
      const names = new Set<string>();
      for (const t of desired.tables) {
        const name = `${t.namespace}/${t.name}`;
        names.add(name);
        if (t.result === "programmed" || t.result === "conflict") {
          const services = desired.byTable.get(name) ?? [];
          const last = this.#lastProgrammed.get(name);
          if (last?.generation !== t.generation || last.services !== services) {
            this.#lastProgrammed.set(name, { generation: t.generation, services });
          }
        }
        if (t.result === "programmed") this.#programmedGeneration.set(name, t.generation);
      }
      for (const name of [...this.#tableCache.keys()]) {
        if (!names.has(name)) this.#tableCache.delete(name);
      }
      for (const name of [...this.#lastProgrammed.keys()]) {
        if (!names.has(name)) {
          this.#lastProgrammed.delete(name);
          this.#programmedGeneration.delete(name);
        }
      }
      const seconds = (performance.now() - started) / 1000;
      this.#o.metrics.observe(
        "blixt_agent_sync_duration_seconds",
        "Time from a table change to the maps written.",
        {
          value: seconds,
          buckets: SYNC_BUCKETS,
        },
      );
      this.#o.metrics.inc("blixt_agent_syncs_total", "Syncs of the maps with the tables.", {
        labels: { result: "ok" },
      });
      if (stats.operations > 0) {
        this.#countersDigest = -1; // services changed: recount
        this.#programmedSeq++;
      }
      if (stats.operations > 0 || this.#lastSyncTime === undefined) {
        this.#lastSyncTime = new Date().toISOString();
      }
      if (stats.operations > 0) {
        this.#o.log("info", "maps synced", {
          ...stats,
          ms: Math.round(seconds * 1000),
          // CPU time of the process (user + system) over the same span: the wall clock less waits
          cpuMs: cpuMsSince(cpuStarted),
          // from the first table change this sync covers (as the cache saw it) to the maps written
          sinceChangeMs: Math.round(performance.now() - changedAt),
          // that change on the wall clock, to line it up with other processes (benchmarks)
          changedAtEpochMs: round1(performance.timeOrigin + changedAt),
          // the steps, from the same change: the sync started (setImmediate after the change),
          // the desired state computed, the last services entry written (the new state is what
          // packets see from here), and the wait for readers of replaced tables after it
          stepsMs: {
            start: round1(started - changedAt),
            computed: round1(computed - changedAt),
            entries: writes.entries > 0 ? round1(writes.entries - changedAt) : undefined,
            waitForReaders: round1(writes.waitMs),
          },
          // validating and parsing the changed tables as they arrived, before the change (and
          // sinceChangeMs) started: the table cache does it, not the sync
          ...(parseMs !== undefined ? { parseMs: round1(parseMs) } : {}),
        });
      }
    } catch (e) {
      this.#applyError = errorText(e);
      this.#o.metrics.inc("blixt_agent_syncs_total", "Syncs of the maps with the tables.", {
        labels: { result: "error" },
      });
      this.#retryMs = Math.min(30_000, Math.max(500, this.#retryMs * 2));
      this.#o.log("error", "map sync failed, retrying", {
        error: this.#applyError,
        retryMs: this.#retryMs,
      });
      clearTimeout(this.#retryTimer);
      this.#retryTimer = setTimeout(() => this.#schedule(), this.#retryMs);
    }
    this.#logTables();
    this.#statusChanged();
  }

  #schedule(): void {
    this.#changedAt ??= performance.now();
    if (this.#stopped || !this.#synced) return;
    if (this.#running) {
      this.#dirty = true;
      return;
    }
    this.#running = true;
    // Once the I/O at hand is handled: the events of one watch read become one sync. Not
    // setTimeout(0): Deno runs that ~2 ms later (measured), every change waited for it.
    setImmediate(() => {
      try {
        do {
          this.#dirty = false;
          if (!this.#stopped) this.reconcile();
        } while (this.#dirty && !this.#stopped);
      } finally {
        this.#running = false;
      }
    });
  }

  #logTables(): void {
    for (const t of this.#tables) {
      const name = `${t.namespace}/${t.name}`;
      const line = `${t.result}:${t.generation}:${t.errors.join("|")}`;
      if (this.#lastLogged.get(name) === line) continue;
      this.#lastLogged.set(name, line);
      if (t.result === "programmed") {
        this.#o.log("info", "table programmed", {
          table: name,
          generation: t.generation,
          entries: t.entries,
          backends: t.backends,
        });
      } else {
        this.#o.log("warn", `table not programmed: ${t.result}`, {
          table: name,
          generation: t.generation,
          errors: t.errors,
        });
      }
    }
  }

  #ensureObject(): void {
    this.#o.status.ensure(this.#o.uplink).then(() => {
      this.#objectReady = true;
      this.#lastWritten = ""; // a (re)created object has no status yet
      // a sync about to run writes the status itself: a write now would hold its back an interval
      if (!this.#running) this.#statusChanged();
    }).catch((e) => {
      this.#o.log("warn", "DataplaneNode create failed, retrying", { error: errorText(e) });
      if (!this.#stopped) this.#statusTimer = setTimeout(() => this.#ensureObject(), 2_000);
    });
  }

  #statusChanged(): void {
    const status = buildStatus({
      tables: this.#tables,
      programmed: this.#programmedGeneration,
      applyError: this.#applyError,
      synced: this.#synced,
      lastSyncTime: this.#lastSyncTime,
      maps: this.#mapUsage(),
      nodeFound: this.#nodeFound,
      interfaceProblems: this.#interfaceProblems,
    }, this.#lastStatus);
    if (this.#counters) status.counters = countersStatus(this.#counters);
    this.#lastStatus = status;
    this.#flushStatus();
  }

  #flushStatus(): void {
    if (this.#stopped || !this.#objectReady) return;
    if (this.#statusInFlight) {
      this.#statusAgain = true;
      return;
    }
    // the last status is written at the interval's end, with whatever changed until then
    if (this.#statusDelay !== undefined) return;
    const status = this.#lastStatus;
    if (!status) return;
    const text = JSON.stringify(status);
    if (text === this.#lastWritten) return;
    const wait = this.#statusStartedAt + (this.#o.statusIntervalMs ?? DEFAULT_STATUS_INTERVAL_MS) -
      performance.now();
    if (wait > 0) {
      this.#statusDelay = setTimeout(() => {
        this.#statusDelay = undefined;
        this.#flushStatus();
      }, wait);
      return;
    }
    const started = performance.now();
    this.#statusStartedAt = started;
    this.#statusInFlight = this.#o.status.write(status).then(() => {
      this.#lastWritten = text;
      this.#statusRetryMs = 0;
      // when and how long, to line status writes up with other API calls (bench/agent.ts)
      this.#o.log("debug", "status written", {
        startedAtEpochMs: round1(performance.timeOrigin + started),
        ms: round1(performance.now() - started),
        bytes: text.length,
      });
      this.#o.metrics.inc("blixt_agent_status_writes_total", "DataplaneNode status writes.", {
        labels: { result: "ok" },
      });
    }, (e) => {
      if (apiStatus(e) === 404 && this.#objectReady) {
        // the DataplaneNode was deleted under us: create it again, then write
        this.#objectReady = false;
        this.#o.log("warn", "DataplaneNode is gone, creating it again");
        this.#ensureObject();
        return;
      }
      this.#statusRetryMs = Math.min(30_000, Math.max(500, this.#statusRetryMs * 2));
      this.#o.metrics.inc("blixt_agent_status_writes_total", "DataplaneNode status writes.", {
        labels: { result: "error" },
      });
      this.#o.log("warn", "status write failed, retrying", {
        error: errorText(e),
        retryMs: this.#statusRetryMs,
      });
      clearTimeout(this.#statusTimer);
      this.#statusTimer = setTimeout(() => this.#flushStatus(), this.#statusRetryMs);
    }).finally(() => {
      this.#statusInFlight = undefined;
      if (this.#statusAgain) {
        this.#statusAgain = false;
        this.#flushStatus();
      }
    });
  }

  #collectCounters(): void {
    this.#lastTick = Date.now();
    if (this.#stopped || this.#countersReading) return;
    this.#countersReading = true;
    this.#readCounters().catch((e) => {
      this.#o.log("warn", "reading counters failed", { error: errorText(e) });
    }).finally(() => this.#countersReading = false);
  }

  /**
   * Reads the counters a chunk of ids at a time, letting the loop run between chunks: read at
   * once, the backends' array held it for 60-300 ms (measured), and a table change arriving
   * meanwhile waited for it. Undefined when the agent stopped meanwhile.
   */
  #countersOf(
    kind: "service" | "backend",
    held: { ms: number } = { ms: 0 },
  ): Promise<Map<number, CounterTotals> | undefined> {
    return this.#inSteps(this.#o.maps.countersInSteps(kind, COUNTERS_CHUNK), held);
  }

  /**
   * Runs `steps` with the loop free between them (a table change arriving meanwhile waits for
   * one step, not the whole read or sweep); `held.ms` becomes the longest step. Undefined when
   * the agent stopped meanwhile.
   */
  async #inSteps<T>(
    steps: Iterator<void, T>,
    held: { ms: number } = { ms: 0 },
  ): Promise<T | undefined> {
    for (;;) {
      const started = performance.now();
      const step = steps.next();
      held.ms = Math.max(held.ms, performance.now() - started);
      if (step.done) return step.value;
      await new Promise((resolve) => setImmediate(resolve));
      if (this.#stopped) {
        steps.return?.();
        return undefined;
      }
    }
  }

  async #readCounters(): Promise<void> {
    const started = performance.now();
    const seq = this.#programmedSeq;
    const held = { ms: 0 };
    // Every backend packet is also a service packet: when the (small) service
    // array did not move, the (large) backend array is not read at all.
    const serviceTotals = await this.#countersOf("service", held);
    if (!serviceTotals) return;
    let digest = 0;
    for (const t of serviceTotals.values()) digest += t.packets + t.replyPackets + t.rejected;
    if (digest === this.#countersDigest) return;
    const backendTotals = await this.#countersOf("backend", held);
    if (!backendTotals) return;
    this.#countersDigest = this.#programmedSeq === seq ? digest : -1;
    const services = countersOf(this.#programmer.services.values(), {
      services: serviceTotals,
      backends: backendTotals,
    });
    const ms = performance.now() - started;
    if (ms >= 20) {
      // the longest step is how long a table change could wait for the read
      this.#o.log("info", "counters read", {
        ms: Math.round(ms),
        longestStepMs: Math.round(held.ms),
      });
    }
    if (JSON.stringify(services) === JSON.stringify(this.#counters?.services ?? [])) return;
    // an exhausted SNAT port range also rejects, so it always moves the services' counters
    const snatExhausted = Number(this.#o.maps.events().snat_exhausted ?? 0);
    this.#counters = {
      collectedAt: new Date().toISOString(),
      services,
      ...(snatExhausted > 0 ? { snatExhausted } : {}),
    };
    this.#statusChanged();
  }

  /** Deletes expired conntrack entries; the live count feeds map usage and metrics. */
  #sweep(): void {
    if (this.#stopped || !this.#o.sweepConntrack || this.#sweeping) return;
    this.#sweeping = true;
    this.#inSteps(this.#o.sweepConntrack()).then((r) => {
      if (!r) return;
      this.#lastSweep = r;
      const m = this.#o.metrics;
      m.inc("blixt_agent_conntrack_swept_total", "Expired conntrack entries deleted.", {
        by: r.deleted,
      });
      m.set("blixt_agent_conntrack_sweep_seconds", "Duration of the last conntrack sweep.", {
        value: r.ms / 1000,
      });
    }).catch((e) => {
      this.#o.log("warn", "conntrack sweep failed", { error: errorText(e) });
    }).finally(() => this.#sweeping = false);
  }

  /** Entries in use and capacity of the maps the agent fills. */
  #mapUsage(): MapUsage[] {
    const cap = this.#o.maps.capacity();
    let backends = 0;
    const addrs = new Set<string>();
    for (const s of this.#programmer.services.values()) {
      backends += s.backends.size;
      addrs.add(s.address.addr);
    }
    const services = this.#programmer.services.size;
    return [
      { name: "backends", entries: backends, capacity: cap.backendIds },
      { name: "maglev", entries: services, capacity: cap.serviceIds },
      { name: "services", entries: services + addrs.size, capacity: cap.serviceKeys },
      // live entries: what the last sweep kept (the map also holds expired ones until then)
      ...(this.#lastSweep
        ? [{ name: "conntrack", entries: this.#lastSweep.live, capacity: cap.conntrack }]
        : []),
    ];
  }

  #registerMetrics(): void {
    const m = this.#o.metrics;
    m.collect(() => {
      for (const u of this.#mapUsage()) {
        const labels = { map: u.name };
        m.set("blixt_agent_map_entries", "Entries in use per map.", { labels, value: u.entries });
        m.set("blixt_agent_map_capacity", "Capacity per map.", { labels, value: u.capacity });
      }
      m.clear("blixt_agent_tables");
      const byResult = new Map<string, number>();
      for (const t of this.#tables) byResult.set(t.result, (byResult.get(t.result) ?? 0) + 1);
      for (const r of ["programmed", "invalid", "conflict", "capacity"]) {
        m.set("blixt_agent_tables", "RoutingTables by outcome.", {
          labels: { result: r },
          value: byResult.get(r) ?? 0,
        });
      }
      m.clear("blixt_agent_table_programmed_generation");
      for (const [name, gen] of this.#programmedGeneration) {
        const [namespace, table] = name.split("/") as [string, string];
        m.set(
          "blixt_agent_table_programmed_generation",
          "Generation programmed per RoutingTable.",
          {
            labels: { namespace, name: table },
            value: gen,
          },
        );
      }
      m.set("blixt_agent_ready", "1 when the maps hold the current tables.", {
        value: this.ready ? 1 : 0,
      });
      // Memory, as the operator reports it: a growing RSS with a flat heap is native memory.
      const mem = Deno.memoryUsage();
      m.set("process_resident_memory_bytes", "Resident memory size in bytes.", { value: mem.rss });
      m.set(
        "blixt_agent_heap_used_bytes",
        "V8 heap in use (live objects and garbage not yet collected).",
        { value: mem.heapUsed },
      );
      m.set("blixt_agent_heap_total_bytes", "V8 heap reserved.", { value: mem.heapTotal });
      m.set(
        "blixt_agent_external_memory_bytes",
        "Memory outside the V8 heap held by JavaScript objects (buffers, TLS).",
        { value: mem.external },
      );
    });
    // Read in steps like the status counters: at once, a scrape held the loop 60-300 ms.
    m.collect(() => this.#trafficMetrics());
  }

  async #trafficMetrics(): Promise<void> {
    const m = this.#o.metrics;
    const services = await this.#countersOf("service");
    const backends = services && await this.#countersOf("backend");
    if (!services || !backends) return;
    const totals = { services, backends };
    const families = [
      ["packets", "Packets from clients."],
      ["bytes", "Bytes from clients."],
      ["new_flows", "Flows created."],
    ] as const;
    for (const [f] of families) {
      m.clear(`blixt_service_${f}_total`);
      m.clear(`blixt_backend_${f}_total`);
    }
    m.clear("blixt_service_rejected_total");
    for (const s of this.#programmer.services.values()) {
      const t = totals.services.get(s.entry.id);
      if (!t) continue; // only services with traffic: 10k idle services make no series
      const labels = { frontend: s.frontend };
      const values = { packets: t.packets, bytes: t.bytes, new_flows: t.newFlows };
      for (const [f, help] of families) {
        m.set(`blixt_service_${f}_total`, help, { labels, value: values[f], type: "counter" });
      }
      m.set("blixt_service_rejected_total", "Packets answered with RST or ICMP unreachable.", {
        labels,
        value: t.rejected,
        type: "counter",
      });
      for (const b of s.backends.values()) {
        const c = totals.backends.get(b.id);
        if (!c) continue;
        const bl = { frontend: s.frontend, backend: `${b.addr}:${b.port}` };
        const bv = { packets: c.packets, bytes: c.bytes, new_flows: c.newFlows };
        for (const [f, help] of families) {
          m.set(`blixt_backend_${f}_total`, help, { labels: bl, value: bv[f], type: "counter" });
        }
      }
    }
    const events = this.#o.maps.events();
    for (const [name, value] of Object.entries(events)) {
      m.set("blixt_dataplane_events_total", "Data plane events (drops, rejects, translations).", {
        labels: { event: name },
        value: Number(value),
        type: "counter",
      });
    }
  }
}

/** When a sync's map writes ended, on performance.now()'s clock (0: none). */
interface WriteTimes {
  /** The last services entry write returned (packets see the new state from here). */
  entries: number;
  /** waitForReaders was called. */
  waitStart: number;
  /** waitForReaders took this long. */
  waitMs: number;
}

/** `maps` recording into `times` when the writes that make a change visible end. */
function timedMaps(maps: AgentMaps, times: WriteTimes): AgentMaps {
  const timed: Partial<AgentMaps> = {
    putService(addr, entry) {
      maps.putService(addr, entry);
      times.entries = performance.now();
    },
    waitForReaders() {
      times.waitStart = performance.now();
      maps.waitForReaders();
      times.waitMs += performance.now() - times.waitStart;
    },
  };
  // optional in the programmer's view (a fake may leave it out)
  if (typeof maps.putServices === "function") {
    timed.putServices = (entries) => {
      maps.putServices(entries);
      times.entries = performance.now();
    };
  }
  return new Proxy(maps, {
    get(target, name) {
      if (Object.hasOwn(timed, name)) return timed[name as keyof AgentMaps];
      const value = Reflect.get(target, name, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

function round1(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** CPU time (user + system) of the process since `from`, in milliseconds. */
function cpuMsSince(from: { user: number; system: number }): number {
  const now = process.cpuUsage(from);
  return Math.round((now.user + now.system) / 1000);
}
