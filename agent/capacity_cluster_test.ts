/**
 * A table that does not fit the maps, with a real agent in the local cluster:
 * 31 tables of 4,096 backends fill the backends map (131,071 ids) to 126,977;
 * a change of a small table that needs 4,096 more is refused whole. The
 * DataplaneNode says so (`Degraded=True/CapacityExceeded`, the table's error,
 * its last programmed generation kept), the maps keep the table's previous
 * entry and gain nothing of the new one; once room is made, it is programmed.
 */

import assert from "node:assert/strict";
import { buildBpf } from "../bpf/build.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import type { Backend, DataplaneNode, RoutingTable } from "../api/mod.ts";
import {
  AgentProcess,
  applyTable,
  dataplaneNode,
  eventually,
  installCrds,
} from "./_cluster_testing.ts";

const NAME = "agent-capacity";
const FILL_TABLES = 31;
const PER_ENTRY = 4096; // the most backends one entry may have (CRD and validation)

function backends(first: number, count: number): Backend[] {
  return Array.from({ length: count }, (_, i) => {
    const n = first + i;
    return {
      ip: `198.19.${(n >> 8) & 255}.${n & 255}`,
      port: 8080,
      weight: 1,
      node: "elsewhere",
      state: "Ready",
    };
  });
}

function table(
  name: string,
  vip: string,
  entries: { port: number; backends: Backend[] }[],
): RoutingTable {
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: { name, namespace: "default" },
    spec: {
      addresses: [vip],
      entries: entries.map((e) => ({
        address: vip,
        port: e.port,
        protocol: "TCP",
        listener: `l${e.port}`,
        backends: e.backends,
        rejectWeight: 0,
      })),
    },
  };
}

function mapEntries(dn: DataplaneNode | undefined, name: string): number | undefined {
  return dn?.status?.maps?.find((m) => m.name === name)?.entries;
}

Deno.test("a table that does not fit is refused whole: DataplaneNode says so, the previous programming stays", async (t) => {
  await buildBpf();
  const cluster = await clusterUp({ name: NAME, nodes: 1 });
  let agent: AgentProcess | undefined;
  try {
    const kc = cluster.kubeConfig();
    await installCrds(kc);
    const node = cluster.nodes[0]!;
    const pool = cluster.plan.gatewayPool.replace(/\.0\/\d+$/, "");
    agent = AgentProcess.start(cluster, 0);
    const small1 = await applyTable(
      kc,
      table("small", `${pool}.1`, [{ port: 80, backends: backends(0, 1) }]),
    );
    for (let i = 0; i < FILL_TABLES; i++) {
      await applyTable(
        kc,
        table(`fill-${i}`, `${pool}.${10 + i}`, [{
          port: 80,
          backends: backends(1 + i * PER_ENTRY, PER_ENTRY),
        }]),
      );
    }
    const full = await eventually("every table programmed", async () => {
      const dn = await dataplaneNode(kc, node.name);
      const done = (dn?.status?.tables ?? []).filter((x) => x.programmedGeneration !== undefined);
      return done.length === FILL_TABLES + 1 ? dn : undefined;
    }, { timeoutMs: 120_000 });
    assert.equal(mapEntries(full, "backends"), FILL_TABLES * PER_ENTRY + 1);

    await t.step("a change that needs more backend ids than are free: refused whole", async () => {
      const small2 = await applyTable(
        kc,
        table("small", `${pool}.1`, [
          { port: 80, backends: backends(0, 1) },
          { port: 81, backends: backends(200_000, PER_ENTRY) },
        ]),
      );
      const dn = await eventually("the change reported as not fitting", async () => {
        const dn = await dataplaneNode(kc, node.name);
        const s = dn?.status?.tables?.find((x) => x.name === "small");
        return s?.observedGeneration === small2 && s.errors?.length ? dn : undefined;
      }, { timeoutMs: 60_000 });
      const s = dn.status?.tables?.find((x) => x.name === "small")!;
      assert.equal(s.programmedGeneration, small1, "the last programmed generation is kept");
      assert.match(
        s.errors?.[0] ?? "",
        /does not fit: 2 services, 4097 backends; free \d+ service ids, 4094 backend ids/,
      );
      const degraded = dn.status?.conditions?.find((c) => c.type === "Degraded");
      assert.equal(`${degraded?.status}/${degraded?.reason}`, "True/CapacityExceeded");
      // nothing of the new entry reached the maps, the old entry is still there
      assert.equal(mapEntries(dn, "backends"), mapEntries(full, "backends"));
      assert.equal(mapEntries(dn, "maglev"), mapEntries(full, "maglev"));
      assert.equal(mapEntries(dn, "services"), mapEntries(full, "services"));
      const [code, metrics] = await agent!.get("/metrics");
      assert.equal(code, 200);
      assert.match(metrics, /blixt_agent_tables\{result="capacity"\} 1/);
    });

    await t.step("room made (a table deleted): the change is programmed", async () => {
      await cluster.kubectl(["delete", "routingtable", "-n", "default", "fill-0"]);
      const dn = await eventually("small programmed at its new generation", async () => {
        const dn = await dataplaneNode(kc, node.name);
        const s = dn?.status?.tables?.find((x) => x.name === "small");
        return s && s.programmedGeneration === s.observedGeneration && !s.errors?.length
          ? dn
          : undefined;
      }, { timeoutMs: 60_000 });
      assert.equal(mapEntries(dn, "backends"), FILL_TABLES * PER_ENTRY + 1);
      const degraded = dn.status?.conditions?.find((c) => c.type === "Degraded");
      assert.equal(degraded?.status, "False");
    });
  } finally {
    await agent?.kill("SIGKILL");
    await clusterDown(NAME);
  }
});
