import assert from "node:assert/strict";
import { route } from "./_test_objects.ts";
import {
  emptySnapshot,
  type L4Route,
  putObject,
  removeObject,
  routesOfBackend,
  routesOfParent,
} from "./snapshot.ts";

const names = (routes: L4Route[]) => routes.map((r) => r.metadata.name);

Deno.test("the route index follows a route's parents and backends as it changes, and forgets it once removed", () => {
  const s = emptySnapshot();
  const a = route("TCPRoute", "a", [{ name: "gw-1" }], [{ name: "svc-a", port: 80 }]);
  putObject(s, a);
  putObject(s, route("UDPRoute", "b", [{ name: "gw-1" }], [{ name: "svc-a", port: 80 }]));
  putObject(
    s,
    route("TCPRoute", "c", [{ name: "gw-1", namespace: "other" }], [{
      name: "svc-c",
      namespace: "other",
      port: 80,
    }], { namespace: "apps" }),
  );
  assert.deepEqual(names(routesOfParent(s, "default/gw-1")), ["a", "b"]);
  assert.deepEqual(names(routesOfParent(s, "other/gw-1")), ["c"], "a parentRef's namespace");
  assert.deepEqual(names(routesOfBackend(s, "default/svc-a")), ["a", "b"]);
  assert.deepEqual(names(routesOfBackend(s, "other/svc-c")), ["c"], "a backendRef's namespace");

  // a moves to gw-2 and svc-b, but keeps a status entry of gw-1 (to be cleaned up there)
  putObject(s, {
    ...route("TCPRoute", "a", [{ name: "gw-2" }], [{ name: "svc-b", port: 80 }]),
    status: {
      parents: [{
        parentRef: { name: "gw-1" },
        controllerName: "blixt.dev/gateway-controller",
        conditions: [],
      }],
    },
  });
  assert.deepEqual(names(routesOfParent(s, "default/gw-1")), ["a", "b"], "the status entry");
  assert.deepEqual(names(routesOfParent(s, "default/gw-2")), ["a"]);
  assert.deepEqual(names(routesOfBackend(s, "default/svc-a")), ["b"]);
  assert.deepEqual(names(routesOfBackend(s, "default/svc-b")), ["a"]);
  assert.deepEqual(
    names(routesOfParent(s, "default/gw-1")),
    [...s.routes.values()].filter((r) => r.metadata.name !== "c").map((r) => r.metadata.name),
    "results keep the snapshot's order of routes",
  );

  removeObject(s, a);
  assert.deepEqual(names(routesOfParent(s, "default/gw-1")), ["b"]);
  assert.deepEqual(routesOfParent(s, "default/gw-2"), []);
  assert.deepEqual(routesOfBackend(s, "default/svc-b"), []);
  assert.equal(s.routeIndex.byParent.has("default/gw-2"), false, "no empty sets are left behind");
  assert.equal(s.routeIndex.order.has("TCPRoute/default/a"), false);
});
