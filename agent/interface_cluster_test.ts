/**
 * A real agent process in the local cluster (one node) whose pod bridge
 * `cni0` is deleted and made again, as a restarted CNI does, then re-made
 * while the agent is down, then no longer passed to it:
 *
 * ```
 * kernel ── link notification ──> agent (netns node-1) ── is the program on eth0, cni0?
 *                                   (and every 5 s)          ──> tcx links (bpffs pins), pod_ifaces
 *                                        │                   └──> /metrics, log lines
 *                                        └── DataplaneNode node-1: Degraded=True/InterfaceNotAttached
 *                                            while cni0 lacks it
 * ```
 */
import assert from "node:assert/strict";
import { buildBpf } from "../bpf/build.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import type { DataplaneNode } from "../api/mod.ts";
import { pinnedLinkIfindex } from "./bpf/loader.ts";
import { openPinnedMap } from "./bpf/object.ts";
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

/** The ifindexes in the node's pinned `pod_ifaces`. */
function podIfaces(bpffs: string): number[] {
  const map = openPinnedMap(`${bpffs}/blixt/pod_ifaces`);
  try {
    return map.keys().map((k) => new DataView(k.buffer).getUint32(0, true)).sort((a, b) => a - b);
  } finally {
    map.close();
  }
}

/** The agent's log lines about `iface`, parsed. */
function linesAbout(agent: AgentProcess, iface: string): Record<string, unknown>[] {
  return agent.lines.filter((l) => l.includes(`"interface":"${iface}"`)).map((l) => JSON.parse(l));
}

Deno.test("the agent puts the program back on a pod bridge deleted and made again, at once, and says so while it lacks it", async (t) => {
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

    await t.step(
      "cni0 made again: the program is on it at once (a link notification)",
      async () => {
        const added = Date.now();
        await ip("link", "add", "cni0", "type", "bridge");
        await ip("addr", "add", `${node.podGateway}/24`, "dev", "cni0");
        await ip("link", "set", "cni0", "up");
        const made = Date.now();
        // The bound is for a loaded 2-core machine; the trigger says the notification did it.
        const line = await eventually(
          "attached again",
          () =>
            linesAbout(agent!, "cni0").find((l) =>
              String(l.msg).includes("deleted and made again")
            ),
          { timeoutMs: 2_000, intervalMs: 5 },
        );
        assert.equal(line.trigger, "link notification");
        const attachedMs = Date.parse(String(line.time)) - added;
        assert.equal(await metric(agent!, attached), 1);
        console.log(
          `cni0 made again: attached ${attachedMs} ms after \`ip link add\` (made, up: ${
            made - added
          } ms), the gauge 1 ${Date.now() - added} ms after it`,
        );
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
        const events = linesAbout(agent!, "cni0").map((l) => l.msg);
        assert.deepEqual(events, [
          "pod interface attached",
          "pod interface gone; attaching the program when it appears again",
          "pod interface was deleted and made again; program attached to the new one",
        ]);
      },
    );

    await t.step(
      "cni0 re-made while the agent is down: the restarted agent leaves its old index out of pod_ifaces",
      async () => {
        await agent!.kill("SIGKILL");
        const old = Number(
          (await cluster.exec(node.netns, ["cat", "/sys/class/net/cni0/ifindex"])).trim(),
        );
        await ip("link", "del", "cni0");
        await ip("link", "add", "cni0", "type", "bridge");
        await ip("link", "set", "cni0", "up");
        const ifindex = Number(
          (await cluster.exec(node.netns, ["cat", "/sys/class/net/cni0/ifindex"])).trim(),
        );
        assert.deepEqual(podIfaces(node.bpffs), [old], "what the agent that died left");
        agent = AgentProcess.start(cluster, 0, { args: ["--pod-interface", "cni0"] });
        await agent.started();
        assert.deepEqual(podIfaces(node.bpffs), [ifindex]);
        const pruned = agent.lines.map((l) => JSON.parse(l)).filter((l) =>
          String(l.msg).startsWith("pod_ifaces: removed")
        );
        assert.deepEqual(pruned.map((l) => l.ifindex), [old]);
      },
    );

    await t.step(
      "cni0 no longer passed: the restarted agent detaches the program from it and unpins its links",
      async () => {
        await agent!.kill("SIGTERM");
        const pins = () =>
          [...Deno.readDirSync(`${node.bpffs}/blixt`)].map((e) => e.name)
            .filter((n) => n.startsWith("link_")).sort();
        assert.deepEqual(pins(), [
          "link_cni0_egress",
          "link_cni0_ingress",
          "link_eth0_egress",
          "link_eth0_ingress",
        ]);
        agent = AgentProcess.start(cluster, 0);
        await agent.started();
        assert.deepEqual(pins(), ["link_eth0_egress", "link_eth0_ingress"]);
        assert.deepEqual(podIfaces(node.bpffs), []);
        assert.deepEqual(linesAbout(agent, "cni0").map((l) => `${l.level} ${l.msg}`), [
          "warn program detached from an interface no longer served; its links unpinned",
        ]);
        assert.equal(await metric(agent, attached), undefined, "cni0 is not watched");
        assert.equal(
          condition(await dataplaneNode(kc, node.name), "Degraded"),
          "False/NoProblems",
        );
      },
    );
  } finally {
    await agent?.kill("SIGKILL");
    await clusterDown(NAME);
  }
});
