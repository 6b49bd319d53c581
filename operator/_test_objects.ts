// Builders of the objects the operator's tests put in a snapshot: each returns
// what the API server would return, with only the fields a test cares about.
import type { Condition, DataplaneNode } from "../api/mod.ts";
import { findCondition } from "./conditions.ts";
import type { ReconcileResult } from "./gateway.ts";
import type { Listener } from "./listeners.ts";
import type {
  BackendRef,
  Gateway,
  GatewayClass,
  L4Route,
  ParentReference,
  SnapshotObject,
} from "./snapshot.ts";

export const NOW = "2026-02-01T00:00:00Z";
export const BUNDLE = { "gateways.gateway.networking.k8s.io": "v1.6.1" };

export function gatewayClass(
  name = "blixt",
  extra: Partial<GatewayClass["spec"]> = {},
): GatewayClass {
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "GatewayClass",
    metadata: { name, generation: 1 },
    spec: { controllerName: "blixt.dev/gateway-controller", ...extra },
  };
}

export function classConfig(cidrs: string[], localBackendsOnly = false) {
  return {
    apiVersion: "blixt.dev/v1alpha1" as const,
    kind: "GatewayClassConfig" as const,
    metadata: { name: "blixt-config" },
    spec: {
      addressPools: cidrs.map((cidr, i) => ({ name: `pool${i}`, cidr })),
      localBackendsOnly,
    },
  };
}

/** The class and its config with a /29 pool (198.18.0.1-6 usable). */
export function blixtClass(cidrs = ["198.18.0.0/29"]): SnapshotObject[] {
  return [
    gatewayClass("blixt", {
      parametersRef: {
        group: "blixt.dev",
        kind: "GatewayClassConfig",
        name: "blixt-config",
      },
    }),
    classConfig(cidrs),
  ];
}

export function listener(
  name: string,
  port: number,
  protocol = "TCP",
  allowedRoutes?: Listener["allowedRoutes"],
): Listener {
  return {
    name,
    port,
    protocol,
    ...(allowedRoutes === undefined ? {} : { allowedRoutes }),
  };
}

export function gateway(
  name: string,
  listeners: Listener[],
  extra: {
    namespace?: string;
    addresses?: { type?: string; value?: string }[];
    created?: string;
    generation?: number;
    status?: Gateway["status"];
  } = {},
): Gateway {
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "Gateway",
    metadata: {
      name,
      namespace: extra.namespace ?? "default",
      generation: extra.generation ?? 1,
      uid: `uid-${name}`,
      creationTimestamp: extra.created ?? "2026-01-01T00:00:00Z",
    },
    spec: {
      gatewayClassName: "blixt",
      listeners,
      ...(extra.addresses === undefined ? {} : { addresses: extra.addresses }),
    },
    ...(extra.status === undefined ? {} : { status: extra.status }),
  };
}

export function route(
  kind: "TCPRoute" | "UDPRoute",
  name: string,
  parentRefs: ParentReference[],
  backendRefs: BackendRef[],
  extra: { namespace?: string; created?: string; rules?: number } = {},
): L4Route {
  const rule = { backendRefs };
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind,
    metadata: {
      name,
      namespace: extra.namespace ?? "default",
      generation: 1,
      creationTimestamp: extra.created ?? "2026-01-01T00:00:00Z",
    },
    spec: {
      parentRefs,
      rules: Array.from({ length: extra.rules ?? 1 }, () => rule),
    },
  };
}

export function service(
  name: string,
  ports: {
    port: number;
    name?: string;
    protocol?: string;
    targetPort?: number | string;
  }[],
  namespace = "default",
): SnapshotObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace },
    spec: {
      ports: ports.map((p) => ({
        port: p.port,
        protocol: p.protocol ?? "TCP",
        ...(p.name === undefined ? {} : { name: p.name }),
      })),
    },
  };
}

export interface EndpointSpec {
  ip: string;
  node?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export function endpointSlice(
  serviceName: string,
  ports: { port: number; name?: string; protocol?: string }[],
  endpoints: EndpointSpec[],
  extra: { namespace?: string; name?: string; addressType?: string } = {},
): SnapshotObject {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: extra.name ?? `${serviceName}-abc`,
      namespace: extra.namespace ?? "default",
      labels: { "kubernetes.io/service-name": serviceName },
    },
    addressType: extra.addressType ?? "IPv4",
    ports: ports.map((p) => ({
      port: p.port,
      protocol: p.protocol ?? "TCP",
      ...(p.name === undefined ? {} : { name: p.name }),
    })),
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: {
        ready: e.ready ?? true,
        serving: e.serving ?? e.ready ?? true,
        terminating: e.terminating ?? false,
      },
      ...(e.node === undefined ? {} : { nodeName: e.node }),
    })),
  };
}

export function namespace(
  name: string,
  labels: Record<string, string> = {},
): SnapshotObject {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name, labels } };
}

export function node(name: string, ready = true): SnapshotObject {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name },
    status: {
      conditions: [{ type: "Ready", status: ready ? "True" : "False" }],
    },
  };
}

export function dataplaneNode(
  name: string,
  tables: {
    namespace: string;
    name: string;
    programmedGeneration?: number;
    errors?: string[];
  }[],
): DataplaneNode {
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "DataplaneNode",
    metadata: { name },
    spec: { nodeName: name },
    status: {
      tables: tables.map((t) => ({
        namespace: t.namespace,
        name: t.name,
        observedGeneration: t.programmedGeneration ?? 1,
        entries: 1,
        backends: 1,
        ...(t.programmedGeneration === undefined
          ? {}
          : { programmedGeneration: t.programmedGeneration }),
        ...(t.errors === undefined ? {} : { errors: t.errors }),
      })),
    },
  };
}

/**
 * The liveness Lease of `node`'s agent as the agent writes it: renewed
 * `renewedSecondsAgo` before {@linkcode NOW} (default 1), for 40 s;
 * `released` is what a graceful shutdown leaves.
 */
export function agentLease(
  node: string,
  options: { renewedSecondsAgo?: number; released?: boolean } = {},
): SnapshotObject {
  const renewTime = new Date(Date.parse(NOW) - (options.renewedSecondsAgo ?? 1) * 1000)
    .toISOString().replace("Z", "000Z");
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: {
      name: `blixt-agent-${node}`,
      namespace: "blixt-system",
      labels: { "app.kubernetes.io/part-of": "blixt", "app.kubernetes.io/component": "agent" },
    },
    spec: {
      holderIdentity: options.released ? "" : `agent-${node}`,
      leaseDurationSeconds: 40,
      renewTime,
    },
  };
}

export function referenceGrant(
  namespace: string,
  fromKind: string,
  fromNamespace: string,
  toName?: string,
): SnapshotObject {
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "ReferenceGrant",
    metadata: { name: `allow-${fromNamespace}`, namespace },
    spec: {
      from: [{
        group: "gateway.networking.k8s.io",
        kind: fromKind,
        namespace: fromNamespace,
      }],
      to: [{
        group: "",
        kind: "Service",
        ...(toName === undefined ? {} : { name: toName }),
      }],
    },
  };
}

/** `type=status/reason` of a condition, as `kubectl get -o jsonpath` would show it. */
export function shown(
  conditions: readonly Partial<Condition>[] | undefined,
  type: string,
): string {
  const c = findCondition(conditions, type);
  return c === undefined ? `${type}=absent` : `${type}=${c.status}/${c.reason}`;
}

/** The Gateway condition, as shown. */
export function gatewayShows(result: ReconcileResult, type: string): string {
  return shown(result.status?.conditions, type);
}

/** A listener condition, as shown. */
export function listenerShows(
  result: ReconcileResult,
  listenerName: string,
  type: string,
): string {
  const l = result.status?.listeners.find((x) => x.name === listenerName);
  return shown(l?.conditions, type);
}

/** A route's condition for its n-th blixt parent entry, as shown. */
export function routeShows(
  result: ReconcileResult,
  routeName: string,
  type: string,
  index = 0,
): string {
  const r = result.routeStatuses.find((u) => u.name === routeName);
  const ours = r?.parents.filter((p) => p.controllerName === "blixt.dev/gateway-controller");
  return shown(ours?.[index]?.conditions, type);
}

/** mulberry32: small, seeded, good enough to pick test inputs. */
export function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
