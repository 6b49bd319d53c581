/**
 * Compiles the TC program (`bpf/blixt.c` and its headers) into
 * `bpf/blixt.o` with clang. Idempotent: nothing happens while the object is
 * newer than every source. `deno task build:bpf` runs it.
 *
 * @example
 * ```ts
 * import { buildBpf } from "./bpf/build.ts";
 * const object = await buildBpf();
 * ```
 *
 * @module
 */

const BPF_DIR = new URL(".", import.meta.url).pathname;

/** Path of the compiled object. */
export const BPF_OBJECT = `${BPF_DIR}blixt.o`;

/** clang flags; changing them here changes this file's mtime, which rebuilds. */
function clangArgs(out: string): string[] {
  const arch = Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
  return [
    "-O2",
    "-g",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Werror",
    "-target",
    "bpf",
    // linux/types.h wants asm/types.h, which Debian keeps under the multiarch dir.
    `-I/usr/include/${arch}-linux-gnu`,
    "-c",
    `${BPF_DIR}blixt.c`,
    "-o",
    out,
  ];
}

/** Options of {@linkcode buildBpf}. */
export interface BuildOptions {
  /** Rebuild even when the object is up to date. */
  force?: boolean;
  /** The compiler (default `clang`). */
  clang?: string;
}

function mtime(path: string): number {
  try {
    return Deno.statSync(path).mtime?.getTime() ?? 0;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
}

function newestSource(): number {
  let newest = mtime(new URL(import.meta.url).pathname);
  for (const entry of Deno.readDirSync(BPF_DIR)) {
    if (entry.isFile && /\.(c|h)$/.test(entry.name)) {
      newest = Math.max(newest, mtime(`${BPF_DIR}${entry.name}`));
    }
  }
  return newest;
}

/**
 * Builds `bpf/blixt.o` if any source is newer than it and returns its path.
 * The object is written to a temporary file and renamed, so concurrent
 * builds never see a half-written object.
 */
export async function buildBpf(options: BuildOptions = {}): Promise<string> {
  if (!options.force && mtime(BPF_OBJECT) > newestSource()) return BPF_OBJECT;
  const tmp = `${BPF_OBJECT}.${Deno.pid}.tmp`;
  const out = await new Deno.Command(options.clang ?? "clang", {
    args: clangArgs(tmp),
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(
      `clang failed building ${BPF_OBJECT}:\n${new TextDecoder().decode(out.stderr)}`,
    );
  }
  await Deno.rename(tmp, BPF_OBJECT);
  return BPF_OBJECT;
}

if (import.meta.main) {
  const path = await buildBpf({ force: Deno.args.includes("--force") });
  console.log(path);
}
