import assert from "node:assert/strict";
import { k8s } from "../kube/client.ts";
import { chooseRouteVersion, ReadError, readError } from "./fetch_view.ts";

Deno.test("routes are read at v1, or v1alpha2 where the cluster does not serve v1", () => {
  const both = new Map([["v1", ["gateways", "tcproutes", "udproutes"]], ["v1alpha2", [
    "tcproutes",
    "udproutes",
  ]]]);
  assert.equal(chooseRouteVersion("tcproutes", both), "v1");
  const old = new Map([["v1", ["gateways", "httproutes"]], ["v1alpha2", ["tcproutes"]]]);
  assert.equal(chooseRouteVersion("tcproutes", old), "v1alpha2");
  assert.equal(chooseRouteVersion("udproutes", old), undefined);
  assert.equal(chooseRouteVersion("tcproutes", new Map()), undefined);
});

Deno.test("API errors become kubectl-like messages with exit code 1", () => {
  const forbidden = new k8s.ApiException(
    403,
    "Forbidden",
    JSON.stringify({
      kind: "Status",
      message: 'gateways.gateway.networking.k8s.io is forbidden: User "u" cannot list',
    }),
    {},
  );
  const e = readError(forbidden, "gateways");
  assert.ok(e instanceof ReadError);
  assert.equal(e.exitCode, 1);
  assert.equal(
    e.message,
    'Error from server (Forbidden): gateways.gateway.networking.k8s.io is forbidden: User "u" cannot list',
  );
  const down = readError(
    new Error(
      "request to https://127.0.0.1:1/api/v1/nodes failed, reason: connect ECONNREFUSED 127.0.0.1:1",
    ),
    "nodes",
  );
  assert.equal(
    down.message,
    "error: cannot reach the API server at https://127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1",
  );
  assert.equal(readError(new Error("boom"), "nodes").message, "error: reading nodes: boom");
  assert.equal(
    readError(new k8s.ApiException(401, "Unauthorized", undefined, {}), "nodes").message,
    "Error from server (Unauthorized): reading nodes",
  );
});
