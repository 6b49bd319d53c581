/**
 * One container of a pod as a process: started in the pod's network
 * namespace with a private mount namespace (its volumes bind-mounted where
 * it expects them) and UTS namespace (the pod's hostname), stopped with
 * SIGTERM then SIGKILL after the grace period, probed for readiness and
 * liveness (httpGet, tcpSocket, exec).
 *
 * @module
 */

import { type BindMount, containerScript, type Probe, resolvePort } from "./pod_spec.ts";
import type { ContainerSpec } from "./pod_spec.ts";

/** How a container process ended. */
export interface ContainerExit {
  exitCode: number;
  signal?: number;
  startedAt: string;
  finishedAt: string;
  /** Last lines of its log, for a container that failed. */
  tail: string;
}

const SIGNALS: Record<string, number> = { SIGTERM: 15, SIGKILL: 9, SIGINT: 2, SIGHUP: 1 };

/** Options of {@link startContainer}. */
export interface StartOptions {
  netns: string;
  argv: string[];
  env: Record<string, string>;
  mounts: BindMount[];
  overlayDir: string;
  hostname: string;
  logFile: string;
  workingDir: string;
}

/** A running container process. */
export class ContainerProcess {
  readonly startedAt = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  /** Resolves when the process has ended. */
  readonly exited: Promise<ContainerExit>;
  #child: Deno.ChildProcess;

  constructor(child: Deno.ChildProcess, logFile: string) {
    this.#child = child;
    this.exited = child.status.then(async (status) => {
      const finishedAt = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      const signal = status.signal ? SIGNALS[status.signal] ?? 15 : undefined;
      const tail = status.code === 0 ? "" : await logTail(logFile);
      return {
        exitCode: signal !== undefined ? 128 + signal : status.code,
        ...(signal !== undefined ? { signal } : {}),
        startedAt: this.startedAt,
        finishedAt,
        tail,
      };
    });
  }

  /** Pid of the container's process (the script execs into it). */
  get pid(): number {
    return this.#child.pid;
  }

  /** SIGTERM, then SIGKILL once `graceSeconds` have passed; resolves when it has ended. */
  async stop(graceSeconds: number): Promise<ContainerExit> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      this.#child.kill("SIGTERM");
      timer = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }, Math.max(0, graceSeconds) * 1000);
    } catch {
      // already gone
    }
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

async function logTail(file: string): Promise<string> {
  const text = await Deno.readTextFile(file).catch(() => "");
  return text.trimEnd().split("\n").slice(-5).join("\n").slice(-1000);
}

/** Starts a container process (see the module doc). */
export function startContainer(options: StartOptions): ContainerProcess {
  const script = containerScript(options);
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      options.netns,
      "unshare",
      "--uts",
      "sh",
      "-c",
      script,
      "sh",
      ...options.argv,
    ],
    env: options.env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  return new ContainerProcess(child, options.logFile);
}

/** The outcome of one probe. */
export type ProbeResult = { ok: true } | { ok: false; message: string };

/**
 * Runs `probe` once against the container (`podIP` for httpGet and
 * tcpSocket; `pid` for exec, which enters the container's namespaces).
 */
export async function runProbe(
  probe: Probe,
  container: ContainerSpec,
  target: { podIP: string; pid: number; env: Record<string, string> },
): Promise<ProbeResult> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  try {
    if (probe.httpGet) {
      const g = probe.httpGet;
      const port = resolvePort(container, g.port);
      const scheme = (g.scheme ?? "HTTP").toLowerCase();
      const host = g.host ?? target.podIP;
      const path = g.path ?? "/";
      const headers: Record<string, string> = { "User-Agent": "kube-probe/1.37" };
      for (const h of g.httpHeaders ?? []) headers[h.name] = h.value;
      const client = scheme === "https" ? Deno.createHttpClient({}) : undefined;
      try {
        const res = await fetch(
          `${scheme}://${host}:${port}${path.startsWith("/") ? "" : "/"}${path}`,
          {
            headers,
            redirect: "manual",
            signal: AbortSignal.timeout(timeoutMs),
            ...(client ? { client } : {}),
          },
        );
        await res.body?.cancel();
        if (res.status >= 200 && res.status < 400) return { ok: true };
        return { ok: false, message: `HTTP probe failed with statuscode: ${res.status}` };
      } finally {
        client?.close();
      }
    }
    if (probe.tcpSocket) {
      const port = resolvePort(container, probe.tcpSocket.port);
      const hostname = probe.tcpSocket.host ?? target.podIP;
      const conn = await withTimeout(Deno.connect({ hostname, port }), timeoutMs);
      conn.close();
      return { ok: true };
    }
    if (probe.exec) {
      const child = new Deno.Command("nsenter", {
        args: ["-t", String(target.pid), "-m", "-n", "-u", "--", ...probe.exec.command],
        env: target.env,
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // ended
        }
      }, timeoutMs);
      const out = await child.output();
      clearTimeout(timer);
      if (out.code === 0) return { ok: true };
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      return { ok: false, message: `exec probe exited ${out.code}: ${text.trim().slice(0, 200)}` };
    }
    return {
      ok: false,
      message: "probe has no httpGet, tcpSocket or exec handler (grpc is not supported)",
    };
  } catch (e) {
    return { ok: false, message: `probe failed: ${e instanceof Error ? e.message : String(e)}` };
  }
}

async function withTimeout<T extends { close(): void }>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } catch (e) {
    // A connect that wins after the timeout must not leak its socket.
    p.then((c) => c.close(), () => {});
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
