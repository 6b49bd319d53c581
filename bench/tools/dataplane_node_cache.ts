/**
 * What the operator's cache of DataplaneNodes holds in V8's heap, whole (as
 * the API server sends them) or as the operator keeps them
 * (`summarizeDataplaneNode`, operator/resources.ts: no counters, map usage or
 * sync time). Each node reports T tables and the counters of S services with
 * B backends each, as an agent with traffic does.
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc bench/tools/dataplane_node_cache.ts [--nodes 100,200] \
 *   [--tables 4] [--services 40] [--backends 10]
 * ```
 *
 * Lines: `dataplane_node_cache_mib_n<N>_s<S>_b<B>` (whole, with `peer`: kept),
 * from the heap in use after a full GC, with and without the cache held.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { DataplaneNode } from "../../api/dataplane_node.ts";
import { dropManagedFields } from "../../kube/informer.ts";
import type { KubeObject } from "../../kube/client.ts";
import { summarizeDataplaneNode } from "../../operator/resources.ts";

const gc = (globalThis as { gc?: () => void }).gc;

/** A DataplaneNode's JSON as the API server sends it (managedFields included). */
function nodeJson(i: number, tables: number, services: number, backends: number): string {
  const now = new Date().toISOString();
  const dn: DataplaneNode & { metadata: { managedFields: unknown[] } } = {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "DataplaneNode",
    metadata: {
      name: `node-${i}`,
      uid: crypto.randomUUID(),
      resourceVersion: String(1000 + i),
      managedFields: [{ manager: "blixt-agent", operation: "Apply", fieldsV1: { "f:status": {} } }],
    },
    spec: { nodeName: `node-${i}` },
    status: {
      conditions: [{
        type: "Ready",
        status: "True",
        reason: "Programmed",
        message: "",
        lastTransitionTime: now,
      }],
      lastSyncTime: now,
      features: ["endpoints", "compactEntries", "backendsFrom"],
      maps: [{ name: "backends", entries: services * backends, capacity: 65536 }],
      tables: Array.from({ length: tables }, (_, t) => ({
        namespace: "bench",
        name: `gw-${t}`,
        observedGeneration: 7,
        programmedGeneration: 7,
        entries: services / tables,
        backends: services * backends / tables,
      })),
      counters: {
        collectedAt: now,
        services: Array.from({ length: services }, (_, s) => ({
          address: `198.18.${Math.floor(s / 250)}.${s % 250 + 1}`,
          port: 5000 + s,
          protocol: "TCP" as const,
          packets: 123456 + s,
          bytes: 98765432 + s,
          newFlows: 3456 + s,
          rejectedFlows: 0,
          backends: Array.from({ length: backends }, (_, b) => ({
            ip: `198.19.${Math.floor((s * backends + b) / 250) % 250}.${
              (s * backends + b) % 250 + 1
            }`,
            port: 8080,
            packets: 12345 + b,
            bytes: 9876543 + b,
            newFlows: 345 + b,
          })),
        })),
      },
    },
  };
  return JSON.stringify(dn);
}

function heapUsed(): number {
  gc!();
  gc!();
  return Deno.memoryUsage().heapUsed;
}

/** Heap in use by a cache of the nodes parsed from `texts`, each through `keep`. */
function cacheBytes(texts: string[], keep: (o: KubeObject) => KubeObject): number {
  const before = heapUsed();
  const cache = new Map<string, KubeObject>();
  for (const [i, text] of texts.entries()) cache.set(String(i), keep(JSON.parse(text)));
  const after = heapUsed();
  if (cache.size !== texts.length) throw new Error("unreachable");
  return after - before;
}

if (import.meta.main) {
  if (!gc) throw new Error("run with --v8-flags=--expose-gc");
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      nodes: { type: "string", default: "100,200" },
      tables: { type: "string", default: "4" },
      services: { type: "string", default: "40" },
      backends: { type: "string", default: "10" },
    },
  });
  const tables = Number(values.tables);
  const services = Number(values.services);
  const backends = Number(values.backends);
  const whole = dropManagedFields;
  const kept = (o: KubeObject) =>
    summarizeDataplaneNode(
      dropManagedFields(o) as unknown as DataplaneNode,
    ) as unknown as KubeObject;
  for (const n of values.nodes.split(",").map(Number)) {
    const texts = Array.from({ length: n }, (_, i) => nodeJson(i, tables, services, backends));
    const value = cacheBytes(texts, whole) / 2 ** 20;
    const peer = cacheBytes(texts, kept) / 2 ** 20;
    const round = (x: number) => Math.round(x * 100) / 100;
    console.log(JSON.stringify({
      name: `dataplane_node_cache_mib_n${n}_s${services}_b${backends}`,
      value: round(value),
      unit: "MiB",
      better: "lower",
      peer: "kept",
      peer_value: round(peer),
      ratio: round(value / peer),
    }));
  }
}
