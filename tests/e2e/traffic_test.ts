/**
 * e2e: traffic through one Gateway, as a user sees it, on the local cluster
 * `e2e-traffic` with the operator and an agent per node running.
 *
 * ```
 * host (client, 198.18.x.1) ──ECMP or a /32 route──> node-1 | node-2 (TC program on eth0)
 *   Gateway web                    echo-a node-1  echo-b node-2  echo-c node-1
 *     tcp 80/TCP  ── TCPRoute web-tcp  70 / 30 / 0
 *     udp 53/UDP  ── UDPRoute web-udp  70 / 30 / 0
 *     pool-tcp 8000/TCP ── TCPRoute pool-tcp ──> Service pool (pods p1.., changed by the test)
 *     pool-udp 8000/UDP ── UDPRoute pool-udp ──> Service pool
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import type { StatusReport } from "../../plugin/status.ts";
import { expandRoutingTable, type RoutingTable } from "../../api/routing_table.ts";
import type { Pod } from "../cluster/cluster.ts";
import { parseEchoReply } from "../cluster/echo_server.ts";
import { run, sleep } from "../cluster/host.ts";
import {
  brief,
  conditionOf,
  getObject,
  type KubeJson,
  parentCondition,
  programmedAddress,
  waitFor,
} from "./kube_state.ts";
import type { BackendPod } from "./remote_cluster.ts";
import { startSystem, stopSystem, type System } from "./system.ts";
import {
  countAnswers,
  countSentPackets,
  describeCounts,
  LineConnection,
  routeThrough,
  tcpAsk,
  tcpAskOrReset,
  tcpProbe,
  udpAsk,
  UdpFlow,
  udpProbe,
} from "./traffic.ts";

const NAME = "e2e-traffic";

const ECHO_PORTS = [
  { name: "tcp", port: 80, targetPort: 8080, protocol: "TCP" as const },
  { name: "udp", port: 53, targetPort: 8080, protocol: "UDP" as const },
];
const POOL_PORTS = [
  { name: "tcp", port: 8000, targetPort: 8080, protocol: "TCP" as const },
  { name: "udp", port: 8000, targetPort: 8080, protocol: "UDP" as const },
];

const GATEWAY_YAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: web, namespace: default }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 80, protocol: TCP }
  - { name: udp, port: 53, protocol: UDP }
  - { name: pool-tcp, port: 8000, protocol: TCP }
  - { name: pool-udp, port: 8000, protocol: UDP }
  - { name: count-tcp, port: 81, protocol: TCP }
  - { name: count-udp, port: 54, protocol: UDP }
`;

function webRoutesYaml(): string {
  const refs = (port: number) => `
    - { name: echo-a, port: ${port}, weight: 70 }
    - { name: echo-b, port: ${port}, weight: 30 }
    - { name: echo-c, port: ${port}, weight: 0 }`;
  return `
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: web-tcp, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: tcp }]
  rules:
  - backendRefs:${refs(80)}
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: web-udp, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: udp }]
  rules:
  - backendRefs:${refs(53)}
`;
}

/** Routes of the listeners whose counters the status step checks (no other traffic). */
const COUNT_ROUTES_YAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: count-tcp, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: count-tcp }]
  rules:
  - backendRefs: [{ name: echo-a, port: 80 }, { name: echo-b, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: count-udp, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: count-udp }]
  rules:
  - backendRefs: [{ name: echo-a, port: 53 }, { name: echo-b, port: 53 }]
`;

const POOL_ROUTES_YAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: pool-tcp, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: pool-tcp }]
  rules:
  - backendRefs: [{ name: pool, port: 8000 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: pool-udp, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: pool-udp }]
  rules:
  - backendRefs: [{ name: pool, port: 8000 }]
`;

/** Asserts `n` of `total` is `share` ± `tolerance` (fractions). */
function assertShare(
  counts: Map<string, number>,
  name: string,
  share: number,
  total: number,
  tolerance = 0.05,
): void {
  const got = (counts.get(name) ?? 0) / total;
  assert.ok(
    Math.abs(got - share) <= tolerance,
    `${name}: ${(100 * got).toFixed(1)}% of ${total}, expected ${100 * share}% ± ${
      100 * tolerance
    }% (${describeCounts(counts, total)})`,
  );
}

/**
 * Opens new connections (flows) until each of `names` has answered one;
 * returns them by backend name and closes the others.
 */
async function flowsTo<T extends { close(): void }>(
  names: string[],
  open: () => Promise<{ flow: T; name: string }>,
): Promise<Map<string, T>> {
  const kept = new Map<string, T>();
  for (let i = 0; i < 100 && kept.size < names.length; i++) {
    const { flow, name } = await open();
    if (names.includes(name) && !kept.has(name)) kept.set(name, flow);
    else flow.close();
  }
  if (kept.size < names.length) {
    for (const f of kept.values()) f.close();
    throw new Error(`100 new flows reached only ${[...kept.keys()].join(", ")} of ${names}`);
  }
  return kept;
}

async function openTcp(address: string, port: number) {
  const flow = await LineConnection.open(address, port);
  try {
    return { flow, name: (await flow.ask("hello")).name };
  } catch (e) {
    flow.close();
    throw e;
  }
}

async function openUdp(address: string, port: number) {
  const flow = new UdpFlow(address, port);
  try {
    return { flow, name: (await flow.ask("hello")).name };
  } catch (e) {
    flow.close();
    throw e;
  }
}

/**
 * Which backend answers a new TCP connection every 10 ms from `startMs` until
 * `untilMs`, paced so that the samples are spread evenly over the window.
 */
async function newFlowsOverTime(
  address: string,
  port: number,
  startMs: number,
  untilMs: number,
): Promise<{ at: number; name: string }[]> {
  const seen: { at: number; name: string }[] = [];
  while (performance.now() - startMs < untilMs) {
    const at = performance.now() - startMs;
    try {
      seen.push({ at, name: (await tcpAsk(address, port, "new")).name });
    } catch (e) {
      // A connection made to a backend just before its removal is re-picked and reset.
      const reset = e instanceof Deno.errors.ConnectionReset ||
        e instanceof Deno.errors.BrokenPipe || /closed by the peer/.test(String(e));
      if (!reset) throw e;
      seen.push({ at, name: "reset" });
    }
    await sleep(10);
  }
  return seen;
}

Deno.test("e2e: traffic through a Gateway (TCP and UDP, weights, nodes, scale, counters, route removal)", async (t) => {
  let system: System | undefined;
  let failed = false;
  const step = async (name: string, fn: () => Promise<void>) => {
    if (!(await t.step(name, fn))) failed = true;
  };
  try {
    system = await startSystem({ name: NAME, nodes: 2 });
    const sys = system;
    const cluster = sys.cluster;
    const kubectl = (args: string[]) => cluster.kubectl(args);
    const [node1, node2] = cluster.nodes;
    assert.ok(node1 && node2);
    const client = sys.clientAddress;

    const a = await sys.createPod({ name: "echo-a", node: node1.name });
    const b = await sys.createPod({ name: "echo-b", node: node2.name });
    const c = await sys.createPod({ name: "echo-c", node: node1.name });
    for (const pod of [a, b, c]) {
      await sys.publishService("default", pod.name, { ports: ECHO_PORTS, pods: [pod] });
    }
    const pool: BackendPod[] = [
      await sys.createPod({ name: "p1", node: node1.name }),
      await sys.createPod({ name: "p2", node: node2.name }),
    ];
    await sys.publishService("default", "pool", { ports: POOL_PORTS, pods: pool });
    await sys.apply(
      [GATEWAY_YAML, webRoutesYaml(), POOL_ROUTES_YAML, COUNT_ROUTES_YAML].join("---"),
    );
    const address = await programmedAddress(kubectl, "web");

    await step(
      "TCP and UDP: routes attached, replies from the Gateway address and port",
      async () => {
        const gw = await getObject(kubectl, "gateway", "web", "default");
        assert.equal(
          brief(conditionOf(gw?.status?.conditions, "Accepted")),
          "Accepted=True/Accepted",
        );
        assert.equal(
          brief(conditionOf(gw?.status?.conditions, "Programmed")),
          "Programmed=True/Programmed",
        );
        const attached = Object.fromEntries(
          (gw?.status?.listeners ?? []).map((l) => [l.name, l.attachedRoutes]),
        );
        assert.deepEqual(attached, {
          tcp: 1,
          udp: 1,
          "pool-tcp": 1,
          "pool-udp": 1,
          "count-tcp": 1,
          "count-udp": 1,
        });
        for (const [kind, name] of [["tcproute", "web-tcp"], ["udproute", "web-udp"]] as const) {
          const route = await getObject(kubectl, kind, name, "default");
          assert.equal(brief(parentCondition(route, "web", "Accepted")), "Accepted=True/Accepted");
          assert.equal(
            brief(parentCondition(route, "web", "ResolvedRefs")),
            "ResolvedRefs=True/ResolvedRefs",
          );
        }

        // A TCP connection to address:80 completes only with replies from address:80.
        const tcp = await tcpAsk(address, 80, "hello over tcp");
        assert.equal(tcp.text, "hello over tcp");
        assert.ok(["echo-a", "echo-b"].includes(tcp.name), tcp.name);
        const udp = await udpAsk(address, 53, "hello over udp");
        assert.equal(udp.text, "hello over udp");
        assert.ok(["echo-a", "echo-b"].includes(udp.name), udp.name);
        // A connected UDP socket (bash /dev/udp) accepts datagrams from address:53 only.
        const probe = await udpProbe(address, 53);
        assert.equal(probe.kind, "answer", JSON.stringify(probe));
      },
    );

    await step(
      "weights 70/30/0: 1,000 new TCP connections and 1,000 new UDP sockets, ±5%",
      async () => {
        // 1,000 rather than 500: at 500, ±5% is 2.4 standard deviations of a 70% share, and
        // about one run in 70 would fail by chance alone.
        const n = 1000;
        const tcp = await countAnswers(n, (i) => tcpAskOrReset(address, 80, `split ${i}`));
        assertShare(tcp, "echo-a", 0.7, n);
        assertShare(tcp, "echo-b", 0.3, n);
        assert.equal(tcp.get("echo-c") ?? 0, 0, `weight 0 got flows: ${describeCounts(tcp, n)}`);
        assert.equal(tcp.get("reset") ?? 0, 0, `resets: ${describeCounts(tcp, n)}`);
        const udp = await countAnswers(n, (i) => udpAsk(address, 53, `split ${i}`));
        assertShare(udp, "echo-a", 0.7, n);
        assertShare(udp, "echo-b", 0.3, n);
        assert.equal(udp.get("echo-c") ?? 0, 0, `weight 0 got flows: ${describeCounts(udp, n)}`);
      },
    );

    await step(
      "a backend on the receiving node sees the client; one on the other node sees the node",
      async () => {
        const cases = [
          { node: node1, local: "echo-a", remote: "echo-b" },
          { node: node2, local: "echo-b", remote: "echo-a" },
        ];
        for (const { node, local, remote } of cases) {
          const unroute = await routeThrough(address, node.ip);
          try {
            const tcp = await flowsTo([local, remote], () => openTcp(address, 80));
            try {
              const l = tcp.get(local)!;
              assert.equal((await l.ask("who am i")).peer, l.local, `${local} via ${node.name}`);
              const r = tcp.get(remote)!;
              assert.match((await r.ask("who am i")).peer, new RegExp(`^${node.ip}:\\d+$`));
            } finally {
              for (const f of tcp.values()) f.close();
            }
            const udp = await flowsTo([local, remote], () => openUdp(address, 53));
            try {
              const l = udp.get(local)!;
              assert.equal(
                (await l.ask("who am i")).peer,
                `${client}:${(l.socket.addr as Deno.NetAddr).port}`,
              );
              const r = udp.get(remote)!;
              assert.match((await r.ask("who am i")).peer, new RegExp(`^${node.ip}:\\d+$`));
            } finally {
              for (const f of udp.values()) f.close();
            }
          } finally {
            await unroute();
          }
        }
      },
    );

    await step(
      "a pod reaches the Gateway from its own node (hairpin): local and remote backends answer, seeing the node",
      async () => {
        // The local cluster's pods are network namespaces; another cluster's pods are not ours to enter.
        const netns = (c as Partial<Pod>).netns;
        if (sys.target.kind !== "local" || !netns) return;
        // echo-c (node-1, weight 0: never a backend here) is the client, with new connections
        // and sockets from bash, as an application in the pod would open them.
        const script = (proto: "tcp" | "udp", port: number) =>
          `for i in $(seq 1 30); do exec 3<>/dev/${proto}/${address}/${port} || exit 1; ` +
          `echo "hairpin $i" >&3; timeout 3 head -n1 <&3 || echo "no answer $i"; exec 3<&-; done`;
        for (const [proto, port] of [["tcp", 80], ["udp", 53]] as const) {
          const out = await run(["bash", "-c", script(proto, port)], { netns });
          assert.equal(out.code, 0, `${proto}: ${out.stderr}`);
          const answers = out.stdout.trim().split("\n").map((l) => parseEchoReply(l));
          const names = new Set(answers.map((a) => a?.name ?? "none"));
          assert.deepEqual([...names].sort(), ["echo-a", "echo-b"], `${proto}: ${out.stdout}`);
          for (const a of answers) {
            // Translated to the node as kube-proxy masquerades hairpin traffic, so the
            // backend's reply comes back through the program even from the pod's own bridge.
            assert.match(a!.peer, new RegExp(`^${node1.ip.replaceAll(".", "\\.")}:\\d+$`));
            assert.match(a!.text, /^hairpin \d+$/);
          }
        }
      },
    );

    await step(
      "kubectl blixt status shows the table and counters of the traffic just sent",
      async () => {
        const status = async () => {
          const res = await sys.blixt(["status", "web", "-n", "default", "-o", "json"]);
          assert.equal(res.code, 0, res.stderr);
          return JSON.parse(res.stdout) as StatusReport;
        };
        const frontend = (report: StatusReport, listener: string) => {
          const l = report.gateways[0]?.listeners.find((x) => x.name === listener);
          const f = l?.frontends[0];
          assert.ok(f, `listener ${listener} has no frontend`);
          return f;
        };
        const udpCounters = (r: StatusReport) => frontend(r, "count-udp").counters;
        const tcpCounters = (r: StatusReport) => frontend(r, "count-tcp").counters;
        const before = await status();
        assert.equal(udpCounters(before), null, "count-udp had traffic before the test sent any");
        assert.equal(tcpCounters(before), null, "count-tcp had traffic before the test sent any");

        // The kernel counts what the host sends; blixt's counters must match it.
        const sent = await countSentPackets(NAME, address, ["tcp/81", "udp/54"]);
        let sentPackets: Record<string, number>;
        const datagrams = 300;
        const connections = 100;
        let udpSeen: Map<string, number>;
        try {
          udpSeen = await countAnswers(datagrams, (i) => udpAsk(address, 54, `count ${i}`));
          await countAnswers(connections, (i) => tcpAsk(address, 81, `count ${i}`));
          await sleep(200); // the last ACKs of the closing handshakes
          sentPackets = await sent.read();
        } finally {
          await sent.remove();
        }
        assert.equal(sentPackets["udp/54"], datagrams);
        const sentAt = Date.now();
        let after = before;
        await waitFor("counters of the traffic in DataplaneNode", async () => {
          after = await status();
          // A collection after the last packet has all of it.
          const collected = (c: { collectedAt: string } | null | undefined) =>
            c ? Date.parse(c.collectedAt) >= sentAt : false;
          return collected(udpCounters(after)) && collected(tcpCounters(after)) ? true : undefined;
        }, {
          timeoutMs: 15_000,
          describe: () =>
            `count-udp ${JSON.stringify(udpCounters(after))}, count-tcp ${
              JSON.stringify(tcpCounters(after))
            }`,
        });
        const latency = (Date.now() - sentAt) / 1000;
        assert.ok(latency <= 11, `counters took ${latency} s to reach DataplaneNode`);
        const udp = udpCounters(after)!;
        assert.ok(
          Math.abs(udp.packets - datagrams) <= datagrams * 0.01,
          `count-udp counted ${udp.packets} packets for ${datagrams} datagrams sent`,
        );
        assert.equal(udp.rejectedFlows, 0);
        for (const pod of [a, b]) {
          const counted = frontend(after, "count-udp").backends.find((x) => x.ip === pod.ip)
            ?.counters?.packets ?? 0;
          const answered = udpSeen.get(pod.name) ?? 0;
          assert.ok(
            Math.abs(counted - answered) <= Math.max(1, answered * 0.01),
            `${pod.name}: counted ${counted} packets, answered ${answered} datagrams`,
          );
        }
        const tcp = tcpCounters(after)!;
        assert.ok(
          Math.abs(tcp.newFlows - connections) <= connections * 0.01,
          `count-tcp counted ${tcp.newFlows} new flows for ${connections} connections`,
        );
        const tcpSent = sentPackets["tcp/81"] ?? 0;
        assert.ok(
          tcpSent >= 5 * connections && Math.abs(tcp.packets - tcpSent) <= tcpSent * 0.01,
          `count-tcp counted ${tcp.packets} packets; the host sent ${tcpSent}`,
        );

        const table = await sys.blixt(["status", "web", "-n", "default"]);
        assert.equal(table.code, 0, table.stderr);
        const rows = table.stdout.split("\n");
        assert.match(
          rows[0] ?? "",
          /^GATEWAY\s+ADDRESS\s+PORT\s+LISTENER\s+ROUTE\s+BACKEND\s+WEIGHT/,
        );
        const row = (port: string, ip: string) =>
          rows.find((r) => r.includes(` ${port} `) && r.includes(`${ip}:8080`));
        for (
          const [port, route] of [["80/TCP", "tcproute/web-tcp"], ["53/UDP", "udproute/web-udp"]]
        ) {
          const ra = row(port!, a.ip);
          assert.ok(ra?.includes(route!) && ra.includes("700000") && ra.includes("70%"), ra);
          const rb = row(port!, b.ip);
          assert.ok(rb?.includes("300000") && rb.includes("30%"), rb);
        }
        // The table's PACKETS column of count-udp's backends is what -o json says.
        for (const backend of frontend(after, "count-udp").backends) {
          const cells = row("54/UDP", backend.ip)?.trim().split(/\s+/) ?? [];
          assert.equal(Number(cells.at(-3)), backend.counters?.packets, cells.join(" "));
        }
      },
    );

    await step("scale: new pods get new flows within 1 s; open connections stay", async () => {
      const [p1, p2] = pool;
      assert.ok(p1 && p2);
      let phase = "opening flows to p1 and p2";
      // pool-udp's entry takes pool-tcp's backends (the same Service and endpoints): its flows
      // below go through a shared entry, as every agent lists backendsFrom
      const shared = await getObject(kubectl, "routingtable", "web", "default");
      const udpEntry = (shared?.spec?.entries as { port: number; protocol: string }[] | undefined)
        ?.find((e) => e.port === 8000 && e.protocol === "UDP") as
          | { backendsFrom?: string }
          | undefined;
      assert.equal(udpEntry?.backendsFrom, `${address}:8000/TCP`, JSON.stringify(udpEntry));
      const tcp = await flowsTo(["p1", "p2"], () => openTcp(address, 8000));
      const udp = await flowsTo(["p1", "p2"], () => openUdp(address, 8000));
      try {
        const stillAnswer = async (when: string) => {
          for (const [name, f] of [...tcp, ...udp]) {
            const answer = await f.ask(when);
            assert.equal(answer.name, name, `${when}: flow to ${name} answered by ${answer.name}`);
          }
        };
        // Add p3: the EndpointSlice changes, new flows reach it within 1 s.
        phase = "adding p3";
        const p3 = await sys.createPod({ name: "p3", node: node1.name });
        await sys.publishService("default", "pool", { ports: POOL_PORTS, pods: [p1, p2, p3] });
        let start = performance.now();
        const added = await newFlowsOverTime(address, 8000, start, 1500);
        const first = added.find((x) => x.name === "p3");
        assert.ok(first && first.at < 1000, `p3's first new flow at ${first?.at ?? "never"} ms`);
        assert.deepEqual(added.filter((x) => x.name === "reset"), [], "resets while adding p3");
        const spread = await countAnswers(150, (i) => tcpAsk(address, 8000, `after add ${i}`));
        for (const name of ["p1", "p2", "p3"]) assertShare(spread, name, 1 / 3, 150, 0.12);
        await stillAnswer("after adding p3");

        // Remove p3 from the EndpointSlice (the pod still answers): no new flows after 1 s.
        phase = "removing p3";
        await sys.publishService("default", "pool", { ports: POOL_PORTS, pods: [p1, p2] });
        start = performance.now();
        const removed = await newFlowsOverTime(address, 8000, start, 1500);
        const late = removed.filter((x) => (x.name === "p3" || x.name === "reset") && x.at >= 1000);
        assert.deepEqual(late, [], `new flows reached removed p3 (or were reset) after 1 s`);
        await sys.deletePod("p3");
        phase = "after deleting pod p3";
        await stillAnswer("after removing p3");

        // p1 terminating but serving: its open flows stay, new flows go to p2 only.
        phase = "p1 terminating";
        await sys.publishService("default", "pool", {
          ports: POOL_PORTS,
          pods: [{ pod: p1, ready: false, serving: true, terminating: true }, p2],
        });
        await waitFor("p1 Serving in the RoutingTable", async () => {
          const table = await getObject(kubectl, "routingtable", "web", "default");
          // backends as objects or as endpoint strings: read them as agents do
          const entries = table?.spec?.entries === undefined
            ? []
            : expandRoutingTable(table as unknown as RoutingTable).spec.entries;
          return entries.some((e) => e.backends.some((b) => b.state === "Serving"))
            ? true
            : undefined;
        });
        await sleep(1000);
        const drained = await countAnswers(60, (i) => tcpAsk(address, 8000, `draining ${i}`));
        assert.equal(drained.get("p2"), 60, describeCounts(drained, 60));
        await stillAnswer("while p1 terminates");
      } catch (e) {
        throw new Error(`${phase}: ${(e as Error).message}`, { cause: e });
      } finally {
        for (const f of [...tcp.values(), ...udp.values()]) f.close();
      }
    });

    await step(
      "route deleted: TCP reset, UDP port unreachable; re-created: traffic returns",
      async () => {
        await kubectl(["delete", "tcproute/web-tcp", "udproute/web-udp", "-n", "default"]);
        let gw: KubeJson | undefined;
        await waitFor("listeners tcp and udp with 0 attached routes", async () => {
          gw = await getObject(kubectl, "gateway", "web", "default");
          const l = gw?.status?.listeners ?? [];
          return l.find((x) => x.name === "tcp")?.attachedRoutes === 0 &&
              l.find((x) => x.name === "udp")?.attachedRoutes === 0
            ? true
            : undefined;
        }, { describe: () => JSON.stringify(gw?.status?.listeners) });
        const reset = await waitFor("a TCP reset", async () => {
          const p = await tcpProbe(address, 80);
          return p.kind === "reset" ? p : undefined;
        }, { timeoutMs: 5000 });
        assert.ok(reset.ms < 1000, `the reset took ${reset.ms} ms`);
        for (let i = 0; i < 5; i++) {
          const p = await tcpProbe(address, 80);
          assert.equal(p.kind, "reset", JSON.stringify(p));
          assert.ok(p.ms < 1000, `the reset took ${p.ms} ms`);
        }
        const refused = await waitFor("an ICMP port unreachable", async () => {
          const p = await udpProbe(address, 53);
          return p.kind === "refused" ? p : undefined;
        }, { timeoutMs: 5000 });
        assert.match(refused.detail, /Connection refused/);

        await sys.apply(webRoutesYaml());
        // Until the agents have the routes, a probe is refused: wait for both.
        await waitFor("TCP and UDP answered again", async () => {
          const tcp = await tcpProbe(address, 80);
          const udp = await udpProbe(address, 53);
          return tcp.kind === "answer" && udp.kind === "answer" ? true : undefined;
        }, { timeoutMs: 10_000 });
        const tcp = await tcpAsk(address, 80, "back");
        assert.equal(tcp.text, "back");
        const udp = await udpAsk(address, 53, "back");
        assert.equal(udp.text, "back");
        const route = await getObject(kubectl, "tcproute", "web-tcp", "default");
        assert.equal(brief(parentCondition(route, "web", "Accepted")), "Accepted=True/Accepted");
      },
    );
  } finally {
    if (failed && system) console.error(await system.logTails());
    await stopSystem(system, NAME);
  }
});
