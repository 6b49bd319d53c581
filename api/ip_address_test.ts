import assert from "node:assert/strict";
import { canonicalIp, parseCidr, parseIp } from "./ip_address.ts";

Deno.test("addresses are parsed and printed in canonical form", () => {
  const cases: [string, string | null][] = [
    ["198.18.0.1", "198.18.0.1"],
    ["0.0.0.0", "0.0.0.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["256.1.1.1", null],
    ["01.2.3.4", null],
    ["1.2.3", null],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["::", "::"],
    ["::1", "::1"],
    ["2001:db8::1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:0:0:1::1", "2001:0:0:1::1"],
    ["::ffff:198.18.0.1", "::ffff:c612:1"],
    ["1::2::3", null],
    ["1:2:3:4:5:6:7:8:9", null],
    ["fe80::1%eth0", null],
    ["gw.example", null],
    ["", null],
  ];
  for (const [text, want] of cases) {
    assert.equal(canonicalIp(text), want, text);
  }
});

Deno.test("a CIDR prefix covers the addresses from its network to its last", () => {
  const p = parseCidr("198.18.0.7/30");
  assert.ok(p);
  assert.equal(p.first, parseIp("198.18.0.4")?.value);
  assert.equal(p.last, parseIp("198.18.0.7")?.value);
  assert.equal(parseCidr("198.18.0.0/33"), null);
  assert.equal(parseCidr("198.18.0.0"), null);
  assert.equal(
    parseCidr("2001:db8::/126")?.last,
    parseIp("2001:db8::3")?.value,
  );
});
