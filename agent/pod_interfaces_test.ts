import assert from "node:assert/strict";
import { attachPodInterfaces } from "./pod_interfaces.ts";
import { LibbpfError } from "./bpf/libbpf.ts";
import type { Level } from "./log.ts";

Deno.test("a pod interface that appears later is attached then, and its absence is logged once", async () => {
  const lines: { level: Level; msg: string }[] = [];
  let present = false;
  const calls: string[] = [];
  const dp = {
    attach(name: string) {
      calls.push(name);
      if (name === "cni0" && !present) throw new LibbpfError("if_nametoindex", 19, "", name);
      return "tcx";
    },
  };
  const pods = attachPodInterfaces(
    dp,
    ["cni0", "pods1"],
    (level, msg) => lines.push({ level, msg }),
    { retryMs: 5 },
  );
  try {
    assert.deepEqual([...pods.attached], ["pods1"]);
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual([...pods.attached], ["pods1"], "still absent");
    present = true;
    const until = Date.now() + 2000;
    while (!pods.attached.has("cni0") && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(pods.attached.has("cni0"));
    assert.equal(
      lines.filter((l) => l.msg === "pod interface not present; attaching it when it appears")
        .length,
      1,
    );
    assert.equal(calls.filter((c) => c === "pods1").length, 1, "attached once");
  } finally {
    pods.stop();
  }
});

Deno.test("other attach failures are logged as errors, once per distinct error, and retried", async () => {
  const lines: { level: Level; msg: string }[] = [];
  let failures = 3;
  const pods = attachPodInterfaces(
    {
      attach() {
        if (failures-- > 0) throw new LibbpfError("bpf_link_create", 1, "", "tcx ingress of cni0");
        return "tcx";
      },
    },
    ["cni0"],
    (level, msg) => lines.push({ level, msg }),
    { retryMs: 2 },
  );
  try {
    const until = Date.now() + 2000;
    while (!pods.attached.has("cni0") && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(pods.attached.has("cni0"));
    assert.deepEqual(lines.map((l) => l.level), ["error", "info"]);
  } finally {
    pods.stop();
  }
});

Deno.test("no pod interface: nothing attached, no timer left", () => {
  const pods = attachPodInterfaces({ attach: () => "tcx" }, [], () => {});
  assert.equal(pods.attached.size, 0);
  pods.stop();
});
