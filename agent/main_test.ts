import assert from "node:assert/strict";
import { parse } from "yaml";
import { parseAgentArgs } from "./main.ts";

Deno.test("the DaemonSet's agent args are options the agent has", async () => {
  const docs = (await Deno.readTextFile(new URL("../manifests/agent.yaml", import.meta.url)))
    .split(/^---$/m).map((d) => parse(d)).filter(Boolean);
  const ds = docs.find((d) => d.kind === "DaemonSet");
  const container = ds.spec.template.spec.containers.find((c: { name: string }) =>
    c.name === "agent"
  );
  const args = (container.args as string[]).map((a) => a.replace("$(NODE_NAME)", "node-1"));
  const values = parseAgentArgs(args);
  assert.equal(values.node, "node-1");
  assert.equal(values["metrics-port"], "9464");
  assert.deepEqual(values["pod-interface"], ["cni0"]);
  const port = container.ports.find((p: { name: string }) => p.name === "metrics");
  assert.equal(String(port.containerPort), values["metrics-port"], "probes reach /metrics' port");
});

Deno.test("an unknown agent option is refused, and --pod-interface repeats", () => {
  assert.throws(() => parseAgentArgs(["--node", "n", "--port", "9464"]), /port/);
  assert.deepEqual(
    parseAgentArgs(["--node", "n", "--pod-interface", "cni0", "--pod-interface", "br1"])[
      "pod-interface"
    ],
    ["cni0", "br1"],
  );
  assert.deepEqual(parseAgentArgs(["--node", "n"])["pod-interface"], []);
});
