/**
 * Conntrack sweep: deletes the entries the program no longer treats as live,
 * so the map's fill counts live flows. The program checks timeouts only when
 * an entry is used and never deletes an expired one; the LRU map evicts them
 * only under pressure.
 *
 *   bpf_map_lookup_batch (8192 a call) ──► judge every entry ──► bpf_map_delete_batch
 *     DNAT  expired by its state's timeout (bpf/consts.h) + grace
 *     REPLY its DNAT entry gone, swept, or of another backend; idle > grace
 *     SNAT  its REPLY entry gone, swept, or of another client; idle > grace
 *
 * The grace keeps the sweep off entries the program may still be using (the
 * batch read is not atomic; a flow's entries are inserted one by one).
 *
 * @module
 */
import { type BpfMap } from "./object.ts";
import { LibbpfError } from "./libbpf.ts";
import { CT_KIND, CT_STATE, DIR, PROTO } from "./layout.ts";

/** TCP timeouts per state, seconds (bpf/consts.h). */
export const TCP_TIMEOUT_S: Readonly<Record<number, number>> = {
  [CT_STATE.NEW]: 60,
  [CT_STATE.ESTABLISHED]: 432000,
  [CT_STATE.CLOSING]: 120,
  [CT_STATE.CLOSED]: 10,
  [CT_STATE.SYN_RECV]: 60,
  [CT_STATE.PICKUP]: 60,
};
/** UDP timeouts, seconds: unreplied, replied (bpf/consts.h). */
export const UDP_TIMEOUT_S = { unreplied: 30, stream: 120 } as const;

/** What one sweep found and did. */
export interface SweepResult {
  /** Entries in the map before the sweep. */
  entries: number;
  /** Entries kept: the live flows' entries (and those within the grace). */
  live: number;
  /** Entries deleted. */
  deleted: number;
  /** Wall time of the sweep, ms. */
  ms: number;
}

/** Options of {@linkcode sweepConntrack}. */
export interface SweepOptions {
  /** Seconds past its timeout before an entry is deleted; default 10. */
  graceS?: number;
  /** Keys per `bpf_map_delete_batch` (and per step); default 4096. */
  deleteChunk?: number;
  /** Entries per `bpf_map_lookup_batch` (and per step); default 8192. */
  readChunk?: number;
}

const KEY = 16;
const VALUE = 64;

/** Seconds an entry of `proto` in `state` stays live after its last use. */
export function ctTimeoutS(proto: number, state: number): number {
  if (proto === PROTO.TCP) return TCP_TIMEOUT_S[state] ?? 10;
  return state === CT_STATE.ESTABLISHED ? UDP_TIMEOUT_S.stream : UDP_TIMEOUT_S.unreplied;
}

/**
 * Reads the whole conntrack map and deletes what the program no longer
 * treats as live, given `nowNs` on CLOCK_MONOTONIC_COARSE (the program's clock).
 *
 * @example
 * ```ts ignore
 * const r = sweepConntrack(maps.map("conntrack"), monotonicCoarseNs());
 * console.log(`${r.live} live of ${r.entries}, ${r.deleted} deleted`);
 * ```
 */
export function sweepConntrack(
  map: BpfMap,
  nowNs: bigint,
  options: SweepOptions = {},
): SweepResult {
  const steps = sweepConntrackInSteps(map, nowNs, options);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * {@linkcode sweepConntrack} one chunk of entries a step (read, then delete),
 * so that a caller can let other work run between steps: a full map (262,144
 * entries) swept at once held the agent's loop for 0.75-1.3 s on a busy
 * 2-core VM, and a table change arriving meanwhile waited for it. The batch
 * read is not atomic either way (the grace covers it); `ms` counts the steps'
 * time, not the pauses between them.
 */
export function* sweepConntrackInSteps(
  map: BpfMap,
  nowNs: bigint,
  options: SweepOptions = {},
): Generator<void, SweepResult> {
  let busy = 0;
  let started = performance.now();
  const grace = (options.graceS ?? 10) * 1e9;
  const now = Number(nowNs);
  // Entry ids: the key's 16 bytes as an 8-character string (cheap to build and hash).
  const primaries = new Map<string, number>(); // DNAT id -> backend id, or -1 when swept
  const replyClient = new Map<string, string>(); // REPLY id -> the client it answers
  const idleReplies: { id: string; key: Uint8Array<ArrayBuffer>; on: string; backend: number }[] =
    [];
  const idleSnats: { key: Uint8Array<ArrayBuffer>; on: string; client: string }[] = [];
  const doomed: Uint8Array<ArrayBuffer>[] = [];
  const scratch = new Uint8Array(KEY);
  const scratch16 = new Uint16Array(scratch.buffer);
  const u16s = (a: Uint16Array, at: number, n: number) => {
    let out = "";
    for (let j = 0; j < n; j++) out += String.fromCharCode(a[at + j]!);
    return out;
  };
  let entries = 0;
  for (const [keys, values, n] of map.chunks(options.readChunk ?? 8192)) {
    const vv = new DataView(values.buffer);
    const k16 = new Uint16Array(keys.buffer);
    for (let i = 0; i < n; i++) {
      entries++;
      const k = i * KEY;
      const v = i * VALUE;
      const kind = values[v + 36];
      const lastSeen = vv.getUint32(v + 56, true) + vv.getUint32(v + 60, true) * 4294967296;
      const age = now - lastSeen;
      const id = u16s(k16, k / 2, 8);
      if (kind === CT_KIND.DNAT) {
        const gone = age > ctTimeoutS(keys[k + 12]!, values[v + 37]!) * 1e9 + grace;
        primaries.set(id, gone ? -1 : vv.getUint32(v + 44, true));
        if (gone) doomed.push(keys.slice(k, k + KEY));
        continue;
      }
      // REPLY and SNAT entries point at the entry keyed by their value's tuple, reversed.
      scratch.set(values.subarray(v + 16, v + 20), 0);
      scratch.set(values.subarray(v, v + 4), 4);
      scratch.set(values.subarray(v + 34, v + 36), 8);
      scratch.set(values.subarray(v + 32, v + 34), 10);
      scratch[12] = keys[k + 12]!;
      scratch[13] = keys[k + 13]!;
      scratch[14] = DIR.INGRESS;
      scratch[15] = keys[k + 15]!;
      const idle = age > grace;
      if (kind === CT_KIND.REPLY) {
        // the client it answers: its value's destination (scratch holds it at 0..3, 8..9)
        replyClient.set(id, u16s(scratch16, 0, 2) + u16s(scratch16, 4, 1));
        if (idle) {
          const key = keys.slice(k, k + KEY);
          idleReplies.push({
            id,
            key,
            on: u16s(scratch16, 0, 8),
            backend: vv.getUint32(v + 44, true),
          });
        }
      } else if (idle) {
        const client = u16s(k16, k / 2, 2) + u16s(k16, k / 2 + 4, 1);
        idleSnats.push({ key: keys.slice(k, k + KEY), on: u16s(scratch16, 0, 8), client });
      }
    }
    busy += performance.now() - started;
    yield;
    started = performance.now();
  }
  const replyGone = new Set<string>();
  for (const r of idleReplies) {
    const backend = primaries.get(r.on);
    if (backend === undefined || backend !== r.backend) {
      replyGone.add(r.id);
      doomed.push(r.key);
    }
  }
  for (const s of idleSnats) {
    const client = replyClient.get(s.on);
    if (client === undefined || client !== s.client || replyGone.has(s.on)) doomed.push(s.key);
  }
  let deleted = 0;
  const chunk = options.deleteChunk ?? 4096;
  for (let i = 0; i < doomed.length; i += chunk) {
    deleted += deleteKeys(map, doomed.slice(i, i + chunk));
    busy += performance.now() - started;
    yield;
    started = performance.now();
  }
  busy += performance.now() - started;
  return {
    entries,
    live: entries - deleted,
    deleted,
    ms: Math.round(busy * 10) / 10,
  };
}

/** Deletes keys in one batch; a key gone meanwhile (LRU, the program) is skipped. */
function deleteKeys(map: BpfMap, part: Uint8Array<ArrayBuffer>[]): number {
  const packed = new Uint8Array(part.length * KEY);
  part.forEach((k, j) => packed.set(k, j * KEY));
  try {
    map.deleteBatch(packed);
    return part.length;
  } catch (e) {
    if (!(e instanceof LibbpfError)) throw e;
    // The batch stops at the first missing key: finish it one by one.
    let deleted = 0;
    for (const k of part) if (map.delete(k)) deleted++;
    return deleted;
  }
}
