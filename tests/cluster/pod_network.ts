/**
 * A pod's network, the one plumbing both kinds of pod use (the test pods of
 * `Cluster.createPod` and the Pod objects the pod runner serves): a network
 * namespace joined to its node's pod bridge `cni0` by a veth pair, with an
 * address from the node's pod CIDR and a default route via the node, as a
 * bridge CNI plugin with host-local IPAM sets it up.
 *
 * Addresses are handed out through files `<ipamDir>/<address>` made with
 * exclusive create, so two processes (a test and a node's pod runner) never
 * hand out the same address.
 *
 * @module
 */

import { type NodePlan, podAddress } from "./address_plan.ts";
import { ip, listNetns, netnsPids, stopProcess } from "./host.ts";

/** What {@link attachPodNetwork} needs to know of the node. */
export interface PodNode {
  plan: NodePlan;
  /** The node's network namespace (where `cni0` is). */
  netns: string;
  /** Directory of the node's address leases. */
  ipamDir: string;
}

/** Options of {@link attachPodNetwork}. */
export interface AttachOptions {
  /** Who holds the address (written into its lease file), e.g. a pod uid. */
  owner: string;
  /** Name of the veth's node side (at most 15 characters). */
  hostVeth: string;
}

/** The attached network of a pod. */
export interface PodNetwork {
  netns: string;
  ip: string;
  hostVeth: string;
}

/** Claims the first free address of the node's pod CIDR for `owner`. */
async function claimAddress(node: PodNode, owner: string): Promise<string> {
  await Deno.mkdir(node.ipamDir, { recursive: true });
  for (let host = 2; host <= 254; host++) {
    const address = podAddress(node.plan, host);
    try {
      await Deno.writeTextFile(`${node.ipamDir}/${address}`, owner, { createNew: true });
      return address;
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) continue;
      throw e;
    }
  }
  throw new Error(`node ${node.plan.name} has no free pod address`);
}

/** Gives back `address` if `owner` holds it. */
export async function releaseAddress(node: PodNode, address: string, owner: string): Promise<void> {
  const file = `${node.ipamDir}/${address}`;
  const holder = await Deno.readTextFile(file).catch(() => undefined);
  if (holder === owner) await Deno.remove(file).catch(() => {});
}

/** The addresses `owner`s hold on the node: address -> owner. */
export async function addressLeases(node: PodNode): Promise<Map<string, string>> {
  const leases = new Map<string, string>();
  try {
    for await (const entry of Deno.readDir(node.ipamDir)) {
      const owner = await Deno.readTextFile(`${node.ipamDir}/${entry.name}`).catch(() => "");
      leases.set(entry.name, owner);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return leases;
}

/**
 * Creates network namespace `netns` joined to the node's pod bridge, with an
 * address claimed for `options.owner`; undoes what it did when a step fails.
 */
export async function attachPodNetwork(
  node: PodNode,
  netns: string,
  options: AttachOptions,
): Promise<PodNetwork> {
  const address = await claimAddress(node, options.owner);
  try {
    await ip(["netns", "add", netns]);
    await ip([
      "link",
      "add",
      options.hostVeth,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      netns,
    ], {
      netns: node.netns,
    });
    await ip(["link", "set", options.hostVeth, "master", "cni0", "up"], { netns: node.netns });
    await ip(["link", "set", "lo", "up"], { netns });
    await ip(["addr", "add", `${address}/24`, "dev", "eth0"], { netns });
    await ip(["link", "set", "eth0", "up"], { netns });
    await ip(["route", "add", "default", "via", node.plan.podGateway], { netns });
    await forgetNeighbor(node, address);
    return { netns, ip: address, hostVeth: options.hostVeth };
  } catch (e) {
    await removeNetns(netns);
    await releaseAddress(node, address, options.owner);
    throw e;
  }
}

/**
 * Stops every process left in `netns` and deletes it (its veth goes with it);
 * gives the address back. Harmless when already gone.
 */
export async function detachPodNetwork(
  node: PodNode,
  network: { netns: string; ip?: string | undefined },
  owner: string,
): Promise<void> {
  await removeNetns(network.netns);
  if (network.ip) {
    await forgetNeighbor(node, network.ip);
    await releaseAddress(node, network.ip, owner);
  }
}

/**
 * Drops the node's ARP entry for a pod address. Addresses are reused at once
 * (lowest free first) by a pod with a new MAC; a REACHABLE entry of the old
 * pod would black-hole the new one's traffic until it ages out (~30 s, as
 * the conformance run saw). The CNI bridge plugin sends a gratuitous ARP for
 * the same reason.
 */
async function forgetNeighbor(node: PodNode, address: string): Promise<void> {
  await ip(["neigh", "flush", "to", address, "dev", "cni0"], { netns: node.netns });
}

/**
 * Stops the processes in `netns`, deletes its veths and then the namespace,
 * if it exists.
 *
 * Why the veths first: `ip netns del` only drops the name; the kernel destroys
 * the namespace later, in a work queue, once nothing holds it, and under load
 * that took 20 s and more in the conformance run. Until then the pod's veth
 * stayed on the node's bridge with the pod's address: it answered ARP for the
 * address the next pod had already been given (the node then sent that pod's
 * traffic to the dead one: ICMP port unreachable, then nothing) for up to 49 s.
 * Deleting one end of a veth pair deletes both at once.
 */
export async function removeNetns(netns: string): Promise<void> {
  if (!(await listNetns()).includes(netns)) return;
  for (const pid of await netnsPids(netns)) await stopProcess(pid);
  const links = JSON.parse(await ip(["-j", "link", "show", "type", "veth"], { netns }) || "[]") as {
    ifname: string;
  }[];
  for (const { ifname } of links) await ip(["link", "del", ifname], { netns });
  await ip(["netns", "del", netns]);
}

/** A short hex hash of `s`: names of veths (15 characters at most) from longer names. */
export async function shortHash(s: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
  return Array.from(new Uint8Array(digest).slice(0, 4))
    .map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 7);
}
