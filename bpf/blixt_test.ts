/**
 * Packet tests: the kernel runs blixt_ingress / blixt_egress on crafted
 * frames through bpf_prog_test_run_opts. Fixtures run in order against one
 * loaded data plane (conntrack state carries over, as on a node):
 *
 *   client 198.18.192.10 ──► [ingress | node 198.18.192.1 | egress] ──► backends
 *     VIP  198.18.200.1  :80/TCP  -> local  198.18.201.11:8080
 *                        :53/UDP  -> local  198.18.201.11:5353
 *                        :81/TCP, :54/UDP  -> no backend (reject)
 *                        :82/TCP  -> 198.18.201.11:8080 w1 + reject w1
 *                        :83/TCP  -> 198.18.201.21..23:8080 (Maglev)
 *     VIP2 198.18.200.2  :80/TCP, :53/UDP -> remote 198.18.202.13 (SNAT to node)
 *     VIP3 198.18.200.3  :80/TCP  -> remote 198.18.202.13:8080, client address kept
 *
 * Every fixture states the input, the expected output frame (compared byte
 * for byte with checksums normalized) and verdict; every output frame's
 * checksums are verified.
 */
import assert from "node:assert/strict";
import { buildBpf } from "./build.ts";
import { Dataplane, ensureBpffs, removePins } from "../agent/bpf/loader.ts";
import { testRun } from "../agent/bpf/object.ts";
import { CT_KIND, CT_STATE, flowValue, LIMITS, POD_SLOT, PROTO } from "../agent/bpf/layout.ts";
import { maglevSize, maglevTable, pickBackend } from "../agent/bpf/maglev.ts";
import { ifIndex, inNetns, monotonicCoarseNs } from "../agent/bpf/libbpf.ts";
import { run } from "./testing/topology.ts";
import {
  buildIp,
  buildPacket,
  checksumErrors,
  decodePacket,
  type PacketSpec,
  TC_ACT,
  TCP,
  withoutChecksums,
} from "./testing/packet.ts";

const CLIENT = "198.18.192.10";
const NODE = "198.18.192.1";
const VIP = "198.18.200.1";
const VIP2 = "198.18.200.2";
const VIP3 = "198.18.200.3";
const BE1 = "198.18.201.11";
const BE2 = "198.18.201.12";
const BE3 = "198.18.202.13";
const OTHER = "198.18.203.1";
const CLIENT_MAC = "02:00:00:00:00:01";
const NODE_MAC = "02:00:00:00:00:02";
const NODE2 = "198.18.192.2";
const NODE2_MAC = "02:00:00:00:00:03";
const SNAT_PORTS: [number, number] = [61000, 61009];

/** Backend ids of the fixtures. */
const B = {
  be1tcp: 1,
  be1udp: 2,
  be3tcp: 3,
  be3udp: 4,
  be2tcp: 5,
  m1: 21,
  m2: 22,
  m3: 23,
};
/** Service ids. */
const S = {
  tcp80: 1,
  udp53: 2,
  r80: 3,
  r53: 4,
  rej81: 5,
  rej54: 6,
  keep80: 7,
  share82: 8,
  mag83: 9,
};

/** One packet fixture, Katran style. */
interface Fixture {
  /** What the packet is and what must happen to it. */
  description: string;
  /** Hook that sees it. */
  hook: "ingress" | "egress";
  /** The frame in. */
  input: Uint8Array<ArrayBuffer>;
  /** The frame out; the input itself when the packet must pass untouched. */
  expected: Uint8Array<ArrayBuffer> | "unchanged";
  /** TC verdict. */
  verdict: number;
}

function pkt(spec: PacketSpec): Uint8Array<ArrayBuffer> {
  return buildPacket({ srcMac: CLIENT_MAC, dstMac: NODE_MAC, ...spec });
}

function setup(dp: Dataplane): void {
  const m = dp.maps;
  m.setConfig({ nodeAddr: NODE, snatPorts: SNAT_PORTS });
  m.setBackend(B.be1tcp, { addr: BE1, port: 8080 });
  m.setBackend(B.be1udp, { addr: BE1, port: 5353 });
  m.setBackend(B.be3tcp, { addr: BE3, port: 8080, remote: true });
  m.setBackend(B.be3udp, { addr: BE3, port: 5353, remote: true });
  m.setBackend(B.be2tcp, { addr: BE2, port: 8080 });
  m.setBackend(B.m1, { addr: "198.18.201.21", port: 8080 });
  m.setBackend(B.m2, { addr: "198.18.201.22", port: 8080 });
  m.setBackend(B.m3, { addr: "198.18.201.23", port: 8080 });
  const one = (id: number) => [{ id, weight: 1 }];
  m.setService({ addr: VIP, port: 80, protocol: "TCP" }, {
    id: S.tcp80,
    backends: one(B.be1tcp),
  });
  m.setService({ addr: VIP, port: 53, protocol: "UDP" }, {
    id: S.udp53,
    backends: one(B.be1udp),
  });
  m.setService({ addr: VIP2, port: 80, protocol: "TCP" }, {
    id: S.r80,
    backends: one(B.be3tcp),
  });
  m.setService({ addr: VIP2, port: 53, protocol: "UDP" }, {
    id: S.r53,
    backends: one(B.be3udp),
  });
  m.setService({ addr: VIP, port: 81, protocol: "TCP" }, {
    id: S.rej81,
    backends: [],
  });
  m.setService({ addr: VIP, port: 54, protocol: "UDP" }, {
    id: S.rej54,
    backends: [],
  });
  m.setService(
    { addr: VIP3, port: 80, protocol: "TCP" },
    { id: S.keep80, backends: one(B.be3tcp), keepClientAddress: true },
  );
  m.setService(
    { addr: VIP, port: 82, protocol: "TCP" },
    { id: S.share82, backends: one(B.be1tcp), rejectWeight: 1 },
  );
}

/** Runs one fixture and asserts verdict, output frame and checksums. Returns the output. */
function check(dp: Dataplane, f: Fixture): Uint8Array {
  const fd = f.hook === "ingress" ? dp.ingressFd : dp.egressFd;
  const out = testRun(fd, f.input);
  const where = `[${f.description}]`;
  assert.equal(out.retval, f.verdict, `${where} verdict`);
  const expected = f.expected === "unchanged" ? f.input : f.expected;
  assert.deepEqual(
    withoutChecksums(out.data),
    withoutChecksums(expected),
    `${where} output frame\n got ${JSON.stringify(decodePacket(out.data))}\nwant ${
      JSON.stringify(decodePacket(expected))
    }`,
  );
  assert.deepEqual(checksumErrors(out.data), [], `${where} checksums`);
  return out.data;
}

async function withDataplane(
  fn: (dp: Dataplane) => Promise<void> | void,
): Promise<void> {
  await buildBpf();
  await ensureBpffs();
  const pinDir = `/sys/fs/bpf/blixt-test-pkt-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const dp = Dataplane.load({ pinDir, conntrackEntries: 4096 });
  try {
    setup(dp);
    await fn(dp);
  } finally {
    dp.close();
    removePins(pinDir);
  }
}

const tcp = (
  sport: number,
  dport: number,
  flags: number,
  extra: Partial<PacketSpec["tcp"]> = {},
) => ({
  sport,
  dport,
  flags,
  ...extra,
});

Deno.test("packet: local backend, TCP and UDP, both directions", async () => {
  await withDataplane((dp) => {
    const payload = new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n");
    const fixtures: Fixture[] = [
      {
        description: "a SYN to VIP:80 is DNATed to the local backend, client address kept",
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(40001, 80, TCP.SYN) }),
        expected: pkt({
          src: CLIENT,
          dst: BE1,
          tcp: tcp(40001, 8080, TCP.SYN),
        }),
        verdict: TC_ACT.OK,
      },
      {
        description: "the backend's SYN-ACK leaves as VIP:80",
        hook: "egress",
        input: pkt({
          src: BE1,
          dst: CLIENT,
          tcp: tcp(8080, 40001, TCP.SYN | TCP.ACK, { seq: 7, ack: 1001 }),
        }),
        expected: pkt({
          src: VIP,
          dst: CLIENT,
          tcp: tcp(80, 40001, TCP.SYN | TCP.ACK, { seq: 7, ack: 1001 }),
        }),
        verdict: TC_ACT.OK,
      },
      {
        description: "data of the established flow goes to the same backend",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          tcp: tcp(40001, 80, TCP.ACK | TCP.PSH, { seq: 1001, ack: 8 }),
          payload,
        }),
        expected: pkt({
          src: CLIENT,
          dst: BE1,
          tcp: tcp(40001, 8080, TCP.ACK | TCP.PSH, { seq: 1001, ack: 8 }),
          payload,
        }),
        verdict: TC_ACT.OK,
      },
      {
        description: "a SYN with IP options (4 NOPs) is translated, options kept",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          ipOptions: [1, 1, 1, 1],
          tcp: tcp(40002, 80, TCP.SYN),
        }),
        expected: pkt({
          src: CLIENT,
          dst: BE1,
          ipOptions: [1, 1, 1, 1],
          tcp: tcp(40002, 8080, TCP.SYN),
        }),
        verdict: TC_ACT.OK,
      },
      {
        description: "a UDP datagram to VIP:53 goes to the local backend",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          udp: { sport: 40005, dport: 53 },
          payload,
        }),
        expected: pkt({
          src: CLIENT,
          dst: BE1,
          udp: { sport: 40005, dport: 5353 },
          payload,
        }),
        verdict: TC_ACT.OK,
      },
      {
        description: "the UDP reply leaves as VIP:53",
        hook: "egress",
        input: pkt({
          src: BE1,
          dst: CLIENT,
          udp: { sport: 5353, dport: 40005 },
          payload,
        }),
        expected: pkt({
          src: VIP,
          dst: CLIENT,
          udp: { sport: 53, dport: 40005 },
          payload,
        }),
        verdict: TC_ACT.OK,
      },
      {
        description: "a UDP datagram without checksum keeps checksum 0",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          udp: { sport: 40006, dport: 53, zeroChecksum: true },
          payload,
        }),
        expected: pkt({
          src: CLIENT,
          dst: BE1,
          udp: { sport: 40006, dport: 5353, zeroChecksum: true },
          payload,
        }),
        verdict: TC_ACT.OK,
      },
    ];
    for (const f of fixtures) check(dp, f);
    const flows = dp.maps.conntrack();
    const primary = flows.find((e) => e.key.sport === 40001 && e.value.kind === CT_KIND.DNAT);
    assert.equal(
      primary?.value.state,
      CT_STATE.ESTABLISHED,
      "the client's ACK after the SYN-ACK established the flow",
    );
    const c = dp.maps.serviceCounters(S.tcp80);
    assert.equal(c.new_flows, 2n);
    assert.equal(c.packets, 3n);
    assert.equal(c.reply_packets, 1n);
    assert.equal(dp.maps.backendCounters(B.be1udp).packets, 2n);
  });
});

Deno.test("packet: remote backend gets the node's address and a port of its own", async () => {
  await withDataplane((dp) => {
    const snatPorts: number[] = [];
    for (const cport of [40101, 40102]) {
      check(dp, {
        description: `SYN from :${cport} to VIP2:80 is DNATed to the remote backend`,
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP2, tcp: tcp(cport, 80, TCP.SYN) }),
        expected: pkt({
          src: CLIENT,
          dst: BE3,
          tcp: tcp(cport, 8080, TCP.SYN),
        }),
        verdict: TC_ACT.OK,
      });
      // On egress the source becomes node:port; learn the port from the output.
      const input = pkt({
        src: CLIENT,
        dst: BE3,
        tcp: tcp(cport, 8080, TCP.SYN),
      });
      const out = testRun(dp.egressFd, input);
      assert.equal(out.retval, TC_ACT.OK);
      const d = decodePacket(out.data);
      assert.equal(d.src, NODE);
      assert.ok(
        d.sport! >= SNAT_PORTS[0] && d.sport! <= SNAT_PORTS[1],
        `SNAT port ${d.sport}`,
      );
      check(dp, {
        description: `egress SNAT of :${cport}`,
        hook: "egress",
        input,
        expected: pkt({
          src: NODE,
          dst: BE3,
          tcp: tcp(d.sport!, 8080, TCP.SYN),
        }),
        verdict: TC_ACT.OK,
      });
      snatPorts.push(d.sport!);
      check(dp, {
        description: `the remote SYN-ACK to node:${d.sport} is sent to the client as VIP2:80`,
        hook: "ingress",
        input: pkt({
          src: BE3,
          dst: NODE,
          tcp: tcp(d.sport!, 0, 0) && tcp(8080, d.sport!, TCP.SYN | TCP.ACK),
        }),
        expected: pkt({
          src: VIP2,
          dst: CLIENT,
          tcp: tcp(80, cport, TCP.SYN | TCP.ACK),
        }),
        verdict: TC_ACT.OK,
      });
    }
    assert.notEqual(
      snatPorts[0],
      snatPorts[1],
      "two flows never share a SNAT port",
    );

    // UDP to a remote backend, and an ICMP "fragmentation needed" back from it.
    check(dp, {
      description: "UDP to VIP2:53 goes to the remote backend",
      hook: "ingress",
      input: pkt({ src: CLIENT, dst: VIP2, udp: { sport: 40103, dport: 53 } }),
      expected: pkt({
        src: CLIENT,
        dst: BE3,
        udp: { sport: 40103, dport: 5353 },
      }),
      verdict: TC_ACT.OK,
    });
    const out = testRun(
      dp.egressFd,
      pkt({ src: CLIENT, dst: BE3, udp: { sport: 40103, dport: 5353 } }),
    );
    const natPort = decodePacket(out.data).sport!;
    assert.equal(decodePacket(out.data).src, NODE);
    check(dp, {
      description:
        "the remote backend's ICMP frag-needed about node:port reaches the client about VIP2:53",
      hook: "ingress",
      input: pkt({
        src: BE3,
        dst: NODE,
        icmp: { type: 3, code: 4, rest: 1400 },
        payload: buildIp({
          src: NODE,
          dst: BE3,
          udp: { sport: natPort, dport: 5353 },
        }),
      }),
      expected: pkt({
        src: VIP2,
        dst: CLIENT,
        icmp: { type: 3, code: 4, rest: 1400 },
        payload: buildIp({
          src: CLIENT,
          dst: VIP2,
          udp: { sport: 40103, dport: 53 },
        }),
      }),
      verdict: TC_ACT.OK,
    });
    const ev = dp.maps.events();
    assert.equal(ev.icmp_translated, 1n);
  });
});

Deno.test("packet: local-only service keeps the client address for a remote backend", async () => {
  await withDataplane((dp) => {
    check(dp, {
      description: "SYN to VIP3:80 is DNATed to the remote backend",
      hook: "ingress",
      input: pkt({ src: CLIENT, dst: VIP3, tcp: tcp(40201, 80, TCP.SYN) }),
      expected: pkt({ src: CLIENT, dst: BE3, tcp: tcp(40201, 8080, TCP.SYN) }),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "and leaves the node with the client's address",
      hook: "egress",
      input: pkt({ src: CLIENT, dst: BE3, tcp: tcp(40201, 8080, TCP.SYN) }),
      expected: "unchanged",
      verdict: TC_ACT.OK,
    });
  });
});

Deno.test("packet: no backend gets a TCP reset or ICMP port unreachable from the VIP", async () => {
  await withDataplane((dp) => {
    const udpIn = buildIp({
      src: CLIENT,
      dst: VIP,
      udp: { sport: 40302, dport: 54 },
      payload: new Uint8Array(100),
    });
    const fixtures: Fixture[] = [
      {
        description: "a SYN to VIP:81 (no backends) is answered with RST+ACK from VIP:81",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          tcp: tcp(40301, 81, TCP.SYN, { seq: 5000 }),
        }),
        expected: buildPacket({
          srcMac: NODE_MAC,
          dstMac: CLIENT_MAC,
          src: VIP,
          dst: CLIENT,
          id: 0,
          tcp: tcp(81, 40301, TCP.RST | TCP.ACK, {
            seq: 0,
            ack: 5001,
            window: 0,
          }),
        }),
        verdict: TC_ACT.REDIRECT,
      },
      {
        description: "a data segment with ACK and IP options is answered with RST, seq = its ack",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          ipOptions: [1, 1, 1, 0],
          tcp: tcp(40303, 81, TCP.ACK | TCP.PSH, { seq: 9, ack: 77 }),
          payload: new Uint8Array(30),
        }),
        expected: buildPacket({
          srcMac: NODE_MAC,
          dstMac: CLIENT_MAC,
          src: VIP,
          dst: CLIENT,
          id: 0,
          tcp: tcp(81, 40303, TCP.RST, { seq: 77, ack: 0, window: 0 }),
        }),
        verdict: TC_ACT.REDIRECT,
      },
      {
        description: "a RST to a service without backends is dropped, never answered",
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(40304, 81, TCP.RST) }),
        expected: "unchanged",
        verdict: TC_ACT.SHOT,
      },
      {
        description: "UDP to VIP:54 (no backends) gets ICMP port unreachable from the VIP",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          udp: { sport: 40302, dport: 54 },
          payload: new Uint8Array(100),
        }),
        expected: buildPacket({
          srcMac: NODE_MAC,
          dstMac: CLIENT_MAC,
          src: VIP,
          dst: CLIENT,
          id: 0,
          frag: 0,
          tos: 0xc0,
          icmp: { type: 3, code: 3 },
          payload: udpIn.subarray(0, 28),
        }),
        verdict: TC_ACT.REDIRECT,
      },
    ];
    for (const f of fixtures) check(dp, f);
    assert.equal(dp.maps.serviceCounters(S.rej81).rejected, 2n, "the dropped RST is no reject");
    const ev = dp.maps.events();
    assert.equal(ev.reject_tcp, 2n);
    assert.equal(ev.reject_udp, 1n);
    assert.equal(ev.reject_failed, 0n, "a RST left unanswered is no failure");
  });
});

//   client ──SYN──► VIP:9999 (no listener on that port, VIP has others)
//          ◄─RST─── VIP:9999          ◄─ICMP port unreachable─ VIP for UDP
Deno.test("packet: a port or protocol of a VIP no listener has is refused (RST, ICMP port unreachable), not dropped", async () => {
  await withDataplane((dp) => {
    const udpIn = buildIp({
      src: CLIENT,
      dst: VIP,
      udp: { sport: 40606, dport: 80 },
      payload: new Uint8Array(8),
    });
    const fixtures: Fixture[] = [
      {
        description: "a SYN to VIP:9999 (no listener) is answered with RST+ACK from VIP:9999",
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(40605, 9999, TCP.SYN, { seq: 100 }) }),
        expected: buildPacket({
          srcMac: NODE_MAC,
          dstMac: CLIENT_MAC,
          src: VIP,
          dst: CLIENT,
          id: 0,
          tcp: tcp(9999, 40605, TCP.RST | TCP.ACK, { seq: 0, ack: 101, window: 0 }),
        }),
        verdict: TC_ACT.REDIRECT,
      },
      {
        description: "UDP to VIP:80 (a TCP-only listener) gets ICMP port unreachable from the VIP",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          udp: { sport: 40606, dport: 80 },
          payload: new Uint8Array(8),
        }),
        expected: buildPacket({
          srcMac: NODE_MAC,
          dstMac: CLIENT_MAC,
          src: VIP,
          dst: CLIENT,
          id: 0,
          frag: 0,
          tos: 0xc0,
          icmp: { type: 3, code: 3 },
          payload: udpIn.subarray(0, 28),
        }),
        verdict: TC_ACT.REDIRECT,
      },
      {
        description: "a RST to a port without a listener is dropped, never answered",
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(40607, 9999, TCP.RST) }),
        expected: "unchanged",
        verdict: TC_ACT.SHOT,
      },
      {
        description: "TCP to a port of a non-VIP address still passes",
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: OTHER, tcp: tcp(40608, 9999, TCP.SYN) }),
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
    ];
    for (const f of fixtures) check(dp, f);
    const ev = dp.maps.events();
    assert.equal(ev.reject_tcp, 1n);
    assert.equal(ev.reject_udp, 1n);
    assert.equal(ev.reject_failed, 0n, "the unanswered RST is no failed reject");
    assert.equal(dp.maps.conntrack().length, 0, "nothing was tracked");
  });
});

Deno.test("packet: the data plane picks the backend Maglev predicts, rejects included", async () => {
  await withDataplane((dp) => {
    const members = [
      { id: B.m1, addr: "198.18.201.21" },
      { id: B.m2, addr: "198.18.201.22" },
      { id: B.m3, addr: "198.18.201.23" },
    ];
    const table = dp.maps.setService(
      { addr: VIP, port: 83, protocol: "TCP" },
      { id: S.mag83, backends: members.map((m) => ({ id: m.id, weight: 1 })) },
    );
    const seen = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const sport = 41000 + i;
      const id = pickBackend(table, {
        saddr: CLIENT,
        daddr: VIP,
        sport,
        dport: 83,
        proto: PROTO.TCP,
      });
      seen.add(id);
      const be = members.find((m) => m.id === id)!;
      check(dp, {
        description: `flow from :${sport} goes to backend ${id} as flowHash() predicts`,
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(sport, 83, TCP.SYN) }),
        expected: pkt({
          src: CLIENT,
          dst: be.addr,
          tcp: tcp(sport, 8080, TCP.SYN),
        }),
        verdict: TC_ACT.OK,
      });
    }
    assert.equal(seen.size, 3, "all three backends got flows");

    // VIP:82 is half backend, half reject.
    const shareTable = maglevTable([
      { key: `${BE1}:8080`, id: B.be1tcp, weight: 1 },
      { key: "reject", id: 0, weight: 1 },
    ], maglevSize(2));
    const outcomes = new Set<number>();
    for (let i = 0; i < 16; i++) {
      const sport = 42000 + i;
      const id = pickBackend(shareTable, {
        saddr: CLIENT,
        daddr: VIP,
        sport,
        dport: 82,
        proto: PROTO.TCP,
      });
      outcomes.add(id);
      const input = pkt({
        src: CLIENT,
        dst: VIP,
        tcp: tcp(sport, 82, TCP.SYN, { seq: 1 }),
      });
      check(
        dp,
        id === 0
          ? {
            description: `flow from :${sport} falls in the rejected share: RST`,
            hook: "ingress",
            input,
            expected: buildPacket({
              srcMac: NODE_MAC,
              dstMac: CLIENT_MAC,
              src: VIP,
              dst: CLIENT,
              id: 0,
              tcp: tcp(82, sport, TCP.RST | TCP.ACK, {
                seq: 0,
                ack: 2,
                window: 0,
              }),
            }),
            verdict: TC_ACT.REDIRECT,
          }
          : {
            description: `flow from :${sport} goes to the backend`,
            hook: "ingress",
            input,
            expected: pkt({
              src: CLIENT,
              dst: BE1,
              tcp: tcp(sport, 8080, TCP.SYN, { seq: 1 }),
            }),
            verdict: TC_ACT.OK,
          },
      );
    }
    assert.equal(outcomes.size, 2, "both outcomes occurred");
  });
});

Deno.test("packet: a flow keeps its backend across table changes until the backend goes", async () => {
  await withDataplane((dp) => {
    const svc = { addr: VIP, port: 80, protocol: "TCP" } as const;
    const syn = (sport: number) => pkt({ src: CLIENT, dst: VIP, tcp: tcp(sport, 80, TCP.SYN) });
    const ack = (sport: number) => pkt({ src: CLIENT, dst: VIP, tcp: tcp(sport, 80, TCP.ACK) });
    const to = (addr: string, sport: number, flags: number) =>
      pkt({ src: CLIENT, dst: addr, tcp: tcp(sport, 8080, flags) });
    check(dp, {
      description: "flow A starts on be1",
      hook: "ingress",
      input: syn(40401),
      expected: to(BE1, 40401, TCP.SYN),
      verdict: TC_ACT.OK,
    });
    dp.maps.setService(svc, {
      id: S.tcp80,
      backends: [{ id: B.be1tcp, weight: 0 }, { id: B.be2tcp, weight: 1 }],
    });
    check(dp, {
      description: "after be1's weight drops to 0, flow A stays on be1",
      hook: "ingress",
      input: ack(40401),
      expected: to(BE1, 40401, TCP.ACK),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "a new flow B goes to be2",
      hook: "ingress",
      input: syn(40402),
      expected: to(BE2, 40402, TCP.SYN),
      verdict: TC_ACT.OK,
    });
    dp.maps.deleteBackend(B.be1tcp);
    check(dp, {
      description: "once be1 is removed, flow A moves to be2",
      hook: "ingress",
      input: ack(40401),
      expected: to(BE2, 40401, TCP.ACK),
      verdict: TC_ACT.OK,
    });
    assert.equal(dp.maps.events().backend_gone, 1n);

    check(dp, {
      description: "a RST closes flow B",
      hook: "ingress",
      input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(40402, 80, TCP.RST) }),
      expected: to(BE2, 40402, TCP.RST),
      verdict: TC_ACT.OK,
    });
    const b = dp.maps.conntrack().find((e) =>
      e.key.sport === 40402 && e.value.kind === CT_KIND.DNAT
    );
    assert.equal(b?.value.state, CT_STATE.CLOSED);
    check(dp, {
      description: "a new SYN on the closed tuple starts a new flow",
      hook: "ingress",
      input: syn(40402),
      expected: to(BE2, 40402, TCP.SYN),
      verdict: TC_ACT.OK,
    });
    const b2 = dp.maps.conntrack().find((e) =>
      e.key.sport === 40402 && e.value.kind === CT_KIND.DNAT
    );
    assert.equal(b2?.value.state, CT_STATE.NEW);
  });
});

//   client ──SYN──► VIP ──► be1        NEW (60 s)
//          ◄─SYN-ACK── VIP ◄── be1      SYN_RECV (60 s): a spoofed SYN stops here
//          ──ACK──► VIP ──► be1         ESTABLISHED (5 days)
//   no flow: ACK ──► picked up, PICKUP (60 s) until be1 answers; RST, FIN, SYN-ACK ──► dropped
Deno.test("packet: a handshake is established by the client's ACK, not by the backend's SYN-ACK", async () => {
  await withDataplane((dp) => {
    const primary = (sport: number) =>
      dp.maps.conntrack().find((e) => e.key.sport === sport && e.value.kind === CT_KIND.DNAT)
        ?.value.state;
    const fromClient = (sport: number, flags: number) =>
      pkt({ src: CLIENT, dst: VIP, tcp: tcp(sport, 80, flags) });
    const fromBackend = (sport: number, flags: number) =>
      pkt({ src: BE1, dst: CLIENT, tcp: tcp(8080, sport, flags) });
    const send = (hook: "ingress" | "egress", frame: Uint8Array<ArrayBuffer>) =>
      testRun(hook === "ingress" ? dp.ingressFd : dp.egressFd, frame);

    assert.equal(send("ingress", fromClient(40901, TCP.SYN)).retval, TC_ACT.OK);
    assert.equal(primary(40901), CT_STATE.NEW, "after the SYN");
    assert.equal(decodePacket(send("egress", fromBackend(40901, TCP.SYN | TCP.ACK)).data).src, VIP);
    assert.equal(primary(40901), CT_STATE.SYN_RECV, "after the SYN-ACK: half-open");
    send("ingress", fromClient(40901, TCP.SYN));
    assert.equal(primary(40901), CT_STATE.SYN_RECV, "a retransmitted SYN establishes nothing");
    send("ingress", fromClient(40901, TCP.ACK));
    assert.equal(primary(40901), CT_STATE.ESTABLISHED, "after the client's ACK");

    // A remote backend's SYN-ACK comes back to node:port: the same rule.
    assert.equal(
      testRun(dp.ingressFd, pkt({ src: CLIENT, dst: VIP2, tcp: tcp(40902, 80, TCP.SYN) })).retval,
      TC_ACT.OK,
    );
    const snat = testRun(
      dp.egressFd,
      pkt({ src: CLIENT, dst: BE3, tcp: tcp(40902, 8080, TCP.SYN) }),
    );
    const port = decodePacket(snat.data).sport!;
    testRun(dp.ingressFd, pkt({ src: BE3, dst: NODE, tcp: tcp(8080, port, TCP.SYN | TCP.ACK) }));
    assert.equal(primary(40902), CT_STATE.SYN_RECV, "remote: after the SYN-ACK");

    // Met mid-stream: a bare ACK is picked up, and established once the backend answers.
    check(dp, {
      description: "a bare ACK without a flow is picked up and sent to be1",
      hook: "ingress",
      input: fromClient(40903, TCP.ACK),
      expected: pkt({ src: CLIENT, dst: BE1, tcp: tcp(40903, 8080, TCP.ACK) }),
      verdict: TC_ACT.OK,
    });
    assert.equal(primary(40903), CT_STATE.PICKUP, "picked up, unanswered");
    send("ingress", fromClient(40903, TCP.ACK | TCP.PSH));
    assert.equal(primary(40903), CT_STATE.PICKUP, "the client alone establishes nothing");
    send("egress", fromBackend(40903, TCP.ACK));
    assert.equal(primary(40903), CT_STATE.ESTABLISHED, "after be1's answer");

    // Segments that belong to no flow make none.
    const before = dp.maps.conntrack().length;
    const cases = [
      ["RST", TCP.RST],
      ["RST+ACK", TCP.RST | TCP.ACK],
      ["FIN", TCP.FIN],
      ["FIN+ACK", TCP.FIN | TCP.ACK],
      ["SYN+ACK", TCP.SYN | TCP.ACK],
      ["SYN+RST", TCP.SYN | TCP.RST],
      ["no flags", 0],
    ] as const;
    let sport = 40910;
    for (const [what, flags] of cases) {
      check(dp, {
        description: `a bare ${what} to VIP:80 without a flow is dropped`,
        hook: "ingress",
        input: fromClient(++sport, flags),
        expected: "unchanged",
        verdict: TC_ACT.SHOT,
      });
    }
    assert.equal(dp.maps.conntrack().length, before, "no conntrack entry made");
    assert.equal(dp.maps.serviceCounters(S.tcp80).rejected, 0n, "dropped, not answered");
  });
});

Deno.test("packet: ICMP errors from a local backend are translated back to the client", async () => {
  await withDataplane((dp) => {
    check(dp, {
      description: "a TCP SYN establishes the flow",
      hook: "ingress",
      input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(40501, 80, TCP.SYN) }),
      expected: pkt({ src: CLIENT, dst: BE1, tcp: tcp(40501, 8080, TCP.SYN) }),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "the backend's frag-needed quoting client->be1 TCP leaves as about client->VIP",
      hook: "egress",
      input: pkt({
        src: BE1,
        dst: CLIENT,
        icmp: { type: 3, code: 4, rest: 1280 },
        payload: buildIp({
          src: CLIENT,
          dst: BE1,
          ttl: 63,
          tcp: tcp(40501, 8080, TCP.ACK, { seq: 5 }),
        }),
      }),
      expected: pkt({
        src: VIP,
        dst: CLIENT,
        icmp: { type: 3, code: 4, rest: 1280 },
        payload: buildIp({
          src: CLIENT,
          dst: VIP,
          ttl: 63,
          tcp: tcp(40501, 80, TCP.ACK, { seq: 5 }),
        }),
      }),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "a UDP flow to the backend",
      hook: "ingress",
      input: pkt({ src: CLIENT, dst: VIP, udp: { sport: 40502, dport: 53 } }),
      expected: pkt({
        src: CLIENT,
        dst: BE1,
        udp: { sport: 40502, dport: 5353 },
      }),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "the backend's port unreachable is about VIP:53 for the client",
      hook: "egress",
      input: pkt({
        src: BE1,
        dst: CLIENT,
        icmp: { type: 3, code: 3 },
        payload: buildIp({
          src: CLIENT,
          dst: BE1,
          udp: { sport: 40502, dport: 5353 },
        }),
      }),
      expected: pkt({
        src: VIP,
        dst: CLIENT,
        icmp: { type: 3, code: 3 },
        payload: buildIp({
          src: CLIENT,
          dst: VIP,
          udp: { sport: 40502, dport: 53 },
        }),
      }),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "an ICMP error about an unknown flow passes untouched",
      hook: "egress",
      input: pkt({
        src: BE1,
        dst: CLIENT,
        icmp: { type: 3, code: 3 },
        payload: buildIp({
          src: CLIENT,
          dst: BE1,
          udp: { sport: 49999, dport: 5353 },
        }),
      }),
      expected: "unchanged",
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "an echo request to the VIP passes untouched",
      hook: "ingress",
      input: pkt({
        src: CLIENT,
        dst: VIP,
        icmp: { type: 8, code: 0, rest: 0x00010001 },
      }),
      expected: "unchanged",
      verdict: TC_ACT.OK,
    });
  });
});

Deno.test("packet: other traffic is left alone; malformed packets to a VIP are dropped", async () => {
  await withDataplane((dp) => {
    const truncatedTcp = (dst: string) => {
      const full = pkt({ src: CLIENT, dst, tcp: tcp(40601, 80, TCP.SYN) });
      const cut = full.slice(0, 14 + 20 + 10);
      new DataView(cut.buffer).setUint16(16, 30); // IP total length says 30: consistent, cut L4
      return cut;
    };
    const badDoff = pkt({
      src: CLIENT,
      dst: VIP,
      tcp: tcp(40602, 80, TCP.SYN),
    });
    badDoff[14 + 20 + 12] = 2 << 4;
    const shortIhl = pkt({
      src: CLIENT,
      dst: VIP,
      tcp: tcp(40603, 80, TCP.SYN),
    });
    shortIhl[14] = 0x44;
    const fixtures: Fixture[] = [
      {
        description: "ARP passes",
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP, etherType: 0x0806 }),
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
      {
        description: "IPv6 passes",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          etherType: 0x86dd,
          payload: new Uint8Array(60),
        }),
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
      {
        description: "TCP to a non-VIP address passes",
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: OTHER, tcp: tcp(40604, 80, TCP.SYN) }),
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
      {
        description: "GRE to a VIP passes",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          proto: 47,
          payload: new Uint8Array(24),
        }),
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
      {
        description: "a first fragment (MF) to a VIP is dropped",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          frag: 0x2000,
          tcp: tcp(40607, 80, TCP.SYN),
        }),
        expected: "unchanged",
        verdict: TC_ACT.SHOT,
      },
      {
        description: "a later fragment to a VIP is dropped",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          frag: 0x0010,
          proto: 6,
          payload: new Uint8Array(40),
        }),
        expected: "unchanged",
        verdict: TC_ACT.SHOT,
      },
      {
        description: "a fragment to another address passes",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: OTHER,
          frag: 0x2000,
          udp: { sport: 1, dport: 2 },
        }),
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
      {
        description: "a truncated TCP header to a VIP is dropped",
        hook: "ingress",
        input: truncatedTcp(VIP),
        expected: "unchanged",
        verdict: TC_ACT.SHOT,
      },
      {
        description: "a truncated TCP header to another address passes",
        hook: "ingress",
        input: truncatedTcp(OTHER),
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
      {
        description: "TCP data offset < 5 to a VIP is dropped",
        hook: "ingress",
        input: badDoff,
        expected: "unchanged",
        verdict: TC_ACT.SHOT,
      },
      {
        description: "IHL < 5 passes to the kernel, which drops it",
        hook: "ingress",
        input: shortIhl,
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
      {
        description: "IP total length beyond the frame passes to the kernel, which drops it",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          totalLength: 1500,
          tcp: tcp(40608, 80, TCP.SYN),
        }),
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
      // (the kernel's test runner refuses IPv4 frames shorter than an IP header)
      {
        description: "an IP header without its TCP header, to a VIP, is dropped",
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP, proto: 6 }),
        expected: "unchanged",
        verdict: TC_ACT.SHOT,
      },
      {
        description: "a bare 14-byte Ethernet header passes",
        hook: "ingress",
        input: pkt({
          src: CLIENT,
          dst: VIP,
          etherType: 0x0806,
          payload: new Uint8Array(0),
        }),
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
      {
        description: "egress traffic unrelated to any flow passes",
        hook: "egress",
        input: pkt({ src: OTHER, dst: CLIENT, tcp: tcp(80, 40609, TCP.ACK) }),
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
    ];
    for (const f of fixtures) {
      const input = f.input;
      // checksum errors of deliberately broken inputs are not the program's
      let out;
      try {
        out = testRun(f.hook === "ingress" ? dp.ingressFd : dp.egressFd, input);
      } catch (e) {
        throw new Error(`[${f.description}]`, { cause: e });
      }
      assert.equal(out.retval, f.verdict, `[${f.description}] verdict`);
      assert.deepEqual(out.data, input, `[${f.description}] untouched`);
    }
    const ev = dp.maps.events();
    assert.equal(ev.frag_dropped, 2n);
    assert.equal(ev.malformed_dropped, 3n);
    assert.equal(dp.maps.conntrack().length, 0, "nothing was tracked");
  });
});

Deno.test("packet: after a flow closes, a direct connection on the same tuple is left alone", async () => {
  await withDataplane((dp) => {
    const synAck = pkt({
      src: BE1,
      dst: CLIENT,
      tcp: tcp(8080, 40701, TCP.SYN | TCP.ACK),
    });
    const fixtures: Fixture[] = [
      {
        description: "a flow through the VIP",
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(40701, 80, TCP.SYN) }),
        expected: pkt({
          src: CLIENT,
          dst: BE1,
          tcp: tcp(40701, 8080, TCP.SYN),
        }),
        verdict: TC_ACT.OK,
      },
      {
        description: "its SYN-ACK leaves as VIP:80",
        hook: "egress",
        input: synAck,
        expected: pkt({
          src: VIP,
          dst: CLIENT,
          tcp: tcp(80, 40701, TCP.SYN | TCP.ACK),
        }),
        verdict: TC_ACT.OK,
      },
      {
        description: "the client resets it",
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(40701, 80, TCP.RST) }),
        expected: pkt({
          src: CLIENT,
          dst: BE1,
          tcp: tcp(40701, 8080, TCP.RST),
        }),
        verdict: TC_ACT.OK,
      },
      {
        description: "the SYN-ACK of a direct connection from the same port is not translated",
        hook: "egress",
        input: synAck,
        expected: "unchanged",
        verdict: TC_ACT.OK,
      },
    ];
    for (const f of fixtures) check(dp, f);
    const left = dp.maps.conntrack().filter((e) => e.value.kind === CT_KIND.REPLY);
    assert.equal(left.length, 0, "the stale reply entry is gone");
  });
});

Deno.test("packet: ICMP errors a client sends about a reply reach the backend", async () => {
  await withDataplane((dp) => {
    const ROUTER = "198.18.192.254";
    // A reply the client got from the VIP, quoted whole by its ICMP error.
    const quoteTcp = (src: string, sport: number, dst: string, dport: number) =>
      buildIp({ src, dst, tcp: tcp(sport, dport, TCP.ACK, { seq: 7, ack: 1001 }) });
    check(dp, {
      description: "a TCP flow to the local backend",
      hook: "ingress",
      input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(40511, 80, TCP.SYN) }),
      expected: pkt({ src: CLIENT, dst: BE1, tcp: tcp(40511, 8080, TCP.SYN) }),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "the client's frag-needed about VIP:80->client goes to be1, about be1:8080",
      hook: "ingress",
      input: pkt({
        src: CLIENT,
        dst: VIP,
        icmp: { type: 3, code: 4, rest: 1200 },
        payload: quoteTcp(VIP, 80, CLIENT, 40511),
      }),
      expected: pkt({
        src: CLIENT,
        dst: BE1,
        icmp: { type: 3, code: 4, rest: 1200 },
        payload: quoteTcp(BE1, 8080, CLIENT, 40511),
      }),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "a router's frag-needed on the client's side keeps the router as source",
      hook: "ingress",
      input: pkt({
        src: ROUTER,
        dst: VIP,
        icmp: { type: 3, code: 4, rest: 1400 },
        payload: quoteTcp(VIP, 80, CLIENT, 40511),
      }),
      expected: pkt({
        src: ROUTER,
        dst: BE1,
        icmp: { type: 3, code: 4, rest: 1400 },
        payload: quoteTcp(BE1, 8080, CLIENT, 40511),
      }),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "an error about a reply of no tracked flow passes untouched",
      hook: "ingress",
      input: pkt({
        src: CLIENT,
        dst: VIP,
        icmp: { type: 3, code: 4, rest: 1200 },
        payload: quoteTcp(VIP, 80, CLIENT, 49999),
      }),
      expected: "unchanged",
      verdict: TC_ACT.OK,
    });

    // A remote backend's flow runs from node:port: the error must be about that.
    check(dp, {
      description: "UDP to VIP2:53 goes to the remote backend",
      hook: "ingress",
      input: pkt({ src: CLIENT, dst: VIP2, udp: { sport: 40512, dport: 53 } }),
      expected: pkt({ src: CLIENT, dst: BE3, udp: { sport: 40512, dport: 5353 } }),
      verdict: TC_ACT.OK,
    });
    const out = testRun(
      dp.egressFd,
      pkt({ src: CLIENT, dst: BE3, udp: { sport: 40512, dport: 5353 } }),
    );
    const natPort = decodePacket(out.data).sport!;
    const quoteUdp = (src: string, sport: number, dst: string, dport: number) =>
      buildIp({ src, dst, udp: { sport, dport }, payload: new Uint8Array(12) });
    check(dp, {
      description: "the client's port unreachable about VIP2:53->client goes to be3 at ingress",
      hook: "ingress",
      input: pkt({
        src: CLIENT,
        dst: VIP2,
        icmp: { type: 3, code: 3 },
        payload: quoteUdp(VIP2, 53, CLIENT, 40512),
      }),
      expected: pkt({
        src: CLIENT,
        dst: BE3,
        icmp: { type: 3, code: 3 },
        payload: quoteUdp(BE3, 5353, NODE, natPort),
      }),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description: "and leaves the node from the node's address, as be3's flow knows it",
      hook: "egress",
      input: pkt({
        src: CLIENT,
        dst: BE3,
        icmp: { type: 3, code: 3 },
        payload: quoteUdp(BE3, 5353, NODE, natPort),
      }),
      expected: pkt({
        src: NODE,
        dst: BE3,
        icmp: { type: 3, code: 3 },
        payload: quoteUdp(BE3, 5353, NODE, natPort),
      }),
      verdict: TC_ACT.OK,
    });
    assert.equal(dp.maps.events().icmp_translated, 4n);
  });
});

/** Moves every conntrack entry's last use `seconds` into the past: time passes, no packet. */
function idle(dp: Dataplane, seconds: number): void {
  const ct = dp.object.map("conntrack");
  for (const [key, bytes] of ct.entries()) {
    const v = flowValue.decode(bytes);
    // CLOCK_MONOTONIC_COARSE; going back past its zero wraps like the program's u64.
    v.last_seen = BigInt.asUintN(64, v.last_seen - BigInt(seconds) * 1_000_000_000n);
    v.created = BigInt.asUintN(64, v.created - BigInt(seconds) * 1_000_000_000n);
    ct.update(key, flowValue.encode(v));
  }
}

Deno.test("packet: an ICMP error's translation stays inside its IP total length", async () => {
  await withDataplane((dp) => {
    // A quote of the IP header and 8 bytes (RFC 792) in a frame with bytes after the IP
    // packet (a trailer or padding): the quoted TCP checksum is not part of the message, and
    // the bytes after it must neither change nor count in the ICMP checksum.
    const trailer = Array.from({ length: 16 }, (_, i) => 0xa0 + i);
    const frame = (quote: Uint8Array, dst: string) => {
      const f = pkt({ src: CLIENT, dst, icmp: { type: 3, code: 4, rest: 1200 }, payload: quote });
      const out = new Uint8Array(f.length + trailer.length);
      out.set(f);
      out.set(trailer, f.length);
      return out;
    };
    const quote = (src: string, sport: number) =>
      buildIp({ src, dst: CLIENT, tcp: tcp(sport, 40611, TCP.ACK, { seq: 7, ack: 1001 }) })
        .slice(0, 28);
    check(dp, {
      description: "a TCP flow to the local backend",
      hook: "ingress",
      input: pkt({ src: CLIENT, dst: VIP, tcp: tcp(40611, 80, TCP.SYN) }),
      expected: pkt({ src: CLIENT, dst: BE1, tcp: tcp(40611, 8080, TCP.SYN) }),
      verdict: TC_ACT.OK,
    });
    check(dp, {
      description:
        "the client's frag-needed quoting 8 bytes reaches be1; the trailer is left alone",
      hook: "ingress",
      input: frame(quote(VIP, 80), VIP),
      expected: frame(quote(BE1, 8080), BE1),
      verdict: TC_ACT.OK,
    });
  });
});

Deno.test("packet: conntrack entries expire after the kernel's timeouts, not before", async () => {
  await withDataplane((dp) => {
    // nf_conntrack defaults: TCP syn_recv 60 s, established 5 days, fin_wait 120 s, close
    // 10 s; UDP 30 s, 120 s once replied ("stream"). Shorter: syn_sent 60 s (the kernel's
    // 120 s), and 60 s for a flow picked up mid-stream until the backend answers.
    const cases = [
      { what: "TCP after a SYN", proto: PROTO.TCP, flags: [TCP.SYN], reply: false, timeout: 60 },
      {
        what: "TCP after the backend's SYN-ACK",
        proto: PROTO.TCP,
        flags: [TCP.SYN],
        reply: true,
        timeout: 60,
      },
      {
        what: "TCP established (the client's ACK after the SYN-ACK)",
        proto: PROTO.TCP,
        flags: [TCP.SYN, TCP.ACK],
        reply: true,
        timeout: 432000,
      },
      {
        what: "TCP picked up mid-stream, unanswered",
        proto: PROTO.TCP,
        flags: [TCP.ACK],
        reply: false,
        timeout: 60,
      },
      {
        what: "TCP picked up mid-stream, answered by the backend",
        proto: PROTO.TCP,
        flags: [TCP.ACK],
        reply: true,
        timeout: 432000,
      },
      {
        what: "TCP after a FIN",
        proto: PROTO.TCP,
        flags: [TCP.SYN, TCP.FIN | TCP.ACK],
        reply: true,
        timeout: 120,
      },
      {
        what: "TCP after a RST",
        proto: PROTO.TCP,
        flags: [TCP.SYN, TCP.RST],
        reply: false,
        timeout: 10,
      },
      { what: "UDP unreplied", proto: PROTO.UDP, flags: [0], reply: false, timeout: 30 },
      { what: "UDP replied", proto: PROTO.UDP, flags: [0], reply: true, timeout: 120 },
    ];
    let sport = 40800;
    for (const c of cases) {
      for (const [idleFor, expired] of [[c.timeout - 1, false], [c.timeout + 1, true]] as const) {
        sport++;
        const dport = c.proto === PROTO.TCP ? 80 : 53;
        const bport = c.proto === PROTO.TCP ? 8080 : 5353;
        // The client's end of the flow, or the backend's.
        const l4 = (flags: number, from: "client" | "backend") => {
          const [src, dst] = from === "client" ? [sport, dport] : [bport, sport];
          return c.proto === PROTO.TCP
            ? { tcp: tcp(src, dst, flags) }
            : { udp: { sport: src, dport: dst } };
        };
        const send = (flags: number) =>
          testRun(dp.ingressFd, pkt({ src: CLIENT, dst: VIP, ...l4(flags, "client") }));
        send(c.flags[0]!);
        if (c.reply) {
          const r = testRun(
            dp.egressFd,
            pkt({
              src: BE1,
              dst: CLIENT,
              ...l4(
                c.proto !== PROTO.TCP ? 0 : c.flags[0] === TCP.SYN ? TCP.SYN | TCP.ACK : TCP.ACK,
                "backend",
              ),
            }),
          );
          assert.equal(decodePacket(r.data).src, VIP, `[${c.what}] reply translated`);
        }
        for (const f of c.flags.slice(1)) send(f);
        const svc = c.proto === PROTO.TCP ? S.tcp80 : S.udp53;
        const before = dp.maps.serviceCounters(svc).new_flows;
        idle(dp, idleFor);
        // The backend's reply of an expired flow is no longer the VIP's.
        const reply = testRun(
          dp.egressFd,
          pkt({ src: BE1, dst: CLIENT, ...l4(c.proto === PROTO.TCP ? TCP.ACK : 0, "backend") }),
        );
        assert.equal(
          decodePacket(reply.data).src,
          expired ? BE1 : VIP,
          `[${c.what}, idle ${idleFor} s] reply ${expired ? "left alone" : "translated"}`,
        );
        // The client's next packet belongs to the flow, or starts a new one.
        const out = send(c.proto === PROTO.TCP ? TCP.ACK : 0);
        assert.equal(out.retval, TC_ACT.OK);
        assert.equal(decodePacket(out.data).dst, BE1);
        assert.equal(
          dp.maps.serviceCounters(svc).new_flows - before,
          expired ? 1n : 0n,
          `[${c.what}, idle ${idleFor} s] ${expired ? "expired: a new flow" : "still tracked"}`,
        );
      }
    }
  });
});

Deno.test("packet: SNAT ports run out loudly (the client gets a reset); a finished flow's port is taken at once", async () => {
  await withDataplane((dp) => {
    dp.maps.setConfig({ nodeAddr: NODE, snatPorts: [61000, 61001] });
    const syn = (sport: number) => pkt({ src: CLIENT, dst: VIP2, tcp: tcp(sport, 80, TCP.SYN) });
    /** Opens flow :sport (SYN, SYN-ACK) and returns its SNAT port. */
    const open = (sport: number) => {
      check(dp, {
        description: `flow :${sport} to the remote backend is DNATed`,
        hook: "ingress",
        input: syn(sport),
        expected: pkt({ src: CLIENT, dst: BE3, tcp: tcp(sport, 8080, TCP.SYN) }),
        verdict: TC_ACT.OK,
      });
      const out = testRun(
        dp.egressFd,
        pkt({ src: CLIENT, dst: BE3, tcp: tcp(sport, 8080, TCP.SYN) }),
      );
      const d = decodePacket(out.data);
      assert.equal(d.src, NODE);
      fromBackend(d.sport!, sport, TCP.SYN | TCP.ACK);
      // Finished: a half-open flow's port would go to a new SYN once old (a flood's flows).
      fromClient(sport, TCP.ACK);
      return d.sport!;
    };
    const fromClient = (sport: number, flags: number) =>
      check(dp, {
        description: `client :${sport} sends flags ${flags}`,
        hook: "ingress",
        input: pkt({ src: CLIENT, dst: VIP2, tcp: tcp(sport, 80, flags) }),
        expected: pkt({ src: CLIENT, dst: BE3, tcp: tcp(sport, 8080, flags) }),
        verdict: TC_ACT.OK,
      });
    /** A backend packet to node:port must reach the client of the flow now on that port. */
    const fromBackend = (port: number, sport: number, flags: number) =>
      check(dp, {
        description: `backend to node:${port} (flags ${flags}) reaches client :${sport}`,
        hook: "ingress",
        input: pkt({ src: BE3, dst: NODE, tcp: tcp(8080, port, flags) }),
        expected: pkt({ src: VIP2, dst: CLIENT, tcp: tcp(80, sport, flags) }),
        verdict: TC_ACT.OK,
      });
    /** The answer to a SYN that finds no free port: RST+ACK from the VIP, as for no backend. */
    const reset = (sport: number) =>
      buildPacket({
        srcMac: NODE_MAC,
        dstMac: CLIENT_MAC,
        src: VIP2,
        dst: CLIENT,
        id: 0,
        tcp: tcp(80, sport, TCP.RST | TCP.ACK, { seq: 0, ack: 1001, window: 0 }),
      });
    const refused = (sport: number, why: string) =>
      check(dp, {
        description: why,
        hook: "ingress",
        input: syn(sport),
        expected: reset(sport),
        verdict: TC_ACT.REDIRECT,
      });
    /** Conntrack entries of client port :sport (DNAT at ingress, SNAT at egress). */
    const entriesOf = (sport: number) =>
      dp.maps.conntrack().filter((e) => e.key.saddr === CLIENT && e.key.sport === sport);

    const a = open(40901);
    const b = open(40902);
    assert.deepEqual([a, b].sort(), [61000, 61001], "two live flows never share a port");
    refused(40903, "a third flow finds no free port: reset from the VIP, counted");
    assert.equal(dp.maps.events().snat_exhausted, 1n);
    fromClient(40902, TCP.FIN | TCP.ACK);
    refused(40903, "a half-closed flow (one FIN) keeps its port");
    assert.equal(dp.maps.events().snat_exhausted, 2n);

    fromClient(40901, TCP.RST);
    assert.equal(open(40904), a, "the port of a reset flow is taken at once");
    assert.deepEqual(entriesOf(40901), [], "the reset flow's DNAT and SNAT entries are gone");
    check(dp, {
      description: "a late packet of the reset flow no longer leaves from the port it had",
      hook: "egress",
      input: pkt({ src: CLIENT, dst: BE3, tcp: tcp(40901, 8080, TCP.ACK) }),
      expected: "unchanged",
      verdict: TC_ACT.OK,
    });
    assert.equal(entriesOf(40904).length, 2, "the new flow's DNAT and SNAT entries");
    fromBackend(a, 40904, TCP.ACK);

    fromBackend(b, 40902, TCP.FIN | TCP.ACK);
    fromClient(40902, TCP.ACK);
    assert.equal(open(40905), b, "after FINs both ways a SYN takes the port (TIME_WAIT reuse)");
    assert.deepEqual(entriesOf(40902), [], "the closed flow's DNAT and SNAT entries are gone");

    // Connections opened and closed in sequence keep succeeding on the one port 40904 leaves.
    fromClient(40905, TCP.RST);
    for (let i = 0; i < 30; i++) {
      const sport = 41000 + i;
      const port = open(sport);
      assert.equal(port, b, `flow ${i} gets the free port, never the live flow's`);
      fromClient(sport, TCP.ACK);
      if (i % 3 === 0) {
        fromBackend(port, sport, TCP.RST);
      } else if (i % 3 === 1) {
        fromClient(sport, TCP.FIN | TCP.ACK);
        fromBackend(port, sport, TCP.FIN | TCP.ACK);
        fromClient(sport, TCP.ACK);
      } else {
        fromBackend(port, sport, TCP.FIN | TCP.ACK);
        fromClient(sport, TCP.FIN | TCP.ACK);
      }
    }
    fromBackend(a, 40904, TCP.ACK);
    assert.equal(dp.maps.events().snat_exhausted, 2n, "no flow in the sequence was refused");

    // Port b's last flow closed with FINs (the backend may hold TIME_WAIT): a reset port goes first.
    fromClient(40904, TCP.RST);
    for (let i = 0; i < 8; i++) {
      const sport = 42000 + i;
      assert.equal(open(sport), a, `flow ${i} takes the reset port, not the FIN-closed one`);
      fromClient(sport, TCP.RST);
    }
    assert.equal(open(42100), a);
    assert.equal(open(42101), b, "the FIN-closed port when it is the only one left");
    refused(42102, "and none when both are live");
  });
});

Deno.test("packet: SNAT exhaustion is answered at most 64 times per CPU a second, then dropped (no backscatter)", async () => {
  await withDataplane((dp) => {
    dp.maps.setConfig({ nodeAddr: NODE, snatPorts: [61000, 61000] });
    const syn = (sport: number) => pkt({ src: CLIENT, dst: VIP2, tcp: tcp(sport, 80, TCP.SYN) });
    assert.equal(testRun(dp.ingressFd, syn(42001)).retval, TC_ACT.OK, "the only port is taken");
    testRun(dp.egressFd, pkt({ src: CLIENT, dst: BE3, tcp: tcp(42001, 8080, TCP.SYN) }));
    // By a finished handshake (a half-open one would make the next SYN wait, not be refused).
    testRun(
      dp.ingressFd,
      pkt({ src: BE3, dst: NODE, tcp: tcp(8080, 61000, TCP.SYN | TCP.ACK) }),
    );
    testRun(dp.ingressFd, pkt({ src: CLIENT, dst: VIP2, tcp: tcp(42001, 80, TCP.ACK) }));
    const budget = dp.object.map("reject_budget");
    /** Sets every CPU's budget of the current second to `used`; runs `fn` in the same second. */
    const inSecond = (used: number, fn: () => number): number => {
      for (;;) {
        const sec = monotonicCoarseNs() / 1_000_000_000n;
        const v = new BigUint64Array(budget.fullValueSize / 8).fill((sec << 32n) | BigInt(used));
        budget.update(new Uint8Array(4), new Uint8Array(v.buffer));
        const r = fn();
        if (monotonicCoarseNs() / 1_000_000_000n === sec) return r;
      }
    };
    assert.equal(
      inSecond(63, () => testRun(dp.ingressFd, syn(42002)).retval),
      TC_ACT.REDIRECT,
      "the 64th answer of the second is sent",
    );
    assert.equal(
      inSecond(64, () => testRun(dp.ingressFd, syn(42003)).retval),
      TC_ACT.SHOT,
      "the 65th is dropped",
    );
    const ev = dp.maps.events();
    assert.ok(ev.snat_exhausted >= 2n, "both counted as snat_exhausted");
    assert.equal(dp.maps.conntrack().filter((e) => e.key.sport >= 42002).length, 0);
  });
});

Deno.test("packet: a pod of this node reaching a VIP is source-translated (hairpin)", async () => {
  await withDataplane((dp) => {
    // Test runs see the loopback device (ifindex 1) as the packet's interface.
    const POD_IFINDEX = 1;
    const at = (hook: "ingress" | "egress", input: Uint8Array<ArrayBuffer>) =>
      testRun(hook === "ingress" ? dp.ingressFd : dp.egressFd, input, { ifindex: POD_IFINDEX });
    check(dp, {
      description: "before the interface is marked, be2's flow keeps its address (a client)",
      hook: "ingress",
      input: pkt({ src: BE2, dst: VIP, tcp: tcp(40950, 80, TCP.SYN) }),
      expected: pkt({ src: BE2, dst: BE1, tcp: tcp(40950, 8080, TCP.SYN) }),
      verdict: TC_ACT.OK,
    });
    dp.maps.setPodInterface(POD_IFINDEX);
    for (const [client, cport] of [[BE2, 40951], [BE1, 40952]] as const) {
      const who = client === BE1 ? "be1 (its own backend)" : "be2";
      const syn = at("ingress", pkt({ src: client, dst: VIP, tcp: tcp(cport, 80, TCP.SYN) }));
      assert.equal(syn.retval, TC_ACT.OK);
      assert.deepEqual(
        decodePacket(syn.data),
        decodePacket(pkt({ src: client, dst: BE1, tcp: tcp(cport, 8080, TCP.SYN) })),
        `${who}: DNAT to be1`,
      );
      const out = at("egress", pkt({ src: client, dst: BE1, tcp: tcp(cport, 8080, TCP.SYN) }));
      const d = decodePacket(out.data);
      assert.equal(d.src, NODE, `${who}: the backend sees the node`);
      assert.ok(d.sport! >= SNAT_PORTS[0] && d.sport! <= SNAT_PORTS[1]);
      assert.deepEqual(checksumErrors(out.data), []);
      const reply = at(
        "ingress",
        pkt({ src: BE1, dst: NODE, tcp: tcp(8080, d.sport!, TCP.SYN | TCP.ACK) }),
      );
      assert.deepEqual(
        withoutChecksums(reply.data),
        withoutChecksums(pkt({ src: VIP, dst: client, tcp: tcp(80, cport, TCP.SYN | TCP.ACK) })),
        `${who}: be1's reply comes back from VIP:80`,
      );
      assert.deepEqual(checksumErrors(reply.data), []);
    }
    dp.maps.deletePodInterface(POD_IFINDEX);
    check(dp, {
      description: "once unmarked, new flows keep the client address again",
      hook: "ingress",
      input: pkt({ src: BE2, dst: VIP, tcp: tcp(40953, 80, TCP.SYN) }),
      expected: pkt({ src: BE2, dst: BE1, tcp: tcp(40953, 8080, TCP.SYN) }),
      verdict: TC_ACT.OK,
    });
  });
});

Deno.test("packet: a pod interface's slot never hides it, across changes and a reload", async () => {
  await buildBpf();
  await ensureBpffs();
  const pinDir = `/sys/fs/bpf/blixt-test-slots-${Deno.pid}`;
  const slot = (dp: Dataplane, ifindex: number) => {
    const key = new Uint8Array(new Uint32Array([ifindex % LIMITS.POD_IFACE_SLOTS]).buffer);
    return new DataView(dp.object.map("pod_iface_slots").lookup(key)!.buffer).getUint32(0, true);
  };
  const a = 5, b = 5 + LIMITS.POD_IFACE_SLOTS; // one slot, two interfaces
  let dp = Dataplane.load({ pinDir });
  try {
    assert.equal(slot(dp, a), POD_SLOT.NONE, "nothing listed: every slot rules out");
    dp.maps.setPodInterface(a);
    dp.maps.setPodInterface(b);
    dp.maps.deletePodInterface(a);
    assert.equal(slot(dp, a), POD_SLOT.ASK, "b still has the slot");
    dp.close();
    // A new program (a restart or an upgrade) adopts pod_ifaces; its own slots are written at load.
    dp = Dataplane.load({ pinDir });
    assert.equal(slot(dp, b), POD_SLOT.ASK, "the adopted list's slot");
    assert.equal(slot(dp, b + 1), POD_SLOT.NONE);
    dp.maps.deletePodInterface(b);
    assert.equal(slot(dp, b), POD_SLOT.NONE, "the last one gone");
  } finally {
    dp.close();
    removePins(pinDir);
  }
});

Deno.test("packet: with every SNAT port held, a SYN takes a half-open flow's port once it is old (5 s; 1 s unanswered or 3 s answered for a verified client), never a finished handshake's", async () => {
  await withDataplane((dp) => {
    dp.maps.setConfig({ nodeAddr: NODE, snatPorts: [61000, 61002] });
    const SPOOFED = "198.19.192.7"; // a flood's forged source
    const NEWCOMER = "198.18.192.11"; // a real client that never connected before
    const ingress = (src: string, sport: number, flags: number, dst = VIP2) =>
      testRun(dp.ingressFd, pkt({ src, dst, tcp: tcp(sport, 80, flags) }));
    /** A SYN to the remote backend: the SNAT port it leaves from, or what became of it. */
    const connect = (src: string, sport: number): number | string => {
      const r = ingress(src, sport, TCP.SYN);
      if (r.retval !== TC_ACT.OK) return r.retval === TC_ACT.REDIRECT ? "reset" : "dropped";
      const out = testRun(dp.egressFd, pkt({ src, dst: BE3, tcp: tcp(sport, 8080, TCP.SYN) }));
      return decodePacket(out.data).sport!;
    };
    const fromBackend = (port: number, flags: number) =>
      decodePacket(
        testRun(dp.ingressFd, pkt({ src: BE3, dst: NODE, tcp: tcp(8080, port, flags) })).data,
      );
    /** The backend's SYN-ACK and the client's ACK: a finished handshake. */
    const finish = (src: string, sport: number, port: number) => {
      assert.equal(fromBackend(port, TCP.SYN | TCP.ACK).dst, src);
      ingress(src, sport, TCP.ACK);
    };
    const verified = () =>
      [...dp.object.map("verified_clients").entries()].map(([k]) => [...k].join("."));
    const entriesOf = (src: string, sport: number) =>
      dp.maps.conntrack().filter((e) => e.key.saddr === src && e.key.sport === sport);

    // A client is verified once a backend answers after its handshake (local backend here).
    assert.equal(ingress(CLIENT, 2100, TCP.SYN, VIP).retval, TC_ACT.OK);
    const local = (flags: number) =>
      testRun(dp.egressFd, pkt({ src: BE1, dst: CLIENT, tcp: tcp(8080, 2100, flags) }));
    local(TCP.SYN | TCP.ACK);
    assert.deepEqual(verified(), [], "a SYN-ACK proves nothing: forged sources get them too");
    ingress(CLIENT, 2100, TCP.ACK, VIP);
    local(TCP.ACK | TCP.PSH);
    assert.deepEqual(verified(), [CLIENT], "the backend answered after the client's ACK");
    // A blind ACK after a forged SYN: the backend resets it, which verifies nothing.
    const blind = connect(SPOOFED, 999) as number;
    fromBackend(blind, TCP.SYN | TCP.ACK);
    ingress(SPOOFED, 999, TCP.ACK);
    fromBackend(blind, TCP.RST);
    assert.deepEqual(verified(), [CLIENT]);

    // The flood: forged SYNs hold the three ports; the backend answered two (SYN_RECV).
    const q1 = connect(SPOOFED, 1001) as number;
    const q2 = connect(SPOOFED, 1002) as number;
    const q3 = connect(SPOOFED, 1003) as number;
    assert.deepEqual([q1, q2, q3].sort(), [61000, 61001, 61002]);
    fromBackend(q2, TCP.SYN | TCP.ACK);
    fromBackend(q3, TCP.SYN | TCP.ACK);
    const before = dp.maps.events().snat_exhausted;
    assert.equal(connect(NEWCOMER, 2001), "dropped", "young half-open flows keep their ports");
    assert.equal(connect(CLIENT, 2002), "dropped", "also against a verified client");
    assert.equal(dp.maps.events().snat_exhausted - before, 2n, "counted, not answered");
    assert.equal(dp.maps.events().snat_wait_dropped, 2n, "dropped to wait for a half-open port");
    assert.equal(dp.maps.events().snat_half_open_taken, 0n);

    idle(dp, 1);
    assert.equal(connect(NEWCOMER, 2003), "dropped", "1 s: not yet for an unknown client");
    assert.equal(connect(CLIENT, 2004), q1, "1 s: the unanswered one, for a verified client");
    assert.deepEqual(entriesOf(SPOOFED, 1001), [], "the half-open flow's entries are gone");
    finish(CLIENT, 2004, q1);
    assert.equal(connect(CLIENT, 2005), "dropped", "an answered one is kept 3 s");

    idle(dp, 2);
    assert.equal(connect(NEWCOMER, 2006), "dropped", "3 s: not yet for an unknown client");
    const taken = connect(CLIENT, 2007);
    assert.ok(taken === q2 || taken === q3, `3 s: an answered one for a verified client`);
    finish(CLIENT, 2007, taken as number);

    idle(dp, 2);
    const last = connect(NEWCOMER, 2008);
    assert.equal(last, taken === q2 ? q3 : q2, "5 s: any client takes the last one");
    finish(NEWCOMER, 2008, last as number);

    assert.equal(dp.maps.events().snat_half_open_taken, 3n, "three half-open flows' ports taken");
    assert.equal(dp.maps.events().snat_wait_dropped, 5n);

    idle(dp, 3600);
    assert.equal(
      connect(CLIENT, 2009),
      "reset",
      "finished handshakes keep their ports, however old",
    );
    assert.equal(dp.maps.events().snat_wait_dropped, 5n, "no half-open flow to wait for: reset");
    for (const [src, sport] of [[CLIENT, 2004], [CLIENT, 2007], [NEWCOMER, 2008]] as const) {
      assert.equal(entriesOf(src, sport).length, 2, `${src}:${sport} keeps its entries`);
    }
  });
});

/**
 * The route lookup needs a namespace with routes: test runs happen in `bxfwd<id>`, on bxfwd0 (a
 * veth, so neighbours are real), as if it were node1's uplink, and on bxpods, as if it were the
 * node's pod bridge (not listed in `pod_ifaces` until a test lists it).
 *
 * ```
 *   bxfwd0 198.18.192.1/24 (02:00:00:00:00:02), forwarding on
 *     neighbours: client 198.18.192.10 (02:00:00:00:00:01), node2 198.18.192.2 (02:00:00:00:00:03)
 *     route 198.18.202.0/24 (be3) via node2
 *   bxpods 198.18.201.1/24 (02:00:00:00:00:04), a bridge with one veth port (bxpod0)
 *     neighbour: be1 198.18.201.11 (02:00:00:00:00:05)
 * ```
 */
const POD_BR_MAC = "02:00:00:00:00:04";
const BE1_MAC = "02:00:00:00:00:05";

async function withUplinkNetns(
  fn: (ns: string, ifindex: number, podIfindex: number) => Promise<void> | void,
) {
  const name = `bxfwd${crypto.randomUUID().slice(0, 6)}`;
  const ip = (...args: string[]) => run(["ip", "-n", name, ...args]);
  await run(["ip", "netns", "add", name]);
  try {
    await ip(
      "link",
      "add",
      "bxfwd0",
      "address",
      NODE_MAC,
      "type",
      "veth",
      "peer",
      "name",
      "bxfwd1",
    );
    await ip("link", "set", "bxfwd1", "up");
    await ip("link", "set", "bxfwd0", "up");
    await ip("addr", "add", `${NODE}/24`, "dev", "bxfwd0");
    await ip("neigh", "add", CLIENT, "lladdr", CLIENT_MAC, "dev", "bxfwd0", "nud", "permanent");
    await ip("neigh", "add", NODE2, "lladdr", NODE2_MAC, "dev", "bxfwd0", "nud", "permanent");
    await ip("route", "add", "198.18.202.0/24", "via", NODE2);
    await ip("link", "add", "bxpods", "address", POD_BR_MAC, "type", "bridge");
    await ip("link", "add", "bxpod0", "type", "veth", "peer", "name", "bxpod1");
    await ip("link", "set", "bxpod0", "master", "bxpods", "up");
    await ip("link", "set", "bxpod1", "up");
    await ip("link", "set", "bxpods", "up");
    await ip("addr", "add", "198.18.201.1/24", "dev", "bxpods");
    await ip("neigh", "add", BE1, "lladdr", BE1_MAC, "dev", "bxpods", "nud", "permanent");
    await run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    const ns = `/run/netns/${name}`;
    await fn(ns, ...inNetns(ns, () => [ifIndex("bxfwd0"), ifIndex("bxpods")] as const));
  } finally {
    await run(["ip", "netns", "del", name], { allowFail: true });
  }
}

Deno.test("packet: a remote backend's flow is forwarded past the stack both ways where the route leads back out of the uplink", async () => {
  await withDataplane(async (dp) => {
    await withUplinkNetns(async (ns, ifindex) => {
      const send = (hook: "ingress" | "egress", frame: Uint8Array<ArrayBuffer>) =>
        inNetns(
          ns,
          () => testRun(hook === "ingress" ? dp.ingressFd : dp.egressFd, frame, { ifindex }),
        );
      const syn = (cport: number, extra: Partial<PacketSpec> = {}) =>
        pkt({ src: CLIENT, dst: VIP2, tcp: tcp(cport, 80, TCP.SYN), ...extra });

      // Client -> VIP2:80 (remote be3): both translations at ingress, TTL - 1; the MACs are the
      // kernel's neighbour output's to write (bpf_redirect_neigh), after the program.
      const fwd = send("ingress", syn(41001));
      assert.equal(fwd.retval, TC_ACT.REDIRECT, "redirected out of the uplink");
      const f = decodePacket(fwd.data);
      assert.equal(f.src, NODE);
      assert.ok(f.sport! >= SNAT_PORTS[0] && f.sport! <= SNAT_PORTS[1], `SNAT port ${f.sport}`);
      assert.equal(f.dst, BE3);
      assert.equal(f.dport, 8080);
      assert.equal(f.ttl, 63);
      assert.deepEqual([f.srcMac, f.dstMac], [CLIENT_MAC, NODE_MAC], "MACs left to the kernel");
      assert.deepEqual(checksumErrors(fwd.data), []);
      // The egress hook sees the redirected packet again: nothing there to translate.
      const again = send("egress", fwd.data.slice());
      assert.equal(again.retval, TC_ACT.OK);
      assert.deepEqual(again.data, fwd.data, "not translated twice");

      // be3 -> node:port: back to VIP2:80 -> client, out of the uplink.
      const reply = pkt({
        srcMac: NODE2_MAC,
        src: BE3,
        dst: NODE,
        tcp: tcp(8080, f.sport!, TCP.SYN | TCP.ACK),
      });
      const back = send("ingress", reply);
      assert.equal(back.retval, TC_ACT.REDIRECT);
      const b = decodePacket(back.data);
      assert.deepEqual([b.src, b.sport, b.dst, b.dport, b.ttl], [VIP2, 80, CLIENT, 41001, 63]);
      assert.deepEqual([b.srcMac, b.dstMac], [NODE2_MAC, NODE_MAC], "MACs left to the kernel");
      assert.deepEqual(checksumErrors(back.data), []);
      // The established flow's next packet takes the same path.
      const ack = send("ingress", pkt({ src: CLIENT, dst: VIP2, tcp: tcp(41001, 80, TCP.ACK) }));
      assert.equal(ack.retval, TC_ACT.REDIRECT);
      assert.equal(decodePacket(ack.data).sport, f.sport);
      assert.equal(dp.maps.events().forward_via_stack, 0n, "nothing fell back yet");

      // Fall-backs: the stack gets the packet translated as before (DNAT only at ingress).
      const toStack = (what: string, frame: Uint8Array<ArrayBuffer>) => {
        const out = send("ingress", frame);
        assert.equal(out.retval, TC_ACT.OK, `${what}: to the stack`);
        const d = decodePacket(out.data);
        assert.deepEqual([d.src, d.dst, d.dport], [CLIENT, BE3, 8080], `${what}: DNAT only`);
        assert.equal(d.ttl, decodePacket(frame).ttl, `${what}: TTL left to the stack`);
      };
      toStack("TTL 1 (the stack sends time exceeded)", syn(41002, { ttl: 1 }));
      toStack("IP options", syn(41003, { ipOptions: [1, 1, 1, 0] }));
      assert.equal(dp.maps.events().forward_via_stack, 2n, "both fall-backs counted");
      toStack(
        "keepClientAddress: no SNAT entry",
        pkt({ src: CLIENT, dst: VIP3, tcp: tcp(41004, 80, TCP.SYN) }),
      );
      await run(["ip", "-n", ns.split("/").pop()!, "link", "set", "bxfwd0", "mtu", "576"]);
      toStack(
        "larger than the route's MTU (the stack sends fragmentation needed)",
        pkt({
          src: CLIENT,
          dst: VIP2,
          frag: 0x4000,
          tcp: tcp(41001, 80, TCP.ACK),
          payload: new Uint8Array(600),
        }),
      );
      await run(["ip", "-n", ns.split("/").pop()!, "link", "set", "bxfwd0", "mtu", "1500"]);

      // No neighbour for the next hop: redirected all the same, bpf_redirect_neigh resolves it.
      await run(["ip", "-n", ns.split("/").pop()!, "neigh", "del", NODE2, "dev", "bxfwd0"]);
      const neigh = send("ingress", syn(41005));
      assert.equal(neigh.retval, TC_ACT.REDIRECT);
      const n = decodePacket(neigh.data);
      assert.deepEqual([n.src, n.dst, n.ttl, n.dstMac], [NODE, BE3, 63, NODE_MAC]);

      // A local backend's flow keeps the stack path while the pod bridge is not listed.
      const local = send("ingress", pkt({ src: CLIENT, dst: VIP, tcp: tcp(41006, 80, TCP.SYN) }));
      assert.equal(local.retval, TC_ACT.OK);
      assert.equal(decodePacket(local.data).dst, BE1);
    });
  });
});

Deno.test("packet: a marked packet is routed by its mark (ip rule fwmark) as the stack would route it", async () => {
  await withDataplane(async (dp) => {
    await withUplinkNetns(async (ns, ifindex) => {
      const netns = ns.split("/").pop()!;
      const send = (frame: Uint8Array<ArrayBuffer>, mark = 0) =>
        inNetns(ns, () => testRun(dp.ingressFd, frame, { ifindex, mark }));
      const syn = (cport: number) => pkt({ src: CLIENT, dst: VIP2, tcp: tcp(cport, 80, TCP.SYN) });
      // Policy routing by mark: packets marked 0x10 reach be3's network over the pod bridge.
      await run([
        "ip",
        "-n",
        netns,
        "route",
        "add",
        "198.18.202.0/24",
        "dev",
        "bxpods",
        "table",
        "100",
      ]);
      await run(["ip", "-n", netns, "rule", "add", "fwmark", "0x10", "table", "100"]);

      assert.equal(send(syn(41101)).retval, TC_ACT.REDIRECT, "unmarked: the main table, uplink");
      assert.equal(send(syn(41102), 0x20).retval, TC_ACT.REDIRECT, "a mark no rule selects");
      assert.equal(dp.maps.events().forward_via_stack, 0n);
      // Marked 0x10: its route leads to the pod bridge, not back out of the uplink: the stack.
      const marked = send(syn(41103), 0x10);
      assert.equal(marked.retval, TC_ACT.OK, "marked: routed by table 100, so the stack's");
      const m = decodePacket(marked.data);
      assert.deepEqual([m.src, m.dst, m.ttl], [CLIENT, BE3, 64], "DNAT only, as the stack expects");
      assert.equal(dp.maps.events().forward_via_stack, 1n, "the fall-back counted");
      // The same flow's packets keep following the mark; without it, the main table again.
      const ack = pkt({ src: CLIENT, dst: VIP2, tcp: tcp(41103, 80, TCP.ACK) });
      assert.equal(send(ack, 0x10).retval, TC_ACT.OK);
      assert.equal(send(ack.slice()).retval, TC_ACT.REDIRECT);
    });
  });
});

Deno.test("packet: a local backend's flow is forwarded past the stack both ways, uplink to pod bridge and back", async () => {
  await withDataplane(async (dp) => {
    await withUplinkNetns(async (ns, uplink, pods) => {
      const netns = ns.split("/").pop()!;
      const send = (
        hook: "ingress" | "egress",
        ifindex: number,
        frame: Uint8Array<ArrayBuffer>,
      ) =>
        inNetns(
          ns,
          () => testRun(hook === "ingress" ? dp.ingressFd : dp.egressFd, frame, { ifindex }),
        );
      const toVip = (cport: number, extra: Partial<PacketSpec> = {}, dport = 80) =>
        pkt({ src: CLIENT, dst: VIP, tcp: tcp(cport, dport, TCP.SYN), ...extra });
      const fromBe1 = (cport: number, flags: number, extra: Partial<PacketSpec> = {}) =>
        pkt({
          srcMac: BE1_MAC,
          dstMac: POD_BR_MAC,
          src: BE1,
          dst: CLIENT,
          tcp: tcp(8080, cport, flags),
          ...extra,
        });
      const fields = (frame: Uint8Array) => {
        const d = decodePacket(frame);
        return [d.src, d.sport, d.dst, d.dport, d.ttl, d.srcMac, d.dstMac];
      };
      const events = () => dp.maps.events().forward_via_stack;

      // Until the pod bridge is listed (no program on its side), flows take the stack both ways.
      const unlisted = send("ingress", uplink, toVip(42000));
      assert.equal(unlisted.retval, TC_ACT.OK, "pod bridge not listed: the stack");
      assert.deepEqual(fields(unlisted.data).slice(0, 5), [CLIENT, 42000, BE1, 8080, 64]);
      dp.maps.setPodInterface(pods);
      // Decided by a flow's first packet: once listed, that flow still takes the stack both ways.
      const later = send("ingress", uplink, toVip(42000, { tcp: tcp(42000, 80, TCP.ACK) }));
      assert.equal(later.retval, TC_ACT.OK, "a flow started on the stack stays there");
      const laterBack = fromBe1(42000, TCP.ACK);
      const lb = send("ingress", pods, laterBack);
      assert.equal(lb.retval, TC_ACT.OK);
      assert.deepEqual(lb.data, laterBack, "its reply too, untouched (the uplink's egress)");
      assert.equal(events(), 0n, "flows that never skipped the stack are no fall-backs");

      // Client -> VIP:80 (local be1): DNAT, TTL - 1, to the bridge (MACs: its neighbour output).
      const fwd = send("ingress", uplink, toVip(42001));
      assert.equal(fwd.retval, TC_ACT.REDIRECT, "redirected to the pod bridge");
      assert.deepEqual(fields(fwd.data), [CLIENT, 42001, BE1, 8080, 63, CLIENT_MAC, NODE_MAC]);
      assert.deepEqual(checksumErrors(fwd.data), []);
      // The bridge's egress hook sees it: nothing to translate (the client's tuple has no SNAT).
      const brOut = send("egress", pods, fwd.data.slice());
      assert.equal(brOut.retval, TC_ACT.OK);
      assert.deepEqual(brOut.data, fwd.data, "the bridge's egress leaves it as it is");

      // be1 -> client, in on the pod bridge: VIP:80 -> client, TTL - 1, out of the uplink.
      const back = send("ingress", pods, fromBe1(42001, TCP.SYN | TCP.ACK));
      assert.equal(back.retval, TC_ACT.REDIRECT, "the reply is redirected to the uplink");
      assert.deepEqual(fields(back.data), [VIP, 80, CLIENT, 42001, 63, BE1_MAC, POD_BR_MAC]);
      assert.deepEqual(checksumErrors(back.data), []);
      // The uplink's egress hook sees it again: VIP -> client has no entry there.
      const upOut = send("egress", uplink, back.data.slice());
      assert.equal(upOut.retval, TC_ACT.OK);
      assert.deepEqual(upOut.data, back.data, "not translated twice");

      // The client's ACK establishes the flow, as it does on the stack path (conntrack, counters).
      const ack = send("ingress", uplink, toVip(42001, { tcp: tcp(42001, 80, TCP.ACK) }));
      assert.equal(ack.retval, TC_ACT.REDIRECT);
      const dnat = dp.maps.conntrack().find((e) =>
        e.key.sport === 42001 && e.value.kind === CT_KIND.DNAT
      );
      assert.equal(dnat?.value.state, CT_STATE.ESTABLISHED, "the reply was tracked");
      const c = dp.maps.serviceCounters(S.tcp80);
      assert.deepEqual([c.packets, c.reply_packets, c.new_flows], [4n, 1n, 2n]);

      // UDP both ways.
      const dns = send(
        "ingress",
        uplink,
        pkt({
          src: CLIENT,
          dst: VIP,
          udp: { sport: 42002, dport: 53 },
          payload: new Uint8Array([1, 2, 3]),
        }),
      );
      assert.equal(dns.retval, TC_ACT.REDIRECT);
      assert.deepEqual(fields(dns.data), [CLIENT, 42002, BE1, 5353, 63, CLIENT_MAC, NODE_MAC]);
      assert.deepEqual(checksumErrors(dns.data), []);
      const dnsBack = send(
        "ingress",
        pods,
        pkt({
          srcMac: BE1_MAC,
          dstMac: POD_BR_MAC,
          src: BE1,
          dst: CLIENT,
          udp: { sport: 5353, dport: 42002 },
          payload: new Uint8Array([4, 5]),
        }),
      );
      assert.equal(dnsBack.retval, TC_ACT.REDIRECT);
      assert.deepEqual(fields(dnsBack.data), [VIP, 53, CLIENT, 42002, 63, BE1_MAC, POD_BR_MAC]);
      assert.deepEqual(checksumErrors(dnsBack.data), []);

      // A local-only service (keepClientAddress): a local backend's flow is the same shape.
      dp.maps.setBackend(6, { addr: BE1, port: 8080 });
      dp.maps.setService({ addr: VIP3, port: 81, protocol: "TCP" }, {
        id: 10,
        backends: [{ id: 6, weight: 1 }],
        keepClientAddress: true,
      });
      const keep = send("ingress", uplink, toVip(42003, { dst: VIP3 }, 81));
      assert.equal(keep.retval, TC_ACT.REDIRECT, "keepClientAddress, local backend: redirected");
      const keepBack = send("ingress", pods, fromBe1(42003, TCP.SYN | TCP.ACK));
      assert.equal(keepBack.retval, TC_ACT.REDIRECT);
      assert.deepEqual(fields(keepBack.data).slice(0, 4), [VIP3, 81, CLIENT, 42003]);
      assert.equal(events(), 0n, "nothing fell back");

      // Fall-backs, forward: the stack gets the packet DNATed as before, TTL untouched.
      const toStack = (what: string, frame: Uint8Array<ArrayBuffer>) => {
        const out = send("ingress", uplink, frame);
        assert.equal(out.retval, TC_ACT.OK, `${what}: to the stack`);
        const d = decodePacket(out.data);
        assert.deepEqual([d.src, d.dst, d.dport], [CLIENT, BE1, 8080], `${what}: DNAT only`);
        assert.equal(d.ttl, decodePacket(frame).ttl, `${what}: TTL left to the stack`);
      };
      // Fall-backs, reply: the stack gets it untouched; the uplink's egress translates it later.
      const replyToStack = (what: string, frame: Uint8Array<ArrayBuffer>) => {
        const out = send("ingress", pods, frame);
        assert.equal(out.retval, TC_ACT.OK, `${what}: to the stack`);
        assert.deepEqual(out.data, frame, `${what}: untouched`);
        const later = send("egress", uplink, frame);
        assert.equal(later.retval, TC_ACT.OK);
        assert.deepEqual(
          fields(later.data).slice(0, 5),
          [VIP, 80, CLIENT, decodePacket(frame).dport, decodePacket(frame).ttl],
          `${what}: translated at the uplink's egress as before`,
        );
      };
      const ackOf42001 = (extra: Partial<PacketSpec> = {}) =>
        toVip(42001, { tcp: tcp(42001, 80, TCP.ACK), ...extra });
      toStack("TTL 1", ackOf42001({ ttl: 1 }));
      replyToStack("reply TTL 1", fromBe1(42001, TCP.ACK, { ttl: 1 }));
      toStack("IP options", ackOf42001({ ipOptions: [1, 1, 1, 0] }));
      replyToStack("reply with IP options", fromBe1(42001, TCP.ACK, { ipOptions: [1, 1, 1, 0] }));
      assert.equal(events(), 4n, "four fall-backs counted");
      // The next packets of the flow skip the stack again.
      assert.equal(send("ingress", uplink, ackOf42001()).retval, TC_ACT.REDIRECT);
      assert.equal(send("ingress", pods, fromBe1(42001, TCP.ACK)).retval, TC_ACT.REDIRECT);

      // Hairpin: a pod client (be2, in on the pod bridge) is source-translated as before.
      const hairpin = send(
        "ingress",
        pods,
        pkt({ src: BE2, dst: VIP, tcp: tcp(42006, 80, TCP.SYN) }),
      );
      assert.equal(hairpin.retval, TC_ACT.OK, "hairpin: the stack (SNAT at the bridge's egress)");
      assert.deepEqual(fields(hairpin.data).slice(0, 5), [BE2, 42006, BE1, 8080, 64]);
      assert.equal(events(), 4n, "hairpin flows are not counted as fall-backs");

      // MTU: larger than the route's (the stack sends fragmentation needed).
      const big = { frag: 0x4000, payload: new Uint8Array(600) };
      await run(["ip", "-n", netns, "link", "set", "bxpods", "mtu", "576"]);
      toStack(
        "larger than the pod bridge's MTU",
        toVip(42001, { tcp: tcp(42001, 80, TCP.ACK), ...big }),
      );
      await run(["ip", "-n", netns, "link", "set", "bxpods", "mtu", "1500"]);
      await run(["ip", "-n", netns, "link", "set", "bxfwd0", "mtu", "576"]);
      replyToStack("reply larger than the uplink's MTU", fromBe1(42001, TCP.ACK, big));
      await run(["ip", "-n", netns, "link", "set", "bxfwd0", "mtu", "1500"]);

      // A route by another device: be1 via node2 (out of the uplink), the client via the pods.
      await run(["ip", "-n", netns, "route", "add", `${BE1}/32`, "via", NODE2]);
      toStack("be1 routed out of the uplink", toVip(42001, { tcp: tcp(42001, 80, TCP.ACK) }));
      // A flow whose first packet is routed so takes the stack for good, uncounted.
      const away = send("ingress", uplink, toVip(42008));
      assert.equal(away.retval, TC_ACT.OK);
      await run(["ip", "-n", netns, "route", "del", `${BE1}/32`]);
      assert.equal(
        send("ingress", uplink, toVip(42008, { tcp: tcp(42008, 80, TCP.ACK) })).retval,
        TC_ACT.OK,
        "a flow started on the stack stays there",
      );
      await run(["ip", "-n", netns, "route", "add", `${CLIENT}/32`, "dev", "bxpods"]);
      replyToStack("the client routed to the pods", fromBe1(42001, TCP.ACK));
      await run(["ip", "-n", netns, "route", "del", `${CLIENT}/32`]);
      assert.equal(events(), 8n, "every fall-back of a flow past the stack counted");

      // No neighbour for be1: redirected all the same, bpf_redirect_neigh resolves it.
      await run(["ip", "-n", netns, "neigh", "del", BE1, "dev", "bxpods"]);
      const neigh = send("ingress", uplink, toVip(42007));
      assert.equal(neigh.retval, TC_ACT.REDIRECT);
      assert.deepEqual(fields(neigh.data).slice(2, 7), [BE1, 8080, 63, CLIENT_MAC, NODE_MAC]);
    });
  });
});
