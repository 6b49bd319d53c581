/**
 * The operator under a storm of random input on a real API server: 1,000
 * random Gateways and routes (valid and invalid references, conflicting
 * listeners, unsupported protocols and addresses, random weights) go in as
 * fast as the API server takes them. What the API server refuses is counted,
 * not a failure. The operator must stay up (no unhandled rejection, still
 * leading) and every accepted Gateway of a blixt class, and every route that
 * names one, gets a status from blixt at its current generation.
 *
 * `BLIXT_FUZZ_OBJECTS` (default 1000) sets how many Gateways and routes.
 */

import assert from "node:assert/strict";
import { apiStatus, applyObject, type KubeObject } from "../kube/client.ts";
import { type Cond, converge, TEST_MANAGER, withOperatorCluster } from "./_cluster_testing.ts";
import { prng } from "./_test_objects.ts";

const OBJECTS = Number(Deno.env.get("BLIXT_FUZZ_OBJECTS") ?? 1000);
const NAMESPACES = ["fz-0", "fz-1", "fz-2", "fz-3"];
const CONTROLLER = "blixt.dev/gateway-controller";

/** The fixed world: classes (ours, another controller's), namespaces, Services, slices, grants. */
function world(pool: string, random: () => number): KubeObject[] {
  const out: KubeObject[] = [
    {
      apiVersion: "blixt.dev/v1alpha1",
      kind: "GatewayClassConfig",
      metadata: { name: "fuzz-config" },
      spec: { addressPools: [{ name: "local", cidr: pool }] },
    },
    {
      apiVersion: "gateway.networking.k8s.io/v1",
      kind: "GatewayClass",
      metadata: { name: "blixt" },
      spec: {
        controllerName: CONTROLLER,
        parametersRef: { group: "blixt.dev", kind: "GatewayClassConfig", name: "fuzz-config" },
      },
    },
    {
      apiVersion: "gateway.networking.k8s.io/v1",
      kind: "GatewayClass",
      metadata: { name: "other" },
      spec: { controllerName: "example.com/other-controller" },
    },
  ];
  for (const ns of NAMESPACES) {
    out.push({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: ns, labels: random() < 0.5 ? { team: "blue" } : {} },
    });
    for (let i = 0; i < 3; i++) {
      out.push({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: `svc-${i}`, namespace: ns },
        spec: {
          ports: [
            { name: "tcp", port: 80, targetPort: 8080, protocol: "TCP" },
            { name: "udp", port: 53, targetPort: "dns", protocol: "UDP" },
          ],
        },
      });
      out.push({
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: {
          name: `svc-${i}-a`,
          namespace: ns,
          labels: { "kubernetes.io/service-name": `svc-${i}` },
        },
        addressType: "IPv4",
        ports: [{ name: "tcp", port: 8080, protocol: "TCP" }, {
          name: "udp",
          port: 5353,
          protocol: "UDP",
        }],
        endpoints: Array.from({ length: 1 + Math.floor(random() * 3) }, (_, k) => ({
          addresses: [`198.18.${NAMESPACES.indexOf(ns) + 1}.${10 * i + k + 2}`],
          nodeName: "node-1",
          conditions: {
            ready: random() < 0.8,
            serving: random() < 0.9,
            terminating: random() < 0.2,
          },
        })),
      });
    }
  }
  out.push({
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "ReferenceGrant",
    metadata: { name: "from-fz-0", namespace: "fz-1" },
    spec: {
      from: [{ group: "gateway.networking.k8s.io", kind: "TCPRoute", namespace: "fz-0" }],
      to: [{ group: "", kind: "Service" }],
    },
  });
  return out;
}

/** One random Gateway or route; about 4 in 10 are Gateways. */
function randomObject(
  i: number,
  gatewayKeys: string[],
  options: { gateways: number; random: () => number },
): KubeObject {
  const { gateways, random } = options;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const chance = (p: number) => random() < p;
  const ns = pick(NAMESPACES);
  if (i < gateways) {
    const listeners = Array.from({ length: 1 + Math.floor(random() * 4) }, (_, k) => {
      const protocol = pick(["TCP", "TCP", "UDP", "UDP", "HTTP", "TLS", "example.com/x"]);
      return {
        name: `l${k}`,
        port: pick([53, 80, 5000, 5001]),
        protocol,
        ...(protocol === "TLS" ? { tls: { mode: "Passthrough" } } : {}),
        ...(chance(0.4)
          ? {
            allowedRoutes: {
              ...(chance(0.5) ? { kinds: [{ kind: pick(["TCPRoute", "UDPRoute", "Foo"]) }] } : {}),
              namespaces: chance(0.5)
                ? { from: pick(["All", "Same"]) }
                : { from: "Selector", selector: { matchLabels: { team: "blue" } } },
            },
          }
          : {}),
      };
    });
    const addresses = pick([
      undefined,
      undefined,
      [{ type: "IPAddress" }],
      [{ type: "IPAddress", value: `198.19.250.${1 + Math.floor(random() * 20)}` }],
      [{ type: "Hostname", value: "gw.example.com" }],
      [{ type: "example.com/custom", value: "x" }],
    ]);
    return {
      apiVersion: "gateway.networking.k8s.io/v1",
      kind: "Gateway",
      metadata: { name: `gw-${i}`, namespace: ns },
      spec: {
        gatewayClassName: pick(["blixt", "blixt", "blixt", "other", "missing"]),
        listeners,
        ...(addresses ? { addresses } : {}),
      },
    };
  }
  const kind = pick(["TCPRoute", "UDPRoute"]);
  const parentRefs = Array.from({ length: 1 + Math.floor(random() * 2) }, (_, k) => ({
    // mostly a Gateway that exists (in its namespace), sometimes one that does not
    ...(chance(0.8) && gatewayKeys.length > 0
      ? (([gns, name]) => ({ name, ...(gns === ns && chance(0.5) ? {} : { namespace: gns }) }))(
        pick(gatewayKeys).split("/"),
      )
      : { name: `gw-missing-${Math.floor(random() * 10)}` }),
    ...(k > 0 || chance(0.5) ? { sectionName: `l${Math.floor(random() * 5)}` } : {}),
    ...(chance(0.3) ? { port: pick([53, 80, 5000]) } : {}),
  }));
  const backendRefs = Array.from({ length: Math.floor(random() * 4) }, () => {
    const service = chance(0.85);
    return {
      name: chance(0.8) ? `svc-${Math.floor(random() * 3)}` : "missing",
      ...(service ? { port: pick([80, 53, 81]) } : { group: "", kind: "ConfigMap" }),
      ...(chance(0.2) ? { namespace: pick(NAMESPACES) } : {}),
      ...(chance(0.5) ? { weight: Math.floor(random() * 11) } : {}),
    };
  });
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind,
    metadata: { name: `r-${i}`, namespace: ns },
    spec: { parentRefs, rules: [{ backendRefs }] },
  };
}

interface Listed {
  metadata: { name: string; namespace: string; generation: number };
  // deno-lint-ignore no-explicit-any
  spec: any;
  // deno-lint-ignore no-explicit-any
  status?: any;
}

Deno.test(`fuzz: ${OBJECTS} random Gateways and routes on a real API server`, async () => {
  const rejections: unknown[] = [];
  const errors: string[] = [];
  const onRejection = (e: PromiseRejectionEvent) => {
    rejections.push(e.reason);
    e.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  try {
    await withOperatorCluster("op2-test-fuzz", async (oc) => {
      const random = prng(20261126);
      for (const obj of world(oc.cluster.plan.gatewayPool, random)) {
        await applyObject(oc.kc, obj, { fieldManager: TEST_MANAGER, force: true });
      }
      const gateways = Math.round(OBJECTS * 0.4);
      const keys: string[] = [];
      const objects = Array.from({ length: OBJECTS }, (_, i) => {
        const obj = randomObject(i, keys, { gateways, random });
        if (obj.kind === "Gateway") keys.push(`${obj.metadata?.namespace}/${obj.metadata?.name}`);
        return obj;
      });
      let refused = 0;
      const started = performance.now();
      // eight writers at once, like a busy CI pipeline
      let next = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (next < objects.length) {
          const obj = objects[next++]!;
          try {
            await applyObject(oc.kc, obj, { fieldManager: TEST_MANAGER, force: true });
          } catch (err) {
            const status = apiStatus(err);
            if (status !== 422 && status !== 400) throw err;
            refused++;
          }
        }
      }));
      const applied = performance.now() - started;

      const ours = (g: Listed) => g.spec.gatewayClassName === "blixt";
      const summary = await converge(async () => {
        const gws = (await oc.get(["gateways", "-A"])).items as Listed[];
        const byKey = new Map(gws.map((g) => [`${g.metadata.namespace}/${g.metadata.name}`, g]));
        for (const g of gws) {
          const accepted = (g.status?.conditions as Cond[] | undefined)?.find((c) =>
            c.type === "Accepted"
          );
          if (!ours(g)) {
            // another controller's (or nobody's) Gateway: blixt writes nothing
            assert.ok(accepted === undefined || accepted.reason === "Pending", g.metadata.name);
            continue;
          }
          assert.equal(accepted?.observedGeneration, g.metadata.generation, g.metadata.name);
          assert.equal(g.status.listeners?.length, g.spec.listeners.length, g.metadata.name);
        }
        let routes = 0, parents = 0;
        for (const kind of ["tcproutes", "udproutes"]) {
          for (const r of (await oc.get([kind, "-A"])).items as Listed[]) {
            routes++;
            const wanted = new Set<string>();
            for (const ref of r.spec.parentRefs as { name: string; namespace?: string }[]) {
              const g = byKey.get(`${ref.namespace ?? r.metadata.namespace}/${ref.name}`);
              if (g && ours(g)) wanted.add(JSON.stringify(ref));
            }
            const mine = ((r.status?.parents ?? []) as {
              controllerName: string;
              conditions: Cond[];
            }[]).filter((p) => p.controllerName === CONTROLLER);
            assert.equal(mine.length, wanted.size, `${r.metadata.namespace}/${r.metadata.name}`);
            for (const p of mine) {
              assert.equal(
                p.conditions.find((c) => c.type === "Accepted")?.observedGeneration,
                r.metadata.generation,
              );
            }
            parents += mine.length;
          }
        }
        return { gateways: gws.length, routes, parents };
      }, { timeoutMs: 180_000 });
      const converged = performance.now() - started;
      assert.ok(oc.operator.leading, "still leading");
      assert.deepEqual(rejections, []);
      console.log(
        `fuzz: ${OBJECTS} objects, ${refused} refused by the API server; ${summary.gateways} ` +
          `Gateways, ${summary.routes} routes, ${summary.parents} blixt parent entries; applied ` +
          `in ${(applied / 1000).toFixed(1)} s, converged in ${(converged / 1000).toFixed(1)} s; ` +
          `${oc.operator.stats.reconciles} reconciles, ${oc.operator.stats.conflicts} conflicts, ` +
          `${oc.operator.stats.errors} errors`,
      );
      if (errors.length > 0) console.log(errors.slice(0, 5).join("\n"));
    }, {
      workers: 4,
      log: (e) => {
        if (e.level !== "info") errors.push(`${e.msg} ${JSON.stringify(e)}`);
      },
    });
  } finally {
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
});
