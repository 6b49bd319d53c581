/**
 * The agent's liveness Lease and its watch on its own Node, in the local
 * cluster with a real agent process (one node):
 *
 * ```
 * agent (netns node-1) ── renews ──> Lease blixt-system/blixt-agent-node-1
 *        │ watches                   DataplaneNode node-1 (conditions, owner)
 *        └── Node node-1 (address, uid) ── address ──> BPF config map (bpftool)
 * ```
 */

import assert from "node:assert/strict";
import { buildBpf } from "../bpf/build.ts";
import { etcdOf, killApiServer } from "../kube/_testing.ts";
import { applyObject } from "../kube/client.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import type { DataplaneNode, RoutingTable } from "../api/mod.ts";
import {
  AgentProcess,
  applyTable,
  dataplaneNode,
  eventually,
  installCrds,
} from "./_cluster_testing.ts";

const NAME = "agent-liveness";
const LEASE_ARGS = ["--lease-duration", "4", "--lease-renew-interval", "1"];

interface LeaseJson {
  metadata: { labels?: Record<string, string> };
  spec: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number };
}

function condition(dn: DataplaneNode | undefined, type: string): string {
  const c = dn?.status?.conditions?.find((x) => x.type === type);
  return c ? `${c.status}/${c.reason}` : "absent";
}

/** The node address in the pinned config map, as dotted quad (bpftool's JSON dump). */
async function configNodeAddress(bpffs: string): Promise<string> {
  const out = await new Deno.Command("bpftool", {
    args: ["-j", "map", "dump", "pinned", `${bpffs}/blixt/config`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  const [entry] = JSON.parse(new TextDecoder().decode(out.stdout)) as { value?: string[] }[];
  // struct config starts with node_addr[4], network byte order: its first 4 bytes
  return (entry?.value ?? []).slice(0, 4).map((b) => parseInt(b, 16)).join(".");
}

Deno.test("agent liveness Lease and its own Node", async (t) => {
  await buildBpf();
  const cluster = await clusterUp({ name: NAME, nodes: 1 });
  let agent: AgentProcess | undefined;
  try {
    const kc = cluster.kubeConfig();
    await installCrds(kc);
    await applyObject(kc, {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: "blixt-system" },
    }, { fieldManager: "agent-test" });
    const node = cluster.nodes[0]!;
    const lease = async () =>
      JSON.parse(
        await cluster.kubectl([
          "get",
          "lease",
          "-n",
          "blixt-system",
          `blixt-agent-${node.name}`,
          "-o",
          "json",
        ]),
      ) as LeaseJson;
    agent = AgentProcess.start(cluster, 0, { args: LEASE_ARGS });
    await eventually(
      "DataplaneNode Ready",
      async () => condition(await dataplaneNode(kc, node.name), "Ready") === "True/Programmed",
    );

    await t.step("holds its Lease blixt-agent-<node> and renews it every interval", async () => {
      const first = await eventually("Lease held", async () => {
        const l = await lease();
        return l.spec.holderIdentity ? l : undefined;
      });
      assert.equal(first.spec.leaseDurationSeconds, 4);
      assert.equal(first.metadata.labels?.["app.kubernetes.io/component"], "agent");
      await eventually(
        "renewed",
        async () => (await lease()).spec.renewTime !== first.spec.renewTime,
        {
          timeoutMs: 3000,
        },
      );
    });

    await t.step("its Node's InternalIP changes: the data plane's config follows", async () => {
      assert.equal(await configNodeAddress(node.bpffs), node.ip);
      const moved = "198.18.255.77";
      const patch = (ip: string) =>
        cluster.kubectl([
          "patch",
          "node",
          node.name,
          "--subresource=status",
          "--type=merge",
          "-p",
          JSON.stringify({ status: { addresses: [{ type: "InternalIP", address: ip }] } }),
        ]);
      await patch(moved);
      await eventually(
        "config node_addr moved",
        async () => (await configNodeAddress(node.bpffs)) === moved,
      );
      await patch(node.ip);
      await eventually(
        "config node_addr back",
        async () => (await configNodeAddress(node.bpffs)) === node.ip,
      );
    });

    await t.step(
      "its Node deleted: Degraded=True/NodeNotFound; registered again: owned by the new Node",
      async () => {
        const saved = JSON.parse(await cluster.kubectl(["get", "node", node.name, "-o", "json"]));
        const oldUid = saved.metadata.uid as string;
        await cluster.kubectl(["delete", "node", node.name]);
        await eventually(
          "NodeNotFound",
          async () =>
            condition(await dataplaneNode(kc, node.name), "Degraded") === "True/NodeNotFound",
        );
        // still forwarding what it has: Ready stays
        assert.equal(condition(await dataplaneNode(kc, node.name), "Ready"), "True/Programmed");
        const { uid: _u, resourceVersion: _r, creationTimestamp: _c, managedFields: _m, ...meta } =
          saved.metadata;
        await cluster.kubectl(["create", "-f", "-"], {
          stdin: JSON.stringify({ ...saved, metadata: meta }),
        });
        await cluster.kubectl([
          "patch",
          "node",
          node.name,
          "--subresource=status",
          "--type=merge",
          "-p",
          JSON.stringify({ status: saved.status }),
        ]);
        const dn = await eventually("owned by the new Node, no longer degraded", async () => {
          const dn = await dataplaneNode(kc, node.name);
          const uid = dn?.metadata.ownerReferences?.[0]?.uid;
          return uid && uid !== oldUid && condition(dn, "Degraded") === "False/NoProblems"
            ? dn
            : undefined;
        });
        const current = JSON.parse(await cluster.kubectl(["get", "node", node.name, "-o", "json"]));
        assert.equal(dn.metadata.ownerReferences?.[0]?.uid, current.metadata.uid);
      },
    );

    await t.step("its DataplaneNode deleted: created again at the next change", async () => {
      await cluster.kubectl(["delete", "dataplanenode", node.name]);
      const table: RoutingTable = {
        apiVersion: "blixt.dev/v1alpha1",
        kind: "RoutingTable",
        metadata: { name: "again", namespace: "default" },
        spec: { addresses: [], entries: [] },
      };
      const generation = await applyTable(kc, table);
      await eventually("DataplaneNode back, with the table", async () => {
        const dn = await dataplaneNode(kc, node.name);
        return dn?.status?.tables?.find((x) => x.name === "again")?.programmedGeneration ===
          generation;
      });
    });

    await t.step(
      "a watch that expired (410 Gone): the agent re-lists and drops a table deleted behind its back",
      async () => {
        const vip = cluster.plan.gatewayPool.replace(/\.0\/\d+$/, ".20");
        const table = (name: string, port: number): RoutingTable => ({
          apiVersion: "blixt.dev/v1alpha1",
          kind: "RoutingTable",
          metadata: { name, namespace: "default" },
          spec: {
            addresses: [vip],
            entries: [{
              address: vip,
              port,
              protocol: "TCP",
              listener: "tcp",
              backends: [{
                ip: "198.18.1.9",
                port: 8080,
                weight: 1,
                node: node.name,
                state: "Ready",
              }],
              rejectWeight: 0,
            }],
          },
        });
        await applyTable(kc, table("kept", 80));
        await applyTable(kc, table("vanished", 81));
        const services = (dn: DataplaneNode | undefined) =>
          dn?.status?.maps?.find((m) => m.name === "maglev")?.entries;
        const before = await eventually("both tables programmed", async () => {
          const dn = await dataplaneNode(kc, node.name);
          const names = (dn?.status?.tables ?? []).filter((x) => x.programmedGeneration).map((x) =>
            x.name
          );
          return names.includes("kept") && names.includes("vanished") ? dn : undefined;
        });
        // While the API server is down: the table deleted straight in etcd (no watch event will
        // tell of it) and the history compacted, so the agent's resourceVersion is served no more.
        await killApiServer(cluster);
        const etcd = etcdOf(cluster);
        const { revision, deleted } = await etcd.delete(
          "/registry/blixt.dev/routingtables/default/vanished",
        );
        assert.equal(deleted, 1);
        await etcd.compact(revision);
        await clusterUp({ name: NAME, nodes: 1 });
        const after = await eventually(
          "the vanished table left the maps and the status",
          async () => {
            const dn = await dataplaneNode(kc, node.name);
            return dn && !dn.status?.tables?.some((x) => x.name === "vanished") &&
                services(dn) === services(before)! - 1
              ? dn
              : undefined;
          },
          { timeoutMs: 60_000 },
        );
        assert.ok(after.status?.tables?.some((x) => x.name === "kept"));
        assert.ok(
          agent!.lines.some((l) =>
            l.includes("re-listing: resourceVersion expired") && l.includes("routingtables")
          ),
          "the agent's watch got 410 Gone and re-listed",
        );
        await cluster.kubectl(["delete", "routingtable", "-n", "default", "kept", "again"]);
      },
    );

    await t.step(
      "SIGTERM: the Lease is released and the DataplaneNode says AgentStopped",
      async () => {
        const status = await agent!.kill("SIGTERM");
        assert.equal(status.code, 0);
        assert.equal((await lease()).spec.holderIdentity ?? "", "");
        assert.equal(condition(await dataplaneNode(kc, node.name), "Ready"), "False/AgentStopped");
      },
    );

    await t.step(
      "restarted, then kill -9: the Lease is held again, then left to run out",
      async () => {
        agent = AgentProcess.start(cluster, 0, { args: LEASE_ARGS });
        await eventually(
          "Lease held and DataplaneNode Ready again",
          async () =>
            Boolean((await lease()).spec.holderIdentity) &&
            condition(await dataplaneNode(kc, node.name), "Ready") === "True/Programmed",
        );
        await agent.kill("SIGKILL");
        const after = await lease();
        await new Promise((r) => setTimeout(r, 2000));
        const later = await lease();
        assert.ok(later.spec.holderIdentity, "still names the dead agent");
        assert.equal(later.spec.renewTime, after.spec.renewTime, "no renewal after the kill");
      },
    );
  } finally {
    await agent?.kill("SIGKILL");
    await clusterDown(NAME);
  }
});
