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
export { apiStatus } from "./rest.ts";
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

/** Server-side applies `obj` (created when missing) and returns the result. */
export async function applyObject(
  kc: k8s.KubeConfig,
  obj: KubeObject,
  options: ApplyOptions,
): Promise<KubeObject> {
  const api = kc.makeApiClient(k8s.KubernetesObjectApi);
  return await api.patch(
    obj,
    undefined,
    options.dryRun ? "All" : undefined,
    options.fieldManager,
    options.force ?? false,
    k8s.PatchStrategy.ServerSideApply,
  ) as KubeObject;
}
