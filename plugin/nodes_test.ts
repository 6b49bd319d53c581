import assert from "node:assert/strict";
import { NOW, scenarioView } from "./_fixtures.ts";
import { buildNodes, nodesTables } from "./nodes.ts";
import { renderTable } from "./table.ts";

Deno.test("nodes: agent readiness, tables programmed at their current generation, maps, last sync", () => {
  const report = buildNodes(scenarioView());
  assert.deepEqual(
    report.nodes.map((n) => [
      n.name,
      n.ready,
      n.degraded,
      `${n.tables.programmed}/${n.tables.total}`,
      n.lastSyncTime,
    ]),
    [
      ["node-1", "True", false, "2/2", "2026-03-01T11:55:00Z"],
      ["node-2", "False", true, "1/2", "2026-03-01T08:48:00Z"],
    ],
  );
  const n2 = report.nodes[1];
  assert.deepEqual(n2?.maps[0], { name: "backends", entries: 65536, capacity: 65536, usage: 1 });
  assert.deepEqual(n2?.tables.items.find((t) => t.name === "gw"), {
    namespace: "default",
    name: "gw",
    generation: 1,
    programmedGeneration: null,
    inSync: false,
    errors: ["backends map is full (65536 of 65536)"],
  });
  assert.deepEqual(n2?.problems.map((p) => `${p.type}=${p.status}/${p.reason}`), [
    "Ready=False/Syncing",
    "Degraded=True/CapacityExceeded",
  ]);
});

Deno.test("nodes: a node without a DataplaneNode has no agent; one without maps reads <unknown>", () => {
  const view = scenarioView();
  view.dataplaneNodes = view.dataplaneNodes.filter((d) => d.metadata.name !== "node-2");
  const dpn = view.dataplaneNodes[0];
  if (dpn?.status) delete dpn.status.maps;
  const report = buildNodes(view);
  assert.equal(report.nodes[1]?.agent, false);
  assert.equal(report.nodes[1]?.ready, null);
  const text = renderTable(nodesTables(report, { wide: false, now: new Date(NOW) })[0]!, {
    noHeaders: false,
    color: false,
  });
  assert.equal(
    text,
    `NODE     AGENT    TABLES   MAPS        LAST SYNC
node-1   Ready    2/2      <unknown>   5m
node-2   <none>   0/2      <unknown>   <unknown>
`,
  );
});

Deno.test("nodes: a table the agent still reports after its deletion is listed, not in sync", () => {
  const view = scenarioView();
  view.routingTables = view.routingTables.filter((t) => t.metadata.name !== "edge");
  const n1 = buildNodes(view).nodes[0];
  assert.equal(n1?.tables.total, 1);
  assert.deepEqual(n1?.tables.items.map((t) => [t.name, t.generation, t.inSync]), [
    ["gw", 1, true],
    ["edge", null, false],
  ]);
});

Deno.test("nodes: an agent that stopped holding its liveness Lease reads NotRunning, with why", () => {
  const view = scenarioView();
  const now = Date.parse(NOW);
  view.nowMs = now;
  view.agentLeases = [
    { node: "node-1", holder: "agent-node-1", durationMs: 40_000, observedAtMs: now - 5_000 },
    { node: "node-2", holder: "agent-node-2", durationMs: 40_000, observedAtMs: now - 52_000 },
  ];
  const report = buildNodes(view);
  assert.deepEqual(
    report.nodes.map((n) => [n.name, n.agentRunning, n.agentNotRunningReason]),
    [["node-1", true, null], ["node-2", false, "agent Lease expired 12s ago"]],
  );
  const [main, problems] = nodesTables(report, { wide: false, now: new Date(NOW) });
  const text = renderTable(main!, { noHeaders: false, color: false });
  assert.match(text, /node-2 +NotRunning +1\/2/);
  assert.match(
    renderTable(problems!, { noHeaders: false, color: false }),
    /node-2 +AgentRunning +False +AgentNotRunning +<none> +agent Lease expired 12s ago/,
  );
});
