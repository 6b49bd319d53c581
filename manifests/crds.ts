/**
 * blixt's own CRDs (RoutingTable, DataplaneNode, GatewayClassConfig), the
 * YAML files beside this module, and the one function that installs them.
 *
 * @module
 */

import type { k8s } from "../kube/client.ts";
import { type AppliedManifests, applyManifestFiles } from "../kube/manifests.ts";

const crdDir = new URL("./crds/", import.meta.url).pathname;

/** Paths of the CRD files, sorted. */
export function blixtCrdFiles(): string[] {
  return [...Deno.readDirSync(crdDir)]
    .filter((e) => e.isFile && e.name.endsWith(".yaml"))
    .map((e) => `${crdDir}${e.name}`)
    .sort();
}

/** Server-side applies blixt's CRDs and waits until they are served. */
export async function applyBlixtCrds(
  kc: k8s.KubeConfig,
  options: { fieldManager: string },
): Promise<AppliedManifests> {
  return await applyManifestFiles(kc, blixtCrdFiles(), options);
}
