/**
 * Gateway API v1.6 semantics, as a user reads them with kubectl: YAML goes to
 * a real API server (experimental channel), the Operator runs in-process, and
 * each case polls the conditions until they converge. The cases carry the
 * intent of the upstream conformance tests for GatewayClass, Gateway,
 * TCPRoute and UDPRoute that need no traffic; the traffic itself is the
 * RoutingTable each case reads back.
 *
 * One cluster for the whole file; each case works in its own namespace(s) and
 * deletes what it made.
 */

import assert from "node:assert/strict";
import {
  assertConditions,
  blixtClassYaml,
  blixtParents,
  type Cond,
  converge,
  listenerOf,
  type OperatorCluster,
  withOperatorCluster,
} from "./_cluster_testing.ts";
import { SUPPORTED_FEATURES } from "./gateway_class.ts";
import { expandRoutingTable, type RoutingTable } from "../api/routing_table.ts";
import { TEST_CERT, TEST_KEY } from "./_test_objects.ts";

const CLUSTER = "op2-test-sem";
const GROUP = "gateway.networking.k8s.io";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The blixt class every case uses, with the cluster's Gateway pool. */
function baseClass(pool: string): string {
  return `
${blixtClassYaml(pool)}`;
}

function namespace(name: string, labels: Record<string, string> = {}): string {
  return `
apiVersion: v1
kind: Namespace
metadata: { name: ${name}, labels: ${JSON.stringify(labels)} }
---
`;
}

/** An EndpointSlice of Service `service` with the given endpoints (ip or ip:conditions). */
function slice(
  ns: string,
  service: string,
  options: {
    name?: string;
    ports: { name?: string; port: number; protocol?: string }[];
    endpoints: { ip: string; ready?: boolean; serving?: boolean; terminating?: boolean }[];
  },
): string {
  return `
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${options.name ?? `${service}-1`}
  namespace: ${ns}
  labels: { kubernetes.io/service-name: ${service} }
addressType: IPv4
ports: ${JSON.stringify(options.ports.map((p) => ({ protocol: "TCP", name: "", ...p })))}
endpoints: ${
    JSON.stringify(options.endpoints.map((e) => ({
      addresses: [e.ip],
      nodeName: "node-1",
      conditions: {
        ready: e.ready ?? true,
        serving: e.serving ?? e.ready ?? true,
        terminating: e.terminating ?? false,
      },
    })))
  }
---
`;
}

interface TableEntry {
  port: number;
  protocol: string;
  listener: string;
  route?: { kind: string; namespace: string; name: string };
  backends: { ip: string; port: number; weight: number; state: string }[];
  rejectWeight: number;
}

function entryOf(
  // deno-lint-ignore no-explicit-any
  table: any,
  listener: string,
): TableEntry {
  // an entry may take its backends from another (backendsFrom): read them as agents do
  const entries = table.spec?.entries === undefined
    ? undefined
    : expandRoutingTable(table as RoutingTable).spec.entries as unknown as TableEntry[];
  const e = entries?.find((x) => x.listener === listener);
  assert.ok(e, `no table entry for listener ${listener}`);
  return e;
}

async function events(oc: OperatorCluster, ns: string, gateway: string): Promise<string[]> {
  const list = await oc.get([
    "events",
    "-n",
    ns,
    "--field-selector",
    `involvedObject.kind=Gateway,involvedObject.name=${gateway}`,
  ]);
  return (list.items as { type: string; reason: string }[]).map((e) => `${e.type}/${e.reason}`);
}

Deno.test("Gateway API semantics against the API server", async (t) => {
  await withOperatorCluster(CLUSTER, async (oc) => {
    const pool = oc.cluster.plan.gatewayPool;
    await oc.apply(baseClass(pool));

    await t.step("GatewayClass: Accepted, SupportedVersion, supportedFeatures", async () => {
      const gc = await converge(async () => {
        const gc = await oc.get(["gatewayclass", "blixt"]);
        assertConditions(gc.status?.conditions, {
          Accepted: "True/Accepted",
          SupportedVersion: "True/SupportedVersion",
        }, { generation: gc.metadata.generation });
        return gc;
      });
      assert.deepEqual(
        (gc.status.supportedFeatures as { name: string }[]).map((f) => f.name),
        [...SUPPORTED_FEATURES],
      );
      // gatewayclass-observed-generation-bump: a spec change moves observedGeneration
      await oc.cluster.kubectl([
        "patch",
        "gatewayclass",
        "blixt",
        "--type=merge",
        "-p",
        '{"spec":{"description":"blixt, layer 4"}}',
      ]);
      await converge(async () => {
        const gc = await oc.get(["gatewayclass", "blixt"]);
        assert.equal(gc.metadata.generation, 2);
        assertConditions(gc.status.conditions, { Accepted: "True", SupportedVersion: "True" }, {
          generation: 2,
        });
      });
    });

    await t.step(
      "GatewayClass: InvalidParameters for a wrong or missing parametersRef",
      async () => {
        const yaml = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: op2-missing-config }
spec:
  controllerName: blixt.dev/gateway-controller
  parametersRef: { group: blixt.dev, kind: GatewayClassConfig, name: op2-later }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: op2-wrong-kind }
spec:
  controllerName: blixt.dev/gateway-controller
  parametersRef: { group: "", kind: ConfigMap, name: settings, namespace: default }
---
${namespace("c-params")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-params }
spec:
  gatewayClassName: op2-missing-config
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
`;
        await oc.apply(yaml);
        await converge(async () => {
          for (const name of ["op2-missing-config", "op2-wrong-kind"]) {
            const gc = await oc.get(["gatewayclass", name]);
            assertConditions(gc.status?.conditions, { Accepted: "False/InvalidParameters" }, {
              generation: 1,
              what: name,
            });
          }
          const gw = await oc.get(["gateway", "-n", "c-params", "gw"]);
          assertConditions(gw.status?.conditions, {
            Accepted: "False/InvalidParameters",
            Programmed: "False/Invalid",
          }, { generation: 1 });
        });
        // the config appears: class and Gateway are accepted
        const config = `
apiVersion: blixt.dev/v1alpha1
kind: GatewayClassConfig
metadata: { name: op2-later }
spec:
  addressPools: [{ name: later, cidr: 198.19.252.0/24 }]
`;
        await oc.apply(config);
        await converge(async () => {
          const gc = await oc.get(["gatewayclass", "op2-missing-config"]);
          assertConditions(gc.status.conditions, { Accepted: "True/Accepted" });
          const gw = await oc.get(["gateway", "-n", "c-params", "gw"]);
          assertConditions(gw.status.conditions, { Accepted: "True/Accepted" });
          assert.equal(gw.status.addresses?.[0]?.value, "198.19.252.1");
        });
        await oc.remove(yaml + "---\n" + config);
      },
    );

    await t.step(
      "Gateway: infrastructure.parametersRef blixt does not know is InvalidParameters",
      async () => {
        const yaml = `${namespace("c-infra")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-infra }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
  infrastructure:
    parametersRef: { group: invalid.io, kind: InvalidParameters, name: invalid }
`;
        await oc.apply(yaml);
        await converge(async () => {
          const gw = await oc.get(["gateway", "-n", "c-infra", "gw"]);
          assertConditions(gw.status?.conditions, { Accepted: "False/InvalidParameters" }, {
            generation: 1,
          });
        });
        await oc.remove(yaml);
      },
    );

    await t.step(
      "GatewayClass: gateway-exists finalizer while a Gateway uses the class",
      async () => {
        const cls = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: op2-fin }
spec:
  controllerName: blixt.dev/gateway-controller
  parametersRef: { group: blixt.dev, kind: GatewayClassConfig, name: blixt-config }
`;
        const gw = `${namespace("c-fin")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-fin }
spec:
  gatewayClassName: op2-fin
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
`;
        const FIN = "gateway-exists-finalizer.gateway.networking.k8s.io";
        await oc.apply(cls);
        await converge(async () => {
          const gc = await oc.get(["gatewayclass", "op2-fin"]);
          assertConditions(gc.status?.conditions, { Accepted: "True" });
          assert.ok(!(gc.metadata.finalizers ?? []).includes(FIN), "no Gateway, no finalizer");
        });
        await oc.apply(gw);
        await converge(async () => {
          const gc = await oc.get(["gatewayclass", "op2-fin"]);
          assert.ok((gc.metadata.finalizers ?? []).includes(FIN), "finalizer while in use");
        });
        await oc.remove(gw);
        await converge(async () => {
          const gc = await oc.get(["gatewayclass", "op2-fin"]);
          assert.ok(
            !(gc.metadata.finalizers ?? []).includes(FIN),
            "finalizer gone with the Gateway",
          );
        });
        await oc.remove(cls);
      },
    );

    await t.step(
      "listeners: TCP and UDP routed (also on one port), HTTP/HTTPS accepted unrouted with their certificateRefs checked, TLS UnsupportedProtocol",
      async () => {
        const yaml = `${namespace("c-proto")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: mixed, namespace: c-proto }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 5000, protocol: TCP }
  - { name: udp, port: 5000, protocol: UDP }
  - { name: http, port: 80, protocol: HTTP }
  - name: https
    port: 443
    protocol: HTTPS
    tls: { mode: Terminate, certificateRefs: [{ name: cert }] }
  - name: https-missing
    port: 444
    protocol: HTTPS
    tls: { mode: Terminate, certificateRefs: [{ name: missing }] }
  - { name: tls, port: 8443, protocol: TLS, tls: { mode: Passthrough } }
---
apiVersion: v1
kind: Secret
metadata: { name: cert, namespace: c-proto }
type: kubernetes.io/tls
data:
  tls.crt: ${btoa(TEST_CERT)}
  tls.key: ${btoa(TEST_KEY)}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: tls-only, namespace: c-proto }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tls, port: 8443, protocol: TLS, tls: { mode: Passthrough } }]
`;
        await oc.apply(yaml);
        await converge(async () => {
          const gw = await oc.get(["gateway", "-n", "c-proto", "mixed"]);
          const generation = gw.metadata.generation;
          assertConditions(gw.status?.conditions, { Accepted: "True/ListenersNotValid" }, {
            generation,
          });
          for (const [name, kind] of [["tcp", "TCPRoute"], ["udp", "UDPRoute"]]) {
            const l = listenerOf(gw, name!);
            assertConditions(l.conditions, {
              Accepted: "True/Accepted",
              Conflicted: "False/NoConflicts",
              ResolvedRefs: "True/ResolvedRefs",
            }, { generation, what: name });
            assert.deepEqual(l.supportedKinds, [{ group: GROUP, kind }]);
            assert.equal(l.attachedRoutes, 0);
          }
          for (const name of ["http", "https"]) {
            const l = listenerOf(gw, name);
            assertConditions(l.conditions, {
              Accepted: "True/Accepted",
              ResolvedRefs: "True/ResolvedRefs",
            }, { generation, what: name });
            assert.deepEqual(l.supportedKinds, [{ group: GROUP, kind: "HTTPRoute" }]);
          }
          assertConditions(listenerOf(gw, "https-missing").conditions, {
            Accepted: "True/Accepted",
            ResolvedRefs: "False/InvalidCertificateRef",
            Programmed: "False/Invalid",
          }, { generation, what: "https-missing" });
          const tls = listenerOf(gw, "tls");
          assertConditions(tls.conditions, {
            Accepted: "False/UnsupportedProtocol",
            Programmed: "False/Invalid",
          }, { generation, what: "tls" });
          assert.deepEqual(tls.supportedKinds, []);
          const table = await oc.get(["routingtable", "-n", "c-proto", "mixed"]);
          assert.deepEqual(
            (table.spec.entries as TableEntry[]).map((e) =>
              `${e.listener}:${e.port}/${e.protocol}`
            ),
            ["tcp:5000/TCP", "udp:5000/UDP"],
          );
          const only = await oc.get(["gateway", "-n", "c-proto", "tls-only"]);
          assertConditions(only.status?.conditions, {
            Accepted: "False/ListenersNotValid",
            Programmed: "False/Invalid",
          }, { generation: 1 });
        });
        await oc.remove(yaml);
      },
    );

    await t.step(
      "listeners: two TCP listeners on one port are refused by the API server (the CRD's CEL rule)",
      async () => {
        const yaml = `${namespace("c-twice")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-twice }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: a, port: 6000, protocol: TCP }
  - { name: b, port: 6000, protocol: TCP }
`;
        await assert.rejects(
          () => oc.apply(yaml),
          /Combination of port, protocol and hostname must be unique/,
        );
        await oc.remove(namespace("c-twice"));
      },
    );

    await t.step(
      "listeners: TCP and HTTP on one port are Conflicted/ProtocolConflict, neither wins",
      async () => {
        // The CRD's CEL rules refuse two listeners of one protocol on one port (above); one TCP
        // transport under two protocols passes them and is the operator's to refuse.
        const yaml = `${namespace("c-conflict")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-conflict }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: a, port: 6000, protocol: TCP }
  - { name: b, port: 6000, protocol: HTTP }
  - { name: c, port: 6001, protocol: TCP }
`;
        await oc.apply(yaml);
        await converge(async () => {
          const gw = await oc.get(["gateway", "-n", "c-conflict", "gw"]);
          assertConditions(gw.status?.conditions, { Accepted: "True/ListenersNotValid" }, {
            generation: 1,
          });
          for (const name of ["a", "b"]) {
            assertConditions(listenerOf(gw, name).conditions, {
              Conflicted: "True/ProtocolConflict",
              Accepted: "False/PortUnavailable",
              Programmed: "False/Invalid",
            }, { generation: 1, what: name });
          }
          assertConditions(listenerOf(gw, "c").conditions, {
            Conflicted: "False/NoConflicts",
            Accepted: "True/Accepted",
          });
          const table = await oc.get(["routingtable", "-n", "c-conflict", "gw"]);
          assert.deepEqual((table.spec.entries as TableEntry[]).map((e) => e.listener), ["c"]);
          assert.ok((await events(oc, "c-conflict", "gw")).includes("Warning/ListenerConflict"));
        });
        await oc.remove(yaml);
      },
    );

    await t.step(
      "listeners: allowedRoutes.kinds checked (InvalidRouteKinds), supportedKinds, routes still counted",
      async () => {
        const yaml = `${namespace("c-kinds")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-kinds }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: wrong, port: 7000, protocol: TCP, allowedRoutes: { kinds: [{ kind: UDPRoute }] } }
  - name: mixed
    port: 7001
    protocol: TCP
    allowedRoutes: { kinds: [{ kind: TCPRoute }, { group: example.com, kind: Foo }] }
  - { name: right, port: 7002, protocol: TCP, allowedRoutes: { kinds: [{ kind: TCPRoute }] } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: to-wrong, namespace: c-kinds }
spec:
  parentRefs: [{ name: gw, sectionName: wrong }]
  rules: [{ backendRefs: [{ name: svc, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: to-mixed, namespace: c-kinds }
spec:
  parentRefs: [{ name: gw, sectionName: mixed }]
  rules: [{ backendRefs: [{ name: svc, port: 80 }] }]
`;
        await oc.apply(yaml);
        await converge(async () => {
          const gw = await oc.get(["gateway", "-n", "c-kinds", "gw"]);
          const wrong = listenerOf(gw, "wrong");
          assertConditions(wrong.conditions, { ResolvedRefs: "False/InvalidRouteKinds" }, {
            generation: 1,
          });
          assert.deepEqual(wrong.supportedKinds, []);
          assert.equal(wrong.attachedRoutes, 0);
          const mixed = listenerOf(gw, "mixed");
          assertConditions(mixed.conditions, { ResolvedRefs: "False/InvalidRouteKinds" });
          assert.deepEqual(mixed.supportedKinds, [{ group: GROUP, kind: "TCPRoute" }]);
          assert.equal(mixed.attachedRoutes, 1, "attachedRoutes even with unresolved refs");
          const right = listenerOf(gw, "right");
          assertConditions(right.conditions, { Accepted: "True", ResolvedRefs: "True" });
          const toWrong = await oc.get(["tcproute", "-n", "c-kinds", "to-wrong"]);
          assertConditions(blixtParents(toWrong)[0]?.conditions, {
            Accepted: "False/NotAllowedByListeners",
          }, { generation: 1 });
          const toMixed = await oc.get(["tcproute", "-n", "c-kinds", "to-mixed"]);
          assertConditions(blixtParents(toMixed)[0]?.conditions, { Accepted: "True/Accepted" });
        });
        await oc.remove(yaml);
      },
    );

    await t.step(
      "routes: parentRefs by sectionName, port, both, neither; NoMatchingParent",
      async () => {
        const route = (kind: string, name: string, ref: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: ${kind}
metadata: { name: ${name}, namespace: c-attach }
spec:
  parentRefs: [{ name: gw${ref} }]
  rules: [{ backendRefs: [{ name: svc, port: 80 }] }]
---`;
        const yaml = `${namespace("c-attach")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-attach }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: one, port: 8001, protocol: TCP }
  - { name: two, port: 8002, protocol: TCP }
  - { name: three, port: 8003, protocol: TCP }
  - { name: dns, port: 8053, protocol: UDP }
---
${route("TCPRoute", "by-port", ", port: 8001")}
${route("TCPRoute", "by-section", ", sectionName: two")}
${route("TCPRoute", "by-both", ", sectionName: three, port: 8003")}
${route("TCPRoute", "to-all", "")}
${route("TCPRoute", "mismatch", ", sectionName: one, port: 8002")}
${route("TCPRoute", "no-such-section", ", sectionName: nope")}
${route("UDPRoute", "udp-all", "")}
`;
        await oc.apply(yaml);
        await converge(async () => {
          const gw = await oc.get(["gateway", "-n", "c-attach", "gw"]);
          assert.deepEqual(
            (gw.status?.listeners as { name: string; attachedRoutes: number }[]).map((l) =>
              `${l.name}=${l.attachedRoutes}`
            ),
            ["one=2", "two=2", "three=2", "dns=1"],
          );
          for (const name of ["by-port", "by-section", "by-both", "to-all"]) {
            const r = await oc.get(["tcproute", "-n", "c-attach", name]);
            const [p, ...rest] = blixtParents(r);
            assert.equal(rest.length, 0);
            // what the conformance suite compares: group, kind, name of the parent
            assert.equal(p?.parentRef.group, GROUP);
            assert.equal(p?.parentRef.kind, "Gateway");
            assert.equal(p?.parentRef.name, "gw");
            assertConditions(p?.conditions, {
              Accepted: "True/Accepted",
              ResolvedRefs: "False/BackendNotFound",
            }, { generation: 1, what: name });
          }
          for (const name of ["mismatch", "no-such-section"]) {
            const r = await oc.get(["tcproute", "-n", "c-attach", name]);
            assertConditions(blixtParents(r)[0]?.conditions, {
              Accepted: "False/NoMatchingParent",
            }, { what: name });
          }
          const udp = await oc.get(["udproute", "-n", "c-attach", "udp-all"]);
          assertConditions(blixtParents(udp)[0]?.conditions, { Accepted: "True/Accepted" });
        });
        await oc.remove(yaml);
      },
    );

    await t.step(
      "routes: allowedRoutes.namespaces Same, All, Selector (None is refused by v1.6)",
      async () => {
        const route = (ns: string, section: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: to-${section}, namespace: ${ns} }
spec:
  parentRefs: [{ name: gw, namespace: c-ns-a, sectionName: ${section} }]
  rules: [{ backendRefs: [{ name: svc, port: 80 }] }]
---`;
        const yaml = `${namespace("c-ns-a")}${namespace("c-ns-b", { "op2/team": "blue" })}${
          namespace("c-ns-c")
        }
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-ns-a }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: same, port: 9001, protocol: TCP, allowedRoutes: { namespaces: { from: Same } } }
  - { name: all, port: 9002, protocol: TCP, allowedRoutes: { namespaces: { from: All } } }
  - name: selector
    port: 9003
    protocol: TCP
    allowedRoutes:
      namespaces: { from: Selector, selector: { matchLabels: { op2/team: blue } } }
---
${route("c-ns-a", "same")}
${route("c-ns-b", "same")}
${route("c-ns-b", "all")}
${route("c-ns-c", "all")}
${route("c-ns-b", "selector")}
${route("c-ns-c", "selector")}
`;
        await oc.apply(yaml);
        const expected: [string, string, string][] = [
          ["c-ns-a", "same", "True/Accepted"],
          ["c-ns-b", "same", "False/NotAllowedByListeners"],
          ["c-ns-b", "all", "True/Accepted"],
          ["c-ns-c", "all", "True/Accepted"],
          ["c-ns-b", "selector", "True/Accepted"],
          ["c-ns-c", "selector", "False/NotAllowedByListeners"],
        ];
        await converge(async () => {
          for (const [ns, section, want] of expected) {
            const r = await oc.get(["tcproute", "-n", ns, `to-${section}`]);
            assertConditions(blixtParents(r)[0]?.conditions, { Accepted: want }, {
              what: `${ns}/to-${section}`,
            });
          }
          const gw = await oc.get(["gateway", "-n", "c-ns-a", "gw"]);
          assert.deepEqual(
            (gw.status.listeners as { name: string; attachedRoutes: number }[]).map((l) =>
              `${l.name}=${l.attachedRoutes}`
            ),
            ["same=1", "all=2", "selector=1"],
          );
        });
        // the label arrives: the Selector listener now takes c-ns-c's route
        await oc.cluster.kubectl(["label", "namespace", "c-ns-c", "op2/team=blue"]);
        await converge(async () => {
          const r = await oc.get(["tcproute", "-n", "c-ns-c", "to-selector"]);
          assertConditions(blixtParents(r)[0]?.conditions, { Accepted: "True/Accepted" });
          const gw = await oc.get(["gateway", "-n", "c-ns-a", "gw"]);
          assert.equal(listenerOf(gw, "selector").attachedRoutes, 2);
        });
        // v1.6 dropped From=None from the schema: the API server refuses it outright
        await assert.rejects(
          oc.apply(`
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: none, namespace: c-ns-a }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: none, port: 9004, protocol: TCP, allowedRoutes: { namespaces: { from: None } } }
`),
          /Unsupported value/,
        );
        await oc.remove(yaml);
      },
    );

    await t.step(
      "routes: v1alpha2 routes are reconciled; more than one rule is UnsupportedValue",
      async () => {
        const yaml = `${namespace("c-alpha")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-alpha }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: tcp, port: 80, protocol: TCP }
  - { name: udp, port: 53, protocol: UDP }
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: { name: one-rule, namespace: c-alpha }
spec:
  parentRefs: [{ name: gw, sectionName: tcp }]
  rules: [{ backendRefs: [{ name: svc, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: { name: two-rules, namespace: c-alpha }
spec:
  parentRefs: [{ name: gw, sectionName: udp }]
  rules:
  - { backendRefs: [{ name: svc, port: 53 }] }
  - { backendRefs: [{ name: other, port: 53 }] }
`;
        await oc.apply(yaml);
        await converge(async () => {
          const one = await oc.get([
            "tcproutes.v1alpha2.gateway.networking.k8s.io",
            "-n",
            "c-alpha",
            "one-rule",
          ]);
          assertConditions(blixtParents(one)[0]?.conditions, { Accepted: "True/Accepted" });
          const two = await oc.get([
            "udproutes.v1alpha2.gateway.networking.k8s.io",
            "-n",
            "c-alpha",
            "two-rules",
          ]);
          assertConditions(blixtParents(two)[0]?.conditions, {
            Accepted: "False/UnsupportedValue",
          });
          const gw = await oc.get(["gateway", "-n", "c-alpha", "gw"]);
          assert.equal(listenerOf(gw, "tcp").attachedRoutes, 1);
          assert.equal(listenerOf(gw, "udp").attachedRoutes, 0);
        });
        await oc.remove(yaml);
      },
    );

    await t.step(
      "backends: ResolvedRefs BackendNotFound, InvalidKind, RefNotPermitted until a ReferenceGrant",
      async () => {
        const yaml = `${namespace("c-refs")}${namespace("c-refs-other")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-refs }
spec:
  gatewayClassName: blixt
  listeners:
  - { name: notfound, port: 1001, protocol: TCP }
  - { name: kind, port: 1002, protocol: TCP }
  - { name: xns, port: 1003, protocol: TCP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: notfound, namespace: c-refs }
spec:
  parentRefs: [{ name: gw, sectionName: notfound }]
  rules: [{ backendRefs: [{ name: missing, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: kind, namespace: c-refs }
spec:
  parentRefs: [{ name: gw, sectionName: kind }]
  rules: [{ backendRefs: [{ group: "", kind: ConfigMap, name: settings }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: xns, namespace: c-refs }
spec:
  parentRefs: [{ name: gw, sectionName: xns }]
  rules: [{ backendRefs: [{ name: echo, namespace: c-refs-other, port: 80 }] }]
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: c-refs-other }
spec: { ports: [{ name: tcp, port: 80, targetPort: 8080 }] }
---
${
          slice("c-refs-other", "echo", {
            ports: [{ name: "tcp", port: 8080 }],
            endpoints: [{ ip: "198.18.1.20" }],
          })
        }`;
        const grant = `
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: { name: routes-from-c-refs, namespace: c-refs-other }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: TCPRoute, namespace: c-refs }]
  to: [{ group: "", kind: Service }]
`;
        await oc.apply(yaml);
        await converge(async () => {
          for (
            const [name, reason] of [
              ["notfound", "BackendNotFound"],
              ["kind", "InvalidKind"],
              ["xns", "RefNotPermitted"],
            ]
          ) {
            const r = await oc.get(["tcproute", "-n", "c-refs", name!]);
            // the route is still Accepted: only its backend is refused
            assertConditions(blixtParents(r)[0]?.conditions, {
              Accepted: "True/Accepted",
              ResolvedRefs: `False/${reason}`,
            }, { generation: 1, what: name });
          }
          const table = await oc.get(["routingtable", "-n", "c-refs", "gw"]);
          for (const listener of ["notfound", "kind", "xns"]) {
            const e = entryOf(table, listener);
            assert.deepEqual([e.backends.length, e.rejectWeight], [0, 1_000_000], listener);
          }
        });
        await oc.apply(grant);
        await converge(async () => {
          const r = await oc.get(["tcproute", "-n", "c-refs", "xns"]);
          assertConditions(blixtParents(r)[0]?.conditions, { ResolvedRefs: "True/ResolvedRefs" });
          const e = entryOf(await oc.get(["routingtable", "-n", "c-refs", "gw"]), "xns");
          assert.deepEqual(e.backends.map((b) => `${b.ip}:${b.port}/${b.weight}`), [
            "198.18.1.20:8080/1000000",
          ]);
          assert.equal(e.rejectWeight, 0);
        });
        await oc.remove(yaml + "---\n" + grant);
      },
    );

    await t.step(
      "backends: named target ports, ready and terminating endpoints, weights and the reject share",
      async () => {
        const yaml = `${namespace("c-weights")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-weights }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tcp, port: 80, protocol: TCP }, { name: named, port: 81, protocol: TCP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: split, namespace: c-weights }
spec:
  parentRefs: [{ name: gw, sectionName: tcp }]
  rules:
  - backendRefs:
    - { name: a, port: 80, weight: 2 }
    - { name: missing, port: 80, weight: 1 }
    - { name: b, port: 80, weight: 1 }
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: named, namespace: c-weights }
spec:
  parentRefs: [{ name: gw, sectionName: named }]
  rules: [{ backendRefs: [{ name: named, port: 80 }] }]
---
apiVersion: v1
kind: Service
metadata: { name: a, namespace: c-weights }
spec: { ports: [{ port: 80, targetPort: 8080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: b, namespace: c-weights }
spec: { ports: [{ port: 80, targetPort: 8080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: named, namespace: c-weights }
spec: { ports: [{ name: web, port: 80, targetPort: http }] }
---
${
          slice("c-weights", "a", {
            ports: [{ port: 8080 }],
            endpoints: [{ ip: "198.18.1.10" }],
          })
        }${
          slice("c-weights", "b", {
            ports: [{ port: 8080 }],
            endpoints: [
              { ip: "198.18.1.11" },
              { ip: "198.18.1.12" },
              { ip: "198.18.1.13", ready: false, serving: true, terminating: true },
              { ip: "198.18.1.14", ready: false, serving: false, terminating: false },
            ],
          })
        }${
          slice("c-weights", "named", {
            ports: [{ name: "web", port: 9090 }],
            endpoints: [{ ip: "198.18.1.30" }],
          })
        }`;
        await oc.apply(yaml);
        await converge(async () => {
          const table = await oc.get(["routingtable", "-n", "c-weights", "gw"]);
          const split = entryOf(table, "tcp");
          // a: 2/4 of the flows; b: 1/4 over its two ready endpoints; missing: 1/4 rejected
          assert.deepEqual(
            split.backends.map((b) => `${b.ip}:${b.port} ${b.state} ${b.weight}`),
            [
              "198.18.1.10:8080 Ready 500000",
              "198.18.1.11:8080 Ready 125000",
              "198.18.1.12:8080 Ready 125000",
              "198.18.1.13:8080 Serving 0",
            ],
          );
          assert.equal(split.rejectWeight, 250_000);
          assert.deepEqual(split.route, {
            kind: "TCPRoute",
            namespace: "c-weights",
            name: "split",
          });
          const named = entryOf(table, "named");
          assert.deepEqual(named.backends.map((b) => `${b.ip}:${b.port}`), ["198.18.1.30:9090"]);
          const r = await oc.get(["tcproute", "-n", "c-weights", "split"]);
          assertConditions(blixtParents(r)[0]?.conditions, {
            Accepted: "True",
            ResolvedRefs: "False/BackendNotFound",
          });
        });
        // an endpoint moves: the table follows
        await oc.apply(slice("c-weights", "a", {
          ports: [{ port: 8080 }],
          endpoints: [{ ip: "198.18.1.15" }],
        }));
        await converge(async () => {
          const split = entryOf(await oc.get(["routingtable", "-n", "c-weights", "gw"]), "tcp");
          const ips = split.backends.map((b) => b.ip);
          assert.ok(ips.includes("198.18.1.15") && !ips.includes("198.18.1.10"), ips.join());
        });
        await oc.remove(yaml);
      },
    );

    await t.step(
      "routes: several on one listener are all Accepted and counted; the oldest carries traffic",
      async () => {
        const route = (name: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: { name: ${name}, namespace: c-multi }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: ${name}, port: 53 }] }]
`;
        const gw = `${namespace("c-multi")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-multi }
spec:
  gatewayClassName: blixt
  listeners: [{ name: dns, port: 53, protocol: UDP }]
`;
        await oc.apply(gw + "---\n" + route("older"));
        await converge(async () => {
          const table = await oc.get(["routingtable", "-n", "c-multi", "gw"]);
          assert.equal(entryOf(table, "dns").route?.name, "older");
        });
        // creationTimestamp has a resolution of one second
        await sleep(1100);
        await oc.apply(route("newer"));
        await sleep(1100);
        await oc.apply(route("newest"));
        await converge(async () => {
          for (const name of ["older", "newer", "newest"]) {
            const r = await oc.get(["udproute", "-n", "c-multi", name]);
            assertConditions(blixtParents(r)[0]?.conditions, { Accepted: "True/Accepted" }, {
              what: name,
            });
          }
          const g = await oc.get(["gateway", "-n", "c-multi", "gw"]);
          assert.equal(listenerOf(g, "dns").attachedRoutes, 3);
          const table = await oc.get(["routingtable", "-n", "c-multi", "gw"]);
          assert.equal(entryOf(table, "dns").route?.name, "older");
        });
        await oc.remove(route("older"));
        await converge(async () => {
          const table = await oc.get(["routingtable", "-n", "c-multi", "gw"]);
          assert.equal(entryOf(table, "dns").route?.name, "newer");
          const g = await oc.get(["gateway", "-n", "c-multi", "gw"]);
          assert.equal(listenerOf(g, "dns").attachedRoutes, 2);
        });
        await oc.remove(gw + "---\n" + route("newer") + "---\n" + route("newest"));
      },
    );

    await t.step(
      "status: other controllers' route parents and Gateway conditions survive every reconcile",
      async () => {
        const yaml = `${namespace("c-foreign")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-foreign }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: r, namespace: c-foreign }
spec:
  parentRefs: [{ name: gw }, { name: elsewhere }]
  rules: [{ backendRefs: [{ name: svc, port: 80 }] }]
`;
        await oc.apply(yaml);
        await converge(async () => {
          const r = await oc.get(["tcproute", "-n", "c-foreign", "r"]);
          assert.equal(blixtParents(r).length, 1);
        });
        // another controller, which owns Gateway "elsewhere", writes its entry and a condition
        const r = await oc.get(["tcproute", "-n", "c-foreign", "r"]);
        const foreign = {
          parentRef: { group: GROUP, kind: "Gateway", name: "elsewhere" },
          controllerName: "example.com/other-controller",
          conditions: [{
            type: "Accepted",
            status: "True",
            reason: "Accepted",
            message: "theirs",
            observedGeneration: 1,
            lastTransitionTime: "2025-01-01T00:00:00Z",
          }],
        };
        r.status.parents.push(foreign);
        await oc.cluster.kubectl(["replace", "--subresource=status", "-f", "-"], {
          stdin: JSON.stringify(r),
        });
        const g = await oc.get(["gateway", "-n", "c-foreign", "gw"]);
        g.status.conditions.push({
          type: "example.com/Audited",
          status: "True",
          reason: "Audited",
          message: "by someone else",
          observedGeneration: 1,
          lastTransitionTime: "2025-01-01T00:00:00Z",
        });
        await oc.cluster.kubectl(["replace", "--subresource=status", "-f", "-"], {
          stdin: JSON.stringify(g),
        });
        // changes that make blixt rewrite both statuses
        await oc.cluster.kubectl([
          "patch",
          "tcproute",
          "-n",
          "c-foreign",
          "r",
          "--type=json",
          "-p",
          '[{"op":"replace","path":"/spec/rules/0/backendRefs/0/name","value":"svc2"}]',
        ]);
        await oc.cluster.kubectl([
          "patch",
          "gateway",
          "-n",
          "c-foreign",
          "gw",
          "--type=json",
          "-p",
          '[{"op":"add","path":"/spec/listeners/-","value":{"name":"udp","port":53,"protocol":"UDP"}}]',
        ]);
        await converge(async () => {
          const r = await oc.get(["tcproute", "-n", "c-foreign", "r"]);
          const ours = blixtParents(r);
          assertConditions(ours[0]?.conditions, { Accepted: "True" }, { generation: 2 });
          const theirs = (r.status.parents as { controllerName: string }[]).filter((p) =>
            p.controllerName === "example.com/other-controller"
          );
          assert.deepEqual(theirs, [foreign]);
          const g = await oc.get(["gateway", "-n", "c-foreign", "gw"]);
          assertConditions(g.status.conditions, { Accepted: "True" }, { generation: 2 });
          assert.equal(
            (g.status.conditions as Cond[]).find((c) => c.type === "example.com/Audited")?.message,
            "by someone else",
          );
        });
        await oc.remove(yaml);
      },
    );

    await t.step(
      "addresses: static IPAddress honoured, empty value and no address from the pool, no duplicates",
      async () => {
        const gw = (name: string, addresses: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: ${name}, namespace: c-addr }
spec:
  gatewayClassName: blixt
  ${addresses}
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
---`;
        const yaml = `${namespace("c-addr")}
${gw("static", "addresses: [{ type: IPAddress, value: 198.19.250.1 }]")}
${gw("empty-value", "addresses: [{ type: IPAddress }]")}
${gw("p1", "")}
${gw("p2", "")}
`;
        await oc.apply(yaml);
        const prefix = pool.replace(/\.0\/24$/, ".");
        const seen = await converge(async () => {
          const got: Record<string, string> = {};
          for (const name of ["static", "empty-value", "p1", "p2"]) {
            const g = await oc.get(["gateway", "-n", "c-addr", name]);
            const addresses = g.status?.addresses as { type: string; value: string }[];
            assert.equal(addresses?.length, 1, name);
            assert.equal(addresses[0]!.type, "IPAddress");
            got[name] = addresses[0]!.value;
            const table = await oc.get(["routingtable", "-n", "c-addr", name]);
            assert.deepEqual(table.spec.addresses, [got[name]]);
          }
          assert.equal(got.static, "198.19.250.1");
          for (const name of ["empty-value", "p1", "p2"]) {
            assert.ok(got[name]!.startsWith(prefix), `${name}: ${got[name]} from ${pool}`);
          }
          assert.equal(
            new Set(Object.values(got)).size,
            4,
            `no duplicates: ${JSON.stringify(got)}`,
          );
          return got;
        });
        assert.ok((await events(oc, "c-addr", "p1")).includes("Normal/AddressAssigned"));
        // a newer Gateway asking for p1's address cannot have it
        const taken = gw("taken", `addresses: [{ type: IPAddress, value: ${seen.p1} }]`);
        await oc.apply(taken);
        await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-addr", "taken"]);
          assertConditions(g.status?.conditions, {
            Accepted: "True/Accepted",
            Programmed: "False/AddressNotUsable",
          }, { generation: 1 });
        });
        await oc.remove(yaml + taken);
      },
    );

    await t.step(
      "addresses: Hostname is UnsupportedAddress until it is removed",
      async () => {
        const yaml = `${namespace("c-hostname")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-hostname }
spec:
  gatewayClassName: blixt
  addresses: [{ type: Hostname, value: gw.example.com }]
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
`;
        await oc.apply(yaml);
        await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-hostname", "gw"]);
          assertConditions(g.status?.conditions, { Accepted: "False/UnsupportedAddress" }, {
            generation: 1,
          });
        });
        await oc.cluster.kubectl([
          "patch",
          "gateway",
          "-n",
          "c-hostname",
          "gw",
          "--type=json",
          "-p",
          '[{"op":"remove","path":"/spec/addresses"}]',
        ]);
        await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-hostname", "gw"]);
          assertConditions(g.status.conditions, { Accepted: "True/Accepted" }, { generation: 2 });
          assert.equal(g.status.addresses?.length, 1);
        });
        await oc.remove(yaml);
      },
    );

    await t.step(
      "addresses: an exhausted pool is AddressNotAssigned; a deleted Gateway's address is reused",
      async () => {
        const cls = `
apiVersion: blixt.dev/v1alpha1
kind: GatewayClassConfig
metadata: { name: op2-tiny }
spec:
  addressPools: [{ name: one, cidr: 198.19.251.1/32 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: op2-tiny }
spec:
  controllerName: blixt.dev/gateway-controller
  parametersRef: { group: blixt.dev, kind: GatewayClassConfig, name: op2-tiny }
`;
        const gw = (name: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: ${name}, namespace: c-pool }
spec:
  gatewayClassName: op2-tiny
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
`;
        await oc.apply(cls + "---\n" + namespace("c-pool") + gw("first"));
        const first = await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-pool", "first"]);
          assert.equal(g.status?.addresses?.[0]?.value, "198.19.251.1");
          const table = await oc.get(["routingtable", "-n", "c-pool", "first"]);
          // the table is the Gateway's: owned by it, labelled as blixt's
          assert.deepEqual(table.metadata.ownerReferences, [{
            apiVersion: `${GROUP}/v1`,
            kind: "Gateway",
            name: "first",
            uid: g.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          }]);
          assert.equal(table.metadata.labels["app.kubernetes.io/part-of"], "blixt");
          return g;
        });
        await sleep(1100); // "second" is strictly newer
        await oc.apply(gw("second"));
        await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-pool", "second"]);
          assertConditions(g.status?.conditions, {
            Accepted: "True/Accepted",
            Programmed: "False/AddressNotAssigned",
          }, { generation: 1 });
          assert.deepEqual(g.status.addresses ?? [], []);
          assert.ok((await events(oc, "c-pool", "second")).includes("Warning/AddressNotAssigned"));
        });
        await oc.remove(gw("first"));
        await converge(async () => {
          const left = await oc.cluster.kubectl([
            "get",
            "gateways,routingtables",
            "-n",
            "c-pool",
            "-o",
            "name",
          ]);
          assert.ok(!left.includes("/first"), `first and its table gone: ${left}`);
          const g = await oc.get(["gateway", "-n", "c-pool", "second"]);
          assert.equal(g.status?.addresses?.[0]?.value, "198.19.251.1");
          assert.notEqual(gatewayCondition(g, "Programmed").reason, "AddressNotAssigned");
        });
        void first;
        await oc.remove(gw("second") + "---\n" + cls);
      },
    );

    await t.step(
      "Gateway: observedGeneration on every condition, lastTransitionTime kept while status holds",
      async () => {
        const yaml = `${namespace("c-gen")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-gen }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
`;
        await oc.apply(yaml);
        const before = await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-gen", "gw"]);
          assertConditions(g.status?.conditions, { Accepted: "True/Accepted" }, { generation: 1 });
          return g;
        });
        await sleep(1100); // a new lastTransitionTime would differ by at least a second
        await oc.cluster.kubectl([
          "patch",
          "gateway",
          "-n",
          "c-gen",
          "gw",
          "--type=json",
          "-p",
          '[{"op":"add","path":"/spec/listeners/-","value":{"name":"udp","port":53,"protocol":"UDP"}}]',
        ]);
        await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-gen", "gw"]);
          assert.equal(g.metadata.generation, 2);
          for (const c of g.status.conditions as Cond[]) {
            assert.equal(c.observedGeneration, 2, `Gateway ${c.type}`);
          }
          for (const l of g.status.listeners as { name: string; conditions: Cond[] }[]) {
            for (const c of l.conditions) {
              assert.equal(c.observedGeneration, 2, `listener ${l.name} ${c.type}`);
            }
          }
          assert.equal(
            gatewayCondition(g, "Accepted").lastTransitionTime,
            gatewayCondition(before, "Accepted").lastTransitionTime,
          );
          assert.equal(
            listenerOf(g, "tcp").conditions.find((c) => c.type === "Accepted")?.lastTransitionTime,
            listenerOf(before, "tcp").conditions.find((c) => c.type === "Accepted")
              ?.lastTransitionTime,
          );
        });
        await oc.remove(yaml);
      },
    );

    await t.step(
      "Gateway: Programmed once every ready node running an agent reports the table's generation",
      async () => {
        const yaml = `${namespace("c-prog")}
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: c-prog }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
`;
        // an agent's DataplaneNode and its liveness Lease (held for an hour: this case is not
        // about liveness, see agent_liveness_cluster_test.ts)
        const dpn = (node: string) => `
apiVersion: blixt.dev/v1alpha1
kind: DataplaneNode
metadata: { name: ${node} }
spec: { nodeName: ${node} }
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: blixt-agent-${node}
  namespace: blixt-system
  labels: { app.kubernetes.io/part-of: blixt, app.kubernetes.io/component: agent }
spec:
  holderIdentity: agent-${node}
  leaseDurationSeconds: 3600
  renewTime: "${new Date().toISOString().replace("Z", "000Z")}"
`;
        /** What an agent writes once it has programmed `generation` of the table. */
        const report = async (node: string, generation: number) => {
          const status = {
            status: {
              tables: [{
                namespace: "c-prog",
                name: "gw",
                observedGeneration: generation,
                programmedGeneration: generation,
                entries: 1,
                backends: 0,
              }],
            },
          };
          await oc.cluster.kubectl([
            "patch",
            "dataplanenode",
            node,
            "--subresource=status",
            "--type=merge",
            "-p",
            JSON.stringify(status),
          ]);
        };
        await oc.apply(yaml);
        await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-prog", "gw"]);
          assertConditions(g.status?.conditions, {
            Accepted: "True",
            Programmed: "False/Pending",
          }, { generation: 1 });
          assertConditions(listenerOf(g, "tcp").conditions, { Programmed: "False/Pending" });
        });
        const table = await oc.get(["routingtable", "-n", "c-prog", "gw"]);
        const generation = table.metadata.generation as number;
        // node-1's agent programs the table; node-2 runs no agent, so it is not waited for
        await oc.apply(dpn("node-1"));
        await report("node-1", generation);
        await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-prog", "gw"]);
          assertConditions(g.status.conditions, { Programmed: "True/Programmed" }, {
            generation: 1,
          });
          assertConditions(listenerOf(g, "tcp").conditions, { Programmed: "True/Programmed" });
        });
        // an agent starts on node-2 and is still behind: Pending until it catches up
        await oc.apply(dpn("node-2"));
        await report("node-2", generation - 1);
        await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-prog", "gw"]);
          const p = gatewayCondition(g, "Programmed");
          assert.equal(`${p.status}/${p.reason}`, "False/Pending");
          assert.match(p.message ?? "", /node-2/);
        });
        await report("node-2", generation);
        await converge(async () => {
          const g = await oc.get(["gateway", "-n", "c-prog", "gw"]);
          assertConditions(g.status.conditions, { Programmed: "True/Programmed" });
        });
        await oc.remove(yaml + "---\n" + dpn("node-1") + "---\n" + dpn("node-2"));
      },
    );
  });
});

// deno-lint-ignore no-explicit-any
function gatewayCondition(obj: any, type: string): Cond {
  const c = (obj.status?.conditions as Cond[] | undefined)?.find((x) => x.type === type);
  assert.ok(c, `no ${type}`);
  return c;
}
