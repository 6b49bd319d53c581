/**
 * Listener validation: protocol support, port/protocol/hostname conflicts,
 * allowedRoutes kinds and HTTPS certificate references, as Gateway API v1.6
 * defines them.
 *
 * @module
 */
import type { IListener } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Listener";
import { certificateRefsProblem } from "./certificates.ts";
import type { ConditionSpec } from "./conditions.ts";
import { type Gateway, GATEWAY_GROUP, type RouteKind, type Snapshot } from "./snapshot.ts";

/** A Gateway listener. */
export type Listener = IListener;

/** Route kinds a listener may carry: blixt routes the layer-4 ones only. */
export type ListenerRouteKind = RouteKind | "HTTPRoute";

/** The route kind each supported listener protocol carries. */
export const ROUTE_KIND_OF_PROTOCOL: Readonly<Record<string, ListenerRouteKind>> = {
  TCP: "TCPRoute",
  UDP: "UDPRoute",
  HTTP: "HTTPRoute",
  HTTPS: "HTTPRoute",
};

/**
 * Protocols whose listeners get data plane entries. HTTP and HTTPS listeners
 * are Core Gateway API and get their full status (the conformance suite's
 * Gateway tests use them), but blixt serves no HTTPRoute: they route nothing.
 */
export const ROUTED_PROTOCOLS: ReadonlySet<string> = new Set(["TCP", "UDP"]);

/** The transport a protocol uses: listeners conflict only within one transport. */
const TRANSPORT: Readonly<Record<string, string>> = {
  TCP: "TCP",
  UDP: "UDP",
  HTTP: "TCP",
  HTTPS: "TCP",
};

/** What the operator decided about one listener. */
export interface ListenerVerdict {
  /** The listener as in the spec. */
  listener: Listener;
  /** Route kinds that may attach, for `status.listeners[].supportedKinds`. */
  supportedKinds: { group: string; kind: ListenerRouteKind }[];
  /** Accepted condition. */
  accepted: ConditionSpec;
  /** Conflicted condition. */
  conflicted: ConditionSpec;
  /** ResolvedRefs condition. */
  resolvedRefs: ConditionSpec;
  /** Accepted, not conflicted, refs resolved. */
  valid: boolean;
  /** Valid and of a protocol blixt routes (TCP, UDP): it gets data plane entries. */
  routed: boolean;
}

/** Why two listeners on one port conflict, or undefined when they can share it. */
function conflictReason(a: Listener, b: Listener): string | undefined {
  if (a.port !== b.port || TRANSPORT[a.protocol] !== TRANSPORT[b.protocol]) return undefined;
  if (a.protocol !== b.protocol) return "ProtocolConflict";
  if (ROUTED_PROTOCOLS.has(a.protocol)) return "ProtocolConflict"; // layer 4 has no hostname
  return (a.hostname ?? "") === (b.hostname ?? "") ? "HostnameConflict" : undefined;
}

/**
 * Judges every listener of a Gateway. Listeners that cannot share a port (one
 * transport, different protocols; TCP or UDP twice; HTTP or HTTPS twice with
 * one hostname) are indistinct: all of them are Conflicted and none is
 * accepted (the spec forbids picking a winner). TCP and UDP on one port are
 * distinct. HTTPS certificateRefs are resolved against the snapshot's
 * Secrets and ReferenceGrants; without a snapshot they are not checked.
 */
export function judgeListeners(gateway: Gateway, snapshot?: Snapshot): ListenerVerdict[] {
  const listeners = gateway.spec.listeners ?? [];
  const supported = listeners.filter((l) => ROUTE_KIND_OF_PROTOCOL[l.protocol] !== undefined);
  return listeners.map((listener) => {
    const kind = ROUTE_KIND_OF_PROTOCOL[listener.protocol];
    const { supportedKinds, invalidKinds } = routeKinds(listener, kind);
    let resolvedRefs: ConditionSpec = {
      type: "ResolvedRefs",
      status: "True",
      reason: "ResolvedRefs",
      message: "all references resolved",
    };
    const certificates = listener.protocol === "HTTPS" && snapshot !== undefined
      ? certificateRefsProblem(listener, { gateway, snapshot })
      : undefined;
    if (certificates !== undefined) resolvedRefs = certificates;
    else if (invalidKinds.length > 0) {
      resolvedRefs = {
        type: "ResolvedRefs",
        status: "False",
        reason: "InvalidRouteKinds",
        message: `route kinds not supported on a ${listener.protocol} listener: ${
          invalidKinds.join(", ")
        }`,
      };
    }
    const clashes = kind === undefined
      ? []
      : supported.filter((l) =>
        l !== listener && l.name !== listener.name && conflictReason(listener, l) !== undefined
      );
    const peers = clashes.map((l) => l.name);
    const conflictKind = clashes.length > 0 ? conflictReason(listener, clashes[0]!) : undefined;
    const conflicted: ConditionSpec = conflictKind !== undefined
      ? {
        type: "Conflicted",
        status: "True",
        reason: conflictKind,
        message: conflictKind === "HostnameConflict"
          ? `listeners ${
            [listener.name, ...peers].join(", ")
          } all use port ${listener.port}/${listener.protocol} with hostname ${
            listener.hostname ?? "(none)"
          }; none of them is accepted`
          : `listeners ${[listener.name, ...peers].join(", ")} all use port ${listener.port}/${
            TRANSPORT[listener.protocol]
          }; none of them is accepted`,
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
          `protocol ${listener.protocol} is not supported: blixt serves TCP and UDP listeners (and accepts HTTP and HTTPS listeners without routing them)`,
      };
    } else if (peers.length > 0) {
      accepted = {
        type: "Accepted",
        status: "False",
        reason: "PortUnavailable",
        message: `port ${listener.port}/${TRANSPORT[listener.protocol]} is also used by ${
          peers.join(", ")
        }`,
      };
    } else {
      accepted = {
        type: "Accepted",
        status: "True",
        reason: "Accepted",
        message: ROUTED_PROTOCOLS.has(listener.protocol)
          ? "listener accepted"
          : `listener accepted; blixt routes no ${kind}, so it carries no traffic`,
      };
    }
    const valid = accepted.status === "True" && conflicted.status === "False" &&
      resolvedRefs.status === "True";
    return {
      listener,
      supportedKinds,
      accepted,
      conflicted,
      resolvedRefs,
      valid,
      routed: valid && ROUTED_PROTOCOLS.has(listener.protocol),
    };
  });
}

function routeKinds(listener: Listener, kind: ListenerRouteKind | undefined) {
  const requested = listener.allowedRoutes?.kinds ?? [];
  if (requested.length === 0) {
    return {
      supportedKinds: kind === undefined ? [] : [{ group: GATEWAY_GROUP, kind }],
      invalidKinds: [],
    };
  }
  const supportedKinds: { group: string; kind: ListenerRouteKind }[] = [];
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
