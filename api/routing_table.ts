/**
 * RoutingTable (blixt.dev/v1alpha1): what the operator wants the data plane to
 * do for one Gateway. Namespaced, one per Gateway, same name, owned by it.
 * Written by the operator, read by the agents and kubectl-blixt.
 *
 * @module
 */
import { FieldErrors, type JsonObject } from "./_field_checks.ts";
import { canonicalIp, parseIp } from "./ip_address.ts";
import {
  API_VERSION,
  type FieldError,
  MAX_WEIGHT,
  type ObjectMeta,
  type Validated,
} from "./meta.ts";

/** Kind name. */
export const ROUTING_TABLE_KIND = "RoutingTable";
/** Plural resource name, as in the CRD and the REST path. */
export const ROUTING_TABLE_PLURAL = "routingtables";

/** Layer-4 protocols the data plane serves. */
export const PROTOCOLS = ["TCP", "UDP"] as const;
/** A layer-4 protocol. */
export type Protocol = typeof PROTOCOLS[number];

/**
 * What a backend may do, from its EndpointSlice conditions:
 * `Ready` takes new flows; `Serving` is terminating but still serving, so it
 * keeps its existing flows and gets no new ones; `Terminating` serves nothing
 * and is listed only so existing flows end cleanly and counters stay readable.
 */
export const BACKEND_STATES = ["Ready", "Serving", "Terminating"] as const;
/** One of {@linkcode BACKEND_STATES}. */
export type BackendState = typeof BACKEND_STATES[number];

/**
 * The name an agent lists in its DataplaneNode `status.features` when it
 * understands `entries[].backendsFrom`.
 */
export const BACKENDS_FROM_FEATURE = "backendsFrom";

/**
 * The name an agent lists in its DataplaneNode `status.features` when it
 * understands `entries[].endpoints` (each backend one string).
 */
export const ENDPOINTS_FEATURE = "endpoints";

/**
 * The name an agent lists in its DataplaneNode `status.features` when it
 * understands compact entries: `entries[].routeRef` and `entries[].serviceRef`
 * (the route and the Service one string each) and `backends` left out of an
 * entry with `endpoints`.
 */
export const COMPACT_ENTRIES_FEATURE = "compactEntries";

/** Route kinds a RoutingTable entry can come from. */
export const ROUTE_KINDS = ["TCPRoute", "UDPRoute"] as const;

/** The route that carries an entry's traffic. */
export interface RouteRef {
  /** `TCPRoute` or `UDPRoute`. */
  kind: typeof ROUTE_KINDS[number];
  /** Route namespace. */
  namespace: string;
  /** Route name. */
  name: string;
}

/** The Service a backend was resolved from. */
export interface ServiceRef {
  /** Service namespace. */
  namespace: string;
  /** Service name. */
  name: string;
  /** The Service port the backendRef named. */
  port: number;
}

/** One endpoint traffic may go to. */
export interface Backend {
  /** Endpoint address, same family as the entry's address. */
  ip: string;
  /** Endpoint (target) port. */
  port: number;
  /**
   * Share of new flows, 0-1,000,000, comparable with the other backends'
   * weights and the entry's `rejectWeight`. 0: no new flows.
   */
  weight: number;
  /** Node the endpoint runs on, when the EndpointSlice says. */
  node?: string;
  /** What the backend may do, see {@linkcode BACKEND_STATES}. */
  state: BackendState;
  /** The Service the backend came from, when not the entry's `service`. */
  service?: ServiceRef;
}

/** One frontend, `address:port/protocol`, and where its traffic goes. */
export interface RoutingTableEntry {
  /** Virtual IP the Gateway listens on. */
  address: string;
  /** Listener port, 1-65535. */
  port: number;
  /** TCP or UDP. */
  protocol: Protocol;
  /** Name of the Gateway listener this entry implements. */
  listener: string;
  /** Route carrying the traffic; absent when no route is attached. */
  route?: RouteRef;
  /**
   * `route` as one string, `kind namespace/name` (e.g. `TCPRoute default/web`),
   * written instead of it once every agent lists
   * {@linkcode COMPACT_ENTRIES_FEATURE}; {@linkcode validateRoutingTable}
   * returns the entry with `route` and without `routeRef`.
   */
  routeRef?: string;
  /**
   * The Service of every backend that names none: when all of an entry's
   * backends come from one Service it is written once here rather than on
   * each backend (the API server's cost of a write grows with the object).
   */
  service?: ServiceRef;
  /**
   * `service` as one string, `namespace/name:port` (e.g. `default/web:80`),
   * written instead of it once every agent lists
   * {@linkcode COMPACT_ENTRIES_FEATURE}; {@linkcode validateRoutingTable}
   * returns the entry with `service` and without `serviceRef`.
   */
  serviceRef?: string;
  /**
   * The {@linkcode entryKey} of another entry of the same table (one without
   * `backendsFrom`, of the same address family) whose `service` and
   * `backends` this entry has too; then its own `backends` is `[]` and it has
   * no `service` (a table whose listeners all send to one Service lists its
   * backends once). The operator writes it only when every agent lists
   * {@linkcode BACKENDS_FROM_FEATURE}; {@linkcode validateRoutingTable}
   * returns the entry with the referenced entry's `backends` and `service`.
   */
  backendsFrom?: string;
  /**
   * The entry's backends, each one string `ip:port weight state [node]`
   * (IPv6 as `[addr]:port`), e.g. `198.19.1.5:8080 500000 Ready node-1`; then
   * its own `backends` is `[]`. The compact form of backends that name no
   * Service of their own: the API server's cost of a write grows with the
   * number of JSON values, and a backend object is six of them. The operator
   * writes it only when every agent lists {@linkcode ENDPOINTS_FEATURE};
   * {@linkcode validateRoutingTable} returns the entry with `backends`
   * parsed from it and without `endpoints`.
   */
  endpoints?: string[];
  /**
   * Backends, sorted by ip then port. As written, absent from a compact entry
   * with `endpoints` ({@linkcode COMPACT_ENTRIES_FEATURE}); a validated or
   * expanded entry always has it.
   */
  backends: Backend[];
  /**
   * Share of new flows to actively reject (TCP reset, ICMP port unreachable):
   * the weight of invalid backendRefs and of backendRefs with no ready
   * endpoint. When it and every backend weight are 0, all traffic is rejected.
   */
  rejectWeight: number;
}

/** Desired state of the data plane for one Gateway. */
export interface RoutingTableSpec {
  /** Addresses the Gateway is bound to (its `status.addresses` of type IPAddress). */
  addresses: string[];
  /** Keep the client address by sending only to backends on the receiving node. */
  localBackendsOnly?: boolean;
  /** Frontends, sorted by address, port, protocol; unique on those three. */
  entries: RoutingTableEntry[];
}

/** A RoutingTable object. */
export interface RoutingTable {
  /** `blixt.dev/v1alpha1`. */
  apiVersion: typeof API_VERSION;
  /** `RoutingTable`. */
  kind: typeof ROUTING_TABLE_KIND;
  /** Same name and namespace as the Gateway. */
  metadata: ObjectMeta & { namespace: string };
  /** The table. */
  spec: RoutingTableSpec;
}

/** Key of an entry: `address:port/protocol` (IPv6 in brackets). */
export function entryKey(
  entry: Pick<RoutingTableEntry, "address" | "port" | "protocol">,
): string {
  const host = entry.address.includes(":") ? `[${entry.address}]` : entry.address;
  return `${host}:${entry.port}/${entry.protocol}`;
}

/**
 * Checks an untrusted object (as read from the API server) against the
 * RoutingTable contract, reporting every problem with its field path.
 * Never throws.
 *
 * @example
 * ```ts
 * const result = validateRoutingTable(JSON.parse(text));
 * if (!result.ok) console.error(formatFieldErrors(result.errors));
 * ```
 */
export function validateRoutingTable(value: unknown): Validated<RoutingTable> {
  const e = new FieldErrors();
  if (!e.object(value, "")) return { ok: false, errors: e.list };
  if (value.apiVersion !== API_VERSION) {
    e.add("apiVersion", `must be ${API_VERSION}`);
  }
  if (value.kind !== ROUTING_TABLE_KIND) {
    e.add("kind", `must be ${ROUTING_TABLE_KIND}`);
  }
  if (e.object(value.metadata, "metadata")) {
    e.string(value.metadata.name, "metadata.name", { minLength: 1 });
    e.string(value.metadata.namespace, "metadata.namespace", { minLength: 1 });
  }
  if (e.object(value.spec, "spec")) checkSpec(value.spec, e);
  return e.list.length === 0
    ? { ok: true, value: expandRoutingTable(value as unknown as RoutingTable) }
    : { ok: false, errors: e.list };
}

/**
 * `table` with every entry's `endpoints` parsed into `backends`, `routeRef`
 * into `route` and `serviceRef` into `service` (the strings left out, a
 * missing `backends` filled), then every entry that has `backendsFrom` given the
 * referenced entry's `backends` (the same array) and `service`, keeping
 * `backendsFrom`; `table` itself when no entry has any of these. A reference
 * that does not resolve is left as it is (empty backends) and a string that
 * does not parse is left out: {@linkcode validateRoutingTable} reports both.
 * For readers that do not validate; a validated table is expanded
 * already.
 *
 * @example
 * ```ts
 * const entries = expandRoutingTable(table).spec.entries;
 * const all = entries.flatMap((e) => e.backends);
 * ```
 */
export function expandRoutingTable<T extends { spec: { entries: RoutingTableEntry[] } }>(
  table: T,
): T {
  const raw = table.spec.entries;
  if (
    !Array.isArray(raw) ||
    !raw.some((x) => x.backendsFrom !== undefined || hasStrings(x))
  ) return table;
  const entries = raw.map((x) => hasStrings(x) ? withStringsParsed(x) : x);
  const byKey = new Map<string, RoutingTableEntry>();
  for (const x of entries) {
    if (x.backendsFrom === undefined) byKey.set(canonicalKey(x), x);
  }
  return {
    ...table,
    spec: {
      ...table.spec,
      entries: entries.map((x) => {
        if (x.backendsFrom === undefined) return x;
        const from = byKey.get(canonicalKeyOf(x.backendsFrom));
        if (!from) return x;
        const { service: _, ...rest } = x;
        return {
          ...rest,
          ...(from.service ? { service: from.service } : {}),
          backends: from.backends,
        };
      }),
    },
  };
}

/** Endpoint lists that validated, each with its backends parsed (expansion does not parse again). */
const parsedEndpoints = new WeakMap<readonly unknown[], Backend[]>();

/** Whether `x` has a part in string form, or no `backends` (a compact entry). */
function hasStrings(x: RoutingTableEntry): boolean {
  return x.endpoints !== undefined || x.routeRef !== undefined || x.serviceRef !== undefined ||
    x.backends === undefined;
}

function withStringsParsed(x: RoutingTableEntry): RoutingTableEntry {
  const { endpoints, routeRef, serviceRef, ...rest } = x;
  const out: RoutingTableEntry = { ...rest, backends: rest.backends ?? [] };
  if (endpoints !== undefined) {
    const known = Array.isArray(endpoints) ? parsedEndpoints.get(endpoints) : undefined;
    if (known) out.backends = known;
    else {
      const backends: Backend[] = [];
      for (const s of Array.isArray(endpoints) ? endpoints : []) {
        const b = typeof s === "string" ? parseEndpoint(s) : undefined;
        if (b) backends.push(b);
      }
      out.backends = backends;
    }
  }
  const route = typeof routeRef === "string" ? parseRouteRef(routeRef) : undefined;
  if (route) out.route = route;
  const service = typeof serviceRef === "string" ? parseServiceRef(serviceRef) : undefined;
  if (service) out.service = service;
  return out;
}

/** A namespace in a reference string: a DNS label, as Kubernetes names namespaces. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A route's name in `routeRef`: a DNS subdomain, as Kubernetes names custom resources. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** `kind namespace/name`. */
const ROUTE_REF = /^(\S+) ([^\s/]+)\/([^\s/]+)$/;
/** `namespace/name:port`, port in decimal without leading zeros. */
const SERVICE_REF = /^([^\s/:]+)\/([^\s/:]+):([1-9]\d{0,4})$/;

/**
 * Parses an entry's `routeRef` (`kind namespace/name`) into a route, or
 * undefined when it is not exactly that: a route kind, a namespace that is
 * a DNS label, a name that is a DNS subdomain.
 *
 * @example
 * ```ts
 * parseRouteRef("TCPRoute default/web"); // { kind: "TCPRoute", namespace: "default", name: "web" }
 * ```
 */
export function parseRouteRef(s: string): RouteRef | undefined {
  const m = ROUTE_REF.exec(s);
  if (!m || !(ROUTE_KINDS as readonly string[]).includes(m[1]!)) return undefined;
  if (!DNS_LABEL.test(m[2]!) || !DNS_SUBDOMAIN.test(m[3]!)) return undefined;
  return { kind: m[1] as RouteRef["kind"], namespace: m[2]!, name: m[3]! };
}

/**
 * `route` as a `routeRef` string, or undefined when it has none (a name
 * Kubernetes would not give: such an entry keeps its `route` object).
 *
 * @example
 * ```ts
 * formatRouteRef({ kind: "UDPRoute", namespace: "dns", name: "coredns" });
 * // "UDPRoute dns/coredns"
 * ```
 */
export function formatRouteRef(route: RouteRef): string | undefined {
  const s = `${route.kind} ${route.namespace}/${route.name}`;
  return parseRouteRef(s) ? s : undefined;
}

/**
 * Parses an entry's `serviceRef` (`namespace/name:port`) into a Service, or
 * undefined when it is not exactly that: namespace and name DNS labels,
 * port 1-65535.
 *
 * @example
 * ```ts
 * parseServiceRef("default/web:80"); // { namespace: "default", name: "web", port: 80 }
 * ```
 */
export function parseServiceRef(s: string): ServiceRef | undefined {
  const m = SERVICE_REF.exec(s);
  if (!m || !DNS_LABEL.test(m[1]!) || !DNS_LABEL.test(m[2]!)) return undefined;
  const port = Number(m[3]);
  return port <= 65535 ? { namespace: m[1]!, name: m[2]!, port } : undefined;
}

/**
 * `service` as a `serviceRef` string, or undefined when it has none (a
 * name that is not a DNS label, a port out of range: such an entry keeps its
 * `service` object).
 *
 * @example
 * ```ts
 * formatServiceRef({ namespace: "default", name: "web", port: 80 }); // "default/web:80"
 * ```
 */
export function formatServiceRef(service: ServiceRef): string | undefined {
  const s = `${service.namespace}/${service.name}:${service.port}`;
  return parseServiceRef(s) ? s : undefined;
}

/** `ip:port weight state [node]`, numbers without leading zeros; IPv6 in brackets. */
const ENDPOINT =
  /^(?:\[([^\]\s]+)\]|([^\s:\[\]]+)):(0|[1-9]\d{0,5}) (0|[1-9]\d{0,7}) (\S+)(?: (\S+))?$/;

/** A node name in an endpoint string: a DNS subdomain, as Kubernetes names nodes. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * Parses one endpoint string (`entries[].endpoints`) into a backend, or
 * undefined when it does not have the form; checks no ranges (that is
 * {@linkcode validateRoutingTable}'s work).
 *
 * @example
 * ```ts
 * parseEndpoint("[fd00::5]:8080 0 Serving node-2");
 * // { ip: "fd00::5", port: 8080, weight: 0, state: "Serving", node: "node-2" }
 * ```
 */
export function parseEndpoint(s: string): Backend | undefined {
  const m = ENDPOINT.exec(s);
  if (!m) return undefined;
  const b: Backend = {
    ip: m[1] ?? m[2]!,
    port: Number(m[3]),
    weight: Number(m[4]),
    state: m[5] as BackendState,
  };
  if (m[6] !== undefined) b.node = m[6];
  return b;
}

/**
 * `backend` as one endpoint string, or undefined when it does not fit one:
 * a backend with a Service of its own, or a node name that is not a DNS
 * subdomain (such an entry is written complete).
 *
 * @example
 * ```ts
 * formatEndpoint({ ip: "198.19.1.5", port: 8080, weight: 1, state: "Ready", node: "n1" });
 * // "198.19.1.5:8080 1 Ready n1"
 * ```
 */
export function formatEndpoint(backend: Backend): string | undefined {
  if (backend.service !== undefined) return undefined;
  if (backend.node !== undefined && !NODE_NAME.test(backend.node)) return undefined;
  const host = backend.ip.includes(":") ? `[${backend.ip}]` : backend.ip;
  const node = backend.node === undefined ? "" : ` ${backend.node}`;
  return `${host}:${backend.port} ${backend.weight} ${backend.state}${node}`;
}

function canonicalKey(x: Pick<RoutingTableEntry, "address" | "port" | "protocol">): string {
  return entryKey({ ...x, address: canonicalIp(x.address) ?? x.address });
}

/** `address:port/protocol` with the address canonical, so `[::1]` and `[0::1]` match. */
function canonicalKeyOf(key: string): string {
  const m = /^\[?([^\]]*?)\]?:(\d+)\/(\w+)$/.exec(key);
  if (!m) return key;
  return canonicalKey({ address: m[1]!, port: Number(m[2]), protocol: m[3] as Protocol });
}

function checkSpec(spec: JsonObject, e: FieldErrors): void {
  const addresses = new Set<string>();
  if (e.array(spec.addresses, "spec.addresses")) {
    spec.addresses.forEach((a, i) => {
      if (e.ip(a, `spec.addresses[${i}]`)) {
        const c = canonicalIp(a as string) as string;
        if (addresses.has(c)) e.add(`spec.addresses[${i}]`, `duplicate ${a}`);
        addresses.add(c);
      }
    });
  }
  if (spec.localBackendsOnly !== undefined) {
    e.boolean(spec.localBackendsOnly, "spec.localBackendsOnly");
  }
  if (!e.array(spec.entries, "spec.entries")) return;
  const entries = spec.entries;
  const seen = new Map<string, number>();
  spec.entries.forEach((entry, i) => {
    const path = `spec.entries[${i}]`;
    if (!e.object(entry, path)) return;
    checkEntry(entry, path, addresses, e);
    if (
      typeof entry.address === "string" && typeof entry.port === "number" &&
      typeof entry.protocol === "string"
    ) {
      const key = entryKey({
        address: canonicalIp(entry.address) ?? entry.address,
        port: entry.port,
        protocol: entry.protocol as Protocol,
      });
      const first = seen.get(key);
      if (first !== undefined) {
        e.add(path, `duplicate frontend ${key}, also spec.entries[${first}]`);
      } else seen.set(key, i);
    }
  });
  entries.forEach((entry, i) => {
    if (!isObject(entry) || typeof entry.backendsFrom !== "string") return;
    const path = `spec.entries[${i}].backendsFrom`;
    const j = seen.get(canonicalKeyOf(entry.backendsFrom));
    const from = j === undefined ? undefined : entries[j];
    if (j === undefined || !isObject(from)) {
      e.add(path, `no entry ${entry.backendsFrom} in this table`);
    } else if (j === i) {
      e.add(path, "must name another entry");
    } else if (from.backendsFrom !== undefined) {
      e.add(path, `spec.entries[${j}] has backendsFrom itself (no chains)`);
    } else if (
      typeof entry.address === "string" && typeof from.address === "string" &&
      parseIp(entry.address)?.family !== parseIp(from.address)?.family
    ) {
      e.add(path, `spec.entries[${j}] is of another address family`);
    }
  });
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkEntry(
  entry: JsonObject,
  path: string,
  addresses: Set<string>,
  e: FieldErrors,
): void {
  const family = typeof entry.address === "string" ? parseIp(entry.address)?.family : undefined;
  if (e.ip(entry.address, `${path}.address`)) {
    if (!addresses.has(canonicalIp(entry.address as string) as string)) {
      e.add(`${path}.address`, "must be one of spec.addresses");
    }
  }
  e.integer(entry.port, `${path}.port`, 1, 65535);
  e.oneOf(entry.protocol, `${path}.protocol`, PROTOCOLS);
  e.string(entry.listener, `${path}.listener`, { minLength: 1 });
  if (entry.routeRef !== undefined) checkRouteRef(entry, path, e);
  if (entry.route !== undefined && e.object(entry.route, `${path}.route`)) {
    e.oneOf(entry.route.kind, `${path}.route.kind`, ROUTE_KINDS);
    e.string(entry.route.namespace, `${path}.route.namespace`, {
      minLength: 1,
    });
    e.string(entry.route.name, `${path}.route.name`, { minLength: 1 });
  }
  if (entry.service !== undefined) serviceRef(entry.service, `${path}.service`, e);
  if (entry.serviceRef !== undefined) checkServiceRef(entry, path, e);
  e.integer(entry.rejectWeight, `${path}.rejectWeight`, 0, MAX_WEIGHT);
  // a compact entry leaves its (empty) backends out when it lists endpoints
  if (entry.backends === undefined && entry.endpoints !== undefined) {
    checkEndpoints(entry, path, family, e);
    return;
  }
  if (!e.array(entry.backends, `${path}.backends`)) return;
  if (entry.endpoints !== undefined) checkEndpoints(entry, path, family, e);
  if (entry.backendsFrom !== undefined) {
    e.string(entry.backendsFrom, `${path}.backendsFrom`, { minLength: 1 });
    if (entry.backends.length > 0) {
      e.add(
        `${path}.backends`,
        "must be empty with backendsFrom (the referenced entry's are used)",
      );
    }
    if (entry.service !== undefined) {
      e.add(`${path}.service`, "must be absent with backendsFrom (the referenced entry's is used)");
    }
    if (entry.serviceRef !== undefined) {
      e.add(
        `${path}.serviceRef`,
        "must be absent with backendsFrom (the referenced entry's is used)",
      );
    }
  }
  entry.backends.forEach((b, j) => {
    if (isObject(b) && backendOk(b, family, undefined)) return;
    const bp = `${path}.backends[${j}]`;
    if (e.object(b, bp)) checkBackend(b, bp, family, e);
  });
}

function isInteger(v: unknown, min: number, max: number): boolean {
  return typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;
}

/**
 * True only when {@linkcode checkBackend} would find nothing wrong with `b`: the common case
 * checked without building a field path per check (~10^5 backends in a first sync). False sends
 * the backend through checkBackend, which reports. `ip`: `b.ip` parsed already, if it was.
 */
function backendOk(
  b: JsonObject,
  family: 4 | 6 | undefined,
  ip: ReturnType<typeof parseIp> | undefined,
): boolean {
  if (typeof b.ip !== "string") return false;
  const parsed = ip ?? parseIp(b.ip);
  if (parsed === null || (family !== undefined && parsed.family !== family)) return false;
  if (!isInteger(b.port, 1, 65535) || !isInteger(b.weight, 0, MAX_WEIGHT)) return false;
  if (typeof b.state !== "string" || !(BACKEND_STATES as readonly string[]).includes(b.state)) {
    return false;
  }
  if (b.state !== "Ready" && b.weight !== 0) return false;
  if (b.node !== undefined && (typeof b.node !== "string" || b.node.length < 1)) return false;
  return b.service === undefined;
}

/** Checks one backend (an object, or an endpoint string parsed) at `bp`. */
function checkBackend(
  b: JsonObject,
  bp: string,
  family: 4 | 6 | undefined,
  e: FieldErrors,
): void {
  if (e.ip(b.ip, `${bp}.ip`) && family !== undefined) {
    if (parseIp(b.ip as string)?.family !== family) {
      e.add(`${bp}.ip`, `must be IPv${family} like the entry's address`);
    }
  }
  e.integer(b.port, `${bp}.port`, 1, 65535);
  e.integer(b.weight, `${bp}.weight`, 0, MAX_WEIGHT);
  e.oneOf(b.state, `${bp}.state`, BACKEND_STATES);
  if (b.state !== "Ready" && b.weight !== 0 && typeof b.weight === "number") {
    e.add(`${bp}.weight`, `must be 0 for a backend in state ${b.state}`);
  }
  if (b.node !== undefined) e.string(b.node, `${bp}.node`, { minLength: 1 });
  if (b.service !== undefined) serviceRef(b.service, `${bp}.service`, e);
}

/** `entry.endpoints`: a list of endpoint strings, each a valid backend; `backends` then empty. */
function checkEndpoints(
  entry: JsonObject,
  path: string,
  family: 4 | 6 | undefined,
  e: FieldErrors,
): void {
  if (!e.array(entry.endpoints, `${path}.endpoints`)) return;
  if (Array.isArray(entry.backends) && entry.backends.length > 0) {
    e.add(`${path}.backends`, "must be empty with endpoints (the backends are listed there)");
  }
  if (entry.backendsFrom !== undefined) {
    e.add(`${path}.endpoints`, "must be absent with backendsFrom");
  }
  const endpoints = entry.endpoints;
  const backends: Backend[] = [];
  const before = e.list.length;
  endpoints.forEach((s, j) => {
    const b = typeof s === "string" ? parseEndpoint(s) : undefined;
    if (b && endpointOk(s as string, b, family)) {
      backends.push(b);
      return;
    }
    const bp = `${path}.endpoints[${j}]`;
    if (!e.string(s, bp)) return;
    if (!b) {
      e.add(
        bp,
        `must be "ip:port weight state [node]" (IPv6 as [addr]:port), got ${JSON.stringify(s)}`,
      );
      return;
    }
    // an IPv6 address only in brackets, an IPv4 one never
    const parsed = parseIp(b.ip);
    if (parsed && (parsed.family === 6) !== (s as string).startsWith("[")) {
      e.add(bp, `IPv6 addresses in brackets, IPv4 without, got ${JSON.stringify(s)}`);
    }
    if (b.node !== undefined && !NODE_NAME.test(b.node)) {
      e.add(`${bp}`, `node must be a DNS subdomain, got ${JSON.stringify(b.node)}`);
    }
    checkBackend(b as unknown as JsonObject, bp, family, e);
    backends.push(b);
  });
  // every endpoint parsed and valid: expandRoutingTable takes these
  if (e.list.length === before) parsedEndpoints.set(endpoints, backends);
}

/** True only when checkEndpoints would report nothing for endpoint string `s`, parsed as `b`. */
function endpointOk(s: string, b: Backend, family: 4 | 6 | undefined): boolean {
  const ip = parseIp(b.ip);
  if (ip === null || (ip.family === 6) !== s.startsWith("[")) return false;
  if (b.node !== undefined && !NODE_NAME.test(b.node)) return false;
  return backendOk(b as unknown as JsonObject, family, ip);
}

/** `entry.routeRef`: `kind namespace/name`, instead of `route`. */
function checkRouteRef(entry: JsonObject, path: string, e: FieldErrors): void {
  const p = `${path}.routeRef`;
  if (!e.string(entry.routeRef, p)) return;
  if (entry.route !== undefined) e.add(p, "must be absent with route (one or the other)");
  if (!parseRouteRef(entry.routeRef as string)) {
    e.add(
      p,
      `must be "kind namespace/name" (kind ${ROUTE_KINDS.join(" or ")}, namespace a DNS label, ` +
        `name a DNS subdomain), got ${JSON.stringify(entry.routeRef)}`,
    );
  }
}

/** `entry.serviceRef`: `namespace/name:port`, instead of `service`. */
function checkServiceRef(entry: JsonObject, path: string, e: FieldErrors): void {
  const p = `${path}.serviceRef`;
  if (!e.string(entry.serviceRef, p)) return;
  if (entry.service !== undefined) e.add(p, "must be absent with service (one or the other)");
  if (!parseServiceRef(entry.serviceRef as string)) {
    e.add(
      p,
      `must be "namespace/name:port" (namespace and name DNS labels, port 1-65535), got ${
        JSON.stringify(entry.serviceRef)
      }`,
    );
  }
}

function serviceRef(value: unknown, path: string, e: FieldErrors): void {
  if (!e.object(value, path)) return;
  e.string(value.namespace, `${path}.namespace`);
  e.string(value.name, `${path}.name`);
  e.integer(value.port, `${path}.port`, 1, 65535);
}

/**
 * The Service backend `backend` of `entry` came from: its own `service`, or
 * else the entry's; undefined when neither says.
 */
export function backendService(
  entry: Pick<RoutingTableEntry, "service">,
  backend: Pick<Backend, "service">,
): ServiceRef | undefined {
  return backend.service ?? entry.service;
}

/** Two tables that claim the same frontend. */
export interface FrontendConflict {
  /** `address:port/protocol`. */
  frontend: string;
  /** `namespace/name` of every table claiming it, sorted. */
  tables: string[];
}

/**
 * Finds frontends claimed by more than one table. Resolving them is the
 * operator's job; an agent programs none of the claimants and reports them.
 */
export function findFrontendConflicts(
  tables: readonly RoutingTable[],
): FrontendConflict[] {
  const owners = new Map<string, Set<string>>();
  for (const t of tables) {
    const name = `${t.metadata.namespace}/${t.metadata.name}`;
    for (const entry of t.spec.entries) {
      const key = entryKey({
        ...entry,
        address: canonicalIp(entry.address) ?? entry.address,
      });
      const set = owners.get(key) ?? new Set<string>();
      set.add(name);
      owners.set(key, set);
    }
  }
  return [...owners].filter(([, s]) => s.size > 1)
    .map(([frontend, s]) => ({ frontend, tables: [...s].sort() }))
    .sort((a, b) => a.frontend.localeCompare(b.frontend));
}

/** Re-export so callers of this module need one import for errors. */
export type { FieldError };
