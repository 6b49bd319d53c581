// 1,000 random (schema-valid) Gateways with random routes, Services,
// EndpointSlices, grants and nodes go through reconcile: it never throws,
// every managed Gateway, listener and route parentRef gets a status, and
// every RoutingTable it asks for passes the contract's validator.
import assert from "node:assert/strict";
import { formatFieldErrors, validateRoutingTable } from "../api/mod.ts";
import { reconcile } from "./gateway.ts";
import { reconcileGatewayClass } from "./gateway_class.ts";
import { createSnapshot, type SnapshotObject } from "./snapshot.ts";
import {
  BUNDLE,
  classConfig,
  dataplaneNode,
  endpointSlice,
  gateway,
  gatewayClass,
  listener,
  namespace,
  node,
  NOW,
  prng,
  referenceGrant,
  route,
  service,
} from "./_test_objects.ts";

const GATEWAYS = 1000;
const PER_WORLD = 4;

Deno.test(`reconcile survives ${GATEWAYS} random Gateways and gives every object a status`, () => {
  const random = prng(20260201);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const chance = (p: number) => random() < p;
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const namespaces = ["default", "team", "other"];
  const ports = [53, 80, 5000, 5001, 65535];
  let reconciled = 0;

  for (let world = 0; world < GATEWAYS / PER_WORLD; world++) {
    const objects: SnapshotObject[] = [];
    const validParams = chance(0.85);
    objects.push(gatewayClass("blixt", {
      parametersRef: {
        group: "blixt.dev",
        kind: "GatewayClassConfig",
        name: "blixt-config",
      },
    }));
    objects.push(
      classConfig(
        validParams ? [pick(["198.18.0.0/30", "198.18.0.0/29", "2001:db8::/126"])] : ["not-a-cidr"],
      ),
    );
    for (const ns of namespaces) {
      objects.push(namespace(ns, chance(0.5) ? { team: "yes" } : {}));
    }
    const gwKeys: string[] = [];
    for (let g = 0; g < PER_WORLD; g++) {
      const listeners = Array.from(
        { length: int(1, 5) },
        (_, i) =>
          listener(
            `l${i}`,
            pick(ports),
            pick(["TCP", "TCP", "UDP", "UDP", "HTTP", "TLS", "example.com/x"]),
            chance(0.5)
              ? {
                ...(chance(0.5)
                  ? {
                    kinds: [{
                      kind: pick(["TCPRoute", "UDPRoute", "HTTPRoute"]),
                    }],
                  }
                  : {}),
                namespaces: pick([
                  { from: "Same" },
                  { from: "All" },
                  {
                    from: "Selector",
                    selector: { matchLabels: { team: "yes" } },
                  },
                  {
                    from: "Selector",
                    selector: {
                      matchExpressions: [{
                        key: "team",
                        operator: pick([
                          "In",
                          "NotIn",
                          "Exists",
                          "DoesNotExist",
                          "Bogus",
                        ]),
                        values: ["yes"],
                      }],
                    },
                  },
                ]) as never,
              }
              : undefined,
          ),
      );
      const addresses = chance(0.6) ? undefined : Array.from({ length: int(1, 3) }, () =>
        pick([
          {
            type: "IPAddress",
            value: pick(["198.18.0.1", "198.18.7.7", "2001:db8::1"]),
          },
          { type: "IPAddress" },
          { type: "Hostname", value: "lb.example.com" },
        ]));
      const name = `gw${g}`;
      const ns = pick(namespaces);
      objects.push(gateway(name, listeners, {
        namespace: ns,
        created: `2026-01-0${int(1, 9)}T00:00:00Z`,
        ...(addresses === undefined ? {} : { addresses }),
        ...(chance(0.3)
          ? {
            status: {
              addresses: [{
                value: pick(["198.18.0.1", "198.18.0.2", "2001:db8::2"]),
              }],
            },
          }
          : {}),
      }));
      gwKeys.push(`${ns}/${name}`);
    }
    for (let s = 0; s < int(0, 4); s++) {
      const ns = pick(namespaces);
      const svcPorts = [{
        port: pick(ports),
        name: pick(["", "p"]),
        protocol: pick(["TCP", "UDP"]),
      }];
      objects.push(service(`svc${s}`, svcPorts, ns));
      if (chance(0.8)) {
        objects.push(
          endpointSlice(
            `svc${s}`,
            svcPorts.map((p) => ({ ...p, port: int(1, 65535) })),
            Array.from({ length: int(0, 4) }, (_, i) => ({
              ip: pick([`198.19.0.${i + 1}`, `2001:db8:1::${i + 1}`]),
              node: pick(["n1", "n2"]),
              ready: chance(0.7),
              serving: chance(0.5),
              terminating: chance(0.3),
            })),
            { namespace: ns, addressType: pick(["IPv4", "IPv6", "FQDN"]) },
          ),
        );
      }
    }
    for (let r = 0; r < int(0, 8); r++) {
      const parentRefs = Array.from({ length: int(1, 2) }, () => ({
        name: `gw${int(0, PER_WORLD - 1)}`,
        ...(chance(0.5) ? { namespace: pick(namespaces) } : {}),
        ...(chance(0.3) ? { sectionName: `l${int(0, 5)}` } : {}),
        ...(chance(0.3) ? { port: pick(ports) } : {}),
      }));
      const backendRefs = Array.from({ length: int(1, 4) }, () => ({
        name: `svc${int(0, 4)}`,
        port: pick(ports),
        weight: pick([0, 1, 3, 1_000_000]),
        ...(chance(0.3) ? { namespace: pick(namespaces) } : {}),
        ...(chance(0.1) ? { group: "example.com", kind: "Bucket" } : {}),
      }));
      objects.push(
        route(
          pick(["TCPRoute", "UDPRoute"]),
          `r${r}`,
          parentRefs,
          backendRefs,
          {
            namespace: pick(namespaces),
            created: `2026-01-0${int(1, 9)}T00:00:00Z`,
            rules: chance(0.9) ? 1 : 2,
          },
        ),
      );
    }
    if (chance(0.5)) {
      objects.push(
        referenceGrant(
          pick(namespaces),
          pick(["TCPRoute", "UDPRoute"]),
          pick(namespaces),
        ),
      );
    }
    objects.push(node("n1", chance(0.8)), node("n2"));
    if (chance(0.5)) {
      objects.push(
        dataplaneNode(
          "n1",
          gwKeys.map((k) => ({
            namespace: k.split("/")[0] as string,
            name: k.split("/")[1] as string,
            programmedGeneration: 1,
          })),
        ),
      );
    }

    const snapshot = createSnapshot(objects, { crdBundleVersions: BUNDLE });
    assert.ok(reconcileGatewayClass("blixt", snapshot, { now: NOW }));
    for (const key of gwKeys) {
      const result = reconcile(key, snapshot, { now: NOW });
      reconciled++;
      const gw = snapshot.gateways.get(key);
      assert.ok(gw && result.managed && result.status, key);
      const types = result.status.conditions.map((c) => c.type);
      assert.ok(
        types.includes("Accepted") && types.includes("Programmed"),
        key,
      );
      assert.equal(result.status.listeners.length, gw.spec.listeners.length);
      for (const l of result.status.listeners) {
        assert.deepEqual(l.conditions.map((c) => c.type).sort(), [
          "Accepted",
          "Conflicted",
          "Programmed",
          "ResolvedRefs",
        ]);
      }
      if (result.table.action === "apply") {
        const checked = validateRoutingTable(result.table.table);
        assert.ok(
          checked.ok,
          checked.ok ? "" : `${key}: ${formatFieldErrors(checked.errors)}`,
        );
      }
      // every parentRef to this Gateway has a blixt entry with both conditions
      const [gns, gname] = key.split("/");
      for (const r of snapshot.routes.values()) {
        const refs = (r.spec.parentRefs ?? []).filter((p) =>
          p.name === gname && (p.namespace ?? r.metadata.namespace) === gns
        );
        if (refs.length === 0) continue;
        const update = result.routeStatuses.find((u) =>
          u.kind === r.kind && u.namespace === r.metadata.namespace &&
          u.name === r.metadata.name
        );
        const ours = update?.parents.filter((p) =>
          p.controllerName === "blixt.dev/gateway-controller" &&
          p.parentRef.name === gname
        ) ?? [];
        assert.equal(
          ours.length,
          refs.length,
          `${r.metadata.namespace}/${r.metadata.name} -> ${key}`,
        );
        for (const p of ours) {
          assert.deepEqual(
            p.conditions.map((c) =>
              c.type
            ),
            ["Accepted", "ResolvedRefs"],
          );
        }
      }
    }
  }
  assert.equal(reconciled, GATEWAYS);
});
