/**
 * Helpers of the operator's tests against the local cluster: a cluster with
 * blixt's CRDs and an {@linkcode Operator} running in-process (short lease,
 * quiet log), YAML applied as a user would, objects read back with kubectl,
 * and assertions polled until the operator has converged.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Cluster, clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import type { GatewayApiChannel } from "../tests/cluster/binaries.ts";
import { apiStatus, applyObject, k8s, type KubeObject } from "../kube/client.ts";
import { parseManifests } from "../kube/manifests.ts";
import { applyBlixtCrds } from "../manifests/crds.ts";
import type { Log } from "../kube/log.ts";
import { Operator } from "./controller.ts";

/** Field manager of what the tests apply. */
export const TEST_MANAGER = "op2-test";

/**
 * YAML of blixt's GatewayClass `blixt` and its GatewayClassConfig with one
 * address pool, `cidr`: the start of most test scenarios (ends with a newline).
 */
export function blixtClassYaml(cidr: string): string {
  return `apiVersion: blixt.dev/v1alpha1
kind: GatewayClassConfig
metadata: { name: blixt-config }
spec:
  addressPools: [{ name: local, cidr: ${cidr} }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: blixt }
spec:
  controllerName: blixt.dev/gateway-controller
  parametersRef: { group: blixt.dev, kind: GatewayClassConfig, name: blixt-config }
`;
}

/** A condition as kubectl shows it. */
export interface Cond {
  type: string;
  status: string;
  reason: string;
  message?: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

/** A cluster with the operator running against it. */
export interface OperatorCluster {
  /** The local cluster. */
  cluster: Cluster;
  /** Admin credentials. */
  kc: k8s.KubeConfig;
  /** The operator, leading. */
  operator: Operator;
  /** `kubectl get ARGS -o json`, parsed. */
  // deno-lint-ignore no-explicit-any
  get(args: string[]): Promise<any>;
  /** Server-side applies every object of a YAML text, in order; returns them as stored. */
  apply(yaml: string): Promise<KubeObject[]>;
  /** Deletes every object of a YAML text (missing ones ignored), without waiting. */
  remove(yaml: string): Promise<void>;
}

/**
 * Brings up cluster `name` with blixt's CRDs and starts an Operator; runs
 * `body`; stops the operator and takes the cluster down whatever happens.
 */
export async function withOperatorCluster(
  name: string,
  body: (oc: OperatorCluster) => Promise<void>,
  options: { channel?: GatewayApiChannel; nodes?: number; workers?: number; log?: Log } = {},
): Promise<void> {
  let operator: Operator | undefined;
  try {
    const cluster = await clusterUp({
      name,
      nodes: options.nodes ?? 2,
      ...(options.channel ? { channel: options.channel } : {}),
    });
    const kc = cluster.kubeConfig();
    await applyBlixtCrds(kc, { fieldManager: TEST_MANAGER });
    await applyObject(kc, {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: "blixt-system" },
    }, { fieldManager: TEST_MANAGER });
    operator = new Operator(kc, {
      identity: `${name}-operator`,
      lease: { durationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 500 },
      log: options.log ?? (() => {}),
      ...(options.workers ? { workers: options.workers } : {}),
    });
    await operator.start();
    const oc: OperatorCluster = {
      cluster,
      kc,
      operator,
      get: async (args) => JSON.parse(await cluster.kubectl(["get", ...args, "-o", "json"])),
      apply: async (yaml) => {
        const out: KubeObject[] = [];
        for (const obj of parseManifests(yaml)) {
          out.push(await applyObject(kc, obj, { fieldManager: TEST_MANAGER, force: true }));
        }
        return out;
      },
      remove: async (yaml) => {
        await cluster.kubectl(["delete", "--ignore-not-found", "--wait=false", "-f", "-"], {
          stdin: yaml,
        });
      },
    };
    await body(oc);
  } finally {
    await operator?.stop();
    await clusterDown(name);
  }
}

/**
 * Runs `check` until it returns without throwing (an assertion that holds),
 * every 100 ms; after `timeoutMs` rethrows its last error. Returns its value.
 */
export async function converge<T>(
  check: () => Promise<T>,
  options: { timeoutMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  while (true) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The condition of `type` in a list, or a failed assertion naming what is there. */
export function conditionOf(conditions: Cond[] | undefined, type: string): Cond {
  const c = conditions?.find((x) => x.type === type);
  assert.ok(c, `no ${type} condition in ${JSON.stringify(conditions?.map((x) => x.type))}`);
  return c;
}

/**
 * Asserts conditions as `{ Type: "Status/Reason" }` (reason may be left out:
 * `"True"`), each with `observedGeneration` equal to `generation` when given.
 */
export function assertConditions(
  conditions: Cond[] | undefined,
  expected: Record<string, string>,
  options: { generation?: number; what?: string | undefined } = {},
): void {
  for (const [type, want] of Object.entries(expected)) {
    const c = conditionOf(conditions, type);
    const got = want.includes("/") ? `${c.status}/${c.reason}` : c.status;
    assert.equal(got, want, `${options.what ?? ""} ${type}: ${c.message ?? ""}`.trim());
    if (options.generation !== undefined) {
      assert.equal(
        c.observedGeneration,
        options.generation,
        `${options.what ?? ""} ${type} observedGeneration`,
      );
    }
  }
}

/** A listener's status as kubectl shows it. */
export interface ListenerStatusJson {
  name: string;
  attachedRoutes: number;
  supportedKinds: { group?: string; kind: string }[];
  conditions: Cond[];
}

/** The status of listener `name` of a Gateway read with kubectl. */
export function listenerOf(
  // deno-lint-ignore no-explicit-any
  gateway: any,
  name: string,
): ListenerStatusJson {
  const l = (gateway.status?.listeners as ListenerStatusJson[] | undefined)?.find((x) =>
    x.name === name
  );
  assert.ok(l, `no status of listener ${name}`);
  return l;
}

/** A route's parents entry as kubectl shows it. */
export interface RouteParentJson {
  parentRef: {
    group?: string;
    kind?: string;
    name: string;
    namespace?: string;
    sectionName?: string;
    port?: number;
  };
  controllerName: string;
  conditions: Cond[];
}

/** blixt's parents entries of a route read with kubectl. */
// deno-lint-ignore no-explicit-any
export function blixtParents(route: any): RouteParentJson[] {
  return ((route.status?.parents ?? []) as RouteParentJson[]).filter((p) =>
    p.controllerName === "blixt.dev/gateway-controller"
  );
}

/** Deletes an object through the API, ignoring a 404. */
export async function deleteIgnoringMissing(fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (apiStatus(err) !== 404) throw err;
  }
}
