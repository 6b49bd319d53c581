/**
 * Where the agent's RoutingTables come from: a cache of every table in the
 * cluster that says when something changed. Level-based: the agent reads
 * the whole list on each change, so which event woke it does not matter.
 *
 * @module
 */
import { type k8s, loadKubeConfig } from "../kube/client.ts";
import { GROUP, ROUTING_TABLE_PLURAL, VERSION } from "../api/mod.ts";
import { errorText, type Logger } from "./log.ts";
import * as kube from "@kubernetes/client-node";

/** A cache of RoutingTables. */
export interface TableSource {
  /** Resolves once the first list is in. */
  readonly synced: Promise<void>;
  /** Every table in the cache (unvalidated, as the API server sent it). */
  list(): unknown[];
  /** Calls `fn` after every change of the cache. */
  onChange(fn: () => void): void;
  /** Starts listing and watching. */
  start(): void;
  /** Stops every request and timer. */
  stop(): Promise<void>;
}

/**
 * RoutingTables from the API server by list+watch (client-node's ListWatch,
 * restarted with a capped backoff after an error; it re-lists on 410).
 * To be replaced by kube/informer.ts once that is on main.
 */
export function kubeTableSource(
  kc: k8s.KubeConfig,
  options: { log: Logger; backoffMs?: [number, number] },
): TableSource {
  const api = kc.makeApiClient(kube.CustomObjectsApi);
  const path = `/apis/${GROUP}/${VERSION}/${ROUTING_TABLE_PLURAL}`;
  const list = async () =>
    await api.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: ROUTING_TABLE_PLURAL,
    }) as kube.KubernetesListObject<kube.KubernetesObject>;
  const informer = kube.makeInformer(kc, path, list);
  const listeners: (() => void)[] = [];
  const [minMs, maxMs] = options.backoffMs ?? [500, 30_000];
  let delay = minMs;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let resolveSynced!: () => void;
  const synced = new Promise<void>((r) => resolveSynced = r);
  const changed = () => {
    for (const fn of listeners) fn();
  };
  for (const verb of ["add", "update", "delete"] as const) informer.on(verb, changed);
  let startedAt = 0;
  const restart = () => {
    if (stopped) return;
    startedAt = Date.now();
    // start() resolves once the list is in the cache and the watch is open
    // (its "connect" event comes before the list, too early to sync from).
    informer.start().then(() => {
      resolveSynced();
      changed(); // a re-list may have changed the cache without events
    }, (e) => onError(e));
  };
  const onError = (e: unknown) => {
    if (stopped) return;
    if (Date.now() - startedAt > 10_000) delay = minMs; // it worked for a while
    options.log("warn", "RoutingTable watch failed, retrying", {
      error: errorText(e),
      retryMs: delay,
    });
    clearTimeout(timer);
    timer = setTimeout(restart, delay);
    delay = Math.min(maxMs, delay * 2);
  };
  informer.on("error", onError);
  return {
    synced,
    list: () => [...informer.list()],
    onChange: (fn) => listeners.push(fn),
    start: restart,
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await informer.stop();
    },
  };
}

/** Loads the kubeconfig of `--kubeconfig` (or the defaults, in-cluster included). */
export function kubeConfigFor(path: string | undefined): k8s.KubeConfig {
  return loadKubeConfig({ kubeconfig: path });
}
