// A pod address handed to a new pod right after the old one went must answer at once.
//
//   node netns (cni0 198.19.254.1/24) ── veth ── pod A 198.19.254.2 (MAC a)
//   node's ARP: 198.19.254.2 -> a (REACHABLE)          A goes, B comes with MAC b
//   node netns ─────────────────────── veth ── pod B 198.19.254.2 (MAC b)
import assert from "node:assert/strict";
import { ip, linkExists, listNetns } from "./host.ts";
import { attachPodNetwork, detachPodNetwork, type PodNode, removeNetns } from "./pod_network.ts";

const prefix = Deno.env.get("BLIXT_CLUSTER_PREFIX") ?? "";
const NODE_NS = `${prefix}podnet-node`;

async function connectFromNode(address: string, timeoutMs: number): Promise<boolean> {
  const code = `
    const c = await Deno.connect({ hostname: "${address}", port: 7 });
    c.close();`;
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", NODE_NS, Deno.execPath(), "eval", code],
    stdout: "null",
    stderr: "null",
    signal: AbortSignal.timeout(timeoutMs),
  });
  try {
    return (await child.output()).success;
  } catch {
    return false;
  }
}

function listen(netns: string): Deno.ChildProcess {
  const code = `
    const l = Deno.listen({ hostname: "0.0.0.0", port: 7 });
    console.log("ready");
    for await (const c of l) c.close();`;
  return new Deno.Command("ip", {
    args: ["netns", "exec", netns, Deno.execPath(), "eval", code],
    stdout: "piped",
    stderr: "null",
  }).spawn();
}

async function ready(child: Deno.ChildProcess): Promise<void> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  assert.match(value ?? "", /ready/);
  reader.releaseLock();
}

/** A fresh node namespace (an old one of a failed run removed) and its IPAM directory. */
async function nodeNetns(): Promise<PodNode> {
  if ((await listNetns()).includes(NODE_NS)) await ip(["netns", "del", NODE_NS]);
  const ipamDir = await Deno.makeTempDir();
  await ip(["netns", "add", NODE_NS]);
  return {
    plan: {
      index: 1,
      name: "node-1",
      ip: "198.19.253.1",
      podCIDR: "198.19.254.0/24",
      podGateway: "198.19.254.1",
    },
    netns: NODE_NS,
    ipamDir,
  };
}

/** The node's pod bridge `cni0` with the pod gateway's address. */
async function bridgeUp(): Promise<void> {
  await ip(["link", "add", "cni0", "type", "bridge"], { netns: NODE_NS });
  await ip(["addr", "add", "198.19.254.1/24", "dev", "cni0"], { netns: NODE_NS });
  await ip(["link", "set", "cni0", "up"], { netns: NODE_NS });
}

/** Stops the pods' processes and removes pods a and b, the node namespace and its IPAM. */
async function tearDown(node: PodNode, children: Deno.ChildProcess[]): Promise<void> {
  for (const c of children) {
    try {
      c.kill();
    } catch { /* gone */ }
    await c.status.catch(() => {});
  }
  for (const pod of ["a", "b"]) await removeNetns(`${prefix}podnet-${pod}`);
  await ip(["netns", "del", NODE_NS]).catch(() => {});
  await Deno.remove(node.ipamDir, { recursive: true });
}

Deno.test("pod network: an address reused by a new pod answers at once (no stale ARP entry on the node)", async () => {
  const node = await nodeNetns();
  const children: Deno.ChildProcess[] = [];
  try {
    await bridgeUp();
    // another pod's port keeps the bridge up, as in a node with many pods
    await ip(["link", "add", "keep0", "type", "veth", "peer", "name", "keep1"], {
      netns: NODE_NS,
    });
    await ip(["link", "set", "keep0", "master", "cni0", "up"], { netns: NODE_NS });
    await ip(["link", "set", "keep1", "up"], { netns: NODE_NS });

    const a = await attachPodNetwork(node, `${prefix}podnet-a`, {
      owner: "a",
      hostVeth: `${prefix}pna`,
    });
    children.push(listen(a.netns));
    await ready(children[0]!);
    assert.ok(await connectFromNode(a.ip, 5000), "pod a answers");
    await children[0]!.stdout.cancel().catch(() => {});
    await detachPodNetwork(node, a, "a");
    await children[0]!.status;

    const b = await attachPodNetwork(node, `${prefix}podnet-b`, {
      owner: "b",
      hostVeth: `${prefix}pnb`,
    });
    assert.equal(b.ip, a.ip, "the address is reused");
    children.push(listen(b.netns));
    await ready(children[1]!);
    const started = performance.now();
    assert.ok(await connectFromNode(b.ip, 3000), "pod b answers within 3 s");
    assert.ok(performance.now() - started < 3000);
    await children[1]!.stdout.cancel().catch(() => {});
    await detachPodNetwork(node, b, "b");
    await children[1]!.status;
  } finally {
    await tearDown(node, children);
  }
});

// The kernel destroys a network namespace asynchronously, once nothing holds it; under load that
// lagged 20 s and more behind `ip netns del` in the conformance run. The dead pod's veth must not
// stay on the bridge meanwhile, answering ARP for the address the next pod was given.
//
//   node netns (cni0) ── veth pna ── pod A 198.19.254.2 (deleted, namespace not yet destroyed)
//                     ── veth pnb ── pod B 198.19.254.2 (listening)
Deno.test("pod network: a pod's veth leaves the node's bridge at once, though the kernel keeps its namespace", async () => {
  const node = await nodeNetns();
  const children: Deno.ChildProcess[] = [];
  let held: Deno.FsFile | undefined;
  try {
    await bridgeUp();
    const a = await attachPodNetwork(node, `${prefix}podnet-a`, {
      owner: "a",
      hostVeth: `${prefix}pna`,
    });
    // What the kernel's deferred cleanup does: the namespace outlives its name.
    held = await Deno.open(`/run/netns/${a.netns}`);
    await detachPodNetwork(node, a, "a");
    assert.equal(
      await linkExists(`${prefix}pna`, { netns: NODE_NS }),
      false,
      "pod a's veth is off the node",
    );

    const b = await attachPodNetwork(node, `${prefix}podnet-b`, {
      owner: "b",
      hostVeth: `${prefix}pnb`,
    });
    assert.equal(b.ip, a.ip, "the address is reused");
    children.push(listen(b.netns));
    await ready(children[0]!);
    for (let i = 0; i < 5; i++) {
      assert.ok(await connectFromNode(b.ip, 3000), `pod b answers (connection ${i + 1})`);
    }
    const mac = (JSON.parse(await ip(["-j", "link", "show", "eth0"], { netns: b.netns })) as {
      address: string;
    }[])[0]?.address;
    const neigh = await ip(["neigh", "show", b.ip, "dev", "cni0"], { netns: NODE_NS });
    assert.match(neigh, new RegExp(`lladdr ${mac}`), "the node's ARP entry is pod b's");
    await children[0]!.stdout.cancel().catch(() => {});
    await detachPodNetwork(node, b, "b");
    await children[0]!.status;
  } finally {
    held?.close();
    await tearDown(node, children);
  }
});
