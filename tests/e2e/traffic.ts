/**
 * The e2e suite's clients: what a user's client would see of a Gateway.
 * In-process clients (new TCP connections, new UDP sockets, long-lived
 * connections) for traffic that is answered, and one-shot `bash` probes in a
 * child process for traffic that may be refused or dropped, so that a
 * connect that never completes cannot outlive its test.
 *
 * Every answered request is checked to come back from the address and port
 * it was sent to: a TCP handshake only completes with the address dialled,
 * and a UDP reply's source is compared with the Gateway's.
 *
 * @module
 */

import { parseEchoReply } from "../cluster/echo_server.ts";
import { ip, run } from "../cluster/host.ts";

/** An echo server's answer: which backend, the client address it saw, the text. */
export interface EchoAnswer {
  /** Name of the backend pod that answered. */
  name: string;
  /** Client `ip:port` as the backend saw it. */
  peer: string;
  /** The text sent, echoed. */
  text: string;
}

function parse(reply: string, from: string): EchoAnswer {
  const answer = parseEchoReply(reply);
  if (!answer) throw new Error(`${from}: not an echo reply: ${JSON.stringify(reply)}`);
  return answer;
}

/** Resolves `promise`, or rejects after `ms` with `what` (the timer is always cleared). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A TCP connection that sends lines and reads the echo's answers, one at a time. */
export class LineConnection {
  #buffered = "";
  readonly #buf = new Uint8Array(4096);
  readonly #decoder = new TextDecoder();

  private constructor(readonly conn: Deno.TcpConn, readonly target: string) {}

  /** Opens a connection to `host:port` (rejects on a reset or timeout). */
  static async open(host: string, port: number, timeoutMs = 3000): Promise<LineConnection> {
    // The connect is aborted at the timeout: a SYN retransmitted just then could otherwise
    // still connect after the caller gave up, and nobody would close that connection.
    const abort = new AbortController();
    const conn = await within(
      Deno.connect({ hostname: host, port, transport: "tcp", signal: abort.signal }),
      timeoutMs,
      `tcp connect ${host}:${port}`,
    ).catch((e) => {
      abort.abort();
      throw e;
    });
    const remote = conn.remoteAddr;
    if (remote.hostname !== host || remote.port !== port) {
      conn.close();
      throw new Error(`connected to ${remote.hostname}:${remote.port}, not ${host}:${port}`);
    }
    return new LineConnection(conn, `${host}:${port}`);
  }

  /** The client's own address (`ip:port`) on this connection. */
  get local(): string {
    return `${this.conn.localAddr.hostname}:${this.conn.localAddr.port}`;
  }

  /** Sends one line and resolves to the echo's answer. */
  async ask(text: string, timeoutMs = 3000): Promise<EchoAnswer> {
    await this.conn.write(new TextEncoder().encode(text + "\n"));
    const deadline = Date.now() + timeoutMs;
    while (!this.#buffered.includes("\n")) {
      const n = await within(
        this.conn.read(this.#buf),
        Math.max(1, deadline - Date.now()),
        `tcp ${this.target}`,
      );
      if (n === null) throw new Error(`tcp ${this.target}: closed by the peer`);
      this.#buffered += this.#decoder.decode(this.#buf.subarray(0, n), { stream: true });
    }
    const nl = this.#buffered.indexOf("\n");
    const line = this.#buffered.slice(0, nl);
    this.#buffered = this.#buffered.slice(nl + 1);
    return parse(line, `tcp ${this.target}`);
  }

  /** Closes the connection (harmless twice). */
  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/**
 * One request over a new TCP connection. Throws on a reset or a timeout; use
 * it only where the Gateway is expected to answer (see {@linkcode tcpProbe}).
 */
export async function tcpAsk(host: string, port: number, text: string): Promise<EchoAnswer> {
  const conn = await LineConnection.open(host, port);
  try {
    return await conn.ask(text);
  } finally {
    conn.close();
  }
}

/**
 * One request over a new TCP connection that tells a reset apart from an
 * answer: `"reset"` when the connection was refused (a TCP RST).
 */
export async function tcpAskOrReset(
  host: string,
  port: number,
  text: string,
): Promise<EchoAnswer | "reset"> {
  try {
    return await tcpAsk(host, port, text);
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused) return "reset";
    throw e;
  }
}

/** One datagram from a new UDP socket; the reply must come from `host:port`. */
export async function udpAsk(
  host: string,
  port: number,
  text: string,
  timeoutMs = 3000,
): Promise<EchoAnswer> {
  const socket = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });
  try {
    await socket.send(new TextEncoder().encode(text), { hostname: host, port, transport: "udp" });
    const [data, addr] = await within(socket.receive(), timeoutMs, `udp ${host}:${port}`);
    const from = addr as Deno.NetAddr;
    if (from.hostname !== host || from.port !== port) {
      throw new Error(`udp reply came from ${from.hostname}:${from.port}, not ${host}:${port}`);
    }
    return parse(new TextDecoder().decode(data), `udp ${host}:${port}`);
  } finally {
    socket.close();
  }
}

/** A UDP socket kept open: one flow (same source port) over many datagrams. */
export class UdpFlow {
  readonly socket = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });

  constructor(readonly host: string, readonly port: number) {}

  /** Sends one datagram and resolves to the answer, which must come from `host:port`. */
  async ask(text: string, timeoutMs = 3000): Promise<EchoAnswer> {
    const target = { hostname: this.host, port: this.port, transport: "udp" } as const;
    await this.socket.send(new TextEncoder().encode(text), target);
    const [data, addr] = await within(
      this.socket.receive(),
      timeoutMs,
      `udp ${this.host}:${this.port}`,
    );
    const from = addr as Deno.NetAddr;
    if (from.hostname !== this.host || from.port !== this.port) {
      throw new Error(`udp reply came from ${from.hostname}:${from.port}, not the Gateway`);
    }
    return parse(new TextDecoder().decode(data), `udp ${this.host}:${this.port}`);
  }

  /** Closes the socket (harmless twice). */
  close(): void {
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}

/** What a probe in a child process saw. */
export type ProbeResult =
  | { kind: "answer"; answer: EchoAnswer; ms: number }
  | { kind: "reset" | "refused" | "unreachable" | "timeout" | "error"; detail: string; ms: number };

/**
 * One TCP request through bash's `/dev/tcp` in a child process: an answer,
 * `reset` (connection refused), `unreachable` (an ICMP error) or `timeout`.
 */
export async function tcpProbe(host: string, port: number, timeoutS = 2): Promise<ProbeResult> {
  const started = performance.now();
  const res = await run([
    "timeout",
    String(timeoutS),
    "bash",
    "-c",
    `exec 2>&1; exec 3<>/dev/tcp/${host}/${port} && echo probe >&3 && head -n1 <&3`,
  ], { allowFailure: true });
  const ms = performance.now() - started;
  const out = res.stdout.trim();
  if (res.code === 0 && out) return { kind: "answer", answer: parse(out, "tcp probe"), ms };
  if (/Connection refused/.test(out)) return { kind: "reset", detail: out, ms };
  if (/unreachable/i.test(out)) return { kind: "unreachable", detail: out, ms };
  if (res.code === 124) return { kind: "timeout", detail: out, ms };
  return { kind: "error", detail: `exit ${res.code}: ${out}`, ms };
}

/**
 * One UDP request over a connected socket (bash's `/dev/udp`) in a child
 * process; a second send reports an ICMP port unreachable as `refused`.
 */
export async function udpProbe(host: string, port: number): Promise<ProbeResult> {
  const started = performance.now();
  const res = await run([
    "timeout",
    "3",
    "bash",
    "-c",
    `exec 2>&1; exec 3<>/dev/udp/${host}/${port}; echo probe >&3; sleep 0.3; ` +
    `echo probe >&3 || exit 9; timeout 1 head -n1 <&3`,
  ], { allowFailure: true });
  const ms = performance.now() - started;
  const out = res.stdout.trim();
  if (res.code === 9 || /Connection refused/.test(out)) return { kind: "refused", detail: out, ms };
  if (res.code === 0 && out) return { kind: "answer", answer: parse(out, "udp probe"), ms };
  if (/unreachable/i.test(out)) return { kind: "unreachable", detail: out, ms };
  if (res.code === 124) return { kind: "timeout", detail: out, ms };
  return { kind: "error", detail: `exit ${res.code}: ${out}`, ms };
}

/** How many of `n` requests each backend answered (and `reset` for refused ones). */
export async function countAnswers(
  n: number,
  ask: (i: number) => Promise<EchoAnswer | "reset">,
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const answer = await ask(i);
    const key = answer === "reset" ? "reset" : answer.name;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** `counts` as `name n (p%)`, for assertion messages. */
export function describeCounts(counts: Map<string, number>, total: number): string {
  return [...counts].sort(([a], [b]) => a.localeCompare(b))
    .map(([name, n]) => `${name} ${n} (${((100 * n) / total).toFixed(1)}%)`).join(", ");
}

/**
 * Routes `address`/32 from the host through `nodeIP` (more specific than the
 * pool's ECMP route), so a test knows which node's data plane gets the
 * traffic; the returned function removes the route.
 */
export async function routeThrough(address: string, nodeIP: string): Promise<() => Promise<void>> {
  await ip(["route", "replace", `${address}/32`, "via", nodeIP]);
  return async () => {
    await ip(["route", "del", `${address}/32`, "via", nodeIP]).catch(() => {});
  };
}

/** Packets the host sent, counted by the kernel (nftables), to compare with blixt's counters. */
export interface SentPackets {
  /** Packets sent so far to each `protocol/port` watched. */
  read(): Promise<Record<string, number>>;
  /** Removes the counters. */
  remove(): Promise<void>;
}

/**
 * Counts the packets the host sends to `address` on each of `ports`
 * (`"tcp/81"`, `"udp/54"`) with nftables counters in a table of its own,
 * `name` (unique per cluster, so parallel tests do not share it).
 */
export async function countSentPackets(
  name: string,
  address: string,
  ports: string[],
): Promise<SentPackets> {
  const table = `blixt_${name.replaceAll("-", "_")}`;
  const nft = (args: string[]) => run(["nft", ...args]);
  await nft(["delete", "table", "ip", table]).catch(() => {});
  await nft(["add", "table", "ip", table]);
  await nft([
    "add",
    "chain",
    "ip",
    table,
    "out",
    "{ type filter hook output priority 0; policy accept; }",
  ]);
  for (const port of ports) {
    const [protocol = "", number = ""] = port.split("/");
    const counter = `${protocol}_${number}`;
    await nft(["add", "counter", "ip", table, counter]);
    await nft([
      "add",
      "rule",
      "ip",
      table,
      "out",
      "ip",
      "daddr",
      address,
      protocol,
      "dport",
      number,
      "counter",
      "name",
      counter,
    ]);
  }
  return {
    async read() {
      const out = JSON.parse(
        (await nft(["-j", "list", "counters", "table", "ip", table])).stdout,
      ) as {
        nftables: { counter?: { name: string; packets: number } }[];
      };
      const counts: Record<string, number> = {};
      for (const item of out.nftables) {
        if (item.counter) counts[item.counter.name.replace("_", "/")] = item.counter.packets;
      }
      return counts;
    },
    async remove() {
      await nft(["delete", "table", "ip", table]).catch(() => {});
    },
  };
}
