/**
 * The local cluster's default pod process: a TCP and UDP echo server that
 * names itself, so a test can tell which backend answered and what source
 * address it saw.
 *
 * TCP: every line `L` a client sends is answered with `<name> <peer> L`,
 * where `<peer>` is the client address as the server saw it (`ip:port`).
 * UDP: every datagram `D` is answered with `<name> <peer> D`.
 *
 * Run: `deno run -A --unstable-net echo_server.ts --name NAME [--port 8080]`
 * (`--tcp-port` / `--udp-port` set the two apart). It prints one line
 * starting with `ready` once both sockets listen.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** What an echo server says back to a line or datagram. */
export function echoReply(
  name: string,
  peer: Deno.NetAddr,
  text: string,
): string {
  return `${name} ${peer.hostname}:${peer.port} ${text}`;
}

/** Parses an echo reply back into its parts (for tests). */
export function parseEchoReply(
  reply: string,
): { name: string; peer: string; text: string } | undefined {
  const m = /^(\S+) (\S+) (.*)$/s.exec(reply.replace(/\n$/, ""));
  if (!m) return undefined;
  return { name: m[1]!, peer: m[2]!, text: m[3]! };
}

async function serveTcpConnection(
  name: string,
  conn: Deno.TcpConn,
): Promise<void> {
  const peer = conn.remoteAddr;
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let pending = "";
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      pending += decoder.decode(buf.subarray(0, n), { stream: true });
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const out = encoder.encode(echoReply(name, peer, line) + "\n");
        for (let off = 0; off < out.length;) {
          off += await conn.write(out.subarray(off));
        }
      }
    }
  } catch {
    // a reset or a half-closed peer ends the connection, not the server
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

async function serveTcp(name: string, listener: Deno.TcpListener): Promise<void> {
  for await (const conn of listener) {
    serveTcpConnection(name, conn);
  }
}

async function serveUdp(name: string, socket: Deno.DatagramConn): Promise<void> {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  for await (const [data, addr] of socket) {
    const peer = addr as Deno.NetAddr;
    const reply = echoReply(name, peer, decoder.decode(data));
    await socket.send(encoder.encode(reply), peer).catch(() => {});
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      name: { type: "string" },
      port: { type: "string", default: "8080" },
      "tcp-port": { type: "string" },
      "udp-port": { type: "string" },
    },
  });
  const name = values.name ?? Deno.hostname();
  const tcpPort = Number(values["tcp-port"] ?? values.port);
  const udpPort = Number(values["udp-port"] ?? values.port);
  const listener = Deno.listen({ hostname: "0.0.0.0", port: tcpPort, transport: "tcp" });
  const socket = Deno.listenDatagram({ hostname: "0.0.0.0", port: udpPort, transport: "udp" });
  console.log(`ready: echo server ${name} on tcp port ${tcpPort} and udp port ${udpPort}`);
  await Promise.all([serveTcp(name, listener), serveUdp(name, socket)]);
}
