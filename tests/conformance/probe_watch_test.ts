import assert from "node:assert/strict";
import { arpMismatches, ProbeWatch } from "./probe_watch.ts";

const RUN = "=== RUN   TestConformance/UDPRouteParentRefPortAndSectionName/by_section";
const REFUSED = "    udp.go:96: 2026-11-26T19:26:11Z: failed to read UDP echo response: read udp " +
  "198.18.32.1:37018->198.18.56.5:5301: read: connection refused";
const GOT = '    udp.go:120: got UDP echo response from 198.18.56.5:5301 service="x"';

Deno.test("probe watch: a test's probes failing for 10 s are stuck, reported once", () => {
  const watch = new ProbeWatch(10_000);
  assert.equal(watch.line(RUN, 0), undefined);
  for (let t = 0; t < 10_000; t += 1000) assert.equal(watch.line(REFUSED, t), undefined);
  const stuck = watch.line(REFUSED, 10_000);
  assert.deepEqual(stuck, {
    test: "UDPRouteParentRefPortAndSectionName/by_section",
    sinceMs: 0,
    line: REFUSED.trim(),
  });
  assert.equal(watch.line(REFUSED, 11_000), undefined, "once per test");
});

Deno.test("probe watch: a success or the next test starts the clock again", () => {
  const watch = new ProbeWatch(10_000);
  watch.line(RUN, 0);
  watch.line(REFUSED, 0);
  watch.line(GOT, 5_000);
  assert.equal(watch.line(REFUSED, 12_000), undefined, "failing since 12 s, not 0");
  watch.line("=== RUN   TestConformance/TCPRouteSimple", 13_000);
  const tcp = "    tcp.go:243: failed to establish TCP connection to 198.18.56.5:8080; retrying: x";
  assert.equal(watch.line(tcp, 14_000), undefined);
  assert.equal(watch.line(tcp, 24_000)?.test, "TCPRouteSimple");
});

Deno.test("probe watch: lines that are not probes change nothing", () => {
  const watch = new ProbeWatch(10_000);
  watch.line(RUN, 0);
  for (let t = 0; t <= 20_000; t += 1000) {
    assert.equal(watch.line("    helpers.go:284: Gateway not Programmed yet", t), undefined);
  }
});

Deno.test("arp mismatches: an ARP entry naming a dead pod's MAC is reported with its bridge port", () => {
  // node-2 of a conformance run: the previous pod's veth still on the bridge, answering for .15
  const neigh = "198.18.2.15 lladdr 36:81:97:a2:bd:04 REACHABLE \n" +
    "198.18.2.13 lladdr ce:c1:4a:90:03:5e STALE \n";
  const fdb = "33:33:00:00:00:01 dev cni0 self permanent\n" +
    "36:81:97:a2:bd:04 dev vp821b4d6 master cni0 \n" +
    "4a:41:03:46:45:7b dev vp1d2c3b4 master cni0 \n" +
    "ce:c1:4a:90:03:5e dev vpaaaaaaa master cni0 \n";
  const pods = new Map([
    ["198.18.2.15", { netns: "pod-new", mac: "4a:41:03:46:45:7b" }],
    ["198.18.2.13", { netns: "pod-13", mac: "ce:c1:4a:90:03:5e" }],
  ]);
  assert.deepEqual(arpMismatches(neigh, fdb, pods), [
    "ARP 198.18.2.15 -> 36:81:97:a2:bd:04 (REACHABLE), learned on bridge port vp821b4d6, " +
    "but pod-new holds 198.18.2.15 with MAC 4a:41:03:46:45:7b",
  ]);
  assert.deepEqual(arpMismatches(neigh, "", new Map()), [], "addresses no pod holds: nothing");
});
