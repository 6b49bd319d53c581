/**
 * The operator's in-process cost of DataplaneNode reports, no API server:
 *
 * - `dataplane_node_event_us_<T>_tables`: `gatewaysForEvent` for one node's
 *   status update (one table's generation moved) when the node reports T
 *   tables (operator/event_map.ts);
 * - `reconcile_us_<N>_nodes_<T>_tables`: `reconcile` of one Gateway whose
 *   Programmed reads N DataplaneNodes of T tables each (operator/gateway.ts).
 *
 * Medians over `--rounds`, in microseconds.
 *
 * deno run -A bench/tools/dataplane_node_event.ts [--rounds 50]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { gatewaysForEvent } from "../../operator/event_map.ts";
import { reconcile } from "../../operator/gateway.ts";
import { createSnapshot, type SnapshotObject } from "../../operator/snapshot.ts";
import {
  agentLease,
  blixtClass,
  dataplaneNode,
  gateway,
  listener,
  node,
  NOW,
} from "../../operator/_test_objects.ts";
import type { BenchLine } from "../dataplane.ts";

function emit(line: BenchLine): void {
  console.log(JSON.stringify(line));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function tables(n: number, generation: number) {
  return Array.from({ length: n }, (_, i) => ({
    namespace: "default",
    name: i === n >> 1 ? "gw" : `gw-${i}`, // the measured Gateway mid-list
    programmedGeneration: generation,
  }));
}

function timeUs(rounds: number, fn: () => void): number {
  fn(); // warm
  const out: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    fn();
    out.push((performance.now() - t0) * 1000);
  }
  return Math.round(median(out));
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { rounds: { type: "string", default: "50" } },
  });
  const rounds = Number(values.rounds);
  const base = createSnapshot([...blixtClass(), gateway("gw", [listener("tcp", 5000)])]);
  for (const t of [100, 1000, 5000]) {
    const old = dataplaneNode("n1", tables(t, 1));
    const changed = tables(t, 1);
    changed[t >> 1] = { ...changed[t >> 1]!, programmedGeneration: 2 };
    const event = { old, new: dataplaneNode("n1", changed) };
    emit({
      name: `dataplane_node_event_us_${t}_tables`,
      value: timeUs(rounds, () => gatewaysForEvent(event, base)),
      unit: "us",
      better: "lower",
    });
  }
  for (const [n, t] of [[100, 100], [500, 100], [500, 1000]] as const) {
    const objects: SnapshotObject[] = [...blixtClass(), gateway("gw", [listener("tcp", 5000)])];
    for (let i = 0; i < n; i++) {
      const name = `n${i}`;
      objects.push(node(name), agentLease(name), dataplaneNode(name, tables(t, 1)));
    }
    const snapshot = createSnapshot(objects);
    emit({
      name: `reconcile_us_${n}_nodes_${t}_tables`,
      value: timeUs(
        rounds,
        () => reconcile("default/gw", snapshot, { now: NOW, nowMs: Date.parse(NOW) }),
      ),
      unit: "us",
      better: "lower",
    });
  }
}
