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
import https from "node:https";
import * as k8s from "@kubernetes/client-node";

export { k8s };

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

/** The HTTP status of a failed API call, when it has one. */
export function apiStatus(err: unknown): number | undefined {
  if (err instanceof k8s.ApiException) return err.code;
  return undefined;
}

/** TLS settings of an agent that decide whether a kept-alive connection may serve a request. */
const TLS_KEYS = [
  "ca",
  "cert",
  "key",
  "pfx",
  "passphrase",
  "servername",
  "rejectUnauthorized",
] as const;

type TlsSettings = Partial<Record<(typeof TLS_KEYS)[number], unknown>>;

function sameTls(a: TlsSettings, b: TlsSettings): boolean {
  return TLS_KEYS.every((k) => {
    const x = a[k];
    const y = b[k];
    if (Buffer.isBuffer(x) && Buffer.isBuffer(y)) return x.equals(y);
    return x === y;
  });
}

interface ConnectionPool {
  users: number;
  agent: https.Agent | undefined;
  tls: TlsSettings;
  /** Agents of replaced credentials: their idle connections time out, close() ends the rest. */
  retired: https.Agent[];
}

const pools = new WeakMap<k8s.KubeConfig, ConnectionPool>();

/**
 * Idle kept-alive connections kept per kubeconfig. Connections in use are not
 * capped: a cap queues requests in the client behind slow ones (measured: 32
 * concurrent writers on 16 connections took twice as long as on fresh ones).
 */
const POOL_IDLE_SOCKETS = 64;
/** An idle kept-alive connection is closed after this long (the API server's own limit is 90 s). */
const POOL_IDLE_MS = 30_000;

/** What {@link shareConnections} returns: close it when done with the kubeconfig. */
export interface SharedConnections {
  /** Closes every pooled connection once the last user of the pool closes it. */
  close(): void;
}

/**
 * From now on, requests made through `kc` by `kube/rest.ts` (not watches)
 * share one pool of kept-alive TLS connections instead of one connection (and
 * one TLS handshake) per request, as `@kubernetes/client-node` 1.4.0 does.
 * Credentials stay per request: a rotated bearer or exec-plugin token goes in
 * each request's headers, and a changed CA or client certificate replaces the
 * pool. Counted: the pool lasts until every caller has closed its handle.
 *
 * @example
 * ```ts
 * const connections = shareConnections(kc);
 * try { await requestJson(kc, "/version"); } finally { connections.close(); }
 * ```
 */
export function shareConnections(kc: k8s.KubeConfig): SharedConnections {
  let pool = pools.get(kc);
  if (!pool) pools.set(kc, pool = { users: 0, agent: undefined, tls: {}, retired: [] });
  pool.users++;
  let closed = false;
  const held = pool;
  return {
    close() {
      if (closed) return;
      closed = true;
      if (--held.users > 0) return;
      for (const agent of [held.agent, ...held.retired]) agent?.destroy();
      if (pools.get(kc) === held) pools.delete(kc);
    },
  };
}

/**
 * The pooled agent to use instead of `perRequest` (the one client-node made
 * for this request), or undefined when `kc` shares no connections or the
 * request goes through a proxy.
 */
export function pooledAgent(
  kc: k8s.KubeConfig,
  perRequest: unknown,
): https.Agent | undefined {
  const pool = pools.get(kc);
  if (!pool || !(perRequest instanceof https.Agent) || kc.getCurrentCluster()?.proxyUrl) {
    return undefined;
  }
  const tls = (perRequest as unknown as { options: TlsSettings }).options;
  if (!pool.agent || !sameTls(pool.tls, tls)) {
    // New credentials: connections made with the old ones finish what they carry, then go.
    if (pool.agent) pool.retired.push(pool.agent);
    pool.tls = { ...tls };
    pool.agent = new https.Agent({
      ...tls,
      keepAlive: true,
      maxFreeSockets: POOL_IDLE_SOCKETS,
      timeout: POOL_IDLE_MS,
      scheduling: "lifo",
    } as https.AgentOptions);
  }
  return pool.agent;
}
