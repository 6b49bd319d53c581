/**
 * V8 heap snapshots summarised and compared: `deno run -A bench/heap_snapshot.ts A B`
 * prints the kinds of object whose retained count or size grew most from
 * snapshot A to snapshot B (the operator writes one on SIGUSR2; `bench soak
 * --heap-snapshots` takes them during the soak).
 *
 * A kind is the node's type and, for objects, closures and code, its
 * constructor or function name; strings and numbers are grouped by type.
 *
 * @module
 */

/** Count and self size (bytes) of one kind of heap node. */
export interface KindTotals {
  count: number;
  bytes: number;
}

/** One kind's change between two snapshots. */
export interface KindGrowth {
  kind: string;
  count: number;
  bytes: number;
  countBefore: number;
  bytesBefore: number;
}

interface SnapshotJson {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

const NAMED = new Set(["object", "closure", "code", "native", "hidden", "array", "synthetic"]);

/** Totals per kind of the nodes of a heap snapshot's JSON text. */
export function summarize(text: string): Map<string, KindTotals> {
  const json = JSON.parse(text) as SnapshotJson;
  const fields = json.snapshot.meta.node_fields;
  const types = json.snapshot.meta.node_types[0];
  const width = fields.length;
  const [iType, iName, iSize] = ["type", "name", "self_size"].map((f) => fields.indexOf(f));
  if (iType! < 0 || iName! < 0 || iSize! < 0) throw new Error("not a V8 heap snapshot");
  const out = new Map<string, KindTotals>();
  for (let n = 0; n < json.nodes.length; n += width) {
    const type = types[json.nodes[n + iType!]!] ?? "?";
    const kind = NAMED.has(type) ? `${type} ${json.strings[json.nodes[n + iName!]!]}` : type;
    const t = out.get(kind) ?? { count: 0, bytes: 0 };
    t.count++;
    t.bytes += json.nodes[n + iSize!]!;
    out.set(kind, t);
  }
  return out;
}

/** Kinds sorted by bytes gained from `before` to `after`, largest first. */
export function growth(
  before: Map<string, KindTotals>,
  after: Map<string, KindTotals>,
): KindGrowth[] {
  const kinds = new Set([...before.keys(), ...after.keys()]);
  return [...kinds].map((kind) => {
    const a = after.get(kind) ?? { count: 0, bytes: 0 };
    const b = before.get(kind) ?? { count: 0, bytes: 0 };
    return { kind, count: a.count, bytes: a.bytes, countBefore: b.count, bytesBefore: b.bytes };
  }).sort((x, y) => (y.bytes - y.bytesBefore) - (x.bytes - x.bytesBefore));
}

/** Sum of the self sizes of a summary, in bytes. */
export function totalBytes(summary: Map<string, KindTotals>): number {
  let sum = 0;
  for (const t of summary.values()) sum += t.bytes;
  return sum;
}

if (import.meta.main) {
  const [a, b] = Deno.args;
  if (!a || !b) {
    console.error(
      "usage: deno run -A bench/heap_snapshot.ts BEFORE.heapsnapshot AFTER.heapsnapshot",
    );
    Deno.exit(2);
  }
  const before = summarize(await Deno.readTextFile(a));
  const after = summarize(await Deno.readTextFile(b));
  const mib = (x: number) => (x / 2 ** 20).toFixed(2);
  console.log(`live heap: ${mib(totalBytes(before))} MiB -> ${mib(totalBytes(after))} MiB`);
  for (const g of growth(before, after).slice(0, 25)) {
    console.log(
      `${mib(g.bytes - g.bytesBefore).padStart(8)} MiB ${
        String(g.count - g.countBefore).padStart(8)
      } objects  ${g.kind.slice(0, 80)} (${g.countBefore} -> ${g.count})`,
    );
  }
}
