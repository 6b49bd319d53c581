import assert from "node:assert/strict";
import type https from "node:https";
import { k8s } from "./client.ts";
import { loadRestConfig } from "./kubeconfig.ts";

async function withKubeconfig(
  text: string,
  files: Record<string, string>,
  fn: (path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    for (const [name, content] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, content);
    }
    await Deno.writeTextFile(`${dir}/config`, text);
    await fn(`${dir}/config`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const CONFIG = `apiVersion: v1
kind: Config
current-context: certs
contexts:
- name: certs
  context: { cluster: local, user: admin }
- name: token
  context: { cluster: other, user: reader }
- name: exec
  context: { cluster: local, user: plugin }
clusters:
- name: local
  cluster:
    server: https://198.18.0.1:6443
    certificate-authority: ca.crt
- name: other
  cluster:
    server: https://198.18.0.2:6443/
    insecure-skip-tls-verify: true
    tls-server-name: kubernetes
users:
- name: admin
  user: { client-certificate: admin.crt, client-key-data: ${btoa("KEY")} }
- name: reader
  user: { tokenFile: token, as: someone }
- name: plugin
  user:
    exec: { apiVersion: client.authentication.k8s.io/v1, command: /bin/true }
`;

const FILES = { "ca.crt": "CA", "admin.crt": "CERT", token: "secret\n" };

async function optionsOf(kc: { applyToHTTPSOptions(o: https.RequestOptions): Promise<void> }) {
  const opts: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  return opts;
}

Deno.test("a kubeconfig with client certificates: files relative to it, data inline", async () => {
  await withKubeconfig(CONFIG, FILES, async (path) => {
    const kc = await loadRestConfig({ kubeconfig: path });
    assert.equal(kc.getCurrentCluster()?.server, "https://198.18.0.1:6443");
    const opts = await optionsOf(kc);
    assert.equal(String(opts.ca), "CA");
    assert.equal(String(opts.cert), "CERT");
    assert.equal(String(opts.key), "KEY");
    assert.equal(opts.rejectUnauthorized, undefined);
    assert.equal((opts.headers as Record<string, string>).Authorization, undefined);
  });
});

Deno.test("another context: a token file, impersonation, skip-verify and a server name", async () => {
  await withKubeconfig(CONFIG, FILES, async (path) => {
    const kc = await loadRestConfig({ kubeconfig: path, context: "token" });
    const opts = await optionsOf(kc);
    const headers = opts.headers as Record<string, string>;
    assert.equal(headers.Authorization, "Bearer secret");
    assert.equal(headers["Impersonate-User"], "someone");
    assert.equal(opts.rejectUnauthorized, false);
    assert.equal(opts.servername, "kubernetes");
  });
});

Deno.test("an exec plugin user gets client-node's KubeConfig", async () => {
  await withKubeconfig(CONFIG, FILES, async (path) => {
    const kc = await loadRestConfig({ kubeconfig: path, context: "exec" });
    assert.ok(kc instanceof k8s.KubeConfig);
    assert.equal(kc.getCurrentCluster()?.server, "https://198.18.0.1:6443");
  });
});

Deno.test("a context that is not in the kubeconfig is an error", async () => {
  await withKubeconfig(CONFIG, FILES, async (path) => {
    await assert.rejects(
      loadRestConfig({ kubeconfig: path, context: "nope" }),
      /context "nope" is not in the kubeconfig/,
    );
  });
});

Deno.test("$KUBECONFIG with several files: merged, the first current-context wins", async () => {
  const dir = await Deno.makeTempDir();
  const before = Deno.env.get("KUBECONFIG");
  try {
    await Deno.writeTextFile(
      `${dir}/a`,
      JSON.stringify({
        clusters: [{ name: "c", cluster: { server: "https://198.18.0.9:6443" } }],
        users: [{ name: "u", user: { token: "from-a" } }],
      }),
    );
    await Deno.writeTextFile(
      `${dir}/b`,
      "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n" +
        "users: [{name: u, user: {token: from-b}}]\n",
    );
    Deno.env.set("KUBECONFIG", `${dir}/a:${dir}/b`);
    const kc = await loadRestConfig();
    assert.equal(kc.getCurrentCluster()?.server, "https://198.18.0.9:6443");
    const opts = await optionsOf(kc);
    assert.equal((opts.headers as Record<string, string>).Authorization, "Bearer from-a");
  } finally {
    if (before === undefined) Deno.env.delete("KUBECONFIG");
    else Deno.env.set("KUBECONFIG", before);
    await Deno.remove(dir, { recursive: true });
  }
});
