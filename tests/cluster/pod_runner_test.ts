import assert from "node:assert/strict";
import { sleep } from "./host.ts";
import { type Cluster, clusterDown, clusterUp } from "./cluster.ts";
import { listNetns } from "./host.ts";

const NAME = "conf-test-pods";

interface Pod {
  metadata: { name: string; uid: string; labels?: Record<string, string> };
  spec: { nodeName?: string };
  status?: {
    phase?: string;
    podIP?: string;
    hostIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: {
      ready: boolean;
      restartCount: number;
      state: Record<string, { reason?: string; message?: string; exitCode?: number }>;
      lastState: Record<string, { exitCode?: number }>;
    }[];
  };
}

async function getJson<T>(cluster: Cluster, args: string[]): Promise<T> {
  return JSON.parse(await cluster.kubectl([...args, "-o", "json"])) as T;
}

async function pods(cluster: Cluster, selector: string): Promise<Pod[]> {
  return (await getJson<{ items: Pod[] }>(cluster, ["get", "pods", "-n", "pods", "-l", selector]))
    .items;
}

async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}

function isReady(p: Pod): boolean {
  return p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

const MANIFESTS = `
apiVersion: v1
kind: Namespace
metadata: { name: pods }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: echo, namespace: pods }
spec:
  replicas: 2
  selector: { matchLabels: { app: echo } }
  template:
    metadata: { labels: { app: echo } }
    spec:
      containers:
        - name: echo
          image: registry.k8s.io/gateway-api/echo-basic:v1.5.1
          ports: [{ name: http, containerPort: 3000 }]
          env:
            - { name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
            - { name: NAMESPACE, valueFrom: { fieldRef: { fieldPath: metadata.namespace } } }
          readinessProbe: { httpGet: { path: /health, port: http }, periodSeconds: 1 }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: pods }
spec:
  selector: { app: echo }
  ports: [{ name: http, port: 8080, targetPort: http }]
---
apiVersion: v1
kind: ConfigMap
metadata: { name: coredns, namespace: pods }
data:
  Corefile: |
    .:53 {
        whoami
    }
---
apiVersion: v1
kind: Pod
metadata: { name: dns, namespace: pods, labels: { app: dns } }
spec:
  containers:
    - name: coredns
      image: registry.k8s.io/coredns/coredns:v1.12.2
      args: [-conf, /root/Corefile]
      readinessProbe: { tcpSocket: { port: 53 }, periodSeconds: 1 }
      volumeMounts: [{ name: conf, mountPath: /root }]
  volumes:
    - { name: conf, configMap: { name: coredns } }
---
apiVersion: v1
kind: Pod
metadata: { name: unknown-image, namespace: pods, labels: { app: unknown } }
spec:
  containers: [{ name: app, image: docker.io/library/nginx:1.27 }]
---
apiVersion: v1
kind: Pod
metadata: { name: crash, namespace: pods, labels: { app: crash } }
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: echo
      image: registry.k8s.io/gateway-api/echo-basic:v1.5.1
      env: [{ name: HTTP_PORT, value: "no-such-port" }]
`;

/** A DNS query for `name` (type TXT, class CH would do too; A is what whoami answers). */
function dnsQuery(id: number, name: string): Uint8Array {
  const labels = name.split(".").flatMap((l) => [l.length, ...new TextEncoder().encode(l)]);
  return new Uint8Array([
    id >> 8,
    id & 255,
    1,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    ...labels,
    0,
    0,
    1,
    0,
    1,
  ]);
}

Deno.test("pod runner: Deployments become running pods with IPs, endpoints, traffic and clean deletion", async (t) => {
  const cluster = await clusterUp({ name: NAME, nodes: 2, pods: true });
  try {
    await cluster.kubectl(["apply", "-f", "-"], { stdin: MANIFESTS });

    let echo: Pod[] = [];
    await t.step(
      "a Deployment of echo-basic becomes Ready pods with IPs from their nodes' pod CIDRs",
      async () => {
        echo = await until("2 Ready echo pods", async () => {
          const list = await pods(cluster, "app=echo");
          return list.length === 2 && list.every(isReady) ? list : undefined;
        });
        for (const p of echo) {
          const node = cluster.nodes.find((n) => n.name === p.spec.nodeName);
          assert.ok(node, `pod ${p.metadata.name} is bound to a node of the cluster`);
          assert.equal(p.status?.phase, "Running");
          assert.equal(p.status?.hostIP, node.ip);
          assert.ok(p.status?.podIP?.startsWith(node.podCIDR.replace(/0\/24$/, "")));
          assert.deepEqual(
            ["PodScheduled", "Initialized", "ContainersReady", "Ready"].map((type) =>
              p.status?.conditions?.find((c) => c.type === type)?.status
            ),
            ["True", "True", "True", "True"],
          );
          const c = p.status?.containerStatuses?.[0];
          assert.ok(c?.state["running"]);
          assert.equal(c?.restartCount, 0);
        }
      },
    );

    await t.step(
      "the Service gets an EndpointSlice from the EndpointSlice controller",
      async () => {
        const want = echo.map((p) => p.status?.podIP).sort();
        await until("EndpointSlice of echo with both pods ready", async () => {
          const slices = await getJson<{
            items: {
              metadata: { labels?: Record<string, string> };
              endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[];
            }[];
          }>(cluster, [
            "get",
            "endpointslices",
            "-n",
            "pods",
            "-l",
            "kubernetes.io/service-name=echo",
          ]);
          const slice = slices.items[0];
          if (
            slice?.metadata.labels?.["endpointslice.kubernetes.io/managed-by"] !==
              "endpointslice-controller.k8s.io"
          ) return undefined;
          const ready = (slice.endpoints ?? []).filter((e) => e.conditions?.ready).flatMap((e) =>
            e.addresses
          ).sort();
          return JSON.stringify(ready) === JSON.stringify(want) ? true : undefined;
        });
      },
    );

    await t.step(
      "traffic from the host reaches each pod, which knows its name from the downward API",
      async () => {
        for (const p of echo) {
          const res = await fetch(`http://${p.status?.podIP}:3000/hello`, {
            signal: AbortSignal.timeout(5000),
          });
          const body = await res.json() as { pod: string; namespace: string; path: string };
          assert.deepEqual([body.pod, body.namespace, body.path], [
            p.metadata.name,
            "pods",
            "/hello",
          ]);
        }
      },
    );

    await t.step(
      "coredns reads its Corefile from a ConfigMap volume at /root and answers DNS",
      async () => {
        const [dns] = await until("Ready coredns pod", async () => {
          const list = await pods(cluster, "app=dns");
          return list.length === 1 && list.every(isReady) ? list : undefined;
        });
        const socket = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 0 });
        try {
          await socket.send(dnsQuery(4242, "foo.bar.com"), {
            transport: "udp",
            hostname: dns?.status?.podIP ?? "",
            port: 53,
          });
          const timer = setTimeout(() => socket.close(), 5000);
          const [reply] = await socket.receive();
          clearTimeout(timer);
          assert.equal((reply[0]! << 8) | reply[1]!, 4242, "the reply answers our query");
          assert.equal(reply[3]! & 15, 0, "rcode NOERROR");
          assert.ok(((reply[10]! << 8) | reply[11]!) > 0, "whoami adds the client's address");
        } finally {
          try {
            socket.close();
          } catch {
            // closed by the timer
          }
        }
      },
    );

    await t.step(
      "an image with no binary fails the pod with ErrImagePull and says why",
      async () => {
        const state = await until("ErrImagePull", async () => {
          const [p] = await pods(cluster, "app=unknown");
          const waiting = p?.status?.containerStatuses?.[0]?.state["waiting"];
          return waiting?.reason === "ErrImagePull" ? waiting : undefined;
        });
        assert.match(state.message ?? "", /docker.io\/library\/nginx:1.27" is not known/);
        const [p] = await pods(cluster, "app=unknown");
        assert.equal(p?.status?.phase, "Pending");
      },
    );

    await t.step(
      "a container that exits is restarted (restartPolicy Always), its exit kept in lastState",
      async () => {
        const c = await until("a restart of the crashing container", async () => {
          const [p] = await pods(cluster, "app=crash");
          const status = p?.status?.containerStatuses?.[0];
          return status && status.restartCount >= 1 ? status : undefined;
        }, 30_000);
        assert.notEqual(c.lastState["terminated"]?.exitCode, 0);
        assert.equal(c.ready, false);
      },
    );

    await t.step(
      "each pod runner renews its node's Lease, so node lifecycle keeps the node Ready",
      async () => {
        // Both nodes at once: a renewal comes every 10 s.
        await Promise.all(cluster.nodes.map(async (node) => {
          const renewed = async () =>
            (await getJson<{ spec: { renewTime: string; holderIdentity: string } }>(cluster, [
              "get",
              "lease",
              node.name,
              "-n",
              "kube-node-lease",
            ])).spec;
          const first = await until(`Lease of ${node.name}`, renewed);
          assert.equal(first.holderIdentity, node.name);
          await until(
            `a renewal of ${node.name}'s Lease`,
            async () => (await renewed()).renewTime !== first.renewTime ? true : undefined,
            20_000,
          );
        }));
        const nodes = await getJson<{
          items: {
            spec: { taints?: unknown[] };
            status: { conditions: { type: string; status: string }[] };
          }[];
        }>(cluster, ["get", "nodes"]);
        for (const n of nodes.items) {
          assert.ok(n.status.conditions.some((c) => c.type === "Ready" && c.status === "True"));
          assert.equal(n.spec.taints, undefined, "node lifecycle left no not-ready taint");
        }
      },
    );

    await t.step(
      "deleting the Deployment removes its pods and their network namespaces",
      async () => {
        const before = await listNetns();
        const netns = (p: Pod) => before.filter((n) => n.includes(`_${p.metadata.name}_`));
        for (const p of echo) {
          assert.equal(netns(p).length, 1, `pod ${p.metadata.name} has its namespace`);
        }
        await cluster.kubectl(["delete", "deployment", "echo", "-n", "pods", "--wait=false"]);
        await until(
          "echo pods gone",
          async () => (await pods(cluster, "app=echo")).length === 0 ? true : undefined,
        );
        const after = await listNetns();
        for (const p of echo) {
          assert.ok(
            !after.some((n) => n.includes(`_${p.metadata.name}_`)),
            `${p.metadata.name}'s netns is gone`,
          );
        }
        const leases = [...Deno.readDirSync(`${cluster.dir}/nodes/node-1/ipam`)].map((e) => e.name)
          .concat([...Deno.readDirSync(`${cluster.dir}/nodes/node-2/ipam`)].map((e) => e.name));
        for (const p of echo) {
          assert.ok(!leases.includes(p.status?.podIP ?? ""), "its address is free again");
        }
      },
    );
  } finally {
    await clusterDown(NAME);
  }
});
