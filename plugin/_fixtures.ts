// One scenario for every kubectl-blixt test: objects as the operator and the
// agents would write them. The Gateway, route and RoutingTable statuses are not
// written by hand: the operator's own reconcile computes them from the specs,
// Services and EndpointSlices below, so the plugin is tested against what the
// operator really produces. Unit tests read the scenario as a ClusterView; the
// golden test seeds the same objects into the local cluster.
//
//   default/gw (class blixt, 198.18.200.1)                    apps/edge (198.18.200.2)
//     tcp 5000/TCP <- tcproute/web (3x web:80, 1x missing)     api 7000/TCP (namespaces team=apps)
//                     tcproute/web-canary (newer: shadowed)      <- apps/tcproute/api (api:7000)
//                     apps/tcproute/blocked (not allowed)
//     dns 53/UDP   <- udproute/dns (only a terminating endpoint)
//     http 80/HTTP (unsupported)
//   default/foreign (class other) <- tcproute/elsewhere;  tcproute/lost -> Gateway "missing"
//   node-1: in sync, counters (compact);  node-2: Degraded (backends map full), default/gw not
//   programmed, counters as older agents wrote them
import type { V1Namespace, V1Node } from "@kubernetes/client-node";
import type { DataplaneNode, RoutingTable } from "../api/mod.ts";
import {
  createSnapshot,
  type Gateway,
  type GatewayClass,
  type L4Route,
  putObject,
  reconcile,
  reconcileGatewayClass,
  type SnapshotObject,
} from "../operator/mod.ts";
import type { ClusterView } from "./cluster_view.ts";

/** The clock of every test: ages are computed against it. */
export const NOW = "2026-03-01T12:00:00Z";
/** When the operator wrote its statuses (10m before NOW). */
export const RECONCILED_AT = "2026-03-01T11:50:00Z";

const G = "gateway.networking.k8s.io";

function ns(name: string, labels: Record<string, string> = {}) {
  return { apiVersion: "v1", kind: "Namespace" as const, metadata: { name, labels } };
}

function gateway(
  namespace: string,
  name: string,
  className: string,
  listeners: Gateway["spec"]["listeners"],
  created: string,
): Gateway {
  return {
    apiVersion: `${G}/v1`,
    kind: "Gateway",
    metadata: { namespace, name, generation: 1, uid: `uid-${name}`, creationTimestamp: created },
    spec: { gatewayClassName: className, listeners },
  };
}

function route(
  kind: "TCPRoute" | "UDPRoute",
  namespace: string,
  name: string,
  parentRefs: NonNullable<L4Route["spec"]["parentRefs"]>,
  backendRefs: { name: string; port: number; weight?: number }[],
  created: string,
): L4Route {
  return {
    apiVersion: `${G}/v1`,
    kind,
    metadata: { namespace, name, generation: 1, creationTimestamp: created },
    spec: { parentRefs, rules: [{ backendRefs }] },
  };
}

function service(namespace: string, name: string, port: number, protocol = "TCP") {
  return {
    apiVersion: "v1",
    kind: "Service" as const,
    metadata: { namespace, name },
    spec: { ports: [{ port, protocol, name: "main" }] },
  };
}

function slice(
  namespace: string,
  svc: string,
  port: number,
  protocol: string,
  endpoints: { ip: string; node: string; ready: boolean; serving: boolean; terminating: boolean }[],
) {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice" as const,
    metadata: { namespace, name: `${svc}-x1`, labels: { "kubernetes.io/service-name": svc } },
    addressType: "IPv4",
    ports: [{ name: "main", port, protocol }],
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      nodeName: e.node,
      conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating },
    })),
  };
}

const ready = { ready: true, serving: true, terminating: false };

function node(name: string): V1Node & { kind: "Node" } {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name },
    status: { conditions: [{ type: "Ready", status: "True" }] },
  } as V1Node & { kind: "Node" };
}

const dataplaneNodes: DataplaneNode[] = [{
  apiVersion: "blixt.dev/v1alpha1",
  kind: "DataplaneNode",
  metadata: { name: "node-1" },
  spec: { nodeName: "node-1", uplink: "eth0" },
  status: {
    conditions: [{
      type: "Ready",
      status: "True",
      reason: "Programmed",
      message: "2 tables programmed",
      lastTransitionTime: "2026-03-01T09:30:00Z",
    }, {
      type: "Degraded",
      status: "False",
      reason: "NoProblems",
      message: "no problems",
      lastTransitionTime: "2026-03-01T09:30:00Z",
    }],
    lastSyncTime: "2026-03-01T11:55:00Z",
    maps: [
      { name: "backends", entries: 4, capacity: 65536 },
      { name: "conntrack", entries: 1200, capacity: 262144 },
      { name: "maglev", entries: 3, capacity: 4096 },
      { name: "services", entries: 3, capacity: 8192 },
    ],
    tables: [
      {
        namespace: "apps",
        name: "edge",
        observedGeneration: 1,
        programmedGeneration: 1,
        entries: 1,
        backends: 1,
      },
      {
        namespace: "default",
        name: "gw",
        observedGeneration: 1,
        programmedGeneration: 1,
        entries: 2,
        backends: 4,
      },
    ],
    // as current agents write them (compact); node-2's as older agents did (objects)
    counters: {
      collectedAt: "2026-03-01T11:59:50Z",
      services: [],
      frontends: [{
        service: "198.18.200.1 5000 TCP 1200 96000 40 10",
        backends: [
          "198.18.33.2 8080 700 56000 16",
          "198.18.34.2 8080 450 36000 14",
          "198.18.34.3 8080 50 4000 0",
        ],
      }, {
        service: "198.18.200.1 53 UDP 9 540 0 9",
        backends: [],
      }, {
        service: "198.18.200.2 7000 TCP 300 24000 6 0",
        backends: ["198.18.33.7 7000 300 24000 6"],
      }],
    },
  },
}, {
  apiVersion: "blixt.dev/v1alpha1",
  kind: "DataplaneNode",
  metadata: { name: "node-2" },
  spec: { nodeName: "node-2", uplink: "eth0" },
  status: {
    conditions: [{
      type: "Ready",
      status: "False",
      reason: "Syncing",
      message: "1 of 2 tables programmed; default/gw: see Degraded",
      lastTransitionTime: "2026-03-01T11:57:00Z",
    }, {
      type: "Degraded",
      status: "True",
      reason: "CapacityExceeded",
      message: "table default/gw does not fit: backends map is full (65536 of 65536)",
      lastTransitionTime: "2026-03-01T11:57:00Z",
    }],
    lastSyncTime: "2026-03-01T08:48:00Z",
    maps: [
      { name: "backends", entries: 65536, capacity: 65536 },
      { name: "services", entries: 1, capacity: 8192 },
    ],
    tables: [
      {
        namespace: "apps",
        name: "edge",
        observedGeneration: 1,
        programmedGeneration: 1,
        entries: 1,
        backends: 1,
      },
      {
        namespace: "default",
        name: "gw",
        observedGeneration: 1,
        entries: 0,
        backends: 0,
        errors: ["backends map is full (65536 of 65536)"],
      },
    ],
    counters: {
      collectedAt: "2026-03-01T11:59:40Z",
      services: [{
        address: "198.18.200.2",
        port: 7000,
        protocol: "TCP",
        packets: 100,
        bytes: 8000,
        newFlows: 2,
        rejectedFlows: 0,
        backends: [{ ip: "198.18.33.7", port: 7000, packets: 100, bytes: 8000, newFlows: 2 }],
      }],
    },
  },
}];

/** The objects of the scenario, by kind, with the statuses the operator and agents write. */
export interface Scenario {
  /** Namespaces to create (besides default). */
  namespaces: (V1Namespace & { kind: "Namespace" })[];
  /** GatewayClasses, with status. */
  gatewayClasses: GatewayClass[];
  /** GatewayClassConfigs. */
  gatewayClassConfigs: SnapshotObject[];
  /** Gateways, with status. */
  gateways: Gateway[];
  /** Routes, with status. */
  routes: L4Route[];
  /** RoutingTables as the operator writes them (generation 1). */
  routingTables: RoutingTable[];
  /** DataplaneNodes, with status. */
  dataplaneNodes: DataplaneNode[];
  /** Nodes (the local cluster registers these itself). */
  nodes: (V1Node & { kind: "Node" })[];
  /** Nodes whose agent runs (holds its liveness Lease). */
  agentNodes: string[];
}

/** The liveness Lease of `node`'s agent, renewed at `renewTime`, held for an hour. */
export function agentLeaseObject(node: string, renewTime: string): SnapshotObject {
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: {
      name: `blixt-agent-${node}`,
      namespace: "blixt-system",
      labels: { "app.kubernetes.io/part-of": "blixt", "app.kubernetes.io/component": "agent" },
    },
    spec: { holderIdentity: `agent-${node}`, leaseDurationSeconds: 3600, renewTime },
  };
}

/** Builds the scenario, running the operator's reconcile for the statuses and tables. */
export function scenario(): Scenario {
  const classes: GatewayClass[] = [{
    apiVersion: `${G}/v1`,
    kind: "GatewayClass",
    metadata: { name: "blixt", generation: 1 },
    spec: {
      controllerName: "blixt.dev/gateway-controller",
      parametersRef: { group: "blixt.dev", kind: "GatewayClassConfig", name: "blixt-config" },
    },
  }, {
    apiVersion: `${G}/v1`,
    kind: "GatewayClass",
    metadata: { name: "other", generation: 1 },
    spec: { controllerName: "example.com/other-controller" },
  }];
  const config = {
    apiVersion: "blixt.dev/v1alpha1" as const,
    kind: "GatewayClassConfig" as const,
    metadata: { name: "blixt-config" },
    spec: { addressPools: [{ name: "vips", cidr: "198.18.200.0/28" }] },
  };
  const namespaces = [ns("default"), ns("apps", { team: "apps" })];
  const gateways = [
    gateway("default", "gw", "blixt", [
      { name: "tcp", port: 5000, protocol: "TCP" },
      { name: "dns", port: 53, protocol: "UDP" },
      { name: "http", port: 80, protocol: "HTTP" },
    ], "2026-03-01T09:00:00Z"),
    gateway("apps", "edge", "blixt", [{
      name: "api",
      port: 7000,
      protocol: "TCP",
      allowedRoutes: {
        namespaces: { from: "Selector", selector: { matchLabels: { team: "apps" } } },
      },
    }], "2026-03-01T09:05:00Z"),
    gateway(
      "default",
      "foreign",
      "other",
      [{ name: "tcp", port: 6000, protocol: "TCP" }],
      "2026-03-01T09:10:00Z",
    ),
  ];
  const routes = [
    route("TCPRoute", "default", "web", [{ name: "gw", sectionName: "tcp" }], [
      { name: "web", port: 80, weight: 3 },
      { name: "missing", port: 80, weight: 1 },
    ], "2026-03-01T10:00:00Z"),
    route(
      "TCPRoute",
      "default",
      "web-canary",
      [{ name: "gw" }],
      [{ name: "web", port: 80 }],
      "2026-03-01T10:30:00Z",
    ),
    route("UDPRoute", "default", "dns", [{ name: "gw", sectionName: "dns" }], [{
      name: "dns",
      port: 53,
    }], "2026-03-01T10:00:00Z"),
    route(
      "TCPRoute",
      "apps",
      "blocked",
      [{ name: "gw", namespace: "default", sectionName: "tcp" }],
      [{
        name: "api",
        port: 7000,
      }],
      "2026-03-01T10:00:00Z",
    ),
    route(
      "TCPRoute",
      "apps",
      "api",
      [{ name: "edge" }],
      [{ name: "api", port: 7000 }],
      "2026-03-01T10:00:00Z",
    ),
    route(
      "TCPRoute",
      "default",
      "elsewhere",
      [{ name: "foreign" }],
      [{ name: "web", port: 80 }],
      "2026-03-01T10:00:00Z",
    ),
    route(
      "TCPRoute",
      "default",
      "lost",
      [{ name: "missing" }],
      [{ name: "web", port: 80 }],
      "2026-03-01T10:00:00Z",
    ),
  ];
  const backendsOnly: SnapshotObject[] = [
    service("default", "web", 80),
    slice("default", "web", 8080, "TCP", [
      { ip: "198.18.33.2", node: "node-1", ...ready },
      { ip: "198.18.34.2", node: "node-2", ...ready },
      { ip: "198.18.34.3", node: "node-2", ready: false, serving: true, terminating: true },
    ]),
    service("default", "dns", 53, "UDP"),
    slice("default", "dns", 5353, "UDP", [
      { ip: "198.18.33.5", node: "node-1", ready: false, serving: false, terminating: true },
    ]),
    service("apps", "api", 7000),
    slice("apps", "api", 7000, "TCP", [{ ip: "198.18.33.7", node: "node-1", ...ready }]),
  ];
  const nodes = [node("node-1"), node("node-2")];

  const snapshot = createSnapshot(
    [
      ...classes,
      config,
      ...namespaces,
      ...gateways,
      ...routes,
      ...backendsOnly,
      ...nodes,
      ...dataplaneNodes,
      ...nodes.map((n) => agentLeaseObject(n.metadata?.name ?? "", RECONCILED_AT)),
    ] as SnapshotObject[],
    { crdBundleVersions: { "gateways.gateway.networking.k8s.io": "v1.6.3" } },
  );
  const gc = reconcileGatewayClass("blixt", snapshot, { now: RECONCILED_AT });
  if (gc !== null) putObject(snapshot, { ...classes[0] as GatewayClass, status: gc });
  const tables: RoutingTable[] = [];
  // twice: the first pass writes the table, the second sees it and the nodes (Programmed)
  for (let pass = 0; pass < 2; pass++) {
    for (const key of ["default/gw", "apps/edge"]) {
      const result = reconcile(key, snapshot, { now: RECONCILED_AT });
      const gw = snapshot.gateways.get(key) as Gateway;
      putObject(snapshot, { ...gw, status: result.status } as Gateway);
      for (const u of result.routeStatuses) {
        const r = snapshot.routes.get(`${u.kind}/${u.namespace}/${u.name}`) as L4Route;
        putObject(snapshot, { ...r, status: { parents: u.parents } });
      }
      if (result.table.action === "apply") {
        const table = structuredClone(result.table.table);
        table.metadata.generation = 1;
        putObject(snapshot, table);
        if (pass === 1) tables.push(table);
      }
    }
  }
  return {
    namespaces: namespaces.filter((n) => n.metadata.name !== "default"),
    gatewayClasses: [...snapshot.gatewayClasses.values()],
    gatewayClassConfigs: [config],
    gateways: gateways.map((g) =>
      snapshot.gateways.get(`${g.metadata?.namespace}/${g.metadata?.name}`) as Gateway
    ),
    routes: routes.map((r) =>
      snapshot.routes.get(`${r.kind}/${r.metadata.namespace}/${r.metadata.name}`) as L4Route
    ),
    routingTables: tables,
    dataplaneNodes: structuredClone(dataplaneNodes),
    nodes,
    agentNodes: nodes.map((n) => n.metadata?.name ?? ""),
  };
}

/** The scenario as a view, as the fetch layer would return it. */
export function scenarioView(): ClusterView {
  const s = scenario();
  return {
    gateways: s.gateways,
    gatewayClasses: s.gatewayClasses,
    routes: s.routes,
    routingTables: s.routingTables,
    dataplaneNodes: s.dataplaneNodes,
    nodes: s.nodes,
    namespaces: [...s.namespaces, ns("default")],
  };
}
