/**
 * Clients for the echo server: one TCP line or one UDP datagram, with a
 * deadline. Usable in-process (from the host's namespace) or as a command
 * inside any network namespace:
 *
 * `deno run -A --unstable-net echo_client.ts --tcp|--udp HOST PORT TEXT`
 * prints the reply and exits 0, or prints the error and exits 1.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Sends `text` as one line over a new TCP connection; resolves to the reply line. */
export async function tcpEcho(
  host: string,
  port: number,
  text: string,
  options: { timeoutMs?: number } = {},
): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 3000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const conn = await Promise.race([
    Deno.connect({ hostname: host, port, transport: "tcp" }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`tcp connect ${host}:${port} timed out`)),
        timeoutMs,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  try {
    await conn.write(new TextEncoder().encode(text + "\n"));
    const decoder = new TextDecoder();
    let reply = "";
    const buf = new Uint8Array(4096);
    const deadline = Date.now() + timeoutMs;
    while (!reply.includes("\n")) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Error(`tcp ${host}:${port}: no reply in ${timeoutMs} ms`);
      }
      let t: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        conn.read(buf),
        new Promise<"timeout">((resolve) => {
          t = setTimeout(() => resolve("timeout"), remaining);
        }),
      ]).finally(() => clearTimeout(t));
      if (n === "timeout") continue;
      if (n === null) {
        throw new Error(`tcp ${host}:${port}: closed before a reply`);
      }
      reply += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    return reply.slice(0, reply.indexOf("\n"));
  } finally {
    conn.close();
  }
}

/** Sends `text` as one UDP datagram; resolves to the reply datagram's text. */
export async function udpEcho(
  host: string,
  port: number,
  text: string,
  options: { timeoutMs?: number } = {},
): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 3000;
  const socket = Deno.listenDatagram({
    hostname: "0.0.0.0",
    port: 0,
    transport: "udp",
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await socket.send(new TextEncoder().encode(text), {
      hostname: host,
      port,
      transport: "udp",
    });
    const [data] = await Promise.race([
      socket.receive(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(`udp ${host}:${port}: no reply in ${timeoutMs} ms`),
            ),
          timeoutMs,
        );
      }),
    ]);
    return new TextDecoder().decode(data);
  } finally {
    clearTimeout(timer);
    socket.close();
  }
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      tcp: { type: "boolean" },
      udp: { type: "boolean" },
      timeout: { type: "string", default: "3000" },
    },
  });
  const [host, port, text] = positionals;
  if (!host || !port || text === undefined || values.tcp === values.udp) {
    console.error("usage: echo_client.ts --tcp|--udp HOST PORT TEXT");
    Deno.exit(2);
  }
  try {
    const echo = values.tcp ? tcpEcho : udpEcho;
    console.log(
      await echo(host, Number(port), text, {
        timeoutMs: Number(values.timeout),
      }),
    );
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(1);
  }
}
