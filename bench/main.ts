/**
 * Benchmark entry point: `deno task bench NAME [args]` runs bench/NAME.ts,
 * which prints JSON lines (name, value, unit, better, and peer, peer_value,
 * ratio where a peer ran).
 *
 * @module
 */

const BENCHMARKS: Record<
  string,
  () => Promise<{ main(args: string[]): Promise<void> }>
> = {
  dataplane: () => import("./dataplane.ts"),
  agent: () => import("./agent.ts"),
  sync: () => import("./agent_sync.ts"),
  operator: () => import("./operator.ts"),
  peer: () => import("./peer.ts"),
  fuzz: () => import("./fuzz.ts"),
  soak: () => import("./soak.ts"),
  nodes: () => import("./tools/nodes_scale.ts"),
};

if (import.meta.main) {
  const [name, ...rest] = Deno.args;
  const load = name ? BENCHMARKS[name] : undefined;
  if (!load) {
    console.error(
      `usage: deno task bench <${Object.keys(BENCHMARKS).join("|")}> [args]`,
    );
    Deno.exit(2);
  }
  await (await load()).main(rest);
}
