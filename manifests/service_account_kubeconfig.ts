/**
 * A kubeconfig that authenticates as a service account, from a TokenRequest:
 * what a pod of that account gets mounted, for processes that run outside a
 * pod (the local cluster's operator and agents) with exactly the rights the
 * manifests grant that account.
 *
 * @example
 * ```ts
 * import { writeServiceAccountKubeconfig } from "./manifests/service_account_kubeconfig.ts";
 * const agent = await writeServiceAccountKubeconfig(
 *   cluster.kubeConfig(),
 *   { namespace: "blixt-system", name: "blixt-agent" },
 *   { path: `${cluster.dir}/blixt-agent.kubeconfig` },
 * );
 * // deno task agent --node node-1 --kubeconfig ${agent.path}
 * ```
 *
 * @module
 */

import { stringify } from "yaml";
import { k8s } from "../kube/client.ts";

/** A service account by namespace and name. */
export interface ServiceAccountRef {
  namespace: string;
  name: string;
}

/** What {@linkcode writeServiceAccountKubeconfig} wrote. */
export interface ServiceAccountKubeconfig {
  /** Path of the kubeconfig file (mode 0600). */
  path: string;
  /** The user name the API server sees: `system:serviceaccount:<namespace>:<name>`. */
  username: string;
  /** The bound token in the file. */
  token: string;
  /** When the token stops working. */
  expiresAt: Date;
}

/** The user name of a service account, as the API server authenticates it. */
export function serviceAccountUsername(account: ServiceAccountRef): string {
  return `system:serviceaccount:${account.namespace}:${account.name}`;
}

/**
 * The text of a kubeconfig for the cluster `kc` currently points at, with
 * `token` as the only credential; the CA is embedded, so the file stands
 * alone.
 */
export function serviceAccountKubeconfigText(
  kc: k8s.KubeConfig,
  token: string,
  options: { account: ServiceAccountRef },
): string {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig names no cluster for its current context");
  const caData = cluster.caData ??
    (cluster.caFile ? btoa(Deno.readTextFileSync(cluster.caFile)) : undefined);
  const username = serviceAccountUsername(options.account);
  const contextName = `${options.account.name}@${cluster.name}`;
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{
      name: cluster.name,
      cluster: {
        server: cluster.server,
        ...(caData ? { "certificate-authority-data": caData } : {}),
        ...(cluster.tlsServerName ? { "tls-server-name": cluster.tlsServerName } : {}),
        ...(cluster.skipTLSVerify ? { "insecure-skip-tls-verify": true } : {}),
      },
    }],
    users: [{ name: username, user: { token } }],
    contexts: [{
      name: contextName,
      context: { cluster: cluster.name, user: username, namespace: options.account.namespace },
    }],
    "current-context": contextName,
  });
}

/**
 * Requests a token for `account` (TokenRequest API, as the kubelet does for a
 * pod) with the credentials of `kc`, and writes a kubeconfig that uses it to
 * `options.path`. The account must exist; the token lasts
 * `options.expirationSeconds` (default 3600, at least 600), or less if the
 * API server caps it.
 */
export async function writeServiceAccountKubeconfig(
  kc: k8s.KubeConfig,
  account: ServiceAccountRef,
  options: { path: string; expirationSeconds?: number },
): Promise<ServiceAccountKubeconfig> {
  const request = await kc.makeApiClient(k8s.CoreV1Api).createNamespacedServiceAccountToken({
    namespace: account.namespace,
    name: account.name,
    body: {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenRequest",
      spec: { audiences: [], expirationSeconds: options.expirationSeconds ?? 3600 },
    },
  });
  const token = request.status?.token;
  if (!token) {
    throw new Error(`the API server returned no token for ${serviceAccountUsername(account)}`);
  }
  await Deno.writeTextFile(
    options.path,
    serviceAccountKubeconfigText(kc, token, { account }),
    { mode: 0o600 },
  );
  // The mode above applies only to a new file; a token is a secret either way.
  await Deno.chmod(options.path, 0o600);
  return {
    path: options.path,
    username: serviceAccountUsername(account),
    token,
    expiresAt: new Date(request.status!.expirationTimestamp),
  };
}
