import assert from "node:assert/strict";
import { parse } from "yaml";
import { k8s } from "../kube/client.ts";
import { serviceAccountKubeconfigText } from "./service_account_kubeconfig.ts";

// The cluster tests (deploy_test.ts) show such a kubeconfig authenticating as
// its account; this one shows the file stands alone and holds no other credential.
Deno.test("a service account kubeconfig embeds the CA and carries only the token", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    await Deno.writeTextFile(`${dir}/ca.crt`, pem);
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "local", server: "https://198.18.0.1:6443", caFile: `${dir}/ca.crt` }],
      users: [{ name: "admin", certData: "Y2VydA==", keyData: "a2V5" }],
      contexts: [{ name: "admin@local", cluster: "local", user: "admin" }],
      currentContext: "admin@local",
    });
    const text = serviceAccountKubeconfigText(kc, "t0ken", {
      account: { namespace: "blixt-system", name: "blixt-agent" },
    });
    assert.deepEqual(parse(text), {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{
        name: "local",
        cluster: { server: "https://198.18.0.1:6443", "certificate-authority-data": btoa(pem) },
      }],
      users: [{ name: "system:serviceaccount:blixt-system:blixt-agent", user: { token: "t0ken" } }],
      contexts: [{
        name: "blixt-agent@local",
        context: {
          cluster: "local",
          user: "system:serviceaccount:blixt-system:blixt-agent",
          namespace: "blixt-system",
        },
      }],
      "current-context": "blixt-agent@local",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
