import assert from "node:assert/strict";
import { type InterfaceAttacher, watchInterfaces } from "./interface_watch.ts";
import { LibbpfError } from "./bpf/libbpf.ts";
import type { Level } from "./log.ts";
import { Registry } from "./metrics.ts";

/**
 * Interfaces by name (their ifindex; absent: undefined), where the program is
 * (links, by name: pinned), and `pod_ifaces`.
 */
function fakeKernel() {
  const links = new Map<string, number>();
  const ifaces = new Map<string, number>();
  const podIfaces = new Set<number>();
  let next = 10;
  const calls: string[] = [];
  const looks: string[] = [];
  const unmarked: number[] = [];
  const detached: string[] = [];
  let failWith: Error | undefined;
  const dp: InterfaceAttacher = {
    attach(name, { pods }) {
      calls.push(name);
      if (failWith) throw failWith;
      const ifindex = ifaces.get(name);
      if (ifindex === undefined) throw new LibbpfError("if_nametoindex", 19, "", name);
      links.set(name, ifindex);
      if (pods) podIfaces.add(ifindex);
      return "tcx";
    },
    attachState(name) {
      looks.push(name);
      const ifindex = ifaces.get(name);
      return {
        ifindex,
        mode: ifindex !== undefined && links.get(name) === ifindex ? "tcx" : undefined,
      };
    },
    detach(name) {
      detached.push(name);
      links.delete(name);
    },
    pinnedInterfaces: () => [...links.keys()].sort(),
    podInterfaceIndexes: () => [...podIfaces].sort((a, b) => a - b),
    maps: {
      deletePodInterface: (ifindex) => {
        podIfaces.delete(ifindex);
        unmarked.push(ifindex);
      },
    },
  };
  return {
    dp,
    calls,
    looks,
    unmarked,
    detached,
    podIfaces,
    /** Makes (or makes again) `name`: a new ifindex, no program. */
    make: (name: string) => void ifaces.set(name, next++),
    remove: (name: string) => void ifaces.delete(name),
    /** A link pinned by an earlier run (on the interface's ifindex, or a cut one: 0). */
    pin: (name: string) => void links.set(name, ifaces.get(name) ?? 0),
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

Deno.test("a pod interface that appears later is attached then, and its absence is logged once", async () => {
  const k = fakeKernel();
  const { log, msgs } = logLines();
  const problems: string[][] = [];
  k.make("pods1");
  const w = watchInterfaces(k.dp, [{ name: "cni0", pods: true }, { name: "pods1", pods: true }], {
    log,
    intervalMs: 60_000,
    linkNotifications: false,
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
    await w.stop();
  }
});

Deno.test("a pod interface deleted and made again gets the program again, its old ifindex unmarked, once logged", async () => {
  const k = fakeKernel();
  const { log, lines, msgs } = logLines();
  const metrics = new Registry();
  const problems: string[][] = [];
  k.make("cni0");
  const w = watchInterfaces(k.dp, [{ name: "cni0", pods: true }], {
    log,
    metrics,
    intervalMs: 60_000,
    linkNotifications: false,
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
      trigger: "request",
    });
    assert.deepEqual(problems, [["cni0 (pods): not present since it was deleted"], []]);
    const text = metrics.render();
    assert.match(text, /blixt_agent_interface_attached\{interface="cni0",role="pods"\} 1/);
    assert.match(
      text,
      /blixt_agent_interface_reattaches_total\{interface="cni0",role="pods"\} 1/,
    );
  } finally {
    await w.stop();
  }
});

Deno.test("re-made between two looks (never seen missing): attached again all the same", async () => {
  const k = fakeKernel();
  const { log, msgs } = logLines();
  k.make("eth0");
  k.dp.attach("eth0", {});
  const w = watchInterfaces(k.dp, [{ name: "eth0", attached: true }], {
    log,
    intervalMs: 60_000,
    linkNotifications: false,
  });
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
    await w.stop();
  }
});

Deno.test("an uplink that is gone is a problem at once; attach failures are errors, once per distinct error, and retried", async () => {
  const k = fakeKernel();
  const { log, msgs } = logLines();
  const w = watchInterfaces(k.dp, [{ name: "bond0" }], {
    log,
    intervalMs: 60_000,
    linkNotifications: false,
  });
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
    await w.stop();
  }
});

Deno.test("the watch looks again by itself every interval", async () => {
  const k = fakeKernel();
  const w = watchInterfaces(k.dp, [{ name: "cni0", pods: true }], {
    log: () => {},
    intervalMs: 5,
    linkNotifications: false,
  });
  try {
    k.make("cni0");
    const until = Date.now() + 2000;
    while (!w.attached.has("cni0") && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(w.attached.has("cni0"));
  } finally {
    await w.stop();
  }
});

Deno.test("no interface: nothing attached, no timer left", async () => {
  const w = watchInterfaces(fakeKernel().dp, [], { log: () => {} });
  assert.equal(w.attached.size, 0);
  await w.stop();
});

Deno.test("links pinned for interfaces no longer served are detached at start; served ones stay", async () => {
  const k = fakeKernel();
  const { log, lines } = logLines();
  k.make("eth0");
  k.dp.attach("eth0", {});
  k.make("cni1"); // a --pod-interface of the last run, not passed to this one
  k.pin("cni1");
  k.pin("bond0"); // deleted for good while the agent was down: its links are cut
  const w = watchInterfaces(
    k.dp,
    [{ name: "eth0", attached: true }, { name: "cni0", pods: true }],
    {
      log,
      intervalMs: 60_000,
      linkNotifications: false,
    },
  );
  try {
    assert.deepEqual(k.detached, ["bond0", "cni1"]);
    assert.deepEqual(k.dp.pinnedInterfaces(), ["eth0"]);
    assert.deepEqual(
      lines.filter((l) => l.msg.includes("no longer served")).map((l) => l.fields?.interface),
      ["bond0", "cni1"],
    );
  } finally {
    await w.stop();
  }
});

Deno.test("pod_ifaces keeps only the pod interfaces there now: indexes of an earlier run and of a deleted one go", async () => {
  const k = fakeKernel();
  const { log, lines } = logLines();
  k.make("cni0");
  k.podIfaces.add(3); // cni0 of the last run, re-made while the agent was down
  k.podIfaces.add(4); // a --pod-interface of the last run, not passed to this one
  const w = watchInterfaces(k.dp, [{ name: "cni0", pods: true }], {
    log,
    intervalMs: 60_000,
    linkNotifications: false,
  });
  try {
    assert.deepEqual(k.dp.podInterfaceIndexes(), [k.ifindex("cni0")]);
    assert.deepEqual(
      lines.filter((l) => l.msg.startsWith("pod_ifaces:")).map((l) => l.fields?.ifindex),
      [3, 4],
      "each logged once",
    );
    const current = k.ifindex("cni0")!;
    k.remove("cni0");
    w.check();
    assert.deepEqual(
      k.dp.podInterfaceIndexes(),
      [],
      "a deleted pod interface's index goes at once",
    );
    assert.deepEqual(k.unmarked, [3, 4, current]);
    assert.equal(lines.filter((l) => l.msg.startsWith("pod_ifaces:")).length, 2, "no news");
  } finally {
    await w.stop();
  }
});

async function ip(...args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

Deno.test("a burst of link notifications about a watched interface gives one look, at once; other links none", async () => {
  const ns = `bxiw-${Deno.pid}-${crypto.randomUUID().slice(0, 6)}`;
  await ip("netns", "add", ns);
  const k = fakeKernel();
  const { log, lines } = logLines();
  const w = watchInterfaces(k.dp, [{ name: "cni0", pods: true }], {
    log,
    intervalMs: 60_000,
    netns: `/run/netns/${ns}`,
    debounceMs: 100, // a loaded machine may pause `ip -batch` between two lines
  });
  try {
    assert.deepEqual(k.looks, ["cni0"], "the first look");
    await ip("-n", ns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1");
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(k.looks, ["cni0"], "links not watched wake nothing");

    k.make("cni0"); // what the fake's look will find
    const batch = new Deno.Command("ip", { args: ["-n", ns, "-batch", "-"], stdin: "piped" })
      .spawn();
    const writer = batch.stdin.getWriter();
    await writer.write(
      new TextEncoder().encode(
        "link add cni0 type bridge\nlink set cni0 mtu 1400\nlink set cni0 up\nlink set veth1 master cni0\n",
      ),
    );
    await writer.close();
    const start = Date.now();
    assert.ok((await batch.status).success);
    while (!w.attached.has("cni0") && Date.now() - start < 5_000) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(w.attached.has("cni0"), "attached without waiting for the interval (60 s)");
    await new Promise((r) => setTimeout(r, 300));
    // One look for the four commands' notifications; the kernel's link watch may report the
    // bridge's operational state apart, up to a second later (it batches those), and a loaded
    // machine may pause `ip -batch` between two lines: at most one look more.
    assert.ok(
      k.looks.length >= 2 && k.looks.length <= 3 && k.looks.every((l) => l === "cni0"),
      `one look for the burst, at most one more: ${JSON.stringify(k.looks)}`,
    );
    assert.equal(lines.at(-1)?.msg, "pod interface attached");
    assert.equal(lines.at(-1)?.fields?.trigger, "link notification");
  } finally {
    await w.stop();
    await ip("netns", "del", ns);
  }
});
