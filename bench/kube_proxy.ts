/**
 * The real kube-proxy (nftables mode) on the local cluster, as the peer of
 * `deno task bench peer`: built from the pinned k8s.io/kubernetes module
 * (bench/kube_proxy/, the pins of tests/cluster/kube/go.mod) into a binary of
 * its own, cached like the cluster's `kube`, and built only when a benchmark
 * asks for it; one process per node network namespace, with the credentials
 * of its own service account (ClusterRole `system:node-proxier`, as kubeadm
 * grants it).
 *
 * @module
 */

import {
  cacheDir,
  kubernetesVersion,
  requireGo,
  versionLdflags,
} from "../tests/cluster/binaries.ts";
import { type Cluster } from "../tests/cluster/cluster.ts";
import { processAlive, run, sleep, spawnDetached, stopProcess } from "../tests/cluster/host.ts";
import { writeServiceAccountKubeconfig } from "../manifests/service_account_kubeconfig.ts";

const moduleDir = new URL("./kube_proxy/", import.meta.url).pathname;

async function sourceHash(): Promise<string> {
  const text: string[] = [];
  for (const name of ["go.mod", "go.sum", "main.go"]) {
    text.push(name, await Deno.readTextFile(moduleDir + name));
  }
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text.join("\n")));
  return Array.from(new Uint8Array(digest).slice(0, 8))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Builds kube-proxy unless a build for the current pins is cached; returns
 * its path. `log` receives one line before a build starts.
 */
export async function ensureKubeProxyBinary(
  log: (line: string) => void = () => {},
): Promise<string> {
  const path = `${cacheDir()}/kube-proxy-${await sourceHash()}/kube-proxy`;
  try {
    await Deno.stat(path);
    return path;
  } catch {
    // not cached: build below
  }
  await requireGo();
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  log(
    `building kube-proxy ${await kubernetesVersion()} into ${path} (about a minute when the ` +
      `cluster's kube binary is already built; cached afterwards)`,
  );
  const tmp = `${path}.build-${Deno.pid}`;
  await run(["go", "build", "-trimpath", `-ldflags=${await versionLdflags()}`, "-o", tmp, "."], {
    cwd: moduleDir,
    env: { GOFLAGS: "-mod=readonly" },
  });
  await Deno.rename(tmp, path);
  return path;
}

/** kube-proxy's configuration for one node (nftables mode, node-local ports). */
export function kubeProxyConfig(
  node: { name: string; ip: string },
  kubeconfig: string,
): string {
  // Zero conntrack settings: kube-proxy leaves the host's (global) conntrack sysctls alone.
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: ${node.name}
clientConnection:
  kubeconfig: ${kubeconfig}
detectLocalMode: NodeCIDR
healthzBindAddress: ${node.ip}:10256
metricsBindAddress: ${node.ip}:10249
nodePortAddresses: ["primary"]
oomScoreAdj: null
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`;
}

const RBAC = `apiVersion: v1
kind: ServiceAccount
metadata: { name: kube-proxy, namespace: kube-system }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: bench-kube-proxy }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:node-proxier" }
subjects: [{ kind: ServiceAccount, name: kube-proxy, namespace: kube-system }]
`;

/** A kube-proxy process in a node's namespace. */
export interface KubeProxyProcess {
  node: string;
  pid: number;
  log: string;
  netns: string;
}

/**
 * Starts kube-proxy in every node's namespace and resolves once each reports
 * healthy (`/healthz` after its first full sync). `verbosity` 2 logs each sync's
 * start and end ("Syncing nftables rules", "SyncProxyRules complete").
 */
export async function startKubeProxies(
  cluster: Cluster,
  log: (line: string) => void = () => {},
  options: { verbosity?: number } = {},
): Promise<KubeProxyProcess[]> {
  const binary = await ensureKubeProxyBinary(log);
  await cluster.kubectl(["apply", "-f", "-"], { stdin: RBAC });
  const kubeconfig = `${cluster.dir}/kube-proxy.kubeconfig`;
  await writeServiceAccountKubeconfig(cluster.kubeConfig(), {
    namespace: "kube-system",
    name: "kube-proxy",
  }, { path: kubeconfig, expirationSeconds: 24 * 3600 });
  const procs: KubeProxyProcess[] = [];
  for (const node of cluster.nodes) {
    const config = `${cluster.dir}/kube-proxy-${node.name}.yaml`;
    await Deno.writeTextFile(config, kubeProxyConfig(node, kubeconfig));
    const logFile = `${cluster.dir}/kube-proxy-${node.name}.log`;
    const pid = await spawnDetached([
      binary,
      "--config",
      config,
      "--v",
      String(options.verbosity ?? 1),
    ], {
      netns: node.netns,
      log: logFile,
    });
    procs.push({ node: node.name, pid, log: logFile, netns: node.netns });
  }
  for (const p of procs) {
    const node = cluster.nodes.find((n) => n.name === p.node)!;
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (!processAlive(p.pid)) {
        const tail = (await Deno.readTextFile(p.log)).split("\n").slice(-15).join("\n");
        throw new Error(`kube-proxy on ${p.node} exited:\n${tail}`);
      }
      const ok = await fetch(`http://${node.ip}:10256/healthz`).then(async (r) => {
        await r.body?.cancel();
        return r.ok;
      }).catch(() => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`kube-proxy on ${p.node}: not healthy in 60 s`);
      await sleep(200);
    }
  }
  log(`kube-proxy (nftables) running on ${procs.length} nodes`);
  return procs;
}

/** Stops the kube-proxies and removes their nftables tables from the nodes. */
export async function stopKubeProxies(procs: KubeProxyProcess[]): Promise<void> {
  for (const p of procs) {
    await stopProcess(p.pid);
    for (const family of ["ip", "ip6"]) {
      await run(["nft", "delete", "table", family, "kube-proxy"], {
        netns: p.netns,
        allowFailure: true,
      });
    }
  }
}

/** CPU seconds (user + system) process `pid` has used so far. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100;
}
