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
} from "../api/mod.ts";

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
  /** By `namespace/name`. */
  services: Map<string, V1Service>;
  /** By `namespace/name` of the Service they belong to, then slice name. */
  endpointSlices: Map<string, Map<string, V1EndpointSlice>>;
  /** By `namespace/name`. */
  referenceGrants: Map<string, ReferenceGrant>;
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
    services: new Map(),
    endpointSlices: new Map(),
    referenceGrants: new Map(),
    namespaces: new Map(),
    nodes: new Map(),
    dataplaneNodes: new Map(),
    agentLeases: new Map(),
    routingTables: new Map(),
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

/** Adds or replaces an object in the snapshot. */
export function putObject(s: Snapshot, o: SnapshotObject): void {
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
    case "UDPRoute":
      s.routes.set(routeKey(o), o);
      break;
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
    case "Namespace":
      s.namespaces.set(name, o);
      break;
    case "Node":
      s.nodes.set(name, o);
      break;
    case "DataplaneNode":
      s.dataplaneNodes.set(name, o);
      break;
    case "RoutingTable":
      s.routingTables.set(nsName(o), o);
      break;
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
    case "UDPRoute":
      s.routes.delete(routeKey(o));
      break;
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
      break;
    case "Lease": {
      const node = nodeOfAgentLease(name);
      if (node !== undefined) s.agentLeases.delete(node);
      break;
    }
  }
}
