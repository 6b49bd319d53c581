import assert from "node:assert/strict";
import { deployedV8Flags } from "./operator.ts";

Deno.test("the operator benchmark runs the operator with the heap cap its manifest deploys", async () => {
  const manifest = await Deno.readTextFile(
    new URL("../manifests/operator.yaml", import.meta.url),
  );
  assert.match(deployedV8Flags(manifest) ?? "", /--max-old-space-size=\d+/);
});

Deno.test("no Deployment with DENO_V8_FLAGS: no flags", () => {
  assert.equal(deployedV8Flags("kind: ConfigMap\n---\nkind: Deployment\nspec: {}\n"), undefined);
});
