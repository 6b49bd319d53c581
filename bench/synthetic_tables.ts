/**
 * RoutingTables of a benchmark's shape, built in process: table `t` of
 * `entries` TCP entries, each with 10 Ready backends on `node-1` of weight 1
 * but the first backend of the first entry, whose weight is the one a
 * benchmark changes. Where the addresses come from is the caller's
 * {@linkcode TableAddresses}, so a benchmark keeps the tables it always had.
 *
 * @example
 * ```ts
 * import { GATEWAY_POOL, syntheticTable } from "./synthetic_tables.ts";
 *
 * const table = syntheticTable(0, 64, { addresses: GATEWAY_POOL, weight: 2 });
 * ```
 *
 * @module
 */
import type { RoutingTable } from "../api/mod.ts";

/** Backends of every entry. */
export const BACKENDS = 10;

/** Where table `t`'s entries and backends are. */
export interface TableAddresses {
  /** The table's one address. */
  vip(t: number): string;
  /** The port of the table's first entry (entry `e` has the `e`th after it). */
  firstPort(t: number, entries: number): number;
  /** The address of backend `b` of entry `e`. */
  backendIp(t: number, e: number, b: number): string;
}

/**
 * The Gateway pool's 200 addresses, as `bench agent` writes its tables: table
 * `t` on address `t % 200`, a table beyond the first 200 on the next ports;
 * the backends are the same 10 pods, on a port of each entry's own.
 */
export const GATEWAY_POOL: TableAddresses = {
  vip: (t) => `198.18.2.${(t % 200) + 2}`,
  firstPort: (t, entries) => 1000 + Math.floor(t / 200) * entries,
  backendIp: (_t, _e, b) => `198.18.1.${2 + b}`,
};

/** Options of {@linkcode syntheticTable}. */
export interface SyntheticTableOptions {
  addresses: TableAddresses;
  /** Weight of the first entry's first backend (default 1, as every other). */
  weight?: number;
  /** `metadata.generation` (default 1). */
  generation?: number;
  /** `metadata.resourceVersion` (default none). */
  resourceVersion?: string;
  /** `metadata.uid` (default none). */
  uid?: string;
}

/** RoutingTable `gw-T` in namespace `default`, its entries on ports from the first on. */
export function syntheticTable(
  t: number,
  entries: number,
  options: SyntheticTableOptions,
): RoutingTable {
  const { addresses, weight = 1, generation = 1 } = options;
  const vip = addresses.vip(t);
  const port = addresses.firstPort(t, entries);
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: {
      name: `gw-${t}`,
      namespace: "default",
      ...(options.resourceVersion === undefined
        ? {}
        : { resourceVersion: options.resourceVersion }),
      generation,
      ...(options.uid === undefined ? {} : { uid: options.uid }),
    },
    spec: {
      addresses: [vip],
      entries: Array.from({ length: entries }, (_, e) => ({
        address: vip,
        port: port + e,
        protocol: "TCP" as const,
        listener: `l${e}`,
        rejectWeight: 0,
        backends: Array.from({ length: BACKENDS }, (_, b) => ({
          ip: addresses.backendIp(t, e, b),
          port: 10000 + t * entries + e,
          weight: e === 0 && b === 0 ? weight : 1,
          node: "node-1",
          state: "Ready" as const,
        })),
      })),
    },
  };
}
