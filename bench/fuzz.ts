/**
 * `deno task bench fuzz [--packets N] [--seed S]`: the packet fuzz of
 * tests/reliability/packet_fuzz.ts (default 1,000,000 packets), as JSON lines:
 * packets per second through the harness, verdict counts, violations (must be 0).
 *
 * @module
 */
import { runPacketFuzz } from "../tests/reliability/packet_fuzz.ts";

function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : fallback;
}

function emit(name: string, value: number, unit: string, better: "higher" | "lower"): void {
  console.log(JSON.stringify({ name, value, unit, better }));
}

/** Runs the fuzz and prints its figures. */
export async function main(args: string[]): Promise<void> {
  const r = await runPacketFuzz(arg(args, "packets", 1_000_000), { seed: arg(args, "seed", 1) });
  emit("fuzz_packets", r.packets, "packets", "higher");
  emit("fuzz_packets_per_second", Math.round(r.packets / r.seconds), "packets/s", "higher");
  emit("fuzz_pass", r.verdicts.pass, "packets", "higher");
  emit("fuzz_drop", r.verdicts.drop, "packets", "lower");
  emit("fuzz_reject", r.verdicts.reject, "packets", "lower");
  emit("fuzz_rewritten_checked", r.checksumChecked, "packets", "higher");
  emit("fuzz_conntrack_entries", r.conntrackEntries, "entries", "lower");
  emit("fuzz_violations", r.violationCount, "violations", "lower");
  for (const v of r.violations) console.error(v);
  if (r.violationCount > 0) Deno.exitCode = 1;
}
