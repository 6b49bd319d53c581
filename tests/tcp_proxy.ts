/**
 * A TCP proxy on 127.0.0.1 that a test can cut, to put one client (an
 * informer, a leader) on the far side of a network partition from the API
 * server while everything else still reaches it.
 *
 * ```
 * client ──► 127.0.0.1:port ──(forward | refuse | blackhole)──► target
 * ```
 *
 * @example
 * ```ts
 * const proxy = startTcpProxy({ hostname: "198.18.32.1", port: 6443 });
 * proxy.setMode("blackhole"); // bytes vanish both ways; connections stay open
 * proxy.setMode("forward");
 * await proxy.close();
 * ```
 *
 * @module
 */

/**
 * What the proxy does with traffic: `forward` it; `refuse` it (close every
 * connection, now and as they arrive: the client sees resets); `blackhole` it
 * (keep connections open and drop every byte: the client sees silence, as
 * behind a failed link).
 */
export type ProxyMode = "forward" | "refuse" | "blackhole";

/** A running {@link startTcpProxy}. */
export interface TcpProxy {
  /** The local port to connect to (on 127.0.0.1). */
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Changes what happens to traffic, for open connections too. */
  setMode(mode: ProxyMode): void;
  /** Closes the listener and every connection, and waits until all is done. */
  close(): Promise<void>;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** Starts a proxy to `target` in `forward` mode. */
export function startTcpProxy(target: { hostname: string; port: number }): TcpProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let mode: ProxyMode = "forward";
  let accepted = 0;
  let closed = false;

  const track = (task: Promise<void>) => {
    tasks.add(task);
    task.finally(() => tasks.delete(task));
  };

  // Copies src to dst while forwarding; drops the bytes while blackholed.
  const pump = async (src: Deno.Conn, dst: Deno.Conn | undefined) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await src.read(buf);
        if (n === null) break;
        if (mode === "forward" && dst) await dst.write(buf.subarray(0, n));
      }
    } catch {
      // the other side or close() ended it
    }
  };

  const handle = async (conn: Deno.Conn) => {
    conns.add(conn);
    let upstream: Deno.Conn | undefined;
    const pumps: Promise<void>[] = [];
    try {
      if (mode === "refuse") return;
      if (mode === "forward") {
        upstream = await Deno.connect(target);
        conns.add(upstream);
      }
      pumps.push(pump(conn, upstream));
      if (upstream) pumps.push(pump(upstream, conn));
      // Either side closing ends the connection as a whole.
      await Promise.race(pumps);
    } catch {
      // upstream unreachable: the client sees its connection closed
    } finally {
      for (const c of [conn, upstream]) {
        if (!c) continue;
        conns.delete(c);
        closeQuietly(c);
      }
      await Promise.all(pumps);
    }
  };

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        accepted++;
        track(handle(conn));
      }
    } catch {
      // listener closed
    }
  })();

  return {
    port: (listener.addr as Deno.NetAddr).port,
    get accepted() {
      return accepted;
    },
    setMode(next: ProxyMode) {
      mode = next;
      if (mode === "refuse") { for (const c of conns) closeQuietly(c); }
    },
    async close() {
      if (closed) return;
      closed = true;
      listener.close();
      for (const c of conns) closeQuietly(c);
      await accepting;
      while (tasks.size > 0) await Promise.all([...tasks]);
    },
  };
}
