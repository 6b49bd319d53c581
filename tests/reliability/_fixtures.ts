/**
 * What the reliability tests share: the Service ports of their backends, the
 * Gateway `rel` (TCP 80, UDP 53) and its routes to Service `pool`, and how a
 * figure is printed.
 */

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
