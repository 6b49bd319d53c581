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
  serviceKey,
  type ServiceValue,
  serviceValue,
  SVC_F,
} from "./layout.ts";
import { MAGLEV_SIZE, type MaglevEntry, maglevTable, rejectEntry } from "./maglev.ts";
import { BpfMap, createMap, MAP_TYPE, numPossibleCpus } from "./object.ts";

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

const PROTO_NUM = { TCP: 6, UDP: 17 } as const;

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
export class DataplaneMaps {
  readonly #maps: MapSet;

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
        reserved: 0,
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
    const table = maglevTable(entries);
    if (table.length > 0) {
      const inner = createMap(MAP_TYPE.ARRAY, "blixt_maglev", {
        keySize: 4,
        valueSize: 4,
        maxEntries: MAGLEV_SIZE,
      });
      try {
        const keys = new Uint32Array(table.length);
        for (let i = 0; i < keys.length; i++) keys[i] = i;
        inner.updateBatch(
          new Uint8Array(keys.buffer),
          new Uint8Array(
            table.buffer,
            table.byteOffset,
            table.byteLength,
          ) as Uint8Array<
            ArrayBuffer
          >,
        );
        this.#maps.map("maglev").update(u32(spec.id), u32(inner.fd));
      } finally {
        inner.close(); // the outer map holds the table now
      }
    }
    const flags = spec.keepClientAddress ? SVC_F.KEEP_CLIENT : 0;
    this.#maps.map("services").update(
      this.#serviceKey(addr),
      serviceValue.encode({
        id: spec.id,
        flags,
        table_size: table.length,
        reserved: 0,
      }),
    );
    this.#maps.map("services").update(
      serviceKey.encode({
        addr: addr.addr,
        port: 0,
        proto: 0,
        family: FAMILY_V4,
      }),
      serviceValue.encode({
        id: 0,
        flags: SVC_F.VIP_MARKER,
        table_size: 0,
        reserved: 0,
      }),
    );
    return table;
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
    if (!stillUsed) {
      services.delete(
        serviceKey.encode({
          addr: addr.addr,
          port: 0,
          proto: 0,
          family: FAMILY_V4,
        }),
      );
    }
  }

  /**
   * Marks interface `ifindex` as facing this node's pods: new flows of clients
   * arriving there are source-translated to the node (hairpin), so replies of
   * backends on the same pod network come back through the program.
   */
  setPodInterface(ifindex: number): void {
    checkId("ifindex", ifindex, 2 ** 31);
    this.#maps.map("pod_ifaces").update(u32(ifindex), u32(IFACE_F.PODS));
  }

  /** Unmarks interface `ifindex` (see {@linkcode DataplaneMaps.setPodInterface}). */
  deletePodInterface(ifindex: number): void {
    this.#maps.map("pod_ifaces").delete(u32(ifindex));
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

  #serviceKey(addr: ServiceAddress): Uint8Array<ArrayBuffer> {
    if (!(addr.port >= 1 && addr.port <= 65535)) {
      throw new RangeError(`port ${addr.port}`);
    }
    return serviceKey.encode({
      addr: addr.addr,
      port: addr.port,
      proto: PROTO_NUM[addr.protocol],
      family: FAMILY_V4,
    });
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
