/**
 * One-off analysis: splits a CPU profile of kube-apiserver taken while
 * RoutingTables were written into the phases of a write (docs/performance.md,
 * "The API server's share of a table write").
 *
 * ```sh
 * deno run -A bench/tools/apiserver_split.ts cpu.pb.gz [--requests N]
 * ```
 *
 * Reads the profile's stacks with `go tool pprof -traces`; each sample goes to
 * the first phase (in the order below) one of whose patterns is in its stack,
 * so a phase's share includes the allocation and GC assists it caused, while
 * the background mark workers are a phase of their own. `--requests`: the
 * writes in the profile's window (the difference of `apiserver_request_total`
 * before and after it), for ms per request.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** Phases of a write, the first match wins: more specific ones come first. */
const PHASES: [string, string[]][] = [
  ["GC: background mark workers", ["runtime.gcBgMarkWorker"]],
  ["watch: etcd event decoded for the watch cache", ["etcd3.(*watchChan)"]],
  ["watch: cache + fan-out to watchers", [
    "cacher.(*Cacher)",
    "cacher.(*cacheWatcher)",
    "cacher.(*watchCache)",
    "cacher.(*watchCacheInterval)",
    "handlers.serveWatch",
    "handlers.(*WatchServer)",
    "watchEncoder",
    "cachingObject",
  ]],
  ["response: encode + write", ["handlers.transformResponseObject"]],
  ["managedFields (field manager and its admission check)", ["fieldmanager", "managedfields"]],
  ["CEL", ["/cel.", "cel-go", "celconfig"]],
  ["OpenAPI schema validation", [
    "RatchetingSchemaValidator",
    "validation.ValidateCustomResource",
    "kube-openapi/pkg/validation/validate",
    "customResourceValidator",
  ]],
  ["other validation (metadata, list types)", [
    "rest.BeforeUpdate",
    "ValidateUpdate",
    "ValidateObjectMeta",
  ]],
  ["conversion (same version: coerce + prune again)", ["schemaCoercingConverter"]],
  ["pruning, defaulting, metadata coercion (decode)", ["unstructuredSchemaCoercer"]],
  ["JSON patch apply", ["applyJSPatch", "json-patch"]],
  ["JSON decode into unstructured", [
    "sigs.k8s.io/json",
    "unstructuredJSONScheme).Decode",
    "runtime.DecodeInto",
    "schemaCoercingDecoder",
    "corruptObjErrorInterpretingDecoder",
    "etcd3.decode",
  ]],
  ["JSON encode (object for the patch, for etcd)", [
    "runtime.Encode",
    "encoding/json.(*encodeState)",
    "unstructuredJSONScheme).Encode",
  ]],
  ["etcd client (txn, gRPC)", ["go.etcd.io", "google.golang.org/grpc"]],
  ["admission", ["admission"]],
  ["update: other", ["GuaranteedUpdate", "registry.(*Store).Update"]],
  ["request: read body, handler", [
    "handlers.PatchResource",
    "handlers.UpdateResource",
    "handlers.(*patcher)",
    "finishRequest",
  ]],
  ["HTTP, TLS, filters", ["crypto/tls", "net/http", "golang.org/x/net/http2", "filters."]],
  ["GC: assists and sweeping elsewhere", [
    "runtime.gc",
    "runtime.bgsweep",
    "runtime.bgscavenge",
    "runtime.mallocgc",
  ]],
];

const UNITS: Record<string, number> = { s: 1000, ms: 1, us: 0.001, ns: 1e-6 };

/** Samples of a profile as (ms, stack text) from `go tool pprof -traces`. */
async function traces(path: string): Promise<[number, string][]> {
  const out = await new Deno.Command("go", { args: ["tool", "pprof", "-traces", path] }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  const text = new TextDecoder().decode(out.stdout);
  const samples: [number, string][] = [];
  for (const block of text.split(/-{11}\+-+/).slice(1)) {
    const lines = block.split("\n").filter((l) => l.trim() !== "");
    const m = /^\s*([\d.]+)(s|ms|us|ns)?\s+(.*)$/.exec(lines[0] ?? "");
    if (!m) continue;
    const ms = Number(m[1]) * (UNITS[m[2] ?? "ms"] ?? 1);
    samples.push([ms, [m[3], ...lines.slice(1)].join("\n")]);
  }
  return samples;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { requests: { type: "string", default: "0" } },
  });
  const path = positionals[0];
  if (!path) throw new Error("usage: apiserver_split.ts PROFILE [--requests N]");
  const n = Number(values.requests);
  const sums = new Map<string, number>([...PHASES.map(([p]) => [p, 0] as [string, number])]);
  sums.set("other", 0);
  let total = 0;
  for (const [ms, stack] of await traces(path)) {
    total += ms;
    const phase = PHASES.find(([, pats]) => pats.some((p) => stack.includes(p)))?.[0] ?? "other";
    sums.set(phase, sums.get(phase)! + ms);
  }
  const per = (ms: number) => n > 0 ? `${(ms / n).toFixed(2)} ms/request` : `${ms.toFixed(0)} ms`;
  console.log(`${total.toFixed(0)} ms of samples${n > 0 ? `, ${per(total)}` : ""}`);
  for (const [phase, ms] of sums) {
    if (ms > 0) console.log(`${(100 * ms / total).toFixed(1).padStart(5)}%  ${per(ms)}  ${phase}`);
  }
}

if (import.meta.main) await main();
