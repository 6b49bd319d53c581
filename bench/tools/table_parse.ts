/**
 * One-off measurement: the agent's table cache parsing RoutingTables
 * (`compactTable`), in process, no cluster.
 *
 * ```sh
 * deno run -A --v8-flags=--max-semi-space-size=1 bench/tools/table_parse.ts \
 *   [--shape 157x64] [--updates 100] [--pause-ms 200] [--whole]
 * ```
 *
 * Tables of 10 backends as endpoint strings, as `bench agent` writes them.
 * First the CPU of parsing all of them (a first list: the median and the
 * least of 7 rounds), then `--updates` changes of one backend's weight in
 * table 0, each decoded from its JSON text (as the watch delivers it) and
 * parsed with the table's version before (as the table cache does; `--whole`:
 * without it, as before unchanged entries were reused), one every
 * `--pause-ms` (the agent's updates come apart, its caches cold), with the
 * other tables held: the decoding's and the parse's p50 / p99 (of the
 * updates after the first fifth). With `--v8-flags=--expose-gc`, also the
 * heap the parsed tables hold.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { compactTable } from "../../agent/desired_state.ts";
import type { RoutingTable } from "../../api/mod.ts";
import { backendsAsStrings } from "../../operator/shared_backends.ts";
import { percentile } from "../stats.ts";
import { GATEWAY_POOL, syntheticTable } from "../synthetic_tables.ts";

/** Table `t`, its backends as endpoint strings (as the operator writes them). */
function table(t: number, entries: number, weight: number, rv: number): RoutingTable {
  const written = syntheticTable(t, entries, {
    addresses: GATEWAY_POOL,
    weight,
    resourceVersion: String(rv),
  });
  return { ...written, spec: backendsAsStrings(written.spec) };
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    shape: { type: "string", default: "157x64" },
    updates: { type: "string", default: "100" },
    "pause-ms": { type: "string", default: "200" },
    whole: { type: "boolean", default: false },
  },
});
const [count, entries] = values.shape.split("x").map(Number) as [number, number];
const texts = Array.from({ length: count }, (_, t) => JSON.stringify(table(t, entries, 1, t + 1)));

const cpu: number[] = [];
let held: unknown[] = [];
for (let r = 0; r < 7; r++) {
  const raw = texts.map((s) => JSON.parse(s));
  const started = process.cpuUsage();
  held = raw.map((o) => compactTable(o, "node-1"));
  const used = process.cpuUsage(started);
  cpu.push((used.user + used.system) / 1000);
}
// The heap the parsed tables hold (with --v8-flags=--expose-gc): each raw table let go at once, as
// the informer does; all of them alive at once leave garbage that heapUsed counts after a gc().
const gc = (globalThis as { gc?: () => void }).gc;
let heap = "";
if (gc) {
  held = [];
  gc();
  gc();
  const before = Deno.memoryUsage().heapUsed;
  held = texts.map((s) => compactTable(JSON.parse(s), "node-1"));
  gc();
  gc();
  heap = `, heap held ${((Deno.memoryUsage().heapUsed - before) / 2 ** 20).toFixed(1)} MiB`;
}
console.log(
  `${values.shape}: all tables parsed, CPU ms: median ${percentile(cpu, 50).toFixed(0)}, ` +
    `least ${Math.min(...cpu).toFixed(0)}${heap}`,
);

const decode: number[] = [];
const parse: number[] = [];
const pause = Number(values["pause-ms"]);
for (let i = 0; i < Number(values.updates); i++) {
  if (pause > 0) await new Promise((r) => setTimeout(r, pause));
  const text = JSON.stringify(table(0, entries, 2 + (i % 2), 100_000 + i));
  const t0 = performance.now();
  const raw = JSON.parse(text);
  const t1 = performance.now();
  held[0] = compactTable(raw, "node-1", values.whole ? {} : { previous: held[0] });
  const t2 = performance.now();
  decode.push(t1 - t0);
  parse.push(t2 - t1);
}
const from = Math.floor(decode.length / 5);
const show = (xs: number[]) =>
  `${percentile(xs.slice(from), 50).toFixed(2)} / ${percentile(xs.slice(from), 99).toFixed(2)}`;
console.log(
  `one backend changed in table 0 (${
    values.whole ? "parsed whole" : "from its version before"
  }), ` +
    `p50 / p99 ms: decode ${show(decode)}, parse ${show(parse)}`,
);
