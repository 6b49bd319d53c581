/**
 * The local cluster's address plan: every address lives in 198.18.0.0/15
 * (RFC 2544's benchmarking range), so nothing a test sends can be mistaken
 * for, or routed to, a real network.
 *
 * Cluster slot k owns a /19: 198.18.(32k).0/19 for k = 0..3 and
 * 198.19.(32(k-4)).0/19 for k = 4..7. Below, `N.(32k+i)` is the third and
 * fourth octet within that block:
 *
 * | block                | use                                   |
 * | -------------------- | ------------------------------------- |
 * | 198.18.(32k).0/24    | node network: bridge .1, node i .(10+i) |
 * | 198.18.(32k+1+i).0/24 | pod CIDR of node i (i < 14)          |
 * | 198.18.(32k+16).0/24 | Service ClusterIPs                    |
 * | 198.18.(32k+24).0/24 | Gateway address pool (routed to nodes) |
 *
 * 198.18.128.0/17 is left to tests without a cluster (data plane tests use
 * 198.18.192.0/18) and 198.19.128.0/17 is unused.
 *
 * @module
 */

/** Most clusters that can exist side by side on one machine. */
export const MAX_SLOTS = 8;
/** Most nodes one cluster can have (one /24 of pods each). */
export const MAX_NODES = 14;

/** The addresses of one node of a cluster. */
export interface NodePlan {
  /** 1-based index of the node; its name is `node-<index>`. */
  index: number;
  /** Kubernetes Node name. */
  name: string;
  /** Address of the node's uplink on the cluster bridge. */
  ip: string;
  /** The node's pod CIDR. */
  podCIDR: string;
  /** Gateway of the pods on this node (the node's pod bridge). */
  podGateway: string;
}

/** The addresses of one cluster. */
export interface ClusterPlan {
  slot: number;
  /** Prefix length 24 network of the bridge, e.g. `198.18.0.0/24`. */
  nodeNetwork: string;
  /** Host side of the bridge; the API server listens here. */
  bridgeIP: string;
  serviceCIDR: string;
  /** First Service ClusterIP (the `kubernetes` Service). */
  kubernetesServiceIP: string;
  gatewayPool: string;
  nodes: NodePlan[];
}

function octet3(slot: number, offset: number): string {
  return slot < 4 ? `198.18.${32 * slot + offset}` : `198.19.${32 * (slot - 4) + offset}`;
}

/**
 * The address plan of the cluster in `slot` with `nodes` nodes.
 *
 * @example
 * ```ts
 * const plan = addressPlan(0, 2);
 * plan.nodes[1]?.podCIDR; // "198.18.2.0/24"
 * ```
 */
export function addressPlan(slot: number, nodes: number): ClusterPlan {
  if (!Number.isInteger(slot) || slot < 0 || slot >= MAX_SLOTS) {
    throw new RangeError(`cluster slot ${slot} is outside 0..${MAX_SLOTS - 1}`);
  }
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_NODES) {
    throw new RangeError(`a cluster has 1..${MAX_NODES} nodes, not ${nodes}`);
  }
  const nodePlans: NodePlan[] = [];
  for (let i = 1; i <= nodes; i++) {
    const pods = octet3(slot, i);
    nodePlans.push({
      index: i,
      name: `node-${i}`,
      ip: `${octet3(slot, 0)}.${10 + i}`,
      podCIDR: `${pods}.0/24`,
      podGateway: `${pods}.1`,
    });
  }
  return {
    slot,
    nodeNetwork: `${octet3(slot, 0)}.0/24`,
    bridgeIP: `${octet3(slot, 0)}.1`,
    serviceCIDR: `${octet3(slot, 16)}.0/24`,
    kubernetesServiceIP: `${octet3(slot, 16)}.1`,
    gatewayPool: `${octet3(slot, 24)}.0/24`,
    nodes: nodePlans,
  };
}

/** Host number `host` (2..254) of a node's pod CIDR: the address of a pod. */
export function podAddress(node: NodePlan, host: number): string {
  if (!Number.isInteger(host) || host < 2 || host > 254) {
    throw new RangeError(`pod host number ${host} is outside 2..254`);
  }
  return node.podCIDR.replace(/\.0\/24$/, `.${host}`);
}
