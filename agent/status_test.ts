import assert from "node:assert/strict";
import { AGENT_FEATURES, buildStatus } from "./status.ts";

Deno.test("the agent lists backendsFrom and endpoints in status.features, so the operator may use both", () => {
  const status = buildStatus({ tables: [], programmed: new Map(), synced: true }, undefined);
  assert.deepEqual(status.features, ["backendsFrom", "endpoints"]);
  assert.deepEqual(AGENT_FEATURES, ["backendsFrom", "endpoints"]);
});
