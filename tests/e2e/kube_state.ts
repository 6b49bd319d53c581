/**
 * What kubectl shows, for the e2e suite's assertions: objects read with
 * `kubectl get -o json`, their conditions, and waiting for a state.
 *
 * @module
 */

import { CommandError, sleep } from "../cluster/host.ts";
import { expandRoutingTable, type RoutingTable } from "../../api/routing_table.ts";

/** Runs kubectl with `args` and returns its stdout (what `Cluster.kubectl` does). */
export type Kubectl = (args: string[]) => Promise<string>;

/** A status condition as the API server has it. */
export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
}

/** The parts of an object the suite reads. */
export interface KubeJson {
  metadata: { name: string; namespace?: string; generation?: number };
  spec?: Record<string, unknown>;
  status?: {
    conditions?: Condition[];
    addresses?: { type?: string; value: string }[];
    listeners?: { name: string; attachedRoutes: number; conditions?: Condition[] }[];
    parents?: {
      parentRef: { name: string; namespace?: string; sectionName?: string; port?: number };
      controllerName: string;
      conditions?: Condition[];
    }[];
    tables?: { namespace: string; name: string; programmedGeneration?: number }[];
  };
}

/** `kubectl get KIND NAME [-n NS] -o json`, or `undefined` when it does not exist. */
export async function getObject(
  kubectl: Kubectl,
  kind: string,
  name: string,
  namespace?: string,
): Promise<KubeJson | undefined> {
  try {
    const ns = namespace === undefined ? [] : ["-n", namespace];
    return JSON.parse(await kubectl(["get", kind, name, ...ns, "-o", "json"])) as KubeJson;
  } catch (e) {
    if (e instanceof CommandError && /NotFound|not found/.test(e.stderr)) return undefined;
    throw e;
  }
}

/** `kubectl get KIND [-n NS | -A] -o json` items. */
export async function listObjects(
  kubectl: Kubectl,
  kind: string,
  namespace?: string,
): Promise<KubeJson[]> {
  const ns = namespace === undefined ? [] : ["-n", namespace];
  return (JSON.parse(await kubectl(["get", kind, ...ns, "-o", "json"])) as { items: KubeJson[] })
    .items;
}

/** Condition `type` of a list of conditions. */
export function conditionOf(
  conditions: Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** `type=status/reason` of a condition, for comparisons and messages. */
export function brief(condition: Condition | undefined): string {
  return condition ? `${condition.type}=${condition.status}/${condition.reason ?? ""}` : "absent";
}

/** Condition `type` of route `route`'s parent entry for Gateway `gateway` (blixt's only). */
export function parentCondition(
  route: KubeJson | undefined,
  gateway: string,
  type: string,
  parent: { sectionName?: string; port?: number } = {},
): Condition | undefined {
  const entry = route?.status?.parents?.find((p) =>
    p.controllerName === "blixt.dev/gateway-controller" && p.parentRef.name === gateway &&
    (parent.sectionName === undefined || p.parentRef.sectionName === parent.sectionName) &&
    (parent.port === undefined || p.parentRef.port === parent.port)
  );
  return conditionOf(entry?.conditions, type);
}

/**
 * Polls `check` every 100 ms until it returns a value other than `undefined`
 * and returns that value; after `timeoutMs` throws with what `describe` says
 * about the last state seen.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  options: { timeoutMs?: number; describe?: () => Promise<string> | string } = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  while (true) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (e) {
      lastError = ` (last error: ${(e as Error).message})`;
    }
    if (Date.now() > deadline) {
      const state = options.describe ? `; last seen: ${await options.describe()}` : "";
      throw new Error(`${what}: not within ${timeoutMs / 1000} s${state}${lastError}`);
    }
    await sleep(100);
  }
}

/** Waits until Gateway `namespace/name` is `Programmed=True` and returns its first address. */
export async function programmedAddress(
  kubectl: Kubectl,
  name: string,
  namespace = "default",
  timeoutMs = 30_000,
): Promise<string> {
  let last: KubeJson | undefined;
  return await waitFor(`Gateway ${namespace}/${name} Programmed=True`, async () => {
    last = await getObject(kubectl, "gateway", name, namespace);
    const programmed = conditionOf(last?.status?.conditions, "Programmed");
    const address = last?.status?.addresses?.[0]?.value;
    return programmed?.status === "True" && address ? address : undefined;
  }, { timeoutMs, describe: () => JSON.stringify(last?.status ?? null) });
}

/** One entry of a RoutingTable's spec, as the suite reads it. */
export interface TableEntry {
  address: string;
  port: number;
  protocol: string;
  listener: string;
  rejectWeight: number;
  backends: { ip: string; port: number; weight: number; state: string }[];
}

/**
 * Waits until the RoutingTable of Gateway `namespace/name` satisfies `check`
 * and every DataplaneNode has programmed that generation of it, and the
 * Gateway says `Programmed=True`; returns the table's entries. After a
 * change, a Gateway's `Programmed=True` alone may still be the old one.
 */
export async function programmedEntries(
  kubectl: Kubectl,
  name: string,
  check: (entries: TableEntry[]) => boolean,
  options: { namespace?: string; timeoutMs?: number } = {},
): Promise<TableEntry[]> {
  const namespace = options.namespace ?? "default";
  let seen = "";
  return await waitFor(`RoutingTable ${namespace}/${name} changed and programmed`, async () => {
    const table = await getObject(kubectl, "routingtable", name, namespace);
    // an entry may take its backends from another (backendsFrom): read them as agents do
    const entries = (table?.spec?.entries === undefined
      ? []
      : expandRoutingTable(table as unknown as RoutingTable).spec
        .entries) as unknown as TableEntry[];
    seen = `table generation ${table?.metadata.generation}: ${JSON.stringify(entries)}`;
    if (!table || !check(entries)) {
      return undefined;
    }
    const nodes = await listObjects(kubectl, "dataplanenodes");
    const programmed = nodes.map((n) =>
      n.status?.tables?.find((t) =>
        t.namespace === namespace && t.name === name
      )
        ?.programmedGeneration
    );
    seen += `; nodes programmed ${JSON.stringify(programmed)}`;
    if (programmed.some((g) => g !== table.metadata.generation)) return undefined;
    const gw = await getObject(kubectl, "gateway", name, namespace);
    const condition = conditionOf(gw?.status?.conditions, "Programmed");
    seen += `; Gateway ${brief(condition)}`;
    return condition?.status === "True" ? entries : undefined;
  }, { timeoutMs: options.timeoutMs ?? 30_000, describe: () => seen });
}
