/**
 * Which listeners a route's parentRef attaches it to, and the route's
 * Accepted condition for that parent.
 *
 * @module
 */
import type { V1LabelSelector, V1Namespace } from "@kubernetes/client-node";
import type { ConditionSpec } from "./conditions.ts";
import type { ListenerVerdict } from "./listeners.ts";
import {
  type Gateway,
  GATEWAY_GROUP,
  type HTTPRouteSummary,
  type L4Route,
  type ParentReference,
  type Snapshot,
} from "./snapshot.ts";

/** Whether a parentRef of a route points at the Gateway. */
export function refersToGateway(
  ref: ParentReference,
  context: {
    route: { metadata: { namespace: string } };
    gateway: { metadata?: { namespace?: string; name?: string } };
  },
): boolean {
  const { route, gateway } = context;
  return (ref.group ?? GATEWAY_GROUP) === GATEWAY_GROUP &&
    (ref.kind ?? "Gateway") === "Gateway" &&
    ref.name === gateway.metadata?.name &&
    (ref.namespace ?? route.metadata.namespace) === gateway.metadata?.namespace;
}

/** The outcome of one parentRef. */
export interface Attachment {
  /** Names of the listeners the route attached to. */
  listeners: string[];
  /** The route's Accepted condition for this parent. */
  accepted: ConditionSpec;
}

/**
 * Attaches a route through one parentRef: the listeners selected by
 * sectionName and port (all when neither is set) that allow the route's kind
 * and namespace. Listener status does not matter, as the spec says.
 */
export function attachRoute(
  route: L4Route,
  ref: ParentReference,
  context: {
    gateway: Gateway;
    verdicts: readonly ListenerVerdict[];
    snapshot: Snapshot;
  },
): Attachment {
  const rules = route.spec.rules ?? [];
  if (rules.length !== 1) {
    return {
      listeners: [],
      accepted: {
        type: "Accepted",
        status: "False",
        reason: "UnsupportedValue",
        message:
          `a ${route.kind} needs exactly one rule (a layer-4 listener cannot tell rules apart), got ${rules.length}`,
      },
    };
  }
  const selected = context.verdicts.filter((v) =>
    (ref.sectionName === undefined || ref.sectionName === v.listener.name) &&
    (ref.port === undefined || ref.port === v.listener.port)
  );
  if (selected.length === 0) {
    const wanted = [
      ref.sectionName === undefined ? "" : `sectionName ${ref.sectionName}`,
      ref.port === undefined ? "" : `port ${ref.port}`,
    ].filter((s) => s !== "").join(" and ");
    return {
      listeners: [],
      accepted: {
        type: "Accepted",
        status: "False",
        reason: "NoMatchingParent",
        message: `Gateway ${context.gateway.metadata?.name} has no listener with ${
          wanted || "any name"
        }`,
      },
    };
  }
  const reasons: string[] = [];
  const listeners: string[] = [];
  for (const v of selected) {
    const name = v.listener.name;
    if (!v.supportedKinds.some((k) => k.kind === route.kind)) {
      reasons.push(`listener ${name} does not allow ${route.kind}`);
    } else if (!namespaceAllowed(v, route.metadata.namespace, context)) {
      reasons.push(
        `listener ${name} does not allow routes from namespace ${route.metadata.namespace}`,
      );
    } else listeners.push(name);
  }
  if (listeners.length === 0) {
    return {
      listeners,
      accepted: {
        type: "Accepted",
        status: "False",
        reason: "NotAllowedByListeners",
        message: reasons.join("; "),
      },
    };
  }
  return {
    listeners,
    accepted: {
      type: "Accepted",
      status: "True",
      reason: "Accepted",
      message: `attached to listener${listeners.length > 1 ? "s" : ""} ${listeners.join(", ")}`,
    },
  };
}

/**
 * The listeners an HTTPRoute attaches to through one parentRef, for their
 * `attachedRoutes` only (blixt writes no HTTPRoute status and routes none):
 * selected by sectionName and port, allowing HTTPRoute and the route's
 * namespace, with a hostname in common.
 */
export function httpRouteListeners(
  route: HTTPRouteSummary,
  ref: ParentReference,
  context: { gateway: Gateway; verdicts: readonly ListenerVerdict[]; snapshot: Snapshot },
): string[] {
  return context.verdicts.filter((v) =>
    (ref.sectionName === undefined || ref.sectionName === v.listener.name) &&
    (ref.port === undefined || ref.port === v.listener.port) &&
    v.supportedKinds.some((k) => k.kind === "HTTPRoute") &&
    namespaceAllowed(v, route.metadata.namespace, context) &&
    hostnamesIntersect(v.listener.hostname, route.spec.hostnames ?? [])
  ).map((v) => v.listener.name);
}

/** Whether a listener hostname and a route's hostnames have a name in common (wildcards too). */
export function hostnamesIntersect(
  listener: string | undefined,
  route: readonly string[],
): boolean {
  if (listener === undefined || listener === "" || route.length === 0) return true;
  return route.some((h) => hostnameMatches(listener, h) || hostnameMatches(h, listener));
}

function hostnameMatches(pattern: string, host: string): boolean {
  if (pattern === host) return true;
  if (!pattern.startsWith("*.")) return false;
  const suffix = pattern.slice(1); // ".example.com"
  const bare = host.startsWith("*.") ? host.slice(1) : host;
  return bare.endsWith(suffix) && bare.length > suffix.length;
}

function namespaceAllowed(
  verdict: ListenerVerdict,
  namespace: string,
  context: { gateway: Gateway; snapshot: Snapshot },
): boolean {
  const from = verdict.listener.allowedRoutes?.namespaces?.from ?? "Same";
  switch (from) {
    case "All":
      return true;
    case "Same":
      return namespace === context.gateway.metadata?.namespace;
    case "Selector": {
      const selector = verdict.listener.allowedRoutes?.namespaces?.selector;
      const ns = context.snapshot.namespaces.get(namespace);
      // without a selector or the Namespace object, nothing can be matched
      return selector !== undefined && ns !== undefined &&
        selectorMatches(selector as V1LabelSelector, ns);
    }
    default: // "None" and values from a newer API
      return false;
  }
}

/** Whether a label selector selects the object (matchLabels and matchExpressions). */
export function selectorMatches(
  selector: V1LabelSelector,
  object: Pick<V1Namespace, "metadata">,
): boolean {
  const labels = object.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
  }
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    const values = e.values ?? [];
    switch (e.operator) {
      case "In":
        if (!has || !values.includes(value as string)) return false;
        break;
      case "NotIn":
        if (has && values.includes(value as string)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        return false; // an operator we do not know selects nothing
    }
  }
  return true;
}
