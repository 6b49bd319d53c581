/**
 * Leader election as the operator's replicas live it, against the real API
 * server of the local cluster: one leader at a time, a standby that takes
 * over when the leader dies or hands over, a cut-off leader that steps down
 * before anyone else may lead, and a Lease that kubectl shows as a user
 * expects.
 */

import assert from "node:assert/strict";
import type { k8s } from "./client.ts";
import {
  type LeaderElectionOptions,
  LeaderElector,
  type LeaseRef,
  microTime,
} from "./leader_election.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { apiServerProxy, eventually, kubeConfigThrough } from "./_testing.ts";
import type { LogEntry } from "./log.ts";

const CLUSTER = "kube-test";
const NAMESPACE = "blixt-system";
/** Short timings keep the test fast; one step runs the real 15 s / 10 s / 2 s. */
const FAST = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 };
const MICROTIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

/** Who led when (performance.now() ms), from the callbacks. */
interface Term {
  identity: string;
  start: number;
  end?: number;
}

/** Candidates of one Lease and the record of their terms. */
class Election {
  readonly terms: Term[] = [];
  readonly candidates = new Map<string, LeaderElector>();
  readonly seen = new Map<string, string[]>();
  readonly logs: LogEntry[] = [];
  constructor(readonly lease: LeaseRef) {}

  /** Starts candidate `identity` with its own client configuration. */
  add(
    identity: string,
    kc: k8s.KubeConfig,
    options: Partial<LeaderElectionOptions> = FAST,
  ): LeaderElector {
    this.seen.set(identity, []);
    const elector = new LeaderElector(kc, this.lease, {
      identity,
      ...options,
      onStartedLeading: () => {
        this.terms.push({ identity, start: performance.now() });
      },
      onStoppedLeading: () => {
        const term = this.terms.findLast((t) => t.identity === identity && t.end === undefined);
        if (term) term.end = performance.now();
      },
      onNewLeader: (leader) => this.seen.get(identity)!.push(leader),
      log: (entry) => this.logs.push({ identity, ...entry }),
    });
    this.candidates.set(identity, elector);
    return elector.start();
  }

  /** The candidates that lead now. */
  leaders(): string[] {
    return [...this.candidates].filter(([, e]) => e.isLeader).map(([id]) => id);
  }

  /** Asserts that no two terms overlapped: never two leaders at once. */
  assertOneLeaderAtATime(): void {
    const terms = [...this.terms].sort((a, b) => a.start - b.start);
    for (let i = 1; i < terms.length; i++) {
      const before = terms[i - 1]!;
      const after = terms[i]!;
      assert.ok(
        before.end !== undefined && before.end <= after.start,
        `${before.identity}'s term overlaps ${after.identity}'s`,
      );
    }
  }

  async stopAll(): Promise<void> {
    for (const elector of this.candidates.values()) await elector.stop();
  }
}

interface LeaseJson {
  metadata: { labels?: Record<string, string> };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

Deno.test("microTime: RFC 3339 UTC with exactly six fractional digits", () => {
  const micros = Date.UTC(2026, 10, 26, 10, 0, 0, 123) * 1000 + 456;
  assert.equal(microTime(micros), "2026-11-26T10:00:00.123456Z");
  assert.equal(microTime(Date.UTC(2026, 0, 1) * 1000 + 7), "2026-01-01T00:00:00.000007Z");
  assert.match(microTime(), MICROTIME);
});

Deno.test("leader election: timings that cannot be safe are refused", () => {
  const kc = undefined as unknown as k8s.KubeConfig;
  const lease = { namespace: "x", name: "y" };
  assert.throws(
    () => new LeaderElector(kc, lease, { identity: "a", leaseDurationMs: 10_000 }),
    /leaseDurationMs must be greater than renewDeadlineMs/,
  );
  assert.throws(
    () => new LeaderElector(kc, lease, { identity: "a", retryPeriodMs: 9_000 }),
    /renewDeadlineMs must be greater/,
  );
  assert.throws(() => new LeaderElector(kc, lease, { identity: "" }), /needs an identity/);
});

Deno.test("leader election on a real Lease: one leader, takeover, handover, a cut-off leader", async (t) => {
  const cluster = await clusterUp({ name: CLUSTER, nodes: 1 });
  const kubectlLease = async (name: string) =>
    JSON.parse(
      await cluster.kubectl(["get", "lease", name, "-n", NAMESPACE, "-o", "json"]),
    ) as LeaseJson;
  try {
    await cluster.kubectl(["create", "namespace", NAMESPACE]);
    const election = new Election({ namespace: NAMESPACE, name: "blixt-operator" });

    await t.step(
      "three candidates start at once: exactly one leads, all agree, kubectl shows the Lease",
      async () => {
        for (const id of ["op-a", "op-b", "op-c"]) election.add(id, cluster.kubeConfig());
        await eventually("a leader", () => election.leaders().length > 0);
        const [leader] = election.leaders();
        // A whole lease duration of renewals later, still the one same leader.
        await new Promise((resolve) => setTimeout(resolve, FAST.leaseDurationMs));
        assert.deepEqual(election.leaders(), [leader]);
        await eventually(
          "every candidate saw the leader",
          () => [...election.seen.values()].every((seen) => seen.at(-1) === leader),
        );
        assert.equal(election.terms.length, 1);

        const lease = await kubectlLease("blixt-operator");
        assert.equal(lease.spec.holderIdentity, leader);
        assert.equal(lease.spec.leaseDurationSeconds, 3);
        assert.equal(lease.spec.leaseTransitions, 0);
        assert.match(lease.spec.acquireTime ?? "", MICROTIME);
        assert.match(lease.spec.renewTime ?? "", MICROTIME);
        assert.equal(lease.metadata.labels?.["app.kubernetes.io/part-of"], "blixt");
        assert.match(
          await cluster.kubectl(["get", "lease", "-n", NAMESPACE]),
          new RegExp(`blixt-operator\\s+${leader}\\s`),
          "kubectl get lease shows the holder",
        );
        await eventually(
          "the leader renews",
          async () =>
            (await kubectlLease("blixt-operator")).spec.renewTime! > lease.spec.renewTime!,
        );
      },
    );

    await t.step(
      "the leader dies without releasing: a standby takes over within the lease duration",
      async () => {
        const [dead] = election.leaders();
        const diedAt = performance.now();
        await election.candidates.get(dead!)!.stop({ release: false });
        await eventually("another leader", () => election.leaders().length === 1, {
          timeoutMs: 10_000,
        });
        const [next] = election.leaders();
        const takeoverMs = election.terms.at(-1)!.start - diedAt;
        console.log(`takeover after the leader died: ${Math.round(takeoverMs)} ms (lease 3000 ms)`);
        assert.notEqual(next, dead);
        // It waited for the lease to run out, counted from the last renewal it saw...
        assert.ok(takeoverMs > FAST.leaseDurationMs - FAST.retryPeriodMs * 2, `${takeoverMs} ms`);
        // ...and not longer (plus the two requests that take the Lease).
        assert.ok(takeoverMs < FAST.leaseDurationMs + 300, `${takeoverMs} ms`);
        const lease = await kubectlLease("blixt-operator");
        assert.equal(lease.spec.holderIdentity, next);
        assert.equal(lease.spec.leaseTransitions, 1);
        election.assertOneLeaderAtATime();
      },
    );

    await t.step("a graceful release hands over at once", async () => {
      const [leaving] = election.leaders();
      const releasedAt = performance.now();
      await election.candidates.get(leaving!)!.stop();
      await eventually("the last standby leads", () => election.leaders().length === 1);
      const handoverMs = election.terms.at(-1)!.start - releasedAt;
      console.log(`handover after a release: ${Math.round(handoverMs)} ms`);
      assert.ok(handoverMs < 1_000, `${handoverMs} ms`);
      const lease = await kubectlLease("blixt-operator");
      assert.equal(lease.spec.holderIdentity, election.leaders()[0]);
      assert.equal(lease.spec.leaseTransitions, 2);
      election.assertOneLeaderAtATime();
      await election.stopAll();
      assert.equal(
        (await kubectlLease("blixt-operator")).spec.holderIdentity ?? "",
        "",
        "the last leader released the Lease on stop",
      );
    });

    await t.step(
      "a leader cut off from the API server steps down within the renew deadline, before the standby takes over",
      async () => {
        const proxy = apiServerProxy(cluster);
        const cut = new Election({ namespace: NAMESPACE, name: "blixt-partition" });
        try {
          const far = cut.add("far", kubeConfigThrough(cluster, proxy));
          await eventually("far leads", () => far.isLeader);
          const near = cut.add("near", cluster.kubeConfig());
          await eventually("near sees far lead", () => near.leader === "far");
          // Silence, not resets: far's renewals hang until its deadline aborts them.
          proxy.setMode("blackhole");
          const cutAt = performance.now();
          await eventually("near leads", () => near.isLeader, { timeoutMs: 10_000 });
          const farTerm = cut.terms.find((term) => term.identity === "far")!;
          const nearTerm = cut.terms.find((term) => term.identity === "near")!;
          assert.ok(farTerm.end !== undefined, "far stepped down");
          const stepDownMs = farTerm.end - cutAt;
          const marginMs = nearTerm.start - farTerm.end;
          console.log(
            `cut-off leader stepped down ${Math.round(stepDownMs)} ms after the cut; ` +
              `the standby took over ${Math.round(marginMs)} ms after that`,
          );
          assert.ok(
            stepDownMs <= FAST.renewDeadlineMs + 100,
            `stepped down after ${stepDownMs} ms`,
          );
          assert.ok(marginMs > 0, "never two leaders");
          cut.assertOneLeaderAtATime();
          assert.ok(
            cut.logs.some((l) => l.identity === "far" && /renew deadline/.test(String(l.reason))),
            "far says why it stepped down",
          );
          // The link heals; far, stopping, must not release the Lease it lost.
          proxy.setMode("forward");
          await far.stop();
          assert.equal((await kubectlLease("blixt-partition")).spec.holderIdentity, "near");
          assert.ok(near.isLeader);
        } finally {
          await cut.stopAll();
          await proxy.close();
        }
      },
    );

    await t.step(
      "at the defaults (15 s / 10 s / 2 s) a standby takes over within 15 s of the leader's death",
      async () => {
        const defaults = new Election({ namespace: NAMESPACE, name: "blixt-defaults" });
        try {
          defaults.add("first", cluster.kubeConfig(), {});
          await eventually("first leads", () => defaults.leaders().length === 1);
          const standby = defaults.add("second", cluster.kubeConfig(), {});
          await eventually("the standby sees the leader", () => standby.leader === "first");
          // Die a moment after a renewal, the worst case for the standby.
          const renewed = (await kubectlLease("blixt-defaults")).spec.renewTime;
          await eventually(
            "a renewal",
            async () => (await kubectlLease("blixt-defaults")).spec.renewTime !== renewed,
            { timeoutMs: 5_000 },
          );
          const diedAt = performance.now();
          await defaults.candidates.get("first")!.stop({ release: false });
          await eventually("second leads", () => standby.isLeader, { timeoutMs: 20_000 });
          const takeoverMs = defaults.terms.at(-1)!.start - diedAt;
          console.log(`takeover at the defaults: ${Math.round(takeoverMs)} ms (lease 15000 ms)`);
          assert.ok(takeoverMs <= 15_000 + 300, `${takeoverMs} ms`);
          const lease = await kubectlLease("blixt-defaults");
          assert.equal(lease.spec.holderIdentity, "second");
          assert.equal(lease.spec.leaseDurationSeconds, 15);
          defaults.assertOneLeaderAtATime();
        } finally {
          await defaults.stopAll();
        }
      },
    );
  } finally {
    await clusterDown(CLUSTER);
  }
});
