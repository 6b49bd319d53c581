/**
 * Attach and re-attach in the real kernel, on a bridge in a namespace of its
 * own: an interface deleted and made again under the same name (a CNI's
 * bridge, a bond re-made) gets the program again, and the pinned link the
 * deleted one left is replaced.
 */
import assert from "node:assert/strict";
import { buildBpf } from "../../bpf/build.ts";
import { type AttachMode, Dataplane, ensureBpffs, removePins } from "./loader.ts";
import { inNetns } from "./libbpf.ts";

const BRIDGE = "bxpods0";

async function ip(...args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

function facesPods(dp: Dataplane, ifindex: number): boolean {
  const key = new Uint8Array(new Uint32Array([ifindex]).buffer);
  return dp.object.map("pod_ifaces").lookup(key) !== undefined;
}

async function withNamespace(fn: (ns: string, dp: Dataplane) => Promise<void>): Promise<void> {
  await buildBpf();
  await ensureBpffs();
  const id = `${Deno.pid}-${crypto.randomUUID().slice(0, 6)}`;
  const ns = `bxld-${id}`;
  const pinDir = `/sys/fs/bpf/blixt-test-loader-${id}`;
  await ip("netns", "add", ns);
  let dp: Dataplane | undefined;
  try {
    dp = Dataplane.load({ pinDir, conntrackEntries: 4096 });
    await fn(ns, dp);
  } finally {
    dp?.close();
    removePins(pinDir);
    await ip("netns", "del", ns);
  }
}

for (const mode of ["tcx", "tc"] as const satisfies AttachMode[]) {
  Deno.test(`${mode}: an interface deleted and made again is seen without the program, and attach puts it back`, async () => {
    await withNamespace(async (ns, dp) => {
      const netns = `/run/netns/${ns}`;
      assert.deepEqual(dp.attachState(BRIDGE, { netns }), { ifindex: undefined, mode: undefined });
      await ip("-n", ns, "link", "add", BRIDGE, "type", "bridge");
      assert.equal(dp.attach(BRIDGE, { netns, mode, pods: true }), mode);
      const first = dp.attachState(BRIDGE, { netns });
      assert.equal(first.mode, mode);

      await ip("-n", ns, "link", "del", BRIDGE);
      assert.deepEqual(dp.attachState(BRIDGE, { netns }), { ifindex: undefined, mode: undefined });
      await ip("-n", ns, "link", "add", BRIDGE, "type", "bridge");
      const again = dp.attachState(BRIDGE, { netns });
      assert.notEqual(again.ifindex, undefined);
      assert.equal(again.mode, undefined, "a new interface carries nothing");
      if (mode === "tcx") {
        assert.ok(Deno.statSync(`${dp.pinDir}/link_${BRIDGE}_ingress`), "the cut link is pinned");
      }

      // Before: bpf_link_update on the cut link, ENOLINK, and no program until the pin was removed.
      assert.equal(dp.attach(BRIDGE, { netns, mode, pods: true }), mode);
      assert.deepEqual(dp.attachState(BRIDGE, { netns }), { ifindex: again.ifindex, mode });
      assert.ok(facesPods(dp, again.ifindex!), "the new ifindex is marked as facing pods");

      dp.detach(BRIDGE, { netns });
      assert.deepEqual(dp.attachState(BRIDGE, { netns }), {
        ifindex: again.ifindex,
        mode: undefined,
      });
      assert.deepEqual(
        [...Deno.readDirSync(dp.pinDir)].filter((e) => e.name.startsWith("link_")),
        [],
        "no link pin left",
      );
    });
  });
}

Deno.test("detach after the interface is gone removes its cut links' pins", async () => {
  await withNamespace(async (ns, dp) => {
    const netns = `/run/netns/${ns}`;
    await ip("-n", ns, "link", "add", BRIDGE, "type", "bridge");
    dp.attach(BRIDGE, { netns, mode: "tcx" });
    await ip("-n", ns, "link", "del", BRIDGE);
    dp.detach(BRIDGE, { netns });
    assert.deepEqual(
      [...Deno.readDirSync(dp.pinDir)].filter((e) => e.name.startsWith("link_")),
      [],
    );
  });
});

Deno.test("pinnedInterfaces and podInterfaceIndexes say what an earlier run left: links by name, pod ifindexes", async () => {
  await withNamespace(async (ns, dp) => {
    const netns = `/run/netns/${ns}`;
    await ip("-n", ns, "link", "add", BRIDGE, "type", "bridge");
    await ip("-n", ns, "link", "add", "bx_up0", "type", "bridge");
    dp.attach(BRIDGE, { netns, mode: "tcx", pods: true });
    dp.attach("bx_up0", { netns, mode: "tcx" });
    const ifindex = dp.attachState(BRIDGE, { netns }).ifindex!;
    assert.deepEqual(dp.pinnedInterfaces(), ["bx_up0", BRIDGE].sort(), "names with _ too");
    assert.deepEqual(dp.podInterfaceIndexes(), [ifindex]);
    await ip("-n", ns, "link", "del", BRIDGE);
    assert.deepEqual(dp.pinnedInterfaces(), ["bx_up0", BRIDGE].sort(), "a cut link stays pinned");
    assert.deepEqual(dp.podInterfaceIndexes(), [ifindex], "and its index stays marked");
    dp.detach(BRIDGE, { netns });
    dp.maps.deletePodInterface(ifindex);
    dp.detach("bx_up0", { netns });
    assert.deepEqual(dp.pinnedInterfaces(), []);
    assert.deepEqual(dp.podInterfaceIndexes(), []);
  });
});

Deno.test("a load that fails leaves no pin directory behind, and one over pins keeps them", async () => {
  await buildBpf();
  await ensureBpffs();
  const pinDir = `/sys/fs/bpf/blixt-test-loader-fail-${Deno.pid}`;
  const broken = await Deno.makeTempFile({ suffix: ".o" });
  try {
    await Deno.writeTextFile(broken, "not an ELF object");
    assert.throws(() => Dataplane.load({ pinDir, objectPath: broken }));
    assert.throws(() => Deno.statSync(pinDir), Deno.errors.NotFound);

    Dataplane.load({ pinDir, conntrackEntries: 4096 }).close();
    const pinned = [...Deno.readDirSync(pinDir)].map((e) => e.name).sort();
    // another conntrack size: libbpf refuses the pinned map, the pins stay for whoever uses them
    assert.throws(() => Dataplane.load({ pinDir, conntrackEntries: 8192 }));
    assert.deepEqual([...Deno.readDirSync(pinDir)].map((e) => e.name).sort(), pinned);
  } finally {
    removePins(pinDir);
    await Deno.remove(broken);
  }
});

Deno.test("attachState costs tens of microseconds: a look every 5 s is free (prints µs per call)", async () => {
  await withNamespace(async (ns, dp) => {
    const netns = `/run/netns/${ns}`;
    await ip("-n", ns, "link", "add", BRIDGE, "type", "bridge");
    for (const mode of ["tcx", "tc"] as const) {
      dp.attach(BRIDGE, { netns, mode });
      const n = 1000;
      // inside the namespace, as the agent runs in the node's
      const us = inNetns(netns, () => {
        for (let i = 0; i < 100; i++) dp.attachState(BRIDGE);
        const start = performance.now();
        for (let i = 0; i < n; i++) assert.equal(dp.attachState(BRIDGE).mode, mode);
        return (performance.now() - start) * 1000 / n;
      });
      console.log(
        JSON.stringify({ name: `attach_state_${mode}`, value: +us.toFixed(1), unit: "us" }),
      );
      assert.ok(us < 5_000, `${us} µs`);
      dp.detach(BRIDGE, { netns });
    }
  });
});
