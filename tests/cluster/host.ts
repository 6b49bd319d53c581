/**
 * Thin wrappers over the host's tools (ip, processes, mounts) that the local
 * cluster drives. Each throws a {@link CommandError} with the command's
 * standard error when the tool fails, so a broken step says what broke.
 *
 * @module
 */

/** A host command that exited non-zero. */
export class CommandError extends Error {
  constructor(
    readonly command: readonly string[],
    readonly code: number,
    readonly stderr: string,
  ) {
    super(`${command.join(" ")} exited ${code}: ${stderr.trim()}`);
    this.name = "CommandError";
  }
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
  /** Text written to the command's standard input. */
  stdin?: string;
  /** Do not throw when the command fails; return its output anyway. */
  allowFailure?: boolean;
  env?: Record<string, string>;
  cwd?: string;
}

/** What a finished command printed. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const decoder = new TextDecoder();

/** Runs `command` to completion and returns what it printed. */
export async function run(
  command: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const argv = options.netns ? ["ip", "netns", "exec", options.netns, ...command] : [...command];
  const [program, ...args] = argv;
  if (program === undefined) throw new Error("run: empty command");
  const child = new Deno.Command(program, {
    args,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const result = {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
  if (result.code !== 0 && !options.allowFailure) {
    throw new CommandError(argv, result.code, result.stderr || result.stdout);
  }
  return result;
}

/** Runs `ip` with `args` (in `netns` when given) and returns its output. */
export async function ip(
  args: readonly string[],
  options: { netns?: string } = {},
): Promise<string> {
  const prefix = options.netns ? ["-n", options.netns] : [];
  return (await run(["ip", ...prefix, ...args])).stdout;
}

/** Names of the host's network namespaces. */
export async function listNetns(): Promise<string[]> {
  const out = await ip(["-j", "netns", "list"]);
  if (out.trim() === "") return [];
  return (JSON.parse(out) as { name: string }[]).map((n) => n.name);
}

/** Whether link `name` exists (in `netns` when given). */
export async function linkExists(
  name: string,
  options: { netns?: string } = {},
): Promise<boolean> {
  const prefix = options.netns ? ["-n", options.netns] : [];
  const res = await run(["ip", ...prefix, "link", "show", "dev", name], {
    allowFailure: true,
  });
  return res.code === 0;
}

/** Options of {@link spawnDetached}. */
export interface SpawnOptions {
  /** Start the process inside this network namespace. */
  netns?: string;
  /** File that receives the process's standard output and error. */
  log: string;
  env?: Record<string, string>;
  cwd?: string;
}

/**
 * Starts `command` in a session of its own, detached from this process, its
 * output appended to `options.log`; returns its pid. The process outlives
 * the caller: the cluster's processes run until `cluster:down`.
 */
export async function spawnDetached(
  command: readonly string[],
  options: SpawnOptions,
): Promise<number> {
  const argv = options.netns ? ["ip", "netns", "exec", options.netns, ...command] : [...command];
  // sh backgrounds setsid, which (not being a group leader) execs in place:
  // `$!` is then the pid of the command itself.
  const script = `setsid "$@" >>${shellQuote(options.log)} 2>&1 </dev/null &
echo $!`;
  const res = await run(["sh", "-c", script, "sh", ...argv], {
    ...(options.env ? { env: options.env } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  const pid = Number(res.stdout.trim());
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new Error(`could not start ${argv.join(" ")}: ${res.stdout}`);
  }
  return pid;
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Whether process `pid` exists (and is not a zombie). */
export function processAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(
      stat.lastIndexOf(")") + 2,
      stat.lastIndexOf(")") + 3,
    );
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/**
 * Stops process `pid`: SIGTERM, then SIGKILL after `graceMs`. Resolves once
 * it is gone; a process that is already gone is fine.
 */
export async function stopProcess(pid: number, graceMs = 5000): Promise<void> {
  if (!processAlive(pid)) return;
  try {
    Deno.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (processAlive(pid) && Date.now() < deadline) {
    await sleep(50);
  }
  if (processAlive(pid)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      return;
    }
    while (processAlive(pid)) await sleep(20);
  }
}

/**
 * Waits until nothing listens on `ip:port` in this namespace (bounded). A
 * killed multi-threaded process (Go's) shows as a zombie once its leader
 * thread exits, while its other threads may still hold the listening socket
 * for a few milliseconds: a successor started then fails with "address
 * already in use".
 */
export async function waitListenerGone(
  ip: string,
  port: number,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const res = await run(["ss", "-Hltn", "src", `${ip}:${port}`], { allowFailure: true });
    if (res.code === 0 && res.stdout.trim() === "") return;
    await sleep(20);
  }
  throw new Error(`${ip}:${port} still has a listener after ${timeoutMs} ms`);
}

/** Pids of the processes whose network namespace is `netns`. */
export async function netnsPids(netns: string): Promise<number[]> {
  const res = await run(["ip", "netns", "pids", netns], { allowFailure: true });
  return res.stdout.split(/\s+/).filter((s) => s !== "").map(Number);
}

/** Mount points under `prefix`, deepest first (the order to unmount them). */
export async function mountsUnder(prefix: string): Promise<string[]> {
  const text = await Deno.readTextFile("/proc/self/mounts");
  return text.split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .map((p) => p.replaceAll("\\040", " "))
    .filter((p) => p === prefix || p.startsWith(prefix + "/"))
    .sort((a, b) => b.length - a.length);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Writes `text` to `path` atomically (write to a sibling, then rename). */
export async function writeFileAtomic(
  path: string,
  text: string,
): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}
