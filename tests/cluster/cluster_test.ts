/**
 * The local cluster as a user of it sees it: `cluster:up` from nothing,
 * kubectl against it, pods that reach each other, and `cluster:down`
 * leaving nothing behind.
 */

import assert from "node:assert/strict";
import { clusterDown, clusterName, clusterUp, getCluster, runDir } from "./cluster.ts";
import { tcpEcho, udpEcho } from "./echo_client.ts";
import { parseEchoReply } from "./echo_server.ts";
import { ip, listNetns, run } from "./host.ts";
import { kubeBinaryPath } from "./binaries.ts";
import { applyObject, k8s } from "../../kube/client.ts";

const NAME = "test-cluster";
const mainTs = new URL("./main.ts", import.meta.url).pathname;

/**
 * What a cluster could leave on the host, as listed by the host's tools,
 * narrowed to what bears the cluster's name (other clusters may come and go
 * on the same machine meanwhile). Links are checked by ifindex instead.
 */
interface HostSnapshot {
  netns: string[];
  mounts: string[];
  processes: string[];
  stateDirs: string[];
}

async function hostSnapshot(name: string): Promise<HostSnapshot> {
  name = clusterName(name);
  const mine = (s: string) => s.includes(`blixt-${name}-`) || s.includes(`/clusters/${name}`);
  const mounts = (await Deno.readTextFile("/proc/self/mounts")).split("\n")
    .filter(mine).sort();
  const processes: string[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`)
      .catch(() => "");
    if (mine(cmdline.replaceAll("\0", " "))) {
      processes.push(`${entry.name} ${cmdline}`);
    }
  }
  const stateDirs: string[] = [];
  for (const dir of [`${runDir()}/clusters/${name}`]) {
    if (await Deno.stat(dir).then(() => true, () => false)) stateDirs.push(dir);
  }
  return {
    netns: (await listNetns()).filter(mine).sort(),
    mounts,
    processes: processes.sort(),
    stateDirs,
  };
}

/** The host's links as `ifindex name` (ifindexes are never reused soon). */
async function hostLinks(): Promise<Map<number, string>> {
  const links = JSON.parse(await ip(["-j", "link", "show"])) as {
    ifindex: number;
    ifname: string;
  }[];
  return new Map(links.map((l) => [l.ifindex, l.ifname]));
}

/** Inodes of the network namespaces of cluster `name` (to find stray processes). */
async function netnsInodes(name: string): Promise<Set<number>> {
  name = clusterName(name);
  const inodes = new Set<number>();
  for (const ns of await listNetns()) {
    if (ns.startsWith(`blixt-${name}-`)) {
      inodes.add((await Deno.stat(`/run/netns/${ns}`)).ino!);
    }
  }
  return inodes;
}

async function processesInNetns(inodes: Set<number>): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = await Deno.stat(`/proc/${entry.name}/ns/net`).catch(() => undefined);
    if (stat?.ino !== undefined && stat.ino !== null && inodes.has(stat.ino)) {
      pids.push(Number(entry.name));
    }
  }
  return pids;
}

interface NodeList {
  items: {
    metadata: { name: string };
    spec: { podCIDR?: string };
    status: {
      conditions: { type: string; status: string }[];
      addresses: { address: string }[];
    };
  }[];
}

Deno.test("local cluster: up from nothing, kubectl, pods, a second cluster, up twice, down leaves nothing", async (t) => {
  await clusterDown(NAME);
  const before = await hostSnapshot(NAME);
  const linksBefore = await hostLinks();
  let inodes = new Set<number>();
  let linksMade: string[] = [];
  try {
    await t.step(
      "cluster:up prints KUBECONFIG=<absolute path> as its last line",
      async () => {
        const res = await run([
          Deno.execPath(),
          "run",
          "-A",
          mainTs,
          "up",
          "--name",
          NAME,
        ]);
        const last = res.stdout.trim().split("\n").at(-1) ?? "";
        const cluster = await getCluster(NAME);
        assert.ok(cluster, "cluster state exists after up");
        assert.equal(last, `KUBECONFIG=${cluster.kubeconfig}`);
        assert.ok(
          cluster.kubeconfig.startsWith("/"),
          "kubeconfig path is absolute",
        );
      },
    );

    const cluster = (await getCluster(NAME))!;

    await t.step(
      "kubectl get nodes shows 2 Ready nodes with their pod CIDRs",
      async () => {
        const nodes = JSON.parse(
          await cluster.kubectl(["get", "nodes", "-o", "json"]),
        ) as NodeList;
        assert.deepEqual(nodes.items.map((n) => n.metadata.name).sort(), [
          "node-1",
          "node-2",
        ]);
        for (const node of nodes.items) {
          const ready = node.status.conditions.find((c) => c.type === "Ready");
          assert.equal(ready?.status, "True", `${node.metadata.name} is Ready`);
          const plan = cluster.nodes.find((n) => n.name === node.metadata.name)!;
          assert.equal(node.spec.podCIDR, plan.podCIDR);
          assert.ok(node.status.addresses.some((a) => a.address === plan.ip));
        }
        const pool = await ip(["route", "show", cluster.plan.gatewayPool]);
        for (const node of cluster.nodes) {
          assert.match(pool, new RegExp(`nexthop via ${node.ip.replaceAll(".", "\\.")} `));
        }
        const table = await cluster.kubectl(["get", "nodes"]);
        assert.match(table, /node-1\s+Ready/);
        assert.match(table, /node-2\s+Ready/);
      },
    );

    await t.step(
      "the experimental channel serves TCPRoute and UDPRoute at v1 and v1alpha2",
      async () => {
        for (const version of ["v1", "v1alpha2"]) {
          const list = JSON.parse(
            await cluster.kubectl([
              "get",
              "--raw",
              `/apis/gateway.networking.k8s.io/${version}`,
            ]),
          ) as { resources: { name: string }[] };
          const names = list.resources.map((r) => r.name);
          assert.ok(
            names.includes("tcproutes"),
            `tcproutes served at ${version}`,
          );
          assert.ok(
            names.includes("udproutes"),
            `udproutes served at ${version}`,
          );
        }
        const gateways = await cluster.kubectl([
          "get",
          "gateways,gatewayclasses",
          "-A",
        ]);
        assert.equal(gateways, "");
      },
    );

    await t.step(
      "a Service and an EndpointSlice round-trip through the API server",
      async () => {
        const kc = cluster.kubeConfig();
        const manager = { fieldManager: "blixt-test", force: true };
        await applyObject(kc, {
          apiVersion: "v1",
          kind: "Namespace",
          metadata: { name: "rt" },
        }, manager);
        const svc = await applyObject(kc, {
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: "echo", namespace: "rt" },
          spec: {
            ports: [{
              name: "echo",
              port: 80,
              targetPort: 8080,
              protocol: "TCP",
            }],
          },
        }, manager) as k8s.V1Service;
        assert.ok(
          svc.spec?.clusterIP?.startsWith(
            cluster.plan.serviceCIDR.replace(/0\/24$/, ""),
          ),
        );
        await applyObject(kc, {
          apiVersion: "discovery.k8s.io/v1",
          kind: "EndpointSlice",
          metadata: {
            name: "echo-1",
            namespace: "rt",
            labels: { "kubernetes.io/service-name": "echo" },
          },
          addressType: "IPv4",
          ports: [{ name: "echo", port: 8080, protocol: "TCP" }],
          endpoints: [{
            addresses: ["198.18.1.2"],
            nodeName: "node-1",
            conditions: { ready: true, serving: true, terminating: false },
          }],
        }, manager);
        const read = await kc.makeApiClient(k8s.DiscoveryV1Api)
          .listNamespacedEndpointSlice({
            namespace: "rt",
            labelSelector: "kubernetes.io/service-name=echo",
          });
        assert.equal(read.items.length, 1);
        const slice = read.items[0]!;
        assert.deepEqual(slice.endpoints?.[0]?.addresses, ["198.18.1.2"]);
        assert.equal(slice.endpoints?.[0]?.nodeName, "node-1");
        assert.equal(slice.endpoints?.[0]?.conditions?.ready, true);
        assert.equal(slice.ports?.[0]?.port, 8080);
        const svcRead = await kc.makeApiClient(k8s.CoreV1Api)
          .readNamespacedService({
            name: "echo",
            namespace: "rt",
          });
        assert.equal(svcRead.spec?.clusterIP, svc.spec?.clusterIP);
        assert.equal(svcRead.spec?.ports?.[0]?.targetPort, 8080);
      },
    );

    await t.step(
      "a pod on node-1 reaches a pod on node-2 over TCP and UDP",
      async () => {
        const a = await cluster.createPod({ name: "echo-a", node: "node-1" });
        const b = await cluster.createPod({ name: "echo-b", node: "node-2" });
        assert.ok(
          a.ip.startsWith(cluster.nodes[0]!.podCIDR.replace(/0\/24$/, "")),
        );
        assert.ok(
          b.ip.startsWith(cluster.nodes[1]!.podCIDR.replace(/0\/24$/, "")),
        );
        for (const protocol of ["tcp", "udp"] as const) {
          const reply = parseEchoReply(
            await cluster.echoFrom(a.netns, {
              protocol,
              host: b.ip,
              port: 8080,
              text: `a-${protocol}`,
            }),
          );
          assert.deepEqual(
            {
              name: reply?.name,
              text: reply?.text,
              peerIp: reply?.peer.split(":")[0],
            },
            { name: "echo-b", text: `a-${protocol}`, peerIp: a.ip },
            `echo-b answers echo-a over ${protocol} and sees echo-a's own address`,
          );
        }
      },
    );

    await t.step(
      "the host reaches pods on both nodes over TCP and UDP",
      async () => {
        for (const pod of await cluster.pods()) {
          const tcp = parseEchoReply(await tcpEcho(pod.ip, 8080, "host-tcp"));
          const udp = parseEchoReply(await udpEcho(pod.ip, 8080, "host-udp"));
          assert.equal(tcp?.name, pod.name);
          assert.equal(udp?.name, pod.name);
          assert.equal(tcp?.peer.split(":")[0], cluster.plan.bridgeIP);
        }
      },
    );

    await t.step("an API server restart: clients reconnect, objects are kept", async () => {
      const kc = cluster.kubeConfig();
      const manager = { fieldManager: "blixt-test", force: true };
      await applyObject(
        kc,
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "r1" } },
        manager,
      );
      const state = JSON.parse(await Deno.readTextFile(`${cluster.dir}/cluster.json`));
      Deno.kill(state.apiserverPid, "SIGKILL");
      await clusterUp({ name: NAME });
      await applyObject(
        kc,
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "r2" } },
        manager,
      );
      const names = await cluster.kubectl(["get", "namespaces", "-o", "name"]);
      assert.match(names, /namespace\/r1/);
      assert.match(names, /namespace\/r2/);
    });

    await t.step("a node's namespace reaches the API server (where agents will run)", async () => {
      const kube = await kubeBinaryPath();
      const node = cluster.nodes[1]!;
      const out = await cluster.exec(node.netns, [
        kube,
        "kubectl",
        "--kubeconfig",
        cluster.kubeconfig,
        "get",
        "node",
        node.name,
        "-o",
        "name",
      ]);
      assert.equal(out.trim(), `node/${node.name}`);
    });

    await t.step("a second cluster, standard channel, runs beside it", async () => {
      const name = "test-standard";
      try {
        const other = await clusterUp({ name, nodes: 1, channel: "standard" });
        assert.notEqual(other.plan.slot, cluster.plan.slot);
        assert.notEqual(other.server, cluster.server);
        const groups = JSON.parse(
          await other.kubectl(["get", "--raw", "/apis/gateway.networking.k8s.io"]),
        ) as { versions: { version: string }[] };
        const versions = groups.versions.map((v) => v.version);
        assert.ok(versions.includes("v1"));
        assert.ok(!versions.includes("v1alpha2"), `v1alpha2 is not served (served: ${versions})`);
        const v1 = await other.kubectl(["get", "--raw", "/apis/gateway.networking.k8s.io/v1"]);
        assert.match(v1, /"tcproutes"/);
        assert.match(v1, /"udproutes"/);
        assert.match(await other.kubectl(["get", "nodes", "--no-headers"]), /^node-1\s+Ready/);
        assert.match(await cluster.kubectl(["get", "nodes"]), /node-2\s+Ready/, "first still up");
      } finally {
        await clusterDown(name);
      }
      assert.equal(await getCluster(name), undefined);
    });

    await t.step("cluster:up a second time is harmless", async () => {
      const stateBefore = JSON.parse(
        await Deno.readTextFile(`${cluster.dir}/cluster.json`),
      );
      const again = await clusterUp({ name: NAME });
      const stateAfter = JSON.parse(
        await Deno.readTextFile(`${cluster.dir}/cluster.json`),
      );
      assert.equal(again.kubeconfig, cluster.kubeconfig);
      assert.equal(
        stateAfter.apiserverPid,
        stateBefore.apiserverPid,
        "API server not restarted",
      );
      assert.equal(
        stateAfter.etcdPid,
        stateBefore.etcdPid,
        "etcd not restarted",
      );
      assert.match(await cluster.kubectl(["get", "nodes"]), /node-2\s+Ready/);
      const a = (await cluster.pods()).find((p) => p.name === "echo-a")!;
      assert.equal(
        parseEchoReply(await tcpEcho(a.ip, 8080, "still"))?.name,
        "echo-a",
      );
      const svc = await cluster.kubectl([
        "get",
        "service",
        "echo",
        "-n",
        "rt",
        "-o",
        "name",
      ]);
      assert.equal(svc.trim(), "service/echo", "objects survive a second up");
    });

    inodes = await netnsInodes(NAME);
    const linksUp = await hostLinks();
    linksMade = [...linksUp].filter(([i]) => !linksBefore.has(i)).map(([i, n]) => `${i} ${n}`);
    const slot = (await getCluster(NAME))!.plan.slot;
    assert.ok(
      linksMade.includes(`${[...linksUp].find(([, n]) => n === `blx${slot}`)?.[0]} blx${slot}`),
    );
  } finally {
    await clusterDown(NAME);
  }

  await t.step(
    "cluster:down leaves no namespace, link, route, mount, process or state dir",
    async () => {
      const after = await hostSnapshot(NAME);
      assert.deepEqual(after, before);
      assert.deepEqual(
        await processesInNetns(inodes),
        [],
        "no process left in its namespaces",
      );
    },
  );
});
