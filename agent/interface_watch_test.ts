import assert from "node:assert/strict";
import { type InterfaceAttacher, watchInterfaces } from "./interface_watch.ts";
import { LibbpfError } from "./bpf/libbpf.ts";
import type { Level } from "./log.ts";
import { Registry } from "./metrics.ts";

/** Interfaces by name (their ifindex; absent: undefined) and where the program is. */
function fakeKernel() {
  const links = new Map<string, number>();
  const ifaces = new Map<string, number>();
  let next = 10;
  const calls: string[] = [];
  const unmarked: number[] = [];
  let failWith: Error | undefined;
  const dp: InterfaceAttacher = {
    attach(name) {
      calls.push(name);
      if (failWith) throw failWith;
      const ifindex = ifaces.get(name);
      if (ifindex === undefined) throw new LibbpfError("if_nametoindex", 19, "", name);
      links.set(name, ifindex);
      return "tcx";
    },
    attachState(name) {
      const ifindex = ifaces.get(name);
      return {
        ifindex,
        mode: ifindex !== undefined && links.get(name) === ifindex ? "tcx" : undefined,
      };
    },
    maps: { deletePodInterface: (ifindex) => void unmarked.push(ifindex) },
  };
  return {
    dp,
    calls,
    unmarked,
    /** Makes (or makes again) `name`: a new ifindex, no program. */
    make: (name: string) => void ifaces.set(name, next++),
    remove: (name: string) => void ifaces.delete(name),
    /** Takes the program off `name` (e.g. `tc filter del`). */
    strip: (name: string) => void links.delete(name),
    ifindex: (name: string) => ifaces.get(name),
    fail: (e: Error | undefined) => void (failWith = e),
  };
}

function logLines() {
  const lines: { level: Level; msg: string; fields?: Record<string, unknown> }[] = [];
  return {
    lines,
    log: (level: Level, msg: string, fields?: Record<string, unknown>) =>
      void lines.push({ level, msg, ...(fields ? { fields } : {}) }),
    msgs: () => lines.map((l) => `${l.level} ${l.msg}`),
  };
}

Deno.test("a pod interface that appears later is attached then, and its absence is logged once", () => {
  const k = fakeKernel();
  const { log, msgs } = logLines();
  const problems: string[][] = [];
  k.make("pods1");
  const w = watchInterfaces(k.dp, [{ name: "cni0", pods: true }, { name: "pods1", pods: true }], {
    log,
    intervalMs: 60_000,
    onProblems: (p) => problems.push([...p]),
  });
  try {
    assert.deepEqual([...w.attached], ["pods1"]);
    w.check();
    w.check();
    assert.deepEqual([...w.attached], ["pods1"], "still absent");
    assert.deepEqual(w.problems(), [], "a bridge not made yet is not a problem");
    k.make("cni0");
    w.check();
    assert.deepEqual([...w.attached].sort(), ["cni0", "pods1"]);
    assert.deepEqual(msgs(), [
      "warn pod interface not present; attaching it when it appears",
      "info pod interface attached",
      "info pod interface attached",
    ]);
    assert.deepEqual(k.calls, ["pods1", "cni0"], "each attached once; steady looks attach nothing");
    assert.deepEqual(problems, []);
  } finally {
    w.stop();
  }
});

Deno.test("a pod interface deleted and made again gets the program again, its old ifindex unmarked, once logged", () => {
  const k = fakeKernel();
  const { log, lines, msgs } = logLines();
  const metrics = new Registry();
  const problems: string[][] = [];
  k.make("cni0");
  const w = watchInterfaces(k.dp, [{ name: "cni0", pods: true }], {
    log,
    metrics,
    intervalMs: 60_000,
    onProblems: (p) => problems.push([...p]),
  });
  try {
    const first = k.ifindex("cni0")!;
    k.remove("cni0");
    w.check();
    w.check();
    assert.deepEqual([...w.attached], []);
    assert.deepEqual(w.problems(), ["cni0 (pods): not present since it was deleted"]);
    assert.match(
      metrics.render(),
      /blixt_agent_interface_attached\{interface="cni0",role="pods"\} 0/,
    );
    k.make("cni0");
    w.check();
    w.check();
    assert.deepEqual([...w.attached], ["cni0"]);
    assert.deepEqual(k.unmarked, [first]);
    assert.deepEqual(msgs(), [
      "info pod interface attached",
      "warn pod interface gone; attaching the program when it appears again",
      "warn pod interface was deleted and made again; program attached to the new one",
    ]);
    assert.deepEqual(lines[2]!.fields, {
      interface: "cni0",
      role: "pods",
      mode: "tcx",
      ifindex: k.ifindex("cni0"),
      previousIfindex: first,
    });
    assert.deepEqual(problems, [["cni0 (pods): not present since it was deleted"], []]);
    const text = metrics.render();
    assert.match(text, /blixt_agent_interface_attached\{interface="cni0",role="pods"\} 1/);
    assert.match(
      text,
      /blixt_agent_interface_reattaches_total\{interface="cni0",role="pods"\} 1/,
    );
  } finally {
    w.stop();
  }
});

Deno.test("re-made between two looks (never seen missing): attached again all the same", () => {
  const k = fakeKernel();
  const { log, msgs } = logLines();
  k.make("eth0");
  k.dp.attach("eth0", {});
  const w = watchInterfaces(k.dp, [{ name: "eth0", attached: true }], { log, intervalMs: 60_000 });
  try {
    assert.deepEqual(k.calls, ["eth0"], "the caller's attach is taken as it is");
    k.make("eth0"); // a new ifindex under the same name
    w.check();
    assert.deepEqual(msgs(), [
      "warn uplink was deleted and made again; program attached to the new one",
    ]);
    assert.deepEqual(k.unmarked, [], "an uplink is not in pod_ifaces");
    k.strip("eth0");
    w.check();
    assert.deepEqual(msgs().slice(1), ["warn program missing from the uplink; attached again"]);
    assert.deepEqual([...w.attached], ["eth0"]);
  } finally {
    w.stop();
  }
});

Deno.test("an uplink that is gone is a problem at once; attach failures are errors, once per distinct error, and retried", () => {
  const k = fakeKernel();
  const { log, msgs } = logLines();
  const w = watchInterfaces(k.dp, [{ name: "bond0" }], { log, intervalMs: 60_000 });
  try {
    assert.deepEqual(w.problems(), ["bond0 (uplink): not present"]);
    k.make("bond0");
    k.fail(new LibbpfError("bpf_link_create", 1, "", "tcx ingress of bond0"));
    w.check();
    w.check();
    assert.equal(w.problems().length, 1);
    assert.match(w.problems()[0]!, /^bond0 \(uplink\): attach failed: bpf_link_create/);
    k.fail(undefined);
    w.check();
    assert.deepEqual(w.problems(), []);
    assert.deepEqual(msgs(), [
      "warn uplink not present; attaching it when it appears",
      "error uplink not attached; trying again",
      "info uplink attached",
    ]);
  } finally {
    w.stop();
  }
});

Deno.test("the watch looks again by itself every interval", async () => {
  const k = fakeKernel();
  const w = watchInterfaces(k.dp, [{ name: "cni0", pods: true }], { log: () => {}, intervalMs: 5 });
  try {
    k.make("cni0");
    const until = Date.now() + 2000;
    while (!w.attached.has("cni0") && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(w.attached.has("cni0"));
  } finally {
    w.stop();
  }
});

Deno.test("no interface: nothing attached, no timer left", () => {
  const w = watchInterfaces(fakeKernel().dp, [], { log: () => {} });
  assert.equal(w.attached.size, 0);
  w.stop();
});
