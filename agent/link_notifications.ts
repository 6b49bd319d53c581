/**
 * The kernel's rtnetlink link notifications (`RTMGRP_LINK`), read from a
 * netlink socket through libc (`Deno.dlopen`), so the agent learns within
 * milliseconds that an interface was made, changed or deleted:
 *
 * ```
 * kernel ── RTM_NEWLINK / RTM_DELLINK ──> netlink socket (made in the node's netns)
 *                                              │ poll(socket, eventfd) on a blocking thread
 *                                              ▼
 *                       drain (recv, MSG_DONTWAIT) ──> onLink({ kind, ifindex, name })
 * ```
 *
 * Deno has no netlink sockets; libc's `socket`, `bind`, `poll` and `recv`
 * are the same few calls `ip monitor link` makes, without a child process to
 * keep alive or an iproute2 package in the agent's image (docs/decisions.md).
 * The `poll` runs as a nonblocking FFI call (on a thread of Deno's blocking
 * pool, asleep in the kernel until a message comes), so the event loop is
 * free and an idle node costs nothing; {@linkcode LinkNotifications.stop}
 * wakes it through an eventfd. A socket that overflowed (the kernel dropped
 * notifications: `ENOBUFS`) reports `{ kind: "lost" }`: whoever listens must
 * look at everything again.
 *
 * @module
 */
import { inNetns, LibbpfError } from "./bpf/libbpf.ts";

/** One notification about a link. */
export type LinkEvent =
  | { kind: "new" | "deleted"; ifindex: number; name: string | undefined }
  /** Notifications were lost (the socket's buffer overflowed): anything may have changed. */
  | { kind: "lost" };

/** Options of {@linkcode watchLinkNotifications}. */
export interface LinkNotificationOptions {
  /** Network namespace whose links are watched, e.g. `/run/netns/NAME`; default the agent's own. */
  netns?: string;
  /** Called once when reading fails for good (the socket is closed then; subscribe again). */
  onError?: (error: unknown) => void;
}

/** A running subscription; {@linkcode LinkNotifications.stop} ends it. */
export interface LinkNotifications {
  /** Stops reading and closes the socket; resolves once the blocked `poll` has returned. */
  stop(): Promise<void>;
}

const libcSymbols = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
} as const;

// Loaded when this module is imported, for the process's life (as libbpf.ts loads its libraries).
const libc = Deno.dlopen("libc.so.6", libcSymbols).symbols;
function errno(): number {
  const p = libc.__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const RTMGRP_LINK = 1;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const MSG_DONTWAIT = 0x40;
const POLLIN = 1;
const EAGAIN = 11;
const EINTR = 4;
const ENOBUFS = 105;
const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const IFLA_IFNAME = 3;
/** `struct nlmsghdr` (16 bytes) then `struct ifinfomsg` (16 bytes), then attributes. */
const NLMSG_HDRLEN = 16;
const IFINFO_LEN = 16;
/** Enough for a burst of link messages between two reads (each is about 1-1.5 KiB). */
const RCVBUF = 1 << 20;

/**
 * Parses the link messages in one datagram read from the socket (a
 * notification datagram may hold several messages).
 */
export function parseLinkMessages(buf: Uint8Array, length: number): LinkEvent[] {
  const v = new DataView(buf.buffer, buf.byteOffset, length);
  const events: LinkEvent[] = [];
  for (let off = 0; off + NLMSG_HDRLEN <= length;) {
    const len = v.getUint32(off, true);
    const type = v.getUint16(off + 4, true);
    if (len < NLMSG_HDRLEN || off + len > length) break;
    if ((type === RTM_NEWLINK || type === RTM_DELLINK) && len >= NLMSG_HDRLEN + IFINFO_LEN) {
      const ifindex = v.getInt32(off + NLMSG_HDRLEN + 4, true);
      let name: string | undefined;
      for (let a = off + NLMSG_HDRLEN + IFINFO_LEN; a + 4 <= off + len;) {
        const alen = v.getUint16(a, true);
        if (alen < 4 || a + alen > off + len) break;
        if ((v.getUint16(a + 2, true) & 0x3fff) === IFLA_IFNAME) {
          const bytes = buf.subarray(a + 4, a + alen);
          const nul = bytes.indexOf(0);
          name = new TextDecoder().decode(nul < 0 ? bytes : bytes.subarray(0, nul));
          break;
        }
        a += (alen + 3) & ~3;
      }
      events.push({ kind: type === RTM_NEWLINK ? "new" : "deleted", ifindex, name });
    }
    off += (len + 3) & ~3;
  }
  return events;
}

/**
 * Subscribes to the link notifications of the agent's network namespace (or
 * `options.netns`) and calls `onLink` with each, as they come. Throws when
 * the socket cannot be made (then only a periodic look sees changes).
 *
 * @example
 * ```ts
 * const links = watchLinkNotifications((e) => console.log(e));
 * // ... on shutdown
 * await links.stop();
 * ```
 */
export function watchLinkNotifications(
  onLink: (event: LinkEvent) => void,
  options: LinkNotificationOptions = {},
): LinkNotifications {
  const lib = libc;
  // The socket belongs to the namespace of the thread that makes it.
  const open = () => lib.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  const sock = options.netns ? inNetns(options.netns, open) : open();
  if (sock < 0) throw new LibbpfError("socket", errno(), "", "netlink route");
  let wake = -1;
  try {
    lib.setsockopt(sock, SOL_SOCKET, SO_RCVBUF, new Uint8Array(new Int32Array([RCVBUF]).buffer), 4);
    const addr = new Uint8Array(12); // struct sockaddr_nl
    const a = new DataView(addr.buffer);
    a.setUint16(0, AF_NETLINK, true);
    a.setUint32(8, RTMGRP_LINK, true);
    if (lib.bind(sock, addr, addr.length) < 0) {
      throw new LibbpfError("bind", errno(), "", "netlink route, RTMGRP_LINK");
    }
    wake = lib.eventfd(0, SOCK_NONBLOCK | SOCK_CLOEXEC); // EFD_NONBLOCK, EFD_CLOEXEC
    if (wake < 0) throw new LibbpfError("eventfd", errno(), "");
  } catch (e) {
    lib.close(sock);
    throw e;
  }

  let stopped = false;
  const buf = new Uint8Array(64 * 1024);
  // struct pollfd[2]: { int fd; short events; short revents; }
  const fds = new Uint8Array(16);
  const pv = new DataView(fds.buffer);
  pv.setInt32(0, sock, true);
  pv.setInt16(4, POLLIN, true);
  pv.setInt32(8, wake, true);
  pv.setInt16(12, POLLIN, true);

  const drain = () => {
    for (;;) {
      const n = Number(lib.recv(sock, buf, BigInt(buf.length), MSG_DONTWAIT));
      if (n > 0) {
        for (const e of parseLinkMessages(buf, n)) onLink(e);
        continue;
      }
      if (n === 0) return;
      const err = errno();
      if (err === EAGAIN) return;
      if (err === ENOBUFS) onLink({ kind: "lost" });
      else if (err !== EINTR) throw new LibbpfError("recv", err, "", "netlink route");
    }
  };

  const loop = async () => {
    let failedPolls = 0;
    while (!stopped) {
      pv.setInt16(6, 0, true);
      pv.setInt16(14, 0, true);
      // -1: interrupted by a signal on the pool's thread (its errno is not readable here).
      const rc = await lib.poll(fds, 2n, -1);
      if (stopped) break;
      if (rc < 0) {
        if (++failedPolls >= 100) throw new Error("netlink route: poll failed 100 times in a row");
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      failedPolls = 0;
      drain();
    }
  };
  const done = loop().catch((e) => {
    stopped = true;
    options.onError?.(e);
  }).finally(() => {
    lib.close(sock);
    lib.close(wake);
  });
  return {
    async stop() {
      if (!stopped) {
        stopped = true;
        lib.write(wake, new Uint8Array(new BigUint64Array([1n]).buffer), 8n);
      }
      await done;
    },
  };
}
