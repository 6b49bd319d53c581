/**
 * `deno task demo [--keep] [--name NAME]`: blixt's main job on the local
 * cluster. Sets the machine up, brings up a 2-node cluster, runs the operator
 * and an agent per node, creates a Gateway with a TCP and a UDP listener, two
 * echo backends on different nodes, a TCPRoute (70/30) and a UDPRoute
 * (50/50); sends real traffic to the Gateway address and prints which backend
 * answered how often; prints `kubectl blixt status`. `--keep` leaves it all
 * running; otherwise the demo cleans up.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { setup } from "../setup.ts";
import { tcpEcho, udpEcho } from "../cluster/echo_client.ts";
import { parseEchoReply } from "../cluster/echo_server.ts";
import { startSystem, stopSystem, type System } from "./system.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    keep: { type: "boolean", default: false },
    name: { type: "string", default: "demo" },
    requests: { type: "string", default: "200" },
  },
});
const started = performance.now();
const step = (line: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(5)}s] ${line}`);

/** The Gateway, the routes and their weights. */
const DEMO_YAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: demo, namespace: default }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 80, protocol: TCP }
  - { name: udp, port: 53, protocol: UDP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: echo-tcp, namespace: default }
spec:
  parentRefs: [{ name: demo, sectionName: tcp }]
  rules:
  - backendRefs:
    - { name: echo-a, port: 80, weight: 70 }
    - { name: echo-b, port: 80, weight: 30 }
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: echo-udp, namespace: default }
spec:
  parentRefs: [{ name: demo, sectionName: udp }]
  rules:
  - backendRefs:
    - { name: echo-a, port: 53, weight: 50 }
    - { name: echo-b, port: 53, weight: 50 }
`;

async function gatewayAddress(system: System): Promise<string> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const gw = JSON.parse(
      await system.cluster.kubectl(["get", "gateway", "demo", "-o", "json"]),
    ) as {
      status?: {
        addresses?: { value: string }[];
        conditions?: { type: string; status: string }[];
      };
    };
    const programmed = gw.status?.conditions?.find((c) => c.type === "Programmed");
    const address = gw.status?.addresses?.[0]?.value;
    if (programmed?.status === "True" && address) return address;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("Gateway demo was not Programmed within 60 s");
}

function share(counts: Map<string, number>, total: number): string {
  return [...counts].sort(([a], [b]) => a.localeCompare(b))
    .map(([name, n]) => `${name} ${n} (${((100 * n) / total).toFixed(1)}%)`).join(", ");
}

let system: System | undefined;
try {
  step("setting up the machine (packages, BPF program, cluster binaries)");
  await setup((line) => step(`  ${line}`));
  step(`bringing up the local cluster "${values.name}" with the operator and 2 agents`);
  system = await startSystem({ name: values.name, nodes: 2, log: (l) => step(`  ${l}`) });
  const cluster = system.cluster;
  step("starting echo backends: echo-a on node-1, echo-b on node-2");
  const a = await cluster.createPod({ name: "echo-a", node: "node-1" });
  const b = await cluster.createPod({ name: "echo-b", node: "node-2" });
  const ports = [
    { name: "tcp", port: 80, targetPort: 8080, protocol: "TCP" as const },
    { name: "udp", port: 53, targetPort: 8080, protocol: "UDP" as const },
  ];
  await system.publishService("default", "echo-a", { ports, pods: [a] });
  await system.publishService("default", "echo-b", { ports, pods: [b] });
  step("creating Gateway demo (tcp/80, udp/53), TCPRoute 70/30 and UDPRoute 50/50");
  await system.apply(DEMO_YAML);
  const address = await gatewayAddress(system);
  step(`Gateway demo is Programmed at ${address}`);

  const requests = Number(values.requests);
  for (const protocol of ["tcp", "udp"] as const) {
    const port = protocol === "tcp" ? 80 : 53;
    const counts = new Map<string, number>();
    const sources = new Set<string>();
    for (let i = 0; i < requests; i++) {
      const echo = protocol === "tcp" ? tcpEcho : udpEcho;
      const reply = parseEchoReply(await echo(address, port, `hello ${i}`));
      if (!reply) continue;
      counts.set(reply.name, (counts.get(reply.name) ?? 0) + 1);
      sources.add(reply.peer.split(":")[0]!);
    }
    step(
      `${requests} new ${protocol.toUpperCase()} ${
        protocol === "tcp" ? "connections" : "sockets"
      } to ${address}:${port}: ${share(counts, requests)}; backends saw ${[...sources].join(", ")}`,
    );
  }

  // Counters reach DataplaneNode within the agents' 10 s reporting period.
  await new Promise((r) => setTimeout(r, 11_000));
  const status = await system.blixt(["status"]);
  console.log(`\n$ kubectl blixt status\n${status.stdout}${status.stderr}`);
  if (values.keep) {
    console.log(`The demo keeps running. Look around:
  export KUBECONFIG=${cluster.kubeconfig}
  kubectl get gateways,tcproutes,udproutes,routingtables,dataplanenodes -A
  deno task plugin:install && kubectl blixt status
  deno task cluster:down --name ${values.name}`);
  } else {
    step("cleaning up (--keep leaves it running)");
    await stopSystem(system);
  }
  step("done");
} catch (e) {
  console.error(`demo failed: ${(e as Error).stack ?? e}`);
  if (system) {
    for (const p of system.processes) {
      const tail = await Deno.readTextFile(p.log).catch(() => "");
      console.error(`--- last lines of ${p.name}:\n${tail.split("\n").slice(-8).join("\n")}`);
    }
  }
  if (!values.keep) await stopSystem(system, values.name).catch(() => {});
  Deno.exit(1);
}
