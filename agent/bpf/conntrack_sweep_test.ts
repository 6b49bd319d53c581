import assert from "node:assert/strict";
import { buildBpf } from "../../bpf/build.ts";
import { buildPacket, type PacketSpec, TC_ACT, TCP } from "../../bpf/testing/packet.ts";
import { CT_KIND, CT_STATE, DIR, flowKey, flowValue, PROTO } from "./layout.ts";
import { Dataplane, ensureBpffs, removePins } from "./loader.ts";
import { monotonicCoarseNs } from "./libbpf.ts";
import { testRun } from "./object.ts";
import { ctTimeoutS, sweepConntrack, sweepConntrackInSteps } from "./conntrack_sweep.ts";

const CLIENT = "198.18.192.10";
const NODE = "198.18.192.1";
const VIP = "198.18.200.1";
const VIP2 = "198.18.200.2";
const BE1 = "198.18.201.11";
const BE3 = "198.18.202.13";

async function withDataplane(entries: number, fn: (dp: Dataplane) => void): Promise<void> {
  await buildBpf();
  await ensureBpffs();
  const pinDir = `/sys/fs/bpf/blixt-test-sweep-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const dp = Dataplane.load({ pinDir, conntrackEntries: entries });
  try {
    const m = dp.maps;
    m.setConfig({ nodeAddr: NODE, snatPorts: [61000, 61009] });
    m.setBackend(1, { addr: BE1, port: 8080 });
    m.setBackend(2, { addr: BE3, port: 8080, remote: true });
    m.setService({ addr: VIP, port: 80, protocol: "TCP" }, {
      id: 1,
      backends: [{ id: 1, weight: 1 }],
    });
    m.setService({ addr: VIP2, port: 80, protocol: "TCP" }, {
      id: 2,
      backends: [{ id: 2, weight: 1 }],
    });
    fn(dp);
  } finally {
    dp.close();
    removePins(pinDir);
  }
}

const pkt = (spec: PacketSpec) => buildPacket(spec);

/** Moves the last use of the entries of client port `sport` `seconds` into the past. */
function idle(dp: Dataplane, seconds: number, sport?: number): void {
  const ct = dp.object.map("conntrack");
  for (const [key, bytes] of ct.entries()) {
    const k = flowKey.decode(key);
    const v = flowValue.decode(bytes);
    const client = v.kind === CT_KIND.REPLY ? v.dport : k.sport;
    if (sport !== undefined && client !== sport) continue;
    v.last_seen = BigInt.asUintN(64, v.last_seen - BigInt(seconds) * 1_000_000_000n);
    ct.update(key, flowValue.encode(v));
  }
}

/** Client ports of the flows that still have entries, by kind. */
function flows(dp: Dataplane): string[] {
  return dp.maps.conntrack().map(({ key, value }) => {
    const client = value.kind === CT_KIND.REPLY ? value.dport : key.sport;
    return `${client}/${["", "dnat", "snat", "reply"][value.kind]}`;
  }).sort();
}

Deno.test("conntrack sweep: deletes a flow's entries once its state's timeout and the grace passed, and no live flow's", async () => {
  await withDataplane(4096, (dp) => {
    const syn = (dst: string, sport: number) =>
      testRun(dp.ingressFd, pkt({ src: CLIENT, dst, tcp: { sport, dport: 80, flags: TCP.SYN } }));
    // 41001: local, half-open; 41002: local, established; 41003: remote, half-open (SNAT port).
    for (const [dst, sport] of [[VIP, 41001], [VIP, 41002], [VIP2, 41003]] as const) {
      assert.equal(syn(dst, sport).retval, TC_ACT.OK);
    }
    const snat = testRun(
      dp.egressFd,
      pkt({ src: CLIENT, dst: BE3, tcp: { sport: 41003, dport: 8080, flags: TCP.SYN } }),
    );
    assert.equal(snat.retval, TC_ACT.OK);
    testRun(
      dp.egressFd,
      pkt({ src: BE1, dst: CLIENT, tcp: { sport: 8080, dport: 41002, flags: TCP.SYN | TCP.ACK } }),
    );
    testRun(
      dp.ingressFd,
      pkt({ src: CLIENT, dst: VIP, tcp: { sport: 41002, dport: 80, flags: TCP.ACK } }),
    );
    const all = flows(dp);
    assert.deepEqual(all, [
      "41001/dnat",
      "41001/reply",
      "41002/dnat",
      "41002/reply",
      "41003/dnat",
      "41003/reply",
      "41003/snat",
    ]);

    let r = sweepConntrack(dp.object.map("conntrack"), monotonicCoarseNs());
    assert.deepEqual([r.entries, r.live, r.deleted], [7, 7, 0], "all fresh");

    // Half-open flows: 60 s, then 10 s of grace; the established one is idle as long.
    idle(dp, 65);
    r = sweepConntrack(dp.object.map("conntrack"), monotonicCoarseNs());
    assert.equal(r.deleted, 0, "within the grace");
    idle(dp, 10);
    r = sweepConntrack(dp.object.map("conntrack"), monotonicCoarseNs());
    assert.deepEqual(flows(dp), ["41002/dnat", "41002/reply"], "the half-open flows are gone");
    assert.deepEqual([r.entries, r.live, r.deleted], [7, 2, 5]);

    // A reply entry whose flow is gone goes too; a fresh one (being created) stays.
    const ct = dp.object.map("conntrack");
    const primary = dp.maps.conntrack().find((e) => e.value.kind === CT_KIND.DNAT)!;
    ct.delete(flowKey.encode(primary.key));
    r = sweepConntrack(ct, monotonicCoarseNs());
    assert.deepEqual(flows(dp), [], "its reply entry was idle: swept");
    assert.equal(syn(VIP, 41004).retval, TC_ACT.OK);
    const fresh = dp.maps.conntrack().find((e) => e.value.kind === CT_KIND.DNAT)!;
    ct.delete(flowKey.encode(fresh.key));
    r = sweepConntrack(ct, monotonicCoarseNs());
    assert.deepEqual(flows(dp), ["41004/reply"], "a fresh reply entry is left for its flow");
  });
});

Deno.test("conntrack sweep: timeouts match bpf/consts.h", async () => {
  const h = await Deno.readTextFile(new URL("../../bpf/consts.h", import.meta.url));
  const secs = (name: string) => Number(h.match(new RegExp(`#define ${name} \\((\\d+) \\*`))![1]);
  assert.equal(ctTimeoutS(PROTO.TCP, CT_STATE.NEW), secs("TCP_TIMEOUT_SYN_SENT"));
  assert.equal(ctTimeoutS(PROTO.TCP, CT_STATE.SYN_RECV), secs("TCP_TIMEOUT_SYN_RECV"));
  assert.equal(ctTimeoutS(PROTO.TCP, CT_STATE.PICKUP), secs("TCP_TIMEOUT_PICKUP"));
  assert.equal(ctTimeoutS(PROTO.TCP, CT_STATE.ESTABLISHED), secs("TCP_TIMEOUT_ESTABLISHED"));
  assert.equal(ctTimeoutS(PROTO.TCP, CT_STATE.CLOSING), secs("TCP_TIMEOUT_CLOSING"));
  assert.equal(ctTimeoutS(PROTO.TCP, CT_STATE.CLOSED), secs("TCP_TIMEOUT_CLOSED"));
  assert.equal(ctTimeoutS(PROTO.UDP, CT_STATE.NEW), secs("UDP_TIMEOUT"));
  assert.equal(ctTimeoutS(PROTO.UDP, CT_STATE.ESTABLISHED), secs("UDP_TIMEOUT_STREAM"));
});

Deno.test("conntrack sweep: cost at a full map of 262,144 entries, half of them expired", async () => {
  await withDataplane(262144, (dp) => {
    const ct = dp.object.map("conntrack");
    const now = monotonicCoarseNs();
    const flowsN = 131072;
    const keys = new Uint8Array(flowsN * 2 * 16);
    const values = new Uint8Array(flowsN * 2 * 64);
    for (let i = 0; i < flowsN; i++) {
      const client = `198.18.${192 + (i >> 16)}.${(i >> 8) & 255}`;
      const sport = 1024 + (i & 255);
      const age = i % 2 === 0 ? 200n : 1n; // even flows: half-open for 200 s, expired
      const seen = now - age * 1_000_000_000n;
      const common = { sport: 80, dport: 8080, flags: 0, reserved: 0, service_id: 1 };
      keys.set(
        flowKey.encode({
          saddr: client,
          daddr: VIP,
          sport,
          dport: 80,
          proto: PROTO.TCP,
          family: 2,
          dir: DIR.INGRESS,
          reserved: 0,
        }),
        i * 32,
      );
      values.set(
        flowValue.encode({
          ...common,
          saddr: client,
          daddr: BE1,
          sport,
          kind: CT_KIND.DNAT,
          state: CT_STATE.NEW,
          backend_id: 1,
          created: seen,
          last_seen: seen,
        }),
        i * 128,
      );
      keys.set(
        flowKey.encode({
          saddr: BE1,
          daddr: client,
          sport: 8080,
          dport: sport,
          proto: PROTO.TCP,
          family: 2,
          dir: DIR.EGRESS,
          reserved: 0,
        }),
        i * 32 + 16,
      );
      values.set(
        flowValue.encode({
          ...common,
          saddr: VIP,
          daddr: client,
          dport: sport,
          kind: CT_KIND.REPLY,
          state: CT_STATE.NEW,
          backend_id: 1,
          created: seen,
          last_seen: seen,
        }),
        i * 128 + 64,
      );
    }
    for (let off = 0; off < flowsN * 2; off += 8192) {
      ct.updateBatch(
        keys.slice(off * 16, (off + 8192) * 16),
        values.slice(off * 64, (off + 8192) * 64),
      );
    }
    const full = sweepConntrack(ct, now, { graceS: 1e9 }); // a read-only pass: nothing is old enough
    // In steps, the caller gets the loop back after every chunk read: at most ~2,048 entries' work.
    const steps = sweepConntrackInSteps(ct, now, { graceS: 1e9, readChunk: 2048 });
    let yields = 0, longest = 0, at = performance.now();
    for (let step = steps.next(); !step.done; step = steps.next()) {
      yields++;
      longest = Math.max(longest, performance.now() - at);
      at = performance.now();
    }
    assert.ok(yields >= full.entries / 2048, `${yields} steps for ${full.entries} entries`);
    const r = sweepConntrack(ct, now);
    const again = sweepConntrack(ct, now);
    console.log(
      `conntrack sweep: read-only ${full.entries} entries ${full.ms} ms ` +
        `(in steps of 2,048: ${yields} steps, the longest ${longest.toFixed(1)} ms); ` +
        `sweep ${r.entries} -> ${r.live} (${r.deleted} deleted) ${r.ms} ms; ` +
        `then ${again.entries} entries ${again.ms} ms`,
    );
    // An LRU hash may evict a few entries before it is quite full (per-CPU free lists), and an
    // evicted entry's partner goes with the sweep: allow for exactly that, nothing more.
    const evicted = 262144 - full.entries;
    assert.ok(evicted >= 0 && evicted <= 262144 / 100, `${evicted} entries evicted`);
    assert.ok(Math.abs(r.deleted - 131072) <= 2 * evicted, `${r.deleted} deleted`);
    assert.equal(again.entries, r.entries - r.deleted);
    assert.equal(again.deleted, 0);
  });
});
