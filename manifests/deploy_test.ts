/**
 * blixt's manifests say what issue 6 asks, `deno task deploy` installs them
 * and changes nothing the second time, the RBAC grants what each component
 * needs and refuses what it must not do, and `deno task undeploy` removes it
 * all, against the local cluster's real API server.
 */

import assert from "node:assert/strict";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import type { Cluster } from "../tests/cluster/cluster.ts";
import { kubeBinaryPath } from "../tests/cluster/binaries.ts";
import { CommandError, run } from "../tests/cluster/host.ts";
import { apiStatus, applyObject, k8s, type KubeObject, loadKubeConfig } from "../kube/client.ts";
import { parseManifests } from "../kube/manifests.ts";
import { validateGatewayClassConfig } from "../api/gateway_class_config.ts";
import { blixtCrdFiles } from "./crds.ts";
import {
  blixtManifests,
  DEFAULT_IMAGE_TAG,
  deploy,
  FIELD_MANAGER,
  GATEWAY_FINALIZER,
  objectRef,
  sampleFiles,
  undeploy,
} from "./deploy.ts";
import { writeServiceAccountKubeconfig } from "./service_account_kubeconfig.ts";

const CLUSTER = "deploy-test";
const NS = "blixt-system";
const OPERATOR = `system:serviceaccount:${NS}:blixt-operator`;
const AGENT = `system:serviceaccount:${NS}:blixt-agent`;
/** A user the test binds blixt-viewer to, as an admin would. */
const VIEWER = "deploy-test-viewer";

const GW = "gateway.networking.k8s.io";

/**
 * One `kubectl auth can-i` question: verb, resource (`plural.group`, with
 * `/subresource` for a subresource), the expected answer, and where: all
 * namespaces unless `namespace`, any object unless `name`.
 */
type Check = [
  verb: string,
  resource: string,
  expected: "yes" | "no",
  where?: { namespace?: string; name?: string },
];

const OPERATOR_CHECKS: Check[] = [
  // reads everything reconcile needs
  ["get", `gatewayclasses.${GW}`, "yes"],
  ["list", `gatewayclasses.${GW}`, "yes"],
  ["watch", `gateways.${GW}`, "yes"],
  ["list", `tcproutes.${GW}`, "yes"],
  ["watch", `udproutes.${GW}`, "yes"],
  ["list", `referencegrants.${GW}`, "yes"],
  ["watch", "services", "yes"],
  ["list", "endpointslices.discovery.k8s.io", "yes"],
  ["watch", "namespaces", "yes"],
  ["list", "nodes", "yes"],
  ["watch", "dataplanenodes.blixt.dev", "yes"],
  ["list", "gatewayclassconfigs.blixt.dev", "yes"],
  ["get", "customresourcedefinitions.apiextensions.k8s.io", "yes"],
  ["list", "customresourcedefinitions.apiextensions.k8s.io", "yes"],
  // writes status, its finalizer and RoutingTables
  ["update", `gatewayclasses.${GW}/status`, "yes"],
  ["update", `gateways.${GW}/status`, "yes"],
  ["update", `tcproutes.${GW}/status`, "yes"],
  ["update", `udproutes.${GW}/status`, "yes"],
  ["patch", `gateways.${GW}`, "yes"],
  ["update", `gateways.${GW}/finalizers`, "yes"],
  ["create", "routingtables.blixt.dev", "yes"],
  ["patch", "routingtables.blixt.dev", "yes"],
  ["update", "routingtables.blixt.dev", "yes"],
  ["delete", "routingtables.blixt.dev", "yes"],
  ["watch", "routingtables.blixt.dev", "yes"],
  ["create", "events", "yes"],
  // leader election: its own lease only
  ["create", "leases.coordination.k8s.io", "yes", { namespace: NS }],
  ["get", "leases.coordination.k8s.io", "yes", { namespace: NS, name: "blixt-operator" }],
  ["update", "leases.coordination.k8s.io", "yes", { namespace: NS, name: "blixt-operator" }],
  ["watch", "leases.coordination.k8s.io", "yes", { namespace: NS, name: "blixt-operator" }],
  // the agents' liveness Leases: read only
  ["list", "leases.coordination.k8s.io", "yes", { namespace: NS }],
  ["watch", "leases.coordination.k8s.io", "yes", { namespace: NS }],
  ["list", "leases.coordination.k8s.io", "no", { namespace: "kube-system" }],
  // and no more
  ["get", "secrets", "no"],
  ["list", "secrets", "no", { namespace: NS }],
  ["get", "configmaps", "no"],
  ["update", "nodes", "no"],
  ["patch", "nodes", "no"],
  ["update", "nodes/status", "no"],
  ["create", `gateways.${GW}`, "no"],
  ["update", `gateways.${GW}`, "no"],
  ["delete", `gateways.${GW}`, "no"],
  ["update", `tcproutes.${GW}`, "no"],
  ["delete", `udproutes.${GW}`, "no"],
  ["create", `gatewayclasses.${GW}`, "no"],
  ["create", "dataplanenodes.blixt.dev", "no"],
  ["update", "dataplanenodes.blixt.dev/status", "no"],
  ["update", "gatewayclassconfigs.blixt.dev", "no"],
  ["delete", "services", "no"],
  ["create", "endpointslices.discovery.k8s.io", "no"],
  ["create", "pods", "no"],
  ["update", "leases.coordination.k8s.io", "no", { namespace: NS, name: "someone-else" }],
  ["delete", "leases.coordination.k8s.io", "no", { namespace: NS, name: "blixt-operator" }],
  ["create", "leases.coordination.k8s.io", "no", { namespace: "kube-system" }],
  ["update", "leases.coordination.k8s.io", "no", {
    namespace: "kube-system",
    name: "kube-controller-manager",
  }],
  ["create", "serviceaccounts/token", "no", { namespace: NS }],
  ["update", "customresourcedefinitions.apiextensions.k8s.io", "no"],
  ["create", "clusterrolebindings.rbac.authorization.k8s.io", "no"],
  ["impersonate", "users", "no"],
];

const AGENT_CHECKS: Check[] = [
  ["get", "routingtables.blixt.dev", "yes"],
  ["list", "routingtables.blixt.dev", "yes"],
  ["watch", "routingtables.blixt.dev", "yes"],
  ["get", "nodes", "yes"],
  ["list", "nodes", "yes"],
  ["watch", "nodes", "yes"],
  ["create", "dataplanenodes.blixt.dev", "yes"],
  ["get", "dataplanenodes.blixt.dev", "yes"],
  ["patch", "dataplanenodes.blixt.dev", "yes"],
  ["update", "dataplanenodes.blixt.dev", "yes"],
  ["patch", "dataplanenodes.blixt.dev/status", "yes"],
  ["update", "dataplanenodes.blixt.dev/status", "yes"],
  // its liveness Lease, in blixt-system
  ["create", "leases.coordination.k8s.io", "yes", { namespace: NS }],
  ["get", "leases.coordination.k8s.io", "yes", { namespace: NS, name: "blixt-agent-node-1" }],
  ["update", "leases.coordination.k8s.io", "yes", { namespace: NS, name: "blixt-agent-node-1" }],
  // and nothing else
  ["create", "routingtables.blixt.dev", "no"],
  ["update", "routingtables.blixt.dev", "no"],
  ["patch", "routingtables.blixt.dev", "no"],
  ["delete", "routingtables.blixt.dev", "no"],
  ["update", "routingtables.blixt.dev/status", "no"],
  ["get", "secrets", "no"],
  ["list", "secrets", "no", { namespace: NS }],
  ["update", "nodes", "no"],
  ["patch", "nodes", "no"],
  ["patch", "nodes/status", "no"],
  ["delete", "dataplanenodes.blixt.dev", "no"],
  ["list", "dataplanenodes.blixt.dev", "no"],
  ["list", "services", "no"],
  ["list", "endpointslices.discovery.k8s.io", "no"],
  ["list", `gateways.${GW}`, "no"],
  ["update", `gateways.${GW}/status`, "no"],
  ["create", "events", "no"],
  ["create", "pods", "no"],
  ["list", "leases.coordination.k8s.io", "no", { namespace: NS }],
  ["delete", "leases.coordination.k8s.io", "no", { namespace: NS, name: "blixt-agent-node-1" }],
  ["create", "leases.coordination.k8s.io", "no", { namespace: "kube-system" }],
  ["update", "leases.coordination.k8s.io", "no", { namespace: "kube-node-lease", name: "node-1" }],
  ["create", "serviceaccounts/token", "no", { namespace: NS }],
];

const VIEWER_CHECKS: Check[] = [
  ["get", `gateways.${GW}`, "yes"],
  ["list", `gateways.${GW}`, "yes"],
  ["list", `gatewayclasses.${GW}`, "yes"],
  ["list", `tcproutes.${GW}`, "yes"],
  ["get", `udproutes.${GW}`, "yes"],
  ["list", "routingtables.blixt.dev", "yes"],
  ["get", "dataplanenodes.blixt.dev", "yes"],
  ["list", "dataplanenodes.blixt.dev", "yes"],
  ["list", "gatewayclassconfigs.blixt.dev", "yes"],
  ["list", "nodes", "yes"],
  ["list", "services", "yes"],
  ["list", "endpointslices.discovery.k8s.io", "yes"],
  ["get", "namespaces", "yes"],
  ["list", "leases.coordination.k8s.io", "yes", { namespace: NS }],
  // writes nothing, reads no Secrets
  ["create", `gateways.${GW}`, "no"],
  ["update", `gateways.${GW}`, "no"],
  ["patch", `gateways.${GW}`, "no"],
  ["delete", `gateways.${GW}`, "no"],
  ["update", `gateways.${GW}/status`, "no"],
  ["create", `tcproutes.${GW}`, "no"],
  ["delete", `udproutes.${GW}`, "no"],
  ["update", "routingtables.blixt.dev", "no"],
  ["patch", "dataplanenodes.blixt.dev", "no"],
  ["update", "gatewayclassconfigs.blixt.dev", "no"],
  ["delete", "nodes", "no"],
  ["update", "services", "no"],
  ["get", "secrets", "no"],
  ["list", "secrets", "no"],
  ["create", "pods", "no"],
];

/** `kubectl auth can-i` as `user`, "yes" or "no" (kubectl exits 1 on "no"). */
async function canI(cluster: Cluster, user: string, check: Check): Promise<string> {
  const [verb, resource, , where] = check;
  const [plural, subresource] = resource.split("/");
  const args = [
    "auth",
    "can-i",
    verb,
    where?.name ? `${plural}/${where.name}` : plural!,
    ...(subresource ? [`--subresource=${subresource}`] : []),
    ...(where?.namespace ? ["-n", where.namespace] : ["-A"]),
    `--as=${user}`,
  ];
  try {
    return (await cluster.kubectl(args)).trim();
  } catch (err) {
    if (err instanceof CommandError && err.code === 1) return err.stderr.trim();
    throw err;
  }
}

/** Asks every check (four at a time) and lists the ones answered otherwise. */
async function wrongAnswers(cluster: Cluster, user: string, checks: Check[]): Promise<string[]> {
  const wrong: string[] = [];
  for (let i = 0; i < checks.length; i += 4) {
    const batch = checks.slice(i, i + 4);
    const answers = await Promise.all(batch.map((c) => canI(cluster, user, c)));
    batch.forEach((c, j) => {
      if (answers[j] !== c[2]) wrong.push(`${JSON.stringify(c)}: kubectl said ${answers[j]}`);
    });
  }
  return wrong;
}

/** resourceVersion of every object deploy manages, by kubectl name. */
async function resourceVersions(kc: k8s.KubeConfig): Promise<Map<string, string>> {
  const api = kc.makeApiClient(k8s.KubernetesObjectApi);
  const crds = blixtCrdFiles().flatMap((f) => parseManifests(Deno.readTextFileSync(f)));
  const versions = new Map<string, string>();
  for (const obj of [...crds, ...blixtManifests()]) {
    const live = await api.read({
      apiVersion: obj.apiVersion!,
      kind: obj.kind!,
      metadata: { name: obj.metadata!.name!, namespace: obj.metadata!.namespace ?? "" },
    });
    versions.set(objectRef(obj), live.metadata!.resourceVersion!);
  }
  return versions;
}

async function exists(kc: k8s.KubeConfig, obj: k8s.KubernetesObject): Promise<boolean> {
  try {
    const live = await kc.makeApiClient(k8s.KubernetesObjectApi).read({
      apiVersion: obj.apiVersion!,
      kind: obj.kind!,
      metadata: { name: obj.metadata!.name!, namespace: obj.metadata!.namespace ?? "" },
    });
    return !live.metadata?.deletionTimestamp;
  } catch (err) {
    if (apiStatus(err) === 404 || String(err).includes("Unrecognized API version")) return false;
    throw err;
  }
}

function crdBundleVersion(cluster: Cluster, name: string): Promise<string> {
  return cluster.kubectl([
    "get",
    "crd",
    name,
    "-o",
    `jsonpath={.metadata.annotations.gateway\\.networking\\.k8s\\.io/bundle-version}`,
  ]);
}

type PodSpec = {
  hostNetwork?: boolean;
  tolerations?: { operator?: string }[];
  securityContext?: Record<string, unknown>;
  volumes?: { name: string; hostPath?: { path: string } }[];
  containers: {
    image: string;
    args?: string[];
    env?: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
    readinessProbe?: unknown;
    livenessProbe?: unknown;
    resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
    securityContext?: {
      allowPrivilegeEscalation?: boolean;
      readOnlyRootFilesystem?: boolean;
      capabilities?: { drop?: string[]; add?: string[] };
    };
    volumeMounts?: { name: string; mountPath: string }[];
  }[];
};

function podSpec(objects: KubeObject[], kind: string): { replicas?: number; pod: PodSpec } {
  const obj = objects.find((o) => o.kind === kind)!;
  const spec = obj.spec as { replicas?: number; template: { spec: PodSpec } };
  return { ...(spec.replicas ? { replicas: spec.replicas } : {}), pod: spec.template.spec };
}

Deno.test("every object blixt installs, samples included, is labelled part-of blixt", () => {
  const crds = blixtCrdFiles().flatMap((f) => parseManifests(Deno.readTextFileSync(f)));
  const samples = sampleFiles().flatMap((f) => parseManifests(Deno.readTextFileSync(f)));
  for (const obj of [...crds, ...blixtManifests(), ...samples]) {
    assert.equal(obj.metadata?.labels?.["app.kubernetes.io/part-of"], "blixt", objectRef(obj));
    const template = (obj.spec as { template?: { metadata?: k8s.V1ObjectMeta } })?.template;
    if (template) {
      assert.equal(template.metadata?.labels?.["app.kubernetes.io/part-of"], "blixt");
    }
  }
});

Deno.test("the operator runs twice over, unprivileged, with probes and resources", () => {
  const { replicas, pod } = podSpec(blixtManifests(), "Deployment");
  assert.equal(replicas, 2);
  assert.equal(pod.securityContext?.runAsNonRoot, true);
  const [c] = pod.containers;
  assert.ok(c?.readinessProbe && c.livenessProbe);
  assert.ok(
    c.resources?.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory,
  );
  assert.deepEqual(c.securityContext, {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
  });
  assert.deepEqual(c.args, ["--health-port", "8081"]);
});

Deno.test("the agent runs on every node's network with bpffs and only the capabilities it needs", () => {
  const { pod } = podSpec(blixtManifests(), "DaemonSet");
  assert.equal(pod.hostNetwork, true);
  assert.deepEqual(pod.tolerations, [{ operator: "Exists" }]);
  assert.deepEqual(pod.volumes?.find((v) => v.name === "bpffs")?.hostPath?.path, "/sys/fs/bpf");
  const [c] = pod.containers;
  assert.ok(c?.readinessProbe && c.livenessProbe);
  assert.deepEqual(c.securityContext?.capabilities, {
    drop: ["ALL"],
    add: ["BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"],
  });
  assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
  assert.equal(c.securityContext?.readOnlyRootFilesystem, true);
  assert.deepEqual(c.args?.slice(0, 2), ["--node", "$(NODE_NAME)"]);
  assert.equal(
    c.env?.find((e) => e.name === "NODE_NAME")?.valueFrom?.fieldRef?.fieldPath,
    "spec.nodeName",
  );
  assert.ok(c.args?.join(" ").includes("--bpffs /sys/fs/bpf/blixt"));
});

Deno.test("--image-tag and --registry choose the operator's and agent's images", () => {
  const images = (objects: KubeObject[]) =>
    ["Deployment", "DaemonSet"].map((k) => podSpec(objects, k).pod.containers[0]!.image);
  assert.deepEqual(images(blixtManifests()), [
    `ghcr.io/blixt-dev/blixt-operator:${DEFAULT_IMAGE_TAG}`,
    `ghcr.io/blixt-dev/blixt-agent:${DEFAULT_IMAGE_TAG}`,
  ]);
  assert.deepEqual(images(blixtManifests({ imageTag: "dev", registry: "localhost:5000/me" })), [
    "localhost:5000/me/blixt-operator:dev",
    "localhost:5000/me/blixt-agent:dev",
  ]);
});

Deno.test("the default GatewayClass is ours and its config is valid", () => {
  const objects = blixtManifests();
  const cls = objects.find((o) => o.kind === "GatewayClass")!;
  const spec = cls.spec as { controllerName: string; parametersRef: { name: string } };
  assert.equal(cls.metadata?.name, "blixt");
  assert.equal(spec.controllerName, "blixt.dev/gateway-controller");
  const config = objects.find((o) => o.kind === "GatewayClassConfig")!;
  assert.equal(config.metadata?.name, spec.parametersRef.name);
  assert.deepEqual(validateGatewayClassConfig(config).ok, true);
});

Deno.test("the images are built on the Deno that runs these tests", async () => {
  for (const name of ["operator", "agent"]) {
    const text = await Deno.readTextFile(
      new URL(`./images/${name}.Containerfile`, import.meta.url),
    );
    assert.match(text, new RegExp(`^ARG DENO_VERSION=${Deno.version.deno}$`, "m"));
    assert.match(text, /FROM docker\.io\/denoland\/deno:[a-z]+-\$\{DENO_VERSION\}/);
    assert.match(text, new RegExp(`${name}/main\\.ts`));
  }
  const agent = await Deno.readTextFile(new URL("./images/agent.Containerfile", import.meta.url));
  assert.match(agent, /install .*libbpf1/);
  assert.match(agent, /COPY --from=bpf \/src\/bpf\/blixt\.o \/app\/bpf\/blixt\.o/);
  const operator = await Deno.readTextFile(
    new URL("./images/operator.Containerfile", import.meta.url),
  );
  assert.match(operator, /^USER 1993:1993$/m);
});

Deno.test({
  name: "deploy, RBAC and undeploy against the local cluster",
  async fn(t) {
    const cluster = await clusterUp({ name: CLUSTER, nodes: 2 });
    const tmp = await Deno.makeTempDir({ prefix: "deploy-test-" });
    try {
      const kc = cluster.kubeConfig();
      const lines: string[] = [];
      const log = (line: string) => lines.push(line);

      await t.step("deploy creates blixt's CRDs and every manifest", async () => {
        const report = await deploy(kc, { log });
        const expected = [
          ...blixtCrdFiles().flatMap((f) => parseManifests(Deno.readTextFileSync(f))),
          ...blixtManifests(),
        ].map((o) => `${objectRef(o)} created`);
        assert.deepEqual(report.changes.map((c) => `${c.ref} ${c.outcome}`), expected);
        assert.equal(report.gatewayApi.action, "keep");
        assert.equal(report.wait, "no-nodes");
        assert.ok(lines.includes("deployment.apps/blixt-operator created"));
        assert.match(lines.at(-1)!, /^not waiting: no node can run pods/);
      });

      await t.step("a second deploy changes nothing", async () => {
        const before = await resourceVersions(kc);
        const report = await deploy(kc, {});
        assert.deepEqual(report.changes.filter((c) => c.outcome !== "unchanged"), []);
        assert.deepEqual(await resourceVersions(kc), before);
      });

      await t.step("a dry run reports a new image tag and changes nothing", async () => {
        const before = await resourceVersions(kc);
        const report = await deploy(kc, { dryRun: true, imageTag: "next" });
        assert.deepEqual(
          report.changes.filter((c) => c.outcome !== "unchanged").map((c) => c.ref),
          ["deployment.apps/blixt-operator", "daemonset.apps/blixt-agent"],
        );
        assert.deepEqual(await resourceVersions(kc), before);
      });

      await t.step("every sample passes a server-side dry run", async () => {
        for (const file of sampleFiles()) {
          for (const obj of parseManifests(await Deno.readTextFile(file))) {
            await applyObject(kc, obj, { fieldManager: FIELD_MANAGER, dryRun: true });
          }
        }
        assert.deepEqual(
          sampleFiles().map((f) => f.split("/").at(-1)),
          ["echo.yaml", "gateway.yaml", "tcp_route.yaml", "udp_route.yaml"],
        );
      });

      await t.step("the operator can do what reconciling needs, and no more", async () => {
        assert.deepEqual(await wrongAnswers(cluster, OPERATOR, OPERATOR_CHECKS), []);
      });

      await t.step(
        "the agent reads RoutingTables and Nodes, writes DataplaneNodes only",
        async () => {
          assert.deepEqual(await wrongAnswers(cluster, AGENT, AGENT_CHECKS), []);
        },
      );

      await t.step(
        "blixt-viewer, once bound, reads what kubectl-blixt shows and writes nothing",
        async () => {
          assert.equal(
            await canI(cluster, VIEWER, ["list", `gateways.${GW}`, "no"]),
            "no",
            "deploy binds blixt-viewer to no one",
          );
          await cluster.kubectl([
            "create",
            "clusterrolebinding",
            VIEWER,
            "--clusterrole=blixt-viewer",
            `--user=${VIEWER}`,
          ]);
          assert.deepEqual(await wrongAnswers(cluster, VIEWER, VIEWER_CHECKS), []);
        },
      );

      await t.step("a service account's kubeconfig authenticates as that account", async () => {
        for (const name of ["blixt-operator", "blixt-agent"]) {
          const sa = await writeServiceAccountKubeconfig(kc, { namespace: NS, name }, {
            path: `${tmp}/${name}.kubeconfig`,
          });
          assert.equal((await Deno.stat(sa.path)).mode! & 0o777, 0o600);
          const whoami = await run([
            await kubeBinaryPath(),
            "kubectl",
            "--kubeconfig",
            sa.path,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
          ]);
          assert.equal(whoami.stdout, `system:serviceaccount:${NS}:${name}`);
        }
        // Its rights are the account's: the agent lists RoutingTables, not Secrets.
        const agent = loadKubeConfig({ kubeconfig: `${tmp}/blixt-agent.kubeconfig` });
        await agent.makeApiClient(k8s.CustomObjectsApi).listClusterCustomObject({
          group: "blixt.dev",
          version: "v1alpha1",
          plural: "routingtables",
        });
        await assert.rejects(
          agent.makeApiClient(k8s.CoreV1Api).listSecretForAllNamespaces(),
          (err) => apiStatus(err) === 403,
        );
      });

      await t.step(
        "an older Gateway API bundle is upgraded, a newer one is never downgraded",
        async () => {
          const annotate = (crd: string, version: string) =>
            cluster.kubectl([
              "annotate",
              "--overwrite",
              "crd",
              crd,
              `gateway.networking.k8s.io/bundle-version=${version}`,
            ]);
          await annotate(`udproutes.${GW}`, "v1.5.1");
          lines.length = 0;
          let report = await deploy(kc, { log });
          assert.equal(report.gatewayApi.action, "upgrade");
          assert.match(lines[0]!, /Gateway API v1\.5\.1: upgrading to v1\.6\.3 \(experimental\)/);
          assert.ok(
            lines.includes(
              `customresourcedefinition.apiextensions.k8s.io/udproutes.${GW} configured`,
            ),
          );
          assert.equal(await crdBundleVersion(cluster, `udproutes.${GW}`), "v1.6.3");

          await annotate(`tcproutes.${GW}`, "v1.7.0");
          lines.length = 0;
          report = await deploy(kc, { log });
          assert.equal(report.gatewayApi.action, "keep");
          assert.match(lines[0]!, /v1\.7\.0, newer than .*\(never downgraded\)/);
          assert.equal(await crdBundleVersion(cluster, `tcproutes.${GW}`), "v1.7.0");
          await annotate(`tcproutes.${GW}`, "v1.6.3");
        },
      );

      await t.step("where a node can run pods, deploy waits, and only so long", async () => {
        const core = kc.makeApiClient(k8s.CoreV1Api);
        const setKubelet = (version: string) =>
          core.patchNodeStatus(
            { name: "node-1", body: { status: { nodeInfo: { kubeletVersion: version } } } },
            k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
          );
        await setKubelet("v1.37.2");
        try {
          await assert.rejects(
            deploy(kc, { timeoutMs: 1000 }),
            /timed out after 1 s waiting for blixt: deployment\.apps\/blixt-operator 0\/2 available, daemonset\.apps\/blixt-agent 0\/0 available/,
          );
        } finally {
          await setKubelet("none");
        }
      });

      await t.step("undeploy removes blixt and what it left, and keeps the CRDs", async () => {
        for (
          const obj of parseManifests(`
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: held, namespace: default, finalizers: [${GATEWAY_FINALIZER}] }
spec:
  gatewayClassName: blixt
  listeners: [{ name: tcp, port: 80, protocol: TCP }]
---
apiVersion: blixt.dev/v1alpha1
kind: RoutingTable
metadata: { name: held, namespace: default }
spec: { addresses: [198.18.88.1], entries: [] }
---
apiVersion: blixt.dev/v1alpha1
kind: DataplaneNode
metadata: { name: node-1 }
spec: { nodeName: node-1 }
`)
        ) await applyObject(kc, obj, { fieldManager: "deploy-test" });
        lines.length = 0;
        const changes = await undeploy(kc, { log });
        assert.ok(lines.includes(`deployment.apps "blixt-operator" deleted`), lines.join("\n"));
        assert.ok(lines.includes(`routingtable.blixt.dev "held" deleted`));
        assert.ok(lines.includes(`dataplanenode.blixt.dev "node-1" deleted`));
        assert.ok(lines.includes(`namespace "blixt-system" deleted`));
        assert.equal(changes.filter((c) => c.outcome === "configured").length, 1);
        for (const obj of blixtManifests()) assert.ok(!(await exists(kc, obj)), objectRef(obj));
        const gateway = await kc.makeApiClient(k8s.CustomObjectsApi).getNamespacedCustomObject({
          group: GW,
          version: "v1",
          plural: "gateways",
          namespace: "default",
          name: "held",
        }) as KubeObject;
        assert.deepEqual(gateway.metadata?.finalizers ?? [], [], "the Gateway stays, unheld");
        for (
          const crd of blixtCrdFiles().flatMap((f) => parseManifests(Deno.readTextFileSync(f)))
        ) {
          assert.ok(await exists(kc, crd), objectRef(crd));
        }
        assert.deepEqual(await undeploy(kc, {}), [], "a second undeploy deletes nothing");
        // The local cluster has no namespace controller: blixt-system stays Terminating.
        await assert.rejects(deploy(kc, {}), /namespace blixt-system is being deleted/);
      });

      await t.step("undeploy --crds removes blixt's CRDs, never the Gateway API's", async () => {
        lines.length = 0;
        await undeploy(kc, { crds: true, log });
        assert.ok(lines.includes(
          `customresourcedefinition.apiextensions.k8s.io "routingtables.blixt.dev" deleted`,
        ));
        for (
          const crd of blixtCrdFiles().flatMap((f) => parseManifests(Deno.readTextFileSync(f)))
        ) {
          assert.ok(!(await exists(kc, crd)), objectRef(crd));
        }
        assert.equal(await crdBundleVersion(cluster, `gateways.${GW}`), "v1.6.3");
      });
    } finally {
      await Deno.remove(tmp, { recursive: true });
      await clusterDown(CLUSTER);
    }
  },
});
