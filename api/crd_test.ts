// The CRDs in manifests/crds/ and the types in api/ describe the same objects:
// full samples of each kind pass both the OpenAPI schema and the TypeScript
// validator, every schema field appears in the sample (no field only one side
// knows), and malformed samples fail both.
import assert from "node:assert/strict";
import { parse } from "yaml";
import { parseCidr, parseIp } from "./ip_address.ts";
import { PART_OF_LABEL, type Validated } from "./meta.ts";
import { type RoutingTable, validateRoutingTable } from "./routing_table.ts";
import { type DataplaneNode, validateDataplaneNode } from "./dataplane_node.ts";
import { type GatewayClassConfig, validateGatewayClassConfig } from "./gateway_class_config.ts";

type Schema = {
  type?: string;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  maxItems?: number;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  "x-kubernetes-validations"?: { rule: string; message: string }[];
};

// The CEL rules our CRDs use, evaluated the way the API server would.
const CEL_RULES: Record<string, (self: unknown) => boolean> = {
  "isIP(self)": (s) => typeof s === "string" && parseIp(s) !== null,
  "isCIDR(self)": (s) => typeof s === "string" && parseCidr(s) !== null,
  "self.state == 'Ready' || self.weight == 0": (s) => {
    const b = s as { state: string; weight: number };
    return b.state === "Ready" || b.weight === 0;
  },
};

/** Structural check of a value against an OpenAPI v3 schema; returns error paths. */
function schemaErrors(schema: Schema, value: unknown, path = ""): string[] {
  const out: string[] = [];
  const t = schema.type;
  if (t === "object") {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return [`${path}: not an object`];
    }
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) {
      if (!(r in obj)) out.push(`${path}.${r}: required`);
    }
    if (schema.properties && !schema["x-kubernetes-preserve-unknown-fields"]) {
      for (const [k, v] of Object.entries(obj)) {
        const sub = schema.properties[k];
        if (sub === undefined) out.push(`${path}.${k}: unknown field`);
        else out.push(...schemaErrors(sub, v, `${path}.${k}`));
      }
    }
  } else if (t === "array") {
    if (!Array.isArray(value)) return [`${path}: not an array`];
    if (schema.maxItems !== undefined && value.length > schema.maxItems) {
      out.push(`${path}: too many items`);
    }
    value.forEach((v, i) => out.push(...schemaErrors(schema.items ?? {}, v, `${path}[${i}]`)));
  } else if (t === "string") {
    if (typeof value !== "string") return [`${path}: not a string`];
    if (value.length < (schema.minLength ?? 0)) out.push(`${path}: too short`);
    if (value.length > (schema.maxLength ?? Infinity)) {
      out.push(`${path}: too long`);
    }
  } else if (t === "integer") {
    if (!Number.isInteger(value)) return [`${path}: not an integer`];
    const n = value as number;
    if (n < (schema.minimum ?? -Infinity) || n > (schema.maximum ?? Infinity)) {
      out.push(`${path}: out of range`);
    }
  } else if (t === "boolean" && typeof value !== "boolean") {
    out.push(`${path}: not a boolean`);
  }
  if (schema.enum && !schema.enum.includes(value)) {
    out.push(`${path}: not in enum`);
  }
  for (const v of schema["x-kubernetes-validations"] ?? []) {
    const rule = CEL_RULES[v.rule];
    assert.ok(rule, `CEL rule without a test evaluator: ${v.rule}`);
    if (!rule(value)) out.push(`${path}: ${v.message}`);
  }
  return out;
}

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
    }],
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

const kinds: {
  file: string;
  sample: unknown;
  validate: (v: unknown) => Validated<unknown>;
  broken: [string, string, unknown][];
}[] = [
  {
    file: "routingtables.blixt.dev.yaml",
    sample: sampleTable,
    validate: validateRoutingTable,
    broken: [
      ["port 0", "spec.entries.0.port", 0],
      ["port 65536", "spec.entries.0.port", 65536],
      ["protocol SCTP", "spec.entries.0.protocol", "SCTP"],
      ["weight over 1e6", "spec.entries.0.backends.0.weight", 1_000_001],
      ["negative rejectWeight", "spec.entries.0.rejectWeight", -1],
      ["backend ip not an IP", "spec.entries.0.backends.0.ip", "10.0.0"],
      ["address not an IP", "spec.addresses.0", "gw.example"],
      ["weight on a serving backend", "spec.entries.0.backends.1.weight", 5],
      ["unknown state", "spec.entries.0.backends.0.state", "Up"],
    ],
  },
  {
    file: "dataplanenodes.blixt.dev.yaml",
    sample: sampleNode,
    validate: validateDataplaneNode,
    broken: [
      ["no nodeName", "spec.nodeName", DELETE],
      ["negative counter", "status.counters.services.0.packets", -1],
      ["counter port 0", "status.counters.services.0.port", 0],
      ["negative map usage", "status.maps.0.entries", -1],
      ["map without capacity", "status.maps.0.capacity", DELETE],
      [
        "table without generation",
        "status.tables.0.observedGeneration",
        DELETE,
      ],
    ],
  },
  {
    file: "gatewayclassconfigs.blixt.dev.yaml",
    sample: sampleConfig,
    validate: validateGatewayClassConfig,
    broken: [
      ["pool not a CIDR", "spec.addressPools.0.cidr", "198.18.0.0"],
      ["pool without name", "spec.addressPools.0.name", DELETE],
    ],
  },
];

for (const kind of kinds) {
  Deno.test(`${kind.file}: the full sample passes the CRD schema and the TypeScript validator`, async () => {
    const { schema } = await loadCrd(kind.file);
    assert.deepEqual(schemaErrors(schema, kind.sample), []);
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
    Deno.test(`${kind.file}: ${what} is refused by the schema and the validator`, async () => {
      const { schema } = await loadCrd(kind.file);
      const broken = withField(kind.sample, path, value);
      assert.notDeepEqual(
        schemaErrors(schema, broken),
        [],
        "schema accepted it",
      );
      const result = kind.validate(broken);
      assert.equal(result.ok, false, "validator accepted it");
      if (!result.ok) assert.ok(result.errors[0]?.path.length);
    });
  }
}

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
