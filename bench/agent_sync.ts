/**
 * The agent's sync for one changed table among many, in process: the
 * desired state and the plan + apply over in-memory maps (agent/_testing.ts
 * FakeMaps), no API server and no kernel. Tables are kept as the table
 * source keeps them (compactTable), and each sync's last programming is
 * remembered as the agent does.
 *
 * Two ways in the same run, each its own programmer and maps:
 * - `incremental`: DesiredStateTracker, the programmer planning over its
 *   change list (what the agent runs);
 * - `full` (the peer): computeDesiredState and a whole diff each sync.
 *
 * Prints, per way, `sync_one_table_cpu_ms` (p50, `_p99`: CPU time of the
 * process per sync, `process.cpuUsage()`) and `sync_one_table_ms` (wall).
 *
 * Usage: `deno task bench sync [--shape TxE] [--changes N]` (defaults
 * 1000x10, 10 backends an entry, 200 changes).
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import type { RoutingTable } from "../api/mod.ts";
import { FakeMaps } from "../agent/_testing.ts";
import {
  compactTable,
  computeDesiredState,
  type DesiredState,
  type DesiredStateOptions,
  type LastProgrammed,
} from "../agent/desired_state.ts";
import { DesiredStateTracker } from "../agent/desired_state_tracker.ts";
import { Programmer } from "../agent/programmer.ts";
import { percentile } from "./stats.ts";
import { syntheticTable, type TableAddresses } from "./synthetic_tables.ts";

/**
 * One address a table (198.18.100.0 on), its entries on ports 1000 on; the
 * backends' addresses differ by table and entry.
 */
const ADDRESSES: TableAddresses = {
  vip: (t) => `198.18.${100 + (t >> 8)}.${t & 255}`,
  firstPort: () => 1000,
  backendIp: (t, e, b) => `198.19.${b}.${(t + e) & 255}`,
};

function table(t: number, entries: number, weight: number, generation: number): RoutingTable {
  return syntheticTable(t, entries, {
    addresses: ADDRESSES,
    weight,
    generation,
    resourceVersion: `${t}-${generation}`,
  });
}

/** One agent's worth of state, syncing with `compute`. */
function agentWith(
  compute: (tables: unknown[], o: DesiredStateOptions) => DesiredState,
): (tables: unknown[]) => { cpuMs: number; ms: number } {
  const maps = new FakeMaps();
  maps.cap = { serviceIds: 65536, serviceKeys: 131072, backendIds: 1 << 20, conntrack: 1000 };
  const p = new Programmer(maps);
  p.adopt();
  const last = new Map<string, LastProgrammed>();
  return (tables) => {
    maps.ops = [];
    const cpu = process.cpuUsage();
    const t0 = performance.now();
    const programmed = p.services;
    const d = compute(tables, {
      node: "node-1",
      lastProgrammed: last,
      programmedFrontends: { [Symbol.iterator]: () => programmed.keys() },
      capacity: maps.capacity(),
    });
    p.apply(d);
    for (const t of d.tables) {
      if (t.result !== "programmed" && t.result !== "conflict") continue;
      const name = `${t.namespace}/${t.name}`;
      const services = d.byTable.get(name) ?? [];
      const was = last.get(name);
      if (was?.generation !== t.generation || was.services !== services) {
        last.set(name, { generation: t.generation, services });
      }
    }
    const ms = performance.now() - t0;
    const c = process.cpuUsage(cpu);
    return { cpuMs: (c.user + c.system) / 1000, ms };
  };
}

/** Runs the benchmark with command-line `args`. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { shape: { type: "string", default: "1000x10" }, changes: { type: "string" } },
  });
  const [nTables, nEntries] = values.shape.split("x").map(Number) as [number, number];
  const changes = Number(values.changes ?? 200);
  const tables = Array.from(
    { length: nTables },
    (_, t) => compactTable(table(t, nEntries, 1, 1), "node-1"),
  );
  const tracker = new DesiredStateTracker();
  const ways = {
    incremental: agentWith((t, o) => tracker.compute(t, o)),
    full: agentWith((t, o) => computeDesiredState(t, o)),
  };
  for (const sync of Object.values(ways)) sync(tables); // the first sync, not measured
  const cpu = { incremental: [] as number[], full: [] as number[] };
  const wall = { incremental: [] as number[], full: [] as number[] };
  for (let i = 0; i < changes; i++) {
    // one entry's weight changes in one table, as the operator writes it
    tables[5] = compactTable(table(5, nEntries, 2 + (i % 2), 2 + i), "node-1");
    for (const [way, sync] of Object.entries(ways) as [keyof typeof ways, typeof ways.full][]) {
      const r = sync(tables);
      cpu[way].push(r.cpuMs);
      wall[way].push(r.ms);
    }
    await new Promise((r) => setTimeout(r, 0));
  }
  const x = `_${values.shape}`;
  const line = (name: string, xs: number[], peer: number[], p: number) => {
    const value = +percentile(xs, p).toFixed(2);
    const peerValue = +percentile(peer, p).toFixed(2);
    console.log(JSON.stringify({
      name,
      value,
      unit: "ms",
      better: "lower",
      peer: "full",
      peer_value: peerValue,
      ratio: +(value / peerValue).toFixed(3),
    }));
  };
  line(`sync_one_table_cpu_ms${x}`, cpu.incremental, cpu.full, 50);
  line(`sync_one_table_cpu_ms_p99${x}`, cpu.incremental, cpu.full, 99);
  line(`sync_one_table_ms${x}`, wall.incremental, wall.full, 50);
  line(`sync_one_table_ms_p99${x}`, wall.incremental, wall.full, 99);
}

if (import.meta.main) await main(Deno.args);
