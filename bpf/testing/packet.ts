/**
 * Builds and reads Ethernet/IPv4/TCP/UDP/ICMP frames for packet tests and
 * benchmarks, and checks every checksum of a frame.
 *
 * @module
 */

import { formatIPv4, parseIPv4 } from "../../agent/bpf/layout.ts";

/** TCP flag bits. */
export const TCP = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
} as const;

/** TC verdicts (linux/pkt_cls.h). */
export const TC_ACT = { OK: 0, SHOT: 2, REDIRECT: 7 } as const;

/** An Ethernet/IPv4 frame to build. */
export interface PacketSpec {
  /** Source MAC (default 02:00:00:00:00:01). */
  srcMac?: string;
  /** Destination MAC (default 02:00:00:00:00:02). */
  dstMac?: string;
  /** EtherType (default IPv4). */
  etherType?: number;
  /** Source address. */
  src: string;
  /** Destination address. */
  dst: string;
  /** TTL (64). */
  ttl?: number;
  /** TOS (0). */
  tos?: number;
  /** IP id (0x1234). */
  id?: number;
  /** Fragment field: flags (DF 0x4000, MF 0x2000) | offset in 8-byte units. */
  frag?: number;
  /** IP options (a multiple of 4 bytes). */
  ipOptions?: number[];
  /** Override IPv4 total length (to make it wrong). */
  totalLength?: number;
  /** TCP segment. */
  tcp?: {
    sport: number;
    dport: number;
    seq?: number;
    ack?: number;
    flags: number;
    window?: number;
  };
  /** UDP datagram; zeroChecksum sends "no checksum". */
  udp?: { sport: number; dport: number; zeroChecksum?: boolean };
  /** ICMP message: the payload is the quoted packet (no Ethernet). */
  icmp?: { type: number; code: number; rest?: number };
  /** Other IP protocol number with raw payload. */
  proto?: number;
  /** Payload bytes after the L4 header. */
  payload?: Uint8Array;
}

function mac(s: string): number[] {
  return s.split(":").map((x) => parseInt(x, 16));
}

function ip(s: string): number {
  const v = parseIPv4(s);
  if (v === undefined) throw new RangeError(`bad IPv4 ${s}`);
  return v;
}

/** Ones' complement sum of `bytes` folded to 16 bits, starting from `initial`. */
export function onesSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    sum += (bytes[i]! << 8) | bytes[i + 1]!;
  }
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The Internet checksum of `bytes` (with `initial` partial sum). */
export function checksum(bytes: Uint8Array, initial = 0): number {
  return ~onesSum(bytes, initial) & 0xffff;
}

function pseudoSum(
  src: number,
  dst: number,
  proto: number,
  len: number,
): number {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  v.setUint32(0, src);
  v.setUint32(4, dst);
  v.setUint8(9, proto);
  v.setUint16(10, len);
  return onesSum(b);
}

/** Builds the IP packet (no Ethernet) of `spec`. */
export function buildIp(spec: PacketSpec): Uint8Array<ArrayBuffer> {
  const payload = spec.payload ?? new Uint8Array(0);
  let proto = spec.proto ?? 0;
  let l4: Uint8Array;
  if (spec.tcp) {
    proto = 6;
    l4 = new Uint8Array(20 + payload.length);
    const v = new DataView(l4.buffer);
    v.setUint16(0, spec.tcp.sport);
    v.setUint16(2, spec.tcp.dport);
    v.setUint32(4, spec.tcp.seq ?? 1000);
    v.setUint32(8, spec.tcp.ack ?? 0);
    v.setUint8(12, 5 << 4);
    v.setUint8(13, spec.tcp.flags);
    v.setUint16(14, spec.tcp.window ?? 64240);
    l4.set(payload, 20);
  } else if (spec.udp) {
    proto = 17;
    l4 = new Uint8Array(8 + payload.length);
    const v = new DataView(l4.buffer);
    v.setUint16(0, spec.udp.sport);
    v.setUint16(2, spec.udp.dport);
    v.setUint16(4, l4.length);
    l4.set(payload, 8);
  } else if (spec.icmp) {
    proto = 1;
    l4 = new Uint8Array(8 + payload.length);
    const v = new DataView(l4.buffer);
    v.setUint8(0, spec.icmp.type);
    v.setUint8(1, spec.icmp.code);
    v.setUint32(4, spec.icmp.rest ?? 0);
    l4.set(payload, 8);
    v.setUint16(2, checksum(l4));
  } else {
    l4 = payload;
  }
  const opts = spec.ipOptions ?? [];
  const ihl = 20 + opts.length;
  const pkt = new Uint8Array(ihl + l4.length);
  const v = new DataView(pkt.buffer);
  v.setUint8(0, 0x40 | (ihl / 4));
  v.setUint8(1, spec.tos ?? 0);
  v.setUint16(2, spec.totalLength ?? pkt.length);
  v.setUint16(4, spec.id ?? 0x1234);
  v.setUint16(6, spec.frag ?? 0x4000);
  v.setUint8(8, spec.ttl ?? 64);
  v.setUint8(9, proto);
  v.setUint32(12, ip(spec.src));
  v.setUint32(16, ip(spec.dst));
  pkt.set(opts, 20);
  v.setUint16(10, checksum(pkt.subarray(0, ihl)));
  pkt.set(l4, ihl);
  const lv = new DataView(pkt.buffer, ihl);
  if (spec.tcp) {
    lv.setUint16(
      16,
      checksum(l4, pseudoSum(ip(spec.src), ip(spec.dst), 6, l4.length)),
    );
  } else if (spec.udp && !spec.udp.zeroChecksum) {
    const c = checksum(
      l4,
      pseudoSum(ip(spec.src), ip(spec.dst), 17, l4.length),
    );
    lv.setUint16(6, c === 0 ? 0xffff : c);
  }
  return pkt;
}

/** Builds a whole Ethernet frame. */
export function buildPacket(spec: PacketSpec): Uint8Array<ArrayBuffer> {
  const body = spec.etherType !== undefined && spec.etherType !== 0x0800
    ? (spec.payload ?? new Uint8Array(28))
    : buildIp(spec);
  const frame = new Uint8Array(14 + body.length);
  frame.set(mac(spec.dstMac ?? "02:00:00:00:00:02"), 0);
  frame.set(mac(spec.srcMac ?? "02:00:00:00:00:01"), 6);
  new DataView(frame.buffer).setUint16(12, spec.etherType ?? 0x0800);
  frame.set(body, 14);
  return frame;
}

/** A decoded frame, for assertions. */
export interface Decoded {
  /** Destination MAC. */
  dstMac: string;
  /** Source MAC. */
  srcMac: string;
  /** IPv4 source. */
  src: string;
  /** IPv4 destination. */
  dst: string;
  /** IP protocol. */
  proto: number;
  /** TTL. */
  ttl: number;
  /** IP total length. */
  totalLength: number;
  /** TCP/UDP ports, TCP fields, or ICMP type/code. */
  sport?: number;
  /** Destination port. */
  dport?: number;
  /** TCP sequence number. */
  seq?: number;
  /** TCP ack number. */
  ack?: number;
  /** TCP flags. */
  flags?: number;
  /** ICMP type. */
  icmpType?: number;
  /** ICMP code. */
  icmpCode?: number;
  /** The quoted packet of an ICMP error, decoded (IP level, no MACs). */
  inner?: Decoded;
}

function macStr(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

function decodeIp(
  p: Uint8Array,
  quoted: boolean,
): Omit<Decoded, "dstMac" | "srcMac"> {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const ihl = (v.getUint8(0) & 15) * 4;
  const d: Omit<Decoded, "dstMac" | "srcMac"> = {
    src: formatIPv4(v.getUint32(12)),
    dst: formatIPv4(v.getUint32(16)),
    proto: v.getUint8(9),
    ttl: v.getUint8(8),
    totalLength: v.getUint16(2),
  };
  const l4 = new DataView(p.buffer, p.byteOffset + ihl, p.byteLength - ihl);
  if (d.proto === 6 || d.proto === 17) {
    d.sport = l4.getUint16(0);
    d.dport = l4.getUint16(2);
    if (d.proto === 6 && l4.byteLength >= 14) {
      d.seq = l4.getUint32(4);
      d.ack = l4.getUint32(8);
      d.flags = l4.getUint8(13);
    }
  } else if (d.proto === 1 && !quoted) {
    d.icmpType = l4.getUint8(0);
    d.icmpCode = l4.getUint8(1);
    if (l4.byteLength >= 28) {
      d.inner = decodeIp(p.subarray(ihl + 8), true) as Decoded;
    }
  }
  return d;
}

/** Decodes an Ethernet/IPv4 frame. */
export function decodePacket(frame: Uint8Array): Decoded {
  return {
    dstMac: macStr(frame.subarray(0, 6)),
    srcMac: macStr(frame.subarray(6, 12)),
    ...decodeIp(frame.subarray(14), false),
  };
}

/**
 * Every checksum problem of an IPv4 frame: IP header, TCP/UDP (with pseudo
 * header; UDP 0 means none), ICMP, and an ICMP error's inner IP header.
 * Empty when all are right.
 */
export function checksumErrors(frame: Uint8Array): string[] {
  const errors: string[] = [];
  if (frame.length < 34 || frame[12] !== 0x08 || frame[13] !== 0x00) {
    return errors;
  }
  const p = frame.subarray(14);
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const ihl = (v.getUint8(0) & 15) * 4;
  const total = v.getUint16(2);
  if (total > p.length) return [`IP total length ${total} > ${p.length} bytes`];
  if (onesSum(p.subarray(0, ihl)) !== 0xffff) errors.push("IP header checksum");
  const proto = v.getUint8(9);
  const l4 = p.subarray(ihl, total);
  const src = v.getUint32(12);
  const dst = v.getUint32(16);
  if (
    proto === 6 && onesSum(l4, pseudoSum(src, dst, 6, l4.length)) !== 0xffff
  ) {
    errors.push("TCP checksum");
  }
  if (proto === 17) {
    const c = new DataView(l4.buffer, l4.byteOffset).getUint16(6);
    if (c !== 0 && onesSum(l4, pseudoSum(src, dst, 17, l4.length)) !== 0xffff) {
      errors.push("UDP checksum");
    }
  }
  if (proto === 1) {
    if (onesSum(l4) !== 0xffff) errors.push("ICMP checksum");
    if (l4.length >= 28) {
      const inner = l4.subarray(8);
      const innerIhl = (inner[0]! & 15) * 4;
      if (
        inner.length >= innerIhl &&
        onesSum(inner.subarray(0, innerIhl)) !== 0xffff
      ) {
        errors.push("ICMP inner IP header checksum");
      }
      // A quoted packet that is complete has a checkable L4 checksum too.
      const iv = new DataView(inner.buffer, inner.byteOffset, inner.byteLength);
      const innerTotal = iv.getUint16(2);
      const innerProto = iv.getUint8(9);
      if (
        innerTotal <= inner.length && (innerProto === 6 || innerProto === 17)
      ) {
        const seg = inner.subarray(innerIhl, innerTotal);
        const udpNone = innerProto === 17 && iv.getUint16(innerIhl + 6) === 0;
        const ps = pseudoSum(
          iv.getUint32(12),
          iv.getUint32(16),
          innerProto,
          seg.length,
        );
        if (!udpNone && onesSum(seg, ps) !== 0xffff) {
          errors.push("ICMP inner L4 checksum");
        }
      }
    }
  }
  return errors;
}

/**
 * A copy of a frame with checksum fields normalized (IP header: 0; present
 * TCP/UDP/ICMP checksums: 0xffff; an absent UDP checksum stays 0), so two
 * frames can be compared byte for byte while checksumErrors() checks them.
 */
export function withoutChecksums(frame: Uint8Array): Uint8Array {
  const f = frame.slice();
  if (f.length < 34 || f[12] !== 0x08 || f[13] !== 0x00) return f;
  const norm = (at: number) => {
    if (at >= 0 && at + 1 < f.length && (f[at] || f[at + 1])) {
      f[at] = f[at + 1] = 0xff;
    }
  };
  const ihl = (f[14]! & 15) * 4;
  f[24] = f[25] = 0;
  const proto = f[23];
  const l4 = 14 + ihl;
  norm(
    proto === 6 ? l4 + 16 : proto === 17 ? l4 + 6 : proto === 1 ? l4 + 2 : -1,
  );
  if (proto === 1 && f.length >= l4 + 28) {
    const inner = l4 + 8;
    f[inner + 10] = f[inner + 11] = 0;
    const innerIhl = (f[inner]! & 15) * 4;
    const innerProto = f[inner + 9];
    norm(
      innerProto === 17 ? inner + innerIhl + 6 : innerProto === 6 ? inner + innerIhl + 16 : -1,
    );
  }
  return f;
}
