/**
 * The typed map layer: the only code that reads or writes the data plane's
 * maps. Services, backends, Maglev tables, node config, conntrack and
 * counters, in the terms of bpf/structs.h.
 *
 * @module
 */

import {
  type Backend,
  backend,
  BE_F,
  BPF_F_INNER_MAP,
  BPF_F_MMAPABLE,
  type Config,
  config,
  type Counters,
  counters,
  EVENTS,
  FAMILY_V4,
  type FlowKey,
  flowKey,
  type FlowValue,
  flowValue,
  IFACE_F,
  LIMITS,
  MAGLEV_INNER_FLAGS,
  parseIPv4,
  POD_SLOT,
  type ServiceKey,
  serviceKey,
  type ServiceValue,
  serviceValue,
  SVC_F,
} from "./layout.ts";
import { MAGLEV_SIZE, type MaglevEntry, maglevSize, maglevTable, rejectEntry } from "./maglev.ts";
import { BpfMap, createMap, MAP_TYPE, numPossibleCpus, openMapById } from "./object.ts";
import { fillMappedU32, LibbpfError, monotonicCoarseNs, writeMappedU32 } from "./libbpf.ts";
import {
  sweepConntrack,
  sweepConntrackInSteps,
  type SweepOptions,
  type SweepResult,
} from "./conntrack_sweep.ts";

/** A service address as clients use it. */
export interface ServiceAddress {
  /** VIP (IPv4 for now). */
  addr: string;
  /** Service port. */
  port: number;
  /** "TCP" or "UDP". */
  protocol: "TCP" | "UDP";
}

/** A backend to program: where flows go. */
export interface BackendSpec {
  /** Backend address. */
  addr: string;
  /** Backend port. */
  port: number;
  /** On another node: reached with the source translated to this node. */
  remote?: boolean;
}

/** A service to program. */
export interface ServiceSpec {
  /** Service id: index of its Maglev table and counters (1..MAX_SERVICES-1). */
  id: number;
  /** Backends by id with their weights (0: no new flows). */
  backends: readonly { id: number; weight: number }[];
  /** Share of new flows to reject actively (invalid backendRefs). */
  rejectWeight?: number;
  /** Keep the client address even for remote backends (local-only Gateways). */
  keepClientAddress?: boolean;
}

/** Node-wide settings. */
export interface NodeConfig {
  /** This node's address: the source of flows to remote backends. */
  nodeAddr: string;
  /** SNAT source ports, inclusive; default 61000..65535 (outside ip_local_port_range). */
  snatPorts?: [number, number];
}

/** The services entry of a frontend, as the agent writes it. */
export interface ServiceEntry {
  /** Service id. */
  id: number;
  /** Never SNAT (local-only Gateways). */
  keepClientAddress: boolean;
  /** Slots of its Maglev table; 0 rejects everything. */
  tableSize: number;
  /** The agent's hash of the Maglev input, to skip rebuilding an unchanged table. */
  fingerprint: number;
}

/** A frontend found in the services map. */
export interface ProgrammedService {
  /** The frontend. */
  address: ServiceAddress;
  /** Its entry. */
  entry: ServiceEntry;
}

/** A backends array slot as the agent programs it. */
export interface BackendSlot {
  /** Backend id (index in the backends array). */
  id: number;
  /** Address. */
  addr: string;
  /** Port. */
  port: number;
  /** On another node. */
  remote: boolean;
  /** Service id owning this backend id (agent bookkeeping). */
  serviceId: number;
}

/** Counters of a service or backend summed over CPUs. */
export interface CounterTotals {
  /** Client -> service packets. */
  packets: number;
  /** Client -> service bytes. */
  bytes: number;
  /** Backend -> client packets. */
  replyPackets: number;
  /** Backend -> client bytes. */
  replyBytes: number;
  /** Flows created. */
  newFlows: number;
  /** Packets answered with RST / ICMP unreachable. */
  rejected: number;
}

/** What fits: ids and keys usable by services and backends. */
export interface MapCapacity {
  /** Service ids (1..n). */
  serviceIds: number;
  /** services map entries (frontends + one VIP marker per address). */
  serviceKeys: number;
  /** Backend ids (1..n). */
  backendIds: number;
  /** Conntrack entries. */
  conntrack: number;
}

const EINVAL = 22;

const PROTO_NUM = { TCP: 6, UDP: 17 } as const;

function vipMarkerKey(addr: string): Uint8Array<ArrayBuffer> {
  return serviceKey.encode({ addr, port: 0, proto: 0, family: FAMILY_V4 });
}

let swapChunk: number | undefined;

/**
 * Inner maps per outer-map batch: each is an open fd until its batch is in,
 * and each batch waits for one RCU grace period (10,000 tables in 2 batches
 * rather than 5). Half the file descriptors the soft limit leaves above
 * 1024, between 256 and 8192: 8192 under this VM's 20,000 and a pod's
 * usual 1,048,576, 256 under 1,536 (2048 before, which a limit of 1024 broke).
 */
function maglevSwapChunk(): number {
  if (swapChunk !== undefined) return swapChunk;
  let limit = 4096;
  try {
    const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.split(/\s+/)[3];
    if (soft === "unlimited") limit = Infinity;
    else if (Number.isFinite(Number(soft))) limit = Number(soft);
  } catch {
    // no /proc: the default
  }
  swapChunk = Math.max(256, Math.min(8192, Math.floor((limit - 1024) / 2)));
  return swapChunk;
}

/** Byte offsets of `struct backend`'s fields (writeBackends writes them without encode). */
const BACKEND_OFFSETS = Object.fromEntries(backend.fields.map((f) => [f.name, f.offset])) as Record<
  "addr" | "port" | "family" | "flags" | "service_id",
  number
>;

let slotKeyCache = new Uint32Array(0);

/** Keys 0..n-1 packed as u32 (shared: tables are written one at a time). */
function slotKeys(n: number): Uint8Array<ArrayBuffer> {
  if (slotKeyCache.length < n) {
    slotKeyCache = new Uint32Array(MAGLEV_SIZE);
    for (let i = 0; i < MAGLEV_SIZE; i++) slotKeyCache[i] = i;
  }
  return new Uint8Array(slotKeyCache.buffer, 0, n * 4);
}

/** Zeroes per-CPU values in chunks: one zero buffer of chunk x value x CPUs, reused. */
function zeroPerCpu(map: BpfMap, ids: readonly number[], chunk = 4096): void {
  if (ids.length === 0) return;
  const zeros = new Uint8Array(map.fullValueSize * Math.min(chunk, ids.length));
  for (let i = 0; i < ids.length; i += chunk) {
    const keys = Uint32Array.from(ids.slice(i, i + chunk));
    map.updateBatch(
      new Uint8Array(keys.buffer),
      zeros.subarray(0, map.fullValueSize * keys.length),
    );
  }
}

function u32(n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

/** The maps of one loaded data plane, by name. */
export interface MapSet {
  /** Look a map up by name. */
  map(name: string): BpfMap;
}

/** Sum of per-CPU `struct counters` values. */
function sumCounters(bytes: Uint8Array, cpus: number): Counters {
  const stride = Math.ceil(counters.size / 8) * 8;
  const total: Counters = {
    packets: 0n,
    bytes: 0n,
    reply_packets: 0n,
    reply_bytes: 0n,
    new_flows: 0n,
    rejected: 0n,
  };
  for (let c = 0; c < cpus; c++) {
    const v = counters.decode(bytes, c * stride);
    for (const k of Object.keys(total) as (keyof Counters)[]) total[k] += v[k];
  }
  return total;
}

/** Typed access to the data plane's maps. */
/**
 * A Maglev table to write for a service. `inPlace`: the service keeps its
 * table size and every backend its current table names, so the table may be
 * overwritten where it is (a reader mixing old and new slots meets only live
 * backends) instead of swapped in.
 */
export interface MaglevWrite {
  /** Service id. */
  id: number;
  /** The slots (backend ids). */
  table: Uint32Array;
  /** May be written over the current table; see above. */
  inPlace?: boolean;
  /**
   * The table built straight into the new inner map instead of read from
   * `table` (a first sync writes 10,000): `size` slots, slot `c` at
   * `into[c * stride]`. Only taken where a fresh inner map is filled.
   */
  fill?: { size: number; into(words: Uint32Array, stride: number): void };
}

export class DataplaneMaps {
  readonly #maps: MapSet;
  /** map_flags of inner Maglev tables, once probed (see #maglevInnerFlags). */
  #innerFlags: number | undefined;

  /** Wraps the maps of a loaded object (or of pinned maps). */
  constructor(maps: MapSet) {
    this.#maps = maps;
  }

  /** Writes the node config. */
  setConfig(c: NodeConfig): void {
    const [min, max] = c.snatPorts ?? [61000, 65535];
    if (!(min >= 1 && max <= 65535 && min <= max)) {
      throw new RangeError(`snatPorts ${min}..${max} is not a port range`);
    }
    this.#maps.map("config").update(
      u32(0),
      config.encode({
        node_addr: c.nodeAddr,
        snat_port_min: min,
        snat_port_max: max,
        flags: 0,
      }),
    );
  }

  /** Reads the node config. */
  getConfig(): Config | undefined {
    const v = this.#maps.map("config").lookup(u32(0));
    return v && config.decode(v);
  }

  /** Creates or replaces backend `id` (1..MAX_BACKENDS-1). */
  setBackend(id: number, spec: BackendSpec): void {
    checkId("backend", id, LIMITS.MAX_BACKENDS);
    this.#maps.map("backends").update(
      u32(id),
      backend.encode({
        addr: spec.addr,
        port: spec.port,
        family: FAMILY_V4,
        flags: BE_F.ACTIVE | (spec.remote ? BE_F.REMOTE : 0),
        service_id: 0,
      }),
    );
  }

  /** Removes backend `id`: its tracked flows pick a new backend on their next packet. */
  deleteBackend(id: number): void {
    checkId("backend", id, LIMITS.MAX_BACKENDS);
    this.#maps.map("backends").update(u32(id), new Uint8Array(backend.size));
  }

  /** Reads backend `id`, or undefined when the slot is empty. */
  getBackend(id: number): Backend | undefined {
    const v = this.#maps.map("backends").lookup(u32(id));
    if (!v) return undefined;
    const b = backend.decode(v);
    return b.flags & BE_F.ACTIVE ? b : undefined;
  }

  /**
   * Programs a service: builds its Maglev table into a fresh inner map, swaps
   * it in atomically, then writes the service entry and the VIP marker.
   * Backends must be set first.
   */
  setService(addr: ServiceAddress, spec: ServiceSpec): Uint32Array {
    checkId("service", spec.id, LIMITS.MAX_SERVICES);
    const entries: MaglevEntry[] = spec.backends.map((b) => {
      return { key: this.#maglevKey(b.id), id: b.id, weight: b.weight };
    });
    if (spec.rejectWeight) entries.push(rejectEntry(spec.rejectWeight));
    const live = entries.filter((e) => e.weight > 0).length;
    const table = maglevTable(entries, maglevSize(live));
    if (table.length > 0) this.writeMaglev(spec.id, table);
    this.putService(addr, {
      id: spec.id,
      keepClientAddress: spec.keepClientAddress ?? false,
      tableSize: table.length,
      fingerprint: 0,
    });
    this.putVipMarker(addr.addr);
    return table;
  }

  /**
   * Swaps `table` in as service `id`'s Maglev table: a fresh inner map of
   * `table.length` slots replaces the old one in one update, so the data
   * plane sees the old table or the new one, never a mix.
   */
  writeMaglev(id: number, table: Uint32Array): void {
    this.writeMaglevs([{ id, table }]);
  }

  /**
   * Swaps in many Maglev tables: fresh inner maps written first, then the
   * outer map updated in batches. The kernel waits for an RCU grace period
   * after each outer-map write call (so programs see the new table when it
   * returns); one batch call waits once instead of once per service. A
   * chunk's inner maps stay open (one fd each) until their batch is in
   * (the default chunk follows the fd limit, see maglevSwapChunk).
   * Each `table` is read once (the agent's are built when read).
   */
  writeMaglevs(tables: readonly MaglevWrite[], chunk = maglevSwapChunk()): void {
    const swaps = tables.filter((t) => !(t.inPlace && this.#writeInPlace(t.id, t.table)));
    for (let i = 0; i < swaps.length; i += chunk) {
      const part = swaps.slice(i, i + chunk);
      const inner: BpfMap[] = [];
      try {
        for (const t of part) {
          checkId("service", t.id, LIMITS.MAX_SERVICES);
          inner.push(t.fill ? this.#innerFilled(t.fill) : this.#innerTable(t.table));
        }
        const keys = Uint32Array.from(part, (t) => t.id);
        const fds = Uint32Array.from(inner, (m) => m.fd);
        this.#maps.map("maglev").updateBatch(
          new Uint8Array(keys.buffer),
          new Uint8Array(fds.buffer),
        );
      } finally {
        for (const m of inner) m.close(); // the outer map holds the tables now
      }
    }
  }

  /**
   * Writes `table` over service `id`'s current inner map, slot by slot through
   * mmap (each slot one aligned 32-bit store, so a program reads a slot's old
   * or new backend, never a torn one), without the outer-map write and its
   * RCU grace period. Only where the table keeps its size and the inner maps
   * are mmap-able; false when it cannot (the caller swaps instead).
   */
  #writeInPlace(id: number, table: Uint32Array): boolean {
    if (table.length === 0 || !(this.#maglevInnerFlags() & BPF_F_MMAPABLE)) return false;
    const idBytes = this.#maps.map("maglev").lookup(u32(id));
    if (!idBytes) return false;
    const inner = openMapById(new DataView(idBytes.buffer).getUint32(0, true), "blixt_maglev");
    try {
      if (inner.maxEntries !== table.length) return false;
      writeMappedU32(inner.fd, table);
      this.#readersMaySeeOld = id;
      return true;
    } finally {
      inner.close();
    }
  }

  /** A service whose table was written in place since the last grace period, if any. */
  #readersMaySeeOld: number | undefined;

  /**
   * Returns once no program still runs with a slot read before the in-place
   * writes so far (a slot naming a backend that is about to be cleared): one
   * RCU grace period, which the kernel waits for after any outer-map write.
   * The outer map gets the table it already has back. Nothing to wait for
   * when no table was written in place since the last call.
   */
  waitForReaders(): void {
    const id = this.#readersMaySeeOld;
    if (id === undefined) return;
    const outer = this.#maps.map("maglev");
    const idBytes = outer.lookup(u32(id));
    if (idBytes) {
      const inner = openMapById(new DataView(idBytes.buffer).getUint32(0, true), "blixt_maglev");
      try {
        outer.update(u32(id), u32(inner.fd));
      } finally {
        inner.close();
      }
    }
    this.#readersMaySeeOld = undefined;
  }

  /**
   * A fresh inner map holding `table`, not yet visible to any program. It is
   * filled through mmap (one copy) where the outer map takes mmap-able
   * tables, else with one batch update (the kernel copies slot by slot).
   */
  #innerTable(table: Uint32Array): BpfMap {
    if (table.length === 0 || table.length > MAGLEV_SIZE) {
      throw new RangeError(`Maglev table of ${table.length} slots`);
    }
    const flags = this.#maglevInnerFlags();
    return this.#newInner(table.length, flags, (m) => {
      if (flags & BPF_F_MMAPABLE) writeMappedU32(m.fd, table);
      else {
        m.updateBatch(
          slotKeys(table.length),
          new Uint8Array(table.buffer, table.byteOffset, table.byteLength) as Uint8Array<
            ArrayBuffer
          >,
        );
      }
    });
  }

  /** A fresh inner map of `size` slots, written by `write` (closed again if that throws). */
  #newInner(size: number, flags: number, write: (m: BpfMap) => void): BpfMap {
    const m = createMap(MAP_TYPE.ARRAY, "blixt_maglev", {
      keySize: 4,
      valueSize: 4,
      maxEntries: size,
      flags,
    });
    try {
      write(m);
    } catch (e) {
      m.close();
      throw e;
    }
    return m;
  }

  /**
   * A fresh inner map of `fill.size` slots that `fill` writes through mmap
   * without a staging table; where inner maps are not mmap-able, staged and
   * written as {@link #innerTable} does.
   */
  #innerFilled(fill: NonNullable<MaglevWrite["fill"]>): BpfMap {
    const flags = this.#maglevInnerFlags();
    if (!(flags & BPF_F_MMAPABLE) || fill.size === 0 || fill.size > MAGLEV_SIZE) {
      const table = new Uint32Array(fill.size);
      fill.into(table, 1);
      return this.#innerTable(table);
    }
    return this.#newInner(fill.size, flags, (m) => {
      fillMappedU32(m.fd, fill.size, (words) => fill.into(words, 2));
    });
  }

  /**
   * The flags inner tables must have: those of bpf/maps.h, unless the
   * `maglev` outer map was pinned by an agent whose tables were not
   * mmap-able (the kernel then refuses other flags with EINVAL). Probed once
   * on slot 0, which no service uses (service ids start at 1).
   */
  #maglevInnerFlags(): number {
    if (this.#innerFlags !== undefined) return this.#innerFlags;
    const outer = this.#maps.map("maglev");
    const probe = createMap(MAP_TYPE.ARRAY, "blixt_maglev", {
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      flags: MAGLEV_INNER_FLAGS,
    });
    try {
      outer.update(u32(0), u32(probe.fd));
      outer.delete(u32(0));
      this.#innerFlags = MAGLEV_INNER_FLAGS;
    } catch (e) {
      if (!(e instanceof LibbpfError && e.errno === EINVAL)) throw e;
      this.#innerFlags = BPF_F_INNER_MAP;
    } finally {
      probe.close();
    }
    return this.#innerFlags;
  }

  /**
   * Removes many Maglev tables. Array-of-maps has no batch delete (ENOTSUPP),
   * so each costs an RCU grace period; only removed services get here.
   */
  deleteMaglevs(ids: readonly number[]): void {
    const outer = this.#maps.map("maglev");
    for (const id of ids) outer.delete(u32(id));
  }

  /** Reads service `id`'s Maglev table back (empty when it has none). */
  readMaglev(id: number): Uint32Array {
    const fdBytes = this.#maps.map("maglev").lookup(u32(id));
    if (!fdBytes) return new Uint32Array(0);
    const mapId = new DataView(fdBytes.buffer).getUint32(0, true);
    const inner = openMapById(mapId, "blixt_maglev");
    try {
      const out = new Uint32Array(inner.maxEntries);
      for (const [k, v] of inner.entries()) {
        const view = new DataView(v.buffer);
        out[new DataView(k.buffer).getUint32(0, true)] = view.getUint32(0, true);
      }
      return out;
    } finally {
      inner.close();
    }
  }

  /** Removes service `id`'s Maglev table. */
  deleteMaglev(id: number): void {
    this.#maps.map("maglev").delete(u32(id));
  }

  /** Writes the services entry of `addr` (the frontend starts matching). */
  putService(addr: ServiceAddress, value: ServiceEntry): void {
    this.#maps.map("services").update(
      this.#serviceKey(addr),
      serviceValue.encode({
        id: value.id,
        flags: value.keepClientAddress ? SVC_F.KEEP_CLIENT : 0,
        table_size: value.tableSize,
        fingerprint: value.fingerprint >>> 0,
      }),
    );
  }

  /** Writes services entries in one batch, in order. */
  putServices(entries: readonly { addr: ServiceAddress; entry: ServiceEntry }[]): void {
    if (entries.length === 0) return;
    const keys = new Uint8Array(serviceKey.size * entries.length);
    const values = new Uint8Array(serviceValue.size * entries.length);
    entries.forEach(({ addr, entry }, i) => {
      this.#serviceKey(addr, keys, i * serviceKey.size);
      serviceValue.encode(
        {
          id: entry.id,
          flags: entry.keepClientAddress ? SVC_F.KEEP_CLIENT : 0,
          table_size: entry.tableSize,
          fingerprint: entry.fingerprint >>> 0,
        },
        values,
        i * serviceValue.size,
      );
    });
    this.#maps.map("services").updateBatch(keys, values);
  }

  /** Removes the services entry of `addr` only (the frontend stops matching). */
  deleteServiceEntry(addr: ServiceAddress): void {
    this.#maps.map("services").delete(this.#serviceKey(addr));
  }

  /** Marks `addr` as a VIP (the program then owns every packet to it). */
  putVipMarker(addr: string): void {
    this.#maps.map("services").update(
      vipMarkerKey(addr),
      serviceValue.encode({ id: 0, flags: SVC_F.VIP_MARKER, table_size: 0, fingerprint: 0 }),
    );
  }

  /** Removes the VIP marker of `addr`. */
  deleteVipMarker(addr: string): void {
    this.#maps.map("services").delete(vipMarkerKey(addr));
  }

  /** Every services entry: frontends with their values, and VIP markers. */
  listServices(): { frontends: ProgrammedService[]; vips: string[] } {
    const frontends: ProgrammedService[] = [];
    const vips: string[] = [];
    const each = (key: ServiceKey, value: ServiceValue): void => {
      if (key.port === 0 && key.proto === 0) {
        vips.push(key.addr);
        return;
      }
      const protocol = key.proto === PROTO_NUM.TCP
        ? "TCP"
        : key.proto === PROTO_NUM.UDP
        ? "UDP"
        : undefined;
      if (!protocol) return;
      frontends.push({
        address: { addr: key.addr, port: key.port, protocol },
        entry: {
          id: value.id,
          keepClientAddress: (value.flags & SVC_F.KEEP_CLIENT) !== 0,
          tableSize: value.table_size,
          fingerprint: value.fingerprint,
        },
      });
    };
    this.#maps.map("services").scan((keys, values, n) => {
      for (let i = 0; i < n; i++) {
        each(
          serviceKey.decode(keys, i * serviceKey.size),
          serviceValue.decode(values, i * serviceValue.size),
        );
      }
    });
    return { frontends, vips };
  }

  /** Writes backend slots in one batch. */
  writeBackends(slots: readonly BackendSlot[]): void {
    if (slots.length === 0) return;
    const keys = new Uint32Array(slots.length);
    const values = new Uint8Array(backend.size * slots.length);
    // One view and no object a slot (a first sync writes 100,000): the fields as backend.encode
    // lays them out (layout_test pins the offsets); it encodes what is not a dotted quad.
    const view = new DataView(values.buffer);
    const at = BACKEND_OFFSETS;
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i]!;
      checkId("backend", s.id, LIMITS.MAX_BACKENDS);
      keys[i] = s.id;
      const flags = BE_F.ACTIVE | (s.remote ? BE_F.REMOTE : 0);
      const v4 = parseIPv4(s.addr);
      const o = i * backend.size;
      if (v4 === undefined || s.port !== (s.port & 0xffff)) {
        backend.encode(
          { addr: s.addr, port: s.port, family: FAMILY_V4, flags, service_id: s.serviceId },
          values,
          o,
        );
        continue;
      }
      view.setUint32(o + at.addr, v4, false); // the other 12 bytes of the address stay 0
      view.setUint16(o + at.port, s.port, false);
      view.setUint8(o + at.family, FAMILY_V4);
      view.setUint8(o + at.flags, flags);
      view.setUint32(o + at.service_id, s.serviceId >>> 0, true);
    }
    this.#maps.map("backends").updateBatch(new Uint8Array(keys.buffer), values);
  }

  /** Empties backend slots in one batch: their tracked flows pick again. */
  clearBackends(ids: readonly number[]): void {
    if (ids.length === 0) return;
    const keys = Uint32Array.from(ids);
    this.#maps.map("backends").updateBatch(
      new Uint8Array(keys.buffer),
      new Uint8Array(backend.size * ids.length),
    );
  }

  /** Every backend slot in use. */
  listBackends(): BackendSlot[] {
    const out: BackendSlot[] = [];
    const flags = backend.fields.find((f) => f.name === "flags")!.offset;
    // A packed scan: copying each of the 131,072 slots into buffers of its own left
    // ~170 MiB of freed buffers in the allocator, kept for the process's life.
    this.#maps.map("backends").scan((keys, values, n) => {
      const ids = new DataView(keys.buffer);
      for (let i = 0; i < n; i++) {
        if (!(values[i * backend.size + flags]! & BE_F.ACTIVE)) continue;
        const b = backend.decode(values, i * backend.size);
        out.push({
          id: ids.getUint32(i * 4, true),
          addr: b.addr,
          port: b.port,
          remote: (b.flags & BE_F.REMOTE) !== 0,
          serviceId: b.service_id,
        });
      }
    });
    return out;
  }

  /** Zeroes the per-CPU counters of service ids (before an id is reused). */
  resetServiceCounters(ids: readonly number[]): void {
    zeroPerCpu(this.#maps.map("service_stats"), ids);
  }

  /** Zeroes the per-CPU counters of backend ids (before an id is reused). */
  resetBackendCounters(ids: readonly number[]): void {
    zeroPerCpu(this.#maps.map("backend_stats"), ids);
  }

  /**
   * Counters of every service or backend id, summed over CPUs, as numbers
   * (exact up to 2^53): one batch read of the whole array.
   */
  allCounters(kind: "service" | "backend"): Map<number, CounterTotals> {
    const steps = this.countersInSteps(kind);
    for (;;) {
      const step = steps.next();
      if (step.done) return step.value;
    }
  }

  /**
   * {@linkcode DataplaneMaps.allCounters} in steps of `chunk` ids, so that a
   * caller can let other work run between them: the backends' per-CPU array
   * (131,072 ids) read at once held the agent's loop for 60-300 ms on a busy
   * 2-core VM. Ids whose counters were reset between two steps may read as
   * before or after the reset.
   */
  *countersInSteps(
    kind: "service" | "backend",
    chunk = 8192,
  ): Generator<void, Map<number, CounterTotals>> {
    const m = this.#maps.map(kind === "service" ? "service_stats" : "backend_stats");
    const cpus = numPossibleCpus();
    const stride = Math.ceil(counters.size / 8) * 8;
    const out = new Map<number, CounterTotals>();
    const vsize = stride * cpus;
    const t = new Float64Array(6); // reused: 65,536 services are read every 10 s
    for (const [keys, values, n] of m.chunks(chunk)) {
      const ids = new Uint32Array(keys.buffer, 0, n);
      const words = new Uint32Array(values.buffer, 0, (n * vsize) / 4);
      for (let i = 0; i < n; i++) {
        let any = false;
        for (let c = 0; c < cpus; c++) {
          const base = (i * vsize + c * stride) / 4;
          for (let f = 0; f < 6; f++) {
            const lo = words[base + 2 * f]!;
            const hi = words[base + 2 * f + 1]!;
            if (lo | hi) {
              if (!any) t.fill(0);
              any = true;
              t[f]! += lo + hi * 4294967296;
            }
          }
        }
        if (!any) continue;
        out.set(ids[i]!, {
          packets: t[0]!,
          bytes: t[1]!,
          replyPackets: t[2]!,
          replyBytes: t[3]!,
          newFlows: t[4]!,
          rejected: t[5]!,
        });
      }
      yield;
    }
    return out;
  }

  /** Capacities of the maps the agent fills. */
  capacity(): MapCapacity {
    return {
      serviceIds: this.#maps.map("maglev").maxEntries - 1,
      serviceKeys: this.#maps.map("services").maxEntries,
      backendIds: this.#maps.map("backends").maxEntries - 1,
      conntrack: this.#maps.map("conntrack").maxEntries,
    };
  }

  /** Reads a service entry. */
  getService(addr: ServiceAddress): ServiceValue | undefined {
    const v = this.#maps.map("services").lookup(this.#serviceKey(addr));
    return v && serviceValue.decode(v);
  }

  /** Removes a service; the VIP marker goes with the address's last service. */
  deleteService(addr: ServiceAddress): void {
    const services = this.#maps.map("services");
    const value = this.getService(addr);
    if (!value) return;
    services.delete(this.#serviceKey(addr));
    this.#maps.map("maglev").delete(u32(value.id));
    const stillUsed = services.keys().some((k) => {
      const key = serviceKey.decode(k);
      return key.addr === addr.addr && key.port !== 0;
    });
    if (!stillUsed) services.delete(vipMarkerKey(addr.addr));
  }

  /**
   * Marks interface `ifindex` as facing this node's pods: new flows of clients
   * arriving there are source-translated to the node (hairpin), so replies of
   * backends on the same pod network come back through the program.
   */
  setPodInterface(ifindex: number): void {
    checkId("ifindex", ifindex, 2 ** 31);
    this.#maps.map("pod_ifaces").update(u32(ifindex), u32(IFACE_F.PODS));
    this.syncPodInterfaceSlots();
  }

  /** Unmarks interface `ifindex` (see {@linkcode DataplaneMaps.setPodInterface}). */
  deletePodInterface(ifindex: number): void {
    this.#maps.map("pod_ifaces").delete(u32(ifindex));
    this.syncPodInterfaceSlots();
  }

  /**
   * Rewrites `pod_iface_slots` (the loaded program's own, unpinned) from `pod_ifaces`: a slot
   * no listed interface has spares every other interface's packet the hash lookup. Run after
   * each load (the program starts from "unknown": ask `pod_ifaces`) and each change; a listed
   * interface is always in `pod_ifaces` before its slot says so, and out of it before its slot
   * stops saying so, so the program never misses one.
   */
  syncPodInterfaceSlots(): void {
    const n = LIMITS.POD_IFACE_SLOTS;
    const keys = new Uint32Array(n);
    const values = new Uint32Array(n).fill(POD_SLOT.NONE);
    for (let i = 0; i < n; i++) keys[i] = i;
    for (const k of this.#maps.map("pod_ifaces").keys()) {
      values[new DataView(k.buffer).getUint32(0, true) % n] = POD_SLOT.ASK;
    }
    this.#maps.map("pod_iface_slots").updateBatch(
      new Uint8Array(keys.buffer),
      new Uint8Array(values.buffer),
    );
  }

  /**
   * Deletes the conntrack entries the program no longer treats as live
   * (see agent/bpf/conntrack_sweep.ts); one batched read of the whole map.
   */
  sweepConntrack(options: SweepOptions = {}): SweepResult {
    return sweepConntrack(this.#maps.map("conntrack"), monotonicCoarseNs(), options);
  }

  /** {@linkcode DataplaneMaps.sweepConntrack} a chunk a step (see `sweepConntrackInSteps`). */
  sweepConntrackInSteps(options: SweepOptions = {}): Generator<void, SweepResult> {
    return sweepConntrackInSteps(this.#maps.map("conntrack"), monotonicCoarseNs(), options);
  }

  /** Every conntrack entry. */
  conntrack(): { key: FlowKey; value: FlowValue }[] {
    return this.#maps.map("conntrack").entries().map(([k, v]) => ({
      key: flowKey.decode(k),
      value: flowValue.decode(v),
    }));
  }

  /** Counters of service `id`, summed over CPUs. */
  serviceCounters(id: number): Counters {
    const v = this.#maps.map("service_stats").lookup(u32(id));
    return sumCounters(v ?? new Uint8Array(0), v ? numPossibleCpus() : 0);
  }

  /** Counters of backend `id`, summed over CPUs. */
  backendCounters(id: number): Counters {
    const v = this.#maps.map("backend_stats").lookup(u32(id));
    return sumCounters(v ?? new Uint8Array(0), v ? numPossibleCpus() : 0);
  }

  /** Program events (drops, rejects, translations), summed over CPUs. */
  events(): Record<(typeof EVENTS)[number], bigint> {
    const m = this.#maps.map("events");
    const out = {} as Record<(typeof EVENTS)[number], bigint>;
    EVENTS.forEach((name, i) => {
      const v = m.lookup(u32(i));
      let total = 0n;
      if (v) {
        const view = new DataView(v.buffer);
        for (let c = 0; c < numPossibleCpus(); c++) {
          total += view.getBigUint64(c * 8, true);
        }
      }
      out[name] = total;
    });
    return out;
  }

  #serviceKey(addr: ServiceAddress, into?: Uint8Array, at = 0): Uint8Array<ArrayBuffer> {
    if (!(addr.port >= 1 && addr.port <= 65535)) {
      throw new RangeError(`port ${addr.port}`);
    }
    return serviceKey.encode(
      {
        addr: addr.addr,
        port: addr.port,
        proto: PROTO_NUM[addr.protocol],
        family: FAMILY_V4,
      },
      into,
      at,
    );
  }

  /** A backend's identity for Maglev, the same on every node: `addr:port`. */
  #maglevKey(id: number): string {
    const b = this.getBackend(id);
    if (!b) {
      throw new RangeError(`service refers to backend ${id}, which is not set`);
    }
    return `${b.addr}:${b.port}`;
  }
}

function checkId(what: string, id: number, max: number): void {
  if (!Number.isInteger(id) || id < 1 || id >= max) {
    throw new RangeError(`${what} id ${id} is outside 1..${max - 1}`);
  }
}
