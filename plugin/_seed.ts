// Seeds the test scenario (_fixtures.ts) into a real API server the way the
// operator and agents would leave it: blixt's CRDs applied, objects created,
// statuses written through the status subresource, RoutingTables owned by
// their Gateway's real uid.
import { k8s } from "../kube/client.ts";
import { agentLeaseObject, scenario } from "./_fixtures.ts";

const G = "gateway.networking.k8s.io";

type Obj = {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; [k: string]: unknown };
  status?: unknown;
  [k: string]: unknown;
};

function plural(kind: string): string {
  return kind.toLowerCase() + (kind.endsWith("s") ? "es" : "s");
}

/** Creates an object (without the fields the server sets) and writes its status, if any. */
async function createWithStatus(api: k8s.CustomObjectsApi, obj: Obj): Promise<Obj> {
  const [group, version] = obj.apiVersion.split("/") as [string, string];
  const { status, ...rest } = structuredClone(obj);
  const meta = { ...rest.metadata };
  for (const k of ["uid", "creationTimestamp", "generation", "resourceVersion"]) delete meta[k];
  const body = { ...rest, metadata: meta };
  const namespace = meta.namespace;
  const p = plural(obj.kind);
  let created =
    (namespace === undefined
      ? await api.createClusterCustomObject({ group, version, plural: p, body })
      : await api.createNamespacedCustomObject({
        group,
        version,
        plural: p,
        namespace,
        body,
      })) as Obj;
  if (status !== undefined) {
    const withStatus = { ...created, status };
    const name = meta.name ?? "";
    created = (namespace === undefined
      ? await api.replaceClusterCustomObjectStatus({
        group,
        version,
        plural: p,
        name,
        body: withStatus,
      })
      : await api.replaceNamespacedCustomObjectStatus({
        group,
        version,
        plural: p,
        namespace,
        name,
        body: withStatus,
      })) as Obj;
  }
  return created;
}

/**
 * Seeds the scenario: namespaces (and `extraNamespaces`, left empty),
 * GatewayClasses, the GatewayClassConfig, Gateways, routes, RoutingTables and
 * DataplaneNodes, each with the status the operator and agents would write.
 * The cluster's own Nodes stand in for the scenario's.
 */
export async function seedScenario(
  kc: k8s.KubeConfig,
  options: { extraNamespaces?: string[] } = {},
): Promise<void> {
  const s = scenario();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const names = [
    ...s.namespaces.map((n) => n.metadata?.name ?? ""),
    ...options.extraNamespaces ?? [],
  ];
  for (const name of names) {
    const labels = s.namespaces.find((n) => n.metadata?.name === name)?.metadata?.labels ?? {};
    await core.createNamespace({ body: { metadata: { name, labels } } });
  }
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  const objects = [...s.gatewayClasses, ...s.gatewayClassConfigs] as unknown as Obj[];
  for (const o of objects) await createWithStatus(api, o);
  const uids = new Map<string, string>();
  for (const g of s.gateways) {
    const created = await createWithStatus(api, g as unknown as Obj);
    uids.set(`${g.metadata?.namespace}/${g.metadata?.name}`, String(created.metadata?.uid));
  }
  for (const r of s.routes) await createWithStatus(api, r as unknown as Obj);
  for (const t of s.routingTables) {
    const owned = structuredClone(t);
    for (const ref of owned.metadata.ownerReferences ?? []) {
      if (ref.kind === "Gateway" && ref.apiVersion.startsWith(`${G}/`)) {
        ref.uid = uids.get(`${t.metadata.namespace}/${ref.name}`) ?? ref.uid;
      }
    }
    await createWithStatus(api, owned as unknown as Obj);
  }
  for (const d of s.dataplaneNodes) await createWithStatus(api, d as unknown as Obj);
  // the agents' liveness Leases, renewed now and held for an hour
  if (!names.includes("blixt-system")) {
    await core.createNamespace({ body: { metadata: { name: "blixt-system" } } }).catch((e) => {
      if (!(e instanceof k8s.ApiException && e.code === 409)) throw e;
    });
  }
  const generic = kc.makeApiClient(k8s.KubernetesObjectApi);
  const renewTime = new Date().toISOString().replace("Z", "000Z");
  for (const node of s.agentNodes) {
    await generic.create(agentLeaseObject(node, renewTime) as k8s.KubernetesObject);
  }
}
