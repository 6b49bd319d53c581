/**
 * A backend for traffic tests: answers every TCP line and UDP datagram with
 * `<name> <what it got>`, so a client can tell which backend served it.
 * Prints "ready" once listening.
 *
 * deno run -A --unstable-net echo_server.ts NAME TCP_PORT UDP_PORT
 *
 * @module
 */

async function serveTcp(conn: Deno.TcpConn, name: string): Promise<void> {
  const enc = new TextEncoder();
  let pending = "";
  try {
    for await (const chunk of conn.readable) {
      pending += new TextDecoder().decode(chunk);
      let nl;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        await conn.write(
          enc.encode(`${name} ${line} from ${conn.remoteAddr.hostname}\n`),
        );
      }
    }
  } catch {
    // the client went away
  }
}

async function serveUdp(sock: Deno.DatagramConn, name: string): Promise<void> {
  for await (const [data, addr] of sock) {
    const text = new TextDecoder().decode(data).trim();
    const from = (addr as Deno.NetAddr).hostname;
    await sock.send(
      new TextEncoder().encode(`${name} ${text} from ${from}\n`),
      addr,
    );
  }
}

if (import.meta.main) {
  const [name = "backend", tcpPort = "8080", udpPort = "5353"] = Deno.args;
  const listener = Deno.listen({ hostname: "0.0.0.0", port: Number(tcpPort) });
  const udp = Deno.listenDatagram({
    hostname: "0.0.0.0",
    port: Number(udpPort),
    transport: "udp",
  });
  console.log("ready");
  serveUdp(udp, name);
  for await (const conn of listener) serveTcp(conn, name);
}
