/**
 * IP addresses and CIDR prefixes as numbers, for validation and pools.
 *
 * @module
 */

/** A parsed IP address: its family and its value as an unsigned integer. */
export interface IpAddress {
  /** 4 or 6. */
  family: 4 | 6;
  /** The address as an unsigned 32 or 128 bit integer. */
  value: bigint;
}

/** A parsed CIDR prefix. */
export interface IpPrefix {
  /** 4 or 6. */
  family: 4 | 6;
  /** First address of the prefix. */
  first: bigint;
  /** Last address of the prefix. */
  last: bigint;
  /** Prefix length. */
  bits: number;
}

const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * Parses a textual IPv4 (dotted decimal) or IPv6 address; null when it is not one.
 *
 * @example
 * ```ts
 * parseIp("198.18.0.1"); // { family: 4, value: 3323068417n }
 * ```
 */
export function parseIp(text: string): IpAddress | null {
  if (text.includes(":")) return parseIpv6(text);
  const v4 = ipv4Value(text);
  return v4 === null ? null : { family: 4, value: BigInt(v4) };
}

/**
 * Dotted decimal (0-255 a part, no leading zeros) as a number, or null; a
 * scan rather than regular expressions, since an agent validates ~10^5
 * addresses a sync.
 */
function ipv4Value(text: string): number | null {
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // a final "." closes the last part
    if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0) return null; // leading zero
      if (++digits > 3) return null;
      part = part * 10 + (c - 48);
    } else if (c === 46) {
      if (digits === 0 || part > 255 || ++parts > 4) return null;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else {
      return null;
    }
  }
  return parts === 4 ? value : null;
}

function parseIpv6(text: string): IpAddress | null {
  if (text.includes("%")) return null; // zones do not name a VIP
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (s: string): string[] | null => {
    if (s === "") return [];
    const out: string[] = [];
    const items = s.split(":");
    for (const [i, item] of items.entries()) {
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIp(item);
        if (v4 === null || v4.family !== 4) return null;
        out.push(
          (v4.value >> 16n).toString(16),
          (v4.value & 0xffffn).toString(16),
        );
      } else if (IPV6_GROUP.test(item)) {
        out.push(item);
      } else {
        return null;
      }
    }
    return out;
  };
  const head = groups(halves[0] ?? "");
  const tail = halves.length === 2 ? groups(halves[1] ?? "") : [];
  if (head === null || tail === null) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...Array<string>(missing).fill("0"), ...tail];
  let value = 0n;
  for (const g of all) value = (value << 16n) | BigInt(parseInt(g, 16));
  return { family: 6, value };
}

/** Formats an address in its canonical text form (RFC 5952 for IPv6). */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => ((ip.value >> s) & 0xffn).toString())
      .join(".");
  }
  const groups: number[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) {
    groups.push(Number((ip.value >> s) & 0xffffn));
  }
  // RFC 5952: compress the longest run of two or more zero groups, the first on ties
  let bestStart = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/** Returns the canonical form of an address, or null when it is not one. */
export function canonicalIp(text: string): string | null {
  const ip = parseIp(text);
  return ip === null ? null : formatIp(ip);
}

/** Parses `address/bits`; null when it is not a CIDR prefix. */
export function parseCidr(text: string): IpPrefix | null {
  const [addr, bitsText, extra] = text.split("/");
  if (addr === undefined || bitsText === undefined || extra !== undefined) {
    return null;
  }
  if (!/^[0-9]{1,3}$/.test(bitsText)) return null;
  const ip = parseIp(addr);
  if (ip === null) return null;
  const width = ip.family === 4 ? 32 : 128;
  const bits = Number(bitsText);
  if (bits > width) return null;
  const hostBits = BigInt(width - bits);
  const first = (ip.value >> hostBits) << hostBits;
  const last = first | ((1n << hostBits) - 1n);
  return { family: ip.family, first, last, bits };
}
