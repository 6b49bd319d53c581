/**
 * Whether `deno task deploy` installs the Gateway API CRDs, and which channel.
 *
 * The CRDs are shared with every other Gateway API implementation in the
 * cluster, so the rule is conservative: install the pinned bundle when the
 * cluster has none, upgrade it when the cluster's bundle is older or lacks a
 * CRD blixt needs, and otherwise leave it alone; never downgrade, and keep
 * the channel the cluster already has (the bundle's own admission policy
 * refuses experimental CRDs over standard ones).
 *
 * @module
 */

import type { GatewayApiChannel } from "../tests/cluster/binaries.ts";

/** The annotation every Gateway API CRD carries with its release. */
export const BUNDLE_VERSION_ANNOTATION = "gateway.networking.k8s.io/bundle-version";
/** The annotation every Gateway API CRD carries with its channel. */
export const CHANNEL_ANNOTATION = "gateway.networking.k8s.io/channel";

/** The Gateway API CRDs blixt reads or writes. */
export const REQUIRED_GATEWAY_API_CRDS = [
  "gatewayclasses.gateway.networking.k8s.io",
  "gateways.gateway.networking.k8s.io",
  "referencegrants.gateway.networking.k8s.io",
  "tcproutes.gateway.networking.k8s.io",
  "udproutes.gateway.networking.k8s.io",
] as const;

/** What the cluster says about one of its Gateway API CRDs. */
export interface InstalledCrd {
  /** CRD name, e.g. `gateways.gateway.networking.k8s.io`. */
  name: string;
  /** `gateway.networking.k8s.io/bundle-version`, when annotated. */
  bundleVersion?: string | undefined;
  /** `gateway.networking.k8s.io/channel`, when annotated. */
  channel?: string | undefined;
}

/** What to do with the cluster's Gateway API CRDs. */
export interface GatewayApiPlan {
  /** `install`: none there; `upgrade`: older or incomplete; `keep`: leave them. */
  action: "install" | "upgrade" | "keep";
  /** Channel whose pinned files to apply (when not `keep`). */
  channel: GatewayApiChannel;
  /** One line for the deploy output. */
  reason: string;
}

/** Whether `crd` (by name) is a Gateway API CRD, standard or experimental group. */
export function isGatewayApiCrd(name: string): boolean {
  return name.endsWith(".gateway.networking.k8s.io") ||
    name.endsWith(".gateway.networking.x-k8s.io");
}

/**
 * Compares two release versions such as `v1.6.3` or `v1.7.0-rc.1`: negative
 * when `a` is older, 0 when equal, positive when newer; undefined when either
 * is not a release version (e.g. `v0.0.0-dev`, which no one can order).
 */
export function compareBundleVersions(a: string, b: string): number | undefined {
  const pa = parseVersion(a);
  const pb = parseVersion(b);
  if (!pa || !pb) return undefined;
  for (let i = 0; i < 3; i++) {
    const d = pa.numbers[i]! - pb.numbers[i]!;
    if (d !== 0) return d;
  }
  // A pre-release comes before its release.
  if (pa.pre === pb.pre) return 0;
  if (pa.pre === undefined) return 1;
  if (pb.pre === undefined) return -1;
  return pa.pre < pb.pre ? -1 : 1;
}

function parseVersion(v: string): { numbers: number[]; pre: string | undefined } | undefined {
  const m = /^v(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$/.exec(v);
  if (!m || v.endsWith("-dev")) return undefined;
  return { numbers: [Number(m[1]), Number(m[2]), Number(m[3])], pre: m[4] };
}

/**
 * Decides what to do with the cluster's Gateway API CRDs (`installed`, any
 * list that includes them) given the `pinned` release. `options.channel`
 * chooses the channel; by default the cluster's, or experimental on a
 * cluster without any.
 */
export function planGatewayApiCrds(
  installed: readonly InstalledCrd[],
  pinned: string,
  options: { channel?: GatewayApiChannel | undefined } = {},
): GatewayApiPlan {
  const crds = installed.filter((c) => isGatewayApiCrd(c.name));
  if (crds.length === 0) {
    return {
      action: "install",
      channel: options.channel ?? "experimental",
      reason: `the cluster has no Gateway API CRDs: installing ${pinned} (${
        options.channel ?? "experimental"
      })`,
    };
  }
  const channel = options.channel ??
    (crds.some((c) => c.channel === "standard") ? "standard" : "experimental");
  const newer = crds.filter((c) =>
    c.bundleVersion !== undefined && (compareBundleVersions(c.bundleVersion, pinned) ?? 1) > 0
  );
  if (newer.length > 0) {
    const versions = [...new Set(newer.map((c) => c.bundleVersion!))].sort().join(", ");
    return {
      action: "keep",
      channel,
      reason: `the cluster has Gateway API ${versions}, newer than or not comparable with ` +
        `the pinned ${pinned}: left as they are (never downgraded)`,
    };
  }
  // Unannotated CRDs predate bundle versions (before v0.5), so they are older.
  const older = crds.filter((c) =>
    c.bundleVersion === undefined || compareBundleVersions(c.bundleVersion, pinned)! < 0
  );
  const names = new Set(crds.map((c) => c.name));
  const missing = REQUIRED_GATEWAY_API_CRDS.filter((n) => !names.has(n));
  if (older.length > 0) {
    const versions = [...new Set(older.map((c) => c.bundleVersion ?? "unversioned"))].sort();
    return {
      action: "upgrade",
      channel,
      reason: `the cluster has Gateway API ${
        versions.join(", ")
      }: upgrading to ${pinned} (${channel})`,
    };
  }
  if (missing.length > 0) {
    return {
      action: "upgrade",
      channel,
      reason: `the cluster's Gateway API ${pinned} lacks ${missing.join(", ")}: ` +
        `applying ${pinned} (${channel})`,
    };
  }
  return {
    action: "keep",
    channel,
    reason:
      `the cluster has Gateway API ${pinned} (${channel}), the pinned version: left as they are`,
  };
}
