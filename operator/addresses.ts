/**
 * Gateway addresses: static `spec.addresses` of type IPAddress, otherwise
 * allocation from the class's pools. Level-based and without a store of its
 * own: the Gateways' specs and statuses are the allocation record, and when
 * two Gateways claim one address the older keeps it.
 *
 * @module
 */
import {
  canonicalIp,
  formatIp,
  type GatewayClassConfigSpec,
  parseCidr,
  parseIp,
} from "../api/mod.ts";
import type { ConditionSpec } from "./conditions.ts";
import { isOurClass } from "./gateway_class.ts";
import { type Gateway, objectKey, type Snapshot } from "./snapshot.ts";

/** The addresses of a Gateway and the problems met getting them. */
export interface AddressAssignment {
  /** Canonical addresses for `status.addresses` and the RoutingTable. */
  addresses: string[];
  /** Set when the Gateway cannot be accepted (UnsupportedAddress). */
  notAccepted?: ConditionSpec;
  /** Set when the Gateway cannot be programmed (AddressNotUsable, AddressNotAssigned). */
  notProgrammed?: ConditionSpec;
}

/** Whether `a` was created before `b` (then by namespace/name): the older keeps a contested address. */
export function isOlder(a: Gateway, b: Gateway): boolean {
  const ta = a.metadata?.creationTimestamp ?? "";
  const tb = b.metadata?.creationTimestamp ?? "";
  if (ta !== tb) return ta < tb;
  return gatewayKey(a) < gatewayKey(b);
}

function gatewayKey(g: Gateway): string {
  return objectKey(g.metadata?.namespace ?? "", g.metadata?.name ?? "");
}

function staticValues(g: Gateway): string[] {
  return (g.spec.addresses ?? [])
    .filter((a) => (a.type ?? "IPAddress") === "IPAddress" && a.value)
    .map((a) => canonicalIp(a.value ?? "") ?? "")
    .filter((v) => v !== "");
}

function claimedValues(g: Gateway, snapshot: Snapshot): string[] {
  const fromStatus = (g.status?.addresses ?? [])
    .filter((a) => (a.type ?? "IPAddress") === "IPAddress")
    .map((a) => canonicalIp(a.value) ?? "")
    .filter((v) => v !== "");
  const decided = snapshot.addressDecisions.get(gatewayKey(g)) ?? [];
  return [...new Set([...staticValues(g), ...fromStatus, ...decided])];
}

/**
 * Works out a Gateway's addresses. Unsupported types (Hostname, NamedAddress,
 * domain-prefixed) make the Gateway not Accepted; a static address held by an
 * older Gateway is not usable; entries without a value, or no entries at all,
 * get addresses from the pools in order, the lowest free first, keeping the
 * ones the Gateway already has.
 */
export function assignAddresses(
  gateway: Gateway,
  snapshot: Snapshot,
  options: { config: GatewayClassConfigSpec },
): AddressAssignment {
  const requested = gateway.spec.addresses ?? [];
  const unsupported = requested.filter((a) => (a.type ?? "IPAddress") !== "IPAddress");
  if (unsupported.length > 0) {
    return {
      addresses: [],
      notAccepted: {
        type: "Accepted",
        status: "False",
        reason: "UnsupportedAddress",
        message: `address type${unsupported.length > 1 ? "s" : ""} ${
          [...new Set(unsupported.map((a) => a.type))].join(", ")
        } not supported: blixt assigns IPAddress addresses only`,
      },
    };
  }
  // who else holds what, and whether they outrank this Gateway
  const holders = new Map<string, Gateway>();
  const self = gatewayKey(gateway);
  for (const other of snapshot.gateways.values()) {
    if (gatewayKey(other) === self) continue;
    if (!isOurClass(snapshot.gatewayClasses.get(other.spec.gatewayClassName))) {
      continue;
    }
    for (const ip of claimedValues(other, snapshot)) {
      const prev = holders.get(ip);
      if (prev === undefined || isOlder(other, prev)) holders.set(ip, other);
    }
  }
  const addresses: string[] = [];
  const unusable: string[] = [];
  for (const a of requested) {
    if (!a.value) continue;
    const ip = canonicalIp(a.value);
    const holder = ip === null ? undefined : holders.get(ip);
    const taken = ip === null ? undefined : clusterUse(ip, snapshot);
    if (ip === null) unusable.push(`${a.value} is not an IP address`);
    else if (taken !== undefined) unusable.push(`${ip} ${taken}`);
    else if (holder !== undefined && isOlder(holder, gateway)) {
      unusable.push(`${ip} is in use by Gateway ${gatewayKey(holder)}`);
    } else if (!addresses.includes(ip)) addresses.push(ip);
  }
  const wanted = requested.length === 0 ? 1 : requested.filter((a) => !a.value).length;
  let notAssigned: string | undefined;
  if (wanted > 0) {
    const picked = allocate(gateway, wanted, {
      pools: options.config.addressPools ?? [],
      holders,
      taken: new Set(addresses),
    });
    addresses.push(...picked.addresses);
    notAssigned = picked.problem;
  }
  const result: AddressAssignment = { addresses };
  if (unusable.length > 0) {
    result.notProgrammed = {
      type: "Programmed",
      status: "False",
      reason: "AddressNotUsable",
      message: `${unusable.join("; ")}; remove or change the address`,
    };
  } else if (notAssigned !== undefined) {
    result.notProgrammed = {
      type: "Programmed",
      status: "False",
      reason: "AddressNotAssigned",
      message: notAssigned,
    };
  }
  return result;
}

/**
 * Whether the cluster itself uses an address (a Service CIDR, a node's pod
 * CIDR, a node's own address): a VIP there would take traffic that belongs to
 * kube-proxy, pods or nodes. Says how, or undefined when the address is free.
 */
function clusterUse(ip: string, snapshot: Snapshot): string | undefined {
  const inside = (cidr: string) => {
    const prefix = parseCidr(cidr);
    const value = parseIp(ip);
    return prefix !== null && value !== null && prefix.family === value.family &&
      value.value >= prefix.first && value.value <= prefix.last;
  };
  for (const [name, cidrs] of snapshot.serviceCIDRs) {
    const hit = cidrs.find(inside);
    if (hit) return `is in the cluster's Service CIDR ${hit} (ServiceCIDR ${name})`;
  }
  for (const node of snapshot.nodes.values()) {
    const name = node.metadata?.name ?? "";
    const podCidrs = node.spec?.podCIDRs ?? (node.spec?.podCIDR ? [node.spec.podCIDR] : []);
    const hit = podCidrs.find(inside);
    if (hit) return `is in the pod CIDR ${hit} of node ${name}`;
    if ((node.status?.addresses ?? []).some((a) => canonicalIp(a.address) === ip)) {
      return `is an address of node ${name}`;
    }
  }
  return undefined;
}

function allocate(
  gateway: Gateway,
  wanted: number,
  context: {
    pools: readonly { name: string; cidr: string }[];
    holders: Map<string, Gateway>;
    taken: Set<string>;
  },
): { addresses: string[]; problem?: string } {
  const prefixes = context.pools.map((p) => ({
    pool: p,
    prefix: parseCidr(p.cidr),
  }));
  const inPool = (ip: string) => {
    const parsed = canonicalIp(ip);
    return parsed !== null && prefixes.some(({ prefix }) => {
      const v = prefix && usableRange(prefix);
      if (!v || !prefix) return false;
      const value = parseIpValue(parsed, prefix.family);
      return value !== null && value >= v.first && value <= v.last;
    });
  };
  const out: string[] = [];
  // keep what this Gateway already has, unless an older Gateway holds it
  for (const a of gateway.status?.addresses ?? []) {
    if (out.length >= wanted) break;
    const ip = canonicalIp(a.value);
    if (ip === null || context.taken.has(ip) || !inPool(ip)) continue;
    const holder = context.holders.get(ip);
    if (holder !== undefined && isOlder(holder, gateway)) continue;
    out.push(ip);
    context.taken.add(ip);
  }
  for (const { prefix } of prefixes) {
    if (out.length >= wanted || prefix === null) continue;
    const range = usableRange(prefix);
    // bounded walk: at most one step per held address plus the ones we need
    const limit = BigInt(
      context.holders.size + context.taken.size + wanted + 1,
    );
    for (
      let v = range.first, steps = 0n;
      v <= range.last && out.length < wanted && steps < limit;
      v++, steps++
    ) {
      const ip = formatIp({ family: prefix.family, value: v });
      if (context.taken.has(ip) || context.holders.has(ip)) continue;
      out.push(ip);
      context.taken.add(ip);
    }
  }
  if (out.length >= wanted) return { addresses: out };
  const problem = context.pools.length === 0
    ? "no address to assign: the GatewayClass has no address pools; set spec.addresses or add pools to its GatewayClassConfig"
    : `address pools ${
      context.pools.map((p) => `${p.name} (${p.cidr})`).join(", ")
    } are exhausted: ${out.length} of ${wanted} addresses assigned`;
  return { addresses: out, problem };
}

function usableRange(
  prefix: { family: 4 | 6; first: bigint; last: bigint; bits: number },
) {
  // network and broadcast addresses of small IPv4 prefixes make poor VIPs
  if (prefix.family === 4 && prefix.bits <= 30) {
    return { first: prefix.first + 1n, last: prefix.last - 1n };
  }
  return { first: prefix.first, last: prefix.last };
}

function parseIpValue(ip: string, family: 4 | 6): bigint | null {
  const prefix = parseCidr(`${ip}/${family === 4 ? 32 : 128}`);
  return prefix === null || prefix.family !== family ? null : prefix.first;
}
