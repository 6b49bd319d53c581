/**
 * e2e: Gateways, listeners and references, as a user sees them, on the local
 * cluster `e2e-gateways` with the operator and an agent per node running.
 *
 * ```
 * Gateway one (default)             Gateway two (default)
 *   tcp-80  80/TCP <- one-tcp (sectionName)   tcp-80  80/TCP  <- two-tcp (no sectionName)
 *   udp-80  80/UDP <- one-udp (port 80)       udp-53  53/UDP  <- two-udp (sectionName)
 *   tcp-81  81/TCP <- one-81  (port 81)       apps  8080/TCP  <- apps/cross -> backends/remote
 *                                             half    82/TCP  <- half: echo-a 50, missing 50
 * Services (default): echo-a (node-1), echo-b (node-2), echo-c (node-1)
 * Service backends/remote: echo-r (node-2)
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  brief,
  type Condition as KubeCondition,
  conditionOf,
  getObject,
  type KubeJson,
  listObjects,
  parentCondition,
  programmedAddress,
  programmedEntries,
  waitFor,
} from "./kube_state.ts";
import { kubeBinaryPath } from "../cluster/binaries.ts";
import { startSystem, stopSystem, type System } from "./system.ts";
import {
  countAnswers,
  describeCounts,
  LineConnection,
  routeThrough,
  tcpAsk,
  tcpAskOrReset,
  tcpProbe,
  udpAsk,
  udpProbe,
} from "./traffic.ts";

const NAME = "e2e-gateways";
/** The agents' liveness Lease in this suite, in seconds (the default is 40). */
const LEASE_SECONDS = 10;

const ECHO_PORTS = [
  { name: "tcp", port: 80, targetPort: 8080, protocol: "TCP" as const },
  { name: "udp", port: 53, targetPort: 8080, protocol: "UDP" as const },
];

const GATEWAYS_YAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: one, namespace: default }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp-80, port: 80, protocol: TCP }
  - { name: udp-80, port: 80, protocol: UDP }
  - { name: tcp-81, port: 81, protocol: TCP }
  - name: apps
    port: 8080
    protocol: TCP
    allowedRoutes: { namespaces: { from: All } }
  - { name: half, port: 82, protocol: TCP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: two, namespace: default }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp-80, port: 80, protocol: TCP }
  - { name: udp-53, port: 53, protocol: UDP }
`;

function oneTcpYaml(refs: string): string {
  return `
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: one-tcp, namespace: default }
spec:
  parentRefs: [{ name: one, sectionName: tcp-80 }]
  rules: [{ backendRefs: ${refs} }]
`;
}

const ROUTES_YAML = oneTcpYaml("[{ name: echo-a, port: 80 }]") + `
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: one-udp, namespace: default }
spec:
  parentRefs: [{ name: one, port: 80 }]
  rules: [{ backendRefs: [{ name: echo-b, port: 53 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: one-81, namespace: default }
spec:
  parentRefs: [{ name: one, port: 81 }]
  rules: [{ backendRefs: [{ name: echo-c, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: two-tcp, namespace: default }
spec:
  parentRefs: [{ name: two }]
  rules: [{ backendRefs: [{ name: echo-b, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: two-udp, namespace: default }
spec:
  parentRefs: [{ name: two, sectionName: udp-53 }]
  rules: [{ backendRefs: [{ name: echo-a, port: 53 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: nowhere, namespace: default }
spec:
  parentRefs: [{ name: two, port: 9999 }]
  rules: [{ backendRefs: [{ name: echo-a, port: 80 }] }]
`;

const CROSS_YAML = `
apiVersion: v1
kind: Namespace
metadata: { name: apps }
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: cross, namespace: apps }
spec:
  parentRefs: [{ name: one, namespace: default, sectionName: apps }]
  rules: [{ backendRefs: [{ name: remote, namespace: backends, port: 80 }] }]
`;

const GRANT_YAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: { name: apps-routes, namespace: backends }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: TCPRoute, namespace: apps }]
  to: [{ group: "", kind: Service }]
`;

const HALF_YAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: half, namespace: default }
spec:
  parentRefs: [{ name: one, sectionName: half }]
  rules:
  - backendRefs:
    - { name: echo-a, port: 80, weight: 50 }
    - { name: missing, port: 80, weight: 50 }
`;

/** Asserts that `n` requests all get an answer from `backend`. */
async function assertAllFrom(
  backend: string,
  n: number,
  ask: (i: number) => Promise<{ name: string }>,
): Promise<void> {
  for (let i = 0; i < n; i++) {
    const answer = await ask(i);
    assert.equal(answer.name, backend, `request ${i}`);
  }
}

async function attachedRoutes(
  kubectl: (args: string[]) => Promise<string>,
  gateway: string,
): Promise<Record<string, number>> {
  const gw = await getObject(kubectl, "gateway", gateway, "default");
  return Object.fromEntries((gw?.status?.listeners ?? []).map((l) => [l.name, l.attachedRoutes]));
}

Deno.test("e2e: Gateways, listeners, references, agents (several Gateways, grants, missing backends, a killed and a stopped agent, deletion)", async (t) => {
  let system: System | undefined;
  let failed = false;
  const step = async (name: string, fn: () => Promise<void>) => {
    if (!(await t.step(name, fn))) failed = true;
  };
  try {
    // A 10 s agent Lease (renewed every 2 s) instead of 40 s: a killed agent is noticed sooner.
    system = await startSystem({
      name: NAME,
      nodes: 2,
      agentArgs: ["--lease-duration", String(LEASE_SECONDS), "--lease-renew-interval", "2"],
    });
    const sys = system;
    const cluster = sys.cluster;
    const kubectl = (args: string[]) => cluster.kubectl(args);
    const [node1, node2] = cluster.nodes;
    assert.ok(node1 && node2);

    const a = await sys.createPod({ name: "echo-a", node: node1.name });
    const b = await sys.createPod({ name: "echo-b", node: node2.name });
    const c = await sys.createPod({ name: "echo-c", node: node1.name });
    const r = await sys.createPod({ name: "echo-r", node: node2.name });
    for (const pod of [a, b, c]) {
      await sys.publishService("default", pod.name, { ports: ECHO_PORTS, pods: [pod] });
    }
    await sys.apply("apiVersion: v1\nkind: Namespace\nmetadata: { name: backends }\n");
    await sys.publishService("backends", "remote", { ports: ECHO_PORTS, pods: [r] });
    await sys.apply(GATEWAYS_YAML + "---" + ROUTES_YAML);
    const one = await programmedAddress(kubectl, "one");
    const two = await programmedAddress(kubectl, "two");

    await step(
      "two Gateways, TCP and UDP on one port, parentRef by sectionName and by port",
      async () => {
        assert.notEqual(one, two);
        assert.deepEqual(await attachedRoutes(kubectl, "one"), {
          "tcp-80": 1,
          "udp-80": 1,
          "tcp-81": 1,
          apps: 0,
          half: 0,
        });
        assert.deepEqual(await attachedRoutes(kubectl, "two"), { "tcp-80": 1, "udp-53": 1 });
        const routes = [
          ["tcproute", "one-tcp", "one"],
          ["udproute", "one-udp", "one"],
          ["tcproute", "one-81", "one"],
          ["tcproute", "two-tcp", "two"],
          ["udproute", "two-udp", "two"],
        ] as const;
        for (const [kind, name, gateway] of routes) {
          const route = await getObject(kubectl, kind, name, "default");
          assert.equal(
            brief(parentCondition(route, gateway, "Accepted")),
            "Accepted=True/Accepted",
            `${kind}/${name}`,
          );
        }
        const nowhere = await getObject(kubectl, "tcproute", "nowhere", "default");
        assert.equal(
          brief(parentCondition(nowhere, "two", "Accepted")),
          "Accepted=False/NoMatchingParent",
        );

        await assertAllFrom("echo-a", 10, (i) => tcpAsk(one, 80, `one tcp ${i}`));
        await assertAllFrom("echo-b", 10, (i) => udpAsk(one, 80, `one udp ${i}`));
        await assertAllFrom("echo-c", 10, (i) => tcpAsk(one, 81, `one 81 ${i}`));
        await assertAllFrom("echo-b", 10, (i) => tcpAsk(two, 80, `two tcp ${i}`));
        await assertAllFrom("echo-a", 10, (i) => udpAsk(two, 53, `two udp ${i}`));
      },
    );

    await step(
      "cross-namespace backend: RefNotPermitted and rejected; with a ReferenceGrant it flows",
      async () => {
        await sys.apply(CROSS_YAML);
        let route: KubeJson | undefined;
        await waitFor("apps/cross ResolvedRefs=False/RefNotPermitted", async () => {
          route = await getObject(kubectl, "tcproute", "cross", "apps");
          return brief(parentCondition(route, "one", "ResolvedRefs")) ===
              "ResolvedRefs=False/RefNotPermitted"
            ? true
            : undefined;
        }, { describe: () => JSON.stringify(route?.status) });
        assert.equal(brief(parentCondition(route, "one", "Accepted")), "Accepted=True/Accepted");
        assert.equal((await attachedRoutes(kubectl, "one")).apps, 1);
        await programmedEntries(kubectl, "one", (entries) => {
          const e = entries.find((x) => x.port === 8080);
          return e?.rejectWeight === 1_000_000 && e.backends.length === 0;
        });
        for (let i = 0; i < 5; i++) {
          const probe = await tcpProbe(one, 8080);
          assert.equal(probe.kind, "reset", JSON.stringify(probe));
        }

        await sys.apply(GRANT_YAML);
        await waitFor("apps/cross ResolvedRefs=True", async () => {
          route = await getObject(kubectl, "tcproute", "cross", "apps");
          return brief(parentCondition(route, "one", "ResolvedRefs")) ===
              "ResolvedRefs=True/ResolvedRefs"
            ? true
            : undefined;
        }, { describe: () => JSON.stringify(route?.status) });
        await programmedEntries(
          kubectl,
          "one",
          (entries) => entries.find((x) => x.port === 8080)?.backends[0]?.ip === r.ip,
        );
        await assertAllFrom("echo-r", 10, (i) => tcpAsk(one, 8080, `granted ${i}`));
      },
    );

    await step(
      "missing backend Service: BackendNotFound, its 50% of new connections reset",
      async () => {
        await sys.apply(HALF_YAML);
        let route: KubeJson | undefined;
        await waitFor("half ResolvedRefs=False/BackendNotFound", async () => {
          route = await getObject(kubectl, "tcproute", "half", "default");
          return brief(parentCondition(route, "one", "ResolvedRefs")) ===
              "ResolvedRefs=False/BackendNotFound"
            ? true
            : undefined;
        }, { describe: () => JSON.stringify(route?.status) });
        assert.match(parentCondition(route, "one", "ResolvedRefs")?.message ?? "", /missing/);
        await programmedEntries(kubectl, "one", (entries) => {
          const e = entries.find((x) => x.port === 82);
          return e?.rejectWeight === 500_000 && e.backends[0]?.weight === 500_000;
        });

        const n = 1000;
        const counts = await countAnswers(n, (i) => tcpAskOrReset(one, 82, `half ${i}`));
        const resets = (counts.get("reset") ?? 0) / n;
        assert.ok(Math.abs(resets - 0.5) <= 0.05, describeCounts(counts, n));
        assert.equal((counts.get("echo-a") ?? 0) + (counts.get("reset") ?? 0), n);
      },
    );

    /** Waits for Gateway `one`'s Programmed condition to satisfy `want`; returns it. */
    const programmedOf = async (
      what: string,
      want: (p: KubeCondition) => boolean,
      timeoutMs = 30_000,
    ) => {
      let gw: KubeJson | undefined;
      return await waitFor(what, async () => {
        gw = await getObject(kubectl, "gateway", "one", "default");
        const p = conditionOf(gw?.status?.conditions, "Programmed");
        return p && want(p) ? p : undefined;
      }, { timeoutMs, describe: () => JSON.stringify(gw?.status?.conditions) });
    };

    await step(
      "an agent killed (kill -9): within its Lease the Gateway is Programmed=False naming the node; the other node serves; restarted, Programmed=True",
      async () => {
        await programmedOf("Gateway one Programmed=True", (p) => p.status === "True");
        const unroute = await routeThrough(one, node1.ip);
        const killed = performance.now();
        await sys.stopAgent(node2.name, { kill: true });
        let stopped = true;
        try {
          const programmed = await programmedOf(
            "Gateway one Programmed=False/AgentNotRunning",
            (p) => p.status === "False",
            (LEASE_SECONDS + 10) * 1000,
          );
          const seconds = (performance.now() - killed) / 1000;
          assert.equal(programmed.reason, "AgentNotRunning", programmed.message);
          assert.match(
            programmed.message ?? "",
            new RegExp(`not running on ${node2.name} \\(agent Lease expired`),
          );
          assert.ok(!programmed.message?.includes(`${node1.name} (`), programmed.message);
          // the last renewal was up to one renew interval (2 s) before the kill
          assert.ok(seconds <= LEASE_SECONDS + 2, `noticed after ${seconds.toFixed(1)} s`);
          assert.ok(seconds >= LEASE_SECONDS - 3, `noticed too early: ${seconds.toFixed(1)} s`);
          // what is programmed keeps flowing through the node whose agent runs
          await assertAllFrom("echo-a", 10, (i) => tcpAsk(one, 80, `killed ${i}`));
          await assertAllFrom("echo-b", 5, (i) => udpAsk(one, 80, `killed udp ${i}`));

          await sys.startAgent(node2.name);
          stopped = false;
          await programmedOf("Gateway one Programmed=True again", (p) => p.status === "True");
        } finally {
          if (stopped) await sys.startAgent(node2.name);
          await unroute();
        }
      },
    );

    await step(
      "an agent stopped (SIGTERM): Programmed=False at once naming the node, DataplaneNode AgentStopped; the other node programs a change and serves",
      async () => {
        const stoppedAt = performance.now();
        await sys.stopAgent(node2.name);
        let stopped = true;
        const unroute = await routeThrough(one, node1.ip);
        try {
          const released = await programmedOf(
            "Gateway one Programmed=False/AgentNotRunning",
            (p) => p.status === "False",
          );
          const seconds = (performance.now() - stoppedAt) / 1000;
          assert.equal(released.reason, "AgentNotRunning", released.message);
          assert.match(
            released.message ?? "",
            new RegExp(`not running on ${node2.name} \\(agent stopped \\(Lease released\\)\\)`),
          );
          assert.ok(seconds < LEASE_SECONDS - 2, `noticed after ${seconds.toFixed(1)} s`);
          const dpn = await getObject(kubectl, "dataplanenode", node2.name);
          assert.equal(
            brief(conditionOf(dpn?.status?.conditions, "Ready")),
            "Ready=False/AgentStopped",
          );

          // A change the stopped agent cannot program: echo-c joins one-tcp.
          await sys.apply(oneTcpYaml("[{ name: echo-a, port: 80 }, { name: echo-c, port: 80 }]"));
          const programmed = await programmedOf(
            "Gateway one: node-1 caught up, node-2 named as not running",
            (p) =>
              p.status === "False" && !p.message?.includes(`${node1.name}:`) &&
              /programmed on 1 of 2/.test(p.message ?? ""),
          );
          assert.equal(programmed.reason, "AgentNotRunning");
          assert.ok(programmed.message?.includes(`${node2.name} (`), programmed.message);

          // node-1's agent programmed the change: new flows through node-1 reach echo-c too.
          const counts = await countAnswers(60, (i) => tcpAsk(one, 80, `node-1 ${i}`));
          assert.ok((counts.get("echo-a") ?? 0) > 0, describeCounts(counts, 60));
          assert.ok((counts.get("echo-c") ?? 0) > 0, describeCounts(counts, 60));
          await assertAllFrom("echo-b", 5, (i) => udpAsk(one, 80, `udp node-1 ${i}`));

          await sys.startAgent(node2.name);
          stopped = false;
          await programmedEntries(kubectl, "one", () => true);
        } finally {
          if (stopped) await sys.startAgent(node2.name);
          await unroute();
        }
      },
    );

    await step(
      "SNAT ports run out: the next new connection is reset at once (not a hung SYN) and counted in DataplaneNode",
      async () => {
        // node-1's agent with two SNAT ports; Gateway two's TCP 80 goes to echo-b on node-2
        await sys.stopAgent(node1.name);
        await sys.startAgent(node1.name, { args: ["--snat-ports", "61000-61001"] });
        const unroute = await routeThrough(two, node1.ip);
        const held: LineConnection[] = [];
        try {
          await programmedEntries(kubectl, "two", () => true);
          let reset: Awaited<ReturnType<typeof tcpProbe>> | undefined;
          for (let i = 0; i < 3 && reset === undefined; i++) {
            const probe = await tcpProbe(two, 80);
            if (probe.kind === "answer") {
              // a held connection keeps its SNAT port
              const c = await LineConnection.open(two, 80);
              held.push(c);
              assert.equal((await c.ask(`held ${i}`)).name, "echo-b");
            } else reset = probe;
          }
          assert.ok(reset, `no reset after ${held.length} held connections`);
          assert.equal(reset.kind, "reset", JSON.stringify(reset));
          assert.ok(reset.ms < 1000, `reset after ${reset.ms} ms`);
          assert.ok(held.length >= 1, "at least one connection got a port");
          let dpn: KubeJson | undefined;
          await waitFor("node-1 DataplaneNode counts the exhaustion", async () => {
            dpn = await getObject(kubectl, "dataplanenode", node1.name);
            const counters = (dpn?.status as { counters?: { snatExhausted?: number } } | undefined)
              ?.counters;
            return (counters?.snatExhausted ?? 0) >= 1 ? true : undefined;
          }, { timeoutMs: 20_000, describe: () => JSON.stringify(dpn?.status) });
        } finally {
          for (const c of held) c.close();
          await unroute();
          await sys.stopAgent(node1.name);
          await sys.startAgent(node1.name);
        }
      },
    );

    await step(
      "Gateway deleted: its RoutingTable leaves every node, its address is released",
      async () => {
        assert.equal((await tcpAsk(one, 81, "before")).name, "echo-c");
        await kubectl(["delete", "gateway", "one", "-n", "default"]);
        await waitFor(
          "RoutingTable default/one deleted",
          async () =>
            (await getObject(kubectl, "routingtable", "one", "default")) ? undefined : true,
        );
        let nodes: KubeJson[] = [];
        await waitFor("no DataplaneNode lists default/one", async () => {
          nodes = await listObjects(kubectl, "dataplanenodes");
          return nodes.length === cluster.nodes.length &&
              nodes.every((n) =>
                !(n.status?.tables ?? []).some((x) => x.namespace === "default" && x.name === "one")
              )
            ? true
            : undefined;
        }, { describe: () => JSON.stringify(nodes.map((n) => n.status?.tables)) });
        for (const node of cluster.nodes) {
          const unroute = await routeThrough(one, node.ip);
          try {
            for (const port of [80, 81]) {
              const probe = await tcpProbe(one, port);
              assert.notEqual(
                probe.kind,
                "answer",
                `${node.name} ${port}: ${JSON.stringify(probe)}`,
              );
            }
            const probe = await udpProbe(one, 80);
            assert.notEqual(probe.kind, "answer", `${node.name} udp: ${JSON.stringify(probe)}`);
          } finally {
            await unroute();
          }
        }
        // The lowest free address of the pool is one's again: a new Gateway gets it.
        await sys.apply(`
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: three, namespace: default }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
`);
        assert.equal(await programmedAddress(kubectl, "three"), one);
        const three = await getObject(kubectl, "gateway", "three", "default");
        assert.equal(
          brief(conditionOf(three?.status?.conditions, "Accepted")),
          "Accepted=True/Accepted",
        );
      },
    );

    await step(
      "the remote path (BLIXT_E2E_KUBECONFIG): the harness takes a cluster it is given as another",
      async () => {
        // Passed explicitly, not through the environment, which parallel test files share.
        const kubectlCommand = sys.target.kind === "local"
          ? [await kubeBinaryPath(), "kubectl"]
          : ["kubectl"];
        const remote = await startSystem({
          remote: { kubeconfig: cluster.kubeconfig, kubectl: kubectlCommand },
        });
        assert.equal(remote.target.kind, "remote");
        assert.deepEqual(
          remote.cluster.nodes.map((n) => `${n.name} ${n.ip}`),
          cluster.nodes.map((n) => `${n.name} ${n.ip}`),
        );
        assert.equal(remote.clientAddress, sys.clientAddress);
        await assert.rejects(remote.stopAgent(node2.name), /not portable yet/);

        // What a remote run creates, it deletes (pods need a kubelet: not here).
        await remote.apply(`
apiVersion: v1
kind: Namespace
metadata: { name: remote-run }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: four, namespace: default }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
`);
        await remote.publishService("remote-run", "svc", { ports: ECHO_PORTS, pods: [a] });
        assert.ok(await getObject(kubectl, "endpointslice", "svc-e2e", "remote-run"));
        await programmedAddress(kubectl, "four");
        await stopSystem(remote);
        await waitFor("what the remote run created is gone", async () => {
          const gw = await getObject(kubectl, "gateway", "four", "default");
          const ns = await getObject(kubectl, "namespace", "remote-run");
          const svc = await getObject(kubectl, "service", "svc", "remote-run");
          // The local cluster has no namespace controller: a deleted namespace stays Terminating.
          const phase = (ns?.status as { phase?: string } | undefined)?.phase;
          return !gw && (!ns || phase === "Terminating") && !svc ? true : undefined;
        });
        // The local cluster is untouched: the Gateways of this test still answer.
        assert.equal((await tcpAsk(two, 80, "still here")).name, "echo-b");
      },
    );
  } finally {
    if (failed && system) console.error(await system.logTails());
    await stopSystem(system, NAME);
  }
});
