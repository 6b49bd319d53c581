/**
 * Where a kind of object lives in the API: from an apiVersion and a kind or
 * plural (core, discovery.k8s.io, gateway.networking.k8s.io and custom
 * resources alike) to the REST path of its collection.
 *
 * @module
 */

import type { RestConfig } from "./kubeconfig.ts";
import { requestJson } from "./rest.ts";

/** A kind of object: its apiVersion and its kind or plural resource name. */
export interface ResourceRef {
  /** `v1`, `discovery.k8s.io/v1`, `gateway.networking.k8s.io/v1`, ... */
  apiVersion: string;
  /** e.g. `ConfigMap`; resolved to the plural through discovery. */
  kind?: string;
  /** e.g. `configmaps`; when given, no discovery request is made. */
  plural?: string;
}

/** A resource as the API serves it. */
export interface ResolvedResource {
  apiVersion: string;
  /** Kind, when known (given or from discovery). */
  kind: string | undefined;
  plural: string;
  /** Whether objects live in namespaces; undefined when not asked of discovery. */
  namespaced: boolean | undefined;
}

interface ApiResourceList {
  resources: { name: string; kind: string; namespaced: boolean }[];
}

/** The API path prefix of `apiVersion`: `/api/v1` or `/apis/<group>/<version>`. */
export function apiVersionPath(apiVersion: string): string {
  return apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
}

/**
 * Resolves `ref` to its plural name, asking the API server's discovery only
 * when the plural is not given.
 */
export async function resolveResource(
  kc: RestConfig,
  ref: ResourceRef,
  options: { signal?: AbortSignal } = {},
): Promise<ResolvedResource> {
  if (ref.plural) {
    return {
      apiVersion: ref.apiVersion,
      kind: ref.kind,
      plural: ref.plural,
      namespaced: undefined,
    };
  }
  if (!ref.kind) throw new Error(`resource of ${ref.apiVersion} needs a kind or a plural`);
  const list = await requestJson<ApiResourceList>(kc, apiVersionPath(ref.apiVersion), {
    signal: options.signal,
  });
  // Subresources (`pods/status`) share the kind; the collection has no slash.
  const found = list.resources.find((r) => r.kind === ref.kind && !r.name.includes("/"));
  if (!found) {
    throw new Error(`the API server serves no kind ${ref.kind} in ${ref.apiVersion}`);
  }
  return {
    apiVersion: ref.apiVersion,
    kind: ref.kind,
    plural: found.name,
    namespaced: found.namespaced,
  };
}

/**
 * The path of the collection of `resource`, in `namespace` when given
 * (otherwise across all namespaces, or the cluster-scoped collection).
 */
export function collectionPath(resource: ResolvedResource, namespace?: string): string {
  const ns = namespace && resource.namespaced !== false
    ? `/namespaces/${encodeURIComponent(namespace)}`
    : "";
  return `${apiVersionPath(resource.apiVersion)}${ns}/${resource.plural}`;
}
