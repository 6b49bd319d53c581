import assert from "node:assert/strict";
import { ProbeWatch } from "./probe_watch.ts";

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
