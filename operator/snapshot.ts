/**
 * The in-memory view of the cluster that reconcile reads: every object of the
 * kinds the operator watches, keyed for lookup. Informers keep one up to date;
 * tests build one from a list of objects with {@linkcode createSnapshot}.
 *
 * @module
 */
import type { IGateway } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway";
import type { IGatewayClass } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GatewayClass";
import type { IReferenceGrant } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/ReferenceGrant";
import type { IParentReference } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/ParentReference";
import type { IBackendRef } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/BackendRef";
import type { V1EndpointSlice, V1Namespace, V1Node, V1Service } from "@kubernetes/client-node";
import {
  type AgentLeaseObject,
  type AgentLeaseRecord,
  agentLeaseRecord,
  type Condition,
  type DataplaneNode,
  type GatewayClassConfig,
  nodeOfAgentLease,
  type RoutingTable,
  type RoutingTableSpec,
} from "../api/mod.ts";
import { type SecretObject, type SecretSummary, summarizeSecret } from "./certificates.ts";

/** Gateway API group. */
export const GATEWAY_GROUP = "gateway.networking.k8s.io";

/** A Gateway (gateway.networking.k8s.io/v1). */
export type Gateway = IGateway;
/** A GatewayClass (gateway.networking.k8s.io/v1). */
export type GatewayClass = IGatewayClass;
/** A ReferenceGrant (v1; v1beta1 has the same shape). */
export type ReferenceGrant = IReferenceGrant;
/** A route's reference to its parent. */
export type ParentReference = IParentReference;
/** A route rule's reference to a backend. */
export type BackendRef = IBackendRef;

/** Layer-4 route kinds. */
export type RouteKind = "TCPRoute" | "UDPRoute";

/** A route's status entry for one parent, written by one controller. */
export interface RouteParentStatus {
  /** The parentRef of the spec this entry describes. */
  parentRef: ParentReference;
  /** Controller that wrote the entry. */
  controllerName: string;
  /** Accepted, ResolvedRefs. */
  conditions: Condition[];
}

/**
 * A TCPRoute or UDPRoute, v1 or v1alpha2: the two versions have the same
 * shape (v1 allows one rule, v1alpha2 up to 16).
 */
export interface L4Route {
  /** `gateway.networking.k8s.io/v1` or `gateway.networking.k8s.io/v1alpha2`. */
  apiVersion: string;
  /** TCPRoute or UDPRoute. */
  kind: RouteKind;
  /** Object metadata; creationTimestamp decides which route carries traffic. */
  metadata: {
    name: string;
    namespace: string;
    generation?: number;
    creationTimestamp?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
  };
  /** Parents and rules. */
  spec: {
    parentRefs?: ParentReference[];
    rules?: { name?: string; backendRefs?: BackendRef[] }[];
  };
  /** Parents' entries, written by every controller of a parent. */
  status?: { parents?: RouteParentStatus[] };
}

/**
 * What the operator keeps of an HTTPRoute: blixt carries no HTTP traffic, but
 * an HTTP/HTTPS listener's `attachedRoutes` counts the HTTPRoutes that attach
 * to it (parentRefs, allowedRoutes, hostnames).
 */
export interface HTTPRouteSummary {
  /** `gateway.networking.k8s.io/v1`. */
  apiVersion: string;
  /** Always HTTPRoute. */
  kind: "HTTPRoute";
  /** Name and namespace. */
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
  };
  /** Parents and hostnames, the fields attachment reads. */
  spec: { parentRefs?: ParentReference[]; hostnames?: string[] };
}

/** Reduces an HTTPRoute to what attachment reads. */
export function summarizeHTTPRoute(
  route: HTTPRouteSummary & { spec?: Record<string, unknown> },
): HTTPRouteSummary {
  const { name, namespace, resourceVersion, uid } = route.metadata;
  return {
    apiVersion: route.apiVersion,
    kind: "HTTPRoute",
    metadata: {
      name,
      namespace,
      ...(resourceVersion === undefined ? {} : { resourceVersion }),
      ...(uid === undefined ? {} : { uid }),
    },
    spec: {
      ...(route.spec?.parentRefs === undefined ? {} : { parentRefs: route.spec.parentRefs }),
      ...(route.spec?.hostnames === undefined ? {} : { hostnames: route.spec.hostnames }),
    },
  };
}

/** A ServiceCIDR (networking.k8s.io/v1): the ranges ClusterIPs come from. */
export interface ServiceCIDR {
  /** `networking.k8s.io/v1`. */
  apiVersion: string;
  /** Always ServiceCIDR. */
  kind: "ServiceCIDR";
  /** Its name. */
  metadata: { name?: string; namespace?: string; labels?: Record<string, string> };
  /** The ranges. */
  spec?: { cidrs?: string[] };
}

/** Everything reconcile reads, keyed `namespace/name` (or `name` when cluster-scoped). */
export interface Snapshot {
  /** By name. */
  gatewayClasses: Map<string, GatewayClass>;
  /** By name. */
  gatewayClassConfigs: Map<string, GatewayClassConfig>;
  /** By `namespace/name`. */
  gateways: Map<string, Gateway>;
  /** By `Kind/namespace/name`, see {@linkcode routeKey}. */
  routes: Map<string, L4Route>;
  /** Which routes name each Gateway and each Service (kept by putObject and removeObject). */
  routeIndex: RouteIndex;
  /** By `namespace/name`. */
  services: Map<string, V1Service>;
  /** By `namespace/name` of the Service they belong to, then slice name. */
  endpointSlices: Map<string, Map<string, V1EndpointSlice>>;
  /** By `namespace/name`. */
  referenceGrants: Map<string, ReferenceGrant>;
  /** By `namespace/name`: Secrets reduced to whether they hold a TLS pair. */
  secrets: Map<string, SecretSummary>;
  /** By `namespace/name`: HTTPRoutes, counted in HTTP/HTTPS listeners' attachedRoutes. */
  httpRoutes: Map<string, HTTPRouteSummary>;
  /** By name: the CIDRs of each ServiceCIDR (static Gateway addresses must avoid them). */
  serviceCIDRs: Map<string, string[]>;
  /** By name. */
  namespaces: Map<string, V1Namespace>;
  /** By name. */
  nodes: Map<string, V1Node>;
  /** By name. */
  dataplaneNodes: Map<string, DataplaneNode>;
  /**
   * The agents' liveness Leases, by node name. The operator's Lease watch
   * records when it saw each renewal on its own clock; a snapshot built from
   * objects trusts their `renewTime`.
   */
  agentLeases: Map<string, AgentLeaseRecord>;
  /** By `namespace/name`. */
  routingTables: Map<string, RoutingTable>;
  /**
   * By `namespace/name`: the generations of each RoutingTable the operator
   * saw go by, oldest first (the last {@linkcode TABLE_HISTORY}), with when it
   * saw each. `Programmed` stays True while nodes serve a recent one with the
   * same frontends (gateway.ts).
   */
  tableHistory: Map<string, TableGenerationRecord[]>;
  /**
   * `gateway.networking.k8s.io/bundle-version` annotation of each installed
   * Gateway API CRD, by CRD name; for the SupportedVersion condition.
   */
  crdBundleVersions: Map<string, string>;
  /**
   * Addresses the operator has decided for a Gateway (by `namespace/name`) and
   * may not have written to its status yet. Concurrent reconciles read them
   * so two Gateways are never handed one address in the same moment.
   */
  addressDecisions: Map<string, string[]>;
}

/**
 * Indexes of {@linkcode Snapshot.routes}, so that a reconcile or an event looks
 * at the few routes it concerns rather than all of them: at 10,000 routes the
 * two scans were half of the operator's CPU per endpoint change
 * (docs/performance.md). Each index may hold more than its name says (every
 * parentRef and backendRef, whatever its group and kind): callers filter.
 */
export interface RouteIndex {
  /** Route keys by `namespace/name` of a parent in their parentRefs or status parents. */
  byParent: Map<string, Set<string>>;
  /** Route keys by `namespace/name` of a backendRef. */
  byBackend: Map<string, Set<string>>;
  /** Each route's place in {@linkcode Snapshot.routes}' order: results keep that order. */
  order: Map<string, number>;
  /** The place the next new route gets. */
  next: number;
}

function routeParents(route: L4Route): string[] {
  const ns = route.metadata?.namespace ?? "";
  const refs = [
    ...(route.spec?.parentRefs ?? []),
    ...(route.status?.parents ?? []).map((p) => p.parentRef),
  ];
  return refs.map((r) => objectKey(r?.namespace ?? ns, r?.name ?? ""));
}

function routeBackends(route: L4Route): string[] {
  const ns = route.metadata?.namespace ?? "";
  return (route.spec?.rules ?? []).flatMap((rule) =>
    (rule.backendRefs ?? []).map((b) => objectKey(b.namespace ?? ns, b.name))
  );
}

function indexAdd(index: Map<string, Set<string>>, keys: string[], route: string): void {
  for (const k of keys) {
    let routes = index.get(k);
    if (!routes) index.set(k, routes = new Set());
    routes.add(route);
  }
}

function indexDelete(index: Map<string, Set<string>>, keys: string[], route: string): void {
  for (const k of keys) {
    const routes = index.get(k);
    routes?.delete(route);
    if (routes?.size === 0) index.delete(k);
  }
}

function routesIn(s: Snapshot, keys: Iterable<string> | undefined): L4Route[] {
  const order = s.routeIndex.order;
  const found: [number, L4Route][] = [];
  for (const k of keys ?? []) {
    const route = s.routes.get(k);
    if (route) found.push([order.get(k) ?? 0, route]);
  }
  return found.sort((a, b) => a[0] - b[0]).map(([, route]) => route);
}

/**
 * The routes that name Gateway `gatewayKey` (`namespace/name`) in a parentRef
 * or a status parent entry, and maybe a few more; in {@linkcode Snapshot.routes}' order.
 */
export function routesOfParent(s: Snapshot, gatewayKey: string): L4Route[] {
  return routesIn(s, s.routeIndex.byParent.get(gatewayKey));
}

/**
 * The routes with a backendRef to `serviceKey` (`namespace/name`), and maybe
 * a few more; in {@linkcode Snapshot.routes}' order.
 */
export function routesOfBackend(s: Snapshot, serviceKey: string): L4Route[] {
  return routesIn(s, s.routeIndex.byBackend.get(serviceKey));
}

/** One generation of a RoutingTable as the operator saw it. */
export interface TableGenerationRecord {
  /** `metadata.generation`. */
  generation: number;
  /** {@linkcode tableFrontends} of its spec. */
  frontends: string;
  /** When the operator first saw it, on its own clock (epoch ms). */
  seenAtMs: number;
}

/** How many generations of each table {@linkcode Snapshot.tableHistory} keeps. */
export const TABLE_HISTORY = 32;

/**
 * What of a table decides where traffic enters and how: its addresses, the
 * local-only option, and each entry's address, port, protocol and listener.
 * Two specs with the same frontends differ only in routes and backends.
 */
export function tableFrontends(spec: RoutingTableSpec): string {
  return JSON.stringify([
    spec.addresses,
    spec.localBackendsOnly ?? false,
    (spec.entries ?? []).map((e) => [e.address, e.port, e.protocol, e.listener]),
  ]);
}

/** Key of a namespaced object. */
export function objectKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** Key of a route in {@linkcode Snapshot.routes}. */
export function routeKey(
  route: { kind: string; metadata: { namespace: string; name: string } },
): string {
  return `${route.kind}/${route.metadata.namespace}/${route.metadata.name}`;
}

/** Label that ties an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

/** An object of one of the kinds a snapshot holds. */
export type SnapshotObject =
  | GatewayClass
  | GatewayClassConfig
  | Gateway
  | L4Route
  | (V1Service & { kind: "Service" })
  | (V1EndpointSlice & { kind: "EndpointSlice" })
  | ReferenceGrant
  | SecretSummary
  | HTTPRouteSummary
  | ServiceCIDR
  | (V1Namespace & { kind: "Namespace" })
  | (V1Node & { kind: "Node" })
  | DataplaneNode
  | RoutingTable
  | (AgentLeaseObject & { kind: "Lease" });

/** An empty snapshot. */
export function emptySnapshot(): Snapshot {
  return {
    gatewayClasses: new Map(),
    gatewayClassConfigs: new Map(),
    gateways: new Map(),
    routes: new Map(),
    routeIndex: { byParent: new Map(), byBackend: new Map(), order: new Map(), next: 0 },
    services: new Map(),
    endpointSlices: new Map(),
    referenceGrants: new Map(),
    secrets: new Map(),
    httpRoutes: new Map(),
    serviceCIDRs: new Map(),
    namespaces: new Map(),
    nodes: new Map(),
    dataplaneNodes: new Map(),
    agentLeases: new Map(),
    routingTables: new Map(),
    tableHistory: new Map(),
    crdBundleVersions: new Map(),
    addressDecisions: new Map(),
  };
}

/**
 * Builds a snapshot from objects as the API server returns them (each with
 * its `kind`). Informers call {@linkcode putObject} and {@linkcode removeObject}
 * on one snapshot instead.
 */
export function createSnapshot(
  objects: readonly SnapshotObject[],
  options: { crdBundleVersions?: Record<string, string> } = {},
): Snapshot {
  const s = emptySnapshot();
  for (const o of objects) putObject(s, o);
  for (const [k, v] of Object.entries(options.crdBundleVersions ?? {})) {
    s.crdBundleVersions.set(k, v);
  }
  return s;
}

function nsName(o: { metadata?: { namespace?: string; name?: string } }) {
  return objectKey(o.metadata?.namespace ?? "", o.metadata?.name ?? "");
}

function sliceServiceKey(slice: V1EndpointSlice): string | undefined {
  const svc = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  return svc === undefined ? undefined : objectKey(slice.metadata?.namespace ?? "", svc);
}

/**
 * Adds or replaces an object in the snapshot. A RoutingTable of a generation
 * not seen before is recorded in {@linkcode Snapshot.tableHistory} as seen at
 * `options.nowMs` (default: now, on the operator's clock).
 */
export function putObject(
  s: Snapshot,
  o: SnapshotObject,
  options: { nowMs?: number } = {},
): void {
  const name = o.metadata?.name ?? "";
  switch (o.kind) {
    case "GatewayClass":
      s.gatewayClasses.set(name, o);
      break;
    case "GatewayClassConfig":
      s.gatewayClassConfigs.set(name, o);
      break;
    case "Gateway":
      s.gateways.set(nsName(o), o);
      break;
    case "TCPRoute":
    case "UDPRoute": {
      const key = routeKey(o);
      const index = s.routeIndex;
      const before = s.routes.get(key);
      if (before) {
        indexDelete(index.byParent, routeParents(before), key);
        indexDelete(index.byBackend, routeBackends(before), key);
      } else index.order.set(key, index.next++);
      s.routes.set(key, o);
      indexAdd(index.byParent, routeParents(o), key);
      indexAdd(index.byBackend, routeBackends(o), key);
      break;
    }
    case "Service":
      s.services.set(nsName(o), o);
      break;
    case "EndpointSlice": {
      const key = sliceServiceKey(o);
      if (key === undefined) break; // slices without a Service are not ours to route to
      const slices = s.endpointSlices.get(key) ?? new Map();
      slices.set(name, o);
      s.endpointSlices.set(key, slices);
      break;
    }
    case "ReferenceGrant":
      s.referenceGrants.set(nsName(o), o);
      break;
    case "Secret":
      s.secrets.set(nsName(o), summarizeSecret(o as SecretObject));
      break;
    case "HTTPRoute":
      s.httpRoutes.set(nsName(o), summarizeHTTPRoute(o));
      break;
    case "ServiceCIDR":
      s.serviceCIDRs.set(name, o.spec?.cidrs ?? []);
      break;
    case "Namespace":
      s.namespaces.set(name, o);
      break;
    case "Node":
      s.nodes.set(name, o);
      break;
    case "DataplaneNode":
      s.dataplaneNodes.set(name, o);
      break;
    case "RoutingTable": {
      const key = nsName(o);
      s.routingTables.set(key, o);
      const generation = o.metadata.generation ?? 0;
      const history = s.tableHistory.get(key) ?? [];
      const last = history.at(-1);
      if (last?.generation !== generation) {
        const frontends = tableFrontends(o.spec);
        history.push({
          generation,
          // one string for a run of generations with the same frontends (most of them)
          frontends: last?.frontends === frontends ? last.frontends : frontends,
          seenAtMs: options.nowMs ?? performance.timeOrigin + performance.now(),
        });
        if (history.length > TABLE_HISTORY) history.shift();
        s.tableHistory.set(key, history);
      }
      break;
    }
    case "Lease": {
      const record = agentLeaseRecord(o);
      if (record) s.agentLeases.set(record.node, record);
      break;
    }
  }
}

/** Removes an object from the snapshot. */
export function removeObject(s: Snapshot, o: SnapshotObject): void {
  const name = o.metadata?.name ?? "";
  switch (o.kind) {
    case "GatewayClass":
      s.gatewayClasses.delete(name);
      break;
    case "GatewayClassConfig":
      s.gatewayClassConfigs.delete(name);
      break;
    case "Gateway":
      s.gateways.delete(nsName(o));
      s.addressDecisions.delete(nsName(o));
      break;
    case "TCPRoute":
    case "UDPRoute": {
      const key = routeKey(o);
      const before = s.routes.get(key);
      if (!before) break;
      indexDelete(s.routeIndex.byParent, routeParents(before), key);
      indexDelete(s.routeIndex.byBackend, routeBackends(before), key);
      s.routeIndex.order.delete(key);
      s.routes.delete(key);
      break;
    }
    case "Service":
      s.services.delete(nsName(o));
      break;
    case "EndpointSlice": {
      const key = sliceServiceKey(o);
      if (key === undefined) break;
      const slices = s.endpointSlices.get(key);
      slices?.delete(name);
      if (slices?.size === 0) s.endpointSlices.delete(key);
      break;
    }
    case "ReferenceGrant":
      s.referenceGrants.delete(nsName(o));
      break;
    case "Secret":
      s.secrets.delete(nsName(o));
      break;
    case "HTTPRoute":
      s.httpRoutes.delete(nsName(o));
      break;
    case "ServiceCIDR":
      s.serviceCIDRs.delete(name);
      break;
    case "Namespace":
      s.namespaces.delete(name);
      break;
    case "Node":
      s.nodes.delete(name);
      break;
    case "DataplaneNode":
      s.dataplaneNodes.delete(name);
      break;
    case "RoutingTable":
      s.routingTables.delete(nsName(o));
      s.tableHistory.delete(nsName(o));
      break;
    case "Lease": {
      const node = nodeOfAgentLease(name);
      if (node !== undefined) s.agentLeases.delete(node);
      break;
    }
  }
}
