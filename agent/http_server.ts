/**
 * The agent's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the
 * loop is alive) and `/readyz` (the maps hold the current tables).
 *
 * @module
 */
import type { Registry } from "./metrics.ts";

/** What the endpoints report on. */
export interface Probe {
  /** The loop is alive. */
  readonly healthy: boolean;
  /** The maps hold the current tables. */
  readonly ready: boolean;
}

/** Serves the endpoints on `hostname:port` until the returned server is shut down. */
export function serveEndpoints(
  probe: Probe,
  metrics: Registry,
  options: { port: number; hostname?: string; onListen?: (port: number) => void },
): Deno.HttpServer {
  return Deno.serve({
    port: options.port,
    hostname: options.hostname ?? "0.0.0.0",
    onListen: ({ port }) => options.onListen?.(port),
  }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/metrics") {
      return new Response(await metrics.renderAsync(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    if (path === "/healthz") {
      return new Response(probe.healthy ? "ok\n" : "stalled\n", {
        status: probe.healthy ? 200 : 503,
      });
    }
    if (path === "/readyz") {
      return new Response(probe.ready ? "ok\n" : "not ready\n", {
        status: probe.ready ? 200 : 503,
      });
    }
    return new Response("not found\n", { status: 404 });
  });
}
