import assert from "node:assert/strict";
import { NOW, scenarioView } from "./_fixtures.ts";
import type { ClusterView } from "./cluster_view.ts";
import { buildStatus, type GatewayReport, statusTables } from "./status.ts";
import { renderTable } from "./table.ts";

function gateway(view: ClusterView, key: string): GatewayReport {
  const g = buildStatus(view).gateways.find((x) => `${x.namespace}/${x.name}` === key);
  assert.ok(g, `gateway ${key} in the report`);
  return g;
}

Deno.test("status: each backend with its weight, its share of new flows and its state", () => {
  const gw = gateway(scenarioView(), "default/gw");
  const tcp = gw.listeners.find((l) => l.name === "tcp");
  assert.deepEqual(tcp?.route, { kind: "TCPRoute", namespace: "default", name: "web" });
  const f = tcp?.frontends[0];
  assert.equal(f?.address, "198.18.200.1");
  assert.deepEqual(
    f?.backends.map((b) => [`${b.ip}:${b.port}`, b.weight, b.share, b.state, b.node]),
    [
      ["198.18.33.2:8080", 375000, 0.375, "Ready", "node-1"],
      ["198.18.34.2:8080", 375000, 0.375, "Ready", "node-2"],
      ["198.18.34.3:8080", 0, 0, "Serving", "node-2"],
    ],
  );
  // the missing Service's weight (1 of 4) is rejected, as the spec asks
  assert.equal(f?.rejectWeight, 250000);
  assert.equal(f?.rejectShare, 0.25);
});

Deno.test("status: a frontend with no ready backend rejects everything", () => {
  const dns = gateway(scenarioView(), "default/gw").listeners.find((l) => l.name === "dns");
  assert.equal(dns?.frontends[0]?.rejectShare, 1);
  assert.deepEqual(dns?.frontends[0]?.backends.map((b) => b.state), ["Terminating"]);
});

Deno.test("status: counters are summed over the nodes that report them", () => {
  const edge = gateway(scenarioView(), "apps/edge");
  const f = edge.listeners[0]?.frontends[0];
  assert.deepEqual(f?.counters, {
    packets: 400,
    bytes: 32000,
    newFlows: 8,
    rejectedFlows: 0,
    nodes: 2,
    collectedAt: "2026-03-01T11:59:40Z",
  });
  assert.deepEqual(f?.backends[0]?.counters, { packets: 400, bytes: 32000, newFlows: 8 });
});

Deno.test("status: a route attached to a listener another route carries is listed as shadowed", () => {
  const tcp = gateway(scenarioView(), "default/gw").listeners.find((l) => l.name === "tcp");
  assert.deepEqual(tcp?.shadowedRoutes, [{
    kind: "TCPRoute",
    namespace: "default",
    name: "web-canary",
  }]);
  assert.equal(tcp?.attachedRoutes, 2);
});

Deno.test("status: node by node, which generation is programmed and whether it is current", () => {
  const gw = gateway(scenarioView(), "default/gw");
  assert.deepEqual(gw.table, { generation: 1 });
  assert.deepEqual(
    gw.nodes.map((n) => [n.node, n.agentReady, n.programmedGeneration, n.inSync, n.errors]),
    [
      ["node-1", "True", 1, true, []],
      ["node-2", "False", null, false, ["backends map is full (65536 of 65536)"]],
    ],
  );
});

Deno.test("status: problems are the conditions that are not well, on the Gateway, listeners and routes", () => {
  const gw = gateway(scenarioView(), "default/gw");
  assert.deepEqual(
    gw.problems.map((p) => `${p.kind}/${p.namespace}/${p.name} ${p.type}=${p.status}/${p.reason}`),
    [
      "Gateway/default/gw Programmed=False/Pending",
      "Listener/default/tcp Programmed=False/Pending",
      "Listener/default/dns Programmed=False/Pending",
      "Listener/default/http Programmed=False/Pending",
      "TCPRoute/apps/blocked Accepted=False/NotAllowedByListeners",
      "TCPRoute/default/web ResolvedRefs=False/BackendNotFound",
    ],
  );
  // Conflicted=False and Accepted=True are fine: not listed
  assert.ok(!gw.problems.some((p) => p.type === "Conflicted"));
  assert.deepEqual(gateway(scenarioView(), "apps/edge").problems, []);
});

Deno.test("status: a Gateway without a RoutingTable shows its listeners with nothing programmed", () => {
  const view = scenarioView();
  view.routingTables = view.routingTables.filter((t) => t.metadata.name !== "gw");
  const gw = gateway(view, "default/gw");
  assert.equal(gw.table, null);
  assert.deepEqual(gw.nodes, []);
  assert.deepEqual(gw.listeners.map((l) => [l.name, l.route, l.frontends.length]), [
    ["tcp", null, 0],
    ["dns", null, 0],
    ["http", null, 0],
  ]);
});

Deno.test("status: tables print one row per backend and per rejected share, kubectl style", () => {
  const view = scenarioView();
  view.gateways = view.gateways.filter((g) => g.metadata?.name === "edge");
  const text = statusTables(buildStatus(view), {
    wide: false,
    allNamespaces: false,
    now: new Date(NOW),
  }).map((t) => renderTable(t, { noHeaders: false, color: false })).join("\n");
  assert.equal(
    text,
    `GATEWAY   ADDRESS        PORT       LISTENER   ROUTE          BACKEND            WEIGHT    SHARE   STATE   PACKETS   BYTES   FLOWS
edge      198.18.200.2   7000/TCP   api        tcproute/api   198.18.33.7:7000   1000000   100%    Ready   400       32000   8

GATEWAY   NODE     AGENT      GENERATION   PROGRAMMED   SYNCED
edge      node-1   Ready      1            1            True
edge      node-2   NotReady   1            1            True
`,
  );
});

Deno.test("status: -A adds a NAMESPACE column first; wide adds node, service and shadowed routes", () => {
  const tables = statusTables(buildStatus(scenarioView()), {
    wide: true,
    allNamespaces: true,
    now: new Date(NOW),
  });
  assert.deepEqual(tables[0]?.headers.slice(0, 2), ["NAMESPACE", "GATEWAY"]);
  assert.deepEqual(tables[0]?.headers.slice(-3), ["NODE", "SERVICE", "SHADOWED"]);
  assert.deepEqual(tables[1]?.headers.slice(-3), ["NODE READY", "OBSERVED", "ERRORS"]);
  assert.deepEqual(tables[2]?.headers.slice(-3), ["REASON", "AGE", "MESSAGE"]);
});

Deno.test("status, nodes and explain take sparse objects (no status anywhere) without throwing", async () => {
  const { buildNodes } = await import("./nodes.ts");
  const { explainRoute } = await import("./explain.ts");
  const view = scenarioView();
  for (const g of view.gateways) delete g.status;
  for (const r of view.routes) delete r.status;
  for (const d of view.dataplaneNodes) delete d.status;
  view.nodes = undefined;
  view.gatewayClasses = undefined;
  const report = buildStatus(view);
  assert.equal(report.gateways.length, 3);
  const gw = report.gateways.find((g) => g.name === "gw");
  assert.deepEqual(gw?.nodes.map((n) => [n.node, n.agentReady, n.inSync]), [
    ["node-1", "Unknown", false], // an agent that has not reported yet
    ["node-2", "Unknown", false],
  ]);
  statusTables(report, { wide: true, allNamespaces: true, now: new Date(NOW) });
  assert.equal(buildNodes(view).nodes.length, 2);
  for (const r of view.routes) explainRoute(r, view);
});
