/**
 * The agent's DataplaneNode status write (server-side apply as `blixt-agent`)
 * against a real API server, across a change of the CRD's list types: an
 * object written under the CRD before session 18 (`status.tables` a map
 * keyed by namespace and name) is still written correctly under this one
 * (an atomic list), and back.
 *
 * ```
 * kubeStatusWriter ── apply status ──> DataplaneNode node-1 ── read ──> tables, managedFields
 *                       CRD: old (map) ──> manifests/crds (atomic) ──> old again
 * ```
 */

import assert from "node:assert/strict";
import { parse } from "yaml";
import { type DataplaneNode, type DataplaneNodeStatus, programmedGeneration } from "../api/mod.ts";
import type { KubeObject } from "../kube/client.ts";
import { requestJson } from "../kube/rest.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { dataplaneNode, eventually } from "./_cluster_testing.ts";
import { FIELD_MANAGER, kubeStatusWriter } from "./node_status_writer.ts";

const NAME = "agent-status";
/** How managedFields (as JSON text) name a table's item in a map list. */
const TABLE_KEY = String.raw`k:{\"name\":`;
const CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/dataplanenodes.blixt.dev";
const CRD = new URL("../manifests/crds/dataplanenodes.blixt.dev.yaml", import.meta.url);

/** The DataplaneNode CRD of this version, or as it was before session 18 (`old`: a map list). */
function crd(options: { old?: boolean } = {}): KubeObject {
  const crd = parse(Deno.readTextFileSync(CRD));
  if (options.old) {
    const status = crd.spec.versions[0].schema.openAPIV3Schema.properties.status;
    status.properties.tables["x-kubernetes-list-type"] = "map";
    status.properties.tables["x-kubernetes-list-map-keys"] = ["namespace", "name"];
  }
  return crd;
}

/**
 * Applies `obj` as `kubectl apply --server-side` does, its JSON as written: the project's
 * installer (kube/manifests.ts through @kubernetes/client-node's typed serializer) drops the
 * `x-kubernetes-*` keys of schemas reached through `properties`, the list types among them.
 */
async function applyAsWritten(kc: Parameters<typeof requestJson>[0], obj: KubeObject) {
  await requestJson(kc, CRD_PATH, {
    method: "PATCH",
    query: { fieldManager: "agent-test", force: true },
    body: obj,
    contentType: "application/apply-patch+yaml",
  });
}

/** The served list type of `status.tables`. */
async function tablesListType(kc: Parameters<typeof requestJson>[0]): Promise<string> {
  const crd = await requestJson<KubeObject & { spec: { versions: { schema: unknown }[] } }>(
    kc,
    CRD_PATH,
  );
  // deno-lint-ignore no-explicit-any
  const schema = crd.spec.versions[0]!.schema as any;
  return schema.openAPIV3Schema.properties.status.properties.tables["x-kubernetes-list-type"];
}

function status(tables: [string, number][]): DataplaneNodeStatus {
  return {
    conditions: [{
      type: "Ready",
      status: "True",
      reason: "Programmed",
      message: `${tables.length} tables programmed`,
      lastTransitionTime: "2026-11-27T11:00:00.000Z",
    }],
    features: ["backendsFrom"],
    tables: tables.map(([name, generation]) => ({
      namespace: "default",
      name,
      observedGeneration: generation,
      programmedGeneration: generation,
      entries: 1,
      backends: 2,
    })),
  };
}

/** The tables of the DataplaneNode as `name@programmedGeneration`, and its agent's managedFields. */
async function read(kc: Parameters<typeof dataplaneNode>[0]) {
  const dn = (await dataplaneNode(kc, "node-1"))!;
  const managed = (dn.metadata as { managedFields?: { manager: string; subresource?: string }[] })
    .managedFields?.filter((m) => m.manager === FIELD_MANAGER && m.subresource === "status") ?? [];
  return {
    dn,
    tables: (dn.status?.tables ?? []).map((t) => `${t.name}@${t.programmedGeneration}`),
    managed: JSON.stringify(managed),
  };
}

Deno.test("a DataplaneNode written under the old CRD's map list is written correctly under the atomic list, and back", async () => {
  const cluster = await clusterUp({ name: NAME, nodes: 1 });
  try {
    const kc = cluster.kubeConfig();
    await applyAsWritten(kc, crd({ old: true }));
    await eventually("the old CRD served", async () => {
      try {
        await requestJson(kc, "/apis/blixt.dev/v1alpha1/dataplanenodes");
        return true;
      } catch {
        return false;
      }
    }, { timeoutMs: 30_000, intervalMs: 200 });
    const writer = kubeStatusWriter(kc, "node-1", {});
    await writer.ensure("eth0");
    await writer.write(status([["gw-0", 1], ["gw-1", 1]]));
    let now = await read(kc);
    assert.deepEqual(now.tables, ["gw-0@1", "gw-1@1"]);
    assert.ok(now.managed.includes(TABLE_KEY), "the old CRD keeps a set per table");

    // the upgrade: this version's CRD, then the agent's next writes
    await applyAsWritten(kc, crd());
    await eventually("the atomic list served", async () => await tablesListType(kc) === "atomic");
    let generation = 1;
    await eventually("a write under the atomic list", async () => {
      generation++;
      await writer.write(status([["gw-0", generation], ["gw-2", 1]]));
      now = await read(kc);
      assert.deepEqual(now.tables, [`gw-0@${generation}`, "gw-2@1"]);
      return !now.managed.includes(TABLE_KEY);
    }, { timeoutMs: 30_000, intervalMs: 500 });
    assert.match(now.managed, /"f:tables":\{\}/);
    assert.equal(
      programmedGeneration(now.dn as DataplaneNode, { namespace: "default", name: "gw-0" }),
      generation,
    );
    // a table gone from the agent's list is gone from the object
    await writer.write(status([["gw-2", 2]]));
    assert.deepEqual((await read(kc)).tables, ["gw-2@2"]);

    // and back (a downgrade): the old CRD, the agent's writes still land whole
    await applyAsWritten(kc, crd({ old: true }));
    await eventually("the map list served", async () => await tablesListType(kc) === "map");
    await eventually("a write under the map list", async () => {
      generation++;
      await writer.write(status([["gw-2", generation], ["gw-3", 1]]));
      now = await read(kc);
      assert.deepEqual(now.tables, [`gw-2@${generation}`, "gw-3@1"]);
      return now.managed.includes(TABLE_KEY);
    }, { timeoutMs: 30_000, intervalMs: 500 });
    await writer.write(status([["gw-3", 2]]));
    assert.deepEqual((await read(kc)).tables, ["gw-3@2"]);
  } finally {
    await clusterDown(NAME);
  }
});
