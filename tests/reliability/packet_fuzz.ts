/**
 * Packet fuzz: random and mutated frames through blixt_ingress / blixt_egress
 * with `bpf_prog_test_run_opts`, against one loaded data plane whose state
 * (conntrack, SNAT ports) carries over from packet to packet, as on a node.
 *
 *   generator (seeded) ──► frame ──► [ingress | egress] ──► verdict, frame out
 *     valid TCP (every flag combination), UDP, ICMP errors (real or garbage quotes),
 *     replies, random bytes; then truncations, bad lengths, IP options, fragments,
 *     byte flips; checksums made right again for half of them
 *
 * What must hold, packet by packet and at the end:
 * - the verdict is one that docs/dataplane.md documents: pass (TC_ACT_OK),
 *   drop (TC_ACT_SHOT), or reject (TC_ACT_REDIRECT, a RST or ICMP port
 *   unreachable from the address the packet was sent to); a remote backend's
 *   packet forwarded past the stack is a redirect too, but test runs come in
 *   on `lo`, whose routes never leave by `lo`, so none is forwarded here;
 * - a frame the program rewrote or built has no checksum error that its input
 *   did not already have (a client's wrong checksum stays wrong; the program
 *   adds none);
 * - every conntrack entry belongs to a flow whose packet the program accepted
 *   as a new TCP/UDP flow to a service (ingress, rewritten towards a backend).
 *
 * @module
 */
import { buildBpf } from "../../bpf/build.ts";
import { Dataplane, ensureBpffs, removePins } from "../../agent/bpf/loader.ts";
import { testRun } from "../../agent/bpf/object.ts";
import {
  buildIp,
  buildPacket,
  checksum,
  checksumErrors,
  onesSum,
  type PacketSpec,
  TC_ACT,
  TCP,
} from "../../bpf/testing/packet.ts";

const NODE = "198.18.192.1";
const VIP = "198.18.200.1";
const VIP2 = "198.18.200.2";
const VIP3 = "198.18.200.3";
const BE1 = "198.18.201.11";
const BE3 = "198.18.202.13";
const OTHER = "198.18.203.1";
const SNAT_PORTS: [number, number] = [61000, 61063];
/** bpf_prog_test_run refuses (EINVAL) an IPv4 frame shorter than Ethernet + IPv4 header. */
const MIN_IPV4_FRAME = 34;
const VIPS = new Set([VIP, VIP2, VIP3]);

/** What a fuzz run saw. */
export interface FuzzReport {
  /** Packets run. */
  packets: number;
  /** Seed of the generator (the same seed gives the same packets). */
  seed: number;
  /** Count of each verdict. */
  verdicts: { pass: number; drop: number; reject: number };
  /** Packets the program changed (rewritten or answered). */
  rewritten: number;
  /** Rewritten packets whose checksums were checked (input well formed). */
  checksumChecked: number;
  /** Conntrack entries at the end, and flows the program accepted. */
  conntrackEntries: number;
  /** Distinct client endpoints whose packet was accepted as a new flow. */
  acceptedFlows: number;
  /** Program events (drops by reason, rejects, translations). */
  events: Record<string, number>;
  /** Wall time of the run. */
  seconds: number;
  /** Everything that broke a rule, at most 20, each with the frame in hex. */
  violations: string[];
  /** Violations in all (the list above is cut at 20). */
  violationCount: number;
}

/** A small fast PRNG (mulberry32): the same seed, the same packets. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function setup(dp: Dataplane): void {
  const m = dp.maps;
  m.setConfig({ nodeAddr: NODE, snatPorts: SNAT_PORTS });
  m.setBackend(1, { addr: BE1, port: 8080 });
  m.setBackend(2, { addr: BE1, port: 5353 });
  m.setBackend(3, { addr: BE3, port: 8080, remote: true });
  m.setBackend(4, { addr: BE3, port: 5353, remote: true });
  for (let i = 0; i < 3; i++) m.setBackend(21 + i, { addr: `198.18.201.${21 + i}`, port: 8080 });
  const one = (id: number) => [{ id, weight: 1 }];
  m.setService({ addr: VIP, port: 80, protocol: "TCP" }, { id: 1, backends: one(1) });
  m.setService({ addr: VIP, port: 53, protocol: "UDP" }, { id: 2, backends: one(2) });
  m.setService({ addr: VIP2, port: 80, protocol: "TCP" }, { id: 3, backends: one(3) });
  m.setService({ addr: VIP2, port: 53, protocol: "UDP" }, { id: 4, backends: one(4) });
  m.setService({ addr: VIP, port: 81, protocol: "TCP" }, { id: 5, backends: [] });
  m.setService({ addr: VIP, port: 54, protocol: "UDP" }, { id: 6, backends: [] });
  m.setService({ addr: VIP3, port: 80, protocol: "TCP" }, {
    id: 7,
    backends: one(3),
    keepClientAddress: true,
  });
  m.setService({ addr: VIP, port: 82, protocol: "TCP" }, {
    id: 8,
    backends: one(1),
    rejectWeight: 1,
  });
  m.setService({ addr: VIP, port: 83, protocol: "TCP" }, {
    id: 9,
    backends: [21, 22, 23].map((id) => ({ id, weight: 1 })),
  });
}

/** Generates frames: valid ones of every kind the program handles, then mutated. */
class Generator {
  #r: () => number;
  constructor(seed: number) {
    this.#r = rng(seed);
  }
  int(n: number): number {
    return Math.floor(this.#r() * n);
  }
  chance(p: number): boolean {
    return this.#r() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  client(): string {
    return `198.18.192.${10 + this.int(40)}`;
  }
  port(): number {
    return this.chance(0.7) ? 40000 + this.int(64) : 1 + this.int(65535);
  }
  vipPort(): number {
    return this.chance(0.85) ? this.pick([80, 81, 82, 83, 53, 54]) : this.int(65536);
  }
  dst(): string {
    return this.chance(0.85) ? this.pick([VIP, VIP, VIP2, VIP3]) : this.pick([NODE, OTHER, BE1]);
  }

  /** One frame and the hook that sees it. */
  next(): { frame: Uint8Array<ArrayBuffer>; hook: "ingress" | "egress" } {
    const kind = this.int(100);
    let spec: PacketSpec;
    let hook: "ingress" | "egress" = "ingress";
    if (kind < 35) {
      spec = {
        src: this.client(),
        dst: this.dst(),
        tcp: {
          sport: this.port(),
          dport: this.vipPort(),
          flags: this.chance(0.4) ? TCP.SYN : this.int(256),
          seq: this.int(2 ** 32),
          ack: this.int(2 ** 32),
        },
        payload: this.bytes(this.chance(0.5) ? 0 : this.int(64)),
      };
    } else if (kind < 55) {
      spec = {
        src: this.client(),
        dst: this.dst(),
        udp: { sport: this.port(), dport: this.vipPort(), zeroChecksum: this.chance(0.2) },
        payload: this.bytes(this.int(64)),
      };
    } else if (kind < 70) {
      // Replies: local backend -> client at egress, remote backend -> node:port at ingress.
      const remote = this.chance(0.5);
      hook = remote ? "ingress" : "egress";
      const src = remote ? BE3 : this.pick([BE1, "198.18.201.21", "198.18.201.22"]);
      const dst = remote ? NODE : this.client();
      const dport = remote ? SNAT_PORTS[0] + this.int(64) : this.port();
      spec = this.chance(0.7)
        ? { src, dst, tcp: { sport: 8080, dport, flags: this.int(256) } }
        : { src, dst, udp: { sport: this.pick([5353, 8080]), dport } };
    } else if (kind < 88) {
      ({ spec, hook } = this.icmpError());
    } else {
      hook = this.chance(0.7) ? "ingress" : "egress";
      // The test run refuses frames shorter than their network header (IPv6: 40 bytes).
      const v6 = this.chance(0.1);
      const body = this.bytes((v6 ? 40 : 20) + this.int(100));
      if (!v6 && this.chance(0.8)) body[0] = 0x45;
      return { frame: rawFrame(v6 ? 0x86dd : 0x0800, body), hook };
    }
    if (this.chance(0.15)) {
      spec.ipOptions = [...this.bytes(4 * (1 + this.int(10)))];
    }
    this.remember(spec);
    let frame = buildPacket(spec);
    if (this.chance(0.55)) frame = this.mutate(frame);
    return { frame, hook };
  }

  /** Client flows generated lately: ICMP errors quote their packets. */
  #flows: { client: string; sport: number; vip: string; vport: number; proto: 6 | 17 }[] = [];

  remember(spec: PacketSpec): void {
    const l4 = spec.tcp ?? spec.udp;
    if (!l4 || !VIPS.has(spec.dst)) return;
    const flow = {
      client: spec.src,
      sport: l4.sport,
      vip: spec.dst,
      vport: l4.dport,
      proto: spec.tcp ? 6 as const : 17 as const,
    };
    if (this.#flows.length < 256) this.#flows.push(flow);
    else this.#flows[this.int(256)] = flow;
  }

  /**
   * An ICMP error: about a reply of a flow generated lately (from its backend, or the
   * client's error about what the VIP sent), or quoting garbage. Returns the hook too:
   * a local backend's error is seen at egress, a client's at ingress.
   */
  icmpError(): { spec: PacketSpec; hook: "ingress" | "egress" } {
    const type = this.chance(0.9) ? this.pick([3, 11, 12]) : this.int(256);
    const code = this.chance(0.8) ? this.pick([0, 1, 3, 4]) : this.int(256);
    const flow = this.#flows.length > 0 && this.chance(0.7) ? this.pick(this.#flows) : undefined;
    const fromBackend = this.chance(0.5);
    let inner: Uint8Array;
    let src: string, dst: string;
    if (flow) {
      const l4 = { sport: flow.vport, dport: flow.sport };
      const backendPort = flow.proto === 6 ? 8080 : 5353;
      const remote = flow.vip !== VIP;
      const quoted: PacketSpec = fromBackend
        ? {
          src: remote ? BE3 : BE1,
          dst: remote ? NODE : flow.client,
          ...(flow.proto === 6
            ? { tcp: { ...l4, sport: backendPort, flags: TCP.ACK } }
            : { udp: { ...l4, sport: backendPort } }),
        }
        : {
          src: flow.vip,
          dst: flow.client,
          ...(flow.proto === 6 ? { tcp: { ...l4, flags: TCP.ACK } } : { udp: l4 }),
        };
      if (remote && fromBackend) {
        const l = (quoted.tcp ?? quoted.udp)!;
        l.dport = SNAT_PORTS[0] + this.int(SNAT_PORTS[1] - SNAT_PORTS[0] + 1);
      }
      if (this.chance(0.15)) quoted.ipOptions = [...this.bytes(4 * (1 + this.int(10)))];
      inner = buildIp(quoted);
      src = fromBackend ? this.pick([quoted.src, quoted.src, OTHER]) : flow.client;
      dst = fromBackend ? quoted.dst : flow.vip;
    } else {
      inner = this.bytes(this.int(80));
      if (inner.length > 0 && this.chance(0.7)) inner[0] = 0x40 | this.int(16);
      src = fromBackend ? this.pick([BE1, BE3, OTHER]) : this.client();
      dst = fromBackend ? this.pick([this.client(), NODE]) : this.pick([VIP, VIP2, NODE]);
    }
    if (inner.length >= 20) {
      // As routers quote: the header and 8 bytes, or more; sometimes cut short or damaged.
      const quote = (inner[0]! & 15) * 4 + 8;
      inner = inner.slice(0, this.chance(0.5) ? Math.min(quote, inner.length) : inner.length);
      if (this.chance(0.2)) inner = inner.slice(0, this.int(inner.length + 1));
      if (this.chance(0.2)) inner[this.int(inner.length || 1)] = this.int(256);
    }
    const hook = fromBackend && (src === BE1 || (src === OTHER && dst !== NODE))
      ? "egress"
      : "ingress";
    return {
      spec: { src, dst, icmp: { type, code, rest: this.int(2 ** 32) }, payload: inner },
      hook,
    };
  }

  /** One to three mutations; then, half of the time, the checksums made right again. */
  mutate(f: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
    let frame = f;
    for (let n = 1 + this.int(3); n > 0; n--) {
      const ip = 14;
      const ihl = ((frame[ip] ?? 0x45) & 15) * 4;
      const l4 = ip + ihl;
      const set = (at: number, v: number) => {
        if (at < frame.length) frame[at] = v & 0xff;
      };
      switch (this.int(10)) {
        case 0: // truncation (the test run refuses IPv4 frames shorter than an IP header)
          frame = frame.slice(0, MIN_IPV4_FRAME + this.int(frame.length - MIN_IPV4_FRAME + 1));
          break;
        case 1: // garbage after the packet
          frame = concat(frame, this.bytes(1 + this.int(40)));
          break;
        case 2: { // bad IP total length
          const v = this.chance(0.5) ? frame.length - 14 + this.int(9) - 4 : this.int(65536);
          set(ip + 2, v >> 8);
          set(ip + 3, v);
          break;
        }
        case 3: // bad IHL or version
          set(ip, this.chance(0.7) ? 0x40 | this.int(16) : this.int(256));
          break;
        case 4: { // fragment: MF, an offset, or both
          const v = this.pick([
            0x2000,
            0x2000 | this.int(0x2000),
            this.int(0x2000),
            this.int(65536),
          ]);
          set(ip + 6, v >> 8);
          set(ip + 7, v);
          break;
        }
        case 5: // TCP data offset / UDP length
          if (frame[ip + 9] === 6) set(l4 + 12, this.int(256));
          else {
            set(l4 + 4, this.int(256));
            set(l4 + 5, this.int(256));
          }
          break;
        case 6: // TCP flags
          set(l4 + 13, this.int(256));
          break;
        case 7: // IP protocol
          set(ip + 9, this.pick([1, 6, 17, this.int(256)]));
          break;
        default: // byte flips anywhere
          for (let k = 1 + this.int(4); k > 0; k--) {
            const at = this.int(frame.length);
            frame[at] = frame[at]! ^ (1 << this.int(8));
          }
      }
    }
    if (this.chance(0.5)) fixChecksums(frame);
    return frame;
  }
}

/** An Ethernet frame around arbitrary bytes. */
function rawFrame(etherType: number, body: Uint8Array): Uint8Array<ArrayBuffer> {
  const frame = new Uint8Array(14 + body.length);
  frame.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
  new DataView(frame.buffer).setUint16(12, etherType);
  frame.set(body, 14);
  return frame;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Makes the IP header and TCP/UDP/ICMP checksums right for what the header says, if it can. */
function fixChecksums(frame: Uint8Array): void {
  if (frame.length < 34 || frame[12] !== 8 || frame[13] !== 0) return;
  const p = frame.subarray(14);
  const ihl = (p[0]! & 15) * 4;
  if (ihl < 20 || ihl > p.length) return;
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  v.setUint16(10, 0);
  v.setUint16(10, checksum(p.subarray(0, ihl)));
  const total = v.getUint16(2);
  if (total < ihl || total > p.length || (v.getUint16(6) & 0x3fff) !== 0) return;
  const l4 = p.subarray(ihl, total);
  const lv = new DataView(l4.buffer, l4.byteOffset, l4.byteLength);
  const proto = p[9];
  const pseudo = new Uint8Array(12);
  pseudo.set(p.subarray(12, 20));
  pseudo[9] = proto!;
  new DataView(pseudo.buffer).setUint16(10, l4.length);
  if (proto === 6 && l4.length >= 20) {
    lv.setUint16(16, 0);
    lv.setUint16(16, checksum(l4, onesSum(pseudo)));
  } else if (proto === 17 && l4.length >= 8 && lv.getUint16(6) !== 0) {
    lv.setUint16(6, 0);
    const c = checksum(l4, onesSum(pseudo));
    lv.setUint16(6, c === 0 ? 0xffff : c);
  } else if (proto === 1 && l4.length >= 8) {
    lv.setUint16(2, 0);
    lv.setUint16(2, checksum(l4));
  }
}

/** Checksum problems of a frame, or null when the frame is too broken to say. */
function errorsOf(frame: Uint8Array): Set<string> | null {
  if (frame.length < 34 || frame[12] !== 8 || frame[13] !== 0) return null;
  const ihl = (frame[14]! & 15) * 4;
  const total = (frame[16]! << 8) | frame[17]!;
  if ((frame[14]! >> 4) !== 4 || ihl < 20 || total < ihl || total > frame.length - 14) return null;
  try {
    return new Set(checksumErrors(frame));
  } catch {
    return null;
  }
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const ipAt = (f: Uint8Array, at: number) => Array.from(f.subarray(at, at + 4)).join(".");

/**
 * Runs `packets` fuzzed frames through a freshly loaded data plane and checks
 * every rule of the module doc. Needs root (bpffs, BPF_PROG_LOAD).
 */
export async function runPacketFuzz(
  packets: number,
  options: { seed?: number; conntrackEntries?: number } = {},
): Promise<FuzzReport> {
  const seed = options.seed ?? 1;
  await buildBpf();
  await ensureBpffs();
  const pinDir = `/sys/fs/bpf/blixt-fuzz-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const dp = Dataplane.load({ pinDir, conntrackEntries: options.conntrackEntries ?? 262144 });
  const started = performance.now();
  const report: FuzzReport = {
    packets,
    seed,
    verdicts: { pass: 0, drop: 0, reject: 0 },
    rewritten: 0,
    checksumChecked: 0,
    conntrackEntries: 0,
    acceptedFlows: 0,
    events: {},
    seconds: 0,
    violations: [],
    violationCount: 0,
  };
  const violation = (what: string, frame: Uint8Array, hook: string) => {
    report.violationCount++;
    if (report.violations.length < 20) report.violations.push(`${what} (${hook}) ${hex(frame)}`);
  };
  const accepted = new Set<string>();
  try {
    setup(dp);
    const gen = new Generator(seed);
    for (let i = 0; i < packets; i++) {
      const { frame, hook } = gen.next();
      const input = frame.slice();
      let out;
      try {
        out = testRun(hook === "ingress" ? dp.ingressFd : dp.egressFd, frame, {
          maxOutput: frame.length + 512,
        });
      } catch (e) {
        throw new Error(`test run refused ${hook} ${hex(input)}`, { cause: e });
      }
      if (out.retval === TC_ACT.SHOT) {
        report.verdicts.drop++;
        continue;
      }
      if (out.retval === TC_ACT.REDIRECT) report.verdicts.reject++;
      else if (out.retval === TC_ACT.OK) report.verdicts.pass++;
      else {
        violation(`undocumented verdict ${out.retval}`, input, hook);
        continue;
      }
      const changed = out.data.length !== input.length || out.data.some((b, j) => b !== input[j]);
      if (!changed) {
        if (out.retval === TC_ACT.REDIRECT) {
          violation("reject left the frame as it was", input, hook);
        }
        continue;
      }
      report.rewritten++;
      const o = out.data;
      if (out.retval === TC_ACT.REDIRECT) {
        const isRst = o[23] === 6 && o.length >= 14 + 20 + 14 && (o[14 + 20 + 13]! & TCP.RST) !== 0;
        const isUnreach = o[23] === 1 && o[34] === 3 && o[35] === 3;
        if (!isRst && !isUnreach) {
          violation("reject is neither a RST nor port unreachable", input, hook);
        }
        if (ipAt(o, 26) !== ipAt(input, 30)) violation("reject not sent from the VIP", input, hook);
        // The ICMP error quotes the packet as it came, wrong checksums included.
        const before = errorsOf(input) ?? new Set();
        const quoted = (e: string) =>
          (e === "ICMP inner IP header checksum" && before.has("IP header checksum")) ||
          (e === "ICMP inner L4 checksum" &&
            (before.has("UDP checksum") || before.has("TCP checksum")));
        const errs = errorsOf(o);
        const bad = errs === null ? ["malformed"] : [...errs].filter((e) => !quoted(e));
        if (bad.length > 0) violation(`reject with checksum errors ${bad}`, input, hook);
        report.checksumChecked++;
        continue;
      }
      const before = errorsOf(input);
      if (before !== null) {
        report.checksumChecked++;
        const after = errorsOf(o);
        const added = after === null
          ? ["malformed output"]
          : [...after].filter((e) => !before.has(e));
        if (added.length > 0) violation(`rewrite added ${added.join(", ")}`, input, hook);
      }
      const proto = input[23];
      if (hook === "ingress" && (proto === 6 || proto === 17) && VIPS.has(ipAt(input, 30))) {
        const ihl = (input[14]! & 15) * 4;
        const sport = (input[14 + ihl]! << 8) | input[15 + ihl]!;
        accepted.add(`${ipAt(input, 26)}:${sport}/${proto}`);
      }
    }
    const entries = dp.maps.conntrack();
    report.conntrackEntries = entries.length;
    report.acceptedFlows = accepted.size;
    for (const { key, value } of entries) {
      const client = value.kind === 3
        ? `${value.daddr}:${value.dport}/${key.proto}`
        : `${key.saddr}:${key.sport}/${key.proto}`;
      if (!accepted.has(client)) {
        report.violationCount++;
        if (report.violations.length < 20) {
          report.violations.push(`conntrack entry no accepted flow made: ${JSON.stringify(key)}`);
        }
      }
    }
    for (const [k, v] of Object.entries(dp.maps.events())) report.events[k] = Number(v);
    // The data plane still serves a real flow after all that.
    const syn = buildPacket({
      src: "198.18.193.1",
      dst: VIP,
      tcp: { sport: 55555, dport: 80, flags: TCP.SYN },
    });
    const after = testRun(dp.ingressFd, syn);
    if (after.retval !== TC_ACT.OK || ipAt(after.data, 30) !== BE1) {
      report.violationCount++;
      report.violations.push("a SYN to VIP:80 after the fuzz was not sent to its backend");
    }
  } finally {
    report.seconds = Math.round((performance.now() - started) / 100) / 10;
    dp.close();
    removePins(pinDir);
  }
  return report;
}
