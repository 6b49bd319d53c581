/**
 * Test helpers: RoutingTable objects and an in-memory stand-in for the maps
 * that records every operation (for unit tests of one module only; the
 * cluster tests use the real maps).
 *
 * @module
 */
import type { Backend, RoutingTable, RoutingTableEntry } from "../api/mod.ts";
import type { BackendSlot, MapCapacity, ServiceAddress, ServiceEntry } from "./bpf/maps.ts";
import type { MapWriter } from "./programmer.ts";

/** A RoutingTable with the given entries (addresses taken from them). */
export function table(
  name: string,
  entries: Partial<RoutingTableEntry>[],
  options: { generation?: number; namespace?: string; localBackendsOnly?: boolean } = {},
): RoutingTable {
  const full = entries.map((e) => ({
    address: "198.18.100.1",
    port: 80,
    protocol: "TCP" as const,
    listener: "l",
    backends: [],
    rejectWeight: 0,
    ...e,
  }));
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: {
      name,
      namespace: options.namespace ?? "default",
      generation: options.generation ?? 1,
    },
    spec: {
      addresses: [...new Set(full.map((e) => e.address))],
      ...(options.localBackendsOnly ? { localBackendsOnly: true } : {}),
      entries: full,
    },
  };
}

/** A Ready backend. */
export function be(ip: string, weight = 1, extra: Partial<Backend> = {}): Backend {
  return { ip, port: 8080, weight, state: "Ready", ...extra };
}

/** In-memory maps recording each operation as `op arg`. */
export class FakeMaps implements MapWriter {
  /** Operations in order. */
  ops: string[] = [];
  services = new Map<string, { address: ServiceAddress; entry: ServiceEntry }>();
  vips = new Set<string>();
  backends = new Map<number, BackendSlot>();
  tables = new Map<number, Uint32Array>();
  cap: MapCapacity = { serviceIds: 100, serviceKeys: 200, backendIds: 1000, conntrack: 1000 };
  /** Throw on this operation name, once. */
  failOn: string | undefined;

  #key(a: ServiceAddress): string {
    return `${a.addr}:${a.port}/${a.protocol}`;
  }
  #op(name: string, arg: string): void {
    if (this.failOn === name) {
      this.failOn = undefined;
      throw new Error(`injected failure of ${name}`);
    }
    this.ops.push(arg === "" ? name : `${name} ${arg}`);
  }
  listServices() {
    return { frontends: [...this.services.values()], vips: [...this.vips] };
  }
  listBackends(): BackendSlot[] {
    return [...this.backends.values()];
  }
  writeBackends(slots: readonly BackendSlot[]): void {
    this.#op("writeBackends", slots.map((s) => `${s.id}=${s.addr}`).join(","));
    for (const s of slots) this.backends.set(s.id, { ...s });
  }
  clearBackends(ids: readonly number[]): void {
    if (ids.length === 0) return;
    this.#op("clearBackends", ids.join(","));
    for (const id of ids) {
      if (this.#mayBeHeld.has(id)) {
        throw new Error(`backend ${id} cleared while a reader may hold it`);
      }
      for (const [sid, t] of this.tables) {
        if (t.includes(id)) throw new Error(`backend ${id} cleared while table ${sid} names it`);
      }
    }
    for (const id of ids) this.backends.delete(id);
  }
  writeMaglevs(tables: readonly { id: number; table: Uint32Array; inPlace?: boolean }[]): void {
    this.#op("writeMaglevs", tables.map((t) => `${t.id}${t.inPlace ? " in place" : ""}`).join(","));
    let swapped = false;
    for (const t of tables) {
      // A table written in place leaves readers that may still hold one of its old slots until
      // the next grace period; a swap waits for one (as the kernel does after an outer write).
      const old = this.tables.get(t.id);
      if (t.inPlace && old) { for (const id of old) this.#mayBeHeld.add(id); }
      else swapped = true;
      this.tables.set(t.id, t.table);
    }
    if (swapped) this.#mayBeHeld.clear();
  }
  waitForReaders(): void {
    this.#op("waitForReaders", "");
    this.#mayBeHeld.clear();
  }
  /** Backend ids a program may still hold from a table overwritten in place. */
  #mayBeHeld = new Set<number>();
  deleteMaglevs(ids: readonly number[]): void {
    this.#op("deleteMaglevs", ids.join(","));
    for (const id of ids) this.tables.delete(id);
    // an outer-map delete returns after a grace period, as a swap does
    if (ids.length > 0) this.#mayBeHeld.clear();
  }
  putService(addr: ServiceAddress, entry: ServiceEntry): void {
    this.#op("putService", this.#key(addr));
    this.services.set(this.#key(addr), { address: addr, entry: { ...entry } });
  }
  deleteServiceEntry(addr: ServiceAddress): void {
    this.#op("deleteServiceEntry", this.#key(addr));
    this.services.delete(this.#key(addr));
  }
  putVipMarker(addr: string): void {
    this.#op("putVipMarker", addr);
    this.vips.add(addr);
  }
  deleteVipMarker(addr: string): void {
    this.#op("deleteVipMarker", addr);
    this.vips.delete(addr);
  }
  resetServiceCounters(ids: readonly number[]): void {
    if (ids.length) this.#op("resetServiceCounters", ids.join(","));
  }
  resetBackendCounters(ids: readonly number[]): void {
    if (ids.length) this.#op("resetBackendCounters", ids.join(","));
  }
  capacity(): MapCapacity {
    return this.cap;
  }

  /** Which backend addresses service `frontend`'s table sends new flows to. */
  tableTargets(frontend: string): string[] {
    const s = this.services.get(frontend);
    if (!s || s.entry.tableSize === 0) return [];
    const t = this.tables.get(s.entry.id);
    if (!t) throw new Error(`service ${frontend} points at a missing table`);
    const ids = new Set(t);
    return [...ids].map((id) => id === 0 ? "reject" : this.backends.get(id)?.addr ?? `gone#${id}`)
      .sort();
  }
}

/** A deterministic PRNG (mulberry32) over [0, 1). */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A random table over few addresses and ports (so tables conflict now and
 * then), one in ten invalid; for property tests.
 */
export function randomTable(r: () => number, name: string, generation: number): RoutingTable {
  const pick = (n: number) => Math.floor(r() * n);
  const ports = [...new Set(Array.from({ length: 1 + pick(3) }, () => 80 + pick(6)))].sort();
  const entries = ports.map((port) => {
    const backends: Backend[] = Array.from(
      { length: pick(4) },
      () => be(`198.18.1.${1 + pick(6)}`, pick(3), { node: r() < 0.7 ? "node-1" : "node-2" }),
    );
    return { address: `198.18.100.${1 + pick(2)}`, port, backends, rejectWeight: pick(2) };
  });
  // one edit in ten makes the table invalid (a port out of range)
  if (r() < 0.1) entries[0]!.port = 0;
  entries.sort((a, b) => a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port);
  const unique = entries.filter((e, i) =>
    i === 0 || e.address !== entries[i - 1]!.address || e.port !== entries[i - 1]!.port
  );
  return table(name, unique, { generation, localBackendsOnly: r() < 0.2 });
}
