/**
 * Another cluster (kind, or any with nodes that run pods) reached through a
 * kubeconfig, with blixt already deployed there (`deno task deploy`): what
 * the e2e suite needs of a cluster, with backends as real Pods. Selected by
 * `BLIXT_E2E_KUBECONFIG` (see docs/e2e.md); not exercised by this
 * repository's CI, which has no cluster that runs pods.
 *
 * A backend pod runs tests/cluster/echo_server.ts (from a ConfigMap) in the
 * `denoland/deno` image (`BLIXT_E2E_ECHO_IMAGE` to change it), pinned to its
 * node with `nodeName`, so it answers as the local cluster's pods do.
 *
 * @module
 */

import { k8s, loadKubeConfig } from "../../kube/client.ts";
import { run, sleep } from "../cluster/host.ts";

/** A backend pod: its name, node and address. */
export interface BackendPod {
  name: string;
  node: string;
  ip: string;
}

/** A node as the suite uses it: its name and the address traffic is routed to. */
export interface TestNode {
  name: string;
  ip: string;
}

/**
 * What the e2e suite needs of a cluster; the local cluster's `Cluster` has
 * all of it, and {@linkcode RemoteCluster} is another cluster's.
 */
export interface TestCluster {
  readonly name: string;
  /** Path of an admin kubeconfig. */
  readonly kubeconfig: string;
  readonly nodes: readonly TestNode[];
  kubeConfig(): k8s.KubeConfig;
  /** Runs kubectl against the cluster and returns its stdout (throws when it fails). */
  kubectl(args: string[]): Promise<string>;
  /** Starts an echo backend (TCP and UDP 8080) on `node` and resolves once it is ready. */
  createPod(options: { name: string; node: string }): Promise<BackendPod>;
  deletePod(name: string): Promise<void>;
}

const ECHO_CONFIGMAP = "blixt-e2e-echo";
const NAMESPACE = "default";
const echoServer = new URL("../cluster/echo_server.ts", import.meta.url).pathname;

/** Another cluster, through its kubeconfig. */
export class RemoteCluster implements TestCluster {
  readonly name = "remote";

  private constructor(
    readonly kubeconfig: string,
    readonly nodes: readonly TestNode[],
    readonly kubectlCommand: readonly string[],
  ) {}

  /**
   * Reads the cluster's nodes (name and InternalIP) through `kubeconfig`.
   * `kubectl` is the command that runs kubectl (default `$KUBECTL` or `kubectl`).
   */
  static async connect(
    kubeconfig: string,
    options: { kubectl?: readonly string[] } = {},
  ): Promise<RemoteCluster> {
    const command = options.kubectl ?? [Deno.env.get("KUBECTL") ?? "kubectl"];
    const probe = new RemoteCluster(kubeconfig, [], command);
    const list = JSON.parse(await probe.kubectl(["get", "nodes", "-o", "json"])) as {
      items: {
        metadata: { name: string };
        status?: { addresses?: { type: string; address: string }[] };
      }[];
    };
    const nodes = list.items.map((n) => ({
      name: n.metadata.name,
      ip: n.status?.addresses?.find((a) => a.type === "InternalIP")?.address ?? "",
    })).filter((n) => n.ip !== "").sort((a, b) => a.name.localeCompare(b.name));
    return new RemoteCluster(kubeconfig, nodes, command);
  }

  kubeConfig(): k8s.KubeConfig {
    return loadKubeConfig({ kubeconfig: this.kubeconfig });
  }

  async kubectl(args: string[], options: { stdin?: string } = {}): Promise<string> {
    return (await run([...this.kubectlCommand, "--kubeconfig", this.kubeconfig, ...args], options))
      .stdout;
  }

  async createPod(options: { name: string; node: string }): Promise<BackendPod> {
    await this.kubectl(["apply", "--server-side", "--force-conflicts", "-f", "-"], {
      stdin: JSON.stringify({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: ECHO_CONFIGMAP, namespace: NAMESPACE },
        data: { "echo_server.ts": await Deno.readTextFile(echoServer) },
      }),
    });
    const image = Deno.env.get("BLIXT_E2E_ECHO_IMAGE") ?? "denoland/deno:2.9.6";
    await this.kubectl(["apply", "--server-side", "-f", "-"], {
      stdin: JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name: options.name,
          namespace: NAMESPACE,
          labels: { "app.kubernetes.io/part-of": "blixt-e2e" },
        },
        spec: {
          nodeName: options.node,
          terminationGracePeriodSeconds: 1,
          containers: [{
            name: "echo",
            image,
            args: [
              "run",
              "--allow-net",
              "--unstable-net",
              "/echo/echo_server.ts",
              "--name",
              options.name,
              "--port",
              "8080",
            ],
            readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
            volumeMounts: [{ name: "echo", mountPath: "/echo" }],
          }],
          volumes: [{ name: "echo", configMap: { name: ECHO_CONFIGMAP } }],
        },
      }),
    });
    const deadline = Date.now() + 180_000;
    while (true) {
      const pod = JSON.parse(
        await this.kubectl(["get", "pod", options.name, "-n", NAMESPACE, "-o", "json"]),
      ) as { status?: { podIP?: string; conditions?: { type: string; status: string }[] } };
      const ready = pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
      if (ready && pod.status?.podIP) {
        return { name: options.name, node: options.node, ip: pod.status.podIP };
      }
      if (Date.now() > deadline) throw new Error(`pod ${options.name} not Ready within 180 s`);
      await sleep(500);
    }
  }

  async deletePod(name: string): Promise<void> {
    await this.kubectl(["delete", "pod", name, "-n", NAMESPACE, "--ignore-not-found", "--wait"]);
  }
}

/** The host's source address toward `ip` (what a backend on the receiving node sees). */
export async function sourceAddressTo(ip: string): Promise<string> {
  const out = (await run(["ip", "-o", "route", "get", ip])).stdout;
  const m = / src (\S+)/.exec(out);
  if (!m?.[1]) throw new Error(`no source address toward ${ip}: ${out.trim()}`);
  return m[1];
}
