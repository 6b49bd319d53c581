/**
 * `deno task demo`: blixt's main job, shown on the local cluster.
 *
 * Today it sets the machine up, brings up the local cluster (2 nodes) with
 * two echo pods, shows them answering, and says what is still to come: the
 * operator, the agents and traffic through a Gateway arrive with their
 * issues. `--keep` leaves the cluster running; otherwise it is taken down.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { setup } from "../setup.ts";
import { clusterDown, clusterUp } from "../cluster/cluster.ts";
import { tcpEcho, udpEcho } from "../cluster/echo_client.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { keep: { type: "boolean", default: false }, name: { type: "string", default: "demo" } },
});
const started = performance.now();
const step = (line: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${line}`);

try {
  step("setting up the machine (packages, cluster binaries)");
  await setup((line) => step(`  ${line}`));
  step(`bringing up the local cluster "${values.name}" (2 nodes)`);
  const cluster = await clusterUp({ name: values.name, nodes: 2, log: (l) => step(`  ${l}`) });
  step("starting an echo pod on each node");
  const pods = [
    await cluster.createPod({ name: "echo-1", node: "node-1" }),
    await cluster.createPod({ name: "echo-2", node: "node-2" }),
  ];
  for (const pod of pods) {
    step(`  ${pod.name} on ${pod.node} at ${pod.ip}`);
    step(`    tcp: ${await tcpEcho(pod.ip, 8080, "hello over tcp")}`);
    step(`    udp: ${await udpEcho(pod.ip, 8080, "hello over udp")}`);
  }
  console.log(await cluster.kubectl(["get", "nodes", "-o", "wide"]));
  console.log(
    "Still to come: the operator, the per-node agents and the eBPF data plane.\n" +
      "Then this demo creates a Gateway with TCP and UDP listeners, routes with\n" +
      "weights, sends traffic to the Gateway address and prints kubectl blixt status.",
  );
  if (values.keep) {
    console.log(`\nThe cluster keeps running. Look around:
  export KUBECONFIG=${cluster.kubeconfig}
  kubectl get nodes
  deno task cluster:down --name ${values.name}`);
  } else {
    step("taking the cluster down (--keep leaves it running)");
    await clusterDown(values.name);
  }
  step("done");
} catch (e) {
  console.error(`demo failed: ${(e as Error).message}`);
  if (!values.keep) await clusterDown(values.name).catch(() => {});
  Deno.exit(1);
}
