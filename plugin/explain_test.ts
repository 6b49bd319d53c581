import assert from "node:assert/strict";
import { scenarioView } from "./_fixtures.ts";
import type { ClusterView } from "./cluster_view.ts";
import { explainRoute, REASONS, type RouteExplanation } from "./explain.ts";

function explain(view: ClusterView, key: string): RouteExplanation {
  const route = view.routes.find((r) =>
    `${r.kind}/${r.metadata.namespace}/${r.metadata.name}` === key
  );
  assert.ok(route, key);
  return explainRoute(route, view);
}

function reasons(e: RouteExplanation): string[] {
  return e.checks.map((c) => `${c.level} ${c.reason}${c.listener ? ` ${c.listener}` : ""}`);
}

Deno.test("explain: a carrying route with an unresolved backendRef names its rejected share", () => {
  const e = explain(scenarioView(), "TCPRoute/default/web");
  assert.equal(e.carryingTraffic, true);
  assert.equal(e.summary, "carrying traffic (25% of new flows rejected)");
  assert.deepEqual(reasons(e), [
    "ok Accepted",
    "warning RefsNotResolved",
    "ok Carrying tcp",
    "warning RejectedShare tcp",
    "warning PartlyProgrammed",
  ]);
  assert.match(e.checks[1]?.message ?? "", /backendRef default\/missing: Service not found/);
  assert.match(e.checks[4]?.message ?? "", /node-2 \(programmed none; backends map is full/);
});

Deno.test("explain: a newer route on the same listener is shadowed by the older one", () => {
  const e = explain(scenarioView(), "TCPRoute/default/web-canary");
  assert.equal(e.carryingTraffic, false);
  assert.deepEqual(reasons(e), ["ok Accepted", "error Shadowed tcp", "warning PartlyProgrammed"]);
  assert.match(e.checks[1]?.message ?? "", /listener tcp carries tcproute\/web, which precedes/);
});

Deno.test("explain: a route whose backends are all gone rejects every new flow", () => {
  const e = explain(scenarioView(), "UDPRoute/default/dns");
  assert.equal(e.carryingTraffic, false);
  assert.equal(e.summary, "not carrying traffic: NoReadyBackends");
  assert.match(e.checks[1]?.message ?? "", /ICMP port unreachable/);
});

Deno.test("explain: not attached, with the operator's reason", () => {
  const e = explain(scenarioView(), "TCPRoute/apps/blocked");
  assert.deepEqual(reasons(e), ["error NotAccepted"]);
  assert.match(e.checks[0]?.message ?? "", /NotAllowedByListeners: listener tcp does not allow/);
});

Deno.test("explain: a Gateway of another controller, a Gateway that does not exist, no parents", () => {
  const view = scenarioView();
  assert.deepEqual(reasons(explain(view, "TCPRoute/default/elsewhere")), ["error NotManaged"]);
  assert.deepEqual(reasons(explain(view, "TCPRoute/default/lost")), ["error GatewayNotFound"]);
  const orphan = structuredClone(view.routes[0]!);
  orphan.spec.parentRefs = [];
  assert.deepEqual(reasons(explainRoute(orphan, view)), ["error NoParents"]);
  const odd = structuredClone(view.routes[0]!);
  odd.spec.parentRefs = [{ group: "example.com", kind: "Mesh", name: "m" }];
  assert.deepEqual(reasons(explainRoute(odd, view)), ["error UnsupportedParent"]);
});

Deno.test("explain: without blixt's status, the operator's own rules say what would happen", () => {
  const view = scenarioView();
  for (const r of view.routes) delete r.status;
  assert.deepEqual(reasons(explain(view, "TCPRoute/default/web")), [
    "warning NoStatus",
    "ok Carrying tcp",
    "warning RejectedShare tcp",
    "warning PartlyProgrammed",
  ]);
  assert.deepEqual(reasons(explain(view, "TCPRoute/apps/blocked")), [
    "warning NoStatus",
    "error NotAccepted",
  ]);
});

Deno.test("explain: status older than the route's generation is flagged", () => {
  const view = scenarioView();
  const web = view.routes.find((r) => r.metadata.name === "web")!;
  web.metadata.generation = 2;
  assert.ok(reasons(explain(view, "TCPRoute/default/web")).includes("warning StaleStatus"));
});

Deno.test("explain: no RoutingTable, or a table on no node, means no traffic", () => {
  let view = scenarioView();
  view.routingTables = view.routingTables.filter((t) => t.metadata.name !== "edge");
  let e = explain(view, "TCPRoute/apps/api");
  assert.deepEqual(reasons(e), ["ok Accepted", "error NoRoutingTable"]);
  assert.equal(e.carryingTraffic, false);

  view = scenarioView();
  for (const d of view.dataplaneNodes) {
    for (const t of d.status?.tables ?? []) delete t.programmedGeneration;
  }
  e = explain(view, "TCPRoute/apps/api");
  assert.deepEqual(reasons(e), ["ok Accepted", "ok Carrying api", "error NotProgrammed"]);
  assert.equal(e.carryingTraffic, false);
});

Deno.test("explain: every reason a check gives is in the documented catalogue", () => {
  const view = scenarioView();
  const all = new Set([...REASONS.ok, ...REASONS.warning, ...REASONS.error] as string[]);
  for (const r of view.routes) {
    for (const c of explainRoute(r, view).checks) {
      assert.ok(all.has(c.reason), c.reason);
      assert.ok(
        (REASONS[c.level] as readonly string[]).includes(c.reason),
        `${c.level} ${c.reason}`,
      );
    }
  }
});
