/**
 * Helpers of the kube/ tests against the local cluster: waiting for a
 * condition, killing the API server, editing etcd behind its back, and a
 * kubeconfig that goes through a partition proxy.
 *
 * @module
 */

import { k8s } from "./client.ts";
import { sleep } from "./backoff.ts";
import type { Cluster } from "../tests/cluster/cluster.ts";
import { startTcpProxy, type TcpProxy } from "../tests/tcp_proxy.ts";

/**
 * Polls `check` every 20 ms until it returns true; throws with `what` after
 * `timeoutMs`. Returns how long it took.
 */
export async function eventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  options: { timeoutMs?: number } = {},
): Promise<number> {
  const started = performance.now();
  const deadline = started + (options.timeoutMs ?? 10_000);
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(20);
  }
  return performance.now() - started;
}

interface ClusterState {
  apiserverPid: number;
  slot: number;
}

async function clusterState(cluster: Cluster): Promise<ClusterState> {
  return JSON.parse(await Deno.readTextFile(`${cluster.dir}/cluster.json`)) as ClusterState;
}

/** Kills the cluster's API server with SIGKILL and waits until it is gone. */
export async function killApiServer(cluster: Cluster): Promise<void> {
  const { apiserverPid } = await clusterState(cluster);
  Deno.kill(apiserverPid, "SIGKILL");
  await eventually("the API server process is gone", async () => {
    const stat = await Deno.readTextFile(`/proc/${apiserverPid}/stat`).catch(() => "");
    // Gone, or a zombie that no longer serves.
    return stat === "" || / Z /.test(stat);
  });
}

/** The cluster's etcd, through its v3 HTTP/JSON gateway. */
export function etcdOf(cluster: Cluster): Etcd {
  return new Etcd(`http://127.0.0.1:${23790 + 2 * cluster.plan.slot}`);
}

/** A minimal client of etcd's v3 JSON gateway (what `etcdctl` would do). */
export class Etcd {
  constructor(readonly url: string) {}

  async #post<T>(path: string, body: unknown): Promise<T> {
    const res = await fetch(`${this.url}${path}`, { method: "POST", body: JSON.stringify(body) });
    const json = await res.json();
    if (!res.ok) throw new Error(`etcd ${path}: ${JSON.stringify(json)}`);
    return json as T;
  }

  /** Deletes `key`; returns the revision after the delete and how many keys went. */
  async delete(key: string): Promise<{ revision: number; deleted: number }> {
    const res = await this.#post<{ header: { revision: string }; deleted?: string }>(
      "/v3/kv/deleterange",
      { key: btoa(key) },
    );
    return { revision: Number(res.header.revision), deleted: Number(res.deleted ?? 0) };
  }

  /** Compacts the history up to `revision`: older revisions can no longer be read or watched. */
  async compact(revision: number): Promise<void> {
    await this.#post("/v3/kv/compaction", { revision: String(revision), physical: true });
  }
}

/** A client configuration like `cluster`'s, but reaching the API server through `proxy`. */
export function kubeConfigThrough(cluster: Cluster, proxy: TcpProxy): k8s.KubeConfig {
  const kc = cluster.kubeConfig();
  const current = kc.getCurrentCluster()!;
  const through = new k8s.KubeConfig();
  through.loadFromOptions({
    // The serving certificate names 127.0.0.1 too.
    clusters: [{ ...current, server: `https://127.0.0.1:${proxy.port}` }],
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
  return through;
}

/** A partition proxy in front of `cluster`'s API server. */
export function apiServerProxy(cluster: Cluster): TcpProxy {
  return startTcpProxy({ hostname: cluster.plan.bridgeIP, port: 6443 });
}
