/**
 * A CPU profile of another Deno process over the V8 inspector (this Deno has
 * no `--cpu-prof`): start that process with `--inspect=HOST:PORT`, call
 * {@link startCpuProfile} for the stretch to profile, and `stop()` returns the
 * profile (Chrome DevTools' `.cpuprofile` format) and a summary of the
 * functions that took the most time themselves.
 *
 * ```sh
 * deno run -A bench/tools/cpu_profile.ts --inspect 127.0.0.1:9339 --seconds 30 --out op.cpuprofile
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** A V8 CPU profile (the inspector's `Profiler.Profile`). */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** A profile being taken; `stop()` ends it. */
export interface RunningProfile {
  stop(): Promise<CpuProfile>;
}

/**
 * Starts the V8 profiler of the process whose inspector listens on `hostPort`
 * (`127.0.0.1:9229`), sampling every `intervalUs` microseconds (default 250).
 */
export async function startCpuProfile(
  hostPort: string,
  options: { intervalUs?: number } = {},
): Promise<RunningProfile> {
  const targets = await (await fetch(`http://${hostPort}/json/list`)).json() as {
    webSocketDebuggerUrl: string;
  }[];
  const url = targets[0]?.webSocketDebuggerUrl;
  if (!url) throw new Error(`no inspector target at ${hostPort}`);
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error(`cannot connect to the inspector at ${url}`));
  });
  let id = 0;
  const waiting = new Map<number, (result: unknown) => void>();
  ws.onmessage = (e) => {
    const msg = JSON.parse(String(e.data)) as { id?: number; result?: unknown; error?: unknown };
    if (msg.id === undefined) return;
    const done = waiting.get(msg.id);
    waiting.delete(msg.id);
    done?.(msg.error ? { error: msg.error } : msg.result);
  };
  const call = (method: string, params: unknown = {}) =>
    new Promise<unknown>((resolve) => {
      const n = ++id;
      waiting.set(n, resolve);
      ws.send(JSON.stringify({ id: n, method, params }));
    });
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: options.intervalUs ?? 250 });
  await call("Profiler.start");
  return {
    async stop() {
      const result = await call("Profiler.stop") as { profile?: CpuProfile; error?: unknown };
      ws.close();
      if (!result.profile) throw new Error(`Profiler.stop: ${JSON.stringify(result.error)}`);
      return result.profile;
    },
  };
}

/**
 * The `top` functions by self time (ms and share of the samples), one line
 * each, then the total; `(idle)` is the process waiting.
 */
export function summarizeProfile(profile: CpuProfile, top = 25): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    // a sample's time is the delta to the next one
    const us = deltas[i + 1] ?? 0;
    self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + us);
  }
  const byFunction = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [nodeId, us] of self) {
    const frame = byId.get(nodeId)?.callFrame;
    const name = frame?.functionName || "(anonymous)";
    const where = frame?.url
      ? ` ${frame.url.replace(/^.*\/(?=[^/]+\/[^/]+$)/, "")}:${frame.lineNumber + 1}`
      : "";
    const key = name + where;
    if (name === "(idle)") idle += us;
    else total += us;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  }
  const lines = [...byFunction].filter(([k]) => !k.startsWith("(idle)"))
    .sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([k, us]) =>
      `${(us / 1000).toFixed(1).padStart(9)} ms ${(100 * us / total).toFixed(1).padStart(5)}%  ${k}`
    );
  lines.push(`busy ${(total / 1000).toFixed(0)} ms, idle ${(idle / 1000).toFixed(0)} ms`);
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      inspect: { type: "string", default: "127.0.0.1:9229" },
      seconds: { type: "string", default: "30" },
      out: { type: "string" },
      top: { type: "string", default: "25" },
    },
  });
  const running = await startCpuProfile(values.inspect);
  await new Promise((r) => setTimeout(r, Number(values.seconds) * 1000));
  const profile = await running.stop();
  if (values.out) await Deno.writeTextFile(values.out, JSON.stringify(profile));
  console.log(summarizeProfile(profile, Number(values.top)));
}
