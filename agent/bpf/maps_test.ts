import assert from "node:assert/strict";
import { buildBpf } from "../../bpf/build.ts";
import { Dataplane, ensureBpffs, removePins } from "./loader.ts";
import { maglevFill, maglevSize, maglevTable } from "./maglev.ts";
import { BPF_F_INNER_MAP, LIMITS } from "./layout.ts";
import { check, closeFd, cstr, lib, opts } from "./libbpf.ts";
import { createMap, MAP_TYPE, openPinnedMap } from "./object.ts";

async function withMaps(fn: (dp: Dataplane) => void): Promise<void> {
  await buildBpf();
  await ensureBpffs();
  const pinDir = `/sys/fs/bpf/blixt-test-maps-${Deno.pid}`;
  const dp = Dataplane.load({ pinDir, conntrackEntries: 1024 });
  try {
    fn(dp);
  } finally {
    dp.close();
    removePins(pinDir);
  }
}

Deno.test("maps: Maglev tables of different sizes are swapped in and read back", async () => {
  await withMaps((dp) => {
    for (const n of [1, 11, 200]) {
      const entries = Array.from({ length: n }, (_, i) => ({
        key: `198.18.201.${i % 250}:${8000 + i}`,
        id: i + 1,
        weight: 1,
      }));
      const table = maglevTable(entries, maglevSize(n));
      dp.maps.writeMaglev(7, table);
      assert.deepEqual(dp.maps.readMaglev(7), table, `${n} backends`);
    }
    dp.maps.deleteMaglev(7);
    assert.equal(dp.maps.readMaglev(7).length, 0);
  });
});

Deno.test("maps: services, VIP markers and backend slots are listed as written", async () => {
  await withMaps((dp) => {
    const m = dp.maps;
    m.writeBackends([
      { id: 3, addr: "198.18.201.1", port: 8080, remote: false, serviceId: 2 },
      { id: 4, addr: "198.18.201.2", port: 8081, remote: true, serviceId: 2 },
    ]);
    const addr = { addr: "198.18.200.9", port: 80, protocol: "UDP" as const };
    m.putService(addr, {
      id: 2,
      keepClientAddress: true,
      tableSize: 1021,
      fingerprint: 0xdeadbeef,
    });
    m.putVipMarker(addr.addr);
    assert.deepEqual(m.listServices(), {
      frontends: [{
        address: addr,
        entry: { id: 2, keepClientAddress: true, tableSize: 1021, fingerprint: 0xdeadbeef },
      }],
      vips: ["198.18.200.9"],
    });
    assert.deepEqual(m.listBackends().map((b) => [b.id, b.remote, b.serviceId]), [
      [3, false, 2],
      [4, true, 2],
    ]);
    m.clearBackends([3]);
    assert.deepEqual(m.listBackends().map((b) => b.id), [4]);
    m.deleteServiceEntry(addr);
    m.deleteVipMarker(addr.addr);
    assert.deepEqual(m.listServices(), { frontends: [], vips: [] });
    assert.equal(m.allCounters("backend").size, 0, "no traffic, no counters");
    assert.ok(m.capacity().serviceIds >= 10_000);
    assert.ok(m.capacity().backendIds >= 100_000);
  });
});

Deno.test("maps: Maglev tables are written and removed in batches", async () => {
  await withMaps((dp) => {
    const tables = [1, 2, 3].map((id) => ({
      id,
      table: maglevTable([{ key: `198.18.201.${id}:80`, id: id + 10, weight: 1 }], maglevSize(1)),
    }));
    dp.maps.writeMaglevs(tables, 2);
    for (const t of tables) assert.deepEqual(dp.maps.readMaglev(t.id), t.table);
    dp.maps.deleteMaglevs([1, 3]);
    assert.deepEqual([1, 2, 3].map((id) => dp.maps.readMaglev(id).length), [0, 1021, 0]);
  });
});

Deno.test("maps: a table built straight into its fresh inner map reads back as the table built apart", async () => {
  await withMaps((dp) => {
    const entries = (id: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({
        key: `198.18.202.${i}:${9000 + id}`,
        id: 100 * id + i,
        weight: 1 + (i % 3),
      }));
    const sizes = [[1, 3], [2, 10], [3, 90]] as const;
    dp.maps.writeMaglevs(sizes.map(([id, n]) => ({
      id,
      get table(): Uint32Array {
        throw new Error("a write with fill must not build the table apart");
      },
      fill: {
        size: maglevSize(n),
        into: (words: Uint32Array, stride: number) => {
          maglevFill(entries(id, n), maglevSize(n), { into: words, stride });
        },
      },
    })));
    for (const [id, n] of sizes) {
      assert.deepEqual(dp.maps.readMaglev(id), maglevTable(entries(id, n), maglevSize(n)));
    }
  });
});

Deno.test("maps: a table of the same size is written over the old one in place, another size is swapped in", async () => {
  await withMaps((dp) => {
    const innerId = (id: number) => {
      const outer = openPinnedMap(`${dp.pinDir}/maglev`);
      try {
        const key = new Uint8Array(Uint32Array.of(id).buffer);
        return new DataView(outer.lookup(key)!.buffer).getUint32(0, true);
      } finally {
        outer.close();
      }
    };
    const two = [
      { key: "198.18.201.1:80", id: 11, weight: 1 },
      { key: "198.18.201.2:80", id: 12, weight: 1 },
    ];
    const first = maglevTable(two, maglevSize(2));
    dp.maps.writeMaglevs([{ id: 1, table: first }]);
    const before = innerId(1);
    const weighted = maglevTable([two[0]!, { ...two[1]!, weight: 3 }], maglevSize(2));
    assert.notDeepEqual(weighted, first);
    dp.maps.writeMaglevs([{ id: 1, table: weighted, inPlace: true }]);
    assert.deepEqual(dp.maps.readMaglev(1), weighted);
    assert.equal(innerId(1), before, "the same inner map, written in place");
    // the grace period after it gives the outer map its own table back
    dp.maps.waitForReaders();
    assert.deepEqual(dp.maps.readMaglev(1), weighted);
    assert.equal(innerId(1), before, "the same inner map after the grace period");
    const bigger = maglevTable(
      [...two, { key: "198.18.201.3:80", id: 13, weight: 1 }],
      maglevSize(20),
    );
    assert.notEqual(bigger.length, first.length);
    dp.maps.writeMaglevs([{ id: 1, table: bigger, inPlace: true }]);
    assert.deepEqual(dp.maps.readMaglev(1), bigger);
    assert.notEqual(innerId(1), before, "another size: a new inner map swapped in");
  });
});

Deno.test("maps: a maglev map pinned by an agent without mmap-able tables keeps taking tables", async () => {
  await buildBpf();
  await ensureBpffs();
  const pinDir = `/sys/fs/bpf/blixt-test-maps-legacy-${Deno.pid}`;
  await Deno.mkdir(pinDir, { recursive: true });
  // The outer map as an earlier agent pinned it: inner tables with BPF_F_INNER_MAP only.
  const template = createMap(MAP_TYPE.ARRAY, "blixt_maglev", {
    keySize: 4,
    valueSize: 4,
    maxEntries: LIMITS.MAGLEV_MAX,
    flags: BPF_F_INNER_MAP,
  });
  const outerFd = check("bpf_map_create", () =>
    lib().bpf_map_create(
      MAP_TYPE.ARRAY_OF_MAPS,
      cstr("maglev"),
      4,
      4,
      LIMITS.MAX_SERVICES,
      opts("bpf_map_create_opts", { inner_map_fd: template.fd }),
    ));
  template.close();
  try {
    check("bpf_obj_pin", () => lib().bpf_obj_pin(outerFd, cstr(`${pinDir}/maglev`)));
  } finally {
    closeFd(outerFd);
  }
  const dp = Dataplane.load({ pinDir, conntrackEntries: 1024 });
  try {
    const table = maglevTable([{ key: "198.18.201.1:80", id: 11, weight: 1 }], maglevSize(1));
    dp.maps.writeMaglevs([{ id: 1, table }, { id: 2, table }]);
    assert.deepEqual(dp.maps.readMaglev(2), table);
  } finally {
    dp.close();
    removePins(pinDir);
  }
});
