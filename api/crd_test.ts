// The CRDs in manifests/crds/ and the types in api/ describe the same objects:
// the real API server accepts the CRDs, full samples of each kind pass the API
// server's validation and the TypeScript validator, every schema field appears
// in the sample (no field only one side knows), and malformed samples fail both.
import assert from "node:assert/strict";
import { parse } from "yaml";
import { PART_OF_LABEL, type Validated } from "./meta.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { apiStatus, applyObject, k8s, type KubeObject } from "../kube/client.ts";
import { applyManifestFiles, parseManifests } from "../kube/manifests.ts";
import { requestJson } from "../kube/rest.ts";
import { gatewayApiCrdFiles } from "../tests/cluster/binaries.ts";
import {
  type RoutingTable,
  type RoutingTableEntry,
  validateRoutingTable,
} from "./routing_table.ts";
import { type DataplaneNode, validateDataplaneNode } from "./dataplane_node.ts";
import { type GatewayClassConfig, validateGatewayClassConfig } from "./gateway_class_config.ts";

type Schema = {
  properties?: Record<string, Schema>;
  items?: Schema;
};

/** Every property path the schema declares (below metadata). */
function schemaPaths(schema: Schema, path = ""): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(schema.properties ?? {})) {
    if (k === "metadata" || k === "apiVersion" || k === "kind") continue;
    out.push(`${path}.${k}`, ...schemaPaths(v, `${path}.${k}`));
  }
  if (schema.items) out.push(...schemaPaths(schema.items, `${path}[]`));
  return out;
}

/** Every field path a value has (below metadata). */
function valuePaths(value: unknown, path = ""): string[] {
  if (Array.isArray(value)) {
    return value.flatMap((v) => valuePaths(v, `${path}[]`));
  }
  if (typeof value !== "object" || value === null) return [];
  return Object.entries(value).flatMap(([k, v]) =>
    k === "metadata" || k === "apiVersion" || k === "kind"
      ? []
      : [`${path}.${k}`, ...valuePaths(v, `${path}.${k}`)]
  );
}

/** Every `x-kubernetes-*` key under `value`, by path, sorted. */
function extensionKeys(value: unknown, path = ""): string[] {
  if (value === null || typeof value !== "object") return [];
  const keys: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    if (k.startsWith("x-kubernetes-")) keys.push(`${path}/${k}`);
    keys.push(...extensionKeys(v, `${path}/${k}`));
  }
  return keys.sort();
}

async function loadCrd(file: string) {
  const text = await Deno.readTextFile(
    new URL(`../manifests/crds/${file}`, import.meta.url),
  );
  const crd = parse(text);
  assert.equal(crd.kind, "CustomResourceDefinition");
  assert.deepEqual(crd.metadata.labels, PART_OF_LABEL);
  assert.equal(crd.spec.group, "blixt.dev");
  const version = crd.spec.versions[0];
  assert.equal(version.name, "v1alpha1");
  return { crd, version, schema: version.schema.openAPIV3Schema as Schema };
}

const DELETE = Symbol("delete");

/** A copy of `value` with the field at dotted `path` set (or deleted). */
function withField(value: unknown, path: string, field: unknown): unknown {
  const copy = structuredClone(value);
  const keys = path.split(".");
  const last = keys.pop() as string;
  let at = copy as Record<string, unknown>;
  for (const k of keys) at = at[k] as Record<string, unknown>;
  if (field === DELETE) delete at[last];
  else at[last] = field;
  return copy;
}

const now = "2026-01-01T00:00:00Z";

const sampleTable: RoutingTable = {
  apiVersion: "blixt.dev/v1alpha1",
  kind: "RoutingTable",
  metadata: { name: "gw", namespace: "default" },
  spec: {
    addresses: ["198.18.0.10"],
    localBackendsOnly: false,
    entries: [{
      address: "198.18.0.10",
      port: 5000,
      protocol: "TCP",
      listener: "tcp",
      route: { kind: "TCPRoute", namespace: "default", name: "r" },
      service: { namespace: "default", name: "web", port: 80 },
      rejectWeight: 250000,
      backends: [{
        ip: "198.19.1.5",
        port: 8080,
        weight: 750000,
        node: "node-1",
        state: "Ready",
        service: { namespace: "default", name: "svc", port: 80 },
      }, {
        ip: "198.19.2.7",
        port: 8080,
        weight: 0,
        state: "Serving",
      }],
    }, {
      address: "198.18.0.10",
      port: 5001,
      protocol: "TCP",
      listener: "tcp-5001",
      backendsFrom: "198.18.0.10:5000/TCP",
      rejectWeight: 0,
      backends: [],
    }, {
      address: "198.18.0.10",
      port: 5002,
      protocol: "TCP",
      listener: "tcp-5002",
      service: { namespace: "default", name: "web", port: 80 },
      rejectWeight: 0,
      endpoints: ["198.19.1.5:8080 750000 Ready node-1", "198.19.2.7:8080 0 Serving"],
      backends: [],
    }, {
      // a compact entry, as written: route and Service one string each, no backends
      address: "198.18.0.10",
      port: 5003,
      protocol: "TCP",
      listener: "tcp-5003",
      routeRef: "TCPRoute default/r",
      serviceRef: "default/web:80",
      rejectWeight: 0,
      endpoints: ["198.19.1.5:8080 1000000 Ready node-1"],
    } as unknown as RoutingTableEntry],
  },
};

const sampleNode: DataplaneNode = {
  apiVersion: "blixt.dev/v1alpha1",
  kind: "DataplaneNode",
  metadata: { name: "node-1" },
  spec: { nodeName: "node-1", uplink: "eth0" },
  status: {
    conditions: [{
      type: "Ready",
      status: "True",
      reason: "Programmed",
      message: "1 table programmed",
      observedGeneration: 1,
      lastTransitionTime: now,
    }],
    lastSyncTime: now,
    features: ["backendsFrom"],
    maps: [{ name: "backends", entries: 2, capacity: 65536 }],
    tables: [{
      namespace: "default",
      name: "gw",
      observedGeneration: 3,
      programmedGeneration: 2,
      entries: 1,
      backends: 2,
      errors: ["capacity: 70000 backends do not fit 65536"],
    }],
    counters: {
      collectedAt: now,
      snatExhausted: 3,
      services: [{
        address: "198.18.0.10",
        port: 5000,
        protocol: "TCP",
        packets: 10,
        bytes: 1000,
        newFlows: 2,
        rejectedFlows: 1,
        backends: [{
          ip: "198.19.1.5",
          port: 8080,
          packets: 10,
          bytes: 1000,
          newFlows: 2,
        }],
      }],
      frontends: [{
        service: "198.18.0.10 5000 TCP 10 1000 2 1",
        backends: ["198.19.1.5 8080 10 1000 2", "2001:db8::5 8080 0 0 0"],
      }],
    },
  },
};

const sampleConfig: GatewayClassConfig = {
  apiVersion: "blixt.dev/v1alpha1",
  kind: "GatewayClassConfig",
  metadata: { name: "blixt" },
  spec: {
    addressPools: [{ name: "bench", cidr: "198.18.0.0/24" }],
    localBackendsOnly: true,
  },
};

/**
 * Broken samples: what, field path, value, and whether the API server's
 * schema refuses it too (some rules are too costly for CEL at our list sizes
 * and are the agent's validator's alone; docs/routing-table.md says which).
 */
type Broken = [string, string, unknown] | [string, string, unknown, "validator only"];

const kinds: {
  file: string;
  plural: string;
  sample: KubeObject;
  validate: (v: unknown) => Validated<unknown>;
  broken: Broken[];
}[] = [
  {
    file: "routingtables.blixt.dev.yaml",
    plural: "routingtables",
    sample: sampleTable as unknown as KubeObject,
    validate: validateRoutingTable,
    broken: [
      ["port 0", "spec.entries.0.port", 0],
      ["port 65536", "spec.entries.0.port", 65536],
      ["protocol SCTP", "spec.entries.0.protocol", "SCTP"],
      ["weight over 1e6", "spec.entries.0.backends.0.weight", 1_000_001],
      ["negative rejectWeight", "spec.entries.0.rejectWeight", -1],
      ["backend ip not an IP", "spec.entries.0.backends.0.ip", "10.0.0"],
      ["address not an IP", "spec.addresses.0", "gw.example"],
      ["weight on a serving backend", "spec.entries.0.backends.1.weight", 5, "validator only"],
      ["unknown state", "spec.entries.0.backends.0.state", "Up"],
      ["entry's service port 0", "spec.entries.0.service.port", 0],
      ["entry's service without a name", "spec.entries.0.service.name", DELETE],
      ["empty backendsFrom", "spec.entries.1.backendsFrom", ""],
      [
        "backendsFrom to no entry",
        "spec.entries.1.backendsFrom",
        "198.18.0.10:1/TCP",
        "validator only",
      ],
      ["endpoint port 0", "spec.entries.2.endpoints.0", "198.19.1.5:0 1 Ready"],
      ["endpoint port 65536", "spec.entries.2.endpoints.0", "198.19.1.5:65536 1 Ready"],
      ["endpoint weight over 1e6", "spec.entries.2.endpoints.0", "198.19.1.5:80 1000001 Ready"],
      [
        "endpoint weight on a serving backend",
        "spec.entries.2.endpoints.1",
        "198.19.2.7:80 5 Serving",
      ],
      ["endpoint state unknown", "spec.entries.2.endpoints.0", "198.19.1.5:80 1 Up"],
      ["endpoint ip not an IP", "spec.entries.2.endpoints.0", "198.19.1:80 1 Ready"],
      ["endpoint IPv4 octet over 255", "spec.entries.2.endpoints.0", "198.19.1.256:80 1 Ready"],
      ["endpoint IPv6 without brackets", "spec.entries.2.endpoints.0", "2001:db8::5:80 1 Ready"],
      [
        "endpoint node not a DNS subdomain",
        "spec.entries.2.endpoints.0",
        "198.19.1.5:80 1 Ready N_1",
      ],
      ["endpoint with a fifth field", "spec.entries.2.endpoints.0", "198.19.1.5:80 1 Ready n1 x"],
      [
        "endpoint IPv6 in an IPv4 entry",
        "spec.entries.2.endpoints.0",
        "[2001:db8::5]:80 1 Ready",
        "validator only",
      ],
      [
        "endpoint IPv6 malformed",
        "spec.entries.2.endpoints.0",
        "[2001:db8:::5]:80 1 Ready",
        "validator only",
      ],
      ["routeRef of an unknown kind", "spec.entries.3.routeRef", "HTTPRoute default/r"],
      ["routeRef without a namespace", "spec.entries.3.routeRef", "TCPRoute r"],
      ["routeRef namespace not a DNS label", "spec.entries.3.routeRef", "TCPRoute Default/r"],
      ["routeRef namespace of 64", "spec.entries.3.routeRef", `TCPRoute ${"a".repeat(64)}/r`],
      ["routeRef name not a DNS subdomain", "spec.entries.3.routeRef", "TCPRoute default/r_1"],
      ["routeRef name of 254", "spec.entries.3.routeRef", `TCPRoute default/${"a".repeat(254)}`],
      ["routeRef with a third part", "spec.entries.3.routeRef", "TCPRoute default/r/x"],
      ["serviceRef port 0", "spec.entries.3.serviceRef", "default/web:0"],
      ["serviceRef port 65536", "spec.entries.3.serviceRef", "default/web:65536"],
      ["serviceRef port with a leading zero", "spec.entries.3.serviceRef", "default/web:080"],
      ["serviceRef without a port", "spec.entries.3.serviceRef", "default/web"],
      ["serviceRef name with a dot", "spec.entries.3.serviceRef", "default/web.v2:80"],
      ["serviceRef name of 64", "spec.entries.3.serviceRef", `default/${"a".repeat(64)}:80`],
      [
        "routeRef beside route",
        "spec.entries.3.route",
        { kind: "TCPRoute", namespace: "default", name: "r" },
        "validator only",
      ],
      ["no backends and no endpoints", "spec.entries.3.endpoints", DELETE, "validator only"],
      [
        "endpoints beside backends",
        "spec.entries.2.backends",
        [{ ip: "198.19.1.5", port: 8080, weight: 1, state: "Ready" }],
        "validator only",
      ],
    ],
  },
  {
    file: "dataplanenodes.blixt.dev.yaml",
    plural: "dataplanenodes",
    sample: sampleNode as unknown as KubeObject,
    validate: validateDataplaneNode,
    broken: [
      ["no nodeName", "spec.nodeName", DELETE],
      ["negative counter", "status.counters.services.0.packets", -1],
      ["counter port 0", "status.counters.services.0.port", 0],
      [
        "compact negative counter",
        "status.counters.frontends.0.backends.0",
        "198.19.1.5 8080 -1 1000 2",
      ],
      [
        "compact backend with a sixth field",
        "status.counters.frontends.0.backends.0",
        "198.19.1.5 8080 1 1 1 1",
      ],
      [
        "compact counter over 2^53",
        "status.counters.frontends.0.backends.0",
        "198.19.1.5 8080 99999999999999999 1 1",
      ],
      [
        "compact protocol SCTP",
        "status.counters.frontends.0.service",
        "198.18.0.10 5000 SCTP 10 1000 2 1",
      ],
      [
        "compact service without rejectedFlows",
        "status.counters.frontends.0.service",
        "198.18.0.10 5000 TCP 10 1000 2",
      ],
      ["compact frontend without backends", "status.counters.frontends.0.backends", DELETE],
      [
        "compact backend port 0",
        "status.counters.frontends.0.backends.0",
        "198.19.1.5 0 1 1 1",
        "validator only",
      ],
      [
        "compact backend ip not an IP",
        "status.counters.frontends.0.backends.0",
        "198.19.1 8080 1 1 1",
        "validator only",
      ],
      [
        "compact counter with a leading zero",
        "status.counters.frontends.0.backends.0",
        "198.19.1.5 8080 01 1 1",
        "validator only",
      ],
      ["negative map usage", "status.maps.0.entries", -1],
      ["map without capacity", "status.maps.0.capacity", DELETE],
      ["empty feature", "status.features.0", ""],
      [
        "table without generation",
        "status.tables.0.observedGeneration",
        DELETE,
      ],
    ],
  },
  {
    file: "gatewayclassconfigs.blixt.dev.yaml",
    plural: "gatewayclassconfigs",
    sample: sampleConfig as unknown as KubeObject,
    validate: validateGatewayClassConfig,
    broken: [
      ["pool not a CIDR", "spec.addressPools.0.cidr", "198.18.0.0"],
      ["pool without name", "spec.addressPools.0.name", DELETE],
    ],
  },
];

for (const kind of kinds) {
  Deno.test(`${kind.file}: the full sample passes the TypeScript validator`, () => {
    const result = kind.validate(kind.sample);
    assert.ok(result.ok, JSON.stringify(result));
  });

  Deno.test(`${kind.file}: schema and TypeScript types have the same field names`, async () => {
    const { schema } = await loadCrd(kind.file);
    const declared = new Set(schemaPaths(schema));
    const used = new Set(valuePaths(kind.sample));
    // status of RoutingTable is reserved (preserve-unknown), nothing to compare
    assert.deepEqual(
      [...declared].filter((p) => !used.has(p) && p !== ".status"),
      [],
      "schema fields the sample (and so the types) lack",
    );
    assert.deepEqual(
      [...used].filter((p) => !declared.has(p)),
      [],
      "sample fields the schema lacks",
    );
  });

  for (const [what, path, value] of kind.broken) {
    Deno.test(`${kind.file}: ${what} is refused by the validator`, () => {
      const result = kind.validate(withField(kind.sample, path, value));
      assert.equal(result.ok, false, "validator accepted it");
      if (!result.ok) assert.ok(result.errors[0]?.path.length);
    });
  }
}

/**
 * Creates `obj` with a server-side dry run (status through the status
 * subresource of a real copy, since create ignores status); resolves to the
 * HTTP status of the refusal, or 201 when accepted.
 */
async function serverVerdict(kc: k8s.KubeConfig, plural: string, obj: KubeObject): Promise<number> {
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  const namespace = obj.metadata?.namespace;
  const target = { group: "blixt.dev", version: "v1alpha1", plural };
  try {
    if (obj.status === undefined) {
      const body = { ...obj };
      if (namespace) {
        await api.createNamespacedCustomObject({ ...target, namespace, body, dryRun: "All" });
      } else await api.createClusterCustomObject({ ...target, body, dryRun: "All" });
      return 201;
    }
    const { status, ...spec } = obj;
    const name = `${obj.metadata?.name}-${crypto.randomUUID().slice(0, 8)}`;
    const created = await applyObject(
      kc,
      { ...spec, metadata: { ...obj.metadata, name } } as KubeObject,
      {
        fieldManager: "blixt-test",
      },
    );
    try {
      await api.replaceClusterCustomObjectStatus({
        ...target,
        name,
        body: { ...created, status },
        dryRun: "All",
      });
      return 201;
    } finally {
      await api.deleteClusterCustomObject({ ...target, name });
    }
  } catch (err) {
    const code = apiStatus(err);
    if (code === undefined) throw err;
    return code;
  }
}

Deno.test("the real API server accepts the CRDs, the samples, and refuses the broken ones", async (t) => {
  const name = "api-crd-test";
  try {
    const cluster = await clusterUp({ name, nodes: 1 });
    const kc = cluster.kubeConfig();
    const dir = new URL("../manifests/crds/", import.meta.url).pathname;
    await t.step("every CRD is accepted and Established", async () => {
      const files = kinds.map((k) => `${dir}${k.file}`);
      const applied = await applyManifestFiles(kc, files, { fieldManager: "blixt-test" });
      assert.equal(applied.crds.length, kinds.length);
    });
    await t.step(
      "the served CRDs keep every x-kubernetes- key of their files, Gateway API's too",
      async () => {
        const files = [
          ...kinds.map((k) => `${dir}${k.file}`),
          ...await gatewayApiCrdFiles("experimental"),
        ];
        for (const file of files) {
          for (const crd of parseManifests(await Deno.readTextFile(file))) {
            if (crd.kind !== "CustomResourceDefinition") continue;
            const served = await requestJson<KubeObject>(
              kc,
              `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata!.name}`,
            );
            const want = extensionKeys(crd.spec);
            assert.ok(want.length > 0, `${file} has x-kubernetes- keys`);
            assert.deepEqual(extensionKeys(served.spec), want, file);
          }
        }
      },
    );
    for (const kind of kinds) {
      await t.step(`${kind.file}: the full sample is accepted`, async () => {
        assert.equal(await serverVerdict(kc, kind.plural, kind.sample), 201);
      });
      if (kind.plural === "routingtables") {
        await t.step(
          "routingtables: backendsFrom, endpoints and compact entries are kept (not pruned)",
          async () => {
            const api = kc.makeApiClient(k8s.CustomObjectsApi);
            const created = await api.createNamespacedCustomObject({
              group: "blixt.dev",
              version: "v1alpha1",
              plural: kind.plural,
              namespace: "default",
              body: kind.sample,
              dryRun: "All",
            }) as RoutingTable;
            assert.equal(created.spec.entries[1]?.backendsFrom, "198.18.0.10:5000/TCP");
            assert.deepEqual(created.spec.entries[1]?.backends, []);
            assert.deepEqual(
              created.spec.entries[2]?.endpoints,
              sampleTable.spec.entries[2]?.endpoints,
            );
            // a compact entry keeps its strings and is stored without backends
            assert.equal(created.spec.entries[3]?.routeRef, "TCPRoute default/r");
            assert.equal(created.spec.entries[3]?.serviceRef, "default/web:80");
            assert.equal(created.spec.entries[3]?.backends, undefined);
          },
        );
      }
      for (const [what, path, value, only] of kind.broken) {
        if (only) continue;
        await t.step(`${kind.file}: ${what} is refused with 422`, async () => {
          const broken = withField(kind.sample, path, value) as KubeObject;
          assert.equal(await serverVerdict(kc, kind.plural, broken), 422);
        });
      }
    }
  } finally {
    await clusterDown(name);
  }
});

Deno.test("every CRD has a status subresource and printer columns", async () => {
  for (
    const file of [
      "routingtables.blixt.dev.yaml",
      "dataplanenodes.blixt.dev.yaml",
    ]
  ) {
    const { version } = await loadCrd(file);
    assert.deepEqual(version.subresources, { status: {} });
    assert.ok(version.additionalPrinterColumns.length >= 2);
  }
});
