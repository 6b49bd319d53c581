/**
 * blixt's one Kubernetes client layer, shared by the operator, the agent, the
 * plugin and the tests. It wraps `@kubernetes/client-node`, which handles
 * kubeconfig files (client certificates, exec plugins, contexts), in-cluster
 * service account tokens and the transport.
 *
 * Pinned at 1.x on purpose: 2.0 moved to undici, whose TLS sockets crash
 * Deno 2.9 (SIGSEGV) when the API server closes a kept-alive connection,
 * e.g. on an API server restart (see docs/decisions.md).
 *
 * @module
 */

import "./_no_deprecation_warnings.ts";
import * as k8s from "@kubernetes/client-node";

export { k8s };
import type { RestConfig } from "./kubeconfig.ts";
import { collectionPath, type ResolvedResource, resolveResource } from "./resource.ts";
import { apiStatus, requestJson } from "./rest.ts";

export { apiStatus };
export { pooledAgent, shareConnections, type SharedConnections } from "./connections.ts";

/** Where to find the cluster: a kubeconfig file and context, or defaults. */
export interface KubeConfigOptions {
  /** Path of a kubeconfig file; otherwise $KUBECONFIG, ~/.kube/config or in-cluster. */
  kubeconfig?: string | undefined;
  /** Context to use instead of the file's current context. */
  context?: string | undefined;
}

/**
 * Loads a kubeconfig the way kubectl does: `--kubeconfig`, then $KUBECONFIG,
 * then `~/.kube/config`, then the in-cluster service account.
 */
export function loadKubeConfig(
  options: KubeConfigOptions = {},
): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (options.kubeconfig) {
    kc.loadFromFile(options.kubeconfig);
  } else {
    kc.loadFromDefault();
  }
  if (options.context) {
    if (!kc.getContextObject(options.context)) {
      throw new Error(`context "${options.context}" is not in the kubeconfig`);
    }
    kc.setCurrentContext(options.context);
  }
  if (!kc.getCurrentCluster()) {
    throw new Error("the kubeconfig names no cluster for its current context");
  }
  return kc;
}

/** A Kubernetes object as the generic API reads and writes it. */
export type KubeObject = k8s.KubernetesObject & Record<string, unknown>;

/** Options of {@link applyObject}. */
export interface ApplyOptions {
  /** Field manager of the server-side apply, e.g. `blixt-operator`. */
  fieldManager: string;
  /** Take over fields owned by other managers. */
  force?: boolean;
  dryRun?: boolean;
}

/** Each config's resolved kinds (`apiVersion kind`), asked of discovery once. */
const resolvedKinds = new WeakMap<object, Map<string, ResolvedResource>>();

/**
 * The REST path of `obj`: its kind resolved through discovery (once per
 * config and kind), in its namespace (`default` when a namespaced object
 * names none, as kubectl does).
 */
export async function objectPath(kc: RestConfig, obj: KubeObject): Promise<string> {
  const { apiVersion, kind } = obj;
  const name = obj.metadata?.name;
  if (!apiVersion || !kind || !name) {
    throw new Error("an object needs apiVersion, kind and metadata.name");
  }
  let kinds = resolvedKinds.get(kc);
  if (!kinds) resolvedKinds.set(kc, kinds = new Map());
  const key = `${apiVersion} ${kind}`;
  let resource = kinds.get(key);
  if (!resource) {
    resource = await resolveResource(kc, { apiVersion, kind });
    kinds.set(key, resource);
  }
  const namespace = resource.namespaced ? (obj.metadata?.namespace ?? "default") : undefined;
  return `${collectionPath(resource, namespace)}/${encodeURIComponent(name)}`;
}

/**
 * Server-side applies `obj` (created when missing) and returns the result.
 *
 * The object goes to the API server as it is, JSON as written: not through
 * client-node's typed models, whose serializer drops what they do not name as
 * written (a CRD's `x-kubernetes-list-type` and `x-kubernetes-validations`
 * under `properties`, fields newer than the models), so manifests are applied
 * exactly as `kubectl apply --server-side` would (docs/decisions.md).
 */
export async function applyObject(
  kc: RestConfig,
  obj: KubeObject,
  options: ApplyOptions,
): Promise<KubeObject> {
  return await requestJson<KubeObject>(kc, await objectPath(kc, obj), {
    method: "PATCH",
    body: obj,
    contentType: "application/apply-patch+yaml",
    query: {
      fieldManager: options.fieldManager,
      force: options.force ? true : undefined,
      dryRun: options.dryRun ? "All" : undefined,
    },
  });
}

/** `obj` as the API server has it (raw JSON), or undefined when it does not exist. */
export async function readObject(kc: RestConfig, obj: KubeObject): Promise<KubeObject | undefined> {
  try {
    return await requestJson<KubeObject>(kc, await objectPath(kc, obj));
  } catch (err) {
    if (apiStatus(err) === 404) return undefined;
    throw err;
  }
}
