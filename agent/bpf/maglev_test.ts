import assert from "node:assert/strict";
import {
  type FlowTuple,
  MAGLEV_SIZE,
  MAGLEV_SIZES,
  maglevSize,
  maglevTable,
  pickBackend,
  rejectEntry,
} from "./maglev.ts";

/** 100,000 synthetic client flows to one VIP. */
function flows(n = 100_000): FlowTuple[] {
  const out: FlowTuple[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      saddr: `198.18.${192 + ((i >>> 16) & 63)}.${(i >>> 8) & 255}`,
      daddr: "198.18.200.1",
      sport: 1024 + (i & 0xffff) % 60000,
      dport: 80,
      proto: 6,
    });
  }
  return out;
}

function backends(n: number, weight = 1) {
  return Array.from({ length: n }, (_, i) => ({
    key: `198.18.201.${10 + i}:8080/TCP`,
    id: i + 1,
    weight,
  }));
}

Deno.test("maglev: the table size is a prime >= 100 x backends for up to 655 backends", () => {
  for (let d = 2; d * d <= MAGLEV_SIZE; d++) {
    assert.notEqual(MAGLEV_SIZE % d, 0);
  }
  assert.ok(MAGLEV_SIZE >= 100 * 655);
});

Deno.test("maglev: a service gets the smallest prime size >= 100 x its live entries", () => {
  for (const size of MAGLEV_SIZES) {
    for (let d = 2; d * d <= size; d++) assert.notEqual(size % d, 0, `${size} is prime`);
  }
  assert.equal(maglevSize(1), 1021);
  assert.equal(maglevSize(10), 1021);
  assert.equal(maglevSize(11), 4093);
  assert.equal(maglevSize(163), 16381);
  assert.equal(maglevSize(164), MAGLEV_SIZE);
  assert.equal(maglevSize(5000), MAGLEV_SIZE);
  for (let n = 1; n <= 655; n++) assert.ok(maglevSize(n) >= 100 * n);
});

Deno.test("maglev: removing 1 of 10 backends remaps at most 1/10 + 1% of flows", () => {
  const all = backends(10);
  const before = maglevTable(all);
  const after = maglevTable(all.filter((b) => b.id !== 4));
  let moved = 0;
  let movedFromOthers = 0;
  for (const f of flows()) {
    const a = pickBackend(before, f);
    const b = pickBackend(after, f);
    if (a !== b) {
      moved++;
      if (a !== 4) movedFromOthers++;
    }
  }
  const n = 100_000;
  assert.ok(moved <= n * (0.1 + 0.01), `moved ${moved} of ${n}`);
  assert.ok(
    movedFromOthers <= n * 0.01,
    `moved ${movedFromOthers} flows of remaining backends`,
  );
});

Deno.test("maglev: weights 70/30/0 give 70/30/0 +-2% of flows", () => {
  const table = maglevTable([
    { key: "a:1/TCP", id: 1, weight: 70 },
    { key: "b:1/TCP", id: 2, weight: 30 },
    { key: "c:1/TCP", id: 3, weight: 0 },
  ]);
  const count = new Map<number, number>();
  for (const f of flows()) {
    const id = pickBackend(table, f);
    count.set(id, (count.get(id) ?? 0) + 1);
  }
  const share = (id: number) => (count.get(id) ?? 0) / 100_000;
  assert.ok(Math.abs(share(1) - 0.7) <= 0.02, `share of 70: ${share(1)}`);
  assert.ok(Math.abs(share(2) - 0.3) <= 0.02, `share of 30: ${share(2)}`);
  assert.equal(share(3), 0);
});

Deno.test("maglev: the reject share takes its weight of slots", () => {
  const table = maglevTable([
    { key: "a:1/TCP", id: 1, weight: 3 },
    rejectEntry(1),
  ]);
  const rejects = table.filter((id) => id === 0).length / table.length;
  assert.ok(Math.abs(rejects - 0.25) < 0.01, `reject share ${rejects}`);
});

Deno.test("maglev: tables depend on backend identity, not input order or ids", () => {
  const a = maglevTable(backends(5));
  const b = maglevTable(backends(5).reverse());
  assert.deepEqual(a, b);
  const renumbered = maglevTable(
    backends(5).map((x) => ({ ...x, id: x.id + 100 })),
  );
  assert.deepEqual(renumbered.map((id) => id - 100), a);
});

Deno.test("maglev: no live backend gives an empty table; bad weights are refused", () => {
  assert.equal(maglevTable([{ key: "a", id: 1, weight: 0 }]).length, 0);
  assert.throws(
    () => maglevTable([{ key: "a", id: 1, weight: -1 }]),
    RangeError,
  );
  assert.throws(
    () =>
      maglevTable([{ key: "a", id: 1, weight: 1 }, {
        key: "a",
        id: 2,
        weight: 1,
      }]),
    RangeError,
  );
});

/** FNV-1a over a table's slots: a short stand-in for the whole table. */
function digest(table: Uint32Array): string {
  let h = 0x811c9dc5;
  for (const v of table) h = Math.imul(h ^ v, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

Deno.test("maglev: tables are bit-identical to the pinned ones (nodes of mixed versions agree)", () => {
  // Digests taken from the tables of commit f46c533. A change here remaps flows between agents of
  // different versions during a rolling upgrade: it needs a new table format, not a new digest.
  const cases: [string, () => Uint32Array, string][] = [
    [
      "10 backends of weight 1, 1021 slots",
      () =>
        maglevTable(
          Array.from({ length: 10 }, (_, i) => ({
            key: `198.18.64.${2 + i}:10042`,
            id: 100 + i,
            weight: 1,
          })),
          1021,
        ),
      "09baed0b",
    ],
    [
      "weights 70/25/0 and a reject share of 5, 4093 slots",
      () =>
        maglevTable([
          { key: "198.18.64.2:80", id: 7, weight: 70 },
          { key: "198.18.64.3:80", id: 9, weight: 25 },
          { key: "198.18.64.4:80", id: 11, weight: 0 },
          rejectEntry(5),
        ], 4093),
      "7a8a890a",
    ],
    [
      "one backend, 1021 slots",
      () => maglevTable([{ key: "198.18.64.9:443", id: 3, weight: 1 }], 1021),
      "d7084176",
    ],
    [
      "40 backends of weights 2 and 3, 16381 slots",
      () =>
        maglevTable(
          Array.from({ length: 40 }, (_, i) => ({
            key: `198.18.70.${i}:53`,
            id: 1000 + i,
            weight: i % 5 === 0 ? 3 : 2,
          })),
          16381,
        ),
      "7ce1e161",
    ],
    [
      "200 backends of weights 1-7, 65537 slots",
      () =>
        maglevTable(
          Array.from({ length: 200 }, (_, i) => ({
            key: `198.18.${64 + (i >> 8)}.${i & 255}:8080`,
            id: 1 + i,
            weight: 1 + (i % 7),
          })),
          65537,
        ),
      "2f5cf2db",
    ],
  ];
  for (const [name, build, want] of cases) {
    assert.equal(digest(build()), want, name);
    assert.equal(digest(build()), want, `${name}, built again (reused work arrays)`);
  }
});

Deno.test("maglev: equal weights give one table whatever their value, also beside weight 0", () => {
  const ones = maglevTable(backends(10));
  assert.deepEqual(maglevTable(backends(10, 7)), ones);
  assert.deepEqual(
    maglevTable([...backends(10, 7), { key: "198.18.201.99:8080/TCP", id: 99, weight: 0 }]),
    ones,
  );
  // one backend of another weight takes the credit path: a different table
  const mixed = backends(10, 7);
  mixed[0]!.weight = 8;
  assert.notDeepEqual(maglevTable(mixed), ones);
});
