/**
 * CPU time of a process from `/proc/PID/stat`, for the benchmarks that
 * compare processes' CPU over a run.
 *
 * @module
 */

/** CPU time (user + system, every thread) of process `pid` so far, in ms (USER_HZ = 100). */
export function processCpuMs(pid: number | "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // after the command name: utime and stime are fields 14 and 15 of stat, 12 and 13 here
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
