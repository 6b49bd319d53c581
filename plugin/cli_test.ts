// The command line in process, for what needs no cluster: help, usage errors
// and their exit codes, route operands, kubeconfig errors. golden_test.ts runs
// the real executable against the local cluster.
import assert from "node:assert/strict";
import { EXIT, type Io, parseRouteOperands, run } from "./cli.ts";
import { UsageError } from "./flags.ts";

function io(): Io & { out: string; err: string } {
  const o = {
    out: "",
    err: "",
    stdout(t: string) {
      o.out += t;
    },
    stderr(t: string) {
      o.err += t;
    },
    isTerminal: false,
    env: { get: (_: string) => undefined },
    now: new Date("2026-03-01T12:00:00Z"),
  };
  return o;
}

Deno.test("no command and help print usage with the commands and exit codes, exit 0", async () => {
  for (const argv of [[], ["help"], ["-h"], ["--help"]]) {
    const o = io();
    assert.equal(await run(argv, o), EXIT.ok);
    assert.match(o.out, /kubectl blixt COMMAND/);
    assert.match(o.out, /explain route NAME/);
    assert.match(o.out, /Exit codes:/);
    assert.equal(o.err, "");
  }
  const o = io();
  assert.equal(await run(["status", "-h"], o), EXIT.ok);
  assert.match(o.out, /kubectl blixt status \[GATEWAY\]/);
});

Deno.test("usage errors exit 2 with kubectl's hint on stderr and nothing on stdout", async () => {
  const cases: [string[], RegExp][] = [
    [["frobnicate"], /unknown command "frobnicate"/],
    [["status", "--bogus"], /unknown flag: --bogus/],
    [["status", "-o", "xml"], /output format "xml"/],
    [["status", "a", "b"], /at most one GATEWAY/],
    [["status", "gw", "-A"], /cannot be used with -A/],
    [["nodes", "extra"], /takes no arguments/],
    [["status", "--client"], /unknown flag: --client/],
    [["explain"], /explain needs a route/],
    [["explain", "service/x"], /is not one of route, tcproute, udproute/],
    [["explain", "route", "web", "-A"], /use -n, not -A/],
  ];
  for (const [argv, message] of cases) {
    const o = io();
    assert.equal(await run(argv, o), EXIT.usage, argv.join(" "));
    assert.match(o.err, message);
    assert.match(o.err, /See 'kubectl blixt .*--help' for usage\./);
    assert.equal(o.out, "");
  }
});

Deno.test("explain takes route NAME, KIND NAME and KIND/NAME", () => {
  assert.deepEqual(parseRouteOperands(["route", "web"]), {
    kinds: ["TCPRoute", "UDPRoute"],
    name: "web",
  });
  assert.deepEqual(parseRouteOperands(["tcproute/web"]), { kinds: ["TCPRoute"], name: "web" });
  assert.deepEqual(parseRouteOperands(["udproutes", "dns"]), { kinds: ["UDPRoute"], name: "dns" });
  assert.deepEqual(parseRouteOperands(["tcproute.gateway.networking.k8s.io/web"]), {
    kinds: ["TCPRoute"],
    name: "web",
  });
  assert.throws(() => parseRouteOperands(["route"]), UsageError);
  assert.throws(() => parseRouteOperands(["tcproute/web", "more"]), UsageError);
});

Deno.test("an unreadable kubeconfig or unknown context exits 1 with the reason", async () => {
  let o = io();
  assert.equal(await run(["status", "--kubeconfig", "/nonexistent/kubeconfig"], o), EXIT.error);
  assert.match(o.err, /^error: .*\/nonexistent\/kubeconfig/);
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/kubeconfig`;
    await Deno.writeTextFile(
      path,
      `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
`,
    );
    o = io();
    assert.equal(await run(["nodes", "--kubeconfig", path, "--context", "prod"], o), EXIT.error);
    assert.equal(o.err, 'error: context "prod" is not in the kubeconfig\n');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("version --client needs no cluster; -o json has its own schema", async () => {
  let o = io();
  assert.equal(await run(["version", "--client"], o), EXIT.ok);
  assert.match(o.out, /^Client Version: v\d+\.\d+\.\d+\nDeno Version: \d+\.\d+\.\d+\n$/);
  o = io();
  assert.equal(await run(["version", "--client", "-o", "json"], o), EXIT.ok);
  const v = JSON.parse(o.out);
  assert.equal(v.kind, "BlixtVersion");
  assert.equal(v.version, "v1");
  assert.equal(v.server, null);
});
