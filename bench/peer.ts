/**
 * blixt against the real kube-proxy (nftables mode) on the local cluster.
 *
 * @module
 */

import { type ClusterPlan } from "../tests/cluster/address_plan.ts";
import { type Cluster } from "../tests/cluster/cluster.ts";

/** Address `host` (1..254) of the cluster's Gateway pool, routed from the host to the nodes. */
export function loadBalancerAddress(plan: ClusterPlan, host: number): string {
  return plan.gatewayPool.replace(/\.0\/24$/, `.${host}`);
}

/** A port of a benchmark Service (TCP, same port on the backends). */
export interface BenchPort {
  name: string;
  port: number;
}

/**
 * A Service of type LoadBalancer without a selector and its EndpointSlice
 * with `pods` as ready endpoints (what the EndpointSlice controller would
 * write for them). No node ports: there is no cloud load balancer to use them.
 */
export function loadBalancerServiceYaml(
  name: string,
  ports: BenchPort[],
  pods: { ip: string; node: string; name: string }[],
  namespace = "default",
): string {
  const service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace },
    spec: {
      type: "LoadBalancer",
      allocateLoadBalancerNodePorts: false,
      externalTrafficPolicy: "Cluster",
      ports: ports.map((p) => ({
        name: p.name,
        port: p.port,
        targetPort: p.port,
        protocol: "TCP",
      })),
    },
  };
  return `${JSON.stringify(service)}\n---\n${
    JSON.stringify(endpointSlice(name, ports, pods, namespace))
  }\n`;
}

/** The EndpointSlice of a benchmark Service. */
export function endpointSlice(
  name: string,
  ports: BenchPort[],
  pods: { ip: string; node: string; name: string }[],
  namespace = "default",
): Record<string, unknown> {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name: `${name}-bench`, namespace, labels: { "kubernetes.io/service-name": name } },
    addressType: "IPv4",
    ports: ports.map((p) => ({ name: p.name, port: p.port, protocol: "TCP" })),
    endpoints: pods.map((pod) => ({
      addresses: [pod.ip],
      nodeName: pod.node,
      conditions: { ready: true, serving: true, terminating: false },
    })),
  };
}

/** Sets `status.loadBalancer.ingress` of Service `name`, as a cloud controller would. */
export async function setLoadBalancerIngress(
  cluster: Cluster,
  name: string,
  addresses: string[],
  namespace = "default",
): Promise<void> {
  const patch = { status: { loadBalancer: { ingress: addresses.map((ip) => ({ ip })) } } };
  await cluster.kubectl([
    "patch",
    "service",
    name,
    "-n",
    namespace,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify(patch),
  ]);
}
