/**
 * Loads the data plane, pins its maps and links under a bpffs directory and
 * attaches it to an interface: a tcx link where the kernel has tcx (6.6+),
 * clsact + `bpf_tc_attach` otherwise. A restarted or upgraded loader reuses
 * the pinned maps and swaps its program into the pinned links atomically,
 * so established flows keep going.
 *
 * @example
 * ```ts
 * const dp = Dataplane.load({ pinDir: "/sys/fs/bpf/blixt" });
 * dp.attach("eth0");
 * dp.maps.setConfig({ nodeAddr: "198.18.192.1" });
 * dp.close(); // links and maps stay pinned
 * ```
 *
 * @module
 */

import { check, closeFd, cstr, ifIndex, inNetns, lib, LibbpfError, opts } from "./libbpf.ts";
import { DataplaneMaps } from "./maps.ts";
import { LIMITS } from "./layout.ts";
import { BpfObject, openPinnedMap } from "./object.ts";

/** Default object path: bpf/blixt.o of this checkout (see bpf/build.ts). */
export const DEFAULT_OBJECT = new URL("../../bpf/blixt.o", import.meta.url).pathname;

/** enum bpf_attach_type values of tcx (kernel 6.6; absent from libbpf 1.1's headers). */
const BPF_TCX_INGRESS = 46;
const BPF_TCX_EGRESS = 47;
/** enum bpf_tc_attach_point */
const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;
/** handle and priority of blixt's clsact filters. */
const TC_HANDLE = 0xb1;
const TC_PRIORITY = 0xb1;

const EEXIST = 17;
const ENOENT = 2;
const ENODEV = 19;
/** `BPF_LINK_TYPE_TCX` (enum bpf_link_type). */
const BPF_LINK_TYPE_TCX = 11;
/**
 * `struct bpf_link_info`: type, id and prog_id (u32 each), then the union at
 * 8-byte alignment, whose `tcx` member starts with the ifindex (0 once the
 * device is gone). 64 bytes is more than the fields read; the kernel copies
 * at most its own size and wants a longer tail zeroed.
 */
const LINK_INFO = { size: 64, type: 0, tcxIfindex: 16 } as const;
/** errnos meaning "this kernel has no tcx". */
const NO_TCX = new Set([22, /* EINVAL */ 95, /* EOPNOTSUPP */ 38 /* ENOSYS */]);

/** How the program is attached to an interface. */
export type AttachMode = "tcx" | "tc";

/** Options of {@linkcode Dataplane.load}. */
export interface LoadOptions {
  /** bpffs directory of this data plane's pins (maps and links). */
  pinDir: string;
  /** Compiled object; default {@linkcode DEFAULT_OBJECT}. */
  objectPath?: string;
  /** Conntrack capacity (must equal the pinned map's, if any). */
  conntrackEntries?: number;
}

/** Options of {@linkcode Dataplane.attach}. */
export interface AttachOptions {
  /** "auto" (default): tcx, falling back to clsact; or force one. */
  mode?: "auto" | AttachMode;
  /** Network namespace of the interface, e.g. `/run/netns/NAME`. */
  netns?: string;
  /**
   * The interface faces this node's pods (a pod bridge): their connections to
   * VIPs are load-balanced here and source-translated (hairpin).
   */
  pods?: boolean;
}

/**
 * What carries the program on an interface now, as the kernel says (see
 * {@linkcode Dataplane.attachState}).
 */
export interface AttachState {
  /** The interface's index, or undefined when no interface has this name. */
  ifindex: number | undefined;
  /** How the program is on both its hooks, or undefined when it is missing from one. */
  mode: AttachMode | undefined;
}

/** Mounts bpffs at /sys/fs/bpf unless something is mounted there. */
export async function ensureBpffs(): Promise<void> {
  const mounts = await Deno.readTextFile("/proc/mounts");
  if (mounts.split("\n").some((l) => l.split(" ")[1] === "/sys/fs/bpf")) return;
  const out = await new Deno.Command("mount", {
    args: ["-t", "bpf", "bpf", "/sys/fs/bpf"],
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`mount bpffs: ${new TextDecoder().decode(out.stderr)}`);
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A loaded data plane: the object, its programs and its typed maps. */
export class Dataplane {
  /** The loaded object (fds of programs and maps). */
  readonly object: BpfObject;
  /** Typed access to the maps. */
  readonly maps: DataplaneMaps;
  /** Pin directory. */
  readonly pinDir: string;
  /** fd of blixt_ingress. */
  readonly ingressFd: number;
  /** fd of blixt_egress. */
  readonly egressFd: number;

  private constructor(object: BpfObject, pinDir: string) {
    this.object = object;
    this.pinDir = pinDir;
    this.maps = new DataplaneMaps(object);
    this.maps.syncPodInterfaceSlots(); // the program's own slots start "unknown" (bpf/maps.h)
    this.ingressFd = object.programFd("blixt_ingress");
    this.egressFd = object.programFd("blixt_egress");
  }

  /**
   * Loads the object with every map pinned under `pinDir` (reused when
   * already pinned there with the same definition).
   */
  static load(options: LoadOptions): Dataplane {
    // A failed first load leaves nothing behind; one over pins keeps them (they still forward).
    const fresh = isEmptyOrAbsent(options.pinDir);
    Deno.mkdirSync(options.pinDir, { recursive: true });
    let object: BpfObject | undefined;
    try {
      replaceOutgrownPins(options.pinDir);
      const maxEntries: Record<string, number> = {};
      if (options.conntrackEntries) {
        maxEntries.conntrack = options.conntrackEntries;
      }
      object = BpfObject.open(options.objectPath ?? DEFAULT_OBJECT, {
        pinDir: options.pinDir,
        maxEntries,
      });
      return new Dataplane(object, options.pinDir);
    } catch (e) {
      object?.close();
      if (fresh) removePins(options.pinDir);
      throw e;
    }
  }

  /**
   * Attaches ingress and egress programs to `ifname`. An existing pinned tcx
   * link gets the new program by `bpf_link_update` (no gap); an existing
   * clsact filter is replaced in place. A pinned link left by an interface
   * of this name that was deleted (the kernel cut it: it carries nothing) is
   * unpinned and a new link made on the interface there now.
   */
  attach(ifname: string, options: AttachOptions = {}): AttachMode {
    const run = () => {
      const mode = this.#attach(ifname, options.mode ?? "auto");
      if (options.pods) this.maps.setPodInterface(ifIndex(ifname));
      return mode;
    };
    return options.netns ? inNetns(options.netns, run) : run();
  }

  /** Detaches from `ifname` (tcx links and clsact filters alike). */
  detach(ifname: string, options: { netns?: string } = {}): void {
    const run = () => {
      for (const dir of ["ingress", "egress"] as const) {
        const pin = this.#linkPin(ifname, dir);
        if (exists(pin)) {
          const fd = check(
            "bpf_obj_get",
            () => lib().bpf_obj_get(cstr(pin)),
            pin,
          );
          try {
            // a link whose interface is gone is detached already (detach says ENOLINK)
            if (linkIfindex(fd, pin) !== 0) {
              check("bpf_link_detach", () => lib().bpf_link_detach(fd), pin);
            }
          } finally {
            closeFd(fd);
          }
          Deno.removeSync(pin);
        }
        this.#tcDetach(ifname, dir);
      }
      try {
        this.maps.deletePodInterface(ifIndex(ifname));
      } catch {
        // the interface is gone; its ifindex may be another's by now
      }
    };
    if (options.netns) inNetns(options.netns, run);
    else run();
  }

  /**
   * Whether the program is on `ifname` now: its pinned tcx links are on this
   * interface (not on a deleted one of the same name), or its clsact filters
   * are there. A few syscalls, cheap enough to ask every few seconds.
   */
  attachState(ifname: string, options: { netns?: string } = {}): AttachState {
    const run = (): AttachState => {
      let ifindex: number;
      try {
        ifindex = ifIndex(ifname);
      } catch (e) {
        if (e instanceof LibbpfError && e.errno === ENODEV) {
          return { ifindex: undefined, mode: undefined };
        }
        throw e;
      }
      const onTcx = (["ingress", "egress"] as const).every((dir) =>
        this.#pinnedLinkIfindex(ifname, dir) === ifindex
      );
      if (onTcx) return { ifindex, mode: "tcx" };
      const onTc = [BPF_TC_INGRESS, BPF_TC_EGRESS].every((point) => {
        const hook = opts("bpf_tc_hook", { ifindex, attach_point: point });
        const o = opts("bpf_tc_opts", { handle: TC_HANDLE, priority: TC_PRIORITY });
        return lib().bpf_tc_query(hook, o) === 0;
      });
      return { ifindex, mode: onTc ? "tc" : undefined };
    };
    return options.netns ? inNetns(options.netns, run) : run();
  }

  /**
   * The interfaces with a tcx link pinned in this data plane's directory, by
   * name (from the pins `link_<ifname>_<ingress|egress>`): what an agent of an
   * earlier run attached, which may include interfaces no longer served.
   */
  pinnedInterfaces(): string[] {
    const names = new Set<string>();
    for (const e of Deno.readDirSync(this.pinDir)) {
      const m = /^link_(.+)_(?:ingress|egress)$/.exec(e.name);
      if (m) names.add(m[1]!);
    }
    return [...names].sort();
  }

  /** The ifindexes marked in `pod_ifaces` (interfaces facing this node's pods). */
  podInterfaceIndexes(): number[] {
    return this.object.map("pod_ifaces").keys().map((k) =>
      new DataView(k.buffer).getUint32(0, true)
    )
      .sort((a, b) => a - b);
  }

  /** Closes fds; everything pinned stays in the kernel and keeps forwarding. */
  close(): void {
    this.object.close();
  }

  #linkPin(ifname: string, dir: "ingress" | "egress"): string {
    return `${this.pinDir}/link_${ifname}_${dir}`;
  }

  /** The ifindex the pinned link of `ifname` is on (0: cut), undefined when none is pinned. */
  #pinnedLinkIfindex(ifname: string, dir: "ingress" | "egress"): number | undefined {
    return pinnedLinkIfindex(this.#linkPin(ifname, dir));
  }

  #attach(ifname: string, mode: "auto" | AttachMode): AttachMode {
    const ifindex = ifIndex(ifname);
    if (mode !== "tc") {
      try {
        this.#attachTcx(ifname, ifindex, "ingress", this.ingressFd);
        this.#attachTcx(ifname, ifindex, "egress", this.egressFd);
        return "tcx";
      } catch (e) {
        if (
          mode === "tcx" || !(e instanceof LibbpfError) || !NO_TCX.has(e.errno)
        ) throw e;
      }
    }
    this.#attachTc(ifindex, BPF_TC_INGRESS, this.ingressFd);
    this.#attachTc(ifindex, BPF_TC_EGRESS, this.egressFd);
    return "tc";
  }

  #attachTcx(
    ifname: string,
    ifindex: number,
    dir: "ingress" | "egress",
    progFd: number,
  ): void {
    const pin = this.#linkPin(ifname, dir);
    const b = lib();
    if (exists(pin)) {
      const fd = check("bpf_obj_get", () => b.bpf_obj_get(cstr(pin)), pin);
      try {
        const on = linkIfindex(fd, pin);
        if (on === ifindex) {
          check(
            "bpf_link_update",
            () => b.bpf_link_update(fd, progFd, null),
            pin,
          );
          return;
        }
        // The pin outlived its interface: cut by the kernel (0), or on another
        // device that took the name's place. A link on no interface we serve goes.
        if (on !== 0) check("bpf_link_detach", () => b.bpf_link_detach(fd), pin);
        Deno.removeSync(pin);
      } finally {
        closeFd(fd);
      }
    }
    const type = dir === "ingress" ? BPF_TCX_INGRESS : BPF_TCX_EGRESS;
    const fd = check(
      "bpf_link_create",
      () => b.bpf_link_create(progFd, ifindex, type, null),
      `tcx ${dir} of ${ifname}`,
    );
    try {
      check("bpf_obj_pin", () => b.bpf_obj_pin(fd, cstr(pin)), pin);
    } catch (e) {
      b.bpf_link_detach(fd);
      throw e;
    } finally {
      closeFd(fd);
    }
  }

  #attachTc(ifindex: number, point: number, progFd: number): void {
    const b = lib();
    const hook = opts("bpf_tc_hook", { ifindex, attach_point: point });
    const rc = b.bpf_tc_hook_create(hook);
    if (rc < 0 && -rc !== EEXIST) {
      check("bpf_tc_hook_create", () => rc, `ifindex ${ifindex}`);
    }
    const o = opts("bpf_tc_opts", {
      prog_fd: progFd,
      flags: BPF_TC_F_REPLACE,
      handle: TC_HANDLE,
      priority: TC_PRIORITY,
    });
    check(
      "bpf_tc_attach",
      () => b.bpf_tc_attach(hook, o),
      `ifindex ${ifindex}`,
    );
  }

  #tcDetach(ifname: string, dir: "ingress" | "egress"): void {
    let ifindex: number;
    try {
      ifindex = ifIndex(ifname);
    } catch {
      return; // the interface is gone, and its filters with it
    }
    const hook = opts("bpf_tc_hook", {
      ifindex,
      attach_point: dir === "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS,
    });
    const o = opts("bpf_tc_opts", { handle: TC_HANDLE, priority: TC_PRIORITY });
    const rc = lib().bpf_tc_detach(hook, o);
    if (rc < 0 && -rc !== ENOENT && -rc !== 22) {
      check("bpf_tc_detach", () => rc, ifname);
    }
  }
}

/**
 * The ifindex (in the namespace of the interface) of the tcx link pinned at
 * `path`: 0 once its interface is gone, undefined when nothing is pinned there.
 */
export function pinnedLinkIfindex(path: string): number | undefined {
  const fd = lib().bpf_obj_get(cstr(path));
  if (fd < 0) return undefined;
  try {
    return linkIfindex(fd, path);
  } finally {
    closeFd(fd);
  }
}

/** The ifindex a tcx link is on, 0 once its interface is gone (`bpf_link_info.tcx`). */
function linkIfindex(fd: number, what: string): number {
  const info = new Uint8Array(LINK_INFO.size);
  const len = new Uint32Array([info.length]);
  check(
    "bpf_obj_get_info_by_fd",
    () => lib().bpf_obj_get_info_by_fd(fd, info, new Uint8Array(len.buffer)),
    what,
  );
  const v = new DataView(info.buffer);
  const type = v.getUint32(LINK_INFO.type, true);
  if (type !== BPF_LINK_TYPE_TCX) {
    throw new Error(`${what}: a link of type ${type}, not tcx`);
  }
  return v.getUint32(LINK_INFO.tcxIfindex, true);
}

function isEmptyOrAbsent(dir: string): boolean {
  try {
    for (const _ of Deno.readDirSync(dir)) return false;
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw e;
  }
}

/** Removes a pin directory and everything pinned in it (maps go when unused). */
export function removePins(pinDir: string): void {
  try {
    for (const e of Deno.readDirSync(pinDir)) {
      Deno.removeSync(`${pinDir}/${e.name}`);
    }
    Deno.removeSync(pinDir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Maps whose contents an upgrade may drop: the program's event counters. One
 * pinned by an agent with another number of slots could not be reused (libbpf
 * refuses a pinned map of another definition, and the load would fail), so
 * its pin is removed and the load makes a new one; the running program keeps
 * the old map until the new program replaces it, and the counters restart at
 * zero (a counter reset, as after a node reboot).
 */
function replaceOutgrownPins(pinDir: string): void {
  const path = `${pinDir}/events`;
  let pinned;
  try {
    pinned = openPinnedMap(path);
  } catch {
    return; // not pinned yet
  }
  try {
    if (pinned.maxEntries === LIMITS.EVENT_SLOTS) return;
  } finally {
    pinned.close();
  }
  Deno.removeSync(path);
}
