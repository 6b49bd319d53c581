import assert from "node:assert/strict";
import { parse } from "yaml";
import { endpointPattern, factoredEndpointPattern } from "./table_write.ts";

const CRD = new URL("../../manifests/crds/routingtables.blixt.dev.yaml", import.meta.url);

/** The CRD's pattern of one endpoint string. */
function crdPattern(): string {
  // deno-lint-ignore no-explicit-any
  const crd = parse(Deno.readTextFileSync(CRD)) as any;
  return crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.entries.items
    .properties.endpoints.items.pattern;
}

/** A small deterministic generator (xorshift), so a failure can be replayed. */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/**
 * Valid and invalid endpoint strings: every weight, port and octet in and
 * around its range (with and without a leading zero), nodes around the length
 * bound, api/crd_test.ts's broken strings, and random edits of valid strings.
 */
function* candidates(): Generator<string> {
  for (let n = 0; n <= 1_000_010; n++) {
    yield `1.2.3.4:80 ${n} Ready`;
    if (n % 7 === 0) yield `1.2.3.4:80 0${n} Ready`;
  }
  for (const state of ["Ready", "Serving", "Terminating", "Up", ""]) {
    for (const w of ["0", "1", "00", "1000000"]) yield `1.2.3.4:80 ${w} ${state}`;
  }
  for (let n = 0; n <= 70_000; n++) {
    yield `1.2.3.4:${n} 0 Serving`;
    if (n % 7 === 0) yield `1.2.3.4:0${n} 0 Serving`;
  }
  for (let n = 0; n <= 300; n++) {
    for (const ip of [`${n}.2.3.4`, `1.${n}.3.4`, `1.2.${n}.4`, `1.2.3.${n}`, `1.2.3.0${n}`]) {
      yield `${ip}:80 1 Ready`;
    }
  }
  for (let len = 0; len <= 260; len++) {
    for (const node of ["a".repeat(len), `a${"-".repeat(Math.max(0, len - 2))}b`, `a${"."}`]) {
      yield `[2001:db8::1]:65535 1000000 Ready ${node}`;
      yield `1.2.3.4:1 0 Terminating ${node}`;
    }
  }
  yield* [
    "198.19.1.5:0 1 Ready",
    "198.19.1.5:65536 1 Ready",
    "198.19.1.5:80 1000001 Ready",
    "198.19.2.7:80 5 Serving",
    "198.19.1.5:80 1 Up",
    "198.19.1:80 1 Ready",
    "198.19.1.256:80 1 Ready",
    "2001:db8::5:80 1 Ready",
    "198.19.1.5:80 1 Ready N_1",
    "198.19.1.5:80 1 Ready n1 x",
    "[2001:db8::5]:80 1 Ready",
    "[2001:db8:::5]:80 1 Ready",
    "[:]:80 1 Ready",
    `[${"a".repeat(45)}]:80 1 Ready`,
    `[${"a".repeat(46)}]:80 1 Ready`,
  ];
  const valid = [
    "198.19.0.2:8080 100000 Ready node-1",
    "10.244.12.201:8443 333333 Ready ip-10-0-12-7.eu-west-1.compute.internal",
    "[2001:db8::7]:8080 375000 Ready worker-3",
    "198.19.3.14:53 0 Serving",
    "192.168.1.100:65535 1000000 Ready kind-worker2",
    "255.250.249.199:65529 0 Terminating n",
  ];
  const alphabet = "0123456789.:[] abfAFRSTeadyrvingmt-_xz1";
  const next = random(0x5eed);
  for (let i = 0; i < 200_000; i++) {
    let s = valid[Math.floor(next() * valid.length)]!;
    for (let edits = 1 + Math.floor(next() * 3); edits > 0; edits--) {
      const at = Math.floor(next() * (s.length + 1));
      const c = alphabet[Math.floor(next() * alphabet.length)]!;
      const op = next();
      s = op < 0.34
        ? s.slice(0, at) + c + s.slice(at)
        : op < 0.67
        ? s.slice(0, at) + s.slice(at + 1)
        : s.slice(0, at) + c + s.slice(at + 1);
    }
    yield s;
  }
}

Deno.test("table_write's current endpoint pattern is the CRD's", () => {
  assert.equal(`^${endpointPattern()}$`, crdPattern());
});

Deno.test("the factored endpoint pattern accepts exactly the strings the CRD's accepts", () => {
  const crd = new RegExp(crdPattern());
  const factored = new RegExp(`^${factoredEndpointPattern()}$`);
  let accepted = 0;
  let checked = 0;
  for (const s of candidates()) {
    const want = crd.test(s);
    assert.equal(factored.test(s), want, JSON.stringify(s));
    if (want) accepted++;
    checked++;
  }
  // both sides of the border were tried
  assert.ok(accepted > 1_000_000 && checked - accepted > 100_000, `${accepted} of ${checked}`);
});

Deno.test("the split variants' two checks accept exactly the strings the CRD's accepts", () => {
  const crd = new RegExp(crdPattern());
  const shape = new RegExp(`^${factoredEndpointPattern(false)}$`);
  const nodeLength = /^[^ ]* [^ ]* [^ ]*( [^ ]{1,253})?$/; // strings-split: allOf
  const longRun = /[^ ]{254}/; // strings-splitnot: not
  for (const s of candidates()) {
    const want = crd.test(s);
    assert.equal(shape.test(s) && nodeLength.test(s), want, JSON.stringify(s));
    assert.equal(shape.test(s) && !longRun.test(s), want, JSON.stringify(s));
  }
});

Deno.test("the unbounded variant differs only in the node's length", () => {
  const crd = new RegExp(crdPattern());
  const unbounded = new RegExp(`^${factoredEndpointPattern(false)}$`);
  const long = `1.2.3.4:1 0 Serving a${"b".repeat(253)}`;
  assert.equal(crd.test(long), false);
  assert.equal(unbounded.test(long), true);
});
