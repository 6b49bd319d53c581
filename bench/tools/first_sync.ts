/**
 * One-off measurement: the agent's first sync of 10,000 services in process,
 * step by step, over real maps (a pin directory of its own, no cluster), and
 * the Maglev tables' build alone.
 *
 * ```sh
 * deno run -A bench/tools/first_sync.ts [--runs 5] [--shape 100x100] [--whole]
 * ```
 *
 * Each run loads a fresh data plane, parses TABLESxENTRIES RoutingTables of
 * 10 backends each (as `bench agent` writes them, outside the timing: the
 * agent parses tables as they arrive), then times what the agent's first
 * sync does: the desired state, then `Programmer.apply` with each map write
 * timed on its own, and the Maglev tables' builds (inside `writeMaglevs
 * (all)`, as the maps read them) timed one by one. Prints one line per step: wall /
 * user / system ms of each run, then the median of each column. `maglev
 * build x10,000` builds the first sync's tables again (10 backends of weight
 * 1, 1021 slots), CPU only. `--whole` times the desired state and the apply
 * only, over the maps as the agent holds them: the per-step and per-build
 * timing adds ~100 ms of system time (20,000 `getrusage` calls) and hides
 * what the sync costs as a whole. The first run of a process is the one to
 * read for the agent: its code is not yet optimized (the agent's first sync
 * is also its first).
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { buildBpf } from "../../bpf/build.ts";
import { Dataplane, ensureBpffs, removePins } from "../../agent/bpf/loader.ts";
import type { MaglevWrite } from "../../agent/bpf/maps.ts";
import { maglevTable } from "../../agent/bpf/maglev.ts";
import { compactTable, computeDesiredState } from "../../agent/desired_state.ts";
import { type MapWriter, Programmer } from "../../agent/programmer.ts";
import { median } from "../stats.ts";
import {
  BACKENDS,
  GATEWAY_POOL,
  syntheticTable,
  type TableAddresses,
} from "../synthetic_tables.ts";

type Times = [wall: number, user: number, system: number];

/** The pool's 200 addresses (198.18.100.1 on), the backends the same 10 pods (198.18.64.2 on). */
const ADDRESSES: TableAddresses = {
  ...GATEWAY_POOL,
  vip: (t) => `198.18.100.${(t % 200) + 1}`,
  backendIp: (_t, _e, b) => `198.18.64.${2 + b}`,
};

function tables(count: number, entries: number): unknown[] {
  return Array.from(
    { length: count },
    (_, t) => syntheticTable(t, entries, { addresses: ADDRESSES, uid: `u${t}` }),
  );
}

/** Runs `fn`, adding its wall, user and system ms to `into[name]`. */
function timed<T>(into: Map<string, Times>, name: string, fn: () => T): T {
  const cpu = process.cpuUsage();
  const start = performance.now();
  try {
    return fn();
  } finally {
    const c = process.cpuUsage(cpu);
    const t = into.get(name) ?? [0, 0, 0];
    into.set(name, [
      t[0] + performance.now() - start,
      t[1] + c.user / 1000,
      t[2] + c.system / 1000,
    ]);
  }
}

/** The maps, each write timed; Maglev tables built (timed) before their write. */
function timedWriter(maps: MapWriter, into: Map<string, Times>): MapWriter {
  const writer = Object.create(maps) as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(maps))) {
    const f = (maps as unknown as Record<string, unknown>)[name];
    if (typeof f !== "function" || name === "constructor") continue;
    writer[name] = (...args: unknown[]) => timed(into, name, () => f.apply(maps, args));
  }
  writer.writeMaglevs = (list: MaglevWrite[]) => {
    // Built when the maps read them, as in the agent; each build timed (two getrusage calls).
    const lazy = list.map((t) => ({
      id: t.id,
      inPlace: t.inPlace ?? false,
      get table() {
        return timed(into, "maglev build", () => t.table);
      },
      ...(t.fill && {
        fill: {
          size: t.fill.size,
          into: (words: Uint32Array, stride: number) =>
            timed(into, "maglev build", () => t.fill!.into(words, stride)),
        },
      }),
    }));
    timed(into, "writeMaglevs (all)", () => maps.writeMaglevs(lazy));
  };
  return writer as unknown as MapWriter;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    runs: { type: "string", default: "5" },
    shape: { type: "string", default: "100x100" },
    whole: { type: "boolean", default: false },
  },
});
const [count, entries] = values.shape.split("x").map(Number);
if (!count || !entries) throw new Error(`--shape ${values.shape} is not TABLESxENTRIES`);
await buildBpf();
await ensureBpffs();
const runs: Map<string, Times>[] = [];
const load = [Deno.loadavg()[0]!];
for (let r = 0; r < Number(values.runs); r++) {
  const pinDir = `/sys/fs/bpf/blixt-first-sync-${Deno.pid}`;
  const dp = Dataplane.load({ pinDir, conntrackEntries: 1024 });
  try {
    const parsed = tables(count, entries).map((t) => compactTable(t, "node-1"));
    const steps = new Map<string, Times>();
    const programmer = new Programmer(values.whole ? dp.maps : timedWriter(dp.maps, steps));
    programmer.adopt();
    steps.clear();
    timed(steps, "first sync", () => {
      const desired = timed(steps, "desired state", () =>
        computeDesiredState(parsed, {
          node: "node-1",
          lastProgrammed: new Map(),
          programmedFrontends: new Set(),
          capacity: dp.maps.capacity(),
        }));
      timed(steps, "apply", () => programmer.apply(desired));
    });
    const keys = Array.from(
      { length: 10_000 },
      (_, s) =>
        Array.from({ length: BACKENDS }, (_, b) => ({
          key: `198.18.64.${2 + b}:${10000 + s}`,
          id: s * BACKENDS + b + 1,
          weight: 1,
        })),
    );
    timed(steps, "maglev build x10,000", () => {
      for (const k of keys) maglevTable(k, 1021);
    });
    runs.push(steps);
  } finally {
    dp.close();
    removePins(pinDir);
  }
}
load.push(Deno.loadavg()[0]!);
const fmt = (t: Times) => t.map((x) => Math.round(x)).join("/");
console.log(
  `${values.shape}, ${runs.length} runs, load ${load.map((l) => l.toFixed(1)).join(" -> ")}`,
);
console.log(`${"step (wall/user/sys ms)".padEnd(24)} ${"median".padEnd(14)} runs`);
for (const name of runs[0]!.keys()) {
  const all = runs.map((r) => r.get(name) ?? [0, 0, 0] as Times);
  const med: Times = [0, 1, 2].map((i) => median(all.map((t) => t[i]!))) as Times;
  console.log(`${name.padEnd(24)} ${fmt(med).padEnd(14)} ${all.map(fmt).join("  ")}`);
}
