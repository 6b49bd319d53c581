import assert from "node:assert/strict";
import { compareBundleVersions, type InstalledCrd, planGatewayApiCrds } from "./gateway_api.ts";

const PINNED = "v1.6.3";
const REQUIRED = ["gatewayclasses", "gateways", "referencegrants", "tcproutes", "udproutes"];

function bundle(version: string | undefined, channel: string, names = REQUIRED): InstalledCrd[] {
  return names.map((n) => ({
    name: `${n}.gateway.networking.k8s.io`,
    bundleVersion: version,
    channel,
  }));
}

Deno.test("bundle versions order as releases; dev builds and garbage do not order", () => {
  assert.ok(compareBundleVersions("v1.5.1", "v1.6.3")! < 0);
  assert.ok(compareBundleVersions("v1.10.0", "v1.6.3")! > 0);
  assert.equal(compareBundleVersions("v1.6.3", "v1.6.3"), 0);
  assert.ok(compareBundleVersions("v1.6.3-rc.1", "v1.6.3")! < 0);
  assert.equal(compareBundleVersions("v0.0.0-dev", "v1.6.3"), undefined);
  assert.equal(compareBundleVersions("1.6.3", "v1.6.3"), undefined);
});

Deno.test("a cluster without Gateway API CRDs gets the pinned experimental channel", () => {
  const other: InstalledCrd = { name: "routingtables.blixt.dev" };
  assert.deepEqual(planGatewayApiCrds([other], PINNED).action, "install");
  assert.deepEqual(planGatewayApiCrds([], PINNED).channel, "experimental");
  assert.deepEqual(planGatewayApiCrds([], PINNED, { channel: "standard" }).channel, "standard");
});

Deno.test("an older bundle is upgraded in the channel the cluster has", () => {
  const plan = planGatewayApiCrds(bundle("v1.5.1", "standard"), PINNED);
  assert.equal(plan.action, "upgrade");
  assert.equal(plan.channel, "standard");
  assert.match(plan.reason, /v1\.5\.1: upgrading to v1\.6\.3 \(standard\)/);
  // Unannotated CRDs predate bundle versions.
  assert.equal(planGatewayApiCrds(bundle(undefined, ""), PINNED).action, "upgrade");
});

Deno.test("the pinned bundle is kept; a missing CRD blixt needs is applied", () => {
  assert.equal(planGatewayApiCrds(bundle(PINNED, "experimental"), PINNED).action, "keep");
  const plan = planGatewayApiCrds(bundle(PINNED, "standard", ["gateways"]), PINNED);
  assert.equal(plan.action, "upgrade");
  assert.match(plan.reason, /lacks gatewayclasses\.gateway\.networking\.k8s\.io/);
});

Deno.test("a newer or development bundle is never downgraded, even in part", () => {
  const mixed = [...bundle("v1.5.0", "experimental"), ...bundle("v1.7.0", "experimental", ["x"])];
  assert.equal(planGatewayApiCrds(mixed, PINNED).action, "keep");
  assert.equal(planGatewayApiCrds(bundle("v0.0.0-dev", "experimental"), PINNED).action, "keep");
});
