/**
 * Kept-alive connections to the API server, shared by the requests made
 * through one kubeconfig (see {@link shareConnections}). Loads nothing of
 * `@kubernetes/client-node`.
 *
 * @module
 */

import https from "node:https";
import type { RestConfig } from "./kubeconfig.ts";

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

const pools = new WeakMap<RestConfig, ConnectionPool>();

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
export function shareConnections(kc: RestConfig): SharedConnections {
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
  kc: RestConfig,
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
