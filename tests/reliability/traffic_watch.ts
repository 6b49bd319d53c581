/**
 * What a user's clients see of a Gateway while something fails: long-lived
 * TCP and UDP flows asking every 100 ms, and new TCP connections and UDP
 * sockets every 200 ms, each answer checked to come from the Gateway. Every
 * failure is kept with its time and kind (reset, timeout, ...).
 *
 * ```
 * host ──► VIP:tcp  long-lived connection (one flow)   ask every 100 ms
 *      ──► VIP:udp  long-lived socket (one flow)       ask every 100 ms
 *      ──► VIP:tcp  a new connection                   every 200 ms
 *      ──► VIP:udp  a new socket                       every 200 ms
 * ```
 *
 * @module
 */
import { sleep } from "../cluster/host.ts";
import { LineConnection, tcpAsk, udpAsk, UdpFlow } from "../e2e/traffic.ts";

/** One request that got no answer. */
export interface Failure {
  /** ms since the watch started. */
  at: number;
  /** Which client: `long-tcp`, `long-udp`, `new-tcp`, `new-udp`. */
  client: string;
  /** `reset` (the connection was reset or closed), `timeout`, or the error. */
  kind: string;
  /** The backend a long-lived flow had until then, if any. */
  backend?: string;
}

/** What the clients saw. */
export interface TrafficReport {
  /** Requests per client. */
  sent: Record<string, number>;
  /** Failed requests per client. */
  failed: Record<string, number>;
  /** Failures, in order (the first 50). */
  failures: Failure[];
  /** Longest run of consecutive failures of one client, in ms (0: none). */
  longestGapMs: number;
  /** Backends that answered new connections, with counts. */
  backends: Record<string, number>;
  /** Answers on a long-lived flow from another backend than its first (misrouted). */
  moved: Record<string, number>;
}

/** A running watch: `stop()` ends it and reports. */
export interface TrafficWatch {
  /** ms since the watch started. */
  elapsed(): number;
  /** Failures so far. */
  failures(): number;
  /** Stops every client and returns what they saw. */
  stop(): Promise<TrafficReport>;
}

function kindOf(e: unknown): string {
  const s = String(e);
  if (
    e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe ||
    /closed by the peer|reset/i.test(s)
  ) return "reset";
  if (e instanceof Deno.errors.ConnectionRefused) return "refused";
  if (/no answer in/.test(s)) return "timeout";
  return s.slice(0, 120);
}

/** Starts the four clients of the module doc against `address`. */
export function watchTraffic(
  address: string,
  ports: { tcp: number; udp: number },
  options: { timeoutMs?: number } = {},
): TrafficWatch {
  const timeoutMs = options.timeoutMs ?? 2000;
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let running = true;
  const report: TrafficReport = {
    sent: {},
    failed: {},
    failures: [],
    longestGapMs: 0,
    backends: {},
    moved: {},
  };
  const same = (client: string, backend: string) => {
    const first = flowBackend[client] ??= backend;
    if (first !== backend) report.moved[client] = (report.moved[client] ?? 0) + 1;
  };
  const firstFailure: Record<string, number | undefined> = {};
  const flowBackend: Record<string, string | undefined> = {};
  const ok = (client: string, backend?: string) => {
    report.sent[client] = (report.sent[client] ?? 0) + 1;
    const first = firstFailure[client];
    if (first !== undefined) {
      report.longestGapMs = Math.max(report.longestGapMs, elapsed() - first);
      firstFailure[client] = undefined;
    }
    if (backend) report.backends[backend] = (report.backends[backend] ?? 0) + 1;
  };
  const fail = (client: string, e: unknown) => {
    report.sent[client] = (report.sent[client] ?? 0) + 1;
    report.failed[client] = (report.failed[client] ?? 0) + 1;
    firstFailure[client] ??= elapsed();
    if (report.failures.length < 50) {
      const backend = flowBackend[client];
      report.failures.push({
        at: elapsed(),
        client,
        kind: kindOf(e),
        ...(backend ? { backend } : {}),
      });
    }
  };
  const loop = async (every: number, fn: () => Promise<void>) => {
    while (running) {
      const t = performance.now();
      await fn();
      await sleep(Math.max(0, every - (performance.now() - t)));
    }
  };
  let tcp: LineConnection | undefined;
  const udp = new UdpFlow(address, ports.udp);
  const loops = [
    loop(100, async () => {
      try {
        tcp ??= await LineConnection.open(address, ports.tcp, timeoutMs);
        same("long-tcp", (await tcp.ask("long", timeoutMs)).name);
        ok("long-tcp");
      } catch (e) {
        // The flow is gone: the next round opens another (a new flow, counted as such).
        fail("long-tcp", e);
        tcp?.close();
        tcp = undefined;
        flowBackend["long-tcp"] = undefined;
      }
    }),
    loop(100, async () => {
      try {
        same("long-udp", (await udp.ask("long", timeoutMs)).name);
        ok("long-udp");
      } catch (e) {
        fail("long-udp", e);
      }
    }),
    loop(200, async () => {
      try {
        ok("new-tcp", (await tcpAsk(address, ports.tcp, "new")).name);
      } catch (e) {
        fail("new-tcp", e);
      }
    }),
    loop(200, async () => {
      try {
        ok("new-udp", (await udpAsk(address, ports.udp, "new", timeoutMs)).name);
      } catch (e) {
        fail("new-udp", e);
      }
    }),
  ];
  return {
    elapsed,
    failures: () => Object.values(report.failed).reduce((a, b) => a + b, 0),
    async stop() {
      running = false;
      await Promise.all(loops);
      tcp?.close();
      udp.close();
      for (const first of Object.values(firstFailure)) {
        if (first !== undefined) {
          report.longestGapMs = Math.max(report.longestGapMs, elapsed() - first);
        }
      }
      return report;
    },
  };
}

/** One line for a test's output: requests and failures per client. */
export function describeTraffic(r: TrafficReport): string {
  const clients = Object.keys(r.sent).sort();
  const parts = clients.map((c) => `${c} ${r.failed[c] ?? 0}/${r.sent[c]} failed`);
  const kinds = new Map<string, number>();
  for (const f of r.failures) {
    const k = `${f.client} ${f.kind}${f.backend ? ` (flow on ${f.backend})` : ""}`;
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  const moved = Object.entries(r.moved).map(([c, n]) => `${c} ${n}`).join(", ") || "none";
  return `${parts.join(", ")}; moved ${moved}; longest gap ${r.longestGapMs} ms${
    kinds.size ? `; failures: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(", ")}` : ""
  }`;
}

/**
 * Opens a new TCP connection every 50 ms until `n` in a row are answered by a
 * backend `want` accepts; resolves to the ms that took (rejects after `timeoutMs`).
 */
export async function newConnectionsConverge(
  address: string,
  port: number,
  want: (backend: string) => boolean,
  options: { n?: number; timeoutMs?: number } = {},
): Promise<number> {
  const n = options.n ?? 10;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const started = performance.now();
  let inRow = 0;
  const seen: string[] = [];
  while (inRow < n) {
    if (performance.now() - started > timeoutMs) {
      throw new Error(
        `new connections did not converge in ${timeoutMs / 1000} s; last: ${seen.slice(-10)}`,
      );
    }
    let name: string;
    try {
      name = (await tcpAsk(address, port, "converge")).name;
    } catch (e) {
      name = kindOf(e);
    }
    seen.push(name);
    inRow = want(name) ? inRow + 1 : 0;
    await sleep(50);
  }
  return Math.round(performance.now() - started);
}
