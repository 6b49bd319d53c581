/**
 * A benchmark run's claim on the local cluster it makes, so that it takes
 * down only a cluster it made. `clusterUp` reuses a cluster of the same name
 * and `clusterDown` removes whatever has that name: a run that met another
 * run's cluster (the same `BLIXT_CLUSTER_PREFIX`, or none) would measure on
 * it and then take it down under the other run, and a run whose set-up failed
 * before its cluster existed would take the other's down on its way out.
 *
 * The claim is a file in the cluster's state directory, made with
 * `createNew` (one run wins) before the cluster exists and removed with the
 * directory by `clusterDown`. A cluster that exists without this run's
 * claim is left alone and named in the error.
 *
 * @example
 * ```ts
 * import { withOwnCluster } from "./cluster_claim.ts";
 * import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
 *
 * await withOwnCluster("my-bench", async () => {
 *   const cluster = await clusterUp({ name: "my-bench" });
 *   // measure
 * }, () => clusterDown("my-bench"));
 * ```
 *
 * @module
 */
import { clusterName, getCluster, runDir } from "../tests/cluster/cluster.ts";
import { processAlive } from "../tests/cluster/host.ts";

/** The claim file of cluster `name` (its full name, prefix included). */
function claimPath(name: string): string {
  return `${runDir()}/clusters/${name}/bench-run`;
}

/** Whether cluster `name` exists (a state that cannot be read counts: it is left alone). */
async function exists(name: string): Promise<boolean> {
  return await getCluster(name).then((c) => c !== undefined, () => true);
}

/**
 * Claims cluster `name` (`BLIXT_CLUSTER_PREFIX` in front, as `clusterUp`
 * names it) for this process before it is made. Throws, touching nothing of
 * the cluster, when another live run holds it or when it exists already.
 */
export async function claimCluster(name: string): Promise<void> {
  const full = clusterName(name);
  const path = claimPath(full);
  const prefix = Deno.env.get("BLIXT_CLUSTER_PREFIX");
  const down = `take it down with \`${prefix ? `BLIXT_CLUSTER_PREFIX=${prefix} ` : ""}deno task ` +
    `cluster:down --name ${name}\` if no run uses it, or give this run another ` +
    "BLIXT_CLUSTER_PREFIX";
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  for (let attempt = 0;; attempt++) {
    try {
      await Deno.writeTextFile(path, String(Deno.pid), { createNew: true });
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists) || attempt > 0) throw e;
    }
    const holder = Number(await Deno.readTextFile(path).catch(() => "0"));
    if (holder > 0 && holder !== Deno.pid && processAlive(holder)) {
      throw new Error(`cluster ${full} belongs to another run (pid ${holder}); this run leaves it`);
    }
    if (await exists(name)) {
      throw new Error(`cluster ${full} was left by a run that is gone (pid ${holder}): ${down}`);
    }
    // a run that is gone before it made its cluster: nothing of it to take down
    await Deno.remove(path).catch(() => {});
  }
  if (await exists(name)) {
    await Deno.remove(path);
    throw new Error(`cluster ${full} exists and this run did not make it: ${down}`);
  }
}

/**
 * Runs `use` with cluster `name` claimed ({@linkcode claimCluster}), then
 * `down` (taking the cluster down) whether `use` succeeded or not. When the
 * claim fails, neither runs: the cluster is another run's.
 */
export async function withOwnCluster<T>(
  name: string,
  use: () => Promise<T>,
  down: () => Promise<void>,
): Promise<T> {
  await claimCluster(name);
  try {
    return await use();
  } finally {
    await down();
  }
}
