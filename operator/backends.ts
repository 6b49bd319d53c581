/**
 * From a route rule's backendRefs to weighted endpoints: Service port ->
 * EndpointSlice port (named target ports included), endpoint conditions,
 * ReferenceGrants for cross-namespace refs, and the reject share of what
 * cannot be resolved.
 *
 * @module
 */
import type { V1EndpointSlice } from "@kubernetes/client-node";
import {
  type Backend,
  type BackendState,
  MAX_WEIGHT,
  parseIp,
  type ServiceRef,
} from "../api/mod.ts";
import type { ConditionSpec } from "./conditions.ts";
import {
  type BackendRef,
  GATEWAY_GROUP,
  type L4Route,
  objectKey,
  type Snapshot,
} from "./snapshot.ts";

/** An endpoint of a resolved backendRef. */
export interface Endpoint {
  /** Address. */
  ip: string;
  /** Target port, from the EndpointSlice. */
  port: number;
  /** Node, when known. */
  node?: string;
  /** Ready, Serving (terminating) or Terminating. */
  state: BackendState;
}

/** One backendRef after resolution. */
export interface ResolvedRef {
  /** The ref's weight (default 1). */
  weight: number;
  /** The Service, when the ref resolved. */
  service?: ServiceRef;
  /** Endpoints, when the ref resolved. */
  endpoints: Endpoint[];
  /** Why the ref did not resolve: the ResolvedRefs reason and a message. */
  invalid?: { reason: string; message: string };
}

/** A rule's backendRefs after resolution, and the route's ResolvedRefs condition. */
export interface ResolvedRule {
  /** In spec order. */
  refs: ResolvedRef[];
  /** ResolvedRefs condition for the route. */
  resolvedRefs: ConditionSpec;
}

const STATE_RANK: Record<BackendState, number> = {
  Ready: 0,
  Serving: 1,
  Terminating: 2,
};

/** Resolves the backendRefs of a route's only rule. */
export function resolveRule(route: L4Route, snapshot: Snapshot): ResolvedRule {
  const refs = (route.spec.rules?.[0]?.backendRefs ?? []).map((ref) =>
    resolveRef(route, ref, snapshot)
  );
  const bad = refs.filter((r) => r.invalid !== undefined);
  const first = bad[0]?.invalid;
  return {
    refs,
    resolvedRefs: first === undefined
      ? {
        type: "ResolvedRefs",
        status: "True",
        reason: "ResolvedRefs",
        message: "all backend references resolved",
      }
      : {
        type: "ResolvedRefs",
        status: "False",
        reason: first.reason,
        message: bad.map((r) => r.invalid?.message).join("; "),
      },
  };
}

function resolveRef(
  route: L4Route,
  ref: BackendRef,
  snapshot: Snapshot,
): ResolvedRef {
  const weight = ref.weight ?? 1;
  const group = ref.group ?? "";
  const kind = ref.kind ?? "Service";
  const namespace = ref.namespace ?? route.metadata.namespace;
  const label = `${namespace}/${ref.name}`;
  const fail = (reason: string, message: string): ResolvedRef => ({
    weight,
    endpoints: [],
    invalid: { reason, message },
  });
  if (group !== "" || kind !== "Service") {
    return fail(
      "InvalidKind",
      `backendRef ${label}: kind ${
        group === "" ? "" : `${group}/`
      }${kind} is not supported, only Service`,
    );
  }
  if (
    namespace !== route.metadata.namespace &&
    !referenceGranted(route, { namespace, name: ref.name, snapshot })
  ) {
    return fail(
      "RefNotPermitted",
      `backendRef ${label}: no ReferenceGrant in namespace ${namespace} allows ${route.kind}s from ${route.metadata.namespace}`,
    );
  }
  const svc = snapshot.services.get(objectKey(namespace, ref.name));
  if (svc === undefined) {
    return fail("BackendNotFound", `backendRef ${label}: Service not found`);
  }
  if (svc.spec?.type === "ExternalName") {
    return fail(
      "InvalidKind",
      `backendRef ${label}: ExternalName Services are not supported`,
    );
  }
  if (ref.port === undefined) {
    return fail(
      "BackendNotFound",
      `backendRef ${label}: port is required for a Service`,
    );
  }
  const protocol = route.kind === "UDPRoute" ? "UDP" : "TCP";
  const svcPort = svc.spec?.ports?.find((p) =>
    p.port === ref.port && (p.protocol ?? "TCP") === protocol
  );
  if (svcPort === undefined) {
    return fail(
      "BackendNotFound",
      `backendRef ${label}: Service has no ${protocol} port ${ref.port}`,
    );
  }
  const service = { namespace, name: ref.name, port: ref.port };
  const byAddress = new Map<string, Endpoint>();
  for (
    const slice of snapshot.endpointSlices.get(objectKey(namespace, ref.name))
      ?.values() ?? []
  ) {
    for (const e of sliceEndpoints(slice, svcPort.name ?? "", protocol)) {
      const key = `${e.ip}|${e.port}`;
      const old = byAddress.get(key);
      // slices may overlap while the EndpointSlice controller moves endpoints
      if (old === undefined || STATE_RANK[e.state] < STATE_RANK[old.state]) {
        byAddress.set(key, e);
      }
    }
  }
  return { weight, service, endpoints: [...byAddress.values()] };
}

function sliceEndpoints(
  slice: V1EndpointSlice,
  portName: string,
  protocol: string,
): Endpoint[] {
  if (slice.addressType !== "IPv4" && slice.addressType !== "IPv6") return [];
  const port = slice.ports?.find((p) =>
    (p.name ?? "") === portName && (p.protocol ?? "TCP") === protocol
  )?.port;
  if (port === undefined || port < 1 || port > 65535) return [];
  const out: Endpoint[] = [];
  for (const ep of slice.endpoints ?? []) {
    const ip = ep.addresses?.[0]; // consumers use the first address only
    if (ip === undefined || parseIp(ip) === null) continue;
    const terminating = ep.conditions?.terminating ?? false;
    const ready = ep.conditions?.ready ?? !terminating;
    const serving = ep.conditions?.serving ?? ready;
    let state: BackendState;
    if (ready && !terminating) state = "Ready";
    else if (serving && terminating) state = "Serving";
    else if (terminating) state = "Terminating";
    else continue; // not ready yet: nothing to send and no flows to keep
    out.push({
      ip,
      port,
      state,
      ...(ep.nodeName === undefined ? {} : { node: ep.nodeName }),
    });
  }
  return out;
}

/** Whether a ReferenceGrant in `namespace` lets the route refer to Service `name`. */
export function referenceGranted(
  route: L4Route,
  target: { namespace: string; name: string; snapshot: Snapshot },
): boolean {
  const { namespace, name, snapshot } = target;
  for (const grant of snapshot.referenceGrants.values()) {
    if (grant.metadata?.namespace !== namespace) continue;
    const from = grant.spec?.from?.some((f) =>
      f.group === GATEWAY_GROUP && f.kind === route.kind &&
      f.namespace === route.metadata.namespace
    );
    const to = grant.spec?.to?.some((t) =>
      (t.group ?? "") === "" && t.kind === "Service" &&
      (t.name === undefined || t.name === "" || t.name === name)
    );
    if (from && to) return true;
  }
  return false;
}

/** Backends and reject share of one table entry. */
export interface WeightedBackends {
  /** Sorted by ip then port. */
  backends: Backend[];
  /** Reject share. */
  rejectWeight: number;
  /** The one Service every backend came from (then named by no backend), if there is one. */
  service?: ServiceRef;
}

/**
 * Spreads each ref's weight over its ready endpoints of one address family,
 * in parts per million of the rule's total weight. A ref that did not
 * resolve, or has no ready endpoint of the family, adds its weight to the
 * reject share, as the spec asks ("if an invalid backend is requested to have
 * 80% of connections, then 80% of connections must be rejected").
 */
export function weighBackends(
  refs: readonly ResolvedRef[],
  family: 4 | 6,
): WeightedBackends {
  const total = refs.reduce((sum, r) => sum + r.weight, 0);
  const merged = new Map<string, Backend>();
  let reject = 0;
  for (const ref of refs) {
    const endpoints = ref.endpoints.filter((e) => parseIp(e.ip)?.family === family);
    const ready = endpoints.filter((e) => e.state === "Ready").length;
    if (ref.invalid !== undefined || ready === 0) reject += ref.weight;
    for (const e of endpoints) {
      let weight = 0;
      if (e.state === "Ready" && total > 0 && ref.weight > 0) {
        weight = Math.max(
          1,
          Math.round(MAX_WEIGHT * ref.weight / total / ready),
        );
      }
      const key = `${e.ip}|${e.port}`;
      const old = merged.get(key);
      if (old !== undefined) {
        // the same endpoint through two refs: their shares add up
        old.weight = Math.min(MAX_WEIGHT, old.weight + weight);
        if (STATE_RANK[e.state] < STATE_RANK[old.state]) old.state = e.state;
        continue;
      }
      merged.set(key, {
        ip: e.ip,
        port: e.port,
        weight,
        state: e.state,
        ...(e.node === undefined ? {} : { node: e.node }),
        ...(ref.service === undefined ? {} : { service: ref.service }),
      });
    }
  }
  for (const b of merged.values()) if (b.state !== "Ready") b.weight = 0;
  const backends = [...merged.values()].sort((a, b) => compareIp(a.ip, b.ip) || a.port - b.port);
  const rejectWeight = total > 0 ? Math.round(MAX_WEIGHT * reject / total) : 0;
  // One Service for all (the usual case): named once by the entry instead of on every backend,
  // which made up a third of the API server's CPU for a table's write (docs/performance.md).
  const first = backends[0]?.service;
  if (first && backends.every((b) => b.service !== undefined && sameService(b.service, first))) {
    for (const b of backends) delete b.service;
    return { backends, rejectWeight, service: first };
  }
  return { backends, rejectWeight };
}

function sameService(a: ServiceRef, b: ServiceRef): boolean {
  return a === b || (a.namespace === b.namespace && a.name === b.name && a.port === b.port);
}

function compareIp(a: string, b: string): number {
  const x = parseIp(a)?.value ?? 0n, y = parseIp(b)?.value ?? 0n;
  return x < y ? -1 : x > y ? 1 : 0;
}
