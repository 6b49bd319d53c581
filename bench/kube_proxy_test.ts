import assert from "node:assert/strict";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { routeThrough, tcpAsk } from "../tests/e2e/traffic.ts";
import { loadBalancerAddress, loadBalancerServiceYaml, setLoadBalancerIngress } from "./peer.ts";
import { startKubeProxies, stopKubeProxies } from "./kube_proxy.ts";

/**
 * Builds kube-proxy (bench/kube_proxy/), so it runs only when asked:
 * `BLIXT_PEER_TEST=1 deno test -A bench/kube_proxy_test.ts`. The cluster's
 * own tests and CI do not build kube-proxy.
 */
const ASKED = Deno.env.get("BLIXT_PEER_TEST") === "1";

Deno.test({
  name: "kube-proxy (nftables) forwards a LoadBalancer address to local and remote backends",
  ignore: !ASKED,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await clusterUp({ name: "kube-proxy-test", nodes: 2 });
    let procs: Awaited<ReturnType<typeof startKubeProxies>> = [];
    try {
      procs = await startKubeProxies(cluster);
      const local = await cluster.createPod({ name: "echo-local", node: "node-1" });
      const remote = await cluster.createPod({ name: "echo-remote", node: "node-2" });
      const node1 = cluster.nodes[0]!;
      for (const [i, pod] of [local, remote].entries()) {
        const name = `lb-${i}`;
        const address = loadBalancerAddress(cluster.plan, 250 + i);
        await cluster.kubectl(["apply", "-f", "-"], {
          stdin: loadBalancerServiceYaml(name, [{ name: "echo", port: 8080 }], [pod]),
        });
        await setLoadBalancerIngress(cluster, name, [address]);
        // Through node-1 only: the local backend is on node-1, the remote one on node-2.
        await routeThrough(address, node1.ip);
        let answer;
        for (let attempt = 0;; attempt++) {
          try {
            answer = await tcpAsk(address, 8080, "hi");
            break;
          } catch (e) {
            if (attempt > 50) throw e;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
        assert.equal(answer.name, pod.name);
        assert.equal(answer.text, "hi");
      }
      const rules = await cluster.exec(node1.netns, ["nft", "list", "table", "ip", "kube-proxy"]);
      assert.match(rules, /service-ips/);
    } finally {
      await stopKubeProxies(procs);
      await clusterDown("kube-proxy-test");
    }
  },
});
