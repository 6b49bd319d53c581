/**
 * What the reliability tests share: the Service ports of their backends, the
 * Gateway `rel` (TCP 80, UDP 53) and its routes to Service `pool`, a standby
 * operator, and how a figure is printed.
 */

import assert from "node:assert/strict";
import type { Cluster } from "../cluster/cluster.ts";
import { processAlive, sleep, spawnDetached } from "../cluster/host.ts";

/** Ports of the backends' Service: TCP 80 and UDP 53, both to 8080. */
export const PORTS = [
  { name: "tcp", port: 80, targetPort: 8080, protocol: "TCP" as const },
  { name: "udp", port: 53, targetPort: 8080, protocol: "UDP" as const },
];

/** Gateway `rel` in `default`: listeners `tcp` (80) and `udp` (53). */
export const GATEWAY_YAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: rel, namespace: default }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 80, protocol: TCP }
  - { name: udp, port: 53, protocol: UDP }
`;

/** Gateway `rel` with a TCPRoute and a UDPRoute to Service `pool`. */
export const GATEWAY_AND_ROUTES_YAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: rel, namespace: default }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 80, protocol: TCP }
  - { name: udp, port: 53, protocol: UDP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: rel-tcp, namespace: default }
spec:
  parentRefs: [{ name: rel, sectionName: tcp }]
  rules: [{ backendRefs: [{ name: pool, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: rel-udp, namespace: default }
spec:
  parentRefs: [{ name: rel, sectionName: udp }]
  rules: [{ backendRefs: [{ name: pool, port: 53 }] }]
`;

/** Prints one reliability figure (docs/reliability.md quotes these lines). */
export function figure(name: string, value: string | number): void {
  console.log(`reliability: ${name} = ${value}`);
}

/** A second operator process beside the system's, its health port and its Lease identity. */
export interface StandbyOperator {
  pid: number;
  port: number;
  identity: string;
}

/**
 * Starts a second operator on `cluster` (identity `operator-NAME-standby`,
 * log `operator-standby.log` in the cluster's directory) and returns once its
 * caches are synced (`/readyz`), within 60 s. `onSpawn` gets the pid at once,
 * so the caller can stop it even when the wait fails.
 */
export async function startStandbyOperator(
  cluster: Cluster,
  onSpawn: (pid: number) => void,
): Promise<StandbyOperator> {
  const port = 18181 + cluster.plan.slot;
  const identity = `operator-${cluster.name}-standby`;
  const pid = await spawnDetached([
    Deno.execPath(),
    "run",
    "-A",
    new URL("../../operator/main.ts", import.meta.url).pathname,
    "--kubeconfig",
    `${cluster.dir}/operator.kubeconfig`,
    "--health-port",
    String(port),
    "--identity",
    identity,
  ], { log: `${cluster.dir}/operator-standby.log` });
  onSpawn(pid);
  const deadline = Date.now() + 60_000;
  while (
    !(await fetch(`http://127.0.0.1:${port}/readyz`).then(async (r) => {
      await r.body?.cancel(); // a 503 while the caches sync: its body too
      return r.ok;
    }).catch(() => false))
  ) {
    assert.ok(Date.now() < deadline && processAlive(pid), "standby operator not ready");
    await sleep(200);
  }
  return { pid, port, identity };
}
