/**
 * Struct layouts and constants shared with the C program (`bpf/structs.h`,
 * `bpf/consts.h`) and with libbpf's option structs. Each struct is written
 * once here as a field list; offsets follow C alignment rules, and
 * `layout_test.ts` checks them against the compiled object's BTF and a C
 * probe of libbpf's headers.
 *
 * @module
 */

/** Field types: host-order integers, network-order integers, 16-byte and IPv4 addresses. */
export type FieldType = "u8" | "u16" | "u32" | "u64" | "be16" | "be32" | "addr" | "ipv4";

const SIZES: Record<FieldType, number> = {
  u8: 1,
  u16: 2,
  u32: 4,
  u64: 8,
  be16: 2,
  be32: 4,
  addr: 16,
  ipv4: 4,
};
const ALIGN: Record<FieldType, number> = { ...SIZES, addr: 4 };

/** JavaScript value of each field type. */
export type FieldValue<T extends FieldType> = T extends "u64" ? bigint
  : T extends "addr" | "ipv4" ? string
  : number;

/** One field with its computed offset. */
export interface FieldLayout {
  /** Field name, as in the C struct. */
  name: string;
  /** Field type. */
  type: FieldType;
  /** Byte offset. */
  offset: number;
  /** Byte size. */
  size: number;
}

/** A C struct: its name, size and fields, with encode/decode to bytes. */
export interface Struct<T> {
  /** The C struct name. */
  readonly name: string;
  /** sizeof(struct name). */
  readonly size: number;
  /** Fields in declaration order. */
  readonly fields: readonly FieldLayout[];
  /** Encodes `value` at `offset` of `into` (a fresh buffer when omitted). */
  encode(value: T, into?: Uint8Array, offset?: number): Uint8Array<ArrayBuffer>;
  /** Decodes a value from `bytes` at `offset`. */
  decode(bytes: Uint8Array, offset?: number): T;
}

type Spec = readonly (readonly [string, FieldType])[];
type ValueOf<S extends Spec> = {
  [E in S[number] as E[0]]: FieldValue<E[1]>;
};

/** Defines a struct from `[name, type]` pairs in C declaration order. */
export function defineStruct<const S extends Spec>(
  name: string,
  spec: S,
): Struct<ValueOf<S>> {
  const fields: FieldLayout[] = [];
  let offset = 0;
  let maxAlign = 1;
  for (const [fname, type] of spec) {
    const align = ALIGN[type];
    maxAlign = Math.max(maxAlign, align);
    offset = Math.ceil(offset / align) * align;
    fields.push({ name: fname, type, offset, size: SIZES[type] });
    offset += SIZES[type];
  }
  const size = Math.ceil(offset / maxAlign) * maxAlign;
  return {
    name,
    size,
    fields,
    encode(value, into, at = 0) {
      const buf = (into ?? new Uint8Array(size)) as Uint8Array<ArrayBuffer>;
      const view = new DataView(buf.buffer, buf.byteOffset + at, size);
      const record = value as Record<string, unknown>;
      for (const f of fields) writeField(view, f, record[f.name]);
      return buf;
    },
    decode(bytes, at = 0) {
      const view = new DataView(bytes.buffer, bytes.byteOffset + at, size);
      const out: Record<string, unknown> = {};
      for (const f of fields) out[f.name] = readField(view, f);
      return out as ValueOf<S>;
    },
  };
}

function writeField(view: DataView, f: FieldLayout, v: unknown): void {
  switch (f.type) {
    case "u8":
      return view.setUint8(f.offset, Number(v ?? 0));
    case "u16":
      return view.setUint16(f.offset, Number(v ?? 0), true);
    case "u32":
      return view.setUint32(f.offset, Number(v ?? 0) >>> 0, true);
    case "u64":
      return view.setBigUint64(
        f.offset,
        BigInt((v as bigint | undefined) ?? 0n),
        true,
      );
    case "be16":
      return view.setUint16(f.offset, Number(v ?? 0), false);
    case "be32":
      return view.setUint32(f.offset, Number(v ?? 0) >>> 0, false);
    case "addr": {
      const text = String(v ?? "0.0.0.0");
      const v4 = parseIPv4(text);
      if (v4 === undefined) addrBytes(text); // throws the error of a non-IPv4 address
      view.setUint32(f.offset, v4!, false);
      for (let i = 4; i < 16; i += 4) view.setUint32(f.offset + i, 0);
      return;
    }
    case "ipv4": {
      const n = parseIPv4(String(v ?? "0.0.0.0"));
      if (n === undefined) throw new RangeError(`not an IPv4 address: ${JSON.stringify(v)}`);
      return view.setUint32(f.offset, n, false);
    }
  }
}

function readField(view: DataView, f: FieldLayout): unknown {
  switch (f.type) {
    case "u8":
      return view.getUint8(f.offset);
    case "u16":
      return view.getUint16(f.offset, true);
    case "u32":
      return view.getUint32(f.offset, true);
    case "u64":
      return view.getBigUint64(f.offset, true);
    case "be16":
      return view.getUint16(f.offset, false);
    case "be32":
      return view.getUint32(f.offset, false);
    case "addr": {
      const b = new Uint8Array(view.buffer, view.byteOffset + f.offset, 16);
      return addrString(b);
    }
    case "ipv4":
      return formatIPv4(view.getUint32(f.offset, false));
  }
}

/** The 16-byte map form of an address: IPv4 in bytes 0..3, the rest zero. */
export function addrBytes(addr: string): Uint8Array {
  const out = new Uint8Array(16);
  const v4 = parseIPv4(addr);
  if (v4 !== undefined) {
    new DataView(out.buffer).setUint32(0, v4, false);
    return out;
  }
  throw new RangeError(
    `not an IPv4 address: ${JSON.stringify(addr)} (IPv6 comes later)`,
  );
}

function addrString(b: Uint8Array): string {
  if (b.subarray(4).every((x) => x === 0)) {
    return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  }
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    words.push((((b[i] ?? 0) << 8) | (b[i + 1] ?? 0)).toString(16));
  }
  return words.join(":");
}

/** Parses dotted-quad IPv4 (1-3 digits a part, each <= 255) into a 32-bit number, or undefined. */
export function parseIPv4(s: string): number | undefined {
  // A scan instead of a regular expression: the agent encodes ~10^5 addresses per sync.
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46; // a final "." closes the last part
    if (c >= 48 && c <= 57) {
      if (++digits > 3) return undefined;
      part = part * 10 + (c - 48);
    } else if (c === 46) {
      if (digits === 0 || part > 255 || ++parts > 4) return undefined;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else {
      return undefined;
    }
  }
  return parts === 4 ? value >>> 0 : undefined;
}

/** Formats a 32-bit number as dotted-quad IPv4. */
export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

// ---- constants of bpf/consts.h ----

/** Map capacities and limits (bpf/consts.h). */
export const LIMITS = {
  MAX_SERVICES: 16384,
  MAX_SERVICE_KEYS: 32768,
  MAX_BACKENDS: 131072,
  MAGLEV_MAX: 65537,
  CT_MAX: 262144,
  MAX_POD_IFACES: 256,
  /** Slots of pod_iface_slots (ifindex % POD_IFACE_SLOTS). */
  POD_IFACE_SLOTS: 1024,
  VERIFIED_MAX: 65536,
  /** Slots of the events map: room for new events without changing its pinned definition. */
  EVENT_SLOTS: 32,
} as const;

/** Address family values of keys. */
export const FAMILY_V4 = 2;
/** IPv6 family value, for later. */
export const FAMILY_V6 = 10;
/** IP protocol numbers. */
export const PROTO = { TCP: 6, UDP: 17 } as const;
/** Backend id reserved for the rejected share of a Maglev table. */
export const BACKEND_REJECT = 0;
/** service_value.flags */
export const SVC_F = { VIP_MARKER: 1, KEEP_CLIENT: 2 } as const;
/** backend.flags */
export const BE_F = { ACTIVE: 1, REMOTE: 2 } as const;
/** pod_ifaces values: what an interface faces. */
export const IFACE_F = { PODS: 1 } as const;
/** pod_iface_slots values: whether an ifindex of the slot may be listed in pod_ifaces. */
export const POD_SLOT = { UNKNOWN: 0, NONE: 1, ASK: 2 } as const;
/** flow_key.dir */
export const DIR = { INGRESS: 0, EGRESS: 1 } as const;
/** flow_value.kind */
export const CT_KIND = { DNAT: 1, SNAT: 2, REPLY: 3 } as const;
/** flow_value.state */
export const CT_STATE = {
  NEW: 0,
  ESTABLISHED: 1,
  CLOSING: 2,
  CLOSED: 3,
  SYN_RECV: 4,
  PICKUP: 5,
} as const;
/** `BPF_F_INNER_MAP`: inner maps of one outer map may differ in max_entries. */
export const BPF_F_INNER_MAP = 1 << 12;
/** `BPF_F_MMAPABLE`: an array map's values can be mmap'd. */
export const BPF_F_MMAPABLE = 1 << 10;
/** map_flags of every inner Maglev table (`struct maglev_table` in bpf/maps.h). */
export const MAGLEV_INNER_FLAGS: number = BPF_F_INNER_MAP | BPF_F_MMAPABLE;
/** Seed of flow_hash(). */
export const FLOW_HASH_SEED = 0x626c7874;
/** Indexes of the events map (enum dp_event). */
export const EVENTS = [
  "frag_dropped",
  "malformed_dropped",
  "reject_tcp",
  "reject_udp",
  "reject_failed",
  "icmp_translated",
  "snat_exhausted",
  "backend_gone",
  "ct_create_failed",
  "snat_half_open_taken",
  "snat_wait_dropped",
  "forward_via_stack",
] as const;

// ---- structs of bpf/structs.h ----

/** What a client addresses: the key of the services map. */
export const serviceKey = defineStruct(
  "service_key",
  [
    ["addr", "addr"],
    ["port", "be16"],
    ["proto", "u8"],
    ["family", "u8"],
  ] as const,
);

/** A service: its id, flags and Maglev table size. */
export const serviceValue = defineStruct(
  "service_value",
  [
    ["id", "u32"],
    ["flags", "u32"],
    ["table_size", "u32"],
    ["fingerprint", "u32"],
  ] as const,
);

/** A backend, keyed by backend id in the backends array. */
export const backend = defineStruct(
  "backend",
  [
    ["addr", "addr"],
    ["port", "be16"],
    ["family", "u8"],
    ["flags", "u8"],
    ["service_id", "u32"],
  ] as const,
);

/** Node-wide settings: the single entry of the config map. */
export const config = defineStruct(
  "config",
  [
    ["node_addr", "addr"],
    ["snat_port_min", "u16"],
    ["snat_port_max", "u16"],
    ["flags", "u32"],
  ] as const,
);

/** A packet's IPv4 tuple as one hook sees it: the conntrack key (16 bytes). */
export const flowKey = defineStruct(
  "flow_key",
  [
    ["saddr", "ipv4"],
    ["daddr", "ipv4"],
    ["sport", "be16"],
    ["dport", "be16"],
    ["proto", "u8"],
    ["family", "u8"],
    ["dir", "u8"],
    ["reserved", "u8"],
  ] as const,
);

/** A conntrack entry: the tuple to rewrite to, and state. */
export const flowValue = defineStruct(
  "flow_value",
  [
    ["saddr", "addr"],
    ["daddr", "addr"],
    ["sport", "be16"],
    ["dport", "be16"],
    ["kind", "u8"],
    ["state", "u8"],
    ["flags", "u8"],
    ["reserved", "u8"],
    ["service_id", "u32"],
    ["backend_id", "u32"],
    ["created", "u64"],
    ["last_seen", "u64"],
  ] as const,
);

/** Per-CPU counters of a service or backend. */
export const counters = defineStruct(
  "counters",
  [
    ["packets", "u64"],
    ["bytes", "u64"],
    ["reply_packets", "u64"],
    ["reply_bytes", "u64"],
    ["new_flows", "u64"],
    ["rejected", "u64"],
  ] as const,
);

/** The coarse clock as one CPU last read it (the per-CPU `clock` map; the program's own cache). */
export const clockCache = defineStruct(
  "clock_cache",
  [
    ["jiffies", "u64"],
    ["ns", "u64"],
  ] as const,
);

/** Decoded `struct service_key`. */
export type ServiceKey = ReturnType<typeof serviceKey.decode>;
/** Decoded `struct service_value`. */
export type ServiceValue = ReturnType<typeof serviceValue.decode>;
/** Decoded `struct backend`. */
export type Backend = ReturnType<typeof backend.decode>;
/** Decoded `struct config`. */
export type Config = ReturnType<typeof config.decode>;
/** Decoded `struct flow_key`. */
export type FlowKey = ReturnType<typeof flowKey.decode>;
/** Decoded `struct flow_value`. */
export type FlowValue = ReturnType<typeof flowValue.decode>;
/** Decoded `struct counters`. */
export type Counters = ReturnType<typeof counters.decode>;

/** Every struct the C program shares with the agent, for the BTF check. */
export const SHARED_STRUCTS = [
  serviceKey,
  serviceValue,
  backend,
  config,
  flowKey,
  flowValue,
  counters,
  clockCache,
] as const;

// ---- libbpf 1.1 option structs (x86-64), checked by a C probe ----

/** Offsets and sizes of the libbpf option structs the bindings fill. */
export const LIBBPF_OPTS = {
  bpf_test_run_opts: {
    size: 80,
    fields: {
      data_in: { offset: 8, size: 8 },
      data_out: { offset: 16, size: 8 },
      data_size_in: { offset: 24, size: 4 },
      data_size_out: { offset: 28, size: 4 },
      ctx_in: { offset: 32, size: 8 },
      ctx_out: { offset: 40, size: 8 },
      ctx_size_in: { offset: 48, size: 4 },
      ctx_size_out: { offset: 52, size: 4 },
      retval: { offset: 56, size: 4 },
      repeat: { offset: 60, size: 4 },
      duration: { offset: 64, size: 4 },
      flags: { offset: 68, size: 4 },
      cpu: { offset: 72, size: 4 },
      batch_size: { offset: 76, size: 4 },
    },
  },
  bpf_tc_hook: {
    size: 24,
    fields: {
      ifindex: { offset: 8, size: 4 },
      attach_point: { offset: 12, size: 4 },
      parent: { offset: 16, size: 4 },
    },
  },
  bpf_tc_opts: {
    size: 32,
    fields: {
      prog_fd: { offset: 8, size: 4 },
      flags: { offset: 12, size: 4 },
      prog_id: { offset: 16, size: 4 },
      handle: { offset: 20, size: 4 },
      priority: { offset: 24, size: 4 },
    },
  },
  bpf_map_batch_opts: {
    size: 24,
    fields: {
      elem_flags: { offset: 8, size: 8 },
      flags: { offset: 16, size: 8 },
    },
  },
  bpf_map_create_opts: {
    size: 48,
    fields: {
      inner_map_fd: { offset: 24, size: 4 },
      map_flags: { offset: 28, size: 4 },
    },
  },
  bpf_link_update_opts: {
    size: 16,
    fields: {
      flags: { offset: 8, size: 4 },
      old_prog_fd: { offset: 12, size: 4 },
    },
  },
} as const;

/** Size of `struct __sk_buff`, the ctx of test runs. */
export const SK_BUFF_SIZE = 192;
/** Offset of `__sk_buff.ifindex`. */
export const SK_BUFF_IFINDEX = 40;
/** Offset of `__sk_buff.mark` (a test run may set it). */
export const SK_BUFF_MARK = 8;
/** Offset of `__sk_buff.ingress_ifindex`. */
export const SK_BUFF_INGRESS_IFINDEX = 36;
