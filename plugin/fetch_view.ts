/**
 * Reads what each command needs from the API server into a
 * {@linkcode ClusterView}: Gateways, their classes, TCPRoutes and UDPRoutes
 * (v1, or v1alpha2 where v1 is not served), RoutingTables and DataplaneNodes
 * (validated against the contract; invalid ones are skipped with a warning),
 * Nodes, and Namespaces when a listener selects them by label. Read-only.
 *
 * @module
 */
import {
  AGENT_LEASE_SELECTOR,
  type AgentLeaseRecord,
  agentLeaseRecord,
  API_VERSION,
  DATAPLANE_NODE_PLURAL,
  type DataplaneNode,
  formatFieldErrors,
  GROUP,
  ROUTING_TABLE_PLURAL,
  type RoutingTable,
  validateDataplaneNode,
  validateRoutingTable,
  VERSION,
} from "../api/mod.ts";
import { apiStatus, k8s } from "../kube/client.ts";
import { type Gateway, GATEWAY_GROUP, type GatewayClass, type L4Route } from "../operator/mod.ts";
import { type ClusterView, needsNamespaces } from "./cluster_view.ts";

/** A failure to read from the cluster, with the exit code it maps to. */
export class ReadError extends Error {
  /** Process exit code, see README.md. */
  readonly exitCode: number;
  /** Creates it. */
  constructor(message: string, exitCode: number) {
    super(message);
    this.name = "ReadError";
    this.exitCode = exitCode;
  }
}

/** Exit code of an error from the cluster or its configuration. */
export const EXIT_ERROR = 1;

/** The route kinds blixt serves, with their plural resource names. */
export const ROUTE_RESOURCES = { TCPRoute: "tcproutes", UDPRoute: "udproutes" } as const;
/** A route kind. */
export type RouteKindName = keyof typeof ROUTE_RESOURCES;

/** Route API versions, preferred first. */
export const ROUTE_VERSIONS = ["v1", "v1alpha2"] as const;

/**
 * Which version of a route resource to read: the first of
 * {@linkcode ROUTE_VERSIONS} whose discovery document lists the plural;
 * undefined when none does (the CRD is not installed).
 */
export function chooseRouteVersion(
  plural: string,
  served: ReadonlyMap<string, readonly string[]>,
): string | undefined {
  return ROUTE_VERSIONS.find((v) => served.get(v)?.includes(plural));
}

function bodyMessage(body: unknown): string | undefined {
  let b = body;
  if (typeof body === "string") {
    try {
      b = JSON.parse(body);
    } catch {
      return body.trim() || undefined;
    }
  }
  if (typeof b === "object" && b !== null && "message" in b) {
    return String((b as { message: unknown }).message);
  }
  return undefined;
}

/** Turns a client error into a {@linkcode ReadError} with a kubectl-like message. */
export function readError(err: unknown, what: string): ReadError {
  if (err instanceof ReadError) return err;
  const code = apiStatus(err);
  if (code !== undefined) {
    const detail = bodyMessage((err as k8s.ApiException<unknown>).body);
    const kind = code === 401
      ? "Unauthorized"
      : code === 403
      ? "Forbidden"
      : code === 404
      ? "NotFound"
      : `HTTP ${code}`;
    return new ReadError(
      `Error from server (${kind}): ${detail ?? `reading ${what}`}`,
      EXIT_ERROR,
    );
  }
  const message = err instanceof Error ? err.message : String(err);
  // node-fetch: "request to URL failed, reason: connect ECONNREFUSED ..."; the same
  // for every request, so the message does not depend on which one failed first
  const unreachable = /^request to (\S+) failed, reason: (.*)$/s.exec(message);
  if (unreachable) {
    let server = unreachable[1] as string;
    try {
      server = new URL(server).origin;
    } catch { /* keep the URL as it is */ }
    return new ReadError(
      `error: cannot reach the API server at ${server}: ${unreachable[2]}`,
      EXIT_ERROR,
    );
  }
  return new ReadError(`error: reading ${what}: ${message}`, EXIT_ERROR);
}

interface ListResult {
  items?: unknown[];
}

/** The API clients a command uses, with the route versions discovered once. */
class Reader {
  readonly custom: k8s.CustomObjectsApi;
  readonly core: k8s.CoreV1Api;
  readonly coordination: k8s.CoordinationV1Api;
  readonly warnings: string[] = [];
  #routeVersions: Promise<Map<string, readonly string[]>> | undefined;

  constructor(kc: k8s.KubeConfig) {
    this.custom = kc.makeApiClient(k8s.CustomObjectsApi);
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.coordination = kc.makeApiClient(k8s.CoordinationV1Api);
  }

  /** Resources served per Gateway API route version (absent versions are empty). */
  servedRouteVersions(): Promise<Map<string, readonly string[]>> {
    this.#routeVersions ??= (async () => {
      const served = new Map<string, readonly string[]>();
      for (const version of ROUTE_VERSIONS) {
        try {
          const list = await this.custom.getAPIResources({ group: GATEWAY_GROUP, version });
          served.set(version, list.resources.map((r) => r.name));
        } catch (err) {
          if (apiStatus(err) !== 404) throw readError(err, `${GATEWAY_GROUP}/${version}`);
        }
      }
      return served;
    })();
    return this.#routeVersions;
  }

  async list(
    group: string,
    version: string,
    plural: string,
    namespace: string | undefined,
  ): Promise<unknown[]> {
    try {
      const result = namespace === undefined
        ? await this.custom.listClusterCustomObject({ group, version, plural })
        : await this.custom.listNamespacedCustomObject({ group, version, plural, namespace });
      return (result as ListResult).items ?? [];
    } catch (err) {
      if (apiStatus(err) === 404) {
        throw new ReadError(
          `error: the server doesn't have a resource type "${plural}.${group}" (${version}); are the CRDs installed?`,
          EXIT_ERROR,
        );
      }
      throw readError(err, `${plural}.${group}`);
    }
  }

  async get(
    group: string,
    version: string,
    plural: string,
    key: { namespace: string; name: string },
  ): Promise<unknown | undefined> {
    try {
      return await this.custom.getNamespacedCustomObject({ group, version, plural, ...key });
    } catch (err) {
      if (apiStatus(err) === 404) return undefined;
      throw readError(err, `${plural}.${group} ${key.namespace}/${key.name}`);
    }
  }

  async gateways(namespace: string | undefined): Promise<Gateway[]> {
    return await this.list(GATEWAY_GROUP, "v1", "gateways", namespace) as Gateway[];
  }

  async gateway(namespace: string, name: string): Promise<Gateway | undefined> {
    return await this.get(GATEWAY_GROUP, "v1", "gateways", { namespace, name }) as
      | Gateway
      | undefined;
  }

  /** GatewayClasses; undefined when forbidden (then nothing is filtered out). */
  async gatewayClasses(): Promise<GatewayClass[] | undefined> {
    try {
      return await this.list(GATEWAY_GROUP, "v1", "gatewayclasses", undefined) as GatewayClass[];
    } catch (err) {
      if (err instanceof ReadError && err.message.includes("(Forbidden)")) return undefined;
      throw err;
    }
  }

  /** Routes of both kinds; cluster-wide when allowed, else in `fallbackNamespace`. */
  async routes(namespace: string | undefined, fallbackNamespace?: string): Promise<L4Route[]> {
    const served = await this.servedRouteVersions();
    const out: L4Route[] = [];
    for (const [kind, plural] of Object.entries(ROUTE_RESOURCES)) {
      const version = chooseRouteVersion(plural, served);
      if (version === undefined) continue; // CRD not installed: no routes of this kind
      let items: unknown[];
      try {
        items = await this.list(GATEWAY_GROUP, version, plural, namespace);
      } catch (err) {
        if (
          namespace === undefined && fallbackNamespace !== undefined &&
          err instanceof ReadError && err.message.includes("(Forbidden)")
        ) {
          this.warnings.push(
            `Warning: cannot list ${plural} in all namespaces; routes from other namespaces are not shown`,
          );
          items = await this.list(GATEWAY_GROUP, version, plural, fallbackNamespace);
        } else throw err;
      }
      for (const item of items) out.push({ ...(item as L4Route), kind: kind as RouteKindName });
    }
    return out;
  }

  async route(kind: RouteKindName, namespace: string, name: string): Promise<L4Route | undefined> {
    const version = chooseRouteVersion(ROUTE_RESOURCES[kind], await this.servedRouteVersions());
    if (version === undefined) return undefined;
    const obj = await this.get(GATEWAY_GROUP, version, ROUTE_RESOURCES[kind], { namespace, name });
    return obj === undefined ? undefined : { ...(obj as L4Route), kind };
  }

  async routingTables(namespace: string | undefined): Promise<RoutingTable[]> {
    const items = await this.list(GROUP, VERSION, ROUTING_TABLE_PLURAL, namespace);
    const out: RoutingTable[] = [];
    for (const item of items) {
      const checked = validateRoutingTable(item);
      if (checked.ok) out.push(checked.value);
      else this.invalid("RoutingTable", item, checked.errors);
    }
    return out;
  }

  /**
   * The agents' liveness Leases in blixt-system; undefined when they cannot
   * be read (no permission: the view then says nothing about liveness).
   */
  async agentLeases(namespace = "blixt-system"): Promise<AgentLeaseRecord[] | undefined> {
    try {
      const list = await this.coordination.listNamespacedLease({
        namespace,
        labelSelector: AGENT_LEASE_SELECTOR,
      });
      return list.items.flatMap((l) => {
        // client-node turns MicroTime into a Date
        const renewTime = l.spec?.renewTime as unknown as Date | string | undefined;
        const record = agentLeaseRecord({
          metadata: { name: l.metadata?.name ?? "" },
          spec: {
            holderIdentity: l.spec?.holderIdentity ?? "",
            leaseDurationSeconds: l.spec?.leaseDurationSeconds ?? 0,
            ...(renewTime === undefined
              ? {}
              : { renewTime: renewTime instanceof Date ? renewTime.toISOString() : renewTime }),
          },
        });
        return record ? [record] : [];
      });
    } catch (err) {
      const code = apiStatus(err);
      if (code === 403 || code === 404) return undefined;
      throw err;
    }
  }

  async dataplaneNodes(): Promise<DataplaneNode[]> {
    const items = await this.list(GROUP, VERSION, DATAPLANE_NODE_PLURAL, undefined);
    const out: DataplaneNode[] = [];
    for (const item of items) {
      const checked = validateDataplaneNode(item);
      if (checked.ok) out.push(checked.value);
      else this.invalid("DataplaneNode", item, checked.errors);
    }
    return out;
  }

  invalid(kind: string, item: unknown, errors: Parameters<typeof formatFieldErrors>[0]) {
    const meta = (item as { metadata?: { namespace?: string; name?: string } }).metadata;
    const name = [meta?.namespace, meta?.name].filter((s) => s).join("/");
    this.warnings.push(
      `Warning: ignoring ${kind} ${name}: not a valid ${API_VERSION} ${kind}: ${
        formatFieldErrors(errors.slice(0, 3)).replaceAll("\n", "; ")
      }`,
    );
  }

  /** Nodes; undefined when forbidden. */
  async nodes(): Promise<k8s.V1Node[] | undefined> {
    try {
      return (await this.core.listNode()).items;
    } catch (err) {
      if (apiStatus(err) === 403) return undefined;
      throw readError(err, "nodes");
    }
  }

  /** Namespaces; undefined when forbidden. */
  async namespaces(): Promise<k8s.V1Namespace[] | undefined> {
    try {
      return (await this.core.listNamespace()).items;
    } catch (err) {
      if (apiStatus(err) === 403) return undefined;
      throw readError(err, "namespaces");
    }
  }
}

/** A view and the warnings met reading it (for stderr). */
export interface ReadResult {
  /** What was read. */
  view: ClusterView;
  /** Lines for stderr. */
  warnings: string[];
}

/**
 * Reads the view of `kubectl blixt status`: the blixt Gateways of
 * `namespace` (all namespaces when undefined), or the one named `gateway`.
 */
export async function readStatusView(
  kc: k8s.KubeConfig,
  options: { namespace: string | undefined; gateway?: string | undefined },
): Promise<ReadResult> {
  const r = new Reader(kc);
  try {
    let gateways: Gateway[];
    if (options.gateway !== undefined && options.namespace !== undefined) {
      const g = await r.gateway(options.namespace, options.gateway);
      gateways = g === undefined ? [] : [g];
    } else {
      gateways = await r.gateways(options.namespace);
    }
    const [gatewayClasses, routes, routingTables, dataplaneNodes, nodes, namespaces, agentLeases] =
      await Promise.all([
        r.gatewayClasses(),
        gateways.length === 0 ? [] : r.routes(undefined, options.namespace),
        gateways.length === 0 ? [] : r.routingTables(options.namespace),
        gateways.length === 0 ? [] : r.dataplaneNodes(),
        gateways.length === 0 ? [] : r.nodes(),
        needsNamespaces(gateways) ? r.namespaces() : undefined,
        gateways.length === 0 ? undefined : r.agentLeases(),
      ]);
    return {
      view: {
        gateways,
        gatewayClasses,
        routes,
        routingTables,
        dataplaneNodes,
        nodes,
        namespaces,
        agentLeases,
      },
      warnings: r.warnings,
    };
  } catch (err) {
    throw readError(err, "gateways");
  }
}

/** Reads the view of `kubectl blixt nodes`: Nodes, DataplaneNodes, every RoutingTable. */
export async function readNodesView(kc: k8s.KubeConfig): Promise<ReadResult> {
  const r = new Reader(kc);
  try {
    const [nodes, dataplaneNodes, routingTables, agentLeases] = await Promise.all([
      r.nodes(),
      r.dataplaneNodes(),
      r.routingTables(undefined),
      r.agentLeases(),
    ]);
    return {
      view: {
        gateways: [],
        gatewayClasses: [],
        routes: [],
        routingTables,
        dataplaneNodes,
        nodes,
        namespaces: undefined,
        agentLeases,
      },
      warnings: r.warnings,
    };
  } catch (err) {
    throw readError(err, "nodes");
  }
}

/**
 * Reads the view of `kubectl blixt explain`: the routes named `name` of the
 * given kinds in `namespace`, the Gateways they refer to, and those
 * Gateways' tables and nodes.
 */
export async function readExplainView(
  kc: k8s.KubeConfig,
  options: { namespace: string; name: string; kinds: readonly RouteKindName[] },
): Promise<ReadResult & { routes: L4Route[] }> {
  const r = new Reader(kc);
  try {
    const found = await Promise.all(
      options.kinds.map((k) => r.route(k, options.namespace, options.name)),
    );
    const routes = found.filter((x): x is L4Route => x !== undefined);
    const keys = new Map<string, { namespace: string; name: string }>();
    for (const route of routes) {
      for (const ref of route.spec?.parentRefs ?? []) {
        if (
          (ref.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (ref.kind ?? "Gateway") !== "Gateway"
        ) {
          continue;
        }
        const namespace = ref.namespace ?? route.metadata.namespace;
        keys.set(`${namespace}/${ref.name}`, { namespace, name: ref.name });
      }
    }
    const gateways = (await Promise.all([...keys.values()].map((k) =>
      r.gateway(k.namespace, k.name)
    )))
      .filter((g): g is Gateway => g !== undefined);
    const tableNamespaces = [...new Set(gateways.map((g) => g.metadata?.namespace ?? ""))];
    const [gatewayClasses, tables, dataplaneNodes, nodes, namespaces] = await Promise.all([
      r.gatewayClasses(),
      Promise.all(tableNamespaces.map((ns) => r.routingTables(ns))),
      gateways.length === 0 ? [] : r.dataplaneNodes(),
      gateways.length === 0 ? [] : r.nodes(),
      needsNamespaces(gateways) ? r.namespaces() : undefined,
    ]);
    return {
      routes,
      view: {
        gateways,
        gatewayClasses,
        routes,
        routingTables: tables.flat(),
        dataplaneNodes,
        nodes,
        namespaces,
      },
      warnings: r.warnings,
    };
  } catch (err) {
    throw readError(err, "routes");
  }
}

/** The API server's version, e.g. `v1.37.2`. */
export async function readServerVersion(kc: k8s.KubeConfig): Promise<string> {
  try {
    return (await kc.makeApiClient(k8s.VersionApi).getCode()).gitVersion;
  } catch (err) {
    throw readError(err, "the server version");
  }
}
