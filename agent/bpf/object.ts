/**
 * BPF objects, programs and maps over the libbpf bindings: open and load an
 * object (reusing pinned maps), read and write maps one element or a batch
 * at a time, and run a program on a packet with `bpf_prog_test_run_opts`.
 *
 * @module
 */

import { check, checkPtr, closeFd, cstr, lib, LibbpfError, opts, optsField } from "./libbpf.ts";
import { SK_BUFF_IFINDEX, SK_BUFF_INGRESS_IFINDEX, SK_BUFF_MARK, SK_BUFF_SIZE } from "./layout.ts";

/** `BPF_ANY`: create or update. */
export const BPF_ANY = 0n;
/** `BPF_NOEXIST`: create only. */
export const BPF_NOEXIST = 1n;
/** `BPF_EXIST`: update only. */
export const BPF_EXIST = 2n;

const ENOENT = 2;

/** Map types the bindings create or treat specially (enum bpf_map_type). */
export const MAP_TYPE = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  ARRAY_OF_MAPS: 12,
} as const;

let possibleCpus: number | undefined;

/** Number of possible CPUs: the stride of per-CPU map values. */
export function numPossibleCpus(): number {
  if (possibleCpus !== undefined) return possibleCpus;
  const text = Deno.readTextFileSync("/sys/devices/system/cpu/possible").trim();
  let n = 0;
  for (const part of text.split(",")) {
    const [a, b] = part.split("-").map(Number);
    n += b === undefined ? 1 : b - (a ?? 0) + 1;
  }
  possibleCpus = n;
  return n;
}

/** One BPF map by fd: raw byte keys and values. */
export class BpfMap {
  /** Map name. */
  readonly name: string;
  /** Map fd (owned by the object, or by this map when opened from a pin). */
  readonly fd: number;
  /** Key size in bytes. */
  readonly keySize: number;
  /** Value size of one element (per CPU for per-CPU maps). */
  readonly valueSize: number;
  /** Whether values are per CPU. */
  readonly perCpu: boolean;
  /** Capacity. */
  readonly maxEntries: number;
  #ownsFd: boolean;

  /** Wraps an fd; `ownsFd` closes it on close(). */
  constructor(
    name: string,
    fd: number,
    shape: {
      keySize: number;
      valueSize: number;
      perCpu: boolean;
      maxEntries: number;
    },
    ownsFd = false,
  ) {
    this.name = name;
    this.fd = fd;
    this.keySize = shape.keySize;
    this.valueSize = shape.valueSize;
    this.perCpu = shape.perCpu;
    this.maxEntries = shape.maxEntries;
    this.#ownsFd = ownsFd;
  }

  /** Bytes of a whole value as the syscall sees it (all CPUs for per-CPU maps). */
  get fullValueSize(): number {
    return this.perCpu ? Math.ceil(this.valueSize / 8) * 8 * numPossibleCpus() : this.valueSize;
  }

  /** Creates or updates one element. */
  update(
    key: Uint8Array<ArrayBuffer>,
    value: Uint8Array<ArrayBuffer>,
    flags = BPF_ANY,
  ): void {
    this.#sizes(key, value);
    check(
      "bpf_map_update_elem",
      () => lib().bpf_map_update_elem(this.fd, key, value, flags),
      this.name,
    );
  }

  /** The value of `key`, or undefined when absent. */
  lookup(key: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> | undefined {
    const value = new Uint8Array(this.fullValueSize);
    this.#sizes(key, value);
    try {
      check(
        "bpf_map_lookup_elem",
        () => lib().bpf_map_lookup_elem(this.fd, key, value),
        this.name,
      );
    } catch (e) {
      if (e instanceof LibbpfError && e.errno === ENOENT) return undefined;
      throw e;
    }
    return value;
  }

  /** Deletes `key`; false when it was absent. */
  delete(key: Uint8Array<ArrayBuffer>): boolean {
    try {
      check(
        "bpf_map_delete_elem",
        () => lib().bpf_map_delete_elem(this.fd, key),
        this.name,
      );
      return true;
    } catch (e) {
      if (e instanceof LibbpfError && e.errno === ENOENT) return false;
      throw e;
    }
  }

  /** Every key, by `bpf_map_get_next_key`. */
  keys(): Uint8Array<ArrayBuffer>[] {
    const out: Uint8Array<ArrayBuffer>[] = [];
    let prev: Uint8Array<ArrayBuffer> | null = null;
    for (;;) {
      const next = new Uint8Array(this.keySize);
      const rc = lib().bpf_map_get_next_key(this.fd, prev, next);
      if (rc < 0) {
        if (-rc === ENOENT) return out;
        throw new LibbpfError("bpf_map_get_next_key", -rc, "", this.name);
      }
      out.push(next);
      prev = next;
    }
  }

  /** Every entry, by `bpf_map_lookup_batch` in chunks. */
  entries(chunk = 4096): [Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>][] {
    const out: [Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>][] = [];
    const vsize = this.fullValueSize;
    const token = new Uint8Array(Math.max(8, this.keySize));
    const count = new Uint32Array(1);
    const batchOpts = opts("bpf_map_batch_opts", {});
    let first = true;
    for (;;) {
      const keys = new Uint8Array(this.keySize * chunk);
      const values = new Uint8Array(vsize * chunk);
      count[0] = chunk;
      const rc = lib().bpf_map_lookup_batch(
        this.fd,
        first ? null : token,
        token,
        keys,
        values,
        new Uint8Array(count.buffer),
        batchOpts,
      );
      const n = count[0] ?? 0;
      for (let i = 0; i < n; i++) {
        out.push([
          keys.slice(i * this.keySize, (i + 1) * this.keySize),
          values.slice(i * vsize, (i + 1) * vsize),
        ]);
      }
      if (rc < 0) {
        if (-rc === ENOENT) return out;
        throw new LibbpfError("bpf_map_lookup_batch", -rc, "", this.name);
      }
      first = false;
    }
  }

  /**
   * Reads every entry in chunks by `bpf_map_lookup_batch`, handing each
   * chunk's packed keys and values to `fn` (no copy per entry: for scans of
   * large arrays).
   */
  scan(
    fn: (keys: Uint8Array<ArrayBuffer>, values: Uint8Array<ArrayBuffer>, count: number) => void,
    chunk = 8192,
  ): void {
    for (const [keys, values, count] of this.chunks(chunk)) fn(keys, values, count);
  }

  /**
   * {@linkcode BpfMap.scan} one chunk at a time: each step yields the packed
   * keys and values of up to `chunk` entries (the same buffers each time, so
   * read them before the next step), and the caller may stop between steps.
   */
  *chunks(
    chunk = 8192,
  ): Generator<[keys: Uint8Array<ArrayBuffer>, values: Uint8Array<ArrayBuffer>, count: number]> {
    const vsize = this.fullValueSize;
    const token = new Uint8Array(Math.max(8, this.keySize));
    const count = new Uint32Array(1);
    const batchOpts = opts("bpf_map_batch_opts", {});
    const keys = new Uint8Array(this.keySize * chunk);
    const values = new Uint8Array(vsize * chunk);
    let first = true;
    for (;;) {
      count[0] = chunk;
      const rc = lib().bpf_map_lookup_batch(
        this.fd,
        first ? null : token,
        token,
        keys,
        values,
        new Uint8Array(count.buffer),
        batchOpts,
      );
      if (count[0]! > 0) yield [keys, values, count[0]!];
      if (rc < 0) {
        if (-rc === ENOENT) return;
        throw new LibbpfError("bpf_map_lookup_batch", -rc, "", this.name);
      }
      first = false;
    }
  }

  /** Writes `count` entries at once (`bpf_map_update_batch`); keys/values are packed. */
  updateBatch(
    keys: Uint8Array<ArrayBuffer>,
    values: Uint8Array<ArrayBuffer>,
  ): void {
    const n = keys.length / this.keySize;
    if (!Number.isInteger(n) || values.length !== n * this.fullValueSize) {
      throw new RangeError(
        `${this.name}: batch of ${keys.length}/${values.length} bytes`,
      );
    }
    const count = new Uint32Array([n]);
    check(
      "bpf_map_update_batch",
      () =>
        lib().bpf_map_update_batch(
          this.fd,
          keys,
          values,
          new Uint8Array(count.buffer),
          opts("bpf_map_batch_opts", {}),
        ),
      this.name,
    );
  }

  /** Deletes many keys at once (`bpf_map_delete_batch`); keys are packed. */
  deleteBatch(keys: Uint8Array<ArrayBuffer>): void {
    const count = new Uint32Array([keys.length / this.keySize]);
    check(
      "bpf_map_delete_batch",
      () =>
        lib().bpf_map_delete_batch(
          this.fd,
          keys,
          new Uint8Array(count.buffer),
          opts("bpf_map_batch_opts", {}),
        ),
      this.name,
    );
  }

  /** Pins the map at `path` on bpffs. */
  pin(path: string): void {
    check("bpf_obj_pin", () => lib().bpf_obj_pin(this.fd, cstr(path)), path);
  }

  /** Closes the fd when this map owns it. */
  close(): void {
    if (this.#ownsFd) closeFd(this.fd);
    this.#ownsFd = false;
  }

  #sizes(key: Uint8Array, value: Uint8Array | null): void {
    if (key.length !== this.keySize) {
      throw new RangeError(
        `${this.name}: key of ${key.length} bytes, want ${this.keySize}`,
      );
    }
    if (value && value.length !== this.fullValueSize) {
      throw new RangeError(
        `${this.name}: value of ${value.length} bytes, want ${this.fullValueSize}`,
      );
    }
  }
}

/**
 * The name and options buffers of createMap, by name and flags: a first sync
 * creates 10,000 inner maps, and encoding both for each cost more CPU than
 * the syscall's user side. libbpf only reads them.
 */
const createArgs = new Map<string, [Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>]>();

/** Creates a standalone map (e.g. an inner Maglev table); the caller closes it. */
export function createMap(
  type: number,
  name: string,
  shape: {
    keySize: number;
    valueSize: number;
    maxEntries: number;
    flags?: number;
  },
): BpfMap {
  const flags = shape.flags ?? 0;
  const argsKey = `${name}/${flags}`;
  let args = createArgs.get(argsKey);
  if (!args) {
    args = [cstr(name), opts("bpf_map_create_opts", { map_flags: flags })];
    createArgs.set(argsKey, args);
  }
  const [nameBuf, optsBuf] = args;
  const fd = check(
    "bpf_map_create",
    () =>
      lib().bpf_map_create(
        type,
        nameBuf,
        shape.keySize,
        shape.valueSize,
        shape.maxEntries,
        optsBuf,
      ),
    name,
  );
  return new BpfMap(name, fd, { ...shape, perCpu: false }, true);
}

/** A map by fd, its shape read from the kernel (`struct bpf_map_info`). */
function mapFromFd(fd: number, name: string): BpfMap {
  const info = new Uint8Array(88);
  const len = new Uint32Array([info.length]);
  try {
    check(
      "bpf_obj_get_info_by_fd",
      () => lib().bpf_obj_get_info_by_fd(fd, info, new Uint8Array(len.buffer)),
      name,
    );
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  const v = new DataView(info.buffer);
  const type = v.getUint32(0, true);
  return new BpfMap(name, fd, {
    keySize: v.getUint32(8, true),
    valueSize: v.getUint32(12, true),
    maxEntries: v.getUint32(16, true),
    perCpu: type === MAP_TYPE.PERCPU_ARRAY || type === MAP_TYPE.PERCPU_HASH,
  }, true);
}

/** Opens a map by kernel id (e.g. an inner map); the caller closes it. */
export function openMapById(id: number, name: string): BpfMap {
  const fd = check("bpf_map_get_fd_by_id", () => lib().bpf_map_get_fd_by_id(id), `${name} #${id}`);
  return mapFromFd(fd, name);
}

/** Opens a map pinned at `path` on bpffs; the caller closes it. */
export function openPinnedMap(path: string): BpfMap {
  const fd = check("bpf_obj_get", () => lib().bpf_obj_get(cstr(path)), path);
  return mapFromFd(fd, path.slice(path.lastIndexOf("/") + 1));
}

/** Options of {@linkcode BpfObject.open}. */
export interface OpenOptions {
  /** Pin every map under this bpffs directory, reusing maps already pinned there. */
  pinDir?: string;
  /** Override max_entries of maps before load (e.g. a smaller conntrack in tests). */
  maxEntries?: Record<string, number>;
}

/** A loaded BPF object file: its programs and maps. */
export class BpfObject {
  #ptr: Deno.PointerObject | null;
  readonly #maps = new Map<string, BpfMap>();

  private constructor(ptr: Deno.PointerObject) {
    this.#ptr = ptr;
  }

  /**
   * Opens and loads `path`. With `pinDir`, each map is pinned as
   * `pinDir/<name>`; a map already pinned there with the same definition is
   * reused, which is how a restarted or upgraded loader keeps its state.
   */
  static open(path: string, options: OpenOptions = {}): BpfObject {
    const ptr = checkPtr(
      "bpf_object__open_file",
      () => lib().bpf_object__open_file(cstr(path), null),
      path,
    );
    const obj = new BpfObject(ptr);
    try {
      for (const [name, n] of Object.entries(options.maxEntries ?? {})) {
        const m = obj.#mapPtr(name);
        check(
          "bpf_map__set_max_entries",
          () => lib().bpf_map__set_max_entries(m, n),
          name,
        );
      }
      if (options.pinDir !== undefined) {
        for (const name of MAP_NAMES) {
          const m = obj.#mapPtr(name);
          check(
            "bpf_map__set_pin_path",
            () => lib().bpf_map__set_pin_path(m, cstr(`${options.pinDir}/${name}`)),
            name,
          );
        }
      }
      check("bpf_object__load", () => lib().bpf_object__load(ptr), path);
    } catch (e) {
      obj.close();
      throw e;
    }
    return obj;
  }

  /** The fd of program `name` (owned by the object). */
  programFd(name: string): number {
    const p = checkPtr(
      "bpf_object__find_program_by_name",
      () => lib().bpf_object__find_program_by_name(this.#live(), cstr(name)),
      name,
    );
    return check("bpf_program__fd", () => lib().bpf_program__fd(p), name);
  }

  /** Map `name` (fd owned by the object). */
  map(name: string): BpfMap {
    const cached = this.#maps.get(name);
    if (cached) return cached;
    const m = this.#mapPtr(name);
    const b = lib();
    const fd = check("bpf_map__fd", () => b.bpf_map__fd(m), name);
    const map = new BpfMap(name, fd, {
      keySize: b.bpf_map__key_size(m),
      valueSize: b.bpf_map__value_size(m),
      perCpu: PER_CPU_MAPS.has(name),
      maxEntries: b.bpf_map__max_entries(m),
    });
    this.#maps.set(name, map);
    return map;
  }

  /** Closes the object: its fds go; pinned maps and links stay in the kernel. */
  close(): void {
    if (this.#ptr) lib().bpf_object__close(this.#ptr);
    this.#ptr = null;
    this.#maps.clear();
  }

  #live(): Deno.PointerObject {
    if (!this.#ptr) throw new Error("BPF object is closed");
    return this.#ptr;
  }

  #mapPtr(name: string): Deno.PointerObject {
    const obj = this.#live();
    return checkPtr(
      "bpf_object__find_map_by_name",
      () => lib().bpf_object__find_map_by_name(obj, cstr(name)),
      name,
    );
  }
}

/** The maps of bpf/blixt.c, in bpf/maps.h order. */
export const MAP_NAMES = [
  "services",
  "backends",
  "maglev",
  "conntrack",
  "config",
  "service_stats",
  "backend_stats",
  "events",
  "pod_ifaces",
  "clock",
  "reject_budget",
  "verified_clients",
] as const;

const PER_CPU_MAPS = new Set([
  "service_stats",
  "backend_stats",
  "events",
  "clock",
  "reject_budget",
]);

/** Options of {@linkcode testRun}. */
export interface TestRunOptions {
  /** Run the program this many times (for timing); default 1. */
  repeat?: number;
  /** `__sk_buff.ifindex` / `ingress_ifindex` seen by the program. */
  ifindex?: number;
  /** `__sk_buff.mark` seen by the program (with `ifindex`). */
  mark?: number;
  /** Room for the output packet; default input length + 256. */
  maxOutput?: number;
}

/** What a test run returned: the verdict, the output packet and ns per run. */
export interface TestRunResult {
  /** The program's return value (TC_ACT_*). */
  retval: number;
  /** The packet after the program ran. */
  data: Uint8Array;
  /** Average run time in ns as the kernel measured it. */
  durationNs: number;
}

/** Runs program `progFd` on `packet` in the kernel (`bpf_prog_test_run_opts`). */
export function testRun(
  progFd: number,
  packet: Uint8Array<ArrayBuffer>,
  options: TestRunOptions = {},
): TestRunResult {
  const out = new Uint8Array(options.maxOutput ?? packet.length + 256);
  let ctx: Uint8Array<ArrayBuffer> | null = null;
  if (options.ifindex !== undefined) {
    ctx = new Uint8Array(SK_BUFF_SIZE);
    const v = new DataView(ctx.buffer);
    v.setUint32(SK_BUFF_IFINDEX, options.ifindex, true);
    v.setUint32(SK_BUFF_INGRESS_IFINDEX, options.ifindex, true);
    v.setUint32(SK_BUFF_MARK, options.mark ?? 0, true);
  }
  const o = opts("bpf_test_run_opts", {
    data_in: Deno.UnsafePointer.of(packet),
    data_size_in: packet.length,
    data_out: Deno.UnsafePointer.of(out),
    data_size_out: out.length,
    ctx_in: ctx ? Deno.UnsafePointer.of(ctx) : null,
    ctx_size_in: ctx ? ctx.length : 0,
    repeat: options.repeat ?? 1,
  });
  check(
    "bpf_prog_test_run_opts",
    () => lib().bpf_prog_test_run_opts(progFd, o),
  );
  const size = optsField("bpf_test_run_opts", o, "data_size_out");
  return {
    retval: optsField("bpf_test_run_opts", o, "retval"),
    data: out.slice(0, size),
    durationNs: optsField("bpf_test_run_opts", o, "duration"),
  };
}
