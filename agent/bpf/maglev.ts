/**
 * Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016), computed
 * in user space, and the flow hash the data plane uses to index the table.
 *
 * Every node builds the same table from the same backends: the permutation
 * of a backend depends only on its identity (`key`, e.g. `ip:port`), never on
 * the node-local backend id stored in the slots.
 *
 * @module
 */

import { BACKEND_REJECT, FLOW_HASH_SEED, LIMITS, parseIPv4 } from "./layout.ts";

/**
 * Slots of every Maglev table: 65537, a prime, kept constant because
 * changing the size of a table remaps nearly every flow. It is >= 100 x the
 * backends of a service up to 655 backends; past that the spread gets
 * coarser (each backend still gets ~M/N slots) but nothing breaks.
 */
export const MAGLEV_SIZE: number = LIMITS.MAGLEV_MAX;

/**
 * Table sizes a service may get, primes; see {@linkcode maglevSize}.
 */
export const MAGLEV_SIZES: readonly number[] = [1021, 4093, 16381, MAGLEV_SIZE];

/**
 * The table size for `entries` entries of weight > 0 (the reject share
 * counts as one): the smallest of {@linkcode MAGLEV_SIZES} that is >= 100 x
 * entries, so 10,000 services of 10 backends take 40 MiB rather than 2.5 GiB.
 * A function of the RoutingTable entry only, so every node picks alike; the
 * few fixed steps keep size changes (which remap untracked flows) rare.
 */
export function maglevSize(entries: number): number {
  for (const size of MAGLEV_SIZES) if (size >= 100 * entries) return size;
  return MAGLEV_SIZE;
}

/** One entry of a Maglev table: a backend (or the reject share) and its weight. */
export interface MaglevEntry {
  /** Stable identity shared by all nodes, e.g. `198.18.201.11:8080/TCP`. */
  key: string;
  /** Node-local backend id written into the slots (BACKEND_REJECT for rejects). */
  id: number;
  /** Relative weight; 0 takes no slots (no new flows). */
  weight: number;
}

/** A 32-bit FNV-1a hash of a string with a seed mixed in first. */
function strHash(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // final avalanche so nearby keys get unrelated offsets
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

interface Scratch {
  pos: Int32Array;
  skip: Int32Array;
  ids: Uint32Array;
  weights: Float64Array;
  credit: Float64Array;
  taken: Uint8Array;
}

let scratch: Scratch | undefined;

/** Work arrays for `n` backends and `size` slots, grown when too small (never shrunk). */
function scratchFor(n: number, size: number): Scratch {
  if (!scratch || scratch.pos.length < n || scratch.taken.length < size) {
    const cap = Math.max(n, scratch?.pos.length ?? 0, 16);
    scratch = {
      pos: new Int32Array(cap),
      skip: new Int32Array(cap),
      ids: new Uint32Array(cap),
      weights: new Float64Array(cap),
      credit: new Float64Array(cap),
      taken: new Uint8Array(Math.max(size, scratch?.taken.length ?? 0)),
    };
  }
  return scratch;
}

/**
 * Builds a weighted Maglev table of `size` slots (a prime). Returns an empty
 * table when no entry has weight > 0: the service has no usable backend.
 *
 * @example
 * ```ts
 * const t = maglevTable([
 *   { key: "10.0.0.1:80", id: 1, weight: 70 },
 *   { key: "10.0.0.2:80", id: 2, weight: 30 },
 * ]);
 * ```
 */
export function maglevTable(
  entries: readonly MaglevEntry[],
  size = MAGLEV_SIZE,
): Uint32Array {
  const table = new Uint32Array(size);
  return maglevFill(entries, size, { into: table }) ? table : new Uint32Array(0);
}

/**
 * Builds the table {@linkcode maglevTable} builds straight into `into`: slot
 * `c` goes to `into[c * stride]` (an mmap-ed BPF array holds one u32 value
 * every 8 bytes: stride 2), so a first sync neither allocates nor copies
 * 10,000 tables. Every slot is written exactly once. False (nothing written)
 * when no entry has weight > 0.
 */
export function maglevFill(
  entries: readonly MaglevEntry[],
  size: number,
  options: { into: Uint32Array; stride?: number },
): boolean {
  const into = options.into;
  const stride = options.stride ?? 1;
  if ((size - 1) * stride >= into.length) {
    throw new RangeError(
      `maglev: ${into.length} words hold no table of ${size} at stride ${stride}`,
    );
  }
  // Indexed loops and an insertion sort (tables have few entries): a cold first sync runs this
  // code unoptimized 10,000 times, where iterators and sort callbacks allocate.
  const live: MaglevEntry[] = [];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (!Number.isInteger(e.weight) || e.weight < 0) {
      throw new RangeError(
        `maglev: weight of ${e.key} must be a non-negative integer`,
      );
    }
    if (e.weight === 0) continue;
    let j = live.length;
    for (; j > 0 && live[j - 1]!.key > e.key; j--) live[j] = live[j - 1]!;
    live[j] = e;
  }
  if (live.length === 0) return false;
  for (let i = 1; i < live.length; i++) {
    if (live[i]!.key === live[i - 1]!.key) {
      throw new RangeError(`maglev: duplicate ${live[i]!.key}`);
    }
  }
  const n = live.length;
  // pos[i] walks backend i's permutation (offset + j * skip) % size one step at a time.
  // Scratch arrays are reused across calls: a first sync builds 10,000 tables. The walk is most
  // of the build (~4,000 steps for a table of 1021 slots and 10 backends), so it keeps to int32
  // arithmetic and has no branch on the wrap, whose outcome no CPU predicts (~skip/size taken).
  const s = scratchFor(n, size);
  const { pos, skip, ids, weights, credit, taken } = s;
  taken.fill(0, 0, size);
  credit.fill(0, 0, n);
  let maxWeight = 0;
  let equal = true;
  for (let i = 0; i < n; i++) {
    const e = live[i]!;
    pos[i] = strHash(e.key, 0x6d61676c) % size;
    skip[i] = (strHash(e.key, 0x65760001) % (size - 1)) + 1;
    ids[i] = e.id;
    weights[i] = e.weight;
    if (e.weight > maxWeight) maxWeight = e.weight;
    if (e.weight !== live[0]!.weight) equal = false;
  }
  let filled = 0;
  if (equal) {
    // Equal weights: every backend takes one turn a round, in order (what the credits below give).
    while (filled < size) {
      for (let i = 0; i < n && filled < size; i++) {
        let c = pos[i]!;
        const step = skip[i]!;
        while (taken[c] === 1) {
          c += step;
          c -= size & ((size - 1 - c) >> 31);
        }
        taken[c] = 1;
        into[c * stride] = ids[i]!;
        c += step;
        pos[i] = c - (size & ((size - 1 - c) >> 31));
        filled++;
      }
    }
    return true;
  }
  // Each round a backend earns weight/maxWeight turns; a turn claims the next
  // free slot of its permutation. Slots end up proportional to weights.
  while (filled < size) {
    for (let i = 0; i < n && filled < size; i++) {
      let cr = credit[i]! + weights[i]!;
      if (cr < maxWeight) {
        credit[i] = cr;
        continue;
      }
      let c = pos[i]!;
      const step = skip[i]!;
      const id = ids[i]!;
      while (cr >= maxWeight && filled < size) {
        cr -= maxWeight;
        while (taken[c] === 1) {
          c += step;
          c -= size & ((size - 1 - c) >> 31); // c >= size ? c - size : c, without a branch
        }
        taken[c] = 1;
        into[c * stride] = id;
        c += step;
        c -= size & ((size - 1 - c) >> 31);
        filled++;
      }
      pos[i] = c;
      credit[i] = cr;
    }
  }
  return true;
}

/** The reject share as a Maglev entry. */
export function rejectEntry(weight: number): MaglevEntry {
  return { key: "reject", id: BACKEND_REJECT, weight };
}

function rotl(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

function hashWord(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = rotl(k, 15);
  k = Math.imul(k, 0x1b873593);
  h = (h ^ k) >>> 0;
  h = rotl(h, 13);
  return (Math.imul(h, 5) + 0xe6546b64) >>> 0;
}

/** A flow's client-side 5-tuple (IPv4). */
export interface FlowTuple {
  /** Client address. */
  saddr: string;
  /** VIP. */
  daddr: string;
  /** Client port. */
  sport: number;
  /** Service port. */
  dport: number;
  /** 6 (TCP) or 17 (UDP). */
  proto: number;
}

/** The data plane's flow_hash() (bpf/maglev.h): which slot a flow lands in. */
export function flowHash(t: FlowTuple): number {
  const s = parseIPv4(t.saddr);
  const d = parseIPv4(t.daddr);
  if (s === undefined || d === undefined) {
    throw new RangeError("flowHash: IPv4 only");
  }
  let h = FLOW_HASH_SEED;
  for (const w of [s, 0, 0, 0, d, 0, 0, 0]) h = hashWord(h, w);
  h = hashWord(h, ((t.sport << 16) | t.dport) >>> 0);
  h = hashWord(h, t.proto);
  h = (h ^ 40) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  return h;
}

/** The backend id the data plane picks for a new flow with `table`. */
export function pickBackend(table: Uint32Array, t: FlowTuple): number {
  if (table.length === 0) return BACKEND_REJECT;
  return table[flowHash(t) % table.length]!;
}
