/**
 * One-off measurement: what one RoutingTable write costs the API server, by
 * write method, table shape and CRD schema variant, on the local cluster.
 *
 * ```sh
 * deno run -A bench/tools/table_write.ts [--writes 20] [--shapes 100x10,64x10,10x10,1x10]
 *   [--variants current,noipformat,noformats,unvalidated,pattern,strings,strings-exact,liststring,compact]
 *   [--methods apply,merge,jsonpatch,jsonpatch-all,jsonpatch-backends,put,get] [--drop service,node] [--keep] [--kubeconfig PATH]
 *   [--layout entries|shared] [--services N] [--interleave] [--dump DIR]
 * ```
 *
 * Each variant is the RoutingTable CRD under a group of its own
 * (`<variant>.bench.blixt.dev`), so schemas can be compared side by side on
 * one API server: `noipformat` without the `anyOf` IP formats of backends,
 * `noformats` without any, `unvalidated` with backends left unchecked (the
 * bound of what their validation costs). `--drop service,node` leaves
 * those optional fields out of backends (with `service` dropped the entry
 * names it once, as the operator writes a table now). Each write changes one backend's
 * weight in entry 0 (what an endpoint change does to a table with a Service
 * per route); `jsonpatch-all` replaces every entry, `jsonpatch-backends` every
 * entry's backends (what an endpoint change of a Service behind every entry
 * moves). Prints one JSON line per (variant, shape, method): p50, p90 and
 * max of the request's wall time, the API server's CPU per request (from
 * `/proc`, steadier than wall time on shared cores), the object's size and
 * its managedFields' size.
 *
 * `strings`: each backend one string in `entries[].endpoints`,
 * `ip:port weight state [node]`, checked by a `pattern` (IPv6 by its shape;
 * `strings-exact` by an exact one); `liststring`: an entry's whole backend
 * list one string, `,`-separated. Use them with `--drop service,node` minus
 * `node` (the string carries the node; the entry names the Service).
 *
 * The endpoint `pattern`'s cost (docs/performance.md, "The endpoint pattern's
 * share"): `strings-nopattern` checks the strings' length only,
 * `strings-factored` with {@link factoredEndpointPattern} (the same strings),
 * `strings-unbounded` the same without the node's length bound,
 * `strings-split` and `strings-splitnot` the same strings in two checks (the
 * shape one-pass, the node's length in an `allOf` or a `not` pattern),
 * `strings-noaddrformat` without the entries' `anyOf` IP formats,
 * `strings-nolimits` without any of the entries' bounds and enums, and
 * `strings-compact` an entry shape the contract does not have (route and
 * Service one string each, no empty `backends`; `strings-routestring`,
 * `strings-servicestring`, `strings-nobackends` one of the three). `compact` is that shape as the
 * contract has it now: the RoutingTable CRD as it is (`routeRef`, `serviceRef`, each checked by its
 * pattern) and the table as the operator writes it for agents that list `compactEntries`
 * (`operator/shared_backends.ts`; use it with `--drop service`). `--dump DIR` writes each
 * variant's CRD and tables as JSON for `bench/tools/schema_validate` (no
 * cluster).
 *
 * `--layout shared` measures a layout the contract does not have (yet): the
 * backends listed once per Service in `spec.backendSets[]` (`service`,
 * `backends[]` of `ip`, `port`, `node`, `state`), entries referring to them
 * with a weight per ready backend (`backendRefs[]` of `set`, `weight`), in a
 * CRD variant `shared` that validates them as the current schema does; each
 * write moves the weight of entry 0's reference. `--services N`: the table's
 * entries share N Services round-robin (1: the operator benchmark's shape, a
 * Service for all of a Gateway's listeners); without it each entry has its own.
 *
 * @module
 */
import { parse } from "yaml";
import { parseArgs } from "node:util";
import { clusterDown, clusterUp } from "../../tests/cluster/cluster.ts";
import {
  applyObject,
  type KubeObject,
  loadKubeConfig,
  shareConnections,
} from "../../kube/client.ts";
import { METADATA_ONLY, requestJson } from "../../kube/rest.ts";
import type { RoutingTable } from "../../api/mod.ts";
import { backendsAsStrings, compactEntries } from "../../operator/shared_backends.ts";
import { percentile } from "../stats.ts";

const NAME = "table-write";
const CRD = new URL("../../manifests/crds/routingtables.blixt.dev.yaml", import.meta.url);

type Schema = Record<string, unknown>;

/**
 * An exact IPv4-or-IPv6 regular expression (Go's `net.ParseIP` since 1.17: no
 * leading zeros, no zones; checked against it on 600,000 strings): the
 * `pattern` variant's address check, one string validator instead of `anyOf`'s
 * two schema validators a value.
 */
function ipPattern(): string {
  const o = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
  const v4 = `${o}\\.${o}\\.${o}\\.${o}`;
  const h = "[0-9a-fA-F]{1,4}";
  const alts = [`(${h}:){7}${h}`, `(${h}:){1,7}:`];
  for (const [k, t] of [[6, 1], [5, 2], [4, 3], [3, 4], [2, 5]]) {
    alts.push(`(${h}:){1,${k}}(:${h}){1,${t}}`);
  }
  alts.push(`${h}:(:${h}){1,6}`, `:((:${h}){1,7}|:)`, `(${h}:){6}${v4}`, `::(${h}:){0,5}${v4}`);
  for (let k = 1; k <= 5; k++) alts.push(`(${h}:){${k}}:(${h}:){0,${5 - k}}${v4}`);
  return `^(${v4}|${alts.join("|")})$`;
}

/**
 * One backend as one string, `ip:port weight state [node]` (IPv6 as
 * `[addr]:port`): the `strings` variants' pattern, without anchors. The port
 * 1-65535, the weight 0-1,000,000 (0 unless Ready), IPv4 exact, IPv6 by its
 * shape only (`exact`: {@link ipPattern}'s IPv6 too), a node a DNS subdomain.
 */
export function endpointPattern(exact = false): string {
  const o = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
  const v4 = `${o}(\\.${o}){3}`;
  const v6 = exact ? ipPattern().slice(2, -2) : "[0-9a-fA-F:.]{2,45}";
  const port =
    "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
  const weight = "([1-9][0-9]{0,5}|1000000|0) Ready|0 (Serving|Terminating)";
  const node = "[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?";
  return `(${v4}|\\[${v6}\\]):${port} (${weight})( ${node})?`;
}

/**
 * The digits after a weight's leading `1`: any 0-5 of them or `000000` (up to
 * 1,000,000), written so that the next character always decides the branch.
 */
function afterOne(k = 5): string {
  if (k === 0) return "0?";
  return `([1-9]${k > 1 ? `[0-9]{0,${k - 1}}` : ""}|0${afterOne(k - 1)})?`;
}

/**
 * {@link endpointPattern} (not `exact`) factored so that no two branches of an
 * alternation start with the same character (Go's one-pass condition) up to
 * the node: the same strings (bench/tools/table_write_test.ts).
 * `boundedNode: false` leaves the node's length unbounded (not the same
 * strings: only to see what the bound costs).
 */
export function factoredEndpointPattern(boundedNode = true): string {
  const o = "(0|1([0-9][0-9]?)?|2([0-4][0-9]?|5[0-5]?|[6-9])?|[3-9][0-9]?)";
  const port = "([1-5][0-9]{0,4}|6([0-4][0-9]{0,3}|5([0-4][0-9]{0,2}|5([0-2][0-9]?|3[0-5]?|" +
    "[4-9])?|[6-9][0-9]?)?|[6-9][0-9]{0,2})?|[7-9][0-9]{0,3})";
  const weight = `0 (Ready|Serving|Terminating)|([2-9][0-9]{0,5}|1${afterOne()}) Ready`;
  const node = boundedNode ? "[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?" : "[a-z0-9]([-.]*[a-z0-9])*";
  return `(${o}(\\.${o}){3}|\\[[0-9a-fA-F:.]{2,45}\\]):${port} (${weight})( ${node})?`;
}

/**
 * What a `strings-compact*` variant changes in an entry: `route` and `service`
 * one string each, `backends` (empty) left out; `strings-compact` all three,
 * `strings-routestring`, `strings-servicestring`, `strings-nobackends` one.
 */
function compactParts(variant: string): string[] {
  const one: Record<string, string[]> = {
    "strings-compact": ["route", "service", "backends"],
    "strings-routestring": ["route"],
    "strings-servicestring": ["service"],
    "strings-nobackends": ["backends"],
  };
  return one[variant] ?? [];
}

/** The RoutingTable CRD as `variant` changes it. */
function crdVariant(variant: string): KubeObject {
  const crd = parse(Deno.readTextFileSync(CRD)) as KubeObject & {
    spec: { group: string; versions: { schema: { openAPIV3Schema: Schema } }[] };
  };
  const group = `${variant}.bench.blixt.dev`;
  crd.metadata = { ...crd.metadata, name: `routingtables.${group}` };
  crd.spec.group = group;
  const spec = (crd.spec.versions[0]!.schema.openAPIV3Schema.properties as Schema).spec as Schema;
  const entry = ((spec.properties as Schema).entries as Schema).items as Schema;
  const backend = ((entry.properties as Schema).backends as Schema).items as Schema;
  const ip = (backend.properties as Schema).ip as Schema;
  const entryProps = entry.properties as Schema;
  if (variant === "noipformat") delete ip.anyOf;
  else if (variant === "pattern") {
    for (const field of [ip, entryProps.address as Schema]) {
      delete field.anyOf;
      field.pattern = ipPattern();
    }
  } else if (variant === "noformats") {
    delete ip.anyOf;
    delete (entryProps.address as Schema).anyOf;
  } else if (variant === "unvalidated") {
    // the upper bound of what validating backends costs (not a candidate: bad input would pass)
    (entryProps.backends as Schema).items = {
      type: "object",
      "x-kubernetes-preserve-unknown-fields": true,
    };
  } else if (variant === "strings" || variant === "strings-exact") {
    // each backend one string in entries[].endpoints, backends left empty
    entryProps.endpoints = {
      type: "array",
      maxItems: 4096,
      "x-kubernetes-list-type": "atomic",
      items: {
        type: "string",
        maxLength: 330,
        pattern: `^${endpointPattern(variant === "strings-exact")}$`,
      },
    };
  } else if (variant.startsWith("strings-") && variant !== "strings-exact") {
    // the endpoint pattern's cost: `strings` with another check of each string
    const items = {
      type: "string",
      maxLength: 330,
      pattern: `^${endpointPattern()}$`,
    } as Schema;
    if (variant === "strings-nopattern") delete items.pattern; // only the bound: not a candidate
    else if (variant === "strings-factored") items.pattern = `^${factoredEndpointPattern()}$`;
    else if (variant === "strings-unbounded") {
      // the node's length unbounded: not a candidate
      items.pattern = `^${factoredEndpointPattern(false)}$`;
    } else if (compactParts(variant).length > 0) {
      // not this contract (an agent would need a feature for it): an entry's route and Service
      // one string each, no empty `backends`
      const parts = compactParts(variant);
      if (parts.includes("route")) {
        entryProps.route = {
          type: "string",
          maxLength: 330,
          pattern: "^(TCPRoute|UDPRoute) [^ /]+/[^ /]+$",
        };
      }
      if (parts.includes("service")) {
        entryProps.service = {
          type: "string",
          maxLength: 330,
          pattern: "^[^ /]+/[^ /:]+:[0-9]+$",
        };
      }
      if (parts.includes("backends")) {
        entry.required = (entry.required as string[]).filter((r) => r !== "backends");
      }
    } else if (variant === "strings-split" || variant === "strings-splitnot") {
      // the same strings in two checks: the shape one-pass (node unbounded), the node's length
      // apart (`allOf` a one-pass pattern, or `not` a run of 254 non-spaces)
      items.pattern = `^${factoredEndpointPattern(false)}$`;
      if (variant === "strings-split") {
        items.allOf = [{ pattern: "^[^ ]* [^ ]* [^ ]*( [^ ]{1,253})?$" }];
      } else items.not = { pattern: "[^ ]{254}" };
    } else if (variant === "strings-nolimits") {
      // the entries' fields with their types only (no maxLength, enum, minimum...): not a candidate
      const bare = (props: Schema) => {
        for (const f of Object.values(props) as Schema[]) {
          for (const k of ["maxLength", "minLength", "enum", "minimum", "maximum", "anyOf"]) {
            delete f[k];
          }
          if (f.type === "object" && f.properties) bare(f.properties as Schema);
        }
      };
      bare(entryProps);
    } else if (variant === "strings-noaddrformat") {
      // no anyOf ipv4/ipv6 on the entries' address (only the bound): not a candidate
      delete (entryProps.address as Schema).anyOf;
    } else throw new Error(`unknown variant ${variant}`);
    entryProps.endpoints = {
      type: "array",
      maxItems: 4096,
      "x-kubernetes-list-type": "atomic",
      items,
    };
  } else if (variant === "liststring") {
    // an entry's whole backend list one string, backends separated by ","
    const one = endpointPattern();
    entryProps.endpoints = { type: "string", maxLength: 1048576, pattern: `^(${one})(,${one})*$` };
  } else if (variant === "shared") {
    // backends once per Service in spec.backendSets, entries referring to them
    const setBackend = structuredClone(backend);
    const props = setBackend.properties as Schema;
    delete props.weight;
    delete props.service;
    setBackend.required = ["ip", "port", "state"];
    const specProps = spec.properties as Schema;
    specProps.backendSets = {
      type: "array",
      maxItems: 4096,
      "x-kubernetes-list-type": "atomic",
      items: {
        type: "object",
        required: ["service", "backends"],
        properties: {
          service: structuredClone(entryProps.service),
          backends: { ...(entryProps.backends as Schema), items: setBackend },
        },
      },
    };
    delete entryProps.backends;
    delete entryProps.service;
    entryProps.backendRefs = {
      type: "array",
      maxItems: 16,
      "x-kubernetes-list-type": "atomic",
      items: {
        type: "object",
        required: ["set", "weight"],
        properties: {
          set: { type: "integer", minimum: 0, maximum: 4095 },
          weight: { type: "integer", minimum: 0, maximum: 1000000 },
        },
      },
    };
    entry.required = (entry.required as string[]).filter((r) => r !== "backends");
  } else if (variant !== "current" && variant !== "compact") {
    // `compact`: the CRD as it is, which has the compact form
    throw new Error(`unknown variant ${variant}`);
  }
  return crd;
}

/**
 * `drop`: optional backend fields left out (`service`, `node`), to see what
 * they cost; with `service` dropped the entry names the Service once instead.
 */
function table(
  group: string,
  shape: [number, number],
  weight: number,
  drop: string[] = [],
  services = 0,
): RoutingTable {
  const [entries, backends] = shape;
  const vip = "198.18.200.1";
  // the Service of entry e: its own, or one of `services` shared round-robin
  const svc = (e: number) => services > 0 ? e % services : e;
  return {
    apiVersion: `${group}/v1alpha1` as "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: { name: `t-${entries}x${backends}`, namespace: "default" },
    spec: {
      addresses: [vip],
      entries: Array.from({ length: entries }, (_, e) => ({
        address: vip,
        port: 1000 + e,
        protocol: "TCP" as const,
        listener: `listener-${e}`,
        route: { kind: "TCPRoute" as const, namespace: "default", name: `route-${e}` },
        rejectWeight: 0,
        // as the operator writes it: one Service for all backends is named once, by the entry
        ...(drop.includes("service")
          ? { service: { namespace: "default", name: `svc-${svc(e)}`, port: 80 } }
          : {}),
        backends: Array.from({ length: backends }, (_, b) => ({
          ip: `198.19.${svc(e) % 250}.${2 + b}`,
          port: 8080,
          weight: e === 0 && b === 0 ? weight : 100000,
          state: "Ready" as const,
          ...(drop.includes("node") ? {} : { node: `node-${1 + (b % 2)}` }),
          ...(drop.includes("service") ? {} : {
            service: { namespace: "default", name: `svc-${svc(e)}`, port: 80 },
          }),
        })),
      })),
    },
  };
}

/**
 * The same table in the `shared` layout: each Service's backends once in
 * `spec.backendSets`, entries referring to their set with the weight of each
 * of its ready backends. Entry 0's weight is `weight`, as in {@link table}.
 */
function sharedTable(
  group: string,
  shape: [number, number],
  weight: number,
  services = 0,
): KubeObject {
  const [entries, backends] = shape;
  const vip = "198.18.200.1";
  const sets = services > 0 ? Math.min(services, entries) : entries;
  return {
    apiVersion: `${group}/v1alpha1`,
    kind: "RoutingTable",
    metadata: { name: `t-${entries}x${backends}`, namespace: "default" },
    spec: {
      addresses: [vip],
      backendSets: Array.from({ length: sets }, (_, s) => ({
        service: { namespace: "default", name: `svc-${s}`, port: 80 },
        backends: Array.from({ length: backends }, (_, b) => ({
          ip: `198.19.${s % 250}.${2 + b}`,
          port: 8080,
          state: "Ready",
          node: `node-${1 + (b % 2)}`,
        })),
      })),
      entries: Array.from({ length: entries }, (_, e) => ({
        address: vip,
        port: 1000 + e,
        protocol: "TCP",
        listener: `listener-${e}`,
        route: { kind: "TCPRoute", namespace: "default", name: `route-${e}` },
        rejectWeight: 0,
        backendRefs: [{ set: e % sets, weight: e === 0 ? weight : 100000 }],
      })),
    },
  };
}

/**
 * `t` with each entry's backends as strings in `endpoints` (one string for
 * the whole list when `oneString`), `backends` empty.
 */
function asStrings(t: RoutingTable, oneString: boolean, compact: string[] = []): KubeObject {
  return {
    ...t,
    spec: {
      ...t.spec,
      entries: t.spec.entries.map((x) => {
        const list = x.backends.map((b) =>
          `${b.ip.includes(":") ? `[${b.ip}]` : b.ip}:${b.port} ${b.weight} ${b.state}${
            b.node ? ` ${b.node}` : ""
          }`
        );
        if (compact.length > 0) {
          // the `strings-compact*` variants: route and Service one string each, no `backends`
          const { backends: _, route, service, ...rest } = x;
          return {
            ...rest,
            ...(compact.includes("backends") ? {} : { backends: [] }),
            ...(route && compact.includes("route")
              ? { route: `${route.kind} ${route.namespace}/${route.name}` }
              : { route }),
            ...(service && compact.includes("service")
              ? { service: `${service.namespace}/${service.name}:${service.port}` }
              : { service }),
            endpoints: list,
          };
        }
        return { ...x, backends: [], endpoints: oneString ? list.join(",") : list };
      }),
    },
  } as unknown as KubeObject;
}

/** `t` as the operator writes it once every agent lists `endpoints` and `compactEntries`. */
function compactTable(t: RoutingTable): KubeObject {
  return { ...t, spec: compactEntries(backendsAsStrings(t.spec)) } as unknown as KubeObject;
}

/**
 * CPU time (user + system) the API server of `kc` has used, in ms: the
 * kube-apiserver process listening on the kubeconfig's address.
 */
function apiserverCpuMs(kc: { getCurrentCluster(): { server: string } | null }): number {
  const host = new URL(kc.getCurrentCluster()!.server).hostname;
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    let cmd: string;
    try {
      cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
    } catch {
      continue;
    }
    if (!cmd.includes("\0apiserver\0") || !cmd.includes(`--bind-address=${host}\0`)) continue;
    const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10; // USER_HZ = 100
  }
  throw new Error(`no kube-apiserver bound to ${host}`);
}

type Build = (group: string, shape: [number, number], weight: number) => KubeObject;

/** One write (or read) of `method`; its wall time in ms. */
async function writeOnce(
  kc: ReturnType<typeof loadKubeConfig>,
  method: string,
  path: string,
  want: KubeObject & { spec: { entries: unknown[] } },
  shared: boolean,
): Promise<number> {
  const t0 = performance.now();
  if (method === "apply") {
    await requestJson(kc, path, {
      method: "PATCH",
      query: { fieldManager: "blixt-operator", force: true },
      body: want,
      contentType: "application/apply-patch+yaml",
    });
  } else if (method === "merge") {
    await requestJson(kc, path, {
      method: "PATCH",
      query: { fieldManager: "blixt-operator" },
      body: { spec: want.spec },
      contentType: "application/merge-patch+json",
    });
  } else if (method === "jsonpatch" || method === "jsonpatch-meta") {
    // -meta: answered with the metadata only, not the whole table
    await requestJson(kc, path, {
      method: "PATCH",
      query: { fieldManager: "blixt-operator" },
      body: [{ op: "replace", path: "/spec/entries/0", value: want.spec.entries[0] }],
      contentType: "application/json-patch+json",
      ...(method === "jsonpatch-meta" ? { accept: METADATA_ONLY } : {}),
    });
  } else if (method === "jsonpatch-all" || method === "jsonpatch-backends") {
    // every entry changed (one Service behind all of them): the whole entries, or only
    // what an endpoint change moves in each
    const entries = want.spec.entries as Record<string, unknown>[];
    const field = shared ? "backendRefs" : "backends";
    await requestJson(kc, path, {
      method: "PATCH",
      query: { fieldManager: "blixt-operator" },
      body: entries.map((entry, i) =>
        method === "jsonpatch-all"
          ? { op: "replace", path: `/spec/entries/${i}`, value: entry }
          : { op: "replace", path: `/spec/entries/${i}/${field}`, value: entry[field] }
      ),
      contentType: "application/json-patch+json",
    });
  } else if (method === "put") {
    const have = await requestJson<RoutingTable>(kc, path);
    const t1 = performance.now();
    await requestJson(kc, path, {
      method: "PUT",
      query: { fieldManager: "blixt-operator" },
      body: { ...want, metadata: have.metadata },
    });
    return performance.now() - t1;
  } else if (method === "get") {
    await requestJson(kc, path);
  } else throw new Error(`unknown method ${method}`);
  return performance.now() - t0;
}

/** Applies `variant`'s CRD, waits until it is served; the collection's path. */
async function setUpVariant(
  kc: ReturnType<typeof loadKubeConfig>,
  variant: string,
): Promise<{ group: string; base: string }> {
  await applyObject(kc, crdVariant(variant), { fieldManager: "bench", force: true });
  const group = `${variant}.bench.blixt.dev`;
  const base = `/apis/${group}/v1alpha1/namespaces/default/routingtables`;
  for (let i = 0;; i++) {
    try {
      await requestJson(kc, base);
      return { group, base };
    } catch (err) {
      if (i > 100) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Creates (applies) the first table of `shape`; its path. */
async function firstTable(
  kc: ReturnType<typeof loadKubeConfig>,
  base: string,
  table: KubeObject,
): Promise<string> {
  const path = `${base}/${table.metadata?.name}`;
  await requestJson(kc, path, {
    method: "PATCH",
    query: { fieldManager: "blixt-operator", force: true },
    body: table,
    contentType: "application/apply-patch+yaml",
  });
  return path;
}

interface Case {
  variant: string;
  method: string;
  times: number[];
  cpuMs: number;
}

function report(
  c: Case,
  extra: Record<string, unknown>,
  obj: KubeObject,
): void {
  const n = c.times.length;
  console.log(JSON.stringify({
    variant: c.variant,
    ...extra,
    method: c.method,
    p50: Math.round(percentile(c.times, 50)),
    p90: Math.round(percentile(c.times, 90)),
    max: Math.round(Math.max(...c.times)),
    // CPU of the API server per request: steadier than wall time on shared cores
    apiserverCpuMs: Math.round((c.cpuMs / n) * 10) / 10,
    objectBytes: JSON.stringify(obj).length,
    managedFieldsBytes: JSON.stringify(obj.metadata?.managedFields ?? []).length,
    load: Deno.loadavg()[0],
  }));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      writes: { type: "string", default: "20" },
      shapes: { type: "string", default: "100x10,64x10,10x10,1x10" },
      variants: { type: "string", default: "current,noipformat" },
      methods: { type: "string", default: "apply,merge,jsonpatch,put,get" },
      keep: { type: "boolean", default: false },
      kubeconfig: { type: "string" },
      drop: { type: "string", default: "" },
      layout: { type: "string", default: "entries" },
      services: { type: "string", default: "0" },
      interleave: { type: "boolean", default: false },
      block: { type: "string", default: "10" },
      dump: { type: "string" },
    },
  });
  const writes = Number(values.writes);
  const shapes = values.shapes.split(",").map((s) => s.split("x").map(Number) as [number, number]);
  const variants = values.variants.split(",");
  const methods = values.methods.split(",");
  const drop = values.drop.split(",").filter((f) => f);
  const services = Number(values.services);
  const block = Number(values.block);
  if (values.layout !== "entries" && values.layout !== "shared") {
    throw new Error(`--layout entries|shared, not ${values.layout}`);
  }
  const shared = values.layout === "shared";
  const build: Build = (group, shape, weight) =>
    shared ? sharedTable(group, shape, weight, services) : group.startsWith("compact.")
      // the contract's compact form, as the operator writes it for agents that list compactEntries
      ? compactTable(table(group, shape, weight, drop, services))
      : group.startsWith("strings") || group.startsWith("liststring")
      ? asStrings(
        table(group, shape, weight, drop, services),
        group.startsWith("liststring"),
        compactParts(group.split(".")[0]!),
      )
      : table(group, shape, weight, drop, services) as unknown as KubeObject;
  if (values.dump) {
    // no cluster: each variant's CRD and, per shape, the stored table and the written one (as
    // JSON), for bench/tools/schema_validate to validate without an API server
    await Deno.mkdir(values.dump, { recursive: true });
    for (const variant of variants) {
      const crd = crdVariant(variant);
      Deno.writeTextFileSync(`${values.dump}/${variant}.crd.json`, JSON.stringify(crd));
      for (const shape of shapes) {
        const name = `${values.dump}/${variant}.${shape[0]}x${shape[1]}`;
        const group = `${variant}.bench.blixt.dev`;
        Deno.writeTextFileSync(`${name}.old.json`, JSON.stringify(build(group, shape, 1)));
        Deno.writeTextFileSync(`${name}.new.json`, JSON.stringify(build(group, shape, 2)));
      }
    }
    return;
  }
  // --kubeconfig: an API server already up (e.g. one started with BLIXT_APISERVER_PROFILING=1)
  const kc = values.kubeconfig
    ? loadKubeConfig({ kubeconfig: values.kubeconfig })
    : (await clusterUp({ name: NAME, nodes: 1 })).kubeConfig();
  const connections = shareConnections(kc);
  const extra = (shape: [number, number]) => ({
    layout: values.layout,
    services,
    shape: `${shape[0]}x${shape[1]}`,
  });
  try {
    if (values.interleave) {
      // every (variant, method) one write in turn, the order rotating: the same load for all
      const groups = new Map<string, { group: string; base: string }>();
      for (const variant of variants) groups.set(variant, await setUpVariant(kc, variant));
      for (const shape of shapes) {
        const paths = new Map<string, string>();
        for (const [variant, { group, base }] of groups) {
          paths.set(variant, await firstTable(kc, base, build(group, shape, 1)));
        }
        const cases: Case[] = variants.flatMap((variant) =>
          methods.map((method) => ({ variant, method, times: [], cpuMs: 0 }))
        );
        // blocks of `block` writes, so the garbage a write leaves is mostly collected (and its
        // CPU counted) in its own case's block; the cases in a new random order each round
        for (let w = 0; w < writes; w += block) {
          const order = cases.map((c) => ({ c, r: Math.random() })).sort((a, b) => a.r - b.r);
          for (const { c } of order) {
            const { group } = groups.get(c.variant)!;
            const cpu0 = apiserverCpuMs(kc);
            for (let b = 0; b < block && w + b < writes; b++) {
              const want = build(group, shape, 2 + ((w + b) % 2)) as KubeObject & {
                spec: { entries: unknown[] };
              };
              c.times.push(await writeOnce(kc, c.method, paths.get(c.variant)!, want, shared));
            }
            c.cpuMs += apiserverCpuMs(kc) - cpu0;
          }
        }
        for (const c of cases) {
          report(c, extra(shape), await requestJson<KubeObject>(kc, paths.get(c.variant)!));
        }
      }
      return;
    }
    for (const variant of variants) {
      const { group, base } = await setUpVariant(kc, variant);
      for (const shape of shapes) {
        const path = await firstTable(kc, base, build(group, shape, 1));
        for (const method of methods) {
          const c: Case = { variant, method, times: [], cpuMs: 0 };
          const cpu0 = apiserverCpuMs(kc);
          for (let w = 0; w < writes; w++) {
            const want = build(group, shape, 2 + (w % 2)) as KubeObject & {
              spec: { entries: unknown[] };
            };
            c.times.push(await writeOnce(kc, method, path, want, shared));
          }
          c.cpuMs = apiserverCpuMs(kc) - cpu0;
          report(c, extra(shape), await requestJson<KubeObject>(kc, path));
        }
      }
    }
  } finally {
    connections.close();
    if (!values.keep && !values.kubeconfig) await clusterDown(NAME);
  }
}

if (import.meta.main) await main();
