/**
 * Listener validation: protocol support, port/protocol conflicts and
 * allowedRoutes kinds, as Gateway API v1.6 defines them for layer 4.
 *
 * @module
 */
import type { IListener } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Listener";
import type { ConditionSpec } from "./conditions.ts";
import { type Gateway, GATEWAY_GROUP, type RouteKind } from "./snapshot.ts";

/** A Gateway listener. */
export type Listener = IListener;

/** The route kind each supported listener protocol carries. */
export const ROUTE_KIND_OF_PROTOCOL: Readonly<Record<string, RouteKind>> = {
  TCP: "TCPRoute",
  UDP: "UDPRoute",
};

/** What the operator decided about one listener. */
export interface ListenerVerdict {
  /** The listener as in the spec. */
  listener: Listener;
  /** Route kinds that may attach, for `status.listeners[].supportedKinds`. */
  supportedKinds: { group: string; kind: RouteKind }[];
  /** Accepted condition. */
  accepted: ConditionSpec;
  /** Conflicted condition. */
  conflicted: ConditionSpec;
  /** ResolvedRefs condition. */
  resolvedRefs: ConditionSpec;
  /** Accepted, not conflicted, refs resolved: it gets data plane entries. */
  valid: boolean;
}

/**
 * Judges every listener of a Gateway. Listeners that share a port and a
 * protocol are indistinct: all of them are Conflicted and none is accepted
 * (the spec forbids picking a winner). TCP and UDP on one port are distinct.
 */
export function judgeListeners(gateway: Gateway): ListenerVerdict[] {
  const listeners = gateway.spec.listeners ?? [];
  const samePortProtocol = new Map<string, string[]>();
  for (const l of listeners) {
    if (ROUTE_KIND_OF_PROTOCOL[l.protocol] === undefined) continue;
    const key = `${l.port}/${l.protocol}`;
    samePortProtocol.set(key, [...samePortProtocol.get(key) ?? [], l.name]);
  }
  return listeners.map((listener) => {
    const kind = ROUTE_KIND_OF_PROTOCOL[listener.protocol];
    const { supportedKinds, invalidKinds } = routeKinds(listener, kind);
    const resolvedRefs: ConditionSpec = invalidKinds.length === 0
      ? {
        type: "ResolvedRefs",
        status: "True",
        reason: "ResolvedRefs",
        message: "all references resolved",
      }
      : {
        type: "ResolvedRefs",
        status: "False",
        reason: "InvalidRouteKinds",
        message: `route kinds not supported on a ${listener.protocol} listener: ${
          invalidKinds.join(", ")
        }`,
      };
    const peers = (samePortProtocol.get(`${listener.port}/${listener.protocol}`) ??
      []).filter((n) => n !== listener.name);
    const conflicted: ConditionSpec = peers.length > 0
      ? {
        type: "Conflicted",
        status: "True",
        reason: "ProtocolConflict",
        message: `listeners ${
          [listener.name, ...peers].join(", ")
        } all use port ${listener.port}/${listener.protocol}; none of them is accepted`,
      }
      : {
        type: "Conflicted",
        status: "False",
        reason: "NoConflicts",
        message: "no conflicts",
      };
    let accepted: ConditionSpec;
    if (kind === undefined) {
      accepted = {
        type: "Accepted",
        status: "False",
        reason: "UnsupportedProtocol",
        message:
          `protocol ${listener.protocol} is not supported: blixt serves TCP and UDP listeners`,
      };
    } else if (peers.length > 0) {
      accepted = {
        type: "Accepted",
        status: "False",
        reason: "PortUnavailable",
        message: `port ${listener.port}/${listener.protocol} is also used by ${peers.join(", ")}`,
      };
    } else {
      accepted = {
        type: "Accepted",
        status: "True",
        reason: "Accepted",
        message: "listener accepted",
      };
    }
    return {
      listener,
      supportedKinds,
      accepted,
      conflicted,
      resolvedRefs,
      valid: accepted.status === "True" && conflicted.status === "False" &&
        resolvedRefs.status === "True",
    };
  });
}

function routeKinds(listener: Listener, kind: RouteKind | undefined) {
  const requested = listener.allowedRoutes?.kinds ?? [];
  if (requested.length === 0) {
    return {
      supportedKinds: kind === undefined ? [] : [{ group: GATEWAY_GROUP, kind }],
      invalidKinds: [],
    };
  }
  const supportedKinds: { group: string; kind: RouteKind }[] = [];
  const invalidKinds: string[] = [];
  for (const rk of requested) {
    const group = rk.group ?? GATEWAY_GROUP;
    if (group === GATEWAY_GROUP && rk.kind === kind) {
      if (!supportedKinds.some((k) => k.kind === kind)) {
        supportedKinds.push({ group, kind });
      }
    } else {
      invalidKinds.push(
        group === GATEWAY_GROUP ? rk.kind : `${group}/${rk.kind}`,
      );
    }
  }
  return { supportedKinds, invalidKinds };
}
