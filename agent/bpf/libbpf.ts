/**
 * Bindings to libbpf 1.1 (`libbpf.so.1`) through `Deno.dlopen`: objects,
 * programs, maps, pinning, links, TC hooks and `bpf_prog_test_run_opts`.
 *
 * Every failing call throws a {@linkcode LibbpfError} carrying the errno and
 * the lines libbpf printed during the call (the verifier log on a load
 * failure), captured through `libbpf_set_print`.
 *
 * This module holds raw fds and pointers; {@linkcode ./loader.ts} and
 * {@linkcode ./maps.ts} are the typed layers above it.
 *
 * @module
 */

import { LIBBPF_OPTS } from "./layout.ts";

const LIBBPF_PATH = "libbpf.so.1";
const LIBC_PATH = "libc.so.6";

const libbpfSymbols = {
  libbpf_set_print: { parameters: ["function"], result: "pointer" },
  bpf_object__open_file: {
    parameters: ["buffer", "pointer"],
    result: "pointer",
  },
  bpf_object__load: { parameters: ["pointer"], result: "i32" },
  bpf_object__close: { parameters: ["pointer"], result: "void" },
  bpf_object__find_program_by_name: {
    parameters: ["pointer", "buffer"],
    result: "pointer",
  },
  bpf_object__find_map_by_name: {
    parameters: ["pointer", "buffer"],
    result: "pointer",
  },
  bpf_program__fd: { parameters: ["pointer"], result: "i32" },
  bpf_map__fd: { parameters: ["pointer"], result: "i32" },
  bpf_map__set_pin_path: { parameters: ["pointer", "buffer"], result: "i32" },
  bpf_map__set_max_entries: { parameters: ["pointer", "u32"], result: "i32" },
  bpf_map__max_entries: { parameters: ["pointer"], result: "u32" },
  bpf_map__key_size: { parameters: ["pointer"], result: "u32" },
  bpf_map__value_size: { parameters: ["pointer"], result: "u32" },
  bpf_map_create: {
    parameters: ["u32", "buffer", "u32", "u32", "u32", "buffer"],
    result: "i32",
  },
  bpf_map_update_elem: {
    parameters: ["i32", "buffer", "buffer", "u64"],
    result: "i32",
  },
  bpf_map_lookup_elem: {
    parameters: ["i32", "buffer", "buffer"],
    result: "i32",
  },
  bpf_map_delete_elem: { parameters: ["i32", "buffer"], result: "i32" },
  bpf_map_get_next_key: {
    parameters: ["i32", "buffer", "buffer"],
    result: "i32",
  },
  bpf_map_update_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  bpf_map_lookup_batch: {
    parameters: [
      "i32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  bpf_map_delete_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  bpf_obj_pin: { parameters: ["i32", "buffer"], result: "i32" },
  bpf_obj_get: { parameters: ["buffer"], result: "i32" },
  bpf_link_create: {
    parameters: ["i32", "i32", "u32", "pointer"],
    result: "i32",
  },
  bpf_link_update: { parameters: ["i32", "i32", "pointer"], result: "i32" },
  bpf_link_detach: { parameters: ["i32"], result: "i32" },
  bpf_tc_hook_create: { parameters: ["buffer"], result: "i32" },
  bpf_tc_hook_destroy: { parameters: ["buffer"], result: "i32" },
  bpf_tc_attach: { parameters: ["buffer", "buffer"], result: "i32" },
  bpf_tc_detach: { parameters: ["buffer", "buffer"], result: "i32" },
  bpf_tc_query: { parameters: ["buffer", "buffer"], result: "i32" },
  bpf_prog_test_run_opts: { parameters: ["i32", "buffer"], result: "i32" },
  bpf_map_get_fd_by_id: { parameters: ["u32"], result: "i32" },
  bpf_obj_get_info_by_fd: {
    parameters: ["i32", "buffer", "buffer"],
    result: "i32",
  },
} as const;

const libcSymbols = {
  vsnprintf: {
    parameters: ["buffer", "usize", "pointer", "pointer"],
    result: "i32",
  },
  __errno_location: { parameters: [], result: "pointer" },
  close: { parameters: ["i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
} as const;

type Libbpf = Deno.DynamicLibrary<typeof libbpfSymbols>["symbols"];
type Libc = Deno.DynamicLibrary<typeof libcSymbols>["symbols"];

// Loaded when this module is imported, so the library (and the log callback
// below) exist for the process's life, not as a resource of whoever came first.
const libc: Libc = Deno.dlopen(LIBC_PATH, libcSymbols).symbols;
let libbpf: Libbpf | undefined;
const PRINT_FN = {
  parameters: ["i32", "pointer", "pointer"],
  result: "i32",
} as const;
/** Kept referenced for the life of the process: libbpf holds its pointer. */
const keepAlive: Deno.UnsafeCallback<typeof PRINT_FN>[] = [];
/** Lines libbpf printed since the current call began. */
let logLines: string[] = [];

/** libbpf print levels, as `enum libbpf_print_level`. */
const LIBBPF_DEBUG = 2;

/** A failed libbpf or kernel call: the operation, its errno and libbpf's log. */
export class LibbpfError extends Error {
  /** The libbpf function that failed. */
  readonly op: string;
  /** Positive errno (e.g. 1 for EPERM, 13 for EACCES from the verifier). */
  readonly errno: number;
  /** What libbpf printed during the call (warnings, the verifier log). */
  readonly log: string;

  /** Builds the error; the message includes op, errno text and the log's tail. */
  constructor(op: string, errno: number, log: string, detail?: string) {
    const tail = log.trim().split("\n").slice(-12).join("\n");
    super(
      `${op}${detail ? ` (${detail})` : ""}: ${errnoText(errno)} (errno ${errno})` +
        (tail ? `\n${tail}` : ""),
    );
    this.name = "LibbpfError";
    this.op = op;
    this.errno = errno;
    this.log = log;
  }
}

function errnoText(errno: number): string {
  const c = loadLibc();
  const p = c.strerror(errno);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${errno}`;
}

function loadLibc(): Libc {
  return libc;
}

/** `CLOCK_MONOTONIC_COARSE` in ns: the clock of conntrack's `created` and `last_seen`. */
export function monotonicCoarseNs(): bigint {
  const ts = new BigInt64Array(2);
  if (libc.clock_gettime(6, new Uint8Array(ts.buffer)) !== 0) {
    throw new Error("clock_gettime(CLOCK_MONOTONIC_COARSE) failed");
  }
  return ts[0]! * 1_000_000_000n + ts[1]!;
}

/** The raw libbpf symbols; loads the library and installs the log capture once. */
export function lib(): Libbpf {
  if (libbpf) return libbpf;
  const c = loadLibc();
  const bpf = Deno.dlopen(LIBBPF_PATH, libbpfSymbols).symbols;
  const callback = new Deno.UnsafeCallback(
    PRINT_FN,
    (level: number, fmt: Deno.PointerValue, args: Deno.PointerValue) => {
      if (level >= LIBBPF_DEBUG || fmt === null) return 0;
      const buf = new Uint8Array(4096);
      const n = c.vsnprintf(buf, BigInt(buf.length), fmt, args);
      if (n > 0) {
        logLines.push(
          new TextDecoder().decode(
            buf.subarray(0, Math.min(n, buf.length - 1)),
          ),
        );
      }
      return 0;
    },
  );
  bpf.libbpf_set_print(callback.pointer);
  keepAlive.push(callback);
  libbpf = bpf;
  return bpf;
}
lib();

/** The current thread's errno, read right after a call that returned NULL. */
function lastErrno(): number {
  const p = loadLibc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

/** Runs one libbpf call with a fresh log; throws LibbpfError when it returns < 0. */
export function check(op: string, call: () => number, detail?: string): number {
  lib();
  logLines = [];
  const rc = call();
  if (rc < 0) {
    const errno = rc === -1 ? lastErrno() || 1 : -rc;
    throw new LibbpfError(op, errno, logLines.join(""), detail);
  }
  return rc;
}

/** Like check() for calls returning a pointer, where NULL means failure. */
export function checkPtr(
  op: string,
  call: () => Deno.PointerValue,
  detail?: string,
): Deno.PointerObject {
  lib();
  logLines = [];
  const p = call();
  if (p === null) {
    throw new LibbpfError(op, lastErrno() || 2, logLines.join(""), detail);
  }
  return p;
}

const PROT_READ_WRITE = 0x1 | 0x2;
const MAP_SHARED = 0x01;
const PAGE = 4096;

/**
 * Writes `values` (u32 each) as the elements 0..n-1 of an mmap-able array
 * map (`BPF_F_MMAPABLE`, 4-byte values): one mmap, one copy, one munmap
 * instead of a kernel update per element. The kernel lays array elements
 * out 8 bytes apart (value size rounded up to 8). Only for a map no program
 * sees yet: the copy is not atomic.
 */
export function writeMappedU32(fd: number, values: Uint32Array): void {
  fillMappedU32(fd, values.length, (words) => {
    for (let i = 0; i < values.length; i++) words[2 * i] = values[i]!;
  });
}

/**
 * Lets `fill` write the elements 0..n-1 of an mmap-able array map of u32
 * values in place: `fill` gets the mapping as u32 words, element `i` at
 * word `2 * i` (the kernel lays elements out 8 bytes apart). One mmap, no
 * staging buffer, one munmap. Only for a map no program sees yet.
 */
export function fillMappedU32(fd: number, n: number, fill: (words: Uint32Array) => void): void {
  const len = BigInt(Math.ceil((n * 8) / PAGE) * PAGE);
  const c = loadLibc();
  lib();
  logLines = [];
  const p = c.mmap(null, len, PROT_READ_WRITE, MAP_SHARED, fd, 0n);
  // MAP_FAILED is (void *)-1
  if (p === null || Deno.UnsafePointer.value(p) === 0xffffffffffffffffn) {
    throw new LibbpfError("mmap", lastErrno() || 22, "", `map fd ${fd}`);
  }
  try {
    fill(new Uint32Array(Deno.UnsafePointerView.getArrayBuffer(p, n * 8)));
  } finally {
    c.munmap(p, len);
  }
}

/**
 * Reads the first `n` u32 values of an mmap-able BPF array map (the layout
 * {@link writeMappedU32} writes: one value per 8-byte slot).
 */
export function readMappedU32(fd: number, n: number): Uint32Array {
  const len = BigInt(Math.ceil((n * 8) / PAGE) * PAGE);
  const c = loadLibc();
  lib();
  const p = c.mmap(null, len, 0x1, MAP_SHARED, fd, 0n); // PROT_READ
  if (p === null || Deno.UnsafePointer.value(p) === 0xffffffffffffffffn) {
    throw new LibbpfError("mmap", lastErrno() || 22, "", `map fd ${fd}`);
  }
  try {
    const words = new Uint32Array(Deno.UnsafePointerView.getArrayBuffer(p, n * 8));
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) out[i] = words[2 * i]!;
    return out;
  } finally {
    c.munmap(p, len);
  }
}

/** A NUL-terminated C string. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${s}\0`);
}

/** Closes a file descriptor (map, program or link fd). */
export function closeFd(fd: number): void {
  if (fd >= 0) loadLibc().close(fd);
}

/** The interface index of `name` in the calling thread's network namespace. */
export function ifIndex(name: string): number {
  const idx = loadLibc().if_nametoindex(cstr(name));
  if (idx === 0) {
    throw new LibbpfError("if_nametoindex", lastErrno() || 19, "", name);
  }
  return idx;
}

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;

/**
 * Runs `fn` with the main thread in the network namespace at `nsPath`
 * (e.g. `/run/netns/NAME`), then switches back. Only synchronous work (FFI
 * calls such as attach, which resolve ifindexes in the caller's namespace)
 * belongs in `fn`.
 */
export function inNetns<T>(nsPath: string, fn: () => T): T {
  const c = loadLibc();
  const self = c.open(cstr("/proc/thread-self/ns/net"), O_RDONLY | O_CLOEXEC);
  if (self < 0) throw new LibbpfError("open", lastErrno(), "", "own netns");
  let entered = false;
  try {
    const target = c.open(cstr(nsPath), O_RDONLY | O_CLOEXEC);
    if (target < 0) throw new LibbpfError("open", lastErrno(), "", nsPath);
    const rc = c.setns(target, CLONE_NEWNET);
    const errno = lastErrno();
    c.close(target);
    if (rc < 0) throw new LibbpfError("setns", errno, "", nsPath);
    entered = true;
    return fn();
  } finally {
    // Failing to get back would leave the main thread in the wrong namespace.
    if (entered && c.setns(self, CLONE_NEWNET) < 0) {
      console.error(
        `blixt: setns back to own netns failed (errno ${lastErrno()})`,
      );
      Deno.exit(70);
    }
    c.close(self);
  }
}

/** Writes the libbpf option struct `name` into a fresh zeroed buffer. */
export function opts(
  name: keyof typeof LIBBPF_OPTS,
  fields: Record<string, number | bigint | Deno.PointerValue>,
): Uint8Array<ArrayBuffer> {
  const layout = LIBBPF_OPTS[name];
  const buf = new Uint8Array(layout.size);
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, BigInt(layout.size), true);
  for (const [field, value] of Object.entries(fields)) {
    const f = (layout.fields as Record<string, { offset: number; size: number }>)[
      field
    ];
    if (!f) throw new Error(`${name} has no field ${field}`);
    if (f.size === 8) {
      const v = typeof value === "bigint"
        ? value
        : typeof value === "number"
        ? BigInt(value)
        : value === null
        ? 0n
        : BigInt(Deno.UnsafePointer.value(value));
      view.setBigUint64(f.offset, v, true);
    } else if (f.size === 4) {
      view.setUint32(f.offset, Number(value) >>> 0, true);
    } else {
      throw new Error(`${name}.${field}: unsupported size ${f.size}`);
    }
  }
  return buf;
}

/** Reads a 4-byte field of a libbpf option struct after a call filled it. */
export function optsField(
  name: keyof typeof LIBBPF_OPTS,
  buf: Uint8Array,
  field: string,
): number {
  const f = (LIBBPF_OPTS[name].fields as Record<
    string,
    { offset: number; size: number }
  >)[
    field
  ];
  if (!f) throw new Error(`${name} has no field ${field}`);
  return new DataView(buf.buffer, buf.byteOffset).getUint32(f.offset, true);
}
