/**
 * `deno task operator [--kubeconfig PATH] [--context NAME] [--health-port 8081]
 * [--identity NAME] [--lease-namespace blixt-system]`: runs the operator, in
 * a cluster (in-cluster service account) or from outside (kubeconfig).
 *
 * Serves `/healthz` (the process is up), `/readyz` (the caches are synced)
 * and `/metrics` (Prometheus text) on the health port. SIGUSR2 writes a V8 heap
 * snapshot to `$TMPDIR` (or /tmp) as `blixt-operator-PID-MS.heapsnapshot`, for
 * memory diagnosis; the operator stands still while it is written.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { writeHeapSnapshot } from "node:v8";
import { loadKubeConfig } from "../kube/client.ts";
import { Operator } from "./controller.ts";

/** Prometheus text of the operator's metrics. */
export function operatorMetrics(operator: Operator): string {
  const s = operator.stats;
  const memory = Deno.memoryUsage();
  const sorted = [...s.latenciesMs].sort((a, b) => a - b);
  const q = (p: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! / 1000 : 0;
  return [
    "# HELP blixt_operator_reconciles_total Reconciles run (Gateways and GatewayClasses).",
    "# TYPE blixt_operator_reconciles_total counter",
    `blixt_operator_reconciles_total ${s.reconciles}`,
    "# HELP blixt_operator_reconcile_errors_total Reconciles that failed and were retried.",
    "# TYPE blixt_operator_reconcile_errors_total counter",
    `blixt_operator_reconcile_errors_total ${s.errors}`,
    "# HELP blixt_operator_reconcile_conflicts_total Writes that lost an optimistic-concurrency race.",
    "# TYPE blixt_operator_reconcile_conflicts_total counter",
    `blixt_operator_reconcile_conflicts_total ${s.conflicts}`,
    "# HELP blixt_operator_reconcile_seconds Reconcile and write latency over recent reconciles.",
    "# TYPE blixt_operator_reconcile_seconds summary",
    `blixt_operator_reconcile_seconds{quantile="0.5"} ${q(0.5)}`,
    `blixt_operator_reconcile_seconds{quantile="0.99"} ${q(0.99)}`,
    `blixt_operator_reconcile_seconds_count ${sorted.length}`,
    "# HELP blixt_operator_queue_depth Keys waiting in the work queue.",
    "# TYPE blixt_operator_queue_depth gauge",
    `blixt_operator_queue_depth ${operator.queue.length}`,
    "# HELP blixt_operator_leader Whether this replica leads.",
    "# TYPE blixt_operator_leader gauge",
    `blixt_operator_leader ${operator.leading ? 1 : 0}`,
    "# HELP process_resident_memory_bytes Resident memory size in bytes.",
    "# TYPE process_resident_memory_bytes gauge",
    `process_resident_memory_bytes ${memory.rss}`,
    "# HELP blixt_operator_heap_used_bytes V8 heap in use (live objects and garbage not yet collected).",
    "# TYPE blixt_operator_heap_used_bytes gauge",
    `blixt_operator_heap_used_bytes ${memory.heapUsed}`,
    "# HELP blixt_operator_heap_total_bytes V8 heap reserved.",
    "# TYPE blixt_operator_heap_total_bytes gauge",
    `blixt_operator_heap_total_bytes ${memory.heapTotal}`,
    "# HELP blixt_operator_external_memory_bytes Memory outside the V8 heap held by JavaScript objects (buffers, TLS).",
    "# TYPE blixt_operator_external_memory_bytes gauge",
    `blixt_operator_external_memory_bytes ${memory.external}`,
    "",
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      kubeconfig: { type: "string" },
      context: { type: "string" },
      "health-port": { type: "string", default: "8081" },
      identity: { type: "string" },
      "lease-namespace": { type: "string", default: "blixt-system" },
    },
  });
  const kc = loadKubeConfig({ kubeconfig: values.kubeconfig, context: values.context });
  const identity = values.identity ?? Deno.env.get("POD_NAME") ??
    `${Deno.hostname()}-${Deno.pid}`;
  const operator = new Operator(kc, { identity, leaseNamespace: values["lease-namespace"] });
  const server = Deno.serve({
    port: Number(values["health-port"]),
    hostname: "0.0.0.0",
    onListen: () => {},
  }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/healthz") return new Response("ok\n");
    if (path === "/readyz") {
      return operator.synced
        ? new Response("ok\n")
        : new Response("caches not synced\n", { status: 503 });
    }
    if (path === "/metrics") {
      return new Response(operatorMetrics(operator), {
        headers: { "content-type": "text/plain; version=0.0.4" },
      });
    }
    return new Response("not found\n", { status: 404 });
  });
  const shutdown = async () => {
    await operator.stop();
    await server.shutdown();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", shutdown);
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGUSR2", () => {
    const dir = Deno.env.get("TMPDIR") ?? "/tmp";
    const path = writeHeapSnapshot(`${dir}/blixt-operator-${Deno.pid}-${Date.now()}.heapsnapshot`);
    console.error(`heap snapshot written: ${path}`);
  });
  await operator.start();
}
