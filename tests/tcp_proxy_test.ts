/**
 * The partition proxy does what a cut link does: forwards, then refuses or
 * swallows traffic, then forwards again, and leaves nothing open.
 */

import assert from "node:assert/strict";
import { startTcpProxy } from "./tcp_proxy.ts";

/** A line echo server; returns its port and a function that stops it. */
function startEchoServer(): { port: number; close: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        tasks.push((async () => {
          const buf = new Uint8Array(1024);
          try {
            let n: number | null;
            while ((n = await conn.read(buf)) !== null) await conn.write(buf.subarray(0, n));
          } catch {
            // closed
          } finally {
            conns.delete(conn);
            try {
              conn.close();
            } catch {
              // already closed
            }
          }
        })());
      }
    } catch {
      // listener closed
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: async () => {
      listener.close();
      for (const c of conns) c.close();
      await accepting;
      await Promise.all(tasks);
    },
  };
}

/** Sends `text` and returns the reply, or "timeout" / "closed". */
async function roundTrip(conn: Deno.Conn, text: string, timeoutMs = 300): Promise<string> {
  await conn.write(new TextEncoder().encode(text)).catch(() => {});
  const buf = new Uint8Array(1024);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  const read = conn.read(buf).then(
    (n) => n === null ? "closed" : new TextDecoder().decode(buf.subarray(0, n)),
    () => "closed",
  );
  const reply = await Promise.race([read, timeout]);
  clearTimeout(timer);
  if (reply === "timeout") {
    conn.close();
    await read;
  }
  return reply;
}

Deno.test("tcp proxy: forwards, swallows when blackholed, resets when refusing, forwards again", async () => {
  const echo = startEchoServer();
  const proxy = startTcpProxy({ hostname: "127.0.0.1", port: echo.port });
  try {
    const a = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    assert.equal(await roundTrip(a, "one"), "one");
    proxy.setMode("blackhole");
    assert.equal(await roundTrip(a, "two"), "timeout", "nothing comes back through a black hole");
    proxy.setMode("refuse");
    const b = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    assert.equal(await roundTrip(b, "three"), "closed", "a refusing proxy closes new connections");
    b.close();
    proxy.setMode("forward");
    const c = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    assert.equal(await roundTrip(c, "four"), "four");
    c.close();
    assert.equal(proxy.accepted, 3);
  } finally {
    await proxy.close();
    await echo.close();
  }
});
