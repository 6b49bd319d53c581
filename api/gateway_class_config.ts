/**
 * GatewayClassConfig (blixt.dev/v1alpha1): the parameters a GatewayClass
 * points at with `spec.parametersRef`. Cluster-scoped. Address pools for
 * Gateways that do not ask for a static address, and the default for
 * local-only backends.
 *
 * @module
 */
import { FieldErrors } from "./_field_checks.ts";
import { parseCidr } from "./ip_address.ts";
import { API_VERSION, GROUP, type ObjectMeta, type Validated } from "./meta.ts";

/** Kind name. */
export const GATEWAY_CLASS_CONFIG_KIND = "GatewayClassConfig";
/** Plural resource name. */
export const GATEWAY_CLASS_CONFIG_PLURAL = "gatewayclassconfigs";
/** Group of the kind, for matching a parametersRef. */
export const GATEWAY_CLASS_CONFIG_GROUP = GROUP;

/** A named range of addresses Gateways are given addresses from. */
export interface AddressPool {
  /** Pool name, for messages. */
  name: string;
  /** CIDR prefix, e.g. `198.18.0.0/24`. */
  cidr: string;
}

/** The parameters of a blixt GatewayClass. */
export interface GatewayClassConfigSpec {
  /** Pools, tried in order. */
  addressPools?: AddressPool[];
  /** Send only to backends on the receiving node, keeping the client address. */
  localBackendsOnly?: boolean;
}

/** A GatewayClassConfig object. */
export interface GatewayClassConfig {
  /** `blixt.dev/v1alpha1`. */
  apiVersion: typeof API_VERSION;
  /** `GatewayClassConfig`. */
  kind: typeof GATEWAY_CLASS_CONFIG_KIND;
  /** Cluster-scoped. */
  metadata: ObjectMeta;
  /** The parameters. */
  spec: GatewayClassConfigSpec;
}

/** Checks an untrusted GatewayClassConfig; never throws. */
export function validateGatewayClassConfig(
  value: unknown,
): Validated<GatewayClassConfig> {
  const e = new FieldErrors();
  if (!e.object(value, "")) return { ok: false, errors: e.list };
  if (value.kind !== GATEWAY_CLASS_CONFIG_KIND) {
    e.add("kind", `must be ${GATEWAY_CLASS_CONFIG_KIND}`);
  }
  if (e.object(value.spec, "spec")) {
    const spec = value.spec;
    if (spec.localBackendsOnly !== undefined) {
      e.boolean(spec.localBackendsOnly, "spec.localBackendsOnly");
    }
    if (
      spec.addressPools !== undefined &&
      e.array(spec.addressPools, "spec.addressPools")
    ) {
      const names = new Set<string>();
      spec.addressPools.forEach((p, i) => {
        const path = `spec.addressPools[${i}]`;
        if (!e.object(p, path)) return;
        if (e.string(p.name, `${path}.name`, { minLength: 1 })) {
          if (names.has(p.name as string)) {
            e.add(`${path}.name`, `duplicate pool name ${p.name}`);
          }
          names.add(p.name as string);
        }
        if (typeof p.cidr !== "string" || parseCidr(p.cidr) === null) {
          e.add(
            `${path}.cidr`,
            `must be a CIDR prefix such as 198.18.0.0/24, got ${JSON.stringify(p.cidr)}`,
          );
        }
      });
    }
  }
  return e.list.length === 0
    ? { ok: true, value: value as unknown as GatewayClassConfig }
    : { ok: false, errors: e.list };
}
