/**
 * Where the agent's RoutingTables come from: a cache of every table in the
 * cluster that says when something changed. Level-based: the agent reads
 * the whole list on each change, so which event woke it does not matter.
 *
 * @module
 */
import { loadRestConfig, type RestConfig } from "../kube/kubeconfig.ts";
import { Informer } from "../kube/informer.ts";
import type { KubeObject } from "../kube/client.ts";
import { compactTable } from "./desired_state.ts";
import { GROUP, ROUTING_TABLE_PLURAL, VERSION } from "../api/mod.ts";
import type { Logger } from "./log.ts";

/** A cache of RoutingTables. */
export interface TableSource {
  /** Resolves once the first list is in. */
  readonly synced: Promise<void>;
  /** Every table in the cache (as the API server sent it, or as compactTable made it). */
  list(): unknown[];
  /**
   * Milliseconds spent validating and parsing tables as
   * they arrived (compactTable) since the last call: work before the change
   * reaches the agent, so not in a sync's time. Optional (test sources).
   */
  takeParseMs?(): number;
  /** Calls `fn` after every change of the cache. */
  onChange(fn: () => void): void;
  /** Starts listing and watching. */
  start(): void;
  /** Stops every request and timer. */
  stop(): Promise<void>;
}

/**
 * RoutingTables from the API server through kube/informer.ts (list+watch
 * with bookmarks, re-list on 410 Gone, reconnect with backoff). The cache
 * keeps each table parsed for `node` (compactTable), not as sent.
 */
export function kubeTableSource(
  kc: RestConfig,
  options: { node: string; log: Logger },
): TableSource {
  let parseMs = 0;
  const informer = new Informer(kc, {
    apiVersion: `${GROUP}/${VERSION}`,
    plural: ROUTING_TABLE_PLURAL,
  }, {
    transform: (obj) => {
      const started = performance.now();
      // the cache still holds the version before: its unchanged entries are not parsed again
      const previous = informer.get(obj.metadata?.name ?? "", obj.metadata?.namespace);
      const compact = compactTable(obj, options.node, { previous });
      parseMs += performance.now() - started;
      return compact as unknown as KubeObject;
    },
    log: ({ level, msg, ...fields }) => options.log(level, msg, fields),
  });
  return {
    synced: informer.synced,
    list: () => informer.list(),
    takeParseMs: () => {
      const ms = parseMs;
      parseMs = 0;
      return ms;
    },
    onChange: (fn) => {
      for (const event of ["add", "update", "delete"] as const) informer.on(event, () => fn());
    },
    start: () => void informer.start(),
    stop: () => informer.stop(),
  };
}

/** Loads the kubeconfig of `--kubeconfig` (or the defaults, in-cluster included). */
export function kubeConfigFor(path: string | undefined): Promise<RestConfig> {
  return loadRestConfig({ kubeconfig: path });
}
