import assert from "node:assert/strict";
import { resolveImage } from "./images.ts";
import {
  containerArgv,
  containerEnv,
  containerScript,
  expandReferences,
  type PodContext,
  type PodObject,
  PodSpecError,
  referencedObjects,
  volumeContent,
} from "./pod_spec.ts";

const pod: PodObject = {
  metadata: { name: "echo-1", namespace: "infra", uid: "u-1", labels: { app: "echo" } },
  spec: {
    nodeName: "node-2",
    containers: [{
      name: "echo",
      image: "registry.k8s.io/gateway-api/echo-basic:v1.5.1",
      env: [
        { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        { name: "NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
        { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
        { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
        { name: "APP", valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
        { name: "GREETING", valueFrom: { configMapKeyRef: { name: "cfg", key: "greeting" } } },
        { name: "URL", value: "http://$(POD_IP):3000/$$(POD_IP)" },
      ],
    }],
    volumes: [
      { name: "conf", configMap: { name: "cfg" } },
      {
        name: "tls",
        secret: { secretName: "cert", items: [{ key: "tls.crt", path: "crt" }] },
      },
    ],
  },
};

const ctx: PodContext = {
  podIP: "198.18.2.7",
  hostIP: "198.18.0.12",
  nodeName: "node-2",
  configMaps: new Map([["cfg", { greeting: "hi", Corefile: ".:53 {}" }]]),
  secrets: new Map([["cert", { "tls.crt": "CERT", "tls.key": "KEY" }]]),
  baseEnv: { PATH: "/usr/bin" },
};

Deno.test("pod spec: env from values, the downward API and ConfigMap keys, $(VAR) expanded", () => {
  const env = containerEnv(pod, pod.spec.containers[0]!, ctx);
  assert.deepEqual(env, {
    PATH: "/usr/bin",
    POD_NAME: "echo-1",
    NAMESPACE: "infra",
    POD_IP: "198.18.2.7",
    NODE: "node-2",
    APP: "echo",
    GREETING: "hi",
    URL: "http://198.18.2.7:3000/$(POD_IP)",
  });
});

Deno.test("pod spec: a missing ConfigMap key and an unsupported field are errors, not guesses", () => {
  const missing = structuredClone(pod);
  missing.spec.containers[0]!.env = [{
    name: "X",
    valueFrom: { configMapKeyRef: { name: "cfg", key: "nope" } },
  }];
  assertThrowsReason(() => containerEnv(missing, missing.spec.containers[0]!, ctx), /nope/);
  const field = structuredClone(pod);
  field.spec.containers[0]!.env = [{
    name: "X",
    valueFrom: { fieldRef: { fieldPath: "spec.schedulerName" } },
  }];
  assertThrowsReason(() => containerEnv(field, field.spec.containers[0]!, ctx), /schedulerName/);
});

function assertThrowsReason(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof PodSpecError && message.test(e.message));
}

Deno.test("pod spec: argv is the image's binary; command replaces it, args its default args", () => {
  const echo = resolveImage("registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.2");
  assert.deepEqual(containerArgv({ name: "e", image: "x" }, echo, "/cache/echo-basic", {}), [
    "/cache/echo-basic",
  ]);
  const dns = resolveImage("registry.k8s.io/coredns/coredns:v1.12.2");
  assert.deepEqual(
    containerArgv(
      { name: "d", image: "x", args: ["-conf", "/root/Corefile"] },
      dns,
      "/c/coredns",
      {},
    ),
    ["/c/coredns", "-conf", "/root/Corefile"],
  );
  assert.deepEqual(
    containerArgv(
      { name: "d", image: "x", command: ["/coredns"], args: ["-dns.port", "$(PORT)"] },
      dns,
      "/c/coredns",
      { PORT: "5353" },
    ),
    ["/c/coredns", "-dns.port", "5353"],
  );
  assert.equal(expandReferences("$(A)-$(B)", { A: "1" }), "1-$(B)");
});

Deno.test("pod spec: ConfigMap and Secret volumes become files (items pick keys and paths)", async () => {
  const token = () => Promise.resolve("t");
  const conf = await volumeContent(pod, pod.spec.volumes![0]!, { ...ctx, token });
  assert.deepEqual(conf, {
    kind: "files",
    files: [
      { path: "greeting", content: "hi", mode: 0o644 },
      { path: "Corefile", content: ".:53 {}", mode: 0o644 },
    ],
  });
  const tls = await volumeContent(pod, pod.spec.volumes![1]!, { ...ctx, token });
  assert.deepEqual(tls, { kind: "files", files: [{ path: "crt", content: "CERT", mode: 0o644 }] });
  assert.deepEqual(referencedObjects(pod), { configMaps: ["cfg"], secrets: ["cert"] });
  await assert.rejects(
    () => volumeContent(pod, { name: "h", hostPath: { path: "/" } }, { ...ctx, token }),
    /hostPath is not supported/,
  );
});

Deno.test("pod spec: the container script mounts volumes where the container expects them", () => {
  const script = containerScript({
    mounts: [{ source: "/run/p/volumes/conf", target: "/root", readOnly: true, file: false }],
    overlayDir: "/run/p/overlay/0",
    hostname: "echo-1",
    logFile: "/run/p/echo.log",
    workingDir: "/",
  });
  assert.match(script, /^exec >>'\/run\/p\/echo.log' 2>&1/);
  assert.match(script, /mount --bind '\/run\/p\/volumes\/conf' '\/root'\n/);
  assert.match(script, /mount -o remount,bind,ro '\/root'/);
  assert.match(script, /mount -t overlay overlay/);
  assert.match(script, /exec \/proc\/self\/fd\/9 "\$@"/);
});
