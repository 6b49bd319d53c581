/**
 * Applying YAML manifests with server-side apply, and waiting for the CRDs
 * among them to be served. Used by the local cluster (Gateway API CRDs), the
 * deploy task and the tests (blixt's own CRDs).
 *
 * @module
 */

import { parseAllDocuments } from "yaml";
import { apiStatus, applyObject, k8s, type KubeObject } from "./client.ts";

/** Parses every object of a multi-document YAML text (empty documents skipped). */
export function parseManifests(text: string): KubeObject[] {
  const objects: KubeObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`bad YAML: ${doc.errors[0]!.message}`);
    const obj = doc.toJS() as KubeObject | null;
    if (obj?.kind) objects.push(obj);
  }
  return objects;
}

/** What {@linkcode applyManifestFiles} applied. */
export interface AppliedManifests {
  objects: KubeObject[];
  /** Names of the CustomResourceDefinitions among them. */
  crds: string[];
}

/**
 * Server-side applies every object of the YAML files `paths` (in order), then
 * waits until each CRD among them is Established.
 */
export async function applyManifestFiles(
  kc: k8s.KubeConfig,
  paths: readonly string[],
  options: { fieldManager: string; timeoutMs?: number },
): Promise<AppliedManifests> {
  const applied: AppliedManifests = { objects: [], crds: [] };
  for (const path of paths) {
    for (const obj of parseManifests(await Deno.readTextFile(path))) {
      applied.objects.push(
        await applyObject(kc, obj, { fieldManager: options.fieldManager, force: true }),
      );
      if (obj.kind === "CustomResourceDefinition" && obj.metadata?.name) {
        applied.crds.push(obj.metadata.name);
      }
    }
  }
  await waitForCrdsEstablished(kc, applied.crds, options);
  return applied;
}

/**
 * Whether the API server serves lists of `crd`'s resource yet: `Established`
 * comes before its storage is ready, which answers 429 "storage is
 * (re)initializing" for a moment.
 */
async function storageReady(
  kc: k8s.KubeConfig,
  crd: k8s.V1CustomResourceDefinition,
): Promise<boolean> {
  const version = crd.spec.versions.find((v) => v.served)?.name;
  if (!version) return true;
  try {
    await kc.makeApiClient(k8s.CustomObjectsApi).listClusterCustomObject({
      group: crd.spec.group,
      version,
      plural: crd.spec.names.plural,
      limit: 1,
    });
    return true;
  } catch (err) {
    if (apiStatus(err) === 429) return false;
    throw err;
  }
}

/** Resolves once every CRD of `names` is `Established` and its storage serves requests. */
export async function waitForCrdsEstablished(
  kc: k8s.KubeConfig,
  names: readonly string[],
  options: { timeoutMs?: number } = {},
): Promise<void> {
  const api = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  const pending = new Set(names);
  while (pending.size > 0) {
    for (const name of [...pending]) {
      const crd = await api.readCustomResourceDefinition({ name });
      if (
        crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") &&
        await storageReady(kc, crd)
      ) {
        pending.delete(name);
      }
    }
    if (pending.size === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`CRDs not Established in time: ${[...pending].join(", ")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
