/**
 * A real agent process in the local cluster (one node) whose pod bridge
 * `cni0` is deleted and made again, as a restarted CNI does:
 *
 * ```
 * agent (netns node-1) ── every 5 s: is the program on eth0, cni0? ──> tcx links (bpffs pins)
 *        │                                                       └──> /metrics, log lines
 *        └── DataplaneNode node-1: Degraded=True/InterfaceNotAttached while cni0 lacks it
 * ```
 */
import assert from "node:assert/strict";
import { buildBpf } from "../bpf/build.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import type { DataplaneNode } from "../api/mod.ts";
import { pinnedLinkIfindex } from "./bpf/loader.ts";
import { AgentProcess, dataplaneNode, eventually, installCrds } from "./_cluster_testing.ts";

const NAME = "agent-ifaces";

function condition(dn: DataplaneNode | undefined, type: string): string {
  const c = dn?.status?.conditions?.find((x) => x.type === type);
  return c ? `${c.status}/${c.reason}` : "absent";
}

/** The value of one series in the agent's /metrics, or undefined. */
async function metric(agent: AgentProcess, series: string): Promise<number | undefined> {
  const [, body] = await agent.get("/metrics");
  const line = body.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

Deno.test("the agent puts the program back on a pod bridge deleted and made again, and says so while it lacks it", async (t) => {
  await buildBpf();
  const cluster = await clusterUp({ name: NAME, nodes: 1 });
  let agent: AgentProcess | undefined;
  try {
    const kc = cluster.kubeConfig();
    await installCrds(kc);
    const node = cluster.nodes[0]!;
    const ip = (...args: string[]) => cluster.exec(node.netns, ["ip", ...args]);
    const attached = `blixt_agent_interface_attached{interface="cni0",role="pods"}`;
    const reattaches = `blixt_agent_interface_reattaches_total{interface="cni0",role="pods"}`;
    agent = AgentProcess.start(cluster, 0, { args: ["--pod-interface", "cni0"] });
    await agent.started();
    await eventually(
      "DataplaneNode Ready, not degraded",
      async () => condition(await dataplaneNode(kc, node.name), "Degraded") === "False/NoProblems",
    );
    assert.equal(await metric(agent, attached), 1);

    await t.step("cni0 deleted: Degraded=True/InterfaceNotAttached, the gauge 0", async () => {
      await ip("link", "del", "cni0");
      const dn = await eventually(
        "InterfaceNotAttached",
        async () => {
          const dn = await dataplaneNode(kc, node.name);
          return condition(dn, "Degraded") === "True/InterfaceNotAttached" ? dn : undefined;
        },
        { timeoutMs: 10_000 },
      );
      assert.match(
        dn.status?.conditions?.find((c) => c.type === "Degraded")?.message ?? "",
        /cni0 \(pods\): not present since it was deleted/,
      );
      assert.equal(condition(dn, "Ready"), "True/Programmed", "the tables are still programmed");
      assert.equal(await metric(agent!, attached), 0);
    });

    await t.step("cni0 made again: the program is on it within one look (5 s)", async () => {
      await ip("link", "add", "cni0", "type", "bridge");
      await ip("addr", "add", `${node.podGateway}/24`, "dev", "cni0");
      await ip("link", "set", "cni0", "up");
      const made = Date.now();
      await eventually("attached again", async () => (await metric(agent!, attached)) === 1, {
        timeoutMs: 6_500,
        intervalMs: 100,
      });
      console.log(`cni0 made again: attached ${Date.now() - made} ms later (look every 5 s)`);
      assert.equal(await metric(agent!, reattaches), 1);
      const ifindex = Number(
        (await cluster.exec(node.netns, ["cat", "/sys/class/net/cni0/ifindex"])).trim(),
      );
      for (const dir of ["ingress", "egress"]) {
        const pin = `${node.bpffs}/blixt/link_cni0_${dir}`;
        assert.equal(pinnedLinkIfindex(pin), ifindex, `${pin} is on the new bridge`);
      }
      await eventually(
        "not degraded any more",
        async () =>
          condition(await dataplaneNode(kc, node.name), "Degraded") === "False/NoProblems",
      );
      const events = agent!.lines.filter((l) => l.includes('"interface":"cni0"'))
        .map((l) => JSON.parse(l).msg);
      assert.deepEqual(events, [
        "pod interface attached",
        "pod interface gone; attaching the program when it appears again",
        "pod interface was deleted and made again; program attached to the new one",
      ]);
    });
  } finally {
    await agent?.kill("SIGKILL");
    await clusterDown(NAME);
  }
});
