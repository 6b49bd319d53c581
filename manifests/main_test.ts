import assert from "node:assert/strict";
import { main } from "./main.ts";

/** Runs main with console.error captured. */
async function stderrOf(args: string[]): Promise<{ code: number; stderr: string }> {
  const original = console.error;
  let stderr = "";
  console.error = (...parts: unknown[]) => stderr += parts.join(" ") + "\n";
  try {
    return { code: await main(args), stderr };
  } finally {
    console.error = original;
  }
}

Deno.test("bad usage exits 2 with the reason, before touching any cluster", async () => {
  for (
    const [args, reason] of [
      [["frob"], "unknown command frob"],
      [[], "deploy or undeploy?"],
      [["deploy", "--gateway-api-channel", "beta"], "--gateway-api-channel must be"],
      [["deploy", "--timeout", "soon"], "--timeout must be a number"],
      [["deploy", "--crds"], "--crds is an option of undeploy"],
      [["undeploy", "--dry-run"], "--dry-run is an option of deploy"],
      [["deploy", "--frob"], "Unknown option '--frob'"],
    ] as const
  ) {
    const { code, stderr } = await stderrOf([...args]);
    assert.equal(code, 2, args.join(" "));
    assert.ok(stderr.includes(reason), stderr);
  }
});

Deno.test("a kubeconfig that does not exist is an error, exit 1", async () => {
  const { code, stderr } = await stderrOf(["deploy", "--kubeconfig", "/nonexistent/kubeconfig"]);
  assert.equal(code, 1);
  assert.match(stderr, /^error: .*nonexistent/);
});
