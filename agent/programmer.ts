/**
 * The diff and the ordered apply: what the maps hold (adopted from the
 * pinned maps on start) against the desired state, written as the smallest
 * set of map operations in an order that never exposes a half-written
 * service:
 *
 * ```
 * 1. removed services   services entry -> Maglev table -> backend slots
 * 2. backend slots      every new slot (counters zeroed first), one batch
 * 3. services           new: Maglev table -> services entry -> VIP marker
 *                       changed: table and entry, ordered so that table_size
 *                       never exceeds the table in place
 * 4. removed backends   slots of backends no table points at any more
 * 5. VIP markers        of addresses no frontend uses any more
 * ```
 *
 * @module
 */
import type {
  BackendSlot,
  MaglevWrite,
  MapCapacity,
  ServiceAddress,
  ServiceEntry,
} from "./bpf/maps.ts";
import {
  type MaglevEntry,
  maglevFill,
  maglevSize,
  maglevTable,
  rejectEntry,
} from "./bpf/maglev.ts";
import type { DesiredService, DesiredState } from "./desired_state.ts";

/** The map operations the programmer uses: `DataplaneMaps` or a recorder in tests. */
export interface MapWriter {
  /** Every services entry and VIP marker. */
  listServices(): {
    frontends: { address: ServiceAddress; entry: ServiceEntry }[];
    vips: string[];
  };
  /** Every backend slot in use. */
  listBackends(): BackendSlot[];
  /** Writes backend slots. */
  writeBackends(slots: readonly BackendSlot[]): void;
  /** Empties backend slots. */
  clearBackends(ids: readonly number[]): void;
  /** Swaps in Maglev tables, each whole. */
  writeMaglevs(tables: readonly MaglevWrite[]): void;
  /** Removes Maglev tables. */
  deleteMaglevs(ids: readonly number[]): void;
  /** Returns once no program can still hold a slot read before the in-place table writes. */
  waitForReaders(): void;
  /** Writes a services entry. */
  putService(addr: ServiceAddress, entry: ServiceEntry): void;
  /** Writes services entries in one call, in order (optional: else one putService each). */
  putServices?(entries: readonly { addr: ServiceAddress; entry: ServiceEntry }[]): void;
  /** Removes a services entry. */
  deleteServiceEntry(addr: ServiceAddress): void;
  /** Writes a VIP marker. */
  putVipMarker(addr: string): void;
  /** Removes a VIP marker. */
  deleteVipMarker(addr: string): void;
  /** Zeroes service counters. */
  resetServiceCounters(ids: readonly number[]): void;
  /** Zeroes backend counters. */
  resetBackendCounters(ids: readonly number[]): void;
  /** Map capacity. */
  capacity(): MapCapacity;
}

/** A backend as programmed. */
export interface ProgrammedBackend {
  /** Backend id. */
  id: number;
  /** Address. */
  addr: string;
  /** Port. */
  port: number;
  /** Remote flag. */
  remote: boolean;
}

/**
 * A service's programmed backends, packed: their addresses in one array and
 * id, port and remote flag in one Uint32Array, rather than a Map of objects
 * keyed by `addr:port` (~120 bytes a backend; 100,000 at 10,000 services).
 * Read like a `ReadonlyMap` by `addr:port`; backend objects are made only
 * when read.
 */
export class PackedBackends implements ReadonlyMap<string, ProgrammedBackend> {
  readonly #addrs: string[];
  /** id, port, remote (0/1) of each backend, in the order of #addrs. */
  readonly #data: Uint32Array;

  constructor(addrs: string[], data: Uint32Array) {
    this.#addrs = addrs;
    this.#data = data;
  }

  /** Packs `backends` (unique by `addr:port`). */
  static of(backends: readonly ProgrammedBackend[]): PackedBackends {
    const data = new Uint32Array(backends.length * 3);
    backends.forEach((b, i) => {
      data[3 * i] = b.id;
      data[3 * i + 1] = b.port;
      data[3 * i + 2] = b.remote ? 1 : 0;
    });
    return new PackedBackends(backends.map((b) => b.addr), data);
  }

  get size(): number {
    return this.#addrs.length;
  }

  /** Index of the backend `addr`, `port`, or -1. */
  indexOf(addr: string, port: number): number {
    const addrs = this.#addrs;
    for (let i = 0; i < addrs.length; i++) {
      if (addrs[i] === addr && this.#data[3 * i + 1] === port) return i;
    }
    return -1;
  }

  /** Backend id at `i`. */
  idAt(i: number): number {
    return this.#data[3 * i]!;
  }

  /** Remote flag at `i`. */
  remoteAt(i: number): boolean {
    return this.#data[3 * i + 2] === 1;
  }

  /** The backend at `i`, as an object. */
  at(i: number): ProgrammedBackend {
    const d = this.#data;
    return {
      id: d[3 * i]!,
      addr: this.#addrs[i]!,
      port: d[3 * i + 1]!,
      remote: d[3 * i + 2] === 1,
    };
  }

  get(key: string): ProgrammedBackend | undefined {
    const colon = key.lastIndexOf(":");
    const i = this.indexOf(key.slice(0, colon), Number(key.slice(colon + 1)));
    return i < 0 ? undefined : this.at(i);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  *entries(): MapIterator<[string, ProgrammedBackend]> {
    for (let i = 0; i < this.size; i++) {
      const b = this.at(i);
      yield [`${b.addr}:${b.port}`, b];
    }
  }

  *keys(): MapIterator<string> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<ProgrammedBackend> {
    for (let i = 0; i < this.size; i++) yield this.at(i);
  }

  forEach(
    fn: (
      value: ProgrammedBackend,
      key: string,
      map: ReadonlyMap<string, ProgrammedBackend>,
    ) => void,
  ): void {
    for (const [k, b] of this.entries()) fn(b, k, this);
  }

  [Symbol.iterator](): MapIterator<[string, ProgrammedBackend]> {
    return this.entries();
  }
}

/** A service as programmed. */
export interface ProgrammedService {
  /** `address:port/protocol`. */
  frontend: string;
  /** The frontend. */
  address: ServiceAddress;
  /** Its services entry. */
  entry: ServiceEntry;
  /** Its backends by `addr:port`. */
  backends: PackedBackends;
}

/** What one apply did, for logs and metrics. */
export interface ApplyStats {
  /** Services added, changed (table or flags), removed. */
  added: number;
  changed: number;
  removed: number;
  /** Backend slots written and cleared. */
  backendsWritten: number;
  backendsCleared: number;
  /** Map operations issued. */
  operations: number;
}

/** A step of a plan, recorded for tests and executed in order. */
export type Step =
  | { op: "deleteServiceEntry"; addr: ServiceAddress }
  | { op: "deleteMaglevs"; ids: number[] }
  | { op: "waitForReaders" }
  | { op: "clearBackends"; ids: number[] }
  | { op: "resetCounters"; services: number[]; backends: number[] }
  | { op: "writeBackends"; slots: BackendSlot[] }
  | { op: "writeMaglevs"; tables: MaglevWrite[] }
  | { op: "putService"; addr: ServiceAddress; entry: ServiceEntry }
  | { op: "putVipMarker"; addr: string }
  | { op: "deleteVipMarker"; addr: string };

/** Ordered steps and the state they lead to. */
export interface Plan {
  /** Steps, in order. */
  steps: Step[];
  /**
   * The programmed services after the steps, by frontend: the whole state after a full diff,
   * only the visited frontends (undefined: removed) after a plan over a change list.
   */
  next: Map<string, ProgrammedService | undefined>;
  /** Whether `next` holds only the frontends of a change list. */
  partial: boolean;
  /** Summary. */
  stats: ApplyStats;
}

const FNV_OFFSET = 0x811c9dc5;

/** FNV-1a (32 bits) of `h` followed by the UTF-16 code units of `s`. */
function fnvString(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** FNV-1a of `h` followed by one code unit. */
function fnvChar(h: number, c: number): number {
  return Math.imul(h ^ c, 0x01000193) >>> 0;
}

/**
 * FNV-1a of `h` followed by `n` in decimal, as `String(n)` spells it, without
 * making the string (a first sync hashes ~200,000 numbers).
 */
function fnvNumber(h: number, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) return fnvString(h, String(n));
  let div = 1;
  while (div * 10 <= n) div *= 10;
  for (; div >= 1; div /= 10) h = fnvChar(h, 48 + (Math.floor(n / div) % 10));
  return h;
}

/** Lowest-first id allocator over 1..max. */
class IdPool {
  readonly #used: Uint8Array;
  #hint = 1;

  constructor(max: number) {
    this.#used = new Uint8Array(max + 1);
    this.#used[0] = 1;
  }

  get size(): number {
    return this.#used.length - 1;
  }

  take(id: number): void {
    this.#used[id] = 1;
  }

  free(id: number): void {
    this.#used[id] = 0;
    if (id < this.#hint) this.#hint = id;
  }

  has(id: number): boolean {
    return this.#used[id] === 1;
  }

  alloc(): number | undefined {
    for (let i = this.#hint; i < this.#used.length; i++) {
      if (!this.#used[i]) {
        this.#used[i] = 1;
        this.#hint = i + 1;
        return i;
      }
    }
    return undefined;
  }

  clone(): IdPool {
    const p = new IdPool(this.size);
    p.#used.set(this.#used);
    p.#hint = this.#hint;
    return p;
  }
}

/** What apply() takes over from a plan once its steps ran. */
interface After {
  /** Desired services by frontend after a full diff (a change list updates the programmer's). */
  source: Map<string, DesiredService>;
  /** Services per address: all of them after a full diff, those touched after a change list. */
  perAddress: Map<string, number>;
  serviceIds: IdPool;
  backendIds: IdPool;
}

/** The frontend key of a map address (same as desired_state's). */
function frontendOf(a: ServiceAddress): string {
  return `${a.addr.includes(":") ? `[${a.addr}]` : a.addr}:${a.port}/${a.protocol}`;
}

/**
 * Owns the programmed state of the maps: adopts it from the maps, diffs it
 * against a desired state and applies the difference in a safe order.
 */
export class Programmer {
  readonly #maps: MapWriter;
  #services = new Map<string, ProgrammedService>();
  /** The desired service each programmed one was last written from: unchanged objects skip the diff. */
  #source = new Map<string, DesiredService>();
  /** The desired state applied last: a state listing its changes since this one needs only those visited. */
  #applied: DesiredState | undefined;
  /** Per plan, what apply() takes over once its steps ran. */
  #after = new WeakMap<Plan, After>();
  #vips = new Set<string>();
  /** Programmed services per address (their VIP marker stays while one is left). */
  #perAddress = new Map<string, number>();
  #serviceIds: IdPool;
  #backendIds: IdPool;

  /** A programmer over `maps`; call {@linkcode Programmer.adopt} before the first apply. */
  constructor(maps: MapWriter) {
    this.#maps = maps;
    const c = maps.capacity();
    this.#serviceIds = new IdPool(c.serviceIds);
    this.#backendIds = new IdPool(c.backendIds);
  }

  /** The programmed services by frontend (read-only view). */
  get services(): ReadonlyMap<string, ProgrammedService> {
    return this.#services;
  }

  /**
   * Reads what the pinned maps hold (after a restart, what a previous agent
   * programmed) and makes it the state the next diff starts from. Slots no
   * services entry owns are cleared.
   */
  adopt(): { services: number; backends: number; orphans: number } {
    const c = this.#maps.capacity();
    this.#serviceIds = new IdPool(c.serviceIds);
    this.#backendIds = new IdPool(c.backendIds);
    this.#services = new Map();
    this.#source = new Map();
    this.#applied = undefined;
    const { frontends, vips } = this.#maps.listServices();
    const byId = new Map<number, { s: ProgrammedService; list: Map<string, ProgrammedBackend> }>();
    for (const f of frontends) {
      const s: ProgrammedService = {
        frontend: frontendOf(f.address),
        address: f.address,
        entry: f.entry,
        backends: PackedBackends.of([]),
      };
      this.#services.set(s.frontend, s);
      byId.set(f.entry.id, { s, list: new Map() });
      this.#serviceIds.take(f.entry.id);
    }
    this.#vips = new Set(vips);
    const orphans: number[] = [];
    let backends = 0;
    for (const b of this.#maps.listBackends()) {
      const owner = byId.get(b.serviceId);
      const key = `${b.addr}:${b.port}`;
      if (!owner || owner.list.has(key)) {
        orphans.push(b.id);
        continue;
      }
      owner.list.set(key, { id: b.id, addr: b.addr, port: b.port, remote: b.remote });
      this.#backendIds.take(b.id);
      backends++;
    }
    for (const { s, list } of byId.values()) s.backends = PackedBackends.of([...list.values()]);
    this.#maps.clearBackends(orphans);
    return { services: this.#services.size, backends, orphans: orphans.length };
  }

  /**
   * Plans the steps from the current state to `desired` (maps untouched). A
   * desired state that lists its changes since the state applied last
   * (DesiredStateTracker's) is planned over those frontends only; any other
   * is diffed whole.
   */
  plan(desired: DesiredState): Plan {
    const changes = desired.changes !== undefined && desired.changes.since === this.#applied &&
        desired.keep.size === 0
      ? desired.changes.frontends
      : undefined;
    const steps: Step[] = [];
    const stats: ApplyStats = {
      added: 0,
      changed: 0,
      removed: 0,
      backendsWritten: 0,
      backendsCleared: 0,
      operations: 0,
    };
    const serviceIds = this.#serviceIds.clone();
    const backendIds = this.#backendIds.clone();
    const next = new Map<string, ProgrammedService | undefined>();
    const source = changes ? this.#source : new Map<string, DesiredService>();
    // Services per address: after a full diff, counted from `next`; over a change list, the
    // counts of the addresses it touches, updated by the services it adds and removes.
    const perAddress = new Map<string, number>();
    const count = (addr: string, by: number) => {
      const base = perAddress.get(addr) ?? (changes ? this.#perAddress.get(addr) ?? 0 : 0);
      perAddress.set(addr, base + by);
    };

    // 1. removed services
    const removed: ProgrammedService[] = [];
    if (changes) {
      for (const frontend of changes) {
        if (desired.services.has(frontend)) continue;
        const s = this.#services.get(frontend);
        if (!s) continue;
        removed.push(s);
        next.set(frontend, undefined);
        count(s.address.addr, -1);
      }
    } else {
      for (const [frontend, s] of this.#services) {
        if (desired.services.has(frontend)) continue;
        if (desired.keep.has(frontend)) next.set(frontend, s);
        else removed.push(s);
      }
    }
    const clearNow: number[] = [];
    const dropTables: number[] = [];
    for (const s of removed) {
      steps.push({ op: "deleteServiceEntry", addr: s.address });
      if (s.entry.tableSize > 0) dropTables.push(s.entry.id);
      for (let i = 0; i < s.backends.size; i++) clearNow.push(s.backends.idAt(i));
      stats.removed++;
    }
    // Outer-map writes wait for an RCU grace period each: one batch per kind of write.
    if (dropTables.length > 0) steps.push({ op: "deleteMaglevs", ids: dropTables });
    if (clearNow.length > 0) steps.push({ op: "clearBackends", ids: clearNow });

    // Ids of removed services are free from here on: their entries are gone.
    for (const s of removed) {
      serviceIds.free(s.entry.id);
      for (let i = 0; i < s.backends.size; i++) backendIds.free(s.backends.idAt(i));
    }

    // 2. backend slots, and the service writes they enable
    const slots: BackendSlot[] = [];
    const freshServices: number[] = [];
    const freshBackends: number[] = [];
    // 3a entries that must change before their table, 3b tables, 3c entries after their table
    const entriesBefore: Step[] = [];
    const newTables: MaglevWrite[] = [];
    const emptied: number[] = [];
    const entriesAfter: Step[] = [];
    const clearLater: number[] = [];
    let inPlaceRemovals = false;
    const visit = (frontend: string, d: DesiredService) => {
      const old = this.#services.get(frontend);
      if (old && this.#source.get(frontend) === d) {
        if (!changes) next.set(frontend, old); // the same object as last time: nothing changed
        return;
      }
      let id = old?.entry.id;
      if (id === undefined) {
        id = serviceIds.alloc();
        if (id === undefined) throw new CapacityError("no free service id");
        freshServices.push(id);
      }
      const n = d.backends.length;
      const addrs: string[] = new Array(n);
      const data = new Uint32Array(3 * n);
      const kept = old ? new Uint8Array(old.backends.size) : undefined;
      for (let i = 0; i < n; i++) {
        const b = d.backends[i]!;
        const was = old ? old.backends.indexOf(b.addr, b.port) : -1;
        let bid: number | undefined;
        if (was >= 0) {
          bid = old!.backends.idAt(was);
          kept![was] = 1;
        } else {
          bid = backendIds.alloc();
          if (bid === undefined) throw new CapacityError("no free backend id");
          freshBackends.push(bid);
        }
        if (was < 0 || old!.backends.remoteAt(was) !== b.remote) {
          slots.push({ id: bid, addr: b.addr, port: b.port, remote: b.remote, serviceId: id });
        }
        addrs[i] = b.addr;
        data[3 * i] = bid;
        data[3 * i + 1] = b.port;
        data[3 * i + 2] = b.remote ? 1 : 0;
      }
      const backends = new PackedBackends(addrs, data);
      let removed = false;
      if (old) {
        for (let i = 0; i < old.backends.size; i++) {
          if (kept![i] === 1) continue;
          removed = true;
          clearLater.push(old.backends.idAt(i)); // freed after this loop, not for reuse in it
        }
      }
      const entry = serviceEntry(id, d, backends);
      next.set(frontend, { frontend, address: d.address, entry, backends });
      const put: Step = { op: "putService", addr: d.address, entry };
      if (!old) {
        if (entry.tableSize > 0) {
          newTables.push(new LazyMaglevTable(id, entry.tableSize, d, backends));
        }
        entriesAfter.push(put);
        stats.added++;
        if (changes) count(d.address.addr, 1);
        return;
      }
      const tableChanged = old.entry.fingerprint !== entry.fingerprint ||
        old.entry.tableSize !== entry.tableSize;
      const entryChanged = tableChanged || old.entry.keepClientAddress !== entry.keepClientAddress;
      if (!entryChanged) return;
      stats.changed++;
      if (!tableChanged) {
        entriesBefore.push(put);
      } else if (entry.tableSize === 0) {
        entriesBefore.push(put); // size 0 rejects before the table goes
        if (old.entry.tableSize > 0) emptied.push(id);
      } else if (entry.tableSize === old.entry.tableSize && old.entry.tableSize > 0) {
        // Same size: written over the old table (no outer-map swap and its RCU grace period before
        // the new backends get flows), then the entry. A reader mixing old and new slots meets
        // only backends whose slots are still there: removed ones are cleared after a grace
        // period (step 4).
        newTables.push(new LazyMaglevTable(id, entry.tableSize, d, backends, true));
        entriesAfter.push(put);
        if (removed) inPlaceRemovals = true;
      } else if (entry.tableSize >= old.entry.tableSize) {
        // Bigger (or first) table first: the old size indexes inside it.
        newTables.push(new LazyMaglevTable(id, entry.tableSize, d, backends));
        entriesAfter.push(put);
      } else {
        // Smaller size first: it indexes inside the old, bigger table.
        entriesBefore.push(put);
        newTables.push(new LazyMaglevTable(id, entry.tableSize, d, backends));
      }
    };
    if (changes) {
      for (const frontend of changes) {
        const d = desired.services.get(frontend);
        if (d) visit(frontend, d);
      }
    } else {
      for (const [frontend, d] of desired.services) {
        source.set(frontend, d);
        visit(frontend, d);
      }
    }
    // Removed backends' ids are free for the next change only: handed to another service in this
    // one, their slot would be overwritten while a table still names it, then cleared under it.
    for (const bid of clearLater) backendIds.free(bid);
    if (freshServices.length > 0 || freshBackends.length > 0) {
      steps.push({ op: "resetCounters", services: freshServices, backends: freshBackends });
    }
    if (slots.length > 0) steps.push({ op: "writeBackends", slots });
    steps.push(...entriesBefore);
    if (emptied.length > 0) steps.push({ op: "deleteMaglevs", ids: emptied });
    if (newTables.length > 0) steps.push({ op: "writeMaglevs", tables: newTables });
    steps.push(...entriesAfter);

    // New VIP markers after their services, so a VIP never swallows traffic it cannot serve.
    if (!changes) { for (const s of next.values()) count(s!.address.addr, 1); }
    for (const [a, n] of perAddress) {
      if (n > 0 && !this.#vips.has(a)) steps.push({ op: "putVipMarker", addr: a });
    }

    // 4. backends no table points at any more
    if (inPlaceRemovals) steps.push({ op: "waitForReaders" });
    if (clearLater.length > 0) steps.push({ op: "clearBackends", ids: clearLater });
    // 5. markers of addresses without frontends
    if (changes) {
      for (const [a, n] of perAddress) {
        if (n === 0 && this.#vips.has(a)) steps.push({ op: "deleteVipMarker", addr: a });
      }
    } else {
      for (const a of this.#vips) {
        if (!perAddress.has(a)) steps.push({ op: "deleteVipMarker", addr: a });
      }
    }

    // The id pools above end as the ids `next` holds: the state after the steps.
    const plan: Plan = { steps, next, partial: changes !== undefined, stats };
    this.#after.set(plan, { source, perAddress, serviceIds, backendIds });
    stats.backendsWritten = slots.length;
    stats.backendsCleared = clearNow.length + clearLater.length;
    stats.operations = steps.length;
    return plan;
  }

  /**
   * Applies `desired`: plans, runs the steps in order, and takes the new
   * state. On a map error the state is adopted again from the maps (so the
   * next apply diffs against the truth) and the error is thrown.
   */
  apply(desired: DesiredState): ApplyStats {
    const plan = this.plan(desired);
    try {
      const steps = plan.steps;
      for (let i = 0; i < steps.length;) {
        // Consecutive services entries go in one call (10,000 at a first sync), in the same order.
        let j = i;
        while (j < steps.length && steps[j]!.op === "putService") j++;
        if (j - i > 1 && this.#maps.putServices) {
          this.#maps.putServices(
            steps.slice(i, j).map((s) => s as Extract<Step, { op: "putService" }>),
          );
          i = j;
          continue;
        }
        this.#run(steps[i]!);
        i++;
      }
    } catch (e) {
      this.adopt();
      throw e;
    }
    const after = this.#after.get(plan)!;
    if (plan.partial) {
      for (const [frontend, s] of plan.next) {
        if (s) this.#services.set(frontend, s);
        else this.#services.delete(frontend);
      }
      for (const frontend of desired.changes!.frontends) {
        const d = desired.services.get(frontend);
        if (d) this.#source.set(frontend, d);
        else this.#source.delete(frontend);
      }
      for (const [a, n] of after.perAddress) {
        if (n > 0) this.#perAddress.set(a, n);
        else this.#perAddress.delete(a);
        if (n > 0) this.#vips.add(a);
        else this.#vips.delete(a);
      }
    } else {
      this.#services = plan.next as Map<string, ProgrammedService>;
      this.#source = after.source; // a copy: the desired state's maps may change after this
      this.#perAddress = after.perAddress;
      this.#vips = new Set(after.perAddress.keys());
    }
    this.#applied = desired;
    this.#serviceIds = after.serviceIds;
    this.#backendIds = after.backendIds;
    return plan.stats;
  }

  #run(step: Step): void {
    const m = this.#maps;
    switch (step.op) {
      case "deleteServiceEntry":
        return m.deleteServiceEntry(step.addr);
      case "deleteMaglevs":
        return m.deleteMaglevs(step.ids);
      case "waitForReaders":
        return m.waitForReaders();
      case "clearBackends":
        return m.clearBackends(step.ids);
      case "resetCounters":
        m.resetServiceCounters(step.services);
        return m.resetBackendCounters(step.backends);
      case "writeBackends":
        return m.writeBackends(step.slots);
      case "writeMaglevs":
        return m.writeMaglevs(step.tables);
      case "putService":
        return m.putService(step.addr, step.entry);
      case "putVipMarker":
        return m.putVipMarker(step.addr);
      case "deleteVipMarker":
        return m.deleteVipMarker(step.addr);
    }
  }
}

/**
 * A service's Maglev table, built when the writer reads it and not kept: a
 * first sync writes 10,000 of them, and holding them all until the write
 * would cost ~40 MiB of buffers that the allocator then keeps. It is its own
 * `fill`: the maps build it straight into a fresh inner map. Its entries
 * (one object and one `addr:port` key a backend) are made only then, so
 * they die young instead of living through the plan (a cold first sync
 * allocated ~45 MB for them and their fingerprints, measured).
 */
class LazyMaglevTable implements MaglevWrite {
  readonly id: number;
  readonly inPlace: boolean;
  /** Slots (a size of maglevSize; > 0). */
  readonly size: number;
  declare readonly fill?: NonNullable<MaglevWrite["fill"]>;
  readonly #d: DesiredService;
  readonly #backends: PackedBackends;

  constructor(
    id: number,
    size: number,
    d: DesiredService,
    backends: PackedBackends,
    inPlace = false,
  ) {
    this.id = id;
    this.size = size;
    this.inPlace = inPlace;
    this.#d = d;
    this.#backends = backends;
    if (size > 0) this.fill = this;
  }

  get table(): Uint32Array {
    return this.size === 0 ? new Uint32Array(0) : maglevTable(this.#entries(), this.size);
  }

  into(words: Uint32Array, stride: number): void {
    maglevFill(this.#entries(), this.size, { into: words, stride });
  }

  #entries(): MaglevEntry[] {
    // `backends` is in the order of d.backends (plan builds it so).
    const d = this.#d;
    const entries: MaglevEntry[] = new Array(d.backends.length);
    for (let i = 0; i < entries.length; i++) {
      const b = d.backends[i]!;
      entries[i] = { key: `${b.addr}:${b.port}`, id: this.#backends.idAt(i), weight: b.weight };
    }
    if (d.rejectWeight > 0) entries.push(rejectEntry(d.rejectWeight));
    return entries;
  }
}

/** Thrown when ids run out while planning (the capacity check should prevent it). */
export class CapacityError extends Error {
  /** What ran out. */
  constructor(message: string) {
    super(message);
    this.name = "CapacityError";
  }
}

/**
 * The services entry of a desired service, with backend ids assigned. Its
 * fingerprint covers everything the Maglev table depends on (the entries
 * {@linkcode LazyMaglevTable} builds), so an unchanged service is never
 * rewritten, also across restarts.
 */
export function serviceEntry(
  id: number,
  d: DesiredService,
  backends: PackedBackends,
): ServiceEntry {
  // `backends` is in the order of d.backends (plan builds it so).
  let live = d.rejectWeight > 0 ? 1 : 0;
  for (let i = 0; i < d.backends.length; i++) if (d.backends[i]!.weight > 0) live++;
  const size = live === 0 ? 0 : maglevSize(live);
  // FNV-1a of `${size}|` then `${key}=${id}*${weight},` per entry (key `${addr}:${port}`), hashed
  // as it is spelled without making the strings.
  let h = fnvChar(fnvNumber(FNV_OFFSET, size), 0x7c);
  for (let i = 0; i < d.backends.length; i++) {
    const b = d.backends[i]!;
    h = fnvChar(fnvNumber(fnvChar(fnvString(h, b.addr), 0x3a), b.port), 0x3d);
    h = fnvChar(fnvNumber(h, backends.idAt(i)), 0x2a);
    h = fnvChar(fnvNumber(h, b.weight), 0x2c);
  }
  if (d.rejectWeight > 0) {
    const r = rejectEntry(d.rejectWeight);
    h = fnvChar(fnvString(h, r.key), 0x3d);
    h = fnvChar(fnvNumber(h, r.id), 0x2a);
    h = fnvChar(fnvNumber(h, r.weight), 0x2c);
  }
  return { id, keepClientAddress: d.keepClientAddress, tableSize: size, fingerprint: h };
}
