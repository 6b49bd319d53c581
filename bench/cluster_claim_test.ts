import assert from "node:assert/strict";
import { claimCluster, withOwnCluster } from "./cluster_claim.ts";

/**
 * Runs `fn` with the clusters' state under a directory of its own (no
 * cluster of this machine is seen or touched) and the prefix `n4t-`.
 */
async function inRunDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const saved = ["BLIXT_RUN_DIR", "BLIXT_CLUSTER_PREFIX"].map((k) => [k, Deno.env.get(k)] as const);
  const dir = await Deno.makeTempDir({ prefix: "cluster-claim-" });
  Deno.env.set("BLIXT_RUN_DIR", dir);
  Deno.env.set("BLIXT_CLUSTER_PREFIX", "n4t-");
  try {
    await fn(`${dir}/clusters/n4t-peer-bench`);
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    await Deno.remove(dir, { recursive: true });
  }
}

/** A cluster's state as `clusterUp` leaves it: its directory with cluster.json. */
async function existingCluster(dir: string, claimedBy?: number): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const state = { name: "n4t-peer-bench", slot: 0, nodes: 2, channel: "experimental", pods: {} };
  await Deno.writeTextFile(`${dir}/cluster.json`, JSON.stringify(state));
  if (claimedBy !== undefined) await Deno.writeTextFile(`${dir}/bench-run`, String(claimedBy));
}

/** A step of a run that records that it ran in `calls`. */
function step(calls: string[], what: string): () => Promise<void> {
  return () => {
    calls.push(what);
    return Promise.resolve();
  };
}

/** The pid of a process that has exited. */
async function goneProcess(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

Deno.test("a run does not take down the cluster of another run that is still running", async () => {
  await inRunDir(async (dir) => {
    const other = new Deno.Command("sleep", { args: ["60"] }).spawn();
    try {
      await existingCluster(dir, other.pid);
      const calls: string[] = [];
      await assert.rejects(
        withOwnCluster("peer-bench", step(calls, "use"), step(calls, "down")),
        new RegExp(`cluster n4t-peer-bench belongs to another run \\(pid ${other.pid}\\)`),
      );
      assert.deepEqual(calls, [], "this run used the other run's cluster or took it down");
      assert.equal(await Deno.readTextFile(`${dir}/bench-run`), String(other.pid));
      assert.match(await Deno.readTextFile(`${dir}/cluster.json`), /"n4t-peer-bench"/);
    } finally {
      other.kill();
      await other.status;
    }
  });
});

Deno.test("a cluster no run claimed (cluster:up, a test) is left alone and named", async () => {
  await inRunDir(async (dir) => {
    await existingCluster(dir);
    const calls: string[] = [];
    await assert.rejects(
      withOwnCluster("peer-bench", step(calls, "use"), step(calls, "down")),
      /cluster n4t-peer-bench exists and this run did not make it: take it down with `BLIXT_CLUSTER_PREFIX=n4t- deno task cluster:down --name peer-bench`/,
    );
    assert.deepEqual(calls, []);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["cluster.json"]);
  });
});

Deno.test("a cluster left by a run that is gone is not taken over", async () => {
  await inRunDir(async (dir) => {
    const gone = await goneProcess();
    await existingCluster(dir, gone);
    await assert.rejects(
      claimCluster("peer-bench"),
      new RegExp(`cluster n4t-peer-bench was left by a run that is gone \\(pid ${gone}\\)`),
    );
    assert.match(await Deno.readTextFile(`${dir}/cluster.json`), /"n4t-peer-bench"/);
  });
});

Deno.test("a run claims a new cluster, and one a gone run claimed but never made", async () => {
  await inRunDir(async (dir) => {
    const order: string[] = [];
    const out = await withOwnCluster("peer-bench", async () => {
      order.push("use");
      assert.equal(await Deno.readTextFile(`${dir}/bench-run`), String(Deno.pid));
      return 7;
    }, step(order, "down"));
    assert.equal(out, 7);
    assert.deepEqual(order, ["use", "down"]);

    await Deno.writeTextFile(`${dir}/bench-run`, String(await goneProcess()));
    await claimCluster("peer-bench");
    assert.equal(await Deno.readTextFile(`${dir}/bench-run`), String(Deno.pid));
  });
});

Deno.test("a run whose set-up fails takes down the cluster it claimed", async () => {
  await inRunDir(async () => {
    const calls: string[] = [];
    await assert.rejects(
      withOwnCluster(
        "peer-bench",
        () => Promise.reject(new Error("set-up failed")),
        step(calls, "down"),
      ),
      /set-up failed/,
    );
    assert.deepEqual(calls, ["down"]);
  });
});

Deno.test("a cluster whose state cannot be read is left alone too", async () => {
  await inRunDir(async (dir) => {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${dir}/cluster.json`, "{}");
    await assert.rejects(claimCluster("peer-bench"), /exists and this run did not make it/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["cluster.json"]);
  });
});
