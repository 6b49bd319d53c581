import assert from "node:assert/strict";
import { parseFlags, UsageError } from "./flags.ts";

Deno.test("flags follow kubectl: short and long, joined or separate, anywhere on the line", () => {
  for (
    const argv of [
      ["status", "gw", "-n", "apps", "-o", "json"],
      ["-n=apps", "status", "--output=json", "gw"],
      ["status", "-napps", "-ojson", "gw"],
      ["status", "--namespace", "apps", "gw", "-o=json"],
    ]
  ) {
    const f = parseFlags(argv);
    assert.deepEqual(f.args, ["status", "gw"], argv.join(" "));
    assert.equal(f.namespace, "apps");
    assert.equal(f.output, "json");
  }
});

Deno.test("defaults: table output, headers, the context's namespace", () => {
  const f = parseFlags(["nodes"]);
  assert.equal(f.output, "table");
  assert.equal(f.noHeaders, false);
  assert.equal(f.namespace, undefined);
  assert.equal(f.allNamespaces, false);
});

Deno.test("booleans take pflag's optional =true/=false", () => {
  assert.equal(parseFlags(["status", "--no-headers=true"]).noHeaders, true);
  assert.equal(parseFlags(["status", "--no-headers=false"]).noHeaders, false);
  assert.equal(parseFlags(["status", "-A"]).allNamespaces, true);
  assert.equal(parseFlags(["status", "--all-namespaces"]).allNamespaces, true);
});

Deno.test("kubeconfig and context pass through", () => {
  const f = parseFlags(["status", "--kubeconfig", "/tmp/kc", "--context=prod"]);
  assert.equal(f.kubeconfig, "/tmp/kc");
  assert.equal(f.context, "prod");
});

Deno.test("bad command lines are usage errors with kubectl's wording", () => {
  const cases: [string[], string][] = [
    [["status", "--bogus"], "unknown flag: --bogus"],
    [["status", "-x"], "unknown shorthand flag: 'x' in -x"],
    [["status", "-n"], "flag needs an argument: --namespace"],
    [["status", "-o", "xml"], 'unable to match a printer suitable for the output format "xml"'],
    [["status", "-n", ""], "non-empty"],
  ];
  for (const [argv, message] of cases) {
    assert.throws(() => parseFlags(argv), (err: unknown) => {
      assert.ok(err instanceof UsageError, argv.join(" "));
      assert.ok(err.message.includes(message), `${argv.join(" ")}: ${err.message}`);
      return true;
    });
  }
});

Deno.test("after --, everything is an operand", () => {
  assert.deepEqual(parseFlags(["explain", "route", "--", "-odd"]).args, [
    "explain",
    "route",
    "-odd",
  ]);
});
