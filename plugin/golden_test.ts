// Golden output of every command and output format, through the real
// executable entry (`deno run plugin/main.ts ... --kubeconfig`), against the
// scenario seeded into the local cluster's real API server. Each case checks
// stdout, stderr and the exit code against plugin/testdata/<case>.golden.
//
// Ages are deterministic: the scenario's status timestamps are fixed and the
// plugin's clock is fixed with KUBECTL_BLIXT_NOW. Rewrite the files after an
// intended change with:
//
//   UPDATE_GOLDEN=1 deno test -A plugin/golden_test.ts
import assert from "node:assert/strict";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { NOW } from "./_fixtures.ts";
import { seedScenario } from "./_seed.ts";
import { applyBlixtCrds } from "../manifests/crds.ts";
import { installLauncher } from "./install.ts";
import { PLUGIN_VERSION } from "./version.ts";

const CLUSTER = "plugin-test";
const UPDATE = Deno.env.get("UPDATE_GOLDEN") === "1";
const MAIN = new URL("./main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const TESTDATA = new URL("./testdata/", import.meta.url);

interface Case {
  /** File name under testdata/, without `.golden`. */
  name: string;
  /** Arguments after `kubectl blixt`. */
  args: string[];
  /** Exit code scripts would see. */
  exit: number;
  /** Use a kubeconfig whose server does not answer. */
  unreachable?: boolean;
}

const CASES: Case[] = [
  { name: "status", args: ["status"], exit: 0 },
  { name: "status-wide", args: ["status", "-o", "wide"], exit: 0 },
  { name: "status-all-namespaces", args: ["status", "-A"], exit: 0 },
  { name: "status-gateway-json", args: ["status", "gw", "-o", "json"], exit: 0 },
  { name: "status-all-namespaces-yaml", args: ["status", "-A", "-o", "yaml"], exit: 0 },
  { name: "status-no-headers", args: ["status", "-n", "apps", "--no-headers"], exit: 0 },
  { name: "status-not-blixt", args: ["status", "foreign"], exit: 0 },
  { name: "status-not-found", args: ["status", "nope"], exit: 3 },
  { name: "status-empty-namespace", args: ["status", "-n", "empty"], exit: 0 },
  { name: "status-empty-namespace-json", args: ["status", "-n", "empty", "-o", "json"], exit: 0 },
  { name: "nodes", args: ["nodes"], exit: 0 },
  { name: "nodes-wide", args: ["nodes", "-o", "wide"], exit: 0 },
  { name: "nodes-json", args: ["nodes", "-o", "json"], exit: 0 },
  { name: "nodes-yaml", args: ["nodes", "-o", "yaml"], exit: 0 },
  { name: "explain-carrying", args: ["explain", "route", "web"], exit: 0 },
  { name: "explain-shadowed", args: ["explain", "tcproute/web-canary"], exit: 4 },
  { name: "explain-no-backends-json", args: ["explain", "udproute", "dns", "-o", "json"], exit: 4 },
  {
    name: "explain-not-attached-yaml",
    args: ["explain", "route", "blocked", "-n", "apps", "-o", "yaml"],
    exit: 4,
  },
  { name: "explain-not-blixt", args: ["explain", "route", "elsewhere"], exit: 4 },
  { name: "explain-no-gateway", args: ["explain", "tcproute", "lost", "--no-headers"], exit: 4 },
  { name: "explain-not-found", args: ["explain", "route", "nope"], exit: 3 },
  { name: "version-json", args: ["version", "-o", "json"], exit: 0 },
  { name: "usage-error", args: ["status", "--bogus"], exit: 2 },
  { name: "unreachable", args: ["nodes"], exit: 1, unreachable: true },
];

/** What a run printed, with what varies between machines replaced. */
function transcript(c: Case, code: number, stdout: string, stderr: string): string {
  const normalize = (s: string) =>
    s.replaceAll(Deno.version.deno, "<deno-version>").replaceAll(
      PLUGIN_VERSION,
      "<plugin-version>",
    );
  return `# kubectl blixt ${c.args.join(" ")}\n# exit ${code}\n-- stdout --\n${
    normalize(stdout)
  }-- stderr --\n${normalize(stderr)}`;
}

async function kubectlBlixt(args: string[], kubeconfig: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "--config", CONFIG, MAIN, ...args, "--kubeconfig", kubeconfig],
    env: { KUBECTL_BLIXT_NOW: NOW, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("kubectl-blixt: golden output of every command and format against the local cluster", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "kubectl-blixt-" });
  try {
    const cluster = await clusterUp({ name: CLUSTER, nodes: 2 });
    const kc = cluster.kubeConfig();
    await applyBlixtCrds(kc, { fieldManager: "blixt-plugin-test" });
    await seedScenario(kc, { extraNamespaces: ["empty"] });
    const unreachable = `${dir}/unreachable.kubeconfig`;
    await Deno.writeTextFile(
      unreachable,
      `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`,
    );
    for (const c of CASES) {
      await t.step(c.name, async () => {
        const run = await kubectlBlixt(c.args, c.unreachable ? unreachable : cluster.kubeconfig);
        const got = transcript(c, run.code, run.stdout, run.stderr);
        const file = new URL(`${c.name}.golden`, TESTDATA);
        if (UPDATE) {
          await Deno.mkdir(TESTDATA, { recursive: true });
          await Deno.writeTextFile(file, got);
        }
        const want = await Deno.readTextFile(file).catch(() => {
          throw new Error(`${file.pathname} is missing: run with UPDATE_GOLDEN=1 to write it`);
        });
        assert.equal(got, want, `${c.name}: output differs from ${file.pathname}`);
        assert.equal(run.code, c.exit, `${c.name}: exit code`);
      });
    }
    await t.step(
      "kubectl runs the installed launcher, with its narrower permissions, alike",
      async () => {
        await installLauncher(dir, { deno: Deno.execPath() });
        const c = CASES.find((x) => x.name === "status-all-namespaces") as Case;
        const out = await new Deno.Command("kubectl", {
          args: ["blixt", ...c.args, "--kubeconfig", cluster.kubeconfig],
          env: { PATH: `${dir}:${Deno.env.get("PATH")}`, KUBECTL_BLIXT_NOW: NOW, NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder();
        const got = transcript(c, out.code, text.decode(out.stdout), text.decode(out.stderr));
        assert.equal(got, await Deno.readTextFile(new URL(`${c.name}.golden`, TESTDATA)));
      },
    );
  } finally {
    await clusterDown(CLUSTER);
    await Deno.remove(dir, { recursive: true });
  }
});
