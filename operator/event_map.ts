/**
 * From a watch event on any kind to the keys of the Gateways whose desired
 * state it may change; the informers enqueue those keys. Both the old and the
 * new object are looked at, so a route that leaves a Gateway wakes it too.
 *
 * @module
 */
import { CONTROLLER_NAME } from "../api/mod.ts";
import { isOurClass } from "./gateway_class.ts";
import {
  GATEWAY_GROUP,
  type L4Route,
  objectKey,
  routesOfBackend,
  SERVICE_NAME_LABEL,
  type Snapshot,
  type SnapshotObject,
} from "./snapshot.ts";
import { sameJson } from "./same_json.ts";

/** A watch event: the object before (absent on add) and after (absent on delete). */
export interface WatchEvent {
  /** Before the change. */
  old?: SnapshotObject;
  /** After the change. */
  new?: SnapshotObject;
}

/** Keys (`namespace/name`) of every Gateway of a blixt class. */
export function managedGateways(snapshot: Snapshot): string[] {
  return [...snapshot.gateways].filter(([, g]) =>
    isOurClass(snapshot.gatewayClasses.get(g.spec.gatewayClassName))
  ).map(([k]) => k);
}

function gatewaysOfRoute(route: L4Route): string[] {
  const ns = route.metadata?.namespace ?? "";
  const refs = [
    ...(route.spec?.parentRefs ?? []),
    ...(route.status?.parents ?? [])
      .filter((p) => p.controllerName === CONTROLLER_NAME)
      .map((p) => p.parentRef),
  ];
  return refs.filter((r) =>
    (r.group ?? GATEWAY_GROUP) === GATEWAY_GROUP &&
    (r.kind ?? "Gateway") === "Gateway"
  ).map((r) => objectKey(r.namespace ?? ns, r.name));
}

function gatewaysOfRoutes(
  snapshot: Snapshot,
  usesBackend: (route: L4Route, ns: string, name: string) => boolean,
  candidates: Iterable<L4Route> = snapshot.routes.values(),
): string[] {
  const out: string[] = [];
  for (const route of candidates) {
    const ns = route.metadata.namespace;
    const hit = (route.spec?.rules ?? []).some((rule) =>
      (rule.backendRefs ?? []).some((b) =>
        (b.group ?? "") === "" && (b.kind ?? "Service") === "Service" &&
        usesBackend(route, b.namespace ?? ns, b.name)
      )
    );
    if (hit) out.push(...gatewaysOfRoute(route));
  }
  return out;
}

/** The routes with a backendRef to any of `services` (`namespace/name`), from the snapshot's index. */
function backendRoutes(snapshot: Snapshot, services: string[]): L4Route[] {
  return [...new Set(services)].flatMap((k) => routesOfBackend(snapshot, k));
}

/** Gateways with an HTTPS listener whose certificateRefs name a Secret `selects` picks. */
function gatewaysOfCertificates(
  snapshot: Snapshot,
  selects: (namespace: string, name: string) => boolean,
): string[] {
  const out: string[] = [];
  for (const [k, g] of snapshot.gateways) {
    const ns = g.metadata?.namespace ?? "";
    const hit = (g.spec.listeners ?? []).some((l) =>
      (l.tls?.certificateRefs ?? []).some((c) => selects(c.namespace ?? ns, c.name))
    );
    if (hit) out.push(k);
  }
  return out;
}

function nodeReady(o: SnapshotObject | undefined): boolean | undefined {
  if (o === undefined || o.kind !== "Node") return undefined;
  return o.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/**
 * Whether a Gateway event can change which addresses other Gateways may have:
 * it came or went, is being deleted, changed class, or its requested or
 * assigned addresses changed. A condition-only status write cannot.
 */
function addressesMayMove(event: WatchEvent): boolean {
  const before = event.old?.kind === "Gateway" ? event.old : undefined;
  const after = event.new?.kind === "Gateway" ? event.new : undefined;
  if (before === undefined || after === undefined) return true;
  return before.spec?.gatewayClassName !== after.spec?.gatewayClassName ||
    (before.metadata?.deletionTimestamp === undefined) !==
      (after.metadata?.deletionTimestamp === undefined) ||
    !sameJson(before.spec?.addresses, after.spec?.addresses) ||
    !sameJson(before.status?.addresses, after.status?.addresses);
}

/**
 * The Gateways an event may affect, sorted and unique. Looks at the event's
 * objects and the current snapshot (already holding the change or not: both work).
 */
export function gatewaysForEvent(
  event: WatchEvent,
  snapshot: Snapshot,
): string[] {
  const o = event.new ?? event.old;
  if (o === undefined) return [];
  const keys: string[] = [];
  const objects = [event.old, event.new].filter((x) => x !== undefined);
  switch (o.kind) {
    case "Gateway":
    case "RoutingTable":
      for (const x of objects) {
        keys.push(
          objectKey(x.metadata?.namespace ?? "", x.metadata?.name ?? ""),
        );
      }
      if (o.kind === "Gateway" && addressesMayMove(event)) {
        // another Gateway's addresses decide which addresses are free
        keys.push(...managedGateways(snapshot));
      }
      break;
    case "GatewayClass":
    case "GatewayClassConfig": {
      const names = new Set(objects.map((x) => x.metadata?.name ?? ""));
      for (const [k, g] of snapshot.gateways) {
        const gc = snapshot.gatewayClasses.get(g.spec.gatewayClassName);
        const viaClass = o.kind === "GatewayClass" &&
          names.has(g.spec.gatewayClassName);
        const viaConfig = o.kind === "GatewayClassConfig" &&
          gc?.spec.parametersRef !== undefined &&
          names.has(gc.spec.parametersRef.name);
        if (viaClass || viaConfig) keys.push(k);
      }
      break;
    }
    case "TCPRoute":
    case "UDPRoute":
      for (const x of objects) keys.push(...gatewaysOfRoute(x as L4Route));
      break;
    case "Service":
      keys.push(
        ...gatewaysOfRoutes(
          snapshot,
          (_r, ns, name) =>
            objects.some((x) => x.metadata?.namespace === ns && x.metadata?.name === name),
          backendRoutes(
            snapshot,
            objects.map((x) => objectKey(x.metadata?.namespace ?? "", x.metadata?.name ?? "")),
          ),
        ),
      );
      break;
    case "EndpointSlice":
      keys.push(
        ...gatewaysOfRoutes(
          snapshot,
          (_r, ns, name) =>
            objects.some((x) =>
              x.metadata?.namespace === ns &&
              x.metadata?.labels?.[SERVICE_NAME_LABEL] === name
            ),
          backendRoutes(
            snapshot,
            objects.flatMap((x) => {
              const service = x.metadata?.labels?.[SERVICE_NAME_LABEL];
              return service === undefined ? [] : [objectKey(x.metadata?.namespace ?? "", service)];
            }),
          ),
        ),
      );
      break;
    case "ReferenceGrant": {
      const grantNs = new Set(objects.map((x) => x.metadata?.namespace ?? ""));
      keys.push(
        ...gatewaysOfRoutes(
          snapshot,
          (r, ns) => ns !== r.metadata.namespace && grantNs.has(ns),
        ),
      );
      keys.push(...gatewaysOfCertificates(snapshot, (ns) => grantNs.has(ns)));
      break;
    }
    case "Secret": {
      const names = new Set(
        objects.map((x) => objectKey(x.metadata?.namespace ?? "", x.metadata?.name ?? "")),
      );
      keys.push(...gatewaysOfCertificates(snapshot, (ns, name) => names.has(objectKey(ns, name))));
      break;
    }
    case "ServiceCIDR":
      for (const [k, g] of snapshot.gateways) {
        if ((g.spec.addresses ?? []).some((a) => a.value)) keys.push(k);
      }
      break;
    case "HTTPRoute":
      for (const x of objects) {
        const ns = x.metadata?.namespace ?? "";
        for (
          const r
            of (x as { spec?: { parentRefs?: L4Route["spec"]["parentRefs"] } }).spec?.parentRefs ??
              []
        ) {
          if ((r.group ?? GATEWAY_GROUP) === GATEWAY_GROUP && (r.kind ?? "Gateway") === "Gateway") {
            keys.push(objectKey(r.namespace ?? ns, r.name));
          }
        }
      }
      break;
    case "Namespace": {
      // labels feed allowedRoutes selectors; routes in it may attach or detach
      const names = new Set(objects.map((x) => x.metadata?.name ?? ""));
      for (const [k, g] of snapshot.gateways) {
        const selects = (g.spec.listeners ?? []).some((l) =>
          l.allowedRoutes?.namespaces?.from === "Selector"
        );
        if (selects) keys.push(k);
      }
      for (const route of snapshot.routes.values()) {
        if (names.has(route.metadata.namespace)) {
          keys.push(...gatewaysOfRoute(route));
        }
      }
      break;
    }
    case "Node":
      // only readiness (and existence) matters for Programmed
      if (nodeReady(event.old) !== nodeReady(event.new)) {
        keys.push(...managedGateways(snapshot));
      }
      break;
    case "DataplaneNode": {
      const before = event.old?.kind === "DataplaneNode" ? event.old : undefined;
      const after = event.new?.kind === "DataplaneNode" ? event.new : undefined;
      // one pass over each list (a node reports every table: no scan of one list per entry)
      const beforeTables = new Map(
        (before?.status?.tables ?? []).map((t) => [objectKey(t.namespace, t.name), t]),
      );
      for (const t of after?.status?.tables ?? []) {
        const k = objectKey(t.namespace, t.name);
        const old = beforeTables.get(k);
        beforeTables.delete(k);
        // counters-only updates wake nobody; a node's errors revoke Programmed
        if (
          old &&
          old.programmedGeneration === t.programmedGeneration &&
          sameJson(old.errors ?? [], t.errors ?? [])
        ) {
          continue;
        }
        keys.push(k);
      }
      // tables the node no longer lists
      keys.push(...beforeTables.keys());
      if (
        before === undefined || after === undefined ||
        !sameJson(before.status?.features ?? [], after.status?.features ?? [])
      ) {
        // a node's agent came or went, or now understands more or less of the
        // table contract: every table may have to be written another way
        keys.push(...managedGateways(snapshot));
      }
      break;
    }
  }
  return [...new Set(keys)].sort();
}
