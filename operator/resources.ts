/**
 * The kinds the operator reads, where the API server serves them, and a
 * one-shot lister that fills a {@linkcode Snapshot} from the server (the
 * informers keep one up to date instead; tests and `kubectl blixt explain`
 * use the lister).
 *
 * @module
 */

import { apiStatus, k8s } from "../kube/client.ts";
import { API_VERSION } from "../api/meta.ts";
import type { DataplaneNode } from "../api/dataplane_node.ts";
import type { KubeObject } from "../kube/client.ts";
import { dropManagedFields } from "../kube/informer.ts";
import { type SecretObject, summarizeSecret } from "./certificates.ts";
import {
  emptySnapshot,
  GATEWAY_GROUP,
  type HTTPRouteSummary,
  putObject,
  type Snapshot,
  type SnapshotObject,
  summarizeHTTPRoute,
} from "./snapshot.ts";

/** One kind the operator lists and watches. */
export interface WatchedResource {
  apiVersion: string;
  kind: SnapshotObject["kind"];
  plural: string;
  namespaced: boolean;
  /** What the informer keeps of each object, when not all of it. */
  transform?: (obj: KubeObject) => KubeObject;
}

/** Route kinds, whose version depends on what the cluster serves. */
const ROUTES = [
  { kind: "TCPRoute", plural: "tcproutes" },
  { kind: "UDPRoute", plural: "udproutes" },
] as const;

/** Kinds whose version does not depend on the cluster. */
const FIXED: WatchedResource[] = [
  {
    apiVersion: `${GATEWAY_GROUP}/v1`,
    kind: "GatewayClass",
    plural: "gatewayclasses",
    namespaced: false,
  },
  {
    apiVersion: API_VERSION,
    kind: "GatewayClassConfig",
    plural: "gatewayclassconfigs",
    namespaced: false,
  },
  { apiVersion: `${GATEWAY_GROUP}/v1`, kind: "Gateway", plural: "gateways", namespaced: true },
  {
    apiVersion: `${GATEWAY_GROUP}/v1`,
    kind: "ReferenceGrant",
    plural: "referencegrants",
    namespaced: true,
  },
  // only whether each holds a TLS certificate and key, for HTTPS listeners' certificateRefs
  {
    apiVersion: "v1",
    kind: "Secret",
    plural: "secrets",
    namespaced: true,
    transform: (o) => summarizeSecret(o as SecretObject) as unknown as KubeObject,
  },
  { apiVersion: "v1", kind: "Service", plural: "services", namespaced: true },
  {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    plural: "endpointslices",
    namespaced: true,
  },
  { apiVersion: "v1", kind: "Namespace", plural: "namespaces", namespaced: false },
  { apiVersion: "v1", kind: "Node", plural: "nodes", namespaced: false },
  // only what Programmed and the table's form read: no counters, map usage or sync time
  {
    apiVersion: API_VERSION,
    kind: "DataplaneNode",
    plural: "dataplanenodes",
    namespaced: false,
    transform: (o) =>
      summarizeDataplaneNode(
        dropManagedFields(o) as unknown as DataplaneNode,
      ) as unknown as KubeObject,
  },
  { apiVersion: API_VERSION, kind: "RoutingTable", plural: "routingtables", namespaced: true },
];

/**
 * A DataplaneNode as the operator keeps it: metadata, spec, and of the status
 * the tables (generations, errors), features and conditions; a node's
 * traffic counters, map usage and sync time are dropped.
 *
 * Why: the counters are a list of every service and backend the node serves,
 * rewritten with each report; N nodes kept them all in the operator's cache,
 * which reads none of them (the kubectl plugin reads them from the API
 * server). Idempotent.
 */
export function summarizeDataplaneNode(node: DataplaneNode): DataplaneNode {
  if (!node.status) return node;
  const { counters: _c, maps: _m, lastSyncTime: _t, ...status } = node.status;
  return { ...node, status };
}

/**
 * The version of the Gateway API group that serves `plural`, preferring v1
 * over v1alpha2; undefined when the cluster serves neither.
 */
export async function routeVersion(
  kc: k8s.KubeConfig,
  plural: string,
): Promise<string | undefined> {
  for (const version of ["v1", "v1alpha2"]) {
    if (await servesVersion(kc, plural, version)) return version;
  }
  return undefined;
}

async function servesServiceCIDRs(kc: k8s.KubeConfig): Promise<boolean> {
  try {
    await kc.makeApiClient(k8s.NetworkingV1Api).listServiceCIDR({ limit: 1 });
    return true;
  } catch (err) {
    if (apiStatus(err) === 404) return false;
    throw err;
  }
}

async function servesVersion(
  kc: k8s.KubeConfig,
  plural: string,
  version: string,
): Promise<boolean> {
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  try {
    await api.listClusterCustomObject({ group: GATEWAY_GROUP, version, plural, limit: 1 });
    return true;
  } catch (err) {
    if (apiStatus(err) === 404) return false;
    throw err;
  }
}

/** The kinds to read on this cluster, routes at the version it serves. */
export async function watchedResources(kc: k8s.KubeConfig): Promise<WatchedResource[]> {
  const resources = [...FIXED];
  // ServiceCIDRs (Kubernetes 1.33+): static Gateway addresses inside one are not usable
  if (await servesServiceCIDRs(kc)) {
    resources.push({
      apiVersion: "networking.k8s.io/v1",
      kind: "ServiceCIDR",
      plural: "servicecidrs",
      namespaced: false,
    });
  }
  // HTTPRoutes, when served, only for HTTP/HTTPS listeners' attachedRoutes
  if (await servesVersion(kc, "httproutes", "v1")) {
    resources.push({
      apiVersion: `${GATEWAY_GROUP}/v1`,
      kind: "HTTPRoute",
      plural: "httproutes",
      namespaced: true,
      transform: (o) =>
        summarizeHTTPRoute(
          { ...o, apiVersion: `${GATEWAY_GROUP}/v1`, kind: "HTTPRoute" } as HTTPRouteSummary,
        ) as unknown as KubeObject,
    });
  }
  for (const route of ROUTES) {
    const version = await routeVersion(kc, route.plural);
    if (version) {
      resources.push({
        apiVersion: `${GATEWAY_GROUP}/${version}`,
        kind: route.kind,
        plural: route.plural,
        namespaced: true,
      });
    }
  }
  return resources;
}

/** Lists every object of `resource` (all namespaces), each with its kind and apiVersion. */
export async function listResource(
  kc: k8s.KubeConfig,
  resource: WatchedResource,
): Promise<SnapshotObject[]> {
  const api = kc.makeApiClient(k8s.KubernetesObjectApi);
  try {
    const list = await api.list(resource.apiVersion, resource.kind);
    return (list.items ?? []).map((o) => {
      const typed = { ...o, apiVersion: resource.apiVersion, kind: resource.kind };
      return (resource.transform ? resource.transform(typed) : typed) as SnapshotObject;
    });
  } catch (err) {
    // A kind the cluster does not serve (e.g. blixt's CRDs not installed yet) is empty.
    if (apiStatus(err) === 404) return [];
    throw err;
  }
}

/** `gateway.networking.k8s.io/bundle-version` of each Gateway API CRD, by CRD name. */
export async function gatewayApiBundleVersions(kc: k8s.KubeConfig): Promise<Map<string, string>> {
  const crds = await kc.makeApiClient(k8s.ApiextensionsV1Api).listCustomResourceDefinition();
  const versions = new Map<string, string>();
  for (const crd of crds.items) {
    if (crd.spec.group !== GATEWAY_GROUP) continue;
    const v = crd.metadata?.annotations?.["gateway.networking.k8s.io/bundle-version"];
    if (v && crd.metadata?.name) versions.set(crd.metadata.name, v);
  }
  return versions;
}

/** Reads everything the operator reads, once, into a new snapshot. */
export async function listSnapshot(kc: k8s.KubeConfig): Promise<Snapshot> {
  const snapshot = emptySnapshot();
  for (const resource of await watchedResources(kc)) {
    for (const obj of await listResource(kc, resource)) putObject(snapshot, obj);
  }
  for (const [name, version] of await gatewayApiBundleVersions(kc)) {
    snapshot.crdBundleVersions.set(name, version);
  }
  return snapshot;
}
