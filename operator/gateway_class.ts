/**
 * GatewayClass reconciliation: Accepted (with parametersRef validation),
 * SupportedVersion (the installed Gateway API CRD bundle) and
 * supportedFeatures.
 *
 * @module
 */
import {
  type Condition,
  CONTROLLER_NAME,
  formatFieldErrors,
  GATEWAY_CLASS_CONFIG_GROUP,
  GATEWAY_CLASS_CONFIG_KIND,
  type GatewayClassConfigSpec,
  validateGatewayClassConfig,
} from "../api/mod.ts";
import { type ConditionSpec, mergeConditions } from "./conditions.ts";
import type { GatewayClass, Snapshot } from "./snapshot.ts";

/** Finalizer on a GatewayClass while Gateways use it, as Gateway API asks. */
export const GATEWAY_CLASS_FINALIZER = "gateway-exists-finalizer.gateway.networking.k8s.io";

/** Gateway API bundle versions (major.minor) this operator implements. */
export const SUPPORTED_BUNDLE_VERSIONS = ["v1.6"] as const;

/** Conformance features blixt claims, sorted as the spec requires. */
export const SUPPORTED_FEATURES = [
  "Gateway",
  "GatewayAddressEmpty",
  "GatewayStaticAddresses",
  "ReferenceGrant",
  "TCPRoute",
  "UDPRoute",
] as const;

/** Desired status of a GatewayClass. */
export interface GatewayClassStatus {
  /** Accepted, SupportedVersion (and any other controller's conditions). */
  conditions: Condition[];
  /** Sorted by name. */
  supportedFeatures: { name: string }[];
}

/** The parameters a class resolves to, or why they are invalid. */
export type ClassParameters =
  | { ok: true; spec: GatewayClassConfigSpec }
  | { ok: false; message: string };

/** Whether a GatewayClass names blixt's controller. */
export function isOurClass(gc: GatewayClass | undefined): boolean {
  return gc?.spec.controllerName === CONTROLLER_NAME;
}

/**
 * Resolves a class's `parametersRef` to a GatewayClassConfig spec; a class
 * without one gets the defaults (no pools, local-only off).
 */
export function classParameters(
  gc: GatewayClass,
  snapshot: Snapshot,
): ClassParameters {
  const ref = gc.spec.parametersRef;
  if (ref === undefined) return { ok: true, spec: {} };
  if (
    ref.group !== GATEWAY_CLASS_CONFIG_GROUP ||
    ref.kind !== GATEWAY_CLASS_CONFIG_KIND
  ) {
    return {
      ok: false,
      message:
        `parametersRef must refer to a ${GATEWAY_CLASS_CONFIG_GROUP}/${GATEWAY_CLASS_CONFIG_KIND}, got ${
          ref.group || "core"
        }/${ref.kind}`,
    };
  }
  if (ref.namespace !== undefined && ref.namespace !== "") {
    return {
      ok: false,
      message:
        `parametersRef.namespace must be unset: ${GATEWAY_CLASS_CONFIG_KIND} is cluster-scoped`,
    };
  }
  const config = snapshot.gatewayClassConfigs.get(ref.name);
  if (config === undefined) {
    return {
      ok: false,
      message: `${GATEWAY_CLASS_CONFIG_KIND} ${ref.name} not found`,
    };
  }
  const checked = validateGatewayClassConfig(config);
  if (!checked.ok) {
    return {
      ok: false,
      message: `${GATEWAY_CLASS_CONFIG_KIND} ${ref.name} is invalid: ${
        formatFieldErrors(checked.errors).replaceAll("\n", "; ")
      }`,
    };
  }
  return { ok: true, spec: checked.value.spec };
}

function supportedVersion(snapshot: Snapshot): ConditionSpec {
  const versions = [...snapshot.crdBundleVersions].sort(([a], [b]) => a.localeCompare(b));
  const supported = SUPPORTED_BUNDLE_VERSIONS.join(", ");
  if (versions.length === 0) {
    return {
      type: "SupportedVersion",
      status: "False",
      reason: "UnsupportedVersion",
      message:
        `no gateway.networking.k8s.io/bundle-version found on the Gateway API CRDs; supported: ${supported}`,
    };
  }
  const bad = versions.filter(([, v]) =>
    !SUPPORTED_BUNDLE_VERSIONS.some((s) => v === s || v.startsWith(`${s}.`))
  );
  if (bad.length > 0) {
    return {
      type: "SupportedVersion",
      status: "False",
      reason: "UnsupportedVersion",
      message: `unsupported Gateway API CRD versions: ${
        bad.map(([n, v]) => `${n}=${v}`).join(", ")
      }; supported: ${supported}`,
    };
  }
  const found = [...new Set(versions.map(([, v]) => v))].join(", ");
  return {
    type: "SupportedVersion",
    status: "True",
    reason: "SupportedVersion",
    message: `Gateway API CRDs ${found} are supported`,
  };
}

/**
 * Computes the status of a GatewayClass; null when the class is absent or
 * belongs to another controller (its status is not ours to write).
 */
export function reconcileGatewayClass(
  name: string,
  snapshot: Snapshot,
  options: { now: string },
): GatewayClassStatus | null {
  const gc = snapshot.gatewayClasses.get(name);
  if (gc === undefined || !isOurClass(gc)) return null;
  const params = classParameters(gc, snapshot);
  const accepted: ConditionSpec = params.ok
    ? {
      type: "Accepted",
      status: "True",
      reason: "Accepted",
      message: "blixt will program Gateways of this class",
    }
    : {
      type: "Accepted",
      status: "False",
      reason: "InvalidParameters",
      message: params.message,
    };
  const conditions = mergeConditions(
    gc.status?.conditions as Partial<Condition>[] | undefined,
    [accepted, supportedVersion(snapshot)],
    { generation: gc.metadata?.generation ?? 0, now: options.now },
  );
  return {
    conditions,
    supportedFeatures: SUPPORTED_FEATURES.map((name) => ({ name })),
  };
}

/**
 * Whether a GatewayClass of ours needs the gateway-exists finalizer added or
 * removed: it holds one while any Gateway names the class, so the class is not
 * deleted from under them; "none" for other controllers' classes.
 */
export function classFinalizer(
  name: string,
  snapshot: Snapshot,
): "add" | "remove" | "none" {
  const gc = snapshot.gatewayClasses.get(name);
  if (gc === undefined || !isOurClass(gc)) return "none";
  let used = false;
  for (const g of snapshot.gateways.values()) {
    if (g.spec?.gatewayClassName === name) {
      used = true;
      break;
    }
  }
  const has = gc.metadata?.finalizers?.includes(GATEWAY_CLASS_FINALIZER) ?? false;
  if (used && !has) return "add";
  if (!used && has) return "remove";
  return "none";
}
