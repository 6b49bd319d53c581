import assert from "node:assert/strict";
import { buildBpf } from "../../bpf/build.ts";
import { EVENTS, LIBBPF_OPTS, LIMITS, MAGLEV_INNER_FLAGS, SHARED_STRUCTS } from "./layout.ts";
import { Dataplane, ensureBpffs, removePins } from "./loader.ts";
import { createMap, MAP_TYPE } from "./object.ts";

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
}

async function btfTypes(object: string): Promise<Map<number, BtfType>> {
  const out = await new Deno.Command("bpftool", {
    args: ["-j", "btf", "dump", "file", object],
    stdout: "piped",
  }).output();
  assert.ok(out.success, "bpftool btf dump");
  const types: BtfType[] = JSON.parse(new TextDecoder().decode(out.stdout)).types;
  return new Map(types.map((t) => [t.id, t]));
}

function btfSize(types: Map<number, BtfType>, id: number): number {
  const t = types.get(id);
  if (!t) throw new Error(`BTF type ${id} missing`);
  if (t.kind === "TYPEDEF" || t.kind === "VOLATILE" || t.kind === "CONST") {
    return btfSize(types, t.type_id!);
  }
  if (t.kind === "ARRAY") return btfSize(types, t.type_id!) * t.nr_elems!;
  return t.size!;
}

Deno.test("layout: every shared struct matches the compiled object's BTF", async () => {
  const types = await btfTypes(await buildBpf());
  for (const s of SHARED_STRUCTS) {
    const btf = [...types.values()].find((t) => t.kind === "STRUCT" && t.name === s.name);
    assert.ok(btf, `struct ${s.name} is in the BTF`);
    assert.equal(btf.size, s.size, `sizeof(struct ${s.name})`);
    assert.deepEqual(
      btf.members!.map((
        m,
      ) => [m.name, m.bits_offset / 8, btfSize(types, m.type_id)]),
      s.fields.map((f) => [f.name, f.offset, f.size]),
      `members of struct ${s.name} (name, offset, size)`,
    );
  }
});

Deno.test("layout: inner Maglev tables are created with the flags of the BTF template", async () => {
  const types = await btfTypes(await buildBpf());
  const tpl = [...types.values()].find((t) => t.kind === "STRUCT" && t.name === "maglev_table");
  assert.ok(tpl, "struct maglev_table is in the BTF");
  // __uint(map_flags, V) is `int (*map_flags)[V]`: the value is the array's length.
  const ptr = types.get(tpl.members!.find((m) => m.name === "map_flags")!.type_id)!;
  assert.equal(ptr.kind, "PTR");
  assert.equal(types.get(ptr.type_id!)!.nr_elems, MAGLEV_INNER_FLAGS);
});

Deno.test("layout: libbpf option structs match libbpf's headers (C probe)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "blixt-probe-" });
  try {
    const lines = [
      "#include <stdio.h>",
      "#include <stddef.h>",
      "#include <bpf/bpf.h>",
      "#include <bpf/libbpf.h>",
      "int main(void) {",
    ];
    for (const [name, layout] of Object.entries(LIBBPF_OPTS)) {
      lines.push(`printf("${name} size %zu\\n", sizeof(struct ${name}));`);
      for (const f of Object.keys(layout.fields)) {
        lines.push(
          `printf("${name} ${f} %zu %zu\\n", offsetof(struct ${name}, ${f}), sizeof(((struct ${name} *)0)->${f}));`,
        );
      }
    }
    lines.push("return 0; }");
    await Deno.writeTextFile(`${dir}/probe.c`, lines.join("\n"));
    const cc = await new Deno.Command("clang", {
      args: [`${dir}/probe.c`, "-o", `${dir}/probe`],
      stderr: "piped",
    }).output();
    assert.ok(cc.success, new TextDecoder().decode(cc.stderr));
    const run = await new Deno.Command(`${dir}/probe`, { stdout: "piped" })
      .output();
    const got = new TextDecoder().decode(run.stdout).trim().split("\n");
    const want: string[] = [];
    for (const [name, layout] of Object.entries(LIBBPF_OPTS)) {
      want.push(`${name} size ${layout.size}`);
      for (const [f, { offset, size }] of Object.entries(layout.fields)) {
        want.push(`${name} ${f} ${offset} ${size}`);
      }
    }
    assert.deepEqual(got, want);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("layout: map capacities and event names match bpf/consts.h", async () => {
  await buildBpf();
  await ensureBpffs();
  const pinDir = `/sys/fs/bpf/blixt-test-layout-${Deno.pid}`;
  const dp = Dataplane.load({ pinDir });
  try {
    const o = dp.object;
    assert.equal(o.map("services").maxEntries, LIMITS.MAX_SERVICE_KEYS);
    assert.equal(o.map("backends").maxEntries, LIMITS.MAX_BACKENDS);
    assert.equal(o.map("maglev").maxEntries, LIMITS.MAX_SERVICES);
    assert.equal(o.map("conntrack").maxEntries, LIMITS.CT_MAX);
    assert.equal(o.map("service_stats").maxEntries, LIMITS.MAX_SERVICES);
    assert.equal(o.map("events").maxEntries, LIMITS.EVENT_SLOTS);
    assert.ok(EVENTS.length <= LIMITS.EVENT_SLOTS);
    assert.equal(o.map("pod_ifaces").maxEntries, LIMITS.MAX_POD_IFACES);
    assert.equal(o.map("pod_iface_slots").maxEntries, LIMITS.POD_IFACE_SLOTS);
    assert.equal(o.map("verified_clients").maxEntries, LIMITS.VERIFIED_MAX);
  } finally {
    dp.close();
    removePins(pinDir);
  }
});

Deno.test("layout: an events map pinned with fewer slots (an older agent's) is replaced on load", async () => {
  await buildBpf();
  await ensureBpffs();
  const pinDir = `/sys/fs/bpf/blixt-test-events-${Deno.pid}`;
  Deno.mkdirSync(pinDir, { recursive: true });
  const old = createMap(MAP_TYPE.PERCPU_ARRAY, "events", {
    keySize: 4,
    valueSize: 8,
    maxEntries: 9,
  });
  old.pin(`${pinDir}/events`);
  old.close();
  const dp = Dataplane.load({ pinDir });
  try {
    assert.equal(dp.object.map("events").maxEntries, LIMITS.EVENT_SLOTS);
    assert.equal(dp.maps.events().snat_wait_dropped, 0n);
  } finally {
    dp.close();
    removePins(pinDir);
  }
});
